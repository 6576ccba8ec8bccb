"""Rows that are not a plain matrix: frequency weights and missing values (NaN) for EM.

EM's fitting loop sees either the validated ndarray (complete, unweighted data: today's path,
untouched) or a :class:`RowData` prepared here once per fit. Every E-step over a
:class:`RowData` returns the same :class:`~bayesgmm._gaussian.MixtureStatistics` that the
M-steps of all 14 covariance models consume.

Frequency weights (scikit-learn's convention) count how often each row occurs: a row of weight
``w`` contributes ``w`` times its log-likelihood and ``w`` times its responsibilities, so
integer weights give exactly the fit of the repeated rows, and a zero weight removes the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _gaussian as g
from . import _kernels as kernels

__all__ = ["RowData", "criteria_weights", "e_step", "initial_rows", "prepare"]


@dataclass
class RowData:
    """Rows of a fit that need more than the complete-data path: weights (and patterns).

    Attributes
    ----------
    complete : ndarray of shape (n_complete, n_features)
        The rows with every feature observed, in the user's units.
    complete_weight : ndarray of shape (n_complete,) or None
        Their frequency weights (None: unweighted).
    """

    complete: np.ndarray
    complete_weight: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, features)`` of the data EM sees (for the engine's choice)."""
        return self.complete.shape


def prepare(
    X: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray | RowData, kernels.ColumnSummary]:
    """What EM iterates over, and the column summary its standardisation comes from.

    Complete, unweighted data come back unchanged with :func:`bayesgmm._kernels.column_summary`
    (today's path, bit for bit); otherwise a :class:`RowData` and the weighted summary.
    """
    if sample_weight is None:
        return X, kernels.column_summary(X)
    return RowData(X, sample_weight), weighted_summary(X, sample_weight)


def weighted_summary(X: np.ndarray, sample_weight: np.ndarray) -> kernels.ColumnSummary:
    """The :class:`~bayesgmm._kernels.ColumnSummary` of ``X`` whose rows count by their weights.

    Its moments equal those of the repeated rows (to rounding), so the standardisation, and
    with it ``reg_covar``'s scale, is the repeated rows' one. Only the fields that
    :meth:`~bayesgmm._kernels.ColumnSummary.scaling` reads are meaningful.
    """
    w = sample_weight[:, None]
    magnitude = np.max(np.abs(X), axis=0)
    reduced = X / np.where(magnitude > 0, magnitude, 1.0)
    total = float(np.sum(sample_weight))
    mean = np.sum(w * reduced, axis=0) / total
    m2 = np.sum(w * (reduced - mean) ** 2, axis=0)
    zeros = np.zeros(X.shape[1], dtype=np.intp)
    return kernels.ColumnSummary(
        total, 0, zeros, zeros, X.min(axis=0), X.max(axis=0), magnitude, mean, m2
    )


def initial_rows(X: np.ndarray | RowData) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows (user units) and their weights for the data-driven initialisation."""
    if isinstance(X, RowData):
        return X.complete, X.complete_weight
    return X, None


def e_step(
    data: RowData, mixture: kernels.Mixture, *, block_rows: int, engine: str
) -> g.MixtureStatistics:
    """E-step statistics of prepared rows: :func:`bayesgmm._kernels.e_step`, weighted."""
    return kernels.e_step(
        data.complete,
        mixture,
        block_rows=block_rows,
        engine=engine,
        sample_weight=data.complete_weight,
    )


def criteria_weights(X: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray | None:
    """Each row's weight in the information criteria (None: every row counts once)."""
    return sample_weight
