"""Statistical validation of the Bayesian mixture: is the posterior the package computes calibrated?

Two checks, both run by ``python -m bayesgmm.validation`` (``make validate``):

**Simulation-based calibration** (SBC; Talts et al. 2018). Parameters are drawn from fixed,
explicit priors (the model's own prior: :func:`draw_prior` draws from a model built by
:func:`bayesgmm.build_model`, so simulator and model cannot disagree), data are simulated from
them, and the package's default path fits each data set (EM with restarts, then NUTS from the EM
start, compiled once with only the data swapped). If the posterior is right, the rank of every
true quantity among (nearly independent) posterior draws is uniform. Draws are thinned to about
their effective sample size ``L`` (the smallest bulk ESS of the test quantities); ranks over
different ``L`` are pooled as randomised fractional ranks ``u = (rank + U(0, 1)) / (L + 1)``,
which are exactly uniform on (0, 1) under calibration. The test quantities are label-invariant:
sorted weights, the means of the components ordered by their first feature, the log-likelihood
of the simulated data and the log predictive density of one held-out point. That point is drawn
from parameters drawn from the prior independently of the truth: one drawn from the truth
itself favours the truth, and its rank is not uniform even for an exact posterior.

Uniformity is tested with a chi-square test on binned ``u`` and with the simultaneous
ECDF-difference band of Säilynoja et al. (2022) (ArviZ's ``ecdf_confidence_band``); the central
50% and 90% posterior intervals should cover the truth at those rates (a true value lies in the
central interval of probability ``p`` iff ``|u - 1/2| <= p/2``), checked with binomial tests.
Each family of tests is Bonferroni-corrected over its quantities, and reported over all fitted
simulations and over those whose sampler diagnostics passed.

Selecting simulations on the data alone (EM failures, sampler diagnostics) does not bias the
ranks of an exact posterior: given the data, the true parameters are a posterior draw whatever
the selection. It narrows what is validated instead (the hardest data sets drop out), so every
fit failure is counted and reported, never dropped silently.

**Coverage at a known truth.** Data sets are simulated from fixed parameters; each posterior is
relabelled to the true components (:func:`bayesgmm.alignment.match_to_reference`), and the
central 90% intervals of weights and means should cover the truth in about 90% of data sets
(binomial tests). At a fixed truth this holds only approximately (Bernstein-von Mises), which
is what a sound posterior should deliver at ``N = 100`` with well-separated components.

The package, in the order data flow through it (each module imports only earlier ones):
:mod:`~bayesgmm.validation.simulation` (priors, truth, simulated data),
:mod:`~bayesgmm.validation.fitting` (the fitter under test),
:mod:`~bayesgmm.validation.ranks` (test quantities and ranks),
:mod:`~bayesgmm.validation.uniformity` (the tests on ranks),
:mod:`~bayesgmm.validation.sbc` and :mod:`~bayesgmm.validation.coverage` (the two checks),
:mod:`~bayesgmm.validation.plotting` and :mod:`~bayesgmm.validation.output` (what a run leaves),
:mod:`~bayesgmm.validation.study` (both checks under one level) and
:mod:`~bayesgmm.validation.cli` (the command line).

**Missing completely at random** (issue 16) is a separate study, ``make validate-missing``:
:mod:`~bayesgmm.validation.missing` (the mask, the estimators, matching to the truth, bias,
RMSE and coverage) and :mod:`~bayesgmm.validation.missing_study` (the run, its summary and its
command line).
"""

from __future__ import annotations

from .cli import main
from .coverage import relabel_to_truth, truth_coverage
from .fitting import EM_SETTINGS, Fitter, PosteriorFit, SamplerSettings, fit_em, sampler_diagnostics
from .fitting import FitterLike as FitterLike
from .output import format_summary, write_outputs
from .plotting import plot_rank_ecdfs
from .ranks import (
    covered,
    fractional_ranks,
    invariant_quantities,
    quantity_names,
    rank_draws,
    rank_of_truth,
    thin_indices,
)
from .sbc import SBCResult, run_sbc, sbc_simulation, summarize_sbc
from .simulation import (
    DEFAULT_STUDY_PRIORS,
    FIXED_TRUTH,
    SBC_PRIORS,
    SBC_PRIORS_IG,
    STUDY_PRIORS,
    Simulation,
    draw_prior,
    simulate,
)
from .study import N_TEST_FAMILIES as N_TEST_FAMILIES
from .study import run_validation
from .uniformity import LEVELS as LEVELS
from .uniformity import MIN_SIMULATIONS as MIN_SIMULATIONS
from .uniformity import calibration_tests, chi_square_uniformity, ecdf_band, ecdf_uniformity

__all__ = [
    "DEFAULT_STUDY_PRIORS",
    "EM_SETTINGS",
    "FIXED_TRUTH",
    "SBC_PRIORS",
    "SBC_PRIORS_IG",
    "STUDY_PRIORS",
    "Fitter",
    "PosteriorFit",
    "SBCResult",
    "SamplerSettings",
    "Simulation",
    "calibration_tests",
    "chi_square_uniformity",
    "covered",
    "draw_prior",
    "ecdf_band",
    "ecdf_uniformity",
    "fit_em",
    "format_summary",
    "fractional_ranks",
    "invariant_quantities",
    "main",
    "plot_rank_ecdfs",
    "quantity_names",
    "rank_draws",
    "rank_of_truth",
    "relabel_to_truth",
    "run_sbc",
    "run_validation",
    "sampler_diagnostics",
    "sbc_simulation",
    "simulate",
    "summarize_sbc",
    "thin_indices",
    "truth_coverage",
    "write_outputs",
]
