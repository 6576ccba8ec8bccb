"""The package's only NumPy Gaussian-mixture math.

Everything works in log space with the Cholesky factor of the *precision* matrices, following
scikit-learn's conventions: for a full covariance ``Sigma = inv(U @ U.T)`` where ``U`` is the upper
triangular ``precisions_cholesky``. Log-determinants come from the diagonal of ``U``; no matrix is
ever inverted and no determinant is ever taken.

Functions take a covariance **layout** (see :mod:`bayesgmm._models`: each of the 14 models
stores its covariances in one of scikit-learn's four shapes). Shapes by layout (``K``
components, ``D`` features):

=============  ===================  ====================
layout         covariances          precisions_cholesky
=============  ===================  ====================
``full``       ``(K, D, D)``        ``(K, D, D)``
``tied``       ``(D, D)``           ``(D, D)``
``diag``       ``(K, D)``           ``(K, D)``
``spherical``  ``(K,)``             ``(K,)``
=============  ===================  ====================

The E-step is expressed as sufficient statistics (:class:`MixtureStatistics`) that add across
chunks of rows, so one pass over the data serves both the log-likelihood and the next M-step, and
the same code runs on in-memory chunks or on a Dask cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import _models, _numba_cache
from ._errors import warn

COVARIANCE_TYPES = _models.LAYOUTS  # the four layouts (scikit-learn's families)
LOG_2PI = np.log(2.0 * np.pi)


class SingularCovarianceError(ValueError):
    """A component covariance is not positive definite."""


def _singular_message(component: int | None) -> str:
    which = (
        "the shared covariance" if component is None else f"the covariance of component {component}"
    )
    return (
        f"Fitting the mixture failed: {which} is singular (the component has collapsed onto "
        "too few distinct points). Increase reg_covar, reduce n_components, or remove duplicate "
        "points."
    )


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def floor_reached(blocks, variances, floor):  # pragma: no cover - compiled
    """Per block of covariances (``(B, D, D)`` full, ``(B, D, 1)`` diagonal, ``(B, 1, 1)``
    spherical): whether its variance in some direction is at most ``floor`` times the
    features' ``variances`` (their mean for a spherical block): ``C - floor diag(variances)``
    is not positive definite (the smallest eigenvalue of ``C`` in units of the features'
    variances is at most ``floor``)."""
    n_blocks, n_rows, n_cols = blocks.shape
    out = np.zeros(n_blocks, dtype=np.bool_)
    if n_cols == 1:
        scale = variances.mean() if n_rows == 1 else 0.0
        for b in range(n_blocks):
            for j in range(n_rows):
                out[b] = out[b] or blocks[b, j, 0] <= floor * (
                    scale if n_rows == 1 else variances[j]
                )
        return out
    shifted = blocks.copy()
    lower = np.empty((1, n_rows, n_rows))
    for b in range(n_blocks):
        for j in range(n_rows):
            shifted[b, j, j] -= floor * variances[j]
        out[b] = _cholesky_into(shifted[b : b + 1], lower) >= 0
    return out


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _cholesky_into(matrices, lower):  # pragma: no cover - compiled
    """Lower Cholesky factors of ``matrices`` ``(B, D, D)`` (lower triangles read) into ``lower``.

    Returns the index of the first matrix that is not positive definite (or not finite), or -1.
    """
    n = matrices.shape[1]
    for b in range(matrices.shape[0]):
        for j in range(n):
            total = matrices[b, j, j]
            for m in range(j):
                total -= lower[b, j, m] * lower[b, j, m]
            if not (total > 0.0 and total < np.inf):
                return b
            pivot = np.sqrt(total)
            lower[b, j, j] = pivot
            for i in range(j + 1, n):
                total = matrices[b, i, j]
                for m in range(j):
                    total -= lower[b, i, m] * lower[b, j, m]
                lower[b, i, j] = total / pivot
            for i in range(j):
                lower[b, i, j] = 0.0
    return -1


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _invert_lower_into(lower, inverse):  # pragma: no cover - compiled
    """``inverse[b] = inv(lower[b])`` for lower triangular factors, by forward substitution."""
    n = lower.shape[1]
    for b in range(lower.shape[0]):
        inverse[b] = 0.0
        for j in range(n):
            inverse[b, j, j] = 1.0 / lower[b, j, j]
            for i in range(j + 1, n):
                total = 0.0
                for m in range(j, i):
                    total -= lower[b, i, m] * inverse[b, m, j]
                inverse[b, i, j] = total / lower[b, i, i]


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _precision_factors_into(covariances, factors):  # pragma: no cover - compiled
    """Upper ``U = inv(L)^T`` (``inv(Sigma) = U U^T``) of each ``(B, D, D)`` covariance into
    ``factors``; returns the first covariance that is not positive definite, or -1."""
    lower = np.empty_like(covariances)
    failed = _cholesky_into(covariances, lower)
    if failed >= 0:
        return failed
    inverse = np.empty_like(covariances)
    _invert_lower_into(lower, inverse)
    for b in range(covariances.shape[0]):
        factors[b] = inverse[b].T
    return -1


def _cholesky(matrices: np.ndarray) -> tuple[np.ndarray, int]:
    """Lower Cholesky factors of ``(..., D, D)`` matrices, and the first failed one (or -1)."""
    flat = np.ascontiguousarray(np.reshape(matrices, (-1, *matrices.shape[-2:])), dtype=float)
    lower = np.empty_like(flat)
    failed = _cholesky_into(flat, lower)
    return lower.reshape(matrices.shape), int(failed)


def _invert_lower(lower: np.ndarray) -> np.ndarray:
    """Inverses of lower triangular ``(..., D, D)`` factors (triangular, exactly)."""
    flat = np.ascontiguousarray(np.reshape(lower, (-1, *lower.shape[-2:])), dtype=float)
    inverse = np.empty_like(flat)
    _invert_lower_into(flat, inverse)
    return inverse.reshape(lower.shape)


def _precision_factors(covariances: np.ndarray) -> tuple[np.ndarray, int]:
    """Upper precision factors of ``(..., D, D)`` covariances, and the first failed one (or -1)."""
    flat = np.ascontiguousarray(np.reshape(covariances, (-1, *covariances.shape[-2:])), dtype=float)
    factors = np.empty_like(flat)
    failed = _precision_factors_into(flat, factors)
    return factors.reshape(covariances.shape), int(failed)


def _cholesky_lower(matrix: np.ndarray, component: int | None) -> np.ndarray:
    lower, failed = _cholesky(matrix)
    if failed >= 0:
        raise SingularCovarianceError(_singular_message(component))
    return lower


def precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of the precision matrices from covariances.

    Parameters
    ----------
    covariances : ndarray
        Covariances in the shape of the layout ``covariance_type`` (see the module docstring).
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray
        Upper triangular ``U`` with ``inv(covariance) = U @ U.T`` (full, tied), or
        ``1 / sqrt(variance)`` (diag, spherical).

    Raises
    ------
    SingularCovarianceError
        If a covariance is not positive definite (or not finite); the message names the
        component.
    """
    if covariance_type in ("full", "tied"):
        factors, failed = _precision_factors(covariances)
        if failed >= 0:
            raise SingularCovarianceError(
                _singular_message(failed if covariance_type == "full" else None)
            )
        return factors
    variances = np.asarray(covariances)
    ok = (variances > 0.0) & (variances < np.inf)
    bad = np.flatnonzero(~np.reshape(ok, (variances.shape[0], -1)).all(axis=1))
    if bad.size:
        raise SingularCovarianceError(_singular_message(int(bad[0])))
    return 1.0 / np.sqrt(variances)


