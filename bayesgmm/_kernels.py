"""One pass over blocks of rows: the E-step's sufficient statistics and the column summary.

:func:`e_step` returns the :class:`~bayesgmm._gaussian.MixtureStatistics` of a block of rows in
the user's units, standardised on the fly with an :class:`~bayesgmm._scaling.AffineScaling` (so
no standardised copy of the data is ever made). Two engines compute the same numbers:

``"numpy"``
    The reference: :func:`bayesgmm._gaussian.e_step_statistics` on row chunks. Its working
    memory is ``O(chunk x K x D)``.
``"parallel"`` / ``"serial"``
    A fused Numba kernel. Per block of rows it whitens the residuals, takes the log-densities,
    their log-sum-exp, the responsibilities and the moments about the current means in one
    sweep, with ``O(D x block + K x block)`` scratch per thread and ``O(K x D^2)``
    accumulators per thread; no ``(N, K)`` or ``(N, K, D)`` array exists. ``"parallel"``
    spreads blocks over Numba's threads (``prange``), ``"serial"`` runs on the calling thread
    (for Dask tasks, which are already parallel). Sums are formed per block and then added,
    which keeps rounding error near ``(block + N / block) eps``. Responsibilities below
    ``exp(-600)`` of a row's largest are exactly zero (see :func:`_responsibilities`).

Diagonal and spherical precisions go through the same kernel as ``(K, D, D)`` diagonal factors
with a flag that restricts the work to the diagonal.

:class:`ColumnSummary` is the one pass that validation and standardisation need (counts of
non-finite values, minimum, maximum and the scale-free moments of every feature); it adds over
blocks, so it also serves Dask arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import _gaussian as g
from . import _numba_cache
from ._scaling import AffineScaling
from ._vexp import exp_nonpositive

__all__ = [
    "ENGINES",
    "NO_WEIGHTS",
    "PREDICTIONS",
    "ColumnSummary",
    "Mixture",
    "column_summary",
    "default_block_rows",
    "draw_log_density",
    "e_step",
    "predict_rows",
]

ENGINES = ("parallel", "serial", "numpy")
_KERNEL_BLOCK_ROWS = 512
_NUMPY_CHUNK_ELEMENTS = 2**19  # rows x components x features held at once by the NumPy engine
_SUMMARY_BLOCK_ELEMENTS = 2**17
_LOG_NEGLIGIBLE = -600.0  # exp(-600) = 2.6e-261: far below any sum's rounding error
# (within exp_nonpositive's range, MIN_ARGUMENT = -708: tests/test_vexp.py)
# Reassociation lets LLVM vectorise the sums over a block; no-NaN/no-inf flags stay off, so
# -inf log-weights and exp underflow behave as in IEEE arithmetic. Every kernel also compiles
# with error_model="numpy": a division by zero gives inf or NaN instead of raising, so a NUTS
# step into an extreme region returns a non-finite density (a divergence) instead of stopping
# the sampler. Every kernel of bayesgmm states its fastmath flags, False included: a Numba
# function without them compiles with its first caller's flags, and keeps that code for
# every later caller and in the on-disk cache, so its results (and a chaotic NUTS path
# through them) would depend on which caller a process ran first (tests/test_faults.py).
_FASTMATH = {"reassoc", "contract", "nsz"}
# A reassociated sum should not share its loop with a store to an array. LLVM vectorises such a loop
# behind a run-time check of the arrays' addresses, and for some loops that check is conservative:
# when an array the loop reads starts a little after the one it writes (separate arrays, no
# overlap), the scalar loop runs instead, and its sum, added in another order, differs in the last
# bits. Where the arrays a kernel allocates land depends on the heap's state (another thread's
# malloc arena, say), so the same point gave another log density about once in 10^5 NUTS
# evaluations, and seeded runs other draws (tests/test_kernels_placement.py). A loop that only reads
# needs no check. (_add_moments' sum of w keeps its store: its check is exact, measured in that
# test.)
# "No frequency weights": the kernels test for an empty weight array and then run the
# unweighted arithmetic unchanged.
NO_WEIGHTS = np.empty(0)


def default_block_rows(engine: str, n_components: int, n_features: int) -> int:
    """Rows per block when ``chunk_size`` is not given.

    The kernel's scratch does not grow with ``K x D`` per row, so it uses small cache-friendly
    blocks; the NumPy engine holds ``chunk x K x D`` floats (about 4 MB).
    """
    if engine == "numpy":
        return max(256, _NUMPY_CHUNK_ELEMENTS // (n_components * n_features))
    return _KERNEL_BLOCK_ROWS


# --------------------------------------------------------------------------- Numba kernel
@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _load_block(X, start, stop, loc, scale, xt):  # pragma: no cover - compiled
    """Standardise rows ``start:stop`` of ``X`` into the transposed buffer ``xt`` (D, block)."""
    for i in range(stop - start):
        for j in range(X.shape[1]):
            xt[j, i] = (X[start + i, j] - loc[j]) / scale[j]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _log_densities(xt, m, offset, means, chol_t, diagonal, lp, y, acc):  # pragma: no cover
    """``lp[c, i] = offset[c] - |(x_i - mean_c) U_c|^2 / 2`` for the first ``m`` rows.

    ``chol_t[c]`` is ``U_c`` transposed (lower triangular), so row ``col`` of it holds the
    coefficients of whitened coordinate ``col``.
    """
    n_features = xt.shape[0]
    for c in range(means.shape[0]):
        acc[:m] = 0.0
        for col in range(n_features):
            if diagonal:
                u = chol_t[c, col, col]
                mc = means[c, col]
                for i in range(m):
                    y[i] = (xt[col, i] - mc) * u
            else:
                y[:m] = 0.0
                for row in range(col + 1):
                    u = chol_t[c, col, row]
                    mr = means[c, row]
                    for i in range(m):
                        y[i] += (xt[row, i] - mr) * u
            for i in range(m):
                acc[i] += y[i] * y[i]
        for i in range(m):
            lp[c, i] = offset[c] - 0.5 * acc[i]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _responsibilities(lp, m, top, norm, weights, start):  # pragma: no cover - compiled
    """Turn log-densities ``lp`` into responsibilities in place; return the block's log-lik.

    Row ``i``'s log mixture density is ``top[i] - log(norm[i] / w_i)`` afterwards: ``top``
    holds each row's largest log-density, ``norm`` its weight ``w_i`` over its sum of
    ``exp(lp - top)``. With frequency ``weights`` (rows ``start:start + m`` of them; the empty
    :data:`NO_WEIGHTS` for none, which leaves every operation of the unweighted pass as it
    was), the responsibilities and the log-likelihood are multiplied by each row's weight.

    Responsibilities below ``exp(_LOG_NEGLIGIBLE)`` relative to the largest are set to zero:
    they change no sum, and left in they make subnormal products, which cost ~100x a normal
    multiplication (measured: 2x slower E-steps once components separate).
    """
    n_components = lp.shape[0]
    for i in range(m):
        top[i] = lp[0, i]
    for c in range(1, n_components):
        for i in range(m):
            top[i] = max(top[i], lp[c, i])
    norm[:m] = 0.0
    for c in range(n_components):
        for i in range(m):
            gap = lp[c, i] - top[i]
            lp[c, i] = exp_nonpositive(gap) if gap > _LOG_NEGLIGIBLE else 0.0
            norm[i] += lp[c, i]
    # The sum has a loop of its own, with no store (see the note at _FASTMATH).
    log_lik = 0.0
    if weights.shape[0] == 0:
        for i in range(m):
            log_lik += top[i] + np.log(norm[i])
        for i in range(m):
            norm[i] = 1.0 / norm[i]
    else:
        for i in range(m):
            log_lik += weights[start + i] * (top[i] + np.log(norm[i]))
        for i in range(m):
            norm[i] = weights[start + i] / norm[i]
    for c in range(n_components):
        for i in range(m):
            lp[c, i] *= norm[i]
    return log_lik


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _add_moments(
    xt, m, resp, means, diagonal, diff, w, t, resp_sum, first, second
):  # pragma: no cover
    """Add the block's responsibility-weighted moments about ``means`` to thread ``t``'s sums.

    Only the upper triangle of ``second`` is filled (the diagonal when ``diagonal``).
    """
    n_features = xt.shape[0]
    for c in range(means.shape[0]):
        total = 0.0
        for i in range(m):
            total += resp[c, i]
        resp_sum[t, c] += total
        if total == 0.0:
            continue
        for a in range(n_features):
            mc = means[c, a]
            for i in range(m):
                diff[a, i] = xt[a, i] - mc
        for a in range(n_features):
            f = 0.0
            for i in range(m):
                w[i] = resp[c, i] * diff[a, i]
                f += w[i]
            first[t, c, a] += f
            stop = a + 1 if diagonal else n_features
            for e in range(a, stop):
                q = 0.0
                for i in range(m):
                    q += w[i] * diff[e, i]
                second[t, c, a, e] += q


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _block_pass(
    X, start, stop, loc, scale, offset, means, chol_t, diagonal, t, sums
):  # pragma: no cover
    """:func:`_weighted_block_pass` without weights (the signature the log density uses)."""
    _weighted_block_pass(
        X, NO_WEIGHTS, start, stop, loc, scale, offset, means, chol_t, diagonal, t, sums
    )


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _weighted_block_pass(
    X, weights, start, stop, loc, scale, offset, means, chol_t, diagonal, t, sums
):  # pragma: no cover
    """Load, score, normalise and accumulate one block of rows into thread ``t``'s sums.

    ``weights`` are frequency weights of the rows of ``X``, or :data:`NO_WEIGHTS`.
    """
    log_lik, resp_sum, first, second = sums
    m = stop - start
    n_components, n_features = means.shape
    xt = np.empty((n_features, m))
    diff = np.empty((n_features, m))
    lp = np.empty((n_components, m))
    y = np.empty(m)
    acc = np.empty(m)
    _load_block(X, start, stop, loc, scale, xt)
    _log_densities(xt, m, offset, means, chol_t, diagonal, lp, y, acc)
    log_lik[t] += _responsibilities(lp, m, y, acc, weights, start)
    _add_moments(xt, m, lp, means, diagonal, diff, y, t, resp_sum, first, second)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _new_sums(n_threads, n_components, n_features):  # pragma: no cover - compiled
    return (
        np.zeros(n_threads),
        np.zeros((n_threads, n_components)),
        np.zeros((n_threads, n_components, n_features)),
        np.zeros((n_threads, n_components, n_features, n_features)),
    )


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def _stats_parallel(
    X, weights, loc, scale, offset, means, chol_t, diagonal, block, threads
):  # pragma: no cover
    n = X.shape[0]
    n_blocks = (n + block - 1) // block
    n_threads = max(1, min(threads, n_blocks))
    sums = _new_sums(n_threads, means.shape[0], means.shape[1])
    for t in numba.prange(n_threads):
        for b in range(t, n_blocks, n_threads):
            start = b * block
            stop = min(n, start + block)
            _weighted_block_pass(
                X, weights, start, stop, loc, scale, offset, means, chol_t, diagonal, t, sums
            )
    return sums


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _stats_serial(
    X, weights, loc, scale, offset, means, chol_t, diagonal, block, threads
):  # pragma: no cover
    n = X.shape[0]
    sums = _new_sums(1, means.shape[0], means.shape[1])
    for start in range(0, n, block):
        stop = min(n, start + block)
        _weighted_block_pass(
            X, weights, start, stop, loc, scale, offset, means, chol_t, diagonal, 0, sums
        )
    return sums


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def _draw_log_density(X, offset, means, chol_t, block, out):  # pragma: no cover - compiled
    """``out[s, n] = log p(x_n | draw s)``, draws spread over Numba's threads."""
    n, n_features = X.shape
    n_components = means.shape[1]
    loc = np.zeros(n_features)
    scale = np.ones(n_features)
    for s in numba.prange(offset.shape[0]):
        xt = np.empty((n_features, block))
        lp = np.empty((n_components, block))
        y = np.empty(block)
        acc = np.empty(block)
        for start in range(0, n, block):
            stop = min(n, start + block)
            m = stop - start
            _load_block(X, start, stop, loc, scale, xt)
            _log_densities(xt, m, offset[s], means[s], chol_t[s], False, lp, y, acc)
            # leaves each row's max in y, 1 / sum exp in acc
            _responsibilities(lp, m, y, acc, NO_WEIGHTS, 0)
            for i in range(m):
                out[s, start + i] = y[i] - np.log(acc[i])


