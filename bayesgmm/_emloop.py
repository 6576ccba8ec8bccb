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
from ._scaling import AffineScaling

__all__ = ["SmallLoop"]


@numba.njit(cache=True, error_model="numpy")
def _diagonal_factors(chol, n_features):  # pragma: no cover - compiled
    """``(K, D, D)`` diagonal matrices from diagonal ``(K, D)`` or spherical ``(K, 1)`` factors."""
    n_components = chol.shape[0]
    out = np.zeros((n_components, n_features, n_features))
    for k in range(n_components):
        for j in range(n_features):
            out[k, j, j] = chol[k, 0] if chol.shape[1] == 1 else chol[k, j]
    return out


class SmallLoop:
    """The E-step and the precision factors of one fit, for an ndarray on the calling thread.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        C-contiguous float64 rows in the user's units.
    scaling : AffineScaling
        Maps them to the parameters' unit scale.
    layout : {"full", "tied", "diag", "spherical"}
    block_rows : int
        Rows per kernel block (as the general path's).
    """

    def __init__(self, X: np.ndarray, scaling: AffineScaling, layout: str, block_rows: int):
        self.X = X
        self.loc = np.ascontiguousarray(scaling.loc, dtype=np.float64)
        self.scale = np.ascontiguousarray(scaling.scale, dtype=np.float64)
        self.layout = layout
        self.diagonal = layout in ("diag", "spherical")
        self.block_rows = int(block_rows)
        self.n_features = X.shape[1]

    def _factors(self, chol: np.ndarray, n_components: int) -> np.ndarray:
        """:meth:`bayesgmm._kernels.Mixture.lower_factors`, equal to the last bit."""
        if self.layout == "full":
            return np.ascontiguousarray(np.swapaxes(chol, 1, 2))
        if self.layout == "tied":
            return np.ascontiguousarray(np.broadcast_to(chol.T, (n_components, *chol.shape)))
        return _diagonal_factors(np.reshape(chol, (n_components, -1)), self.n_features)

    def statistics(
        self, weights: np.ndarray, means: np.ndarray, chol: np.ndarray
    ) -> g.MixtureStatistics:
        """:func:`bayesgmm._kernels.e_step` (serial engine) of all rows under the parameters."""
        means = np.ascontiguousarray(means, dtype=np.float64)
        factors = self._factors(chol, means.shape[0])
        sums = kernels._stats_serial(
            self.X,
            kernels.NO_WEIGHTS,
            self.loc,
            self.scale,
            kernels._log_offsets(np.ascontiguousarray(weights, dtype=np.float64), factors),
            means,
            factors,
            self.diagonal,
            self.block_rows,
            1,
        )
        log_lik, resp_sum, first, second = kernels._finish(sums, self.diagonal)
        second = second[:, :, 0] if self.diagonal else second
        return g.MixtureStatistics(float(log_lik), self.X.shape[0], resp_sum, first, second, means)

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        """:func:`bayesgmm._gaussian.precision_cholesky` (which raises on a singular one)."""
        if self.diagonal and np.all(covariances > 0.0) and np.all(covariances < np.inf):
            return 1.0 / np.sqrt(covariances)
        return g.precision_cholesky(covariances, self.layout)
