"""The whole study: SBC and coverage at a known truth with one compiled model, one level."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .._progress import progress_bar
from ..priors import GMMPriors
from .coverage import truth_coverage
from .fitting import Fitter, FitterLike, SamplerSettings
from .output import write_outputs
from .sbc import SBCResult, run_sbc, summarize_sbc
from .simulation import DEFAULT_STUDY_PRIORS

N_TEST_FAMILIES = 7


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
    priors: GMMPriors = DEFAULT_STUDY_PRIORS,
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
        Replaces the default :class:`Fitter` (with ``priors`` and ``settings``).
    priors : GMMPriors
        Of the simulator (and of the default fitter): :data:`DEFAULT_STUDY_PRIORS` (the
        package's default prior), or one of :data:`STUDY_PRIORS` (e.g. the HalfNormal
        ``STUDY_PRIORS["halfnormal"]``, which is :data:`SBC_PRIORS`).
    alpha : float
    random_seed : int
    progressbar : bool

    Returns
    -------
    dict
        ``passed``, ``gates``, ``sbc`` (settings, counts, tests, per-simulation records),
        ``coverage`` (:func:`truth_coverage`) and ``seconds``.

    Examples
    --------
    >>> from bayesgmm.validation import SamplerSettings, run_validation
    >>> settings = SamplerSettings(draws=300, tune=300)
    >>> results = run_validation(20, n_datasets=10, settings=settings)  # doctest: +SKIP
    >>> results["passed"], results["gates"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    if fitter is None:
        fitter = Fitter(n_samples, 2, 2, priors=priors, settings=settings)
    with progress_bar(n_simulations + n_datasets, "validation", enabled=progressbar) as bar:
        sbc = run_sbc(
            n_simulations,
            n_samples=n_samples,
            priors=priors,
            fitter=fitter,
            random_seed=random_seed,
            tracker=bar,
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
