"""Whole EM iterations in one compiled call, for the models whose M-step is compiled already.

The sweep's em-EM runs thousands of short EM iterations on small data, where the Python around
each E-step (the M-step's NumPy calls, the precision factors, the run's bookkeeping) cost two to
four times the E-step itself. For the models whose covariance update is a closed form or one of
the compiled rules of :mod:`bayesgmm._mstep` (EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, VVV),
:func:`iterate` runs the iterations of :meth:`bayesgmm.em.EMGaussianMixture._advance` inside one
Numba call: the E-step of :mod:`bayesgmm._emloop`, the M-step of :func:`bayesgmm._mstep.m_step`
by the same compiled rules, the precision factors of :mod:`bayesgmm._gaussian` and the same
convergence test. NumPy's sums are pairwise (:func:`_numpy_sum` repeats their order), so every
number is bit for bit the Python loop's (``tests/test_fastem.py``).

An iteration whose M-step would fail (a covariance that is singular or not finite) is not
taken: :func:`iterate` stops before it, and the caller runs that iteration in Python, which
raises the error with its message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numba
import numpy as np

from . import _gaussian as g
from . import _mstep
from ._emloop import _statistics

__all__ = ["MODEL_CODES", "advance", "iterate"]

MODEL_CODES = {
    "EII": 0,
    "VII": 1,
    "EEI": 2,
    "VEI": 3,
    "EVI": 4,
    "VVI": 5,
    "EEE": 6,
    "VEE": 7,
    "VVV": 8,
}
_BLOCK = 128  # NumPy's pairwise summation block (PW_BLOCKSIZE)


@numba.njit(cache=True, error_model="numpy")
def _numpy_sum(a):  # pragma: no cover - compiled
    """``a.sum()`` of a contiguous 1-D array in NumPy's order (pairwise, 8 partial sums)."""
    n = a.shape[0]
    if n < 8:
        total = 0.0
        for i in range(n):
            total += a[i]
        return total
    if n > _BLOCK:
        half = n // 2
        half -= half % 8
        return _numpy_sum(a[:half]) + _numpy_sum(a[half:])
    r = a[:8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        total += a[i]
        i += 1
    return total


@numba.njit(cache=True, error_model="numpy")
def _diagonal_covariances(scatter, nk, model, volumes, tol):  # pragma: no cover - compiled
    """The covariances ``(K, D)`` of the diagonal models (spherical ones repeat their value)."""
    n_components, n_features = scatter.shape
    out = np.empty_like(scatter)
    if model == 0:  # EII
        out[:] = _numpy_sum(scatter.ravel()) / (_numpy_sum(nk) * n_features)
    elif model == 1:  # VII
        for k in range(n_components):
            out[k] = _numpy_sum(scatter[k]) / (nk[k] * n_features)
    elif model == 2:
        out = _mstep._rule_ee(scatter, nk)
    elif model == 3:
        out, volumes = _mstep._rule_ve(scatter, nk, volumes, tol, _mstep._INNER_MAX)
    elif model == 4:
        out = _mstep._rule_ev(scatter, nk)
    else:
        out = _mstep._rule_vv(scatter, nk)
    return out, volumes


@numba.njit(cache=True, error_model="numpy")
def _full_covariances(scatter, nk, model, volumes, tol):  # pragma: no cover - compiled
    """The covariances ``(K, D, D)`` (``(1, D, D)`` for EEE) of EEE, VEE and VVV; ``failed``."""
    n_components = scatter.shape[0]
    if model == 6:  # EEE
        out = scatter[:1].copy()
        for k in range(1, n_components):
            out[0] = out[0] + scatter[k]
        return out / _numpy_sum(nk), volumes, False
    if model == 7:  # VEE
        common, volumes, failed = _mstep._vee_loop(scatter, nk, volumes, tol, _mstep._INNER_MAX)
        out = np.empty_like(scatter)
        for k in range(n_components):
            out[k] = volumes[k] * common
        return out, volumes, failed
    out = np.empty_like(scatter)
    for k in range(n_components):
        out[k] = scatter[k] / nk[k]
    return out, volumes, False


@numba.njit(cache=True, error_model="numpy")
def _m_step(stats, means, model, regularisation, volumes, inner_tol):  # pragma: no cover
    """:func:`bayesgmm._mstep.m_step` and the precision factors: weights, means, covariances
    (``(K, D)`` diagonal or ``(K or 1, D, D)``), factors (``(K, D or 1, 1)`` or like the
    covariances), volumes, and whether it failed (then nothing else is meaningful)."""
    _, resp_sum, first, second = stats
    nk = resp_sum + _mstep.NK_FLOOR
    tol = inner_tol * 2.0 * _numpy_sum(nk)
    n_components, n_features = means.shape
    if model <= 5:
        new_means = np.empty_like(means)
        values = np.empty_like(means)  # the diagonal of the scatter matrices
        for k in range(n_components):
            for j in range(n_features):
                delta = first[k, j] / nk[k]
                new_means[k, j] = means[k, j] + delta
                values[k, j] = second[k, j, 0] - nk[k] * (delta * delta - regularisation[j])
        diagonal, volumes = _diagonal_covariances(values, nk, model, volumes, tol)
        covariances = diagonal.reshape((n_components, n_features, 1))
        factors = np.empty_like(covariances)
        failed = False
        for k in range(n_components):
            for j in range(n_features):
                value = covariances[k, j, 0]
                failed = failed or not (value > 0.0 and value < np.inf)
                factors[k, j, 0] = 1.0 / np.sqrt(value)
        if model <= 1:  # spherical: one value per component
            covariances, factors = covariances[:, :1].copy(), factors[:, :1].copy()
    else:
        new_means, scatter = _mstep._full_scatter(nk, first, second, means, regularisation)
        covariances, volumes, failed = _full_covariances(scatter, nk, model, volumes, tol)
        factors = np.empty_like(covariances)
        failed = failed or not np.isfinite(covariances).all()
        if not failed:
            failed = g._precision_factors_into(covariances, factors) >= 0
    return nk / _numpy_sum(nk), new_means, covariances, factors, volumes, failed


@numba.njit(cache=True, error_model="numpy")
def iterate(
    X, loc, scale, layout, block_rows, model, regularisation, inner_tol, params, volumes, state
):  # pragma: no cover - compiled
    """At most ``state[0]`` EM iterations from ``params`` (weights, means, factors as for
    :func:`bayesgmm._emloop._statistics`, covariances), each as the Python loop takes it.

    ``state`` is ``[n_iter, tol, lower_bound]`` on entry. Returns the parameters and volumes
    after the last iteration taken, the lower bound after each iteration taken, whether the
    last one converged, and whether the next one would fail (the caller runs it in Python).
    """
    weights, means, factors, covariances = params
    lower_bound = state[2]
    trace = np.empty(int(state[0]))
    taken = 0
    converged = False
    failed = False
    while taken < trace.shape[0]:
        stats = _statistics(X, loc, scale, weights, means, factors, layout, block_rows)
        step = _m_step(stats, means, model, regularisation, volumes, inner_tol)
        if step[5]:
            failed = True
            break
        previous = lower_bound
        lower_bound = stats[0] / X.shape[0]
        trace[taken] = lower_bound
        taken += 1
        weights, means, covariances, factors, volumes = step[0], step[1], step[2], step[3], step[4]
        if abs(lower_bound - previous) < state[1]:
            converged = True
            break
    return (weights, means, factors, covariances), volumes, trace[:taken], converged, failed


_NO_VOLUMES = np.empty(0)


def _as_blocks(array: np.ndarray, layout: str) -> np.ndarray:
    """Precision factors or covariances of ``layout`` as the 3-D blocks :func:`iterate` takes."""
    if layout in ("diag", "spherical"):
        array = np.reshape(array, (array.shape[0], -1, 1))
    elif layout == "tied":
        array = array[None]
    return np.ascontiguousarray(array, dtype=np.float64)


def _from_blocks(array: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of :func:`_as_blocks`."""
    if layout == "spherical":
        return array.reshape(array.shape[0])
    if layout == "diag":
        return array.reshape(array.shape[:2])
    return array[0] if layout == "tied" else array


def advance(small: Any, run: Any, n_iter: int, em: Any) -> None:
    """At most ``n_iter`` EM iterations of ``run`` (a :class:`bayesgmm.em._Run`) of the fit
    ``em`` by :func:`iterate`, updating it in place as the Python loop would; it stops before
    an iteration that would fail, for the caller to run that one. Nothing for a model without
    a code in :data:`MODEL_CODES`, a converged run, or VEI and VEE from given parameters
    (no volumes to start their M-step from: the Python loop computes them).

    ``small`` is the fit's :class:`bayesgmm._emloop.SmallLoop`.
    """
    model, p, layout = em.model_name_, run.params, small.layout
    warm = p.warm.volumes if p.warm is not None and p.warm.volumes is not None else _NO_VOLUMES
    fresh = model in ("VEI", "VEE") and warm.size == 0  # given parameters: Python's start
    if model not in MODEL_CODES or run.converged or n_iter <= 0 or fresh:
        return
    regularisation = em.reg_covar * em._unit_variances
    params = (
        np.ascontiguousarray(p.weights, dtype=np.float64),
        np.ascontiguousarray(p.means, dtype=np.float64),
        _as_blocks(p.precisions_chol, layout),
        _as_blocks(p.covariances, layout),
    )
    out, volumes, trace, converged, _ = iterate(
        small.X, small.loc, small.scale, small.code, small.block_rows, MODEL_CODES[model],
        np.ascontiguousarray(regularisation, dtype=np.float64), em._inner_tol, params,
        np.ascontiguousarray(warm, dtype=np.float64),
        np.array([n_iter, em.tol, run.lower_bound], dtype=np.float64),
    )  # fmt: skip
    if trace.size == 0:
        return
    weights, means, factors, covariances = out
    run.params = replace(
        p,
        weights=weights,
        means=means,
        precisions_chol=_from_blocks(factors, layout),
        covariances=_from_blocks(covariances, layout),
        warm=_mstep.Warm(volumes=volumes) if model in ("VEI", "VEE") else None,
    )
    run.lower_bound = float(trace[-1])
    run.trace.extend(trace.tolist())
    run.n_iter += trace.size
    run.converged = bool(converged)
