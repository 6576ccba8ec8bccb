"""Closed (compositional) data: detected before any work, and log-ratio transforms.

Oracles: closed forms (the Helmert basis by hand, ratios of parts), invariances (a row's
total does not change its log-ratios) and the messages of bayesgmm._validation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bayesgmm import BayesianGMM
from bayesgmm._validation import check_independent_columns
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
