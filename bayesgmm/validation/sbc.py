"""Simulation-based calibration: simulate from the prior, fit, rank the truth, test the ranks."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from .._idata import posterior_draws
from .._progress import tracker_or_bar
from ..priors import GMMPriors
from .fitting import EM_SETTINGS, Fitter, FitterLike, PosteriorFit, SamplerSettings
from .ranks import (
    fractional_ranks,
    invariant_quantities,
    quantity_names,
    rank_draws,
    rank_of_truth,
    thin_indices,
)
from .simulation import DEFAULT_STUDY_PRIORS, Simulation, draw_prior, simulate
from .uniformity import calibration_tests


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
    """Fit one simulated data set and rank its truth; a fit that fails is recorded as failed.

    Parameters
    ----------
    fitter : object with ``fit(X, *, random_seed) -> PosteriorFit``
        E.g. :class:`Fitter`.
    sim : Simulation
        The data set and its truth.
    index : int
        Position of the simulation in the run, for the record.
    seed : numpy.random.SeedSequence
        Gives the fit's seed and the seed of the fractional ranks' jitter.

    Returns
    -------
    dict
        One record of :class:`SBCResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import FIXED_TRUTH, sbc_simulation, simulate
    >>> class Broken:  # a fitter that always fails
    ...     def fit(self, X, *, random_seed):
    ...         raise RuntimeError("no convergence")
    >>> sim = simulate(FIXED_TRUTH, 50, random_seed=0)
    >>> record = sbc_simulation(Broken(), sim, index=0, seed=np.random.SeedSequence(0))
    >>> record["status"], record["error"]
    ('failed', 'RuntimeError: no convergence')
    """
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

    Examples
    --------
    >>> from bayesgmm.validation import SBCResult
    >>> ok = {"status": "ok", "diagnostics": {"passed": False}, "fractional_ranks": [0.2, 0.7]}
    >>> result = SBCResult([ok, {"status": "failed"}], ("a", "b"), {})
    >>> result.fractional_ranks()  # the fitted simulations
    array([[0.2, 0.7]])
    >>> result.fractional_ranks(diagnostics_passed=True).shape
    (0, 2)
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


def _draw_truths(
    priors: GMMPriors, n_simulations: int, n_components: int, n_features: int, random_seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[np.random.SeedSequence]]:
    """The true parameters of every simulation, drawn from ``priors``; the parameters its
    held-out point is drawn from, drawn from ``priors`` independently of the truth (a point
    drawn from the truth would favour it: see :func:`simulate`); and one seed for each."""
    prior_seed, *seeds = np.random.SeedSequence([random_seed, 0]).spawn(n_simulations + 1)
    held_out_seed = np.random.SeedSequence([random_seed, 1])
    truths, held_out = (
        draw_prior(
            priors,
            n_simulations,
            n_components=n_components,
            n_features=n_features,
            random_seed=np.random.default_rng(seed),
        )
        for seed in (prior_seed, held_out_seed)
    )
    return truths, held_out, seeds


def _fit_simulations(
    fitter: FitterLike,
    truths: dict[str, np.ndarray],
    held_out: dict[str, np.ndarray],
    seeds: list[np.random.SeedSequence],
    *,
    n_samples: int,
    tracker: Any,
) -> list[dict[str, Any]]:
    """Simulate a data set at every truth (its held-out point from ``held_out``'s parameters),
    fit it and rank its truth (:func:`sbc_simulation`)."""
    records = []
    for i, seed in enumerate(seeds):
        tracker.describe(f"SBC simulation {i + 1}/{len(seeds)}")
        parameters, other = ({name: v[i] for name, v in p.items()} for p in (truths, held_out))
        sim = simulate(parameters, n_samples, random_seed=seed.spawn(1)[0], held_out_from=other)
        records.append(sbc_simulation(fitter, sim, index=i, seed=seed))
        tracker.advance()
    return records


def run_sbc(
    n_simulations: int,
    *,
    n_samples: int = 100,
    n_components: int = 2,
    n_features: int = 2,
    priors: GMMPriors = DEFAULT_STUDY_PRIORS,
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
        The simulator's priors: parameters are drawn from them (:data:`DEFAULT_STUDY_PRIORS`
        by default).
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

    Examples
    --------
    >>> from bayesgmm.validation import SamplerSettings, run_sbc, summarize_sbc
    >>> result = run_sbc(20, settings=SamplerSettings(draws=300, tune=300))  # doctest: +SKIP
    >>> summarize_sbc(result)["counts"]["fitted"]  # doctest: +SKIP
    """
    settings = settings or SamplerSettings()
    if fitter is None:
        fitter = Fitter(n_samples, n_features, n_components, priors=priors, settings=settings)
    truths, held_out, seeds = _draw_truths(
        priors, n_simulations, n_components, n_features, random_seed
    )
    with tracker_or_bar(tracker, n_simulations, "SBC", progressbar) as bar:
        records = _fit_simulations(
            fitter, truths, held_out, seeds, n_samples=n_samples, tracker=bar
        )
    info = {
        "n_simulations": n_simulations,
        "n_samples": n_samples,
        "n_components": n_components,
        "n_features": n_features,
        "random_seed": random_seed,
        **_fitter_settings(fitter, priors),
    }
    return SBCResult(records, quantity_names(n_components, n_features), info)


def summarize_sbc(result: SBCResult, *, alpha: float = 0.05) -> dict[str, Any]:
    """Counts and :func:`calibration_tests` over all fitted simulations and over those whose
    sampler diagnostics passed.

    Parameters
    ----------
    result : SBCResult
    alpha : float
        Family-wise level of each family of tests (see :func:`calibration_tests`).

    Returns
    -------
    dict
        ``counts`` (simulations, fitted, failed, EM collapses, diagnostics passed, ...), ``all``
        and ``diagnostics_passed`` (:func:`calibration_tests` results).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import SBCResult, summarize_sbc
    >>> ok = {"status": "ok", "em": {"warnings": []}, "n_rank_draws": 99,
    ...       "diagnostics": {"passed": True, "divergences": 0}}
    >>> u = np.random.default_rng(0).uniform(size=(20, 1))  # 20 simulations, 1 quantity
    >>> records = [{**ok, "index": i, "fractional_ranks": list(r)} for i, r in enumerate(u)]
    >>> summary = summarize_sbc(SBCResult(records, ("q",), {}))
    >>> summary["counts"]["fitted"], summary["all"]["passed"]
    (20, True)
    """
    records = result.records
    fitted = [r for r in records if r["status"] == "ok"]
    counts = {
        "simulations": len(records),
        "fitted": len(fitted),
        "failed": len(records) - len(fitted),
        "failed_indices": [r["index"] for r in records if r["status"] != "ok"],
        "em_collapsed": sum("CollapsedComponentWarning" in r["em"]["warnings"] for r in fitted),
        "diagnostics_passed": sum(r["diagnostics"]["passed"] for r in fitted),
        "with_divergences": sum((r["diagnostics"]["divergences"] or 0) > 0 for r in fitted),
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
