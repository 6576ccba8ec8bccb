"""Split and merge starts of a sweep: starts for a model at K from its own fits at K - 1 and K + 1.

An optimum at K often differs from a neighbouring one by one cluster split in two, or two merged
into one (the "split" and "merge" moves of Ueda et al.'s SMEM, 2000). em-EM's pool
(:mod:`bayesgmm._restarts`) has the split ones: the same model's ``K - 1`` fit with one cluster
split along its principal axis (:func:`split_starts`), each cluster in turn. The merge ones
need the ``K + 1`` fit, so they come from a second pass of the sweep, K descending
(:func:`merge_pass`): every pair of clusters of the model's ``K + 1`` fit merged
(:func:`merge_starts`), screened by one iteration, the best continued as em-EM does; the fit at
K is replaced where that ends higher. Measured on the benchmark sets (issue 13,
``benchmarks/results/mclust_optima.txt``): the best merge after one iteration reaches the
reference optimum in cells whose em-EM pool held no start of its basin (wreath VII K=8: 60.8
nats higher).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._models import model_name

if TYPE_CHECKING:
    from ._restarts import Strategy

__all__ = ["canonical", "merge_pass", "merge_starts", "one_hot", "split_starts"]


def canonical(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered ``0, 1, ...`` in order of first appearance (a partition's identity)."""
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    mapping = np.empty(order.size, dtype=np.int64)
    mapping[order] = np.arange(order.size)
    return mapping[inverse.reshape(labels.shape)]


def one_hot(
    labels: np.ndarray, k: int, n_samples: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Responsibilities of a hard partition; rows not in ``rows`` get zero weight."""
    resp = np.zeros((n_samples, k))
    rows = np.arange(n_samples) if rows is None else rows
    resp[rows, labels] = 1.0
    return resp


def split_starts(
    labels: np.ndarray, X: np.ndarray, n_split: int, min_rows: int = 1
) -> list[np.ndarray]:
    """Partitions into one more cluster: each of the ``n_split`` largest clusters of
    ``labels`` split in two by the sign of its rows' projection on its principal axis, where
    both halves have at least ``min_rows`` rows.

    ``X`` is on a scale where the principal axis is meaningful (standardised features).
    """
    labels = canonical(labels)
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    out = []
    for c in np.argsort(-sizes, kind="stable")[:n_split]:
        members = np.flatnonzero(labels == c)
        if members.size < 4:
            continue
        centred = X[members] - X[members].mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        side = centred @ axis > 0
        if min(side.sum(), (~side).sum()) < max(min_rows, 1):
            continue
        new = labels.copy()
        new[members[side]] = k
        out.append(new)
    return out


def merge_starts(labels: np.ndarray) -> list[np.ndarray]:
    """Partitions into one cluster fewer: every pair of clusters of ``labels`` merged (those
    left with fewer than two clusters excepted), labels renumbered ``0, 1, ...`` in order of
    first appearance (:func:`canonical`: in the canonical ``labels`` cluster ``a < b``
    appears first, so the merged one keeps ``a`` and those after ``b`` move down by one)."""
    labels = canonical(labels)
    k = int(labels.max()) + 1
    if k < 3:
        return []
    return [
        np.where(labels == b, a, labels) - (labels > b)
        for a, b in itertools.combinations(range(k), 2)
    ]


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether the merge fit's row replaces the sweep's: fitted, higher log-likelihood, and not
    less healthy (a collapsed or unconverged fit never replaces a sound one)."""
    if new["_fit"] is None:
        return False
    if old["_fit"] is None:
        return True
    if new["status"] != "ok" and old["status"] == "ok":
        return False
    return bool(new["log_likelihood"] > old["log_likelihood"])


def merge_pass(
    fit_one: Any,
    X: Any,
    ks: list[int],
    cov_types: list[str],
    context: dict[str, Any],
    rows: dict[tuple[int, str], dict[str, Any]],
    labels: dict[tuple[int, str], np.ndarray],
) -> None:
    """Refit every model at each K (descending) from its ``K + 1`` fit's merged pairs; keep the
    refit where it is higher (``rows`` and the fits' MAP ``labels`` updated in place).

    ``context`` holds ``em_kwargs``, ``strategy``, ``sample_weight`` and ``observed`` (the rows
    the fits keep), as :func:`bayesgmm._restarts.sweep_rows` has them. em-EM screens the
    merges by one iteration, the ``strategy.n_merge`` best go on to a short run, and the best
    short run is continued to convergence only where it is above the fit at K: that fit's own
    responsibilities are a start too (``"current"``), always continued, which costs an
    iteration or two (it has converged) and wins unless a merge passed it.
    """
    strategy: Strategy = context["strategy"]
    merged = replace(
        strategy,
        n_screened=strategy.n_merge,
        n_reserve=0,
        n_loose=0,
        n_best=1,
        always=("current",),
    )
    observed = context["observed"]
    for k in sorted(ks, reverse=True):
        done: set[str] = set()
        for cov_type in cov_types:
            name = model_name(cov_type)
            if name in done or (k + 1, name) not in labels:
                continue
            done.add(name)
            starts = [("merge", one_hot(m, k, len(m))) for m in merge_starts(labels[k + 1, name])]
            if not starts:
                continue
            current = rows[k, cov_type]["_fit"]
            if current is not None:
                starts.insert(0, ("current", current._predict_rows(X, "resp")[observed]))
            row = fit_one(
                X, k, cov_type, context["em_kwargs"], starts, merged, context["sample_weight"]
            )
            if not _better(row, rows[k, cov_type]):
                continue
            labels[k, name] = row["_fit"]._predict_rows(X, "labels")[observed]
            for key in [key for key, r in rows.items() if key[0] == k and r["model_name"] == name]:
                rows[key] = {**row, "covariance_type": key[1]}
