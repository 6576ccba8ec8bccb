"""Compile bayesgmm's Numba kernels before a fit needs them (``bayesgmm cache --warm``).

A kernel compiles the first time it is called with a new signature (a minute or more for EM's
whole iterations and for the log density), then loads from the on-disk cache in every later
process (:mod:`bayesgmm._numba_cache`). After an install or an upgrade, the first fit pays
that compile. Warming pays it ahead, e.g. in a container image build or before a test suite
whose workers would otherwise compile the same kernels at once: each part runs small fits
through one half of the package, the parts in processes of their own, side by side.
"""

from __future__ import annotations

import multiprocessing
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor

import numpy as np

__all__ = ["PARTS", "warm"]


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small data with some structure: rows, rows with missing cells, frequency weights."""
    from .datasets import simulate_mixture

    X = simulate_mixture(
        80,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0, 0.0], [4.0, 1.0, -2.0]],
        covariances=[np.eye(3), [[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]]],
        random_state=0,
    ).X
    holes = X.copy()
    holes[::9, 0] = np.nan
    holes[4::9, 2] = np.nan
    weights = np.random.default_rng(0).integers(1, 4, size=X.shape[0]).astype(np.float64)
    return X, holes, weights


def warm_em() -> None:
    """EM: the sweep over every covariance model (its starts, em-EM's compiled iterations,
    the merge pass), fits with missing cells and with weights, predictions, and the E-step's
    parallel engine."""
    from . import _kernels
    from .em import EMGaussianMixture
    from .selection import em_sweep

    X, holes, weights = _data()
    em_sweep(X, range(1, 4), "all", progress=False, random_state=0)
    EMGaussianMixture(2, random_state=0).fit(holes).predict_proba(holes)
    fit = EMGaussianMixture(2, random_state=0).fit(X, sample_weight=weights)
    fit.score_samples(X)
    _kernels.e_step(X, fit._unit_mixture(), block_rows=32, engine="parallel")


def warm_bayes() -> None:
    """The Bayesian half: the log density and its gradient for complete, weighted and
    incomplete rows, the compiled leapfrog steps of the samplers after NUTS, then the default
    path on small data (the posterior mode's search, the whitened density, the pointwise
    log-likelihood)."""
    from ._logdensity import log_density_for
    from .bayesian import BayesianGMM
    from .model import build_model

    X, holes, weights = _data()
    model = build_model(X, 2)
    density = log_density_for(model)
    size = sum(int(np.size(v)) for v in model.initial_point().values())
    x = np.full(size, 0.1)
    _, grad = density(x, np.ascontiguousarray(X))
    unit = np.eye(size)
    density.leapfrog(np.ascontiguousarray(X))(x, np.zeros(size), grad, unit, unit, 0.01, 1)
    density(x, density.rows(X, weights, collapse=False))
    density(x, density.rows(holes, None, collapse=False))
    BayesianGMM(2, draws=20, tune=20, chains=2, random_seed=0, progressbar=False).fit(X)


PARTS: dict[str, Callable[[], None]] = {"em": warm_em, "bayes": warm_bayes}


def _run(part: str) -> float:
    """Run one part quietly; its wall time in seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small fits warn of what does not matter here
        PARTS[part]()
    return time.perf_counter() - start


def warm(parts: Iterable[str] = tuple(PARTS), jobs: int = 2) -> dict[str, float]:
    """Compile the kernels of ``parts`` (default: all), in up to ``jobs`` processes at once.

    Parameters
    ----------
    parts : iterable of {"em", "bayes"}
    jobs : int
        Processes side by side (1: in this process, one part after the other).

    Returns
    -------
    dict
        Each part's wall time in seconds, in the order of ``parts``.
    """
    parts = list(parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown warm-up part(s) {unknown}: choose from {sorted(PARTS)}")
    if jobs <= 1 or len(parts) == 1:
        return {part: _run(part) for part in parts}
    context = multiprocessing.get_context("spawn")  # no forked Numba or BLAS threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(parts)), mp_context=context) as pool:
        futures = {part: pool.submit(_run, part) for part in parts}
        return {part: future.result() for part, future in futures.items()}
