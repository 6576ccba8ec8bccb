"""Closed (compositional) data: detected before any work, and log-ratio transforms.

Oracles: closed forms (the Helmert basis by hand, ratios of parts), invariances (a row's
total does not change its log-ratios) and the messages of bayesgmm._validation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bayesgmm import BayesianGMM
from bayesgmm._validation import (
    _NEARLY_DEPENDENT,
    _correlation_spectrum,
    check_independent_columns,
)
from bayesgmm.transforms import alr, ilr


def _amounts(rng, n=200, d=4):
    """Lognormal amounts of ``d`` parts in two groups."""
    centre = np.where(rng.random(n)[:, None] < 0.5, 0.0, 1.0) * np.arange(d)
    return np.exp(centre + 0.3 * rng.standard_normal((n, d)))


def test_ilr_against_the_helmert_basis_by_hand(rng):
    X = _amounts(rng, 5, 3)
    logs = np.log(X)
    by_hand = np.column_stack(
        [
            (logs[:, 0] - logs[:, 1]) / np.sqrt(2),
            (logs[:, 0] + logs[:, 1] - 2 * logs[:, 2]) / np.sqrt(6),
        ]
    )
    np.testing.assert_allclose(ilr(X), by_hand, rtol=1e-12)


def test_log_ratios_ignore_the_rows_totals(rng):
    X = _amounts(rng, 20, 5)
    closed = 100 * X / X.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ilr(closed), ilr(X), atol=1e-12)
    np.testing.assert_allclose(alr(closed), alr(X), atol=1e-12)
    # ilr is an isometry of the centred logs (clr): distances are kept
    clr = np.log(X) - np.log(X).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(
        np.linalg.norm(ilr(X)[0] - ilr(X)[1]), np.linalg.norm(clr[0] - clr[1]), rtol=1e-12
    )


def test_alr_divides_by_the_reference_part():
    X = np.array([[1.0, 2.0, 4.0, 8.0]])
    np.testing.assert_allclose(alr(X), np.log([[1 / 8, 2 / 8, 4 / 8]]))
    np.testing.assert_allclose(alr(X, reference=0), np.log([[2.0, 4.0, 8.0]]))


@pytest.mark.parametrize("bad", [[[1.0, 0.0, 2.0]], [[1.0, np.nan, 2.0]], [[1.0], [2.0]]])
def test_log_ratios_refuse_zeros_missing_parts_and_single_parts(bad):
    with pytest.raises(ValueError, match=r"positive|at least two parts"):
        ilr(bad)


def test_an_exactly_closed_composition_is_refused_with_the_remedy(rng):
    X = _amounts(rng)
    closed = 100 * X / X.sum(axis=1, keepdims=True)
    with pytest.raises(ValueError, match=r"compositional data.*sum to a constant \(100\).*ilr"):
        check_independent_columns(closed, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="compositional data"):
        BayesianGMM(2).fit(closed)  # before EM


def test_a_composition_closed_to_rounding_warns(rng):
    X = _amounts(rng)
    rounded = np.round(100 * X / X.sum(axis=1, keepdims=True), 2)
    with pytest.warns(UserWarning, match=r"compositional data.*to rounding.*ilr"):
        check_independent_columns(rounded, ["a", "b", "c", "d"])
    with warnings.catch_warnings():  # the transformed parts are fine
        warnings.simplefilter("error")
        check_independent_columns(ilr(rounded), ["a", "b", "c"])
        check_independent_columns(X, ["a", "b", "c", "d"])  # unclosed amounts


def test_nearly_dependent_columns_warn_and_other_dependence_is_still_named(rng):
    X = rng.standard_normal((300, 3))
    near = np.column_stack([X, X.sum(axis=1) + 1e-4 * rng.standard_normal(300)])
    with pytest.warns(UserWarning, match="nearly linearly dependent"):
        check_independent_columns(near, ["a", "b", "c", "d"])
    exact = np.column_stack([X, X[:, 0] - 2 * X[:, 1]])
    with pytest.raises(ValueError, match="linearly dependent"):
        check_independent_columns(exact, ["a", "b", "c", "d"])


@pytest.mark.parametrize(("total", "decimals"), [(100, 1), (1, 2)])
def test_a_composition_rounded_coarsely_warns_whatever_the_eigenvalue_ratio(rng, total, decimals):
    """HSAUR3::household in percent to 0.1 (rows summing to 99.9-100.1) got no warning: its
    correlation spectrum's eigenvalue ratio, 1.37e-6, missed the near-dependence threshold."""
    X = _amounts(rng)
    rounded = np.round(total * X / X.sum(axis=1, keepdims=True), decimals)
    values = _correlation_spectrum(rounded)[0]
    assert values[0] > _NEARLY_DEPENDENT * values[-1]  # what the threshold alone missed
    pattern = rf"compositional data: the rows' parts sum to a constant \({total}\) to rounding.*ilr"
    with pytest.warns(UserWarning, match=pattern):
        check_independent_columns(rounded, ["a", "b", "c", "d"])


def test_a_rounded_composition_among_other_columns_names_its_parts(rng):
    X = _amounts(rng)
    parts = np.round(100 * X / X.sum(axis=1, keepdims=True), 1)
    other = np.round(50 + 10 * rng.standard_normal((X.shape[0], 1)), 1)
    with pytest.warns(UserWarning, match=r"parts \['a', 'b', 'c', 'd'\] sum to a constant"):
        check_independent_columns(np.hstack([parts, other]), ["a", "b", "c", "d", "e"])


@pytest.mark.parametrize(
    "make",
    [
        # positive measurements whose sums vary by 0.05% (within the old 1e-3 of the mean)
        lambda rng: np.round(1000 + rng.standard_normal((200, 4)), 1),
        # 0/1 codes: their sums always span at most the steps' total
        lambda rng: (rng.random((200, 3)) < 0.4).astype(float),
        # integer scores of small spread
        lambda rng: rng.integers(1, 4, size=(30, 3)).astype(float),
    ],
    ids=["small_relative_spread", "binary", "integer_scores"],
)
def test_rows_whose_sums_merely_vary_little_are_not_compositional(rng, make):
    X = make(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_independent_columns(X, ["a", "b", "c", "d"][: X.shape[1]])
