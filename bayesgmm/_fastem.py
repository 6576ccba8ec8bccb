"""Whole EM iterations in one compiled call, for every covariance model.

The sweep's em-EM runs thousands of short EM iterations on small data, where the Python around
each E-step (the M-step's NumPy calls, the precision factors, the run's bookkeeping) cost two to
four times the E-step itself. For every model (:data:`MODEL_CODES`: the M-step's closed forms
and the compiled rules and loops of :mod:`bayesgmm._mstep`),
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
from . import _mstep, _numba_cache
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
    "EVE": 9,
    "VVE": 10,
    "EEV": 11,
    "VEV": 12,
    "EVV": 13,
}
_VOLUMES = ("VEI", "VEE", "VEV")  # models whose M-step starts from the previous volumes
_ORIENTATION = ("EVE", "VVE")  # ... from the previous common orientation and values
_BLOCK = 128  # NumPy's pairwise summation block (PW_BLOCKSIZE)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
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


# The two covariance steps are inlined into _m_step (same flags: the same arithmetic). As
# functions of their own, each compiled into a library that _m_step then linked and optimised
# again: a cold first fit took 83 s to compile, 70 s inlined (this 2-core machine).
@numba.njit(cache=True, error_model="numpy", fastmath=False, inline="always")
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


@numba.njit(cache=True, error_model="numpy", fastmath=False, inline="always")
def _full_covariances(scatter, nk, model, warm, tol):  # pragma: no cover - compiled
    """The covariances ``(K, D, D)`` (``(1, D, D)`` for EEE) of the models with full
    covariances, the next warm start ``(volumes, orientation, values)``, and ``failed``."""
    volumes, orientation, values = warm
    n_components = scatter.shape[0]
    out = np.empty_like(scatter)
    failed = False
    if model == 6:  # EEE
        out = scatter[:1].copy()
        for k in range(1, n_components):
            out[0] = out[0] + scatter[k]
        out = out / _numpy_sum(nk)
    elif model == 7:  # VEE
        common, volumes, failed = _mstep._vee_loop(scatter, nk, volumes, tol, _mstep._INNER_MAX)
        for k in range(n_components):
            out[k] = volumes[k] * common
    elif model == 8:  # VVV
        for k in range(n_components):
            out[k] = scatter[k] / nk[k]
    elif model <= 10:  # EVE, VVE
        orientation = orientation.copy()
        values = _mstep._orientation_loop(
            scatter, nk, orientation, values, model == 9, tol, _mstep._ORIENTATION_MAX
        )
        out = _mstep._rotate(
            orientation.reshape((1, orientation.shape[0], orientation.shape[1])), values
        )
    elif model <= 12:  # EEV, VEV
        eigenvalues, vectors = _mstep._eigh(scatter)
        if model == 11:
            out = _mstep._rotate(vectors, _mstep._rule_ee(eigenvalues, nk))
        else:
            eigenvalues, volumes = _mstep._rule_ve(eigenvalues, nk, volumes, tol, _mstep._INNER_MAX)
            out = _mstep._rotate(vectors, eigenvalues)
    else:  # EVV
        out, first_failed = _mstep._evv_rule(scatter, nk)
        failed = first_failed >= 0
    return out, (volumes, orientation, values), failed


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _m_step(stats, means, model, regularisation, warm, inner_tol):  # pragma: no cover
    """:func:`bayesgmm._mstep.m_step` and the precision factors: weights, means, covariances
    (``(K, D)`` diagonal or ``(K or 1, D, D)``), factors (``(K, D or 1, 1)`` or like the
    covariances), the next warm start ``(volumes, orientation, values)`` (empty arrays where the
    model has none), and whether it failed (then nothing else is meaningful)."""
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
        diagonal, volumes = _diagonal_covariances(values, nk, model, warm[0], tol)
        warm = (volumes, warm[1], warm[2])
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
        covariances, warm, failed = _full_covariances(scatter, nk, model, warm, tol)
        factors = np.empty_like(covariances)
        failed = failed or not np.isfinite(covariances).all()
        if not failed:
            failed = g._precision_factors_into(covariances, factors) >= 0
    return nk / _numpy_sum(nk), new_means, covariances, factors, warm, failed


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=False)  # em-EM's runs on threads
def iterate(
    X, loc, scale, layout, block_rows, model, regularisation, inner_tol, params, warm, state
):  # pragma: no cover - compiled
    """At most ``state[0]`` EM iterations from ``params`` (weights, means, factors as for
    :func:`bayesgmm._emloop._statistics`, covariances), each as the Python loop takes it.

    ``warm`` is the M-step's ``(volumes, orientation, values)``, ``state`` is ``[n_iter, tol,
    lower_bound]`` on entry. Returns the parameters and warm start
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
        step = _m_step(stats, means, model, regularisation, warm, inner_tol)
        if step[5]:
            failed = True
            break
        previous = lower_bound
        lower_bound = stats[0] / X.shape[0]
        trace[taken] = lower_bound
        taken += 1
        weights, means, covariances, factors, warm = step[0], step[1], step[2], step[3], step[4]
        if abs(lower_bound - previous) < state[1]:
            converged = True
            break
    return (weights, means, factors, covariances), warm, trace[:taken], converged, failed


def _warm_arrays(warm: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A :class:`bayesgmm._mstep.Warm` as :func:`iterate`'s contiguous arrays (empty: none)."""
    volumes = np.empty(0) if warm is None or warm.volumes is None else warm.volumes
    orientation, values = np.empty((0, 0)), np.empty((0, 0))
    if warm is not None and warm.orientation is not None:
        orientation, values = warm.orientation, warm.values
    return tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (volumes, orientation, values))


def _warm_start(model: str, volumes, orientation, values) -> Any:
    """The :class:`bayesgmm._mstep.Warm` the Python M-step of ``model`` returns."""
    if model in _VOLUMES:
        return _mstep.Warm(volumes=volumes)
    if model in _ORIENTATION:
        return _mstep.Warm(orientation=orientation, values=values)
    return None


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
    a code in :data:`MODEL_CODES`, a converged run, or an iterative M-step from given
    parameters (no warm start: the Python loop computes one).

    ``small`` is the fit's :class:`bayesgmm._emloop.SmallLoop`.
    """
    model, p, layout = em.model_name_, run.params, small.layout
    warm = _warm_arrays(p.warm)
    fresh = (model in _VOLUMES and warm[0].size == 0) or (
        model in _ORIENTATION and warm[1].size == 0
    )
    if model not in MODEL_CODES or run.converged or n_iter <= 0 or fresh:
        return  # (given parameters: the Python loop starts the iterative M-steps afresh)
    regularisation = em.reg_covar * em._unit_variances
    params = (
        np.ascontiguousarray(p.weights, dtype=np.float64),
        np.ascontiguousarray(p.means, dtype=np.float64),
        _as_blocks(p.precisions_chol, layout),
        _as_blocks(p.covariances, layout),
    )
    out, warm, trace, converged, _ = iterate(
        small.X, small.loc, small.scale, small.code, small.block_rows, MODEL_CODES[model],
        np.ascontiguousarray(regularisation, dtype=np.float64), em._inner_tol, params, warm,
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
        warm=_warm_start(model, *warm),
    )
    run.lower_bound = float(trace[-1])
    run.trace.extend(trace.tolist())
    run.n_iter += trace.size
    run.converged = bool(converged)


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
