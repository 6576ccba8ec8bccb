"""The log-likelihood's gradients from the E-step's moments (Fisher's identity).

With responsibilities ``r_nk``, ``n_k = sum_n r_nk`` and the moments about the means ``f_k``
and ``R_k`` (see :mod:`bayesgmm._logdensity`), ``d loglik / d mu_k = Sigma_k^{-1} f_k`` and
``d loglik / d L_k = tril(L_k^{-T} (L_k^{-1} R_k L_k^{-T} - n_k I))``. The same formulas hold
for rows with missing cells once the moments are their conditional expectations given the
observed entries (:mod:`bayesgmm._missing_kernel`). Its own module so that the complete-data
(:mod:`bayesgmm._logdensity`) and the missing-data (:mod:`bayesgmm._logdensity_missing`) log
densities both import it.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _numba_cache
from ._kernels import _FASTMATH

__all__: list[str] = []


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _likelihood_gradients(
    inverse, resp_sum, first, second, diagonal, grad_means, grad_chol
):  # pragma: no cover - compiled
    """``d loglik / d mu_k`` and ``d loglik / d L_k`` (lower triangle) from the E-step moments.

    ``second`` holds the upper triangle of ``R_k`` (its diagonal when ``diagonal``).
    """
    n_components, n_features = first.shape
    whitened_first = np.empty(n_features)
    moment = np.empty((n_features, n_features))
    whitened = np.empty((n_features, n_features))
    for c in range(n_components):
        inv = inverse[c]
        for a in range(n_features):
            for e in range(a, n_features):
                value = second[c, a, e] if (not diagonal or a == e) else 0.0
                moment[a, e] = value
                moment[e, a] = value
        # whitened moments: Linv f and Linv R Linv'
        for a in range(n_features):
            acc = 0.0
            for m in range(a + 1):
                acc += inv[a, m] * first[c, m]
            whitened_first[a] = acc
        for a in range(n_features):
            for e in range(n_features):
                acc = 0.0
                for m in range(a + 1):
                    acc += inv[a, m] * moment[m, e]
                whitened[a, e] = acc  # (Linv R)[a, e]
        for a in range(n_features):
            for e in range(a, n_features):
                acc = 0.0
                for m in range(e + 1):
                    acc += whitened[a, m] * inv[e, m]
                moment[a, e] = acc  # (Linv R Linv')[a, e], upper triangle
        for a in range(n_features):
            moment[a, a] -= resp_sum[c]
            for e in range(a):
                moment[a, e] = moment[e, a]
        # Sigma^{-1} f = Linv' (Linv f); dL = tril(Linv' (W - n I))
        for a in range(n_features):
            acc = 0.0
            for m in range(a, n_features):
                acc += inv[m, a] * whitened_first[m]
            grad_means[c, a] = acc
            for b in range(a + 1):
                acc = 0.0
                for m in range(a, n_features):
                    acc += inv[m, a] * moment[m, b]
                grad_chol[c, a, b] = acc


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