def precision_cholesky_from_precisions(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors (upper triangular ``U``, ``P = U @ U.T``) of given precision matrices."""
    if covariance_type in ("diag", "spherical"):
        return np.sqrt(precisions)
    # U = J L J with L = chol(J P J) and J the reversal permutation: U is upper triangular.
    lower, failed = _cholesky(precisions[..., ::-1, ::-1])
    if failed >= 0:
        raise SingularCovarianceError(
            _singular_message(failed if covariance_type == "full" else None)
        )
    return lower[..., ::-1, ::-1].copy()


def covariance_cholesky(precisions_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Lower Cholesky factor ``L`` of each covariance, ``Sigma = L @ L.T``, from precision factors.

    Returns ``(K, D, D)`` for full, ``(D, D)`` for tied and standard deviations for diag and
    spherical.
    """
    if covariance_type in ("full", "tied"):
        return _invert_lower(np.swapaxes(precisions_chol, -1, -2))  # inv(U).T = inv(U.T)
    return 1.0 / precisions_chol


def covariances_from_precision_cholesky(
    precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Covariances (in the family's shape) from precision Cholesky factors."""
    chol = covariance_cholesky(precisions_chol, covariance_type)
    if covariance_type in ("full", "tied"):
        return chol @ np.swapaxes(chol, -1, -2)
    return chol**2


def log_det_precision_cholesky(
    precisions_chol: np.ndarray, covariance_type: str, n_features: int
) -> np.ndarray:
    """``log det U`` per component (half the log-determinant of the precision); full factors
    may carry leading batch dims, e.g. ``(draws, K, D, D)``."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(precisions_chol, axis1=-2, axis2=-1)), axis=-1)
    if covariance_type == "tied":
        return np.sum(np.log(np.diag(precisions_chol)))
    if covariance_type == "diag":
        return np.sum(np.log(precisions_chol), axis=1)
    return n_features * np.log(precisions_chol)


def _whitened(
    X: np.ndarray, means: np.ndarray, precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Residuals ``(x - mean_k)`` mapped through the precision factor: ``(N, K, D)``."""
    diff = X[:, None, :] - means[None, :, :]
    if covariance_type == "full":  # a batched matmul: einsum's path search costs more here
        return np.matmul(diff.transpose(1, 0, 2), precisions_chol).transpose(1, 0, 2)
    if covariance_type == "tied":
        return diff @ precisions_chol
    if covariance_type == "diag":
        return diff * precisions_chol[None, :, :]
    return diff * precisions_chol[None, :, None]


def log_gaussian_prob(
    X: np.ndarray, means: np.ndarray, precisions_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Log density of every row of ``X`` under every component, ``(N, K)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_components, n_features)
    precisions_chol : ndarray
        Precision Cholesky factors in the shape of ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
    """
    n_features = X.shape[1]
    y = _whitened(X, means, precisions_chol, covariance_type)
    mahalanobis = np.einsum("nkd,nkd->nk", y, y)
    log_det = log_det_precision_cholesky(precisions_chol, covariance_type, n_features)
    return -0.5 * (n_features * LOG_2PI + mahalanobis) + log_det


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    """``log(sum(exp(values), axis))`` without overflow (8x faster than SciPy 1.17's here).

    A slice whose largest value is not finite (every weight zero) gives that value, as SciPy's.
    """
    top = np.max(values, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(shift, axis) + np.log(np.sum(np.exp(values - shift), axis=axis))


def log_responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_chol: np.ndarray,
    covariance_type: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log mixture density ``(N,)`` and log responsibilities ``(N, K)``."""
    weighted = log_gaussian_prob(X, means, precisions_chol, covariance_type) + np.log(weights)
    log_norm = _logsumexp(weighted, axis=1)
    return log_norm, weighted - log_norm[:, None]


@dataclass
class MixtureStatistics:
    """Sufficient statistics of one E-step, additive over chunks of rows.

    Moments are taken about ``shift`` (the component means used in the E-step), which keeps the
    covariance update free of the cancellation that raw second moments suffer.

    Attributes
    ----------
    log_likelihood : float
        Sum of the per-row log mixture densities.
    n_samples : int or float
        Number of rows, or the sum of their frequency weights.
    resp_sum : ndarray of shape (n_components,)
    first : ndarray of shape (n_components, n_features)
        ``sum_n r_nk (x_n - shift_k)``.
    second : ndarray
        ``sum_n r_nk (x_n - shift_k)(x_n - shift_k)^T``, ``(K, D, D)`` for full and tied;
        the diagonal only, ``(K, D)``, for diag and spherical.
    shift : ndarray of shape (n_components, n_features)
    """

    log_likelihood: float
    n_samples: int
    resp_sum: np.ndarray
    first: np.ndarray
    second: np.ndarray
    shift: np.ndarray

    def __add__(self, other: MixtureStatistics) -> MixtureStatistics:
        return MixtureStatistics(
            self.log_likelihood + other.log_likelihood,
            self.n_samples + other.n_samples,
            self.resp_sum + other.resp_sum,
            self.first + other.first,
            self.second + other.second,
            self.shift,
        )


def weighted_statistics(
    X: np.ndarray,
    resp: np.ndarray,
    shift: np.ndarray,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
) -> MixtureStatistics:
    """Moments of ``X`` weighted by responsibilities ``resp`` about ``shift`` (log-lik left 0).

    With frequency weights ``sample_weight`` ``(N,)``, row ``n`` counts ``sample_weight[n]``
    times: ``resp`` is multiplied by it and ``n_samples`` is the weights' sum.
    """
    n_samples = X.shape[0]
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
        n_samples = float(np.sum(sample_weight))
    n_components = resp.shape[1]
    resp_sum = resp.sum(axis=0)
    first = resp.T @ X - resp_sum[:, None] * shift
    if covariance_type in ("full", "tied"):  # one batched product (the same numbers)
        diff = X[None] - shift[:, None, :]
        second = np.matmul(np.swapaxes(resp.T[:, :, None] * diff, 1, 2), diff)
    else:
        second = np.stack([resp[:, k] @ (X - shift[k]) ** 2 for k in range(n_components)])
    return MixtureStatistics(0.0, n_samples, resp_sum, first, second, shift)


def e_step_statistics(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_chol: np.ndarray,
    covariance_type: str,
    *,
    sample_weight: np.ndarray | None = None,
) -> MixtureStatistics:
    """One E-step on a block of rows: its log-likelihood and the next M-step's statistics.

    ``sample_weight`` ``(N,)`` are frequency weights (see :func:`weighted_statistics`); the
    log-likelihood is then ``sum_n w_n log p(x_n)``.
    """
    log_norm, log_resp = log_responsibilities(X, weights, means, precisions_chol, covariance_type)
    stats = weighted_statistics(X, np.exp(log_resp), means, covariance_type, sample_weight)
    if sample_weight is not None:
        log_norm = log_norm * sample_weight
    stats.log_likelihood = float(log_norm.sum())
    return stats


def full_covariances(
    covariances: np.ndarray, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand covariances of any model (or layout) to full matrices, ``(K, D, D)``."""
    covariances = np.asarray(covariances, dtype=float)
    covariance_type = _models.layout(covariance_type)
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return np.broadcast_to(covariances, (n_components, n_features, n_features)).copy()
    variances = (
        covariances if covariance_type == "diag" else covariances[:, None] * np.ones(n_features)
    )
    return variances[:, :, None] * np.eye(n_features)[None, :, :]


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Number of free parameters of a mixture (weights, means and covariances), any model."""
    return _models.n_parameters(covariance_type, n_components, n_features)


def packed_cholesky(covariance: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of one covariance, packed row-wise as ``pm.LKJCholeskyCov`` does."""
    chol = _cholesky_lower(covariance, None)
    return chol[np.tril_indices(chol.shape[0])]


def unpack_cholesky(packed: np.ndarray, n_features: int) -> np.ndarray:
    """Inverse of :func:`packed_cholesky`: the ``(D, D)`` lower factor."""
    chol = np.zeros((n_features, n_features))
    chol[np.tril_indices(n_features)] = packed
    return chol


def std_and_correlation(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviations ``(..., D)`` and correlation matrices ``(..., D, D)``."""
    std = np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
    corr = covariances / (std[..., :, None] * std[..., None, :])
    return std, corr


_JITTER_CHUNK = 256
"""Matrices factored together by :func:`batched_precision_cholesky`'s jitter fallback; a chunk
with a singular one is redone one matrix at a time."""


def batched_precision_cholesky(covariances: np.ndarray, *, jitter: bool = False) -> np.ndarray:
    """Upper precision factors ``U`` (``inv(Sigma) = U @ U.T``) of a stack of full covariances.

    Vectorised over any leading dimensions ``(..., D, D)`` (e.g. posterior draws x components):
    :func:`precision_cholesky` of the flattened stack, with a message that names no component.

    ``jitter=True`` is for posterior draws: the sampler accepted each one through its own
    factors (standard deviations and a correlation Cholesky factor), but a correlation within
    ``1e-8`` of +-1 gives a covariance that is no longer positive definite once formed in
    float64. Such a matrix is factored with the smallest diagonal jitter (``1e-12`` to ``1e-4``
    of its largest variance) that succeeds, with a ``RuntimeWarning`` that counts them, rather
    than losing a finished run to a ``SingularCovarianceError``.
    """
    factors, failed = _precision_factors(covariances)
    if failed < 0:
        return factors
    if not jitter:
        raise SingularCovarianceError(_singular_message(None).replace("the shared", "a"))
    flat = np.reshape(covariances, (-1, *covariances.shape[-2:]))
    out = np.empty_like(flat, dtype=float)
    jittered = 0
    for start in range(0, flat.shape[0], _JITTER_CHUNK):  # linear in the draws, however many fail
        chunk = flat[start : start + _JITTER_CHUNK]
        factors, failed = _precision_factors(chunk)
        if failed >= 0:  # a failed call writes no factor: this chunk one matrix at a time
            factors = np.empty_like(chunk, dtype=float)
            for index, matrix in enumerate(chunk):
                factor, failed = _precision_factors(matrix[None])
                singular = failed >= 0
                factors[index] = _jittered_precision_factor(matrix) if singular else factor[0]
                jittered += singular
        out[start : start + chunk.shape[0]] = factors
    warn(
        f"{jittered} of {flat.shape[0]} covariance draws were numerically singular (a "
        "correlation at +-1 to float64 precision) and were factored with a small diagonal "
        "jitter; a component collapsing onto tied or collinear rows does this: see "
        "BayesianGMM's sd_prior or a simpler covariance_type.",
        RuntimeWarning,
    )
    return out.reshape(covariances.shape)


def _jittered_precision_factor(covariance: np.ndarray) -> np.ndarray:
    """The precision factor of ``covariance + eps I`` for the smallest ``eps`` that works."""
    scale = float(np.max(np.abs(np.diag(covariance)))) or 1.0
    identity = np.eye(covariance.shape[0])
    for exponent in range(-12, -3):
        factor, failed = _precision_factors((covariance + 10.0**exponent * scale * identity)[None])
        if failed < 0:
            return factor[0]
    raise SingularCovarianceError(_singular_message(None).replace("the shared", "a"))


def draw_log_responsibilities(
    X: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precisions_chol: np.ndarray,
    *,
    max_bytes: int = 2**26,
):
    """:func:`log_responsibilities` of many full-covariance parameter sets (posterior draws).

    Vectorised over blocks of draws whose working memory stays under ``max_bytes``.

    Parameters
    ----------
    X : ndarray of shape (N, D)
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, D)
    precisions_chol : ndarray of shape (S, K, D, D)

    Yields
    ------
    draws : slice
        The block of draws.
    log_norm : ndarray of shape (n_draws_in_block, N)
    log_resp : ndarray of shape (n_draws_in_block, N, K)
    """
    n_draws, n_components, n_features = means.shape
    n_rows = X.shape[0]
    step = max(1, max_bytes // (8 * n_rows * n_components * (n_features + 2)))
    for start in range(0, n_draws, step):
        block = slice(start, min(start + step, n_draws))
        size = block.stop - block.start
        flat = log_gaussian_prob(
            X,
            means[block].reshape(-1, n_features),
            precisions_chol[block].reshape(-1, n_features, n_features),
            "full",
        )
        weighted = flat.reshape(n_rows, size, n_components).transpose(1, 0, 2)
        weighted += np.log(weights[block])[:, None, :]
        log_norm = _logsumexp(weighted, axis=2)
        yield block, log_norm, weighted - log_norm[..., None]


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
