"""The unconstrained vector NUTS samples: what each position is, and the chain rule back.

nutpie samples the flat vector of the model's value variables in ``model.free_RVs`` order
(:func:`bayesgmm.build_model`): ``weights`` through PyMC's simplex transform (``K - 1``
values), ``means_z`` (``K D``), then the free covariances of the model's family
(:mod:`bayesgmm._families`): ``n_groups`` lower Cholesky factors (``K``, or 1 when one
covariance is shared by every component) of size ``n_scales`` (``D``, or 1 for a spherical
model), packed row by row with log diagonals (``chol_cov_k`` or ``chol_cov``), or only their
log diagonals (``stds_z``). :func:`_expand` gives every component its factor; :func:`_reduce`
takes gradients on the components' factors back to the free ones. Used by the log density
(:mod:`bayesgmm._logdensity`) and to decode draws.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _numba_cache
from ._kernels import _FASTMATH

__all__ = ["permute_components"]


# --------------------------------------------------------------------------- Numba kernels
@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _log_weights(v):  # pragma: no cover - compiled
    """PyMC's simplex transform backwards: ``log softmax([v, -sum(v)])``."""
    k = v.shape[0] + 1
    y = np.empty(k)
    total = 0.0
    for i in range(k - 1):
        y[i] = v[i]
        total += v[i]
    y[k - 1] = -total
    top = y.max()
    norm = 0.0
    for i in range(k):
        norm += np.exp(y[i] - top)
    return y - (top + np.log(norm))


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _unpack(x, n_components, n_features, diagonal, n_groups, n_scales):  # pragma: no cover
    """The model's parameters from the unconstrained vector.

    Returns log weights ``(K,)``, means ``(K, D)`` and the free covariances: ``n_groups`` (K,
    or 1 when shared) lower Cholesky factors of size ``n_scales`` (D, or 1 when spherical) and
    the logs of their diagonals (the unconstrained values).
    """
    k1 = n_components - 1
    log_w = _log_weights(x[:k1])
    means = x[k1 : k1 + n_components * n_features].copy().reshape((n_components, n_features))
    chol = np.zeros((n_groups, n_scales, n_scales))
    log_diag = np.empty((n_groups, n_scales))
    pos = k1 + n_components * n_features
    for c in range(n_groups):
        for i in range(n_scales):
            for j in range(i + 1):
                if diagonal and j < i:
                    continue
                if i == j:
                    log_diag[c, i] = x[pos]
                    chol[c, i, i] = np.exp(x[pos])
                else:
                    chol[c, i, j] = x[pos]
                pos += 1
    return log_w, means, chol, log_diag


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _expand(free, free_log_diag, n_components, n_features):  # pragma: no cover - compiled
    """Every component's Cholesky factor ``(K, D, D)`` and log diagonal ``(K, D)`` from the
    free ones (shared: one for every component; spherical: one scale for every feature)."""
    n_groups, n_scales = free_log_diag.shape
    if n_groups == n_components and n_scales == n_features:
        return free, free_log_diag
    chol = np.zeros((n_components, n_features, n_features))
    log_diag = np.empty((n_components, n_features))
    for c in range(n_components):
        g = c if n_groups > 1 else 0
        if n_scales == n_features:
            chol[c] = free[g]
            log_diag[c] = free_log_diag[g]
        else:
            for i in range(n_features):
                chol[c, i, i] = free[g, 0, 0]
                log_diag[c, i] = free_log_diag[g, 0]
    return chol, log_diag


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _reduce(grad_chol, n_groups, n_scales):  # pragma: no cover - compiled
    """The chain rule through :func:`_expand`: gradients on the free factors are sums of the
    gradients on the components' factors (over components when shared, over the diagonal when
    spherical)."""
    n_components, n_features = grad_chol.shape[:2]
    if n_groups == n_components and n_scales == n_features:
        return grad_chol
    out = np.zeros((n_groups, n_scales, n_scales))
    for c in range(n_components):
        g = c if n_groups > 1 else 0
        if n_scales == n_features:
            out[g] += grad_chol[c]
        else:  # the sum in a local, not in out: no store in its loop (_kernels._FASTMATH)
            total = 0.0
            for i in range(n_features):
                total += grad_chol[c, i, i]
            out[g, 0, 0] += total
    return out


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _unpack_draws(
    draws, n_components, n_features, diagonal, n_groups, n_scales
):  # pragma: no cover - compiled
    """Weights, means and every component's Cholesky factor of each row of ``draws`` (S,
    n_dim)."""
    n_draws = draws.shape[0]
    weights = np.empty((n_draws, n_components))
    means = np.empty((n_draws, n_components, n_features))
    chol = np.empty((n_draws, n_components, n_features, n_features))
    for s in range(n_draws):
        log_w, means[s], free, free_log_diag = _unpack(
            draws[s], n_components, n_features, diagonal, n_groups, n_scales
        )
        chol[s] = _expand(free, free_log_diag, n_components, n_features)[0]
        weights[s] = np.exp(log_w)
    return weights, means, chol


def permute_components(
    x: np.ndarray, perm: np.ndarray, n_components: int, n_features: int, n_groups: int
) -> np.ndarray:
    """The same points with their components reordered: component ``k`` of the result is
    component ``perm[..., k]`` of ``x`` (as :func:`bayesgmm.alignment.apply_permutations`).

    A linear map of determinant +-1 that leaves the model's density unchanged (its priors
    treat the components alike): the simplex transform's values are the centred log weights
    without the last, so permuting the weights permutes ``[v, -sum(v)]``; means and, when
    every component has its own, the packed covariance factors move as blocks.

    Parameters
    ----------
    x : ndarray of shape (..., n_dim)
    perm : ndarray of int, shape (..., n_components)
        Broadcast against ``x``'s leading dimensions.
    n_components, n_features, n_groups : int
        The layout (``n_groups``: free covariances, ``n_components`` or 1 when shared).

    Returns
    -------
    ndarray of shape (..., n_dim)
    """
    k1, lead = n_components - 1, x.shape[:-1]
    perm = np.broadcast_to(perm, (*lead, n_components))
    centred = np.concatenate([x[..., :k1], -x[..., :k1].sum(axis=-1, keepdims=True)], axis=-1)
    weights = np.take_along_axis(centred, perm, axis=-1)[..., :k1]
    stop = k1 + n_components * n_features
    means = x[..., k1:stop].reshape((*lead, n_components, n_features))
    means = np.take_along_axis(means, perm[..., None], axis=-2).reshape((*lead, -1))
    rest = x[..., stop:]
    if n_groups == n_components > 1:
        rest = rest.reshape((*lead, n_components, -1))
        rest = np.take_along_axis(rest, perm[..., None], axis=-2).reshape((*lead, -1))
    return np.concatenate([weights, means, rest], axis=-1)


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