# --------------------------------------------------------------------------- Python side
def draw_log_density(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """``log p(x_n | theta_s)`` for many full-covariance parameter sets: ``(S, N)``.

    The pointwise log-likelihood of posterior draws (for LOO): ``weights (S, K)``, ``means (S,
    K, D)``, ``covariances (S, K, D, D)``. One pass of the E-step kernel's log-densities per
    draw, draws spread over Numba's threads; the NumPy reference is
    :func:`bayesgmm._gaussian.draw_log_responsibilities`.
    """
    n_features = means.shape[-1]
    precisions_chol = g.batched_precision_cholesky(covariances, jitter=True)  # inv(S) = U U'
    factors = _contiguous(np.swapaxes(precisions_chol, -1, -2))
    offset = _log_offsets(
        _contiguous(weights).ravel(), factors.reshape(-1, n_features, n_features)
    ).reshape(weights.shape)
    out = np.empty((weights.shape[0], X.shape[0]))
    _draw_log_density(_contiguous(X), offset, _contiguous(means), factors, _KERNEL_BLOCK_ROWS, out)
    return out


@dataclass(frozen=True)
class Mixture:
    """Unit-scale mixture parameters, with the map from the user's units to that scale.

    Attributes
    ----------
    scaling : AffineScaling
        Maps rows in the user's units to the unit scale of the parameters.
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    precisions_chol : ndarray
        Precision Cholesky factors in the shape of ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    scaling: AffineScaling
    weights: np.ndarray
    means: np.ndarray
    precisions_chol: np.ndarray
    covariance_type: str

    def log_responsibilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-scale log mixture density ``(N,)`` and log responsibilities ``(N, K)``."""
        return g.log_responsibilities(
            self.scaling.transform(X),
            self.weights,
            self.means,
            self.precisions_chol,
            self.covariance_type,
        )

    def e_step_statistics(
        self, X: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> g.MixtureStatistics:
        """:func:`bayesgmm._gaussian.e_step_statistics` of rows in the user's units."""
        return g.e_step_statistics(
            self.scaling.transform(X),
            self.weights,
            self.means,
            self.precisions_chol,
            self.covariance_type,
            sample_weight=sample_weight,
        )

    def lower_factors(self) -> np.ndarray:
        """Every family's precision factor as ``(K, D, D)`` transposed (lower) triangles."""
        n_components, n_features = self.means.shape
        chol = self.precisions_chol
        if self.covariance_type == "full":
            factors = np.swapaxes(chol, 1, 2)
        elif self.covariance_type == "tied":
            factors = np.broadcast_to(chol.T, (n_components, n_features, n_features))
        else:  # diag (K, D) or spherical (K,): the diagonal, times the identity
            factors = np.reshape(chol, (n_components, -1))[:, :, None] * np.eye(n_features)
        return np.ascontiguousarray(factors, dtype=np.float64)

    def log_offsets(self, factors: np.ndarray | None = None) -> np.ndarray:
        """``log w_k + log det U_k - D log(2 pi) / 2``: each component's log density at its mean.

        ``factors`` are :meth:`lower_factors`, when already at hand.
        """
        factors = self.lower_factors() if factors is None else factors
        return _log_offsets(_contiguous(self.weights), factors)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _log_offsets(weights, factors):  # pragma: no cover - compiled
    """``log w_k + sum_j log factors[k, j, j] - D log(2 pi) / 2`` (``-inf`` for a zero weight)."""
    n_features = factors.shape[1]
    out = np.empty(weights.shape[0])
    for k in range(weights.shape[0]):
        total = np.log(weights[k]) - 0.5 * n_features * np.log(2.0 * np.pi)
        for j in range(n_features):
            total += np.log(factors[k, j, j])
        out[k] = total
    return out


def _contiguous(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _finish(sums, diagonal):  # pragma: no cover - compiled
    """Add the per-thread sums; fill the lower triangle of ``second`` (or keep its diagonal)."""
    log_lik, resp_sum, first, second = sums
    n_components, n_features = first.shape[1], first.shape[2]
    total = second[0].copy()
    for t in range(1, second.shape[0]):
        total += second[t]
    for c in range(n_components):
        for a in range(n_features):
            for e in range(a):
                total[c, a, e] = total[c, e, a]
    if diagonal:
        out = np.empty((n_components, n_features))
        for c in range(n_components):
            for a in range(n_features):
                out[c, a] = total[c, a, a]
        total = out.reshape((n_components, n_features, 1))
    return log_lik.sum(), resp_sum.sum(axis=0), first.sum(axis=0), total


def _kernel_statistics(
    X: np.ndarray,
    mixture: Mixture,
    block_rows: int,
    parallel: bool,
    sample_weight: np.ndarray | None,
) -> g.MixtureStatistics:
    diagonal = mixture.covariance_type in ("diag", "spherical")
    kernel = _stats_parallel if parallel else _stats_serial
    factors = mixture.lower_factors()
    weights = NO_WEIGHTS if sample_weight is None else _contiguous(sample_weight)
    sums = kernel(
        _contiguous(X),
        weights,
        _contiguous(mixture.scaling.loc),
        _contiguous(mixture.scaling.scale),
        mixture.log_offsets(factors),
        _contiguous(mixture.means),
        factors,
        diagonal,
        int(block_rows),
        numba.get_num_threads() if parallel else 1,
    )
    log_lik, resp_sum, first, second = _finish(sums, diagonal)
    return g.MixtureStatistics(
        float(log_lik),
        X.shape[0] if sample_weight is None else float(weights.sum()),
        resp_sum,
        first,
        second[:, :, 0] if diagonal else second,
        mixture.means,
    )


def e_step(
    X: np.ndarray,
    mixture: Mixture,
    *,
    block_rows: int,
    engine: str,
    sample_weight: np.ndarray | None = None,
) -> g.MixtureStatistics:
    """E-step statistics of the rows of ``X`` (user units) under ``mixture``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows in the user's units; ``mixture.scaling`` maps them to the parameters' scale.
    mixture : Mixture
        The moments are taken about its (unit-scale) means.
    block_rows : int
        Rows per block (the estimator's ``chunk_size``).
    engine : {"parallel", "serial", "numpy"}
        See the module docstring; all three return the same statistics up to rounding.
    sample_weight : ndarray of shape (n_samples,), optional
        Frequency weights (validated beforehand): every row's responsibilities and
        log-likelihood are multiplied by its weight, and ``n_samples`` of the result is their
        sum. None runs the unweighted arithmetic, unchanged.

    Returns
    -------
    MixtureStatistics
    """
    if engine != "numpy":
        return _kernel_statistics(X, mixture, block_rows, engine == "parallel", sample_weight)
    total = None
    for start in range(0, X.shape[0], block_rows):
        rows = slice(start, start + block_rows)
        weights = None if sample_weight is None else sample_weight[rows]
        stats = mixture.e_step_statistics(X[rows], weights)
        total = stats if total is None else total + stats
    return total


PREDICTIONS = ("log_norm", "log_resp", "resp", "labels", "scores")


def prediction_width(output: str, n_components: int) -> int | None:
    """Columns of a row-wise ``output`` of :func:`predict_rows` (None for one value per row)."""
    return {"log_resp": n_components, "resp": n_components, "scores": 2, "criteria": 3}.get(output)


def predict_rows(X: np.ndarray, mixture: Mixture, *, block_rows: int, output: str) -> np.ndarray:
    """A row-wise quantity of the mixture at the rows of ``X`` (user units), chunk by chunk.

    ``output`` is ``"log_norm"`` (unit-scale log mixture density, ``(N,)``), ``"log_resp"`` or
    ``"resp"`` (log responsibilities or responsibilities, ``(N, K)``), ``"labels"`` (most
    probable component, ``(N,)``), ``"scores"`` (``(N, 2)``: the log density and the log of
    the largest responsibility, what the information criteria need) or ``"criteria"`` (``(N,
    3)``: the scores and the label, as a float). Extra memory is
    ``O(block_rows x K x D)`` beyond the output.
    """
    n_samples, n_components = X.shape[0], mixture.means.shape[0]
    width = prediction_width(output, n_components)
    if width is not None:
        out = np.empty((n_samples, width))
    else:
        out = np.empty(n_samples, dtype=np.intp if output == "labels" else np.float64)
    for start in range(0, n_samples, block_rows):
        rows = slice(start, start + block_rows)
        log_norm, log_resp = mixture.log_responsibilities(X[rows])
        if output == "log_norm":
            out[rows] = log_norm
        elif output == "labels":
            out[rows] = log_resp.argmax(axis=1)
        elif output in ("scores", "criteria"):
            out[rows, 0] = log_norm
            out[rows, 1] = log_resp.max(axis=1)
            if output == "criteria":
                out[rows, 2] = log_resp.argmax(axis=1)
        else:
            out[rows] = np.exp(log_resp) if output == "resp" else log_resp
    return out


# --------------------------------------------------------------------------- column summary
@dataclass
class ColumnSummary:
    """Per-feature counts, range and scale-free moments of a set of rows; adds over blocks.

    ``mean`` and ``m2`` (sum of squared deviations) are of ``x / magnitude`` with
    ``magnitude = max |x|``, so squares neither overflow at 1e200 nor underflow at 1e-200.
    Values are only meaningful when every count of non-finite values is zero.
    """

    n_samples: int
    n_bad_rows: int
    n_nan: np.ndarray
    n_inf: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    magnitude: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    def __add__(self, other: ColumnSummary) -> ColumnSummary:
        magnitude = np.maximum(self.magnitude, other.magnitude)
        safe = np.where(magnitude > 0, magnitude, 1.0)
        with np.errstate(invalid="ignore"):  # inf / inf: non-finite data, rejected anyway
            ra, rb = self.magnitude / safe, other.magnitude / safe
        mean_a, mean_b = self.mean * ra, other.mean * rb
        n = self.n_samples + other.n_samples
        delta = mean_b - mean_a
        return ColumnSummary(
            n,
            self.n_bad_rows + other.n_bad_rows,
            self.n_nan + other.n_nan,
            self.n_inf + other.n_inf,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
            magnitude,
            mean_a + delta * (other.n_samples / n),
            self.m2 * ra**2 + other.m2 * rb**2 + delta**2 * (self.n_samples * other.n_samples / n),
        )

    def scaling(self, *, isotropic: bool) -> AffineScaling:
        """The standardisation :meth:`AffineScaling.fit` would give on the same rows."""
        magnitude = np.where(self.magnitude > 0, self.magnitude, 1.0)
        var = self.m2 / self.n_samples
        loc = self.mean * magnitude
        if isotropic:
            common = np.max(magnitude)
            rel_var = var * (magnitude / common) ** 2
            scale = np.full(magnitude.shape[0], np.sqrt(rel_var.mean()) * common)
        else:
            scale = np.sqrt(var) * magnitude
        return AffineScaling(loc=loc, scale=np.where(scale > 0, scale, 1.0))


def _block_summary(X: np.ndarray) -> ColumnSummary:
    with np.errstate(invalid="ignore", over="ignore"):
        nan = np.isnan(X)
        inf = np.isinf(X)
        magnitude = np.max(np.abs(X), axis=0)
        reduced = X / np.where(magnitude > 0, magnitude, 1.0)
        mean = reduced.mean(axis=0)
        reduced -= mean
        reduced *= reduced
    return ColumnSummary(
        X.shape[0],
        int(np.count_nonzero((nan | inf).any(axis=1))),
        nan.sum(axis=0),
        inf.sum(axis=0),
        X.min(axis=0),
        X.max(axis=0),
        magnitude,
        mean,
        reduced.sum(axis=0),
    )


def column_summary(X: np.ndarray, block_rows: int | None = None) -> ColumnSummary:
    """:class:`ColumnSummary` of ``X`` computed block by block (``O(block x D)`` memory).

    ``block_rows`` defaults to about 2**17 values (1 MB per temporary) per block.
    """
    block_rows = block_rows or max(1024, _SUMMARY_BLOCK_ELEMENTS // max(1, X.shape[1]))
    total = None
    for start in range(0, X.shape[0], block_rows):
        part = _block_summary(np.asarray(X[start : start + block_rows], dtype=np.float64))
        total = part if total is None else total + part
    return total


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
