"""Model-based hierarchical agglomeration against mclust 6.0, a naive oracle, invariants, bad input.

The reference merges and partitions were computed once with R's mclust
(``benchmarks/mclust_reference.R``) on the CSVs in ``benchmarks/data``; R is not needed here.
"""

from __future__ import annotations

import itertools
import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from bayesgmm._hierarchical import (
    cut_tree,
    hierarchical_partitions,
    merge_tree,
    transform,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "mclust"
DATA = ROOT / "benchmarks" / "data"
DATASETS = sorted(path.stem for path in REFERENCE.glob("*.json"))
KS = range(1, 10)


@cache
def _reference(name: str) -> tuple[np.ndarray, dict]:
    X = pd.read_csv(DATA / f"{name}.csv").to_numpy(dtype=float)
    return X, json.loads((REFERENCE / f"{name}.json").read_text())["hc"]


def _mclust(name: str, model: str) -> tuple[np.ndarray, dict]:
    """The rows mclust agglomerated (transformed as ``hcUse = "SVD"``) and its result."""
    X, hc = _reference(name)
    return transform(X[np.asarray(hc["rows"])]), hc["criteria"][model]


def test_reference_data_present():
    assert len(DATASETS) >= 9, DATASETS
    assert {"banknote", "thyroid", "wdbc", "wreath", "chevron", "diabetes"} <= set(DATASETS)


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("model", ["VVV", "VII"])
def test_same_merges_as_mclust(name, model):
    Z, ref = _mclust(name, model)
    np.testing.assert_array_equal(merge_tree(Z, model=model), np.asarray(ref["merges"]))


@pytest.mark.parametrize("name", DATASETS)
def test_same_partitions_as_mclust(name):
    """mclust's default (VVV on the scaled SVD): hclass(hc(X), 1:9), label for label."""
    Z, ref = _mclust(name, "VVV")
    ours = cut_tree(merge_tree(Z), KS)
    hclass = np.asarray(ref["partitions"]).T
    np.testing.assert_array_equal(ours, hclass)
    assert all(adjusted_rand_score(ours[:, c], hclass[:, c]) == 1.0 for c in range(len(KS)))


@pytest.mark.parametrize("name", DATASETS)
def test_ward_partitions_as_mclust(name):
    """EII: duplicated rows tie at cost 0, where the merge order may differ but not the cuts."""
    Z, ref = _mclust(name, "EII")
    ours = cut_tree(merge_tree(Z, model="EII"), KS)
    np.testing.assert_array_equal(ours, cut_tree(np.asarray(ref["merges"]), KS))


@pytest.mark.parametrize("name", ["faithful", "wreath", "banknote"])
def test_end_to_end_as_mclust(name):
    X, hc = _reference(name)
    agg = hierarchical_partitions(pd.read_csv(DATA / f"{name}.csv"), KS)
    np.testing.assert_array_equal(agg.rows, np.arange(X.shape[0]))
    np.testing.assert_array_equal(agg.labels, np.asarray(hc["criteria"]["VVV"]["partitions"]).T)
    np.testing.assert_array_equal(agg.partition(3), agg.labels[:, 2])


def test_exact_scatter_differs_from_mclust_only_where_documented():
    """mclust's stored scatter matrices change only wreath's last three merges here."""
    Z, ref = _mclust("wreath", "VVV")
    exact = merge_tree(Z, exact_scatter=True)
    differ = np.flatnonzero(np.any(exact != np.asarray(ref["merges"]), axis=1))
    np.testing.assert_array_equal(differ, [996, 997, 998])
    Z, ref = _mclust("simcorr", "VVV")
    np.testing.assert_array_equal(merge_tree(Z, exact_scatter=True), ref["merges"])


# ----------------------------------------------------------------------------- naive oracle
def _naive_merges(Z: np.ndarray, model: str) -> np.ndarray:
    """Every pair's criterion change recomputed from its rows at every step (exact scatter)."""
    n, p = Z.shape
    alpha = np.sum((Z - Z.mean(axis=0)) ** 2) / Z.size

    def term(rows: list[int]) -> float:
        Y = Z[rows] - Z[rows].mean(axis=0)
        m, W = len(rows), Y.T @ Y
        if model == "EII":
            return np.trace(W)
        if model == "VII":
            return m * np.log((np.trace(W) + alpha) / m)
        c = (np.trace(W) + alpha) / m
        return m * np.log(c if m <= max(p, 2) else np.linalg.det(W / m) + c)

    clusters = {i: [i] for i in range(n)}
    merges = []
    while len(clusters) > 1:
        pairs = itertools.combinations(sorted(clusters), 2)
        cost = {
            (a, b): term(clusters[a] + clusters[b]) - term(clusters[a]) - term(clusters[b])
            for a, b in pairs
        }
        a, b = min(cost, key=cost.get)
        merges.append((a, b))
        clusters[a] += clusters.pop(b)
    return np.array(merges)


@pytest.mark.parametrize("model", ["VVV", "VII", "EII"])
@pytest.mark.parametrize("seed", [0, 1])
def test_merges_equal_naive_criterion(model, seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(24, 3)) * [1.0, 0.5, 2.0] + rng.integers(0, 3, size=(24, 1)) * 2.0
    np.testing.assert_array_equal(
        merge_tree(Z, model=model, exact_scatter=True), _naive_merges(Z, model)
    )


# ----------------------------------------------------------------------------- invariants
@pytest.fixture(scope="module")
def agglomeration():
    rng = np.random.default_rng(7)
    X = np.vstack([rng.normal(loc, 1.0, size=(60, 3)) for loc in (0.0, 4.0, 8.0)])
    return X, hierarchical_partitions(X, range(1, 13), random_state=0)


def test_partitions_have_k_clusters_in_first_appearance_order(agglomeration):
    X, agg = agglomeration
    for c, k in enumerate(agg.n_clusters):
        labels = agg.labels[:, c]
        assert np.bincount(labels).size == k and np.all(np.bincount(labels) > 0)
        assert np.bincount(labels).sum() == X.shape[0]
        _, first = np.unique(labels, return_index=True)
        assert np.all(np.diff(first) > 0) and labels[0] == 0


def test_partitions_are_nested(agglomeration):
    _, agg = agglomeration
    for c in range(len(agg.n_clusters) - 1):
        coarse, fine = agg.labels[:, c], agg.labels[:, c + 1]
        for label in np.unique(fine):
            assert np.unique(coarse[fine == label]).size == 1


def test_merges_join_active_clusters_once(agglomeration):
    X, agg = agglomeration
    active = set(range(X.shape[0]))
    for a, b in agg.merges:
        assert a < b and a in active and b in active
        active.remove(b)
    assert active == {0}


def test_subset_for_large_data_is_reproducible():
    X = np.random.default_rng(3).normal(size=(300, 2))
    first = hierarchical_partitions(X, [2, 5], max_samples=120, random_state=4)
    again = hierarchical_partitions(X, [5, 2], max_samples=120, random_state=4)
    assert first.rows.shape == (120,) and np.unique(first.rows).size == 120
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.labels.shape == (120, 2) and first.n_clusters == (2, 5)


def test_svd_transform_and_zero_singular_values():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    scaled = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    u, s, _ = np.linalg.svd(scaled, full_matrices=False)
    np.testing.assert_allclose(np.abs(transform(X)), np.abs(u * np.sqrt(s)), atol=1e-12)
    Z = transform(np.column_stack([X, X[:, 0] + X[:, 1]]))  # rank 3 of 4
    assert Z.shape[0] == 40 and np.all(np.isfinite(Z))


def test_duplicated_rows_merge_first():
    X = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [5.0, 1.0], [3.0, 3.0], [1.0, 2.0]])
    merges = merge_tree(transform(X))
    assert {tuple(m) for m in merges[:2]} == {(0, 2), (1, 5)}


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_clusters": [2, 11]}, "between 1 and the number of rows"),
        ({"n_clusters": [0, 2]}, "between 1 and the number of rows"),
        ({"n_clusters": []}, "one or more integers"),
        ({"n_clusters": [2.5]}, "one or more integers"),
        ({"n_clusters": 2, "model": "EEE"}, "Unknown model 'EEE'"),
        ({"n_clusters": 2, "use": "PCA"}, "Unknown use 'PCA'"),
        ({"n_clusters": 2, "max_samples": 1}, "max_samples must be an integer >= 2"),
        ({"n_clusters": 2, "alpha": 0.0}, "alpha must be a finite number > 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=message):
        hierarchical_partitions(X, **kwargs)


def test_bad_data():
    X = np.random.default_rng(0).normal(size=(10, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hierarchical_partitions(X, [2])
    with pytest.raises(ValueError, match="constant"):
        hierarchical_partitions(np.column_stack([np.ones(10), np.arange(10.0)]), [2])
    with pytest.raises(ValueError, match="at least two rows"):
        merge_tree(np.ones((1, 2)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        merge_tree(np.where(np.eye(3) > 0, np.inf, 0.0))
    with pytest.raises(ValueError, match=r"Feature\(s\) \[1\] are constant"):
        transform(np.column_stack([np.arange(5.0), np.ones(5)]))
    with pytest.raises(ValueError, match="Unknown n_clusters 4"):
        hierarchical_partitions(np.arange(20.0).reshape(10, 2) ** 1.5, [2, 3]).partition(4)
