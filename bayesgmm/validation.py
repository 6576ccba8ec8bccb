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
of the simulated data and the log predictive density of one held-out point from the same
parameters.

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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr
from arviz.stats.ecdf_utils import ecdf_confidence_band
from matplotlib.figure import Figure
from scipy import stats

from . import _gaussian as g
from ._idata import get_group, json_default, posterior_draws
from ._progress import progress_bar
from .alignment import apply_permutations, match_to_reference
from .datasets import simulate_mixture
from .diagnostics import diagnostics
from .em import EMGaussianMixture
from .model import build_model
from .priors import GMMPriors
from .sampling import CompileCache, sample_posterior

__all__ = [
    "EM_SETTINGS",
    "FIXED_TRUTH",
    "SBC_PRIORS",
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

SBC_PRIORS = GMMPriors(
    weights_concentration=1.0, lkj_eta=2.0, means_loc=0.0, means_scale=3.0, sd_scale=1.0
)
"""The fixed priors of the calibration study (not data-scaled: the prior must not see the data)."""

FIXED_TRUTH = {
    "weights": [0.4, 0.6],
    "means": [[-2.0, 0.0], [2.0, 1.0]],
    "covariances": [[[1.0, 0.3], [0.3, 0.8]], [[0.6, -0.2], [-0.2, 0.9]]],
}
"""Parameters of the coverage-at-a-known-truth check: plausible under :data:`SBC_PRIORS`."""

EM_SETTINGS = {"n_init": 5, "tol": 1e-6, "max_iter": 1000}
"""EM as :class:`bayesgmm.BayesianGMM` runs it (the package's default path)."""

LEVELS = (0.5, 0.9)
MIN_SIMULATIONS = 5
N_TEST_FAMILIES = 7


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings of every fit (per chain: ``tune`` warm-up steps, ``draws`` kept)."""

    draws: int = 500
    tune: int = 500
    chains: int = 2
    target_accept: float = 0.8


@dataclass
class PosteriorFit:
    """One fit: the posterior (relabelled to EM), its diagnostics and how EM went.

    Attributes
    ----------
    posterior : xarray.Dataset
        With ``weights``, ``means`` and ``covariances`` over ``(chain, draw, component, ...)``.
    diagnostics : dict
        ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``min_bfmi`` and
        ``passed`` (every gate of :func:`bayesgmm.diagnostics` passed).
    em : dict
        ``warnings``: the warning classes EM raised (see :func:`fit_em`).
    """

    posterior: xr.Dataset
    diagnostics: dict[str, Any]
    em: dict[str, Any] = field(default_factory=dict)


class FitterLike(Protocol):
    """Anything that fits one data set: :class:`Fitter`, or a stub in the tests."""

    def fit(self, X: np.ndarray, *, random_seed: int) -> PosteriorFit: ...


def _placeholder_data(n_samples: int, n_features: int) -> np.ndarray:
    """Data of the right shape to build a model before any data are simulated."""
    return np.linspace(-1.0, 1.0, n_samples * n_features).reshape(n_samples, n_features)


def fit_em(
    X: np.ndarray, n_components: int, *, random_seed: int
) -> tuple[EMGaussianMixture, dict[str, Any]]:
    """EM as the default path runs it, with the warnings it raised recorded.

    Returns
    -------
    em : EMGaussianMixture
    info : dict
        ``warnings``: names of the warning classes raised (e.g. ``CollapsedComponentWarning``
        when a component holds too few points, which small simulated data sets can cause).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em = EMGaussianMixture(n_components, **EM_SETTINGS, random_state=random_seed).fit(X)
    return em, {"warnings": sorted({w.category.__name__ for w in caught})}


def sampler_diagnostics(idata: az.InferenceData) -> dict[str, Any]:
    """The worst value of every check of :func:`bayesgmm.diagnostics`, and whether all passed."""
    table = diagnostics(idata).set_index("check")
    value = table["value"]
    return {
        "max_r_hat": float(value["r_hat"]),
        "min_ess_bulk": float(value["ess_bulk"]),
        "min_ess_tail": float(value["ess_tail"]),
        "divergences": int(value["divergences"]),
        "min_bfmi": float(value["bfmi"]),
        "passed": bool(table["passed"].all()),
    }


class Fitter:
    """The package's default path, compiled once: EM, then NUTS from the EM start.

    The PyMC model is built once; every :meth:`fit` swaps the data in with ``pm.set_data`` and
    reuses the compiled nutpie model through one :class:`CompileCache`.

    Parameters
    ----------
    n_samples, n_features, n_components : int
        Shape of every data set and number of components.
    priors : GMMPriors
        The fitter's priors (a deliberately wrong choice here mis-specifies the fitter).
    settings : SamplerSettings
    """

    def __init__(
        self,
        n_samples: int,
        n_features: int,
        n_components: int,
        *,
        priors: GMMPriors = SBC_PRIORS,
        settings: SamplerSettings | None = None,
    ) -> None:
        self.n_components = n_components
        self.priors = priors
        self.settings = settings or SamplerSettings()
        self.model = build_model(
            _placeholder_data(n_samples, n_features), n_components, priors=priors
        )
        self.cache = CompileCache()

    def fit(self, X: np.ndarray, *, random_seed: int) -> PosteriorFit:
        """Fit one data set (same shape as the model's data)."""
        em, em_info = fit_em(X, self.n_components, random_seed=random_seed)
        pm.set_data({"X": X}, model=self.model, coords={"obs_id": np.arange(X.shape[0])})
        idata = sample_posterior(
            self.model,
            em,
            **asdict(self.settings),
            random_seed=random_seed,
            progressbar=False,
            priors=self.priors,
            compile_cache=self.cache,
            check=False,
        )
        return PosteriorFit(get_group(idata, "posterior"), sampler_diagnostics(idata), em_info)


def draw_prior(
    priors: GMMPriors,
    n_draws: int,
    *,
    n_components: int = 2,
    n_features: int = 2,
    random_seed: Any = None,
) -> dict[str, np.ndarray]:
    """Parameters drawn from the model's own prior (``pm.draw`` on :func:`build_model`'s RVs).

    Returns
    -------
    dict
        ``weights (n_draws, K)``, ``means (n_draws, K, D)``, ``covariances (n_draws, K, D, D)``.
    """
    model = build_model(_placeholder_data(4, n_features), n_components, priors=priors)
    names = ("weights", "means", "covariances")
    values = pm.draw([model[n] for n in names], draws=n_draws, random_seed=random_seed)
    if n_draws == 1:
        values = [v[None] for v in values]
    return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}


