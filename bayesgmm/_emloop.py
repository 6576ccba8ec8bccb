"""EM iterations on small in-memory data with the least Python per iteration.

At the sizes people sweep (hundreds of rows, a handful of features) one E-step's compiled work
takes about 15 us, and the Python around it (building a :class:`bayesgmm._kernels.Mixture`,
its precision factors and log-offsets, contiguity checks, the statistics' dataclass, the
M-step's precision factors) took two to three times that. :class:`SmallLoop` prepares what
does not change between iterations once per fit and calls the same compiled functions as
:func:`bayesgmm._kernels.e_step` (serial engine) with the same arguments, so every number it
returns is bit for bit the general path's (``tests/test_restarts.py`` checks it); the general
path (Dask arrays, large problems on several threads) stays in :mod:`bayesgmm.em`.
"""

from __future__ import annotations

import numba
import numpy as np

from . import _gaussian as g
from . import _kernels as kernels
from . import _numba_cache
from ._scaling import AffineScaling

__all__ = ["SmallLoop", "canonical_rows"]


_LAYOUT_CODES = {"full": 0, "tied": 1, "diag": 2, "spherical": 3}


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _lower_factors(chol, layout, n_components, n_features):  # pragma: no cover - compiled
    """:meth:`bayesgmm._kernels.Mixture.lower_factors` from ``chol`` as ``(K or 1, D, D)``
    (full, tied) or ``(K, D or 1, 1)`` (diag, spherical), ``layout`` a :data:`_LAYOUT_CODES`."""
    out = np.zeros((n_components, n_features, n_features))
    for k in range(n_components):
        for a in range(n_features):
            if layout == 0:
                for b in range(a + 1):
                    out[k, a, b] = chol[k, b, a]
            elif layout == 1:
                for b in range(a + 1):
                    out[k, a, b] = chol[0, b, a]
            else:
                out[k, a, a] = chol[k, 0, 0] if chol.shape[1] == 1 else chol[k, a, 0]
    return out


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=False)  # em-EM's runs on threads
def _statistics(X, loc, scale, weights, means, chol, layout, block_rows):  # pragma: no cover
    """The serial E-step of :func:`bayesgmm._kernels.e_step` in one compiled call: precision
    factors, log-offsets, the kernel's sums and their totals (``_finish``)."""
    n_components, n_features = means.shape
    factors = _lower_factors(chol, layout, n_components, n_features)
    diagonal = layout >= 2
    offsets = kernels._log_offsets(weights, factors)
    sums = kernels._stats_serial(
        X, kernels.NO_WEIGHTS, loc, scale, offsets, means, factors, diagonal, block_rows, 1
    )
    return kernels._finish(sums, diagonal)


def canonical_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as the one array type the compiled loops are specialised for: a base ndarray of
    float64, C-contiguous, aligned and writable (``X`` itself when it is one, else a copy).

    Numba compiles a kernel for each distinct argument type, but serves a call from an
    already compiled specialisation its arguments convert to safely (a writable array to a
    read-only one's): after a read-only ``X`` (a memmap, a pandas copy-on-write view), which
    machine code ran a writable ``X`` would depend on what ran first in the process.
    """
    return np.require(X, dtype=np.float64, requirements=["C", "A", "W", "E"])


class SmallLoop:
    """The E-step and the precision factors of one fit, for an ndarray on the calling thread.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows in the user's units (held as :func:`canonical_rows`).
    scaling : AffineScaling
        Maps them to the parameters' unit scale.
    layout : {"full", "tied", "diag", "spherical"}
    block_rows : int
        Rows per kernel block (as the general path's).
    """

    def __init__(self, X: np.ndarray, scaling: AffineScaling, layout: str, block_rows: int):
        self.X = canonical_rows(X)
        self.loc = np.ascontiguousarray(scaling.loc, dtype=np.float64)
        self.scale = np.ascontiguousarray(scaling.scale, dtype=np.float64)
        self.layout = layout
        self.code = _LAYOUT_CODES[layout]
        self.diagonal = layout in ("diag", "spherical")
        self.block_rows = int(block_rows)
        self.n_features = X.shape[1]

    def statistics(
        self, weights: np.ndarray, means: np.ndarray, chol: np.ndarray
    ) -> g.MixtureStatistics:
        """:func:`bayesgmm._kernels.e_step` (serial engine) of all rows under the parameters."""
        means = np.ascontiguousarray(means, dtype=np.float64)
        n_components = means.shape[0]
        if self.diagonal:  # (K, D) or (K,) -> (K, D or 1, 1)
            chol = np.reshape(chol, (n_components, -1, 1))
        elif chol.ndim == 2:  # tied
            chol = chol[None]
        log_lik, resp_sum, first, second = _statistics(
            self.X,
            self.loc,
            self.scale,
            np.ascontiguousarray(weights, dtype=np.float64),
            means,
            np.ascontiguousarray(chol, dtype=np.float64),
            self.code,
            self.block_rows,
        )
        second = second[:, :, 0] if self.diagonal else second
        return g.MixtureStatistics(float(log_lik), self.X.shape[0], resp_sum, first, second, means)

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        """:func:`bayesgmm._gaussian.precision_cholesky` (which raises on a singular one)."""
        if self.diagonal and np.all(covariances > 0.0) and np.all(covariances < np.inf):
            return 1.0 / np.sqrt(covariances)
        return g.precision_cholesky(covariances, self.layout)


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
