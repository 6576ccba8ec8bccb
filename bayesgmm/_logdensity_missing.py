"""The log posterior density over rows with missing cells (MAR) or frequency weights.

A row contributes the density of its observed entries, ``logsumexp_k(log w_k + log N(x_O |
mu_k[O], Sigma_k[O, O]))``, times its weight. By Fisher's identity the gradient of that
observed-data log-likelihood is the conditional expectation, given the observed entries, of
the complete-data one: the gradient formulas of :func:`bayesgmm._fisher._likelihood_gradients`
hold unchanged once ``n_k``, ``f_k`` and ``R_k`` are replaced by their conditional expectations.
Those are exactly what the EM's missing-data E-step computes (:func:`bayesgmm._missing.e_step`:
per missingness pattern, one pass of the E-step kernel under the marginal mixture, its moments
lifted to those of the full rows with ``B_k = S_MO S_OO^-1`` and the conditional covariance),
so this module adds no likelihood arithmetic of its own: it unpacks the unconstrained vector,
runs that E-step's compiled form (:func:`bayesgmm._missing_kernel.rows_statistics`, the same
lifting EM uses), then the gradient formulas and the priors
(:func:`bayesgmm._logprior._add_prior`) that the complete-data kernel uses.

The rows are standardised with the model's ``loc`` and ``scale``; the Jacobian of the
standardisation counts each row's observed features only, ``-sum_{j in O} log scale_j`` times
its weight (the E-step's log-likelihood convention, see :mod:`bayesgmm._missing`). The rows
are sorted by pattern once (:meth:`Rows.prepare`); each call is one compiled function that
releases the GIL, so nutpie's chains run in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numba
import numpy as np

from . import _missing, _numba_cache
from ._fisher import _likelihood_gradients
from ._gaussian import _invert_lower_into
from ._kernels import _FASTMATH
from ._logprior import _add_prior
from ._missing_kernel import rows_statistics
from ._unconstrained import _expand, _reduce, _unpack

__all__ = ["Rows", "collapse_duplicates", "logp_and_grad_rows"]

# Collapse duplicates when the unique rows are at most this fraction of all rows: a weighted
# pass costs a multiply per row more, and the unique rows are found once per fit
COLLAPSE_FRACTION = 0.9


def collapse_duplicates(
    X: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact duplicate rows of ``X`` (NaN cells in the same places) as one row weighted by
    their count (or total weight), when the unique rows are at most ``COLLAPSE_FRACTION`` of
    all rows; else ``X`` and ``sample_weight`` unchanged.

    The log density is a sum over rows, so the collapsed rows give the same value and gradient
    (to rounding). Rows come out in sorted order.
    """
    if X.shape[0] < 2:
        return X, sample_weight
    filled = np.where(np.isnan(X), np.inf, X)  # NaN never equals NaN; validated data hold no inf
    unique, inverse, counts = np.unique(filled, axis=0, return_inverse=True, return_counts=True)
    if unique.shape[0] > COLLAPSE_FRACTION * X.shape[0]:
        return X, sample_weight
    if sample_weight is None:
        weight = counts.astype(np.float64)
    else:
        weight = np.bincount(inverse.ravel(), weights=sample_weight, minlength=unique.shape[0])
    return np.ascontiguousarray(np.where(np.isinf(unique), np.nan, unique)), weight


@dataclass(frozen=True)
class Rows(_missing.Packed):
    """Rows prepared once for :func:`logp_and_grad_rows`: sorted by missingness pattern, as
    :class:`bayesgmm._missing.Packed` arrays (``values``, ``weights``, ``bounds``, ``order``,
    ``n_observed``, ``n_weight``).

    Attributes
    ----------
    data : RowData
        The rows (data units, NaN for missing cells) grouped by missingness pattern, with
        their weights, as EM takes them.
    """

    data: _missing.RowData

    @property
    def complete(self) -> bool:
        """Whether every cell is observed (``values`` are then the rows, in their order)."""
        return self.n_observed.size == 1 and self.n_observed[0] == self.values.shape[1]

    @classmethod
    def prepare(cls, X: np.ndarray, sample_weight: np.ndarray | None) -> Rows:
        """Group ``X`` (validated: every row and every feature has an observed cell) by pattern.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Data units, NaN for missing cells.
        sample_weight : ndarray of shape (n_samples,) or None
            Frequency weights.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        weight = None if sample_weight is None else np.ascontiguousarray(sample_weight, float)
        data = _missing.RowData(X, weight)
        packed = data.packed
        return cls(**{f.name: getattr(packed, f.name) for f in fields(packed)}, data=data)


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _logp_and_grad_rows(
    x, values, weights, n_weight, bounds, order, n_observed, loc, scale, log_jacobian,
    n_components, diagonal, n_groups, n_scales, alpha, means_loc, means_scale, sd_terms,
    lkj_shape, constant, block,
):  # fmt: skip  # pragma: no cover - compiled
    """:func:`logp_and_grad_rows`, compiled; the arguments after ``n_observed`` are
    :func:`bayesgmm._logdensity._weighted_logp_and_grad`'s."""
    n_features = values.shape[1]
    grad = np.zeros(x.shape[0])
    log_w, means, free, free_log_diag = _unpack(
        x, n_components, n_features, diagonal, n_groups, n_scales
    )
    chol, _ = _expand(free, free_log_diag, n_components, n_features)
    inverse = np.empty_like(chol)
    _invert_lower_into(chol, inverse)
    ok, (log_lik, resp_sum, first, second) = rows_statistics(
        values, weights, bounds, order, n_observed, loc, scale, log_w, means, chol, inverse,
        diagonal, block,
    )  # fmt: skip
    if not ok:  # a marginal covariance that is singular in floats
        return -np.inf, grad
    grad_means = np.empty((n_components, n_features))
    grad_chol = np.zeros((n_components, n_features, n_features))
    _likelihood_gradients(inverse, resp_sum, first, second, diagonal, grad_means, grad_chol)
    grad_free = _reduce(grad_chol, n_groups, n_scales)
    # the statistics' log-likelihood carries each row's missing features' log scales already:
    # the full Jacobian per row leaves -sum_{j in O} log scale_j
    logp = log_lik[0] - n_weight * log_jacobian + constant
    logp = _add_prior(
        logp, log_w, means, free, free_log_diag, resp_sum, grad_means, grad_free, diagonal,
        alpha, means_loc, means_scale, sd_terms, lkj_shape, grad,
    )  # fmt: skip
    return logp, grad


def logp_and_grad_rows(x: np.ndarray, rows: Rows, args: tuple) -> tuple[float, np.ndarray]:
    """Log posterior density and its gradient at ``x`` over prepared ``rows``.

    ``args`` are :func:`bayesgmm._logdensity._weighted_logp_and_grad`'s after ``n_weight``
    (``loc, scale, log_jacobian``, the model's shape, the prior's arguments, the normalising
    constant and the block size).
    """
    return _logp_and_grad_rows(
        x, rows.values, rows.weights, rows.n_weight, rows.bounds, rows.order, rows.n_observed,
        *args,
    )  # fmt: skip


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