def quantity_names(n_components: int, n_features: int) -> tuple[str, ...]:
    """Names of the label-invariant test quantities, in :func:`invariant_quantities` order."""
    weights = [f"sorted_weights[{k}]" for k in range(n_components)]
    means = [f"sorted_means[{k},{j}]" for k in range(n_components) for j in range(n_features)]
    return (*weights, *means, "log_likelihood", "log_predictive")


def invariant_quantities(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    X: np.ndarray,
    held_out: np.ndarray,
) -> np.ndarray:
    """Label-invariant quantities of parameter sets, ``(S, Q)``; see :func:`quantity_names`.

    Parameters
    ----------
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, D)
    covariances : ndarray of shape (S, K, D, D)
    X : ndarray of shape (N, D)
        The data whose log-likelihood is a quantity.
    held_out : ndarray of shape (D,)
        The point whose log predictive density is a quantity.
    """
    n_sets = weights.shape[0]
    order = np.argsort(means[:, :, 0], axis=1)
    sorted_means = np.take_along_axis(means, order[:, :, None], axis=1).reshape(n_sets, -1)
    rows = np.vstack([X, np.reshape(held_out, (1, -1))])
    log_dens = g.draw_log_density(rows, weights, means, covariances)
    return np.column_stack(
        [np.sort(weights, axis=1), sorted_means, log_dens[:, :-1].sum(axis=1), log_dens[:, -1]]
    )


def thin_indices(n_total: int, n_keep: int) -> np.ndarray:
    """``n_keep`` distinct indices evenly spaced over ``range(n_total)``."""
    if not 1 <= n_keep <= n_total:
        raise ValueError(f"n_keep must lie in [1, {n_total}], got {n_keep}.")
    return np.linspace(0, n_total - 1, n_keep).round().astype(np.int64)


def rank_draws(values: np.ndarray) -> int:
    """Draws to keep for ranking: the smallest bulk ESS over quantities, ``values (C, S, Q)``."""
    ess = min(float(az.ess(values[:, :, q], method="bulk")) for q in range(values.shape[2]))
    total = values.shape[0] * values.shape[1]
    return int(np.clip(np.floor(ess), 1, total)) if np.isfinite(ess) else 1


