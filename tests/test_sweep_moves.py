"""The sweep's split and merge starts (bayesgmm._sweepmoves): the partitions they make, the
merge pass never lowering a cell, the rescue starts of a fit whose every start failed, and
cells of issue 13's bar (at least the better of mclust's and scikit-learn's optimum - 0.1 nats)
that the sweep missed without the merge pass (wreath EEE K=9: without the largest K's own K + 1
fit to merge from), against numbers computed once (tests/data/make_optima_cells.py)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesgmm import em_sweep
from bayesgmm._restarts import Strategy
from bayesgmm._sweepmoves import (
    canonical,
    merge_starts,
    one_hot,
    overlapping_pairs,
    rescue_starts,
    split_starts,
)

ROOT = Path(__file__).parents[1]
CELLS = json.loads((Path(__file__).parent / "data" / "optima_cells.json").read_text())["cells"]


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "benchmarks" / "data" / f"{name}.csv").astype(float)


def test_merge_starts_merge_every_pair_once() -> None:
    labels = np.array([2, 2, 0, 1, 3, 3, 1, 0])
    merged = merge_starts(labels)
    assert len(merged) == 6  # C(4, 2)
    for (a, b), m in zip(combinations(range(4), 2), merged, strict=True):
        first = canonical(labels)
        assert np.array_equal(m, canonical(np.where(first == b, a, first)))
        assert np.unique(m).size == 3
        # rows of every other cluster stay together, the two merged ones share a label
        assert np.unique(m[(first == a) | (first == b)]).size == 1
    assert merge_starts(np.array([0, 1, 1, 0])) == []  # one cluster left: no start


def test_merge_starts_are_canonical_partitions() -> None:
    """Random labellings: each merge equals the canonical relabelling of the merged pair."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        k = int(rng.integers(3, 10))
        labels = rng.permutation(np.concatenate([np.arange(k), rng.integers(0, k, size=30)]))
        first = canonical(labels)
        pairs = combinations(range(k), 2)
        for (a, b), m in zip(pairs, merge_starts(labels), strict=True):
            expected = canonical(np.where(first == b, a, first))
            assert m.dtype == expected.dtype and np.array_equal(m, expected)


