"""The log posterior density over rows with missing cells (MAR) or frequency weights.

A row contributes the density of its observed entries, ``logsumexp_k(log w_k + log N(x_O |
mu_k[O], Sigma_k[O, O]))``, times its weight. By Fisher's identity the gradient of that
observed-data log-likelihood is the conditional expectation, given the observed entries, of
the complete-data one: the gradient formulas of :func:`bayesgmm._logdensity._likelihood_gradients`
hold unchanged once ``n_k``, ``f_k`` and ``R_k`` are replaced by their conditional expectations.
Those are exactly what the EM's missing-data E-step computes (:func:`bayesgmm._missing.e_step`:
per missingness pattern, one pass of the E-step kernel under the marginal mixture, its moments
lifted to those of the full rows with ``B_k = S_MO S_OO^-1`` and the conditional covariance),
so this module adds no likelihood arithmetic of its own: it unpacks the unconstrained vector,
calls that E-step, then the gradient formulas and the priors
(:func:`bayesgmm._logprior._add_prior`) that the complete-data kernel uses.

The rows are standardised with the model's ``loc`` and ``scale``; the Jacobian of the
standardisation counts each row's observed features only, ``-sum_{j in O} log scale_j`` times
its weight (the E-step's log-likelihood convention, see :mod:`bayesgmm._missing`). Each call
runs Python once per pattern (the kernel passes are Numba).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _missing
from ._gaussian import _invert_lower_into
from ._kernels import _KERNEL_BLOCK_ROWS, Mixture
from ._logprior import _add_prior
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
class Rows:
    """Rows prepared once for :func:`logp_and_grad_rows`.

    Attributes
    ----------
    data : RowData
        The rows (data units, NaN for missing cells) grouped by missingness pattern, with
        their weights.
    n_weight : float
        The rows' total weight (their number when unweighted).
    """

    data: _missing.RowData
    n_weight: float

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
        total = float(X.shape[0] if weight is None else weight.sum())
        return cls(_missing.RowData(X, weight), total)


def _mixture(scaling, log_w, means, chol, inverse, diagonal) -> tuple[Mixture, np.ndarray]:
    """The E-step's :class:`~bayesgmm._kernels.Mixture` and unit-scale covariances in
    :func:`bayesgmm._missing._unit_covariances`' shape, from the Cholesky factors."""
    weights = np.exp(log_w)
    if diagonal:
        sd = np.ascontiguousarray(np.diagonal(chol, axis1=1, axis2=2))
        return Mixture(scaling, weights, means, 1.0 / sd, "diag"), sd * sd
    precisions_chol = np.ascontiguousarray(np.swapaxes(inverse, 1, 2))  # U = L^-T
    cov = chol @ np.swapaxes(chol, 1, 2)
    return Mixture(scaling, weights, means, precisions_chol, "full"), cov


def logp_and_grad_rows(
    x: np.ndarray,
    rows: Rows,
    scaling,
    shape: tuple[int, bool, int, int],
    prior_args: tuple,
    constant: float,
) -> tuple[float, np.ndarray]:
    """Log posterior density and its gradient at ``x`` over prepared ``rows``.

    ``shape`` is ``(n_components, diagonal, n_groups, n_scales)``; ``prior_args`` are
    ``(alpha, means_loc, means_scale, sd_scale, lkj_shape)`` of
    :func:`bayesgmm._logprior._add_prior`, ``constant`` the normalising constants.
    """
    from ._logdensity import _likelihood_gradients

    n_components, diagonal, n_groups, n_scales = shape
    n_features = rows.data.rows.shape[1]
    grad = np.zeros(x.shape[0])
    log_w, means, free, free_log_diag = _unpack(
        x, n_components, n_features, diagonal, n_groups, n_scales
    )
    chol, _ = _expand(free, free_log_diag, n_components, n_features)
    inverse = np.empty_like(chol)
    _invert_lower_into(chol, inverse)
    try:
        with np.errstate(all="ignore"):
            mixture, cov = _mixture(scaling, log_w, means, chol, inverse, diagonal)
            stats = _missing.e_step(
                rows.data, mixture, block_rows=_KERNEL_BLOCK_ROWS, engine="serial", cov=cov
            )
    except (np.linalg.LinAlgError, ValueError):  # a covariance that is singular in floats
        return -np.inf, grad
    second = stats.second
    if diagonal:  # the gradient formulas read the diagonal of a (K, D, D) array
        second = second[:, :, None] * np.eye(n_features)
    grad_means = np.empty((n_components, n_features))
    grad_chol = np.zeros((n_components, n_features, n_features))
    _likelihood_gradients(
        inverse,
        np.ascontiguousarray(stats.resp_sum),
        np.ascontiguousarray(stats.first),
        np.ascontiguousarray(second),
        diagonal,
        grad_means,
        grad_chol,
    )
    grad_free = _reduce(grad_chol, n_groups, n_scales)
    # the E-step's log-likelihood carries each row's missing features' log scales already:
    # the full Jacobian per row leaves -sum_{j in O} log scale_j
    logp = stats.log_likelihood - rows.n_weight * scaling.log_jacobian + constant
    logp = _add_prior(
        logp,
        log_w,
        means,
        free,
        free_log_diag,
        np.ascontiguousarray(stats.resp_sum),
        grad_means,
        grad_free,
        diagonal,
        *prior_args,
        grad,
    )
    return logp, grad