def rank_of_truth(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Number of draws below the truth, per quantity: ``draws (L, Q)``, ``truth (Q,)``."""
    return np.sum(draws < truth[None, :], axis=0)


def fractional_ranks(
    ranks: np.ndarray, n_draws: np.ndarray | int, rng: np.random.Generator
) -> np.ndarray:
    """Randomised fractional ranks ``(rank + U(0, 1)) / (L + 1)``.

    A rank uniform on ``{0, ..., L}`` gives an exactly ``Uniform(0, 1)`` value, so simulations
    thinned to different ``L`` can be pooled.
    """
    ranks = np.asarray(ranks, dtype=float)
    return (ranks + rng.uniform(size=ranks.shape)) / (np.asarray(n_draws) + 1.0)


def covered(u: np.ndarray, level: float) -> np.ndarray:
    """Whether the truth lies in the central ``level`` interval, from its posterior quantile."""
    return np.abs(np.asarray(u) - 0.5) <= level / 2.0


@dataclass(frozen=True)
class Simulation:
    """One simulated data set, the parameters behind it and a held-out point."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    X: np.ndarray
    held_out: np.ndarray


def simulate(parameters: dict[str, np.ndarray], n_samples: int, *, random_seed: Any) -> Simulation:
    """``n_samples`` rows and one held-out row drawn from the mixture ``parameters``."""
    sim = simulate_mixture(
        n_samples + 1,
        weights=parameters["weights"],
        means=parameters["means"],
        covariances=parameters["covariances"],
        random_state=np.random.default_rng(random_seed),
    )
    return Simulation(sim.weights, sim.means, sim.covariances, sim.X[:-1], sim.X[-1])


def _draw_arrays(posterior: xr.Dataset) -> list[np.ndarray]:
    """Weights, means and covariances with chain and draw flattened (chain-major)."""
    return posterior_draws(posterior, ("weights", "means", "covariances"))


def _ranks_of(fit: PosteriorFit, sim: Simulation, rng: np.random.Generator) -> dict[str, Any]:
    """Ranks of the true quantities among posterior draws thinned to about their ESS."""
    values = invariant_quantities(*_draw_arrays(fit.posterior), sim.X, sim.held_out)
    n_chains = fit.posterior.sizes["chain"]
    n_keep = rank_draws(values.reshape(n_chains, -1, values.shape[1]))
    truth = invariant_quantities(
        sim.weights[None], sim.means[None], sim.covariances[None], sim.X, sim.held_out
    )[0]
    ranks = rank_of_truth(values[thin_indices(values.shape[0], n_keep)], truth)
    return {
        "n_rank_draws": n_keep,
        "ranks": ranks.tolist(),
        "fractional_ranks": fractional_ranks(ranks, n_keep, rng).tolist(),
    }


def _truth_record(sim: Simulation) -> dict[str, Any]:
    return {
        "weights": sim.weights.tolist(),
        "means": sim.means.tolist(),
        "covariances": sim.covariances.tolist(),
    }


def sbc_simulation(
    fitter: FitterLike, sim: Simulation, *, index: int, seed: np.random.SeedSequence
) -> dict[str, Any]:
    """Fit one simulated data set and rank its truth; a fit that fails is recorded as failed."""
    fit_seed, rank_seed = (int(s) for s in seed.generate_state(2))
    record: dict[str, Any] = {"index": index, "seed": fit_seed, "truth": _truth_record(sim)}
    start = time.perf_counter()
    try:
        fit = fitter.fit(sim.X, random_seed=fit_seed)
    except Exception as err:  # any failure is reported, never dropped
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        return record
    record.update(status="ok", em=fit.em, diagnostics=fit.diagnostics)
    record.update(_ranks_of(fit, sim, np.random.default_rng(rank_seed)))
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


@dataclass
class SBCResult:
    """Per-simulation records of a calibration run and what produced them.

    Each record has ``index``, ``seed``, ``truth``, ``status`` (``"ok"`` or ``"failed"``) and,
    when fitted, ``em``, ``diagnostics``, ``n_rank_draws``, ``ranks`` and ``fractional_ranks``
    (in :attr:`quantities` order), or ``error`` when not.
    """

    records: list[dict[str, Any]]
    quantities: tuple[str, ...]
    settings: dict[str, Any]

    def fractional_ranks(self, *, diagnostics_passed: bool = False) -> np.ndarray:
        """``(n, Q)`` fractional ranks of the fitted simulations (optionally only those whose
        sampler diagnostics passed)."""
        rows = [
            r["fractional_ranks"]
            for r in self.records
            if r["status"] == "ok" and (r["diagnostics"]["passed"] or not diagnostics_passed)
        ]
        return np.asarray(rows, dtype=float).reshape(len(rows), len(self.quantities))


def _fitter_settings(fitter: FitterLike, priors: GMMPriors) -> dict[str, Any]:
    """The priors of simulator and fitter, and the fitter's settings, for the record."""
    settings = getattr(fitter, "settings", None)
    return {
        "priors": asdict(priors),
        "fitter": type(fitter).__name__,
        "fitter_priors": asdict(getattr(fitter, "priors", priors)),
        "sampler": asdict(settings) if settings is not None else None,
        "em": EM_SETTINGS,
    }


def run_sbc(
    n_simulations: int,
    *,
    n_samples: int = 100,
    n_components: int = 2,
    n_features: int = 2,
    priors: GMMPriors = SBC_PRIORS,
    fitter: FitterLike | None = None,
    settings: SamplerSettings | None = None,
    random_seed: int = 0,
    progressbar: bool = True,
    tracker: Any = None,
) -> SBCResult:
    """Simulation-based calibration of the default fitting path.

    Parameters
    ----------
    n_simulations : int
    n_samples, n_components, n_features : int
        Size of every simulated data set (plus one held-out row) and of the mixture.
    priors : GMMPriors
        The simulator's priors: parameters are drawn from them.
    fitter : object with ``fit(X, *, random_seed) -> PosteriorFit``, optional
        Defaults to :class:`Fitter` with the same ``priors`` (a calibrated fitter); pass one
        with other priors to mis-specify it on purpose.
    settings : SamplerSettings, optional
        For the default fitter.
    random_seed : int
    progressbar : bool
    tracker : optional
        A progress tracker to advance instead of opening a bar (see :func:`run_validation`).

    Returns
    -------
    SBCResult
    """
    settings = settings or SamplerSettings()
    if fitter is None:
        fitter = Fitter(n_samples, n_features, n_components, priors=priors, settings=settings)
    prior_seed, *seeds = np.random.SeedSequence([random_seed, 0]).spawn(n_simulations + 1)
    truths = draw_prior(
        priors,
        n_simulations,
        n_components=n_components,
        n_features=n_features,
        random_seed=np.random.default_rng(prior_seed),
    )
    records = []
    with _maybe_bar(tracker, n_simulations, "SBC", progressbar) as bar:
        for i, seed in enumerate(seeds):
            bar.describe(f"SBC simulation {i + 1}/{n_simulations}")
            parameters = {name: values[i] for name, values in truths.items()}
            sim = simulate(parameters, n_samples, random_seed=seed.spawn(1)[0])
            records.append(sbc_simulation(fitter, sim, index=i, seed=seed))
            bar.advance()
    info = {
        "n_simulations": n_simulations,
        "n_samples": n_samples,
        "n_components": n_components,
        "n_features": n_features,
        "random_seed": random_seed,
        **_fitter_settings(fitter, priors),
    }
    return SBCResult(records, quantity_names(n_components, n_features), info)


def _maybe_bar(
    tracker: Any, total: int, description: str, enabled: bool
) -> contextlib.AbstractContextManager:
    """The caller's progress tracker, or a bar of our own."""
    if tracker is not None:
        return contextlib.nullcontext(tracker)
    return progress_bar(total, description, enabled=enabled)


def chi_square_uniformity(u: np.ndarray, n_bins: int | None = None) -> tuple[float, float, int]:
    """Chi-square test of ``Uniform(0, 1)`` on equal-width bins of ``u``.

    ``n_bins`` defaults to one bin per ten values (at least 2, at most 20), so every bin
    expects at least five values once there are ten or more.

    Returns
    -------
    statistic, p_value : float
    n_bins : int
    """
    u = np.asarray(u, dtype=float)
    if n_bins is None:
        n_bins = int(np.clip(u.size // 10, 2, 20))
    counts, _ = np.histogram(u, bins=n_bins, range=(0.0, 1.0))
    result = stats.chisquare(counts)
    return float(result.statistic), float(result.pvalue), n_bins


def ecdf_band(n_values: int, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band of the ECDF of ``n_values`` uniform values (Säilynoja et al.).

    Returns the evaluation points (``K = min(n, 100)`` interior points of a regular grid, fixed
    in advance as the band requires) and the band's lower and upper ECDF values there.
    """
    n_points = min(n_values, 100)
    eval_points = np.linspace(0.0, 1.0, n_points + 1)[1:-1]
    lower, upper = ecdf_confidence_band(
        n_values, eval_points, eval_points, prob=prob, method="optimized"
    )
    return eval_points, lower, upper


def ecdf_uniformity(u: np.ndarray, prob: float) -> tuple[bool, float]:
    """Whether the ECDF of ``u`` stays inside the simultaneous ``prob`` band of the uniform.

    Returns
    -------
    inside : bool
    max_abs_difference : float
        The largest ``|ECDF(z) - z|`` over the evaluation points.
    """
    u = np.sort(np.asarray(u, dtype=float))
    eval_points, lower, upper = ecdf_band(u.size, prob)
    ecdf = np.searchsorted(u, eval_points, side="right") / u.size
    inside = bool(np.all((ecdf >= lower) & (ecdf <= upper)))
    return inside, float(np.max(np.abs(ecdf - eval_points)))


def _coverage_test(hits: np.ndarray, level: float, alpha: float) -> dict[str, Any]:
    """Binomial test that ``hits`` (booleans) occur at rate ``level``."""
    n_hits, n = int(np.sum(hits)), int(np.size(hits))
    p_value = float(stats.binomtest(n_hits, n, level).pvalue)
    return {
        "level": level,
        "covered": n_hits,
        "n": n,
        "rate": n_hits / n,
        "p_value": p_value,
        "passed": p_value >= alpha,
    }


def calibration_tests(
    u: np.ndarray, names: Sequence[str], *, alpha: float = 0.05, levels=LEVELS
) -> dict[str, Any]:
    """Uniformity (chi-square, ECDF band) and interval coverage of fractional ranks.

    Parameters
    ----------
    u : ndarray of shape (n_simulations, n_quantities)
        Fractional ranks (:func:`fractional_ranks`).
    names : sequence of str
    alpha : float
        Family-wise level of each family of tests (chi-square, ECDF, coverage), Bonferroni
        over its tests: ``alpha / Q`` per quantity, ``alpha / (Q * len(levels))`` per coverage.

    Returns
    -------
    dict
        ``n``, per-quantity ``chi_square``, ``ecdf`` and ``coverage`` results, and ``passed``
        (``None`` when fewer than five simulations leave nothing to test).
    """
    u = np.asarray(u, dtype=float).reshape(-1, len(names))
    out: dict[str, Any] = {"n": int(u.shape[0]), "alpha": alpha}
    if u.shape[0] < MIN_SIMULATIONS:
        return {**out, "skipped": f"fewer than {MIN_SIMULATIONS} simulations", "passed": None}
    per_quantity, per_coverage = alpha / len(names), alpha / (len(names) * len(levels))
    chi2, ecdf, coverage = {}, {}, {}
    for q, name in enumerate(names):
        statistic, p_value, n_bins = chi_square_uniformity(u[:, q])
        chi2[name] = {"statistic": statistic, "p_value": p_value, "n_bins": n_bins}
        chi2[name]["passed"] = p_value >= per_quantity
        inside, deviation = ecdf_uniformity(u[:, q], 1.0 - per_quantity)
        ecdf[name] = {"inside_band": inside, "max_abs_difference": deviation, "passed": inside}
        coverage[name] = {
            f"{level:g}": _coverage_test(covered(u[:, q], level), level, per_coverage)
            for level in levels
        }
    out.update(chi_square=chi2, ecdf=ecdf, coverage=coverage)
    out["uniformity_passed"] = all(r["passed"] for r in (*chi2.values(), *ecdf.values()))
    out["coverage_passed"] = all(c["passed"] for r in coverage.values() for c in r.values())
    out["passed"] = out["uniformity_passed"] and out["coverage_passed"]
    return out


def summarize_sbc(result: SBCResult, *, alpha: float = 0.05) -> dict[str, Any]:
    """Counts and :func:`calibration_tests` over all fitted simulations and over those whose
    sampler diagnostics passed."""
    records = result.records
    fitted = [r for r in records if r["status"] == "ok"]
    counts = {
        "simulations": len(records),
        "fitted": len(fitted),
        "failed": len(records) - len(fitted),
        "failed_indices": [r["index"] for r in records if r["status"] != "ok"],
        "em_collapsed": sum("CollapsedComponentWarning" in r["em"]["warnings"] for r in fitted),
        "diagnostics_passed": sum(r["diagnostics"]["passed"] for r in fitted),
        "with_divergences": sum(r["diagnostics"]["divergences"] > 0 for r in fitted),
        "median_rank_draws": float(np.median([r["n_rank_draws"] for r in fitted]))
        if fitted
        else 0.0,
    }
    return {
        "counts": counts,
        "all": calibration_tests(result.fractional_ranks(), result.quantities, alpha=alpha),
        "diagnostics_passed": calibration_tests(
            result.fractional_ranks(diagnostics_passed=True), result.quantities, alpha=alpha
        ),
    }


def relabel_to_truth(
    posterior: xr.Dataset, means: np.ndarray, covariances: np.ndarray
) -> xr.Dataset:
    """The posterior with every draw's components matched to the true components."""
    perm = match_to_reference(
        posterior["means"].transpose("chain", "draw", "component", "feature").values,
        posterior["covariances"].transpose("chain", "draw", "component", ...).values,
        np.asarray(means),
        np.asarray(covariances),
    )
    return apply_permutations(posterior, perm)


def _truth_quantiles(posterior: xr.Dataset, truth: dict[str, np.ndarray]) -> np.ndarray:
    """Posterior quantile of every true weight and mean, ``(K + K * D,)``."""
    weights, means = posterior_draws(posterior, ("weights", "means"))
    values = np.column_stack([weights, means.reshape(means.shape[0], -1)])
    target = np.concatenate([np.ravel(truth["weights"]), np.ravel(truth["means"])])
    return np.mean(values < target[None, :], axis=0)


def _truth_names(n_components: int, n_features: int) -> list[str]:
    weights = [f"weights[{k}]" for k in range(n_components)]
    return weights + [f"means[{k},{j}]" for k in range(n_components) for j in range(n_features)]


def _truth_dataset(
    fitter: FitterLike, truth: dict[str, np.ndarray], n_samples: int, seed: np.random.SeedSequence
) -> dict[str, Any]:
    """Simulate one data set at the truth, fit it, and return the truth's posterior quantiles."""
    data_seed, fit_seed = seed.spawn(2)
    sim = simulate(truth, n_samples, random_seed=data_seed)
    try:
        fit = fitter.fit(sim.X, random_seed=int(fit_seed.generate_state(1)[0]))
    except Exception as err:  # any failure is reported, never dropped
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    relabelled = relabel_to_truth(fit.posterior, truth["means"], truth["covariances"])
    quantiles = _truth_quantiles(relabelled, truth)
    return {"status": "ok", "diagnostics": fit.diagnostics, "quantiles": quantiles.tolist()}


def truth_coverage(
    n_datasets: int = 50,
    *,
    truth: dict[str, Any] | None = None,
    n_samples: int = 100,
    fitter: FitterLike | None = None,
    priors: GMMPriors = SBC_PRIORS,
    settings: SamplerSettings | None = None,
    level: float = 0.9,
    alpha: float = 0.05,
    random_seed: int = 0,
    progressbar: bool = True,
    tracker: Any = None,
) -> dict[str, Any]:
    """Coverage of central posterior intervals at fixed, known parameters.

    Every data set is simulated from ``truth`` and fitted; the posterior is relabelled to the
    true components and the central ``level`` interval of every weight and mean is checked
    against the truth. A binomial test per parameter (Bonferroni over parameters) compares the
    coverage rate with ``level``.

    Parameters
    ----------
    n_datasets : int
    truth : dict, optional
        ``weights``, ``means``, ``covariances``; defaults to :data:`FIXED_TRUTH`.
    n_samples : int
    fitter, priors, settings
        As in :func:`run_sbc`.
    level, alpha : float
    random_seed : int
    progressbar : bool
    tracker : optional

    Returns
    -------
    dict
        ``truth``, ``level``, ``datasets`` (per data set: status, diagnostics, the truth's
        posterior quantiles), ``tests`` (per parameter), ``pooled_rate``, ``failed``, ``passed``.
    """
    truth = {k: np.asarray(v, dtype=float) for k, v in (truth or FIXED_TRUTH).items()}
    n_components, n_features = truth["means"].shape
    if fitter is None:
        fitter = Fitter(n_samples, n_features, n_components, priors=priors, settings=settings)
    seeds = np.random.SeedSequence([random_seed, 1]).spawn(n_datasets)
    datasets = []
    with _maybe_bar(tracker, n_datasets, "coverage", progressbar) as bar:
        for i, seed in enumerate(seeds):
            bar.describe(f"coverage data set {i + 1}/{n_datasets}")
            datasets.append({"index": i, **_truth_dataset(fitter, truth, n_samples, seed)})
            bar.advance()
    return _coverage_summary(datasets, truth, level, alpha)


def _coverage_summary(
    datasets: list[dict[str, Any]], truth: dict[str, np.ndarray], level: float, alpha: float
) -> dict[str, Any]:
    names = _truth_names(*truth["means"].shape)
    quantiles = np.asarray(
        [d["quantiles"] for d in datasets if d["status"] == "ok"], dtype=float
    ).reshape(-1, len(names))
    hits = covered(quantiles, level)
    out: dict[str, Any] = {
        "truth": {k: v.tolist() for k, v in truth.items()},
        "level": level,
        "alpha": alpha,
        "names": names,
        "datasets": datasets,
        "failed": sum(d["status"] != "ok" for d in datasets),
    }
    if hits.shape[0] < MIN_SIMULATIONS:
        return {**out, "skipped": f"fewer than {MIN_SIMULATIONS} data sets", "passed": None}
    tests = {n: _coverage_test(hits[:, j], level, alpha / len(names)) for j, n in enumerate(names)}
    out.update(tests=tests, pooled_rate=float(hits.mean()))
    out["passed"] = all(t["passed"] for t in tests.values())
    return out


def plot_rank_ecdfs(
    u: np.ndarray,
    names: Sequence[str],
    *,
    prob: float,
    u_subset: np.ndarray | None = None,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """ECDF-difference plots of fractional ranks, one panel per quantity, with the band.

    Parameters
    ----------
    u : ndarray of shape (n_simulations, n_quantities)
    names : sequence of str
    prob : float
        Simultaneous probability of the band (the level of :func:`ecdf_uniformity`).
    u_subset : ndarray, optional
        Fractional ranks of a subset (e.g. simulations whose diagnostics passed), drawn as a
        line without its own band.
    axes : array of matplotlib Axes, optional
        At least ``len(names)``; a new figure's grid by default.

    Returns
    -------
    ndarray of matplotlib Axes
    """
    if axes is None:
        n_cols = min(4, len(names))
        n_rows = -(-len(names) // n_cols)
        figure = Figure(figsize=(3.2 * n_cols, 2.7 * n_rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(n_rows, n_cols, squeeze=False).ravel())
    eval_points, _, _ = ecdf_band(u.shape[0], prob)
    for q, (name, ax) in enumerate(zip(names, axes, strict=False)):
        az.plot_ecdf(
            u[:, q],
            eval_points=eval_points,
            cdf=stats.uniform(0.0, 1.0).cdf,
            difference=True,
            confidence_bands="optimized",
            ci_prob=prob,
            ax=ax,
        )
        if u_subset is not None and len(u_subset):
            ecdf = np.searchsorted(np.sort(u_subset[:, q]), eval_points, side="right")
            ax.step(eval_points, ecdf / len(u_subset) - eval_points, color="C1", lw=1)
        ax.axhline(0.0, color="0.5", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("fractional rank")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return axes


def _overall(gates: dict[str, bool | None]) -> bool:
    """Passed: no gate failed and at least one was tested."""
    return all(v is not False for v in gates.values()) and any(v is True for v in gates.values())


def _assemble(sbc: SBCResult, coverage: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Tests, gates and records of a validation run as one JSON-ready dict."""
    family_alpha = alpha / N_TEST_FAMILIES
    summary = summarize_sbc(sbc, alpha=family_alpha)
    gates = {
        "sbc_all": summary["all"]["passed"],
        "sbc_diagnostics_passed": summary["diagnostics_passed"]["passed"],
        "coverage_at_truth": coverage["passed"],
    }
    return {
        "passed": _overall(gates),
        "gates": gates,
        "alpha": alpha,
        "family_alpha": family_alpha,
        "sbc": {
            "settings": sbc.settings,
            "quantities": list(sbc.quantities),
            **summary,
            "simulations": sbc.records,
        },
        "coverage": coverage,
    }


def run_validation(
    n_simulations: int = 100,
    *,
    n_datasets: int = 50,
    out_dir: str | Path | None = None,
    n_samples: int = 100,
    settings: SamplerSettings | None = None,
    fitter: FitterLike | None = None,
    alpha: float = 0.05,
    random_seed: int = 0,
    progressbar: bool = True,
) -> dict[str, Any]:
    """SBC and coverage at a known truth (D=2, K=2) with one compiled model.

    ``alpha`` is the overall level: it is split equally (Bonferroni) over the seven families of
    tests (chi-square, ECDF band and interval coverage, each over all simulations and over
    those whose diagnostics passed, and the coverage at the truth), so a calibrated posterior
    fails the run with probability at most ``alpha``.

    Parameters
    ----------
    n_simulations, n_datasets : int
        SBC simulations; data sets simulated at :data:`FIXED_TRUTH`.
    out_dir : str or Path, optional
        Where to write ``results.json`` and ``rank_ecdfs.png``.
    n_samples : int
    settings : SamplerSettings, optional
    fitter : optional
        Replaces the default :class:`Fitter` (with :data:`SBC_PRIORS` and ``settings``).
    alpha : float
    random_seed : int
    progressbar : bool

    Returns
    -------
    dict
        ``passed``, ``gates``, ``sbc`` (settings, counts, tests, per-simulation records),
        ``coverage`` (:func:`truth_coverage`) and ``seconds``.
    """
    start = time.perf_counter()
    if fitter is None:
        fitter = Fitter(n_samples, 2, 2, priors=SBC_PRIORS, settings=settings)
    with progress_bar(n_simulations + n_datasets, "validation", enabled=progressbar) as bar:
        sbc = run_sbc(
            n_simulations, n_samples=n_samples, fitter=fitter, random_seed=random_seed, tracker=bar
        )
        coverage = truth_coverage(
            n_datasets,
            n_samples=n_samples,
            fitter=fitter,
            alpha=alpha / N_TEST_FAMILIES,
            random_seed=random_seed,
            tracker=bar,
        )
    results = _assemble(sbc, coverage, alpha)
    results["seconds"] = round(time.perf_counter() - start, 1)
    if out_dir is not None:
        write_outputs(results, sbc, out_dir)
    return results


def write_outputs(results: dict[str, Any], sbc: SBCResult, out_dir: str | Path) -> None:
    """``results.json`` and ``rank_ecdfs.png`` (bands at the ECDF test's level) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=json_default))
    u = sbc.fractional_ranks()
    if u.shape[0] < MIN_SIMULATIONS:
        return
    prob = 1.0 - results["family_alpha"] / len(sbc.quantities)
    axes = plot_rank_ecdfs(
        u, sbc.quantities, prob=prob, u_subset=sbc.fractional_ranks(diagnostics_passed=True)
    )
    figure = axes[0].figure
    figure.suptitle(
        f"SBC rank ECDF - uniform, {u.shape[0]} simulations (band: simultaneous {prob:.4f}; "
        "orange: diagnostics passed)",
        fontsize=10,
    )
    figure.savefig(out / "rank_ecdfs.png", dpi=90)


def _calibration_lines(title: str, tests: dict[str, Any]) -> list[str]:
    if tests["passed"] is None:
        return [f"{title}: n={tests['n']}, not tested ({tests['skipped']})"]
    lines = [
        f"{title}: n={tests['n']}, {'PASS' if tests['passed'] else 'FAIL'}",
        f"  {'quantity':<22} {'chi2 p':>8} {'ECDF':>5} {'cov50':>6} {'p':>7} {'cov90':>6} {'p':>7}",
    ]
    for name, chi2 in tests["chi_square"].items():
        cov = tests["coverage"][name]
        band = "ok" if tests["ecdf"][name]["inside_band"] else "OUT"
        lines.append(
            f"  {name:<22} {chi2['p_value']:>8.3g} {band:>5} "
            + " ".join(f"{c['rate']:>6.2f} {c['p_value']:>7.3g}" for c in cov.values())
        )
    return lines


def format_summary(results: dict[str, Any]) -> str:
    """A plain-text summary of :func:`run_validation`'s results."""
    sbc, coverage = results["sbc"], results["coverage"]
    c = sbc["counts"]
    lines = [
        f"Simulation-based calibration: {c['simulations']} simulations, {c['fitted']} fitted, "
        f"{c['failed']} failed {c['failed_indices']}, {c['em_collapsed']} with a collapsed EM "
        "component, "
        f"{c['diagnostics_passed']} passed the sampler diagnostics, {c['with_divergences']} "
        f"with divergences; median draws ranked {c['median_rank_draws']:g}.",
        f"Level: {results['alpha']:g} overall, {results['family_alpha']:.4g} per family of tests "
        "(Bonferroni over quantities within each).",
        *_calibration_lines("All fitted simulations", sbc["all"]),
        *_calibration_lines("Simulations whose diagnostics passed", sbc["diagnostics_passed"]),
    ]
    if coverage["passed"] is None:
        lines.append(f"Coverage at the truth: not tested ({coverage['skipped']})")
    else:
        lines.append(
            f"Coverage at the truth ({coverage['level']:g} intervals, "
            f"{len(coverage['datasets'])} data sets, {coverage['failed']} failed): pooled rate "
            f"{coverage['pooled_rate']:.3f}, {'PASS' if coverage['passed'] else 'FAIL'}"
        )
        for name, test in coverage["tests"].items():
            lines.append(f"  {name:<12} rate {test['rate']:.2f}  p {test['p_value']:.3g}")
    lines.append(f"Overall: {'PASS' if results['passed'] else 'FAIL'} ({results['seconds']} s)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bayesgmm.validation",
        description="Simulation-based calibration and coverage of bayesgmm's posterior "
        "(D=2, K=2). Exits 0 when every test passes.",
    )
    parser.add_argument("--simulations", type=int, default=100, help="SBC simulations")
    parser.add_argument(
        "--coverage-datasets", type=int, default=50, help="data sets simulated at the fixed truth"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("validation"),
        help="directory for results.json and rank_ecdfs.png",
    )
    parser.add_argument("--n-samples", type=int, default=100, help="rows per data set")
    parser.add_argument("--draws", type=int, default=SamplerSettings.draws)
    parser.add_argument("--tune", type=int, default=SamplerSettings.tune)
    parser.add_argument("--chains", type=int, default=SamplerSettings.chains)
    parser.add_argument("--alpha", type=float, default=0.05, help="overall level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the validation, write its outputs, print a summary; 0 if it passed, 1 if not."""
    args = _parser().parse_args(argv)
    results = run_validation(
        args.simulations,
        n_datasets=args.coverage_datasets,
        out_dir=args.out,
        n_samples=args.n_samples,
        settings=SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains),
        alpha=args.alpha,
        random_seed=args.seed,
        progressbar=not args.no_progress,
    )
    print(format_summary(results))
    print(f"Results: {args.out / 'results.json'}, {args.out / 'rank_ecdfs.png'}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