def test_overlapping_pairs_rank_by_the_cosine_of_responsibilities() -> None:
    """The pairs kept are those whose responsibility columns have the largest cosine,
    computed pair by pair, the columns taken in the canonical clusters' order (each
    cluster's component is that of its first row); they come back in pair order."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        k = int(rng.integers(3, 9))
        resp = rng.dirichlet(np.full(k, 0.3), size=60)
        labels = np.argmax(resp, axis=1)
        component = labels[np.sort(np.unique(labels, return_index=True)[1])]
        pairs = np.array(list(combinations(range(component.size), 2)))
        if not len(pairs):
            continue
        cosine = []
        for a, b in pairs:
            x, y = resp[:, component[a]], resp[:, component[b]]
            cosine.append(x @ y / np.sqrt((x @ x) * (y @ y)))
        n = int(rng.integers(1, len(pairs) + 1))
        chosen = overlapping_pairs(labels, resp, pairs, n)
        assert np.array_equal(chosen, np.sort(chosen)) and chosen.size == n
        assert min(np.take(cosine, chosen)) >= max(np.delete(cosine, chosen), default=-np.inf)


def test_merge_starts_keep_the_most_overlapping_pairs() -> None:
    """Components 1 and 3 share their rows' responsibilities, 0 and 2 a little: with
    n_pairs=2 only those two merges are made (in pair order, as in the full list); n_pairs=0
    or >= every pair: the full list."""
    labels = np.repeat([1, 0, 3, 2], 5)  # canonical: component 1 -> 0, 0 -> 1, 3 -> 2, 2 -> 3
    resp = np.full((20, 4), 0.01)
    resp[np.arange(20), labels] = 0.6
    resp[labels == 1, 3] = resp[labels == 3, 1] = 0.35
    resp[labels == 0, 2] = resp[labels == 2, 0] = 0.1
    resp /= resp.sum(axis=1, keepdims=True)
    every = merge_starts(labels)  # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3), canonical
    kept = merge_starts(labels, resp, n_pairs=2)
    assert len(kept) == 2
    assert np.array_equal(kept[0], every[1]) and np.array_equal(kept[1], every[4])
    for n in (0, 6, 9):
        kept = merge_starts(labels, resp, n)
        assert len(kept) == 6 and all(map(np.array_equal, kept, every))


def test_split_starts_split_each_cluster() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    labels = np.repeat([0, 1, 2, 3], [16, 12, 9, 3])
    splits = split_starts(labels, X, n_split=9)
    assert len(splits) == 3  # the cluster of three rows is too small to split
    for s, c in zip(splits, [0, 1, 2], strict=True):
        assert np.unique(s).size == 5
        assert np.array_equal(s[labels != c], labels[labels != c])
        assert np.unique(s[labels == c]).size == 2
    assert len(split_starts(labels, X, n_split=2)) == 2  # the two largest only
    halves = [np.bincount(s[labels == c])[[c, 4]] for s, c in zip(splits, [0, 1, 2], strict=True)]
    smallest = [int(h.min()) for h in halves]
    for min_rows in range(1, 10):  # a split is kept where both halves have min_rows rows
        kept = split_starts(labels, X, n_split=9, min_rows=min_rows)
        assert len(kept) == sum(m >= min_rows for m in smallest)


def test_rescue_starts_are_the_untried_fits_at_k_sound_ones_first() -> None:
    def row(name: str, k: int, status: str, loglik: float) -> dict:
        return {"model_name": name, "status": status, "log_likelihood": loglik, "_fit": object()}

    a, b, c, d = (np.array(p) for p in ([0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 0],
                                       [0, 0, 0, 1, 2, 2], [1, 1, 0, 0, 2, 2]))  # fmt: skip
    rows = {
        (3, "VEV"): row("VEV", 3, "collapsed", -10.0),
        (3, "VII"): row("VII", 3, "ok", -30.0),
        (3, "spherical"): row("VII", 3, "ok", -30.0),  # an alias: once
        (3, "VVI"): row("VVI", 3, "ok", -20.0),
        (3, "EII"): row("EII", 3, "ok", -5.0),
        (2, "EEE"): row("EEE", 2, "ok", 0.0),  # another K
    }
    labels = {(3, "VEV"): a, (3, "VII"): b, (3, "VVI"): c, (3, "EII"): d, (2, "EEE"): a % 2}
    tried = [("cross", one_hot(a, 3, 6)), ("cross", one_hot(d, 3, 6))]  # d is a relabelled a
    starts = rescue_starts(3, labels, rows, tried)
    assert [kind for kind, _ in starts] == ["cross", "cross"]
    expected = [c, b]  # sound ones by log-likelihood; VEV's and EII's partition were tried
    for (_, resp), p in zip(starts, expected, strict=True):
        np.testing.assert_array_equal(resp, one_hot(canonical(p), 3, 6))
    assert rescue_starts(3, labels, rows, tried + starts) == []


def test_merge_pass_never_lowers_a_cell_and_aliases_share_it() -> None:
    X = _data("banknote")
    kwargs = dict(reg_covar=0.0, progress=False, random_state=0)
    without = em_sweep(X, range(1, 10), ["VII"], strategy=Strategy(n_merge=0), **kwargs).table
    table = em_sweep(X, range(1, 10), ["VII", "spherical"], strategy=Strategy(), **kwargs).table
    ours = table[table.covariance_type == "VII"].log_likelihood.to_numpy()
    alias = table[table.covariance_type == "spherical"].log_likelihood.to_numpy()
    np.testing.assert_array_equal(ours, alias)
    rise = ours - without.log_likelihood.to_numpy()
    assert rise.min() > -1e-9
    assert rise.max() > 0.5  # K = 6: 1.0 nats higher from the K = 7 fit with two merged


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c['dataset']}-{c['model']}{c['K']}")
def test_sweep_reaches_the_better_of_mclust_and_sklearn(cell: dict) -> None:
    table = em_sweep(
        _data(cell["dataset"]),
        range(1, 10),
        [cell["model"]],
        reg_covar=0.0,
        progress=False,
        random_state=0,
    ).table
    ours = table.set_index("n_components").log_likelihood[cell["K"]]
    reference = max(cell["mclust"], cell["sklearn"])
    assert ours >= reference - 0.1, (ours, cell)


def test_top_merges_never_lower_a_cell() -> None:
    X = _data("wreath")
    kwargs = dict(reg_covar=0.0, progress=False, random_state=0)
    tables = [
        em_sweep(X, range(1, 10), ["EEE"], strategy=Strategy(top_parent=top), **kwargs).table
        for top in (False, True)
    ]
    rise = tables[1].log_likelihood.to_numpy() - tables[0].log_likelihood.to_numpy()
    assert rise.min() > -1e-9
    assert rise[-1] > 20.0  # K = 9 from the K = 10 fit with two merged (20.9 nats)
    assert list(tables[1].n_components) == list(range(1, 10))  # the K = 10 fit is not a row
