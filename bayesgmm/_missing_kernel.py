"""Compiled missing-data E-step: one pattern's observed moments lifted to those of full rows.

Rows that miss the features ``M`` and observe ``O`` contribute, under component ``k``, the
responsibility-weighted moments of ``x_O`` about ``mu_k[O]`` (``n_k``, ``f_k``, ``R_k``, from a
pass of the E-step kernel under the marginal mixture) and, through the conditional expectation
``E[x_M - mu_M | x_O, k] = B_k (x_O - mu_O)`` with ``B_k = S_MO S_OO^-1`` and the conditional
covariance ``C_k = S_MM - B_k S_OM``, those of the full rows (Ghahramani & Jordan 1994):
``f_M = B f_O``, ``R_MO = B R_OO``, ``R_MM = B R_OO B' + n_k C_k``. :func:`_regressions_into`
and :func:`_lift_into` are the only copy of that arithmetic: :func:`rows_statistics` runs every
pattern, the kernel pass included, in one compiled call that releases the GIL (the posterior's
log density, :mod:`bayesgmm._logdensity_missing`, and EM's missing-data E-step on the serial
engine, :func:`bayesgmm._missing.e_step`); EM's E-step on the other engines calls them per
pattern after each pattern's kernel pass.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _numba_cache
from ._gaussian import LOG_2PI, _cholesky_into, _invert_lower_into
from ._kernels import _FASTMATH, _new_sums, _weighted_block_pass

__all__ = ["rows_statistics"]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _regressions_into(cov, observed, missing, inverse, coef, conditional):  # pragma: no cover
    """``B_b = S_MO S_OO^-1`` into ``coef`` ``(B, m, o)`` and ``S_MM - B_b S_OM`` into
    ``conditional`` ``(B, m, m)`` for covariances ``cov`` ``(B, D, D)``, given
    ``inverse[b] = L^-1`` for ``S_OO = L L'``: ``B = T L^-1``, ``C = S_MM - T T'`` with
    ``T = S_MO L^-T``."""
    n_obs, n_miss = observed.shape[0], missing.shape[0]
    t = np.empty((n_miss, n_obs))
    for b in range(cov.shape[0]):
        inv = inverse[b]
        for i in range(n_miss):
            for a in range(n_obs):
                acc = 0.0
                for e in range(a + 1):
                    acc += cov[b, missing[i], observed[e]] * inv[a, e]
                t[i, a] = acc
        for i in range(n_miss):
            for c in range(n_obs):
                acc = 0.0
                for a in range(c, n_obs):
                    acc += t[i, a] * inv[a, c]
                coef[b, i, c] = acc
            for j in range(i + 1):
                acc = cov[b, missing[i], missing[j]]
                for a in range(n_obs):
                    acc -= t[i, a] * t[j, a]
                conditional[b, i, j] = acc
                conditional[b, j, i] = acc


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _lift_into(
    first_o, second_o, resp_sum, coef, conditional, observed, missing, first, second
):  # pragma: no cover - compiled
    """Add each component's full-row moments to ``first`` ``(K, D)`` and ``second`` ``(K, D, D)``
    (both triangles) from those of the observed entries, ``first_o`` ``(K, o)`` and the upper
    triangle of ``second_o`` ``(K, o, o)``, with :func:`_regressions_into`'s ``coef`` and
    ``conditional``."""
    n_obs, n_miss = observed.shape[0], missing.shape[0]
    r = np.empty((n_obs, n_obs))
    cross = np.empty((n_miss, n_obs))
    for k in range(first_o.shape[0]):
        for a in range(n_obs):
            first[k, observed[a]] += first_o[k, a]
            for e in range(a, n_obs):
                r[a, e] = second_o[k, a, e]
                r[e, a] = second_o[k, a, e]
        for a in range(n_obs):
            for e in range(n_obs):
                second[k, observed[a], observed[e]] += r[a, e]
        for i in range(n_miss):
            acc = 0.0
            for e in range(n_obs):
                acc += coef[k, i, e] * first_o[k, e]
            first[k, missing[i]] += acc
            for a in range(n_obs):
                acc = 0.0
                for e in range(n_obs):
                    acc += coef[k, i, e] * r[e, a]
                cross[i, a] = acc  # R_MO
                second[k, missing[i], observed[a]] += acc
                second[k, observed[a], missing[i]] += acc
        for i in range(n_miss):
            for j in range(n_miss):
                acc = resp_sum[k] * conditional[k, i, j]
                for a in range(n_obs):
                    acc += cross[i, a] * coef[k, j, a]
                second[k, missing[i], missing[j]] += acc


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _marginal_factors(cov, inverse, observed, factor):  # pragma: no cover - compiled
    """``L^-1`` of every ``S_OO = L L'`` into ``factor`` ``(K, o, o)`` (``inverse``, the full
    covariances' ``L^-1``, when every feature is observed); False if one is not positive
    definite."""
    n_components, n_obs = factor.shape[0], factor.shape[1]
    if n_obs == inverse.shape[1]:
        factor[:] = inverse
        return True
    sub = np.empty_like(factor)
    for k in range(n_components):
        for a in range(n_obs):
            for e in range(n_obs):
                sub[k, a, e] = cov[k, observed[a], observed[e]]
    lower = np.empty_like(factor)
    if _cholesky_into(sub, lower) >= 0:
        return False
    _invert_lower_into(lower, factor)
    return True


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _pattern_into(
    values, weights, order, n_obs, loc, scale, log_w, means, cov, inverse, diagonal, block, out
):  # pragma: no cover - compiled
    """Add one pattern's statistics to ``out``: the kernel pass over its observed entries
    ``values`` under the marginal mixture, then :func:`_lift_into`. ``order`` lists the observed
    features, then the missing ones. False if a marginal covariance is not positive definite."""
    n_components, n_features = means.shape
    observed, missing = order[:n_obs], order[n_obs:]
    factor = np.empty((n_components, n_obs, n_obs))
    if not _marginal_factors(cov, inverse, observed, factor):
        return False
    offset = log_w - 0.5 * n_obs * LOG_2PI
    means_o = np.empty((n_components, n_obs))
    for k in range(n_components):
        for a in range(n_obs):
            offset[k] += np.log(factor[k, a, a])
            means_o[k, a] = means[k, observed[a]]
    loc_o, scale_o = loc[observed], scale[observed]
    sums = _new_sums(1, n_components, n_obs)
    n = values.shape[0]
    for start in range(0, n, block):
        _weighted_block_pass(
            values, weights, start, min(n, start + block), loc_o, scale_o, offset, means_o,
            factor, diagonal, 0, sums,
        )  # fmt: skip
    log_lik, resp_sum, first, second = out
    shift = 0.0  # the missing features' log scales (the unit-scale convention of _missing)
    for j in missing:
        shift += np.log(scale[j])
    total = float(n) if weights.shape[0] == 0 else weights.sum()
    log_lik[0] += sums[0][0] + total * shift
    resp_sum += sums[1][0]
    coef = np.empty((n_components, n_features - n_obs, n_obs))
    conditional = np.empty((n_components, n_features - n_obs, n_features - n_obs))
    _regressions_into(cov, observed, missing, factor, coef, conditional)
    _lift_into(sums[2][0], sums[3][0], sums[1][0], coef, conditional, observed, missing,
               first, second)  # fmt: skip
    return True


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def rows_statistics(
    values, weights, bounds, order, n_observed, loc, scale, log_w, means, chol, inverse,
    diagonal, block,
):  # fmt: skip  # pragma: no cover - compiled
    """E-step statistics of rows grouped by pattern, for a mixture given by lower Cholesky
    factors ``chol`` of its unit-scale covariances (``inverse`` their inverses).

    Pattern ``p`` holds rows ``bounds[p]:bounds[p + 1]`` of ``values`` (user units, its
    ``n_observed[p]`` observed entries first, in the order of ``order[p]``, which lists the
    observed then the missing features) and of ``weights`` (frequency weights, or empty).
    Returns ``ok`` (False: a marginal covariance is not positive definite in floats) and
    ``(log_lik (1,), resp_sum (K,), first (K, D), second (K, D, D))``.
    """
    n_components, n_features = means.shape
    cov = np.zeros((n_components, n_features, n_features))
    for k in range(n_components):
        for a in range(n_features):
            for e in range(n_features):
                for m in range(min(a, e) + 1):
                    cov[k, a, e] += chol[k, a, m] * chol[k, e, m]
    out = (
        np.zeros(1),
        np.zeros(n_components),
        np.zeros((n_components, n_features)),
        np.zeros((n_components, n_features, n_features)),
    )
    for p in range(n_observed.shape[0]):
        start, stop, n_obs = bounds[p], bounds[p + 1], n_observed[p]
        ok = _pattern_into(
            values[start:stop, :n_obs], weights[start:stop], order[p], n_obs, loc, scale,
            log_w, means, cov, inverse, diagonal, block, out,
        )  # fmt: skip
        if not ok:
            return False, out
    return True, out


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
