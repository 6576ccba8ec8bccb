"""The priors of the model and the Jacobians of its transforms, on the unconstrained vector.

The data-independent part of :class:`bayesgmm._logdensity.LogDensity`: PyMC's Dirichlet on the
weights (through the simplex transform), Normal priors on the standardised means, and either
PyMC's ``LKJCholeskyCov`` (packed rows with log diagonals) or HalfNormal standard deviations
on the log scale. :func:`_add_prior` adds them, and the likelihood's gradients, to a log
density whatever path computed the likelihood (complete rows in Numba, or rows with missing
cells or weights, :mod:`bayesgmm._logdensity_missing`).
"""

from __future__ import annotations

import numba
import numpy as np

from . import _numba_cache
from ._gaussian import _invert_lower_into
from ._kernels import _FASTMATH

__all__: list[str] = []


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _weights_term(log_w, resp_sum, alpha, grad):  # pragma: no cover - compiled
    """Dirichlet(alpha) prior plus the simplex transform's log-Jacobian (``sum_k log w_k + log
    K``, the ``log K`` in the constant); the gradient on ``v`` also takes the likelihood's
    ``d / d log w_k = n_k``."""
    k1 = log_w.shape[0] - 1
    value = 0.0
    g_total = 0.0
    for c in range(k1 + 1):
        value += alpha * log_w[c]
        g_total += resp_sum[c] + alpha
    g_last = resp_sum[k1] + alpha
    w_last = np.exp(log_w[k1])
    for c in range(k1):
        grad[c] = resp_sum[c] + alpha - g_last - g_total * (np.exp(log_w[c]) - w_last)
    return value


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _means_term(means, grad_means, loc, scale, grad):  # pragma: no cover - compiled
    """Normal(loc, scale) prior on every mean, with the likelihood's gradient added."""
    n_components, n_features = means.shape
    value = 0.0
    for c in range(n_components):  # no store in the sum's loop (_kernels._FASTMATH)
        for i in range(n_features):
            z = (means[c, i] - loc[i]) / scale[i]
            value -= 0.5 * z * z
    for c in range(n_components):
        for i in range(n_features):
            z = (means[c, i] - loc[i]) / scale[i]
            grad[c * n_features + i] = grad_means[c, i] - z / scale[i]
    return value


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _diag_scales_term(chol, log_diag, grad_chol, sd_terms, grad):  # pragma: no cover
    """The prior ``sd_terms`` on each standard deviation ``s = exp(u)``, with the Jacobian
    ``u``."""
    n_components, n_features = log_diag.shape
    value = 0.0
    for c in range(n_components):  # no store in the sum's loop (_kernels._FASTMATH)
        for i in range(n_features):
            square = chol[c, i, i] * chol[c, i, i]
            power, on_square, on_inverse = sd_terms[0, i], sd_terms[1, i], sd_terms[2, i]
            value += (power + 1.0) * log_diag[c, i] - on_square * square - on_inverse / square
    for c in range(n_components):
        for i in range(n_features):
            s = chol[c, i, i]
            square = s * s
            power, on_square, on_inverse = sd_terms[0, i], sd_terms[1, i], sd_terms[2, i]
            grad[c * n_features + i] = (
                s * grad_chol[c, i, i]
                + power
                + 1.0
                - 2.0 * on_square * square
                + 2.0 * on_inverse / square
            )
    return value


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _conditional_floor_term(lower, inverse, floor_sq, grad):  # pragma: no cover - compiled
    """``-sum_i g_i^2 ((Sigma^-1)_ii - 1 / Sigma_ii)`` for ``Sigma = L L'`` (``lower``, with
    ``inverse = L^-1``; ``floor_sq = g^2``): the resolution prior's barrier on the variance of
    each feature given the others, less the one on each variance
    (:func:`bayesgmm._families.conditional_floor`). Its gradient on ``L`` goes into ``grad``
    (lower triangle): ``2 M' M G M'`` from the precision's diagonal (``M = L^-1``, ``G =
    diag(g^2)``), ``-2 g_i^2 L_ij / Sigma_ii^2`` from the variances."""
    n = lower.shape[0]
    value = 0.0
    for i in range(n):
        precision_ii = 0.0
        variance = 0.0
        for m in range(i, n):
            precision_ii += inverse[m, i] * inverse[m, i]
        for m in range(i + 1):
            variance += lower[i, m] * lower[i, m]
        value -= floor_sq[i] * (precision_ii - 1.0 / variance)
        for m in range(i + 1):
            grad[i, m] = -2.0 * floor_sq[i] * lower[i, m] / (variance * variance)
    scaled = np.zeros((n, n))  # M G M'
    for a in range(n):
        for b in range(a + 1):
            total = 0.0
            for m in range(b + 1):
                total += inverse[a, m] * floor_sq[m] * inverse[b, m]
            scaled[a, b] = total
            scaled[b, a] = total
    for a in range(n):
        for b in range(a + 1):
            total = 0.0
            for m in range(a, n):
                total += inverse[m, a] * scaled[m, b]
            grad[a, b] += 2.0 * total
    return value


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _lkj_term(chol, log_diag, grad_chol, sd_terms, lkj_shape, grad):  # pragma: no cover
    """PyMC's LKJCholeskyCov density of each factor, on packed rows with log diagonals.

    Row norms are the standard deviations (prior ``sd_terms[:3]``), the diagonal over the row
    norm is the correlation factor's diagonal (LKJ with ``lkj_shape = 2 eta - 2 + D``); the
    diagonal's exp adds ``u_ii`` to the log-Jacobian. Where ``sd_terms[3]`` (``g^2`` of the
    barrier on each variance given the others, :func:`_conditional_floor_term`) is not all
    zero, each factor gets that barrier too.
    """
    n_components, n_features = log_diag.shape
    value = 0.0
    pos = 0
    floored = np.any(sd_terms[3] > 0.0)
    inverse = np.empty_like(chol)
    extra = np.zeros((n_features, n_features))
    if floored:
        _invert_lower_into(chol, inverse)
    for c in range(n_components):
        if floored:
            value += _conditional_floor_term(chol[c], inverse[c], sd_terms[3], extra)
        for i in range(n_features):
            variance = 0.0
            for j in range(i + 1):
                variance += chol[c, i, j] * chol[c, i, j]
            log_sd = 0.5 * np.log(variance)
            a_i = lkj_shape - i
            power, on_square, on_inverse = sd_terms[0, i], sd_terms[1, i], sd_terms[2, i]
            value += (
                a_i * (log_diag[c, i] - log_sd)
                - i * log_sd
                + power * log_sd
                - on_square * variance
                - on_inverse / variance
                + log_diag[c, i]
            )
            factor = (
                (power - lkj_shape) / variance
                - 2.0 * on_square
                + 2.0 * on_inverse / (variance * variance)
            )
            for j in range(i + 1):
                g = grad_chol[c, i, j] + factor * chol[c, i, j] + extra[i, j]
                grad[pos] = chol[c, i, i] * g + a_i + 1.0 if i == j else g
                pos += 1
    return value


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _add_prior(
    logp,
    log_w,
    means,
    free,
    free_log_diag,
    resp_sum,
    grad_means,
    grad_free,
    diagonal,
    alpha,
    means_loc,
    means_scale,
    sd_terms,
    lkj_shape,
    grad,
):  # pragma: no cover - compiled
    """``logp`` (the likelihood and the constants) plus the priors and the transforms'
    Jacobians; fills ``grad`` from the likelihood's ``n_k`` and gradients on the means and the
    free Cholesky factors (the posterior's part that does not depend on the data)."""
    n_components, n_features = means.shape
    k1 = n_components - 1
    start = k1 + n_components * n_features
    logp += _weights_term(log_w, resp_sum, alpha, grad)
    logp += _means_term(means, grad_means, means_loc, means_scale, grad[k1:start])
    if diagonal:
        logp += _diag_scales_term(free, free_log_diag, grad_free, sd_terms, grad[start:])
    else:
        logp += _lkj_term(free, free_log_diag, grad_free, sd_terms, lkj_shape, grad[start:])
    # Far in the tails (a scale of exp(-800), say) IEEE arithmetic can leave 0 x inf in the
    # gradient. Such points carry no posterior mass: report them as outside the support, which
    # NUTS rejects (a divergence), rather than hand it a NaN gradient.
    if not np.isfinite(logp) or not np.all(np.isfinite(grad)):
        logp = -np.inf
    return logp


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
