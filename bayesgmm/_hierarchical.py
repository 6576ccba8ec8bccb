"""mclust's default initialisation: model-based hierarchical agglomeration (MBHAC).

Every row starts as its own cluster; the two clusters whose merge increases a Gaussian
classification criterion least are merged, until one cluster is left (Banfield & Raftery 1993;
Fraley 1998, "Algorithms for model-based Gaussian hierarchical clustering", SIAM J. Sci.
Comput. 20). Cutting the tree at K clusters gives the partition from which mclust starts EM
for K components. The functions here reproduce mclust's ``hc()`` with the settings ``Mclust``
uses (``mclust.options("hcModelName") = "VVV"``, ``mclust.options("hcUse") = "SVD"``):

1. :func:`transform` ("SVD"): centre and scale every feature to unit standard deviation
   (``n - 1`` divisor), take the thin SVD ``X_s = U S V'`` and agglomerate on
   ``Z = X_s V S^(-1/2)`` (that is ``U S^(1/2)``: principal components, shrunk towards equal
   variance). mclust stops with an error when a singular value is exactly zero; here that
   direction is dropped.
2. :func:`merge_tree`: the agglomeration. The VVV criterion of a cluster of ``n`` rows with
   scatter matrix ``W`` is ``n log(det(W / n) + beta (tr W + alpha) / n)`` (only the trace part
   while ``n <= max(p, 2)``), so singletons and small clusters have a finite criterion;
   ``alpha = tr(W_all) / (n p)`` of ``Z`` and ``beta = 1``, as ``hcVVV`` sets them. By default
   the clusters other than the latest enter later merges with the distorted scatter matrix that
   mclust's Fortran stores for them (see :mod:`bayesgmm._hc_kernel`); ``exact_scatter=True``
   uses the exact one. VII (``n log((tr W + alpha) / n)``) and EII (Ward) are available too;
   mclust's ``EEE`` criterion is not implemented.
3. :func:`cut_tree`: mclust's ``hclass``, labels renumbered in order of first appearance.

:func:`hierarchical_partitions` runs the three steps; like ``Mclust`` it agglomerates a random
subset of ``max_samples = 2000`` rows of larger data (mclust then runs one M-step on that
subset and an E-step on all rows before EM; that belongs to the EM estimator). The loop is
compiled with Numba (:mod:`bayesgmm._hc_kernel`): ``O(n^2)`` pair costs (``O(p^3)`` each for
VVV) and ``O(n^2)`` memory (16 MB at n = 2000); about 0.7 s at n = 2000, p = 4, where mclust's
``hc`` takes 3 s.

On the ten benchmark data sets every merge equals mclust 6.0's for VVV and VII, and every
partition for EII (``tests/test_hierarchical.py``). Exact ties (duplicated rows) are broken by
mclust's rule; where two merges cost the same only up to rounding, the two implementations
could choose differently (their arithmetic differs in the last bits).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._hc_kernel import MODEL_CODES, agglomerate
from ._validation import check_choice, check_matrix

__all__ = [
    "HC_MODELS",
    "HC_TRANSFORMS",
    "MAX_SAMPLES",
    "Agglomeration",
    "cut_tree",
    "hierarchical_partitions",
    "merge_tree",
    "transform",
]

HC_MODELS = tuple(MODEL_CODES)
HC_TRANSFORMS = ("SVD", "STD", "VARS")
MAX_SAMPLES = 2000  # mclust.options("subset")


@dataclass(frozen=True)
class Agglomeration:
    """Partitions of the rows of ``X`` by model-based hierarchical agglomeration.

    Attributes
    ----------
    rows : ndarray of int, shape (n_rows,)
        The rows of ``X`` that were agglomerated: all of them, or a random subset of
        ``max_samples`` rows (in the order drawn).
    merges : ndarray of int, shape (n_rows - 1, 2)
        The merges in order; labels are positions in ``rows`` (see :func:`merge_tree`).
    n_clusters : tuple of int
        The requested numbers of clusters, ascending.
    labels : ndarray of int, shape (n_rows, len(n_clusters))
        Column ``c`` labels ``X[rows]`` with ``0 .. n_clusters[c] - 1``.
    """

    rows: np.ndarray
    merges: np.ndarray
    n_clusters: tuple[int, ...]
    labels: np.ndarray

    def partition(self, n_clusters: int) -> np.ndarray:
        """Labels of ``X[rows]`` for one of the requested ``n_clusters``."""
        check_choice("n_clusters", n_clusters, self.n_clusters)
        return self.labels[:, self.n_clusters.index(n_clusters)]


def transform(X: np.ndarray, use: str = "SVD") -> np.ndarray:
    """The data mclust's ``hc`` agglomerates, for ``hcUse`` = ``use``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite data with no constant feature.
    use : {"SVD", "STD", "VARS"}
        "SVD" (mclust's default for ``Mclust``): scaled data times ``V S^(-1/2)`` of its thin
        SVD; "STD": centred and scaled features; "VARS": the data as they are.

    Returns
    -------
    ndarray of shape (n_samples, n_components)
        ``n_components`` is ``n_features``, or for "SVD" ``min(n_samples, n_features)`` less
        any direction with a zero singular value.
    """
    check_choice("use", use, HC_TRANSFORMS)
    X = np.asarray(X, dtype=float)
    if use == "VARS":
        return X.copy()
    spread = X.std(axis=0, ddof=1)
    if not np.all(spread > 0):
        raise ValueError(
            f"Feature(s) {np.flatnonzero(~(spread > 0)).tolist()} are constant in the rows "
            f"agglomerated, so use={use!r} cannot scale them. Drop them, or agglomerate more "
            "rows (max_samples)."
        )
    scaled = (X - X.mean(axis=0)) / spread
    if use == "STD":
        return scaled
    _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
    keep = singular > 0.0
    return scaled @ vt[keep].T / np.sqrt(singular[keep])


def _alpha(Z: np.ndarray, model: str, alpha: float) -> float:
    """``hcVVV``/``hcVII``'s regularisation: ``alpha`` times the total variance per entry."""
    if model == "EII":
        return 0.0
    scaled = Z / np.sqrt(Z.size)
    total = float(np.sum((scaled - scaled.mean(axis=0)) ** 2))
    return max(alpha * total, float(np.finfo(float).eps))


def merge_tree(
    Z: np.ndarray,
    *,
    model: str = "VVV",
    alpha: float = 1.0,
    beta: float = 1.0,
    exact_scatter: bool = False,
) -> np.ndarray:
    """Agglomerate the rows of ``Z`` by the classification likelihood of ``model``.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        The data to merge (e.g. :func:`transform`'s output), at least two rows.
    model : {"VVV", "VII", "EII"}
        The Gaussian model whose classification likelihood guides the merges.
    alpha, beta : float
        mclust's regularisation of the VVV (and, ``alpha`` only, VII) criterion; ``alpha`` is
        multiplied by the total variance per entry of ``Z``, as in mclust.
    exact_scatter : bool
        VVV only. False (default) reproduces mclust 6.0-6.1, which stores every cluster but the
        latest with a distorted scatter matrix (see :mod:`bayesgmm._hc_kernel`); True uses
        every cluster's exact scatter matrix (Fraley's criterion as published).

    Returns
    -------
    ndarray of int, shape (n_samples - 1, 2)
        Merge ``m`` joins the clusters labelled ``a = merges[m, 0] < b = merges[m, 1]``. A
        cluster's label is the smallest row index in it, so the union keeps ``a``. The same
        pairs as mclust's ``hc()`` (there as columns, 1-based).
    """
    check_choice("model", model, HC_MODELS)
    Z = np.ascontiguousarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[0] < 2:
        raise ValueError(f"Z must be a 2-D array with at least two rows, got shape {Z.shape}.")
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z contains NaN or infinity: drop or impute those rows first.")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (isinstance(value, numbers.Real) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    code, scaled_alpha = MODEL_CODES[model], _alpha(Z, model, alpha)
    return agglomerate(Z, code, scaled_alpha, float(beta), not exact_scatter)


def cut_tree(merges: np.ndarray, n_clusters: Iterable[int]) -> np.ndarray:
    """Partitions of the tree at each of ``n_clusters`` clusters (mclust's ``hclass``).

    Parameters
    ----------
    merges : ndarray of int, shape (n_samples - 1, 2)
        :func:`merge_tree`'s output.
    n_clusters : iterable of int
        Numbers of clusters, each between 1 and ``n_samples``.

    Returns
    -------
    ndarray of int, shape (n_samples, len(n_clusters))
        Column ``c`` labels the rows ``0 .. k - 1`` for ``k = sorted(n_clusters)[c]``, in order
        of first appearance (row 0 is in cluster 0).
    """
    merges = np.asarray(merges, dtype=np.int64)
    n_samples = merges.shape[0] + 1
    ks = _check_n_clusters(n_clusters, n_samples)
    parent = np.arange(n_samples)
    out = np.empty((n_samples, len(ks)), dtype=np.int64)
    wanted = {n_samples - k: c for c, k in enumerate(ks)}
    for step in range(n_samples):
        if step in wanted:
            out[:, wanted[step]] = _first_appearance(_roots(parent))
        if step < n_samples - 1:
            parent[merges[step, 1]] = merges[step, 0]
    return out


def _roots(parent: np.ndarray) -> np.ndarray:
    """Every row's cluster label: parent links followed to the top by pointer jumping."""
    roots = parent.copy()
    while True:
        above = roots[roots]
        if np.array_equal(above, roots):
            return roots
        roots = above


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Relabel ``0 .. k - 1`` in order of first appearance (mclust's ``partconv``)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse.ravel()]


def _check_n_clusters(n_clusters: Iterable[int], n_samples: int) -> tuple[int, ...]:
    values = [n_clusters] if isinstance(n_clusters, numbers.Integral) else list(n_clusters)
    bad = [k for k in values if not isinstance(k, numbers.Integral) or isinstance(k, bool)]
    if not values or bad:
        raise ValueError(
            f"n_clusters must be one or more integers, got {n_clusters!r}. Pass e.g. range(1, 10)."
        )
    ks = tuple(sorted({int(k) for k in values}))
    if ks[0] < 1 or ks[-1] > n_samples:
        raise ValueError(
            f"n_clusters must lie between 1 and the number of rows agglomerated ({n_samples}), "
            f"got {list(ks)}. Ask for fewer clusters or supply more rows."
        )
    return ks


def hierarchical_partitions(
    X: Any,
    n_clusters: Iterable[int],
    *,
    model: str = "VVV",
    use: str = "SVD",
    max_samples: int = MAX_SAMPLES,
    random_state: Any = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    exact_scatter: bool = False,
) -> Agglomeration:
    """mclust's default initial partitions of ``X`` for each number of clusters.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Finite numeric data with no constant feature.
    n_clusters : int or iterable of int
        Numbers of clusters wanted (e.g. ``range(1, 10)``).
    model : {"VVV", "VII", "EII"}
        Criterion of the agglomeration (mclust's ``hcModelName``; "VVV" by default).
    use : {"SVD", "STD", "VARS"}
        Transformation of the data first (mclust's ``hcUse``; "SVD" by default).
    max_samples : int
        Larger data are agglomerated on a random subset of this many rows
        (``mclust.options("subset")``, 2000).
    random_state : int, RandomState instance or None
        Draws the subset; unused when ``n_samples <= max_samples``.
    alpha, beta, exact_scatter
        The criterion's regularisation and mclust's storage of clusters, see
        :func:`merge_tree`.

    Returns
    -------
    Agglomeration

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> agg = hierarchical_partitions(load_faithful(), range(1, 4))
    >>> agg.labels.shape, [int(agg.partition(k).max()) + 1 for k in (1, 2, 3)]
    ((272, 3), [1, 2, 3])
    """
    check_choice("model", model, HC_MODELS)
    check_choice("use", use, HC_TRANSFORMS)
    if not isinstance(max_samples, numbers.Integral) or max_samples < 2:
        raise ValueError(f"max_samples must be an integer >= 2, got {max_samples!r}.")
    X, _ = check_matrix(X)
    n_samples = X.shape[0]
    ks = _check_n_clusters(n_clusters, min(n_samples, max_samples))
    rows = np.arange(n_samples)
    if n_samples > max_samples:
        rows = check_random_state(random_state).choice(n_samples, max_samples, replace=False)
    Z = transform(X[rows], use)
    merges = merge_tree(Z, model=model, alpha=alpha, beta=beta, exact_scatter=exact_scatter)
    return Agglomeration(rows, merges, ks, cut_tree(merges, ks))
