"""EM iterations on small in-memory data with the least Python per iteration.

At the sizes people sweep (hundreds of rows, a handful of features) one E-step's compiled work
takes about 15 us, and the Python around it (building a :class:`bayesgmm._kernels.Mixture`,
its precision factors and log-offsets, contiguity checks, the statistics' dataclass, the
M-step's precision factors) took two to three times that. :class:`SmallLoop` prepares what
does not change between iterations once per fit and calls the compiled function that
:func:`bayesgmm._kernels.e_step` (serial engine) calls, :func:`bayesgmm._kernels.serial_statistics`,
with arguments of the same types: the same machine code on the same numbers, so every number it
returns is bit for bit the general path's (``tests/test_restarts.py`` checks it); the general
path (Dask arrays, large problems on several threads) stays in :mod:`bayesgmm.em`.
"""

from __future__ import annotations

import numpy as np

from . import _gaussian as g
from . import _kernels as kernels
from ._scaling import AffineScaling

__all__ = ["SmallLoop"]


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
        self.code = kernels.LAYOUT_CODES[layout]
        self.diagonal = layout in ("diag", "spherical")
        self.block_rows = int(block_rows)
        self.n_features = X.shape[1]

    def statistics(
        self, weights: np.ndarray, means: np.ndarray, chol: np.ndarray
    ) -> g.MixtureStatistics:
        """:func:`bayesgmm._kernels.e_step` (serial engine) of all rows under the parameters."""
        means = np.ascontiguousarray(means, dtype=np.float64)
        log_lik, resp_sum, first, second = kernels.serial_statistics(
            self.X,
            kernels.NO_WEIGHTS,
            self.loc,
            self.scale,
            np.ascontiguousarray(weights, dtype=np.float64),
            means,
            kernels.stacked_chol(chol, self.layout),
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
