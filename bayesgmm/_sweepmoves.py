"""Split and merge starts of a sweep: starts for a model at K from its own fits at K - 1 and K + 1.

An optimum at K often differs from a neighbouring one by one cluster split in two, or two merged
into one (the "split" and "merge" moves of Ueda et al.'s SMEM, 2000). em-EM's pool
(:mod:`bayesgmm._restarts`) has the split ones: the same model's ``K - 1`` fit with one cluster
split along its principal axis (:func:`split_starts`), each cluster in turn. The merge ones
need the ``K + 1`` fit, so they come from a second pass of the sweep, K descending
(:func:`merge_pass`): every pair of clusters of the model's ``K + 1`` fit merged
(:func:`merge_starts`; with ``Strategy.merge_pairs``, only the pairs whose responsibilities
overlap most, :func:`overlapping_pairs`), screened by one iteration, the best continued as
em-EM does; the fit at K is replaced where that ends higher. Measured on the benchmark sets
(issue 13, ``benchmarks/results/mclust_optima.txt``): the best merge after one iteration
reaches the reference optimum in cells whose em-EM pool held no start of its basin (wreath VII
K=8: 60.8 nats higher).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ._models import model_name

if TYPE_CHECKING:
    from ._restarts import Strategy

RAISED = 0.1
"""Nats above the fit at K by which a merge's fit counts as another optimum, one whose own
merges :func:`top_merges` tries at K - 1 (issue 13's tolerance; a fit raised by less, e.g. its
own run continued, sent every model down to K = 1)."""

__all__ = [
    "canonical",
    "merge_pass",
    "merge_starts",
    "one_hot",
    "overlapping_pairs",
    "parent_strategy",
    "rescue_starts",
    "split_starts",
    "top_merges",
    "top_parent",
]


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


def merge_starts(
    labels: np.ndarray, resp: np.ndarray | None = None, n_pairs: int = 0
) -> list[np.ndarray]:
    """Partitions into one cluster fewer: every pair of clusters of ``labels`` merged (those
    left with fewer than two clusters excepted), labels renumbered ``0, 1, ...`` in order of
    first appearance (:func:`canonical`: in the canonical ``labels`` cluster ``a < b``
    appears first, so the merged one keeps ``a`` and those after ``b`` move down by one).

    With the fit's responsibilities ``resp`` (``labels`` their row maxima) and ``n_pairs`` >
    0, only the ``n_pairs`` pairs that :func:`overlapping_pairs` ranks first, in that order."""
    first = canonical(labels)
    k = int(first.max()) + 1
    if k < 3:
        return []
    pairs = np.array(list(itertools.combinations(range(k), 2)))
    if resp is not None and 0 < n_pairs < len(pairs):
        pairs = pairs[overlapping_pairs(labels, resp, pairs, n_pairs)]
    labels = first
    a, b, old = pairs[:, :1], pairs[:, 1:], np.arange(k)
    relabel = np.where(old == b, a, old - (old > b))  # (pairs, k): each pair's new label of each
    return list(relabel[:, labels])


def overlapping_pairs(
    labels: np.ndarray, resp: np.ndarray, pairs: np.ndarray, n: int
) -> np.ndarray:
    """The indices (ascending) of the ``n`` ``pairs`` of clusters of ``canonical(labels)``
    whose responsibilities overlap most: the cosine of the two columns of ``resp`` (SMEM's
    merge criterion, Ueda et al. 2000, normalised; ties by pair order). ``labels`` are the
    row maxima of ``resp``; canonical cluster ``c`` is the component of its first row."""
    _, first = np.unique(labels, return_index=True)
    columns = resp[:, np.asarray(labels)[np.sort(first)]]
    gram = columns.T @ columns
    norms = np.sqrt(np.diag(gram))
    cosine = gram[pairs[:, 0], pairs[:, 1]] / (norms[pairs[:, 0]] * norms[pairs[:, 1]])
    return np.sort(np.argsort(-cosine, kind="stable")[:n])


def parent_strategy(
    em_kwargs: dict[str, Any], strategy: Strategy
) -> tuple[dict[str, Any], Strategy]:
    """The EM settings and em-EM of the fit at ``K + 1`` that the sweep's largest K is merged
    from (:func:`top_merges`): the same starts and screening, the best short run continued
    alone (no reserve, no loose stage, no kind of start continued regardless: not the
    hierarchical, random or kmeans-best ones) to the loose stage's tolerance: its clusters
    are merge starts, not a row of the table. (Measured,
    benchmark sets: two short runs instead of six saved 1-2% of the sweep's iterations and
    missed iris VII K=9 and banknote VVI K=9 in one seed each; the full em-EM cost 3-6% more
    for no further cell.)"""
    loose = {**em_kwargs, "tol": max(em_kwargs["tol"], strategy.loose_tol)}
    return loose, replace(strategy, n_reserve=0, n_loose=0, n_best=1, always=())


def top_merges(ks: list[int], cov_types: list[str], merge: Any) -> None:
    """After :func:`merge_pass`, the largest K merged from its ``K + 1`` fit (made by the
    sweep for this alone), then, K descending, each model whose fit that moved to another
    partition merged again at K - 1 from its new fit, as long as one moves. ``merge(ks,
    cov_types)`` is :func:`merge_pass` on the sweep's rows and labels (the ``K + 1`` fits'
    among them). Run after the pass, so every cell is where the pass left it or higher."""
    k = max(ks)
    names = {model_name(c) for c in cov_types}
    while k in ks and names:
        names = merge([k], [c for c in cov_types if model_name(c) in names])
        k -= 1


def top_parent(n_rows: int, ks: list[int], strategy: Strategy) -> list[int]:
    """``[max(ks) + 1]`` where the sweep fits it only for :func:`top_merges` (see
    :attr:`bayesgmm._restarts.Strategy.top_parent`; not for fewer rows), else ``[]``."""
    if not (strategy.n_merge and strategy.top_parent) or not ks or max(ks) + 1 >= n_rows:
        return []
    return [max(ks) + 1]


def rescue_starts(
    k: int,
    labels: dict[tuple[int, str], np.ndarray],
    rows: dict[tuple[int, str], dict[str, Any]],
    tried: list[tuple[str, np.ndarray]],
) -> list[tuple[str, np.ndarray]]:
    """Starts for a fit at K whose every start failed: the other models' fits at K that were
    not among them, sound ones ("ok") first, then by log-likelihood. The cross starts are the
    fits with the highest log-likelihood, which on tied data can all collapse (geyser VVE K=9:
    those of the VEE, EVI and EVE fits, with every other start; those of the VII and VVI fits,
    not among them, did not)."""
    seen = {canonical(np.argmax(resp, axis=1)).tobytes() for _, resp in tried}
    ranked = []
    for (j, _), row in rows.items():
        key = (j, row["model_name"])
        if j != k or key not in labels or row["_fit"] is None:
            continue
        partition = canonical(labels[key])
        if partition.tobytes() in seen or int(partition.max()) + 1 != k:
            continue
        seen.add(partition.tobytes())
        ranked.append((row["status"] != "ok", -row["log_likelihood"], partition))
    ranked.sort(key=lambda item: item[:2])
    return [("cross", one_hot(p, k, len(p))) for _, _, p in ranked]


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


def _ranking(X: Any, rows: dict, k: int, cov_type: str, context: dict[str, Any]) -> tuple:
    """The ``(resp, n_pairs)`` of :func:`merge_starts` for the merges of the fit at ``k``:
    its responsibilities on the rows the fits keep, when ``strategy.merge_pairs`` asks for a
    ranking (else none: every pair)."""
    n_pairs = context["strategy"].merge_pairs
    if not n_pairs:
        return None, 0
    resp = rows[k, cov_type]["_fit"]._predict_rows(X, "resp")
    return resp[context["observed"]], n_pairs


def merge_pass(
    fit_one: Any,
    X: Any,
    ks: list[int],
    cov_types: list[str],
    context: dict[str, Any],
    rows: dict[tuple[int, str], dict[str, Any]],
    labels: dict[tuple[int, str], np.ndarray],
) -> set[str]:
    """Refit every model at each K (descending) from its ``K + 1`` fit's merged pairs; keep the
    refit where it is higher (``rows`` and the fits' MAP ``labels`` updated in place); the
    names of the models whose fit was raised by more than ``RAISED`` nats at the smallest K.

    ``context`` holds ``em_kwargs``, ``strategy``, ``sample_weight`` and ``observed`` (the rows
    the fits keep), as :func:`bayesgmm._restarts.sweep_rows` has them. em-EM screens the
    merges (the ``strategy.merge_pairs`` most overlapping pairs, or all) by one iteration,
    the ``strategy.n_merge`` best go on to a short run, and the best short run is continued
    to convergence only where it is above the fit at K: that fit's own responsibilities are
    a start too (``"current"``), always continued, which costs an iteration or two (it has
    converged) and wins unless a merge passed it.
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
    raised: set[str] = set()
    for k in sorted(ks, reverse=True):
        done: set[str] = set()
        raised = set()
        for cov_type in cov_types:
            name = model_name(cov_type)
            if name in done or (k + 1, name) not in labels:
                continue
            done.add(name)
            merges = merge_starts(labels[k + 1, name], *_ranking(X, rows, k + 1, cov_type, context))
            starts = [("merge", one_hot(m, k, len(m))) for m in merges]
            if not starts:
                continue
            current = rows[k, cov_type]["_fit"]
            if current is not None:
                starts.insert(0, ("current", current._predict_rows(X, "resp")[observed]))
            row = fit_one(
                X, k, cov_type, context["em_kwargs"], starts, merged, context["sample_weight"]
            )
            before = rows[k, cov_type]
            if not _better(row, before):
                continue
            if before["_fit"] is None or row["log_likelihood"] > before["log_likelihood"] + RAISED:
                raised.add(name)  # (another optimum, not the fit at K a few iterations on)
            labels[k, name] = row["_labels"][observed]  # (predict(X), from fit_one)
            for key in [key for key, r in rows.items() if key[0] == k and r["model_name"] == name]:
                rows[key] = {**row, "covariance_type": key[1]}
    return raised
