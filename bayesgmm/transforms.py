"""Log-ratio transforms of compositional data (rows of parts that sum to a constant).

Closed data (percentages, proportions) carry one exact linear constraint: every covariance
of a Gaussian mixture fitted to the parts is singular, and :class:`bayesgmm.BayesianGMM`
refuses them (or warns, when the sum is constant only to rounding). Aitchison's log-ratios
map a composition of ``D`` parts to ``D - 1`` unconstrained coordinates a mixture can model:
the isometric log-ratio (:func:`ilr`, orthonormal coordinates: distances and the shape of
clusters are those of the simplex's geometry) and the additive one (:func:`alr`, the log of
each part over a reference part: easy to read).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import helmert

__all__ = ["alr", "ilr"]


def _parts(X: Any) -> np.ndarray:
    """``X`` as a 2-D float array of positive parts (at least two), or a ValueError."""
    parts = np.asarray(X, dtype=np.float64)
    if parts.ndim != 2 or parts.shape[1] < 2:
        raise ValueError(
            f"a composition needs a 2-D array with at least two parts (columns), got shape "
            f"{parts.shape}."
        )
    if not np.all(parts > 0):  # NaN fails too
        raise ValueError(
            "log-ratios need every part positive and observed: replace zeros (e.g. by half "
            "the detection limit) and missing parts first."
        )
    return parts


def ilr(X: Any) -> np.ndarray:
    """Isometric log-ratio coordinates of compositions.

    ``log(X) @ V.T`` with ``V`` the ``(D - 1, D)`` Helmert basis (orthonormal rows, each
    orthogonal to ``(1, ..., 1)``): invariant to the rows' totals, so closed and unclosed
    amounts give the same coordinates.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_parts)
        Positive parts.

    Returns
    -------
    ndarray of shape (n_samples, n_parts - 1)

    Examples
    --------
    >>> ilr([[1.0, 1.0, 1.0], [20.0, 30.0, 50.0]]).round(3)
    array([[ 0.   ,  0.   ],
           [-0.287, -0.583]])
    """
    return np.log(_parts(X)) @ helmert(np.shape(X)[1]).T


def alr(X: Any, reference: int = -1) -> np.ndarray:
    """Additive log-ratios ``log(X[:, j] / X[:, reference])`` of the other parts ``j``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_parts)
        Positive parts.
    reference : int
        Column of the part every other is divided by (the last by default).

    Returns
    -------
    ndarray of shape (n_samples, n_parts - 1)
        The columns in their order, without ``reference``.

    Examples
    --------
    >>> alr([[20.0, 30.0, 50.0]]).round(3)
    array([[-0.916, -0.511]])
    """
    logs = np.log(_parts(X))
    reference = int(np.arange(logs.shape[1])[reference])
    return np.delete(logs, reference, axis=1) - logs[:, [reference]]
