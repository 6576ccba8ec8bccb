"""The kernel log density over rows with missing cells and frequency weights.

Oracles: the complete-data kernel's values recorded before the missing-data path existed (the
complete, unweighted path is unchanged), repeated rows for integer weights, and PyMC's compiled
``logp``/``dlogp`` of the model built on the same rows (whose per-pattern log density is itself
checked against SciPy's ``multivariate_normal`` in ``test_model_missing.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bayesgmm import GMMPriors, build_model
from bayesgmm._logdensity import log_density_for
from bayesgmm._logdensity_missing import Rows, collapse_duplicates
from bayesgmm.datasets import load_faithful

REFERENCE = Path(__file__).parent / "data" / "logdensity_reference.json"
COV_TYPES = ["full", "diag", "EEE", "EEI", "VII", "EII"]


def _hex(values) -> np.ndarray:
    return np.array([float.fromhex(v) for v in np.atleast_1d(values)])


def _with_holes(rng: np.random.Generator, n: int = 60, fraction: float = 0.3) -> np.ndarray:
    X = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.2] + 3.0
    X[rng.random(X.shape) < fraction] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0  # every row observes something
    return X


def _density(X: np.ndarray, k: int, cov_type: str = "full"):
    return log_density_for(build_model(X, k, covariance_type=cov_type))


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_complete_rows_give_the_values_recorded_before_missing_cells(cov_type):
    """Old Faithful, K=3: value and gradient as recorded by the code before the prior terms
    were split out (equal to the last bit on the machine that recorded them; the kernel's
    vectorised sums may differ by an ulp between processes, hence 1e-13), under the priors
    they were recorded with (the HalfNormal, then the default)."""
    X = np.ascontiguousarray(load_faithful().to_numpy(), dtype=np.float64)
    priors = GMMPriors.from_data(X, sd_prior="halfnormal")
    density = log_density_for(build_model(X, 3, priors=priors, covariance_type=cov_type))
    for point in json.loads(REFERENCE.read_text())[cov_type]:
        value, grad = density(_hex(point["x"]), X)
        expected = _hex(point["grad"])
        assert value == pytest.approx(_hex(point["logp"])[0], rel=1e-13, abs=0)
        np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-13 * np.abs(expected).max())


@pytest.mark.parametrize("fraction", [0.3, 0.0])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_integer_weights_equal_repeated_rows(cov_type, fraction, rng):
    X = _with_holes(rng, fraction=fraction)
    counts = rng.integers(0, 4, size=X.shape[0])
    counts[:3] = 1  # keep every feature observed
    repeated = np.repeat(X, counts, axis=0)
    density = _density(X, 2, cov_type)
    for _ in range(3):
        x = rng.normal(size=density.n_dim) * 0.6
        value, grad = density(x, density.rows(X, counts.astype(float), collapse=False))
        value_rep, grad_rep = density(x, density.rows(repeated, collapse=False))
        assert value == pytest.approx(value_rep, rel=1e-10)
        np.testing.assert_allclose(grad, grad_rep, rtol=1e-10, atol=1e-10 * np.abs(grad).max())


@pytest.mark.parametrize("cov_type", ["full", "EII"])
def test_unit_weights_on_complete_rows_equal_the_complete_path(cov_type, rng):
    X = np.ascontiguousarray(rng.normal(size=(50, 2)))
    density = _density(X, 2, cov_type)
    rows = density.rows(X, np.ones(X.shape[0]))
    assert isinstance(rows, Rows) and isinstance(density.rows(X), np.ndarray)
    x = rng.normal(size=density.n_dim) * 0.6
    value, grad = density(x, rows)
    expected_value, expected = density(x, X)
    assert value == pytest.approx(expected_value, rel=1e-12)
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-11 * np.abs(expected).max())


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_gradient_with_missing_cells_equals_central_differences(cov_type, rng):
    """Fisher's identity: the lifted E-step moments give the observed-data gradient."""
    X = _with_holes(rng)
    density = _density(X, 2, cov_type)
    rows = density.rows(X)
    x = rng.normal(size=density.n_dim) * 0.5
    _, grad = density(x, rows)
    step = 1e-5
    numeric = [
        (density(x + step * e, rows)[0] - density(x - step * e, rows)[0]) / (2 * step)
        for e in np.eye(x.size)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("value", [800.0, 1e300, np.inf, np.nan])
def test_extreme_points_with_missing_cells_give_minus_infinity(value, rng):
    X = _with_holes(rng)
    density = _density(X, 2)
    logp, grad = density(np.full(density.n_dim, value), density.rows(X))
    assert logp == -np.inf and grad.shape == (density.n_dim,)


@pytest.mark.parametrize("fraction", [0.0, 0.25])
def test_collapsed_duplicates_give_the_same_density(fraction, rng):
    """Rounded rows, many exact duplicates (also of their missing cells): the unique rows
    weighted by their counts give the density of all rows, to 1e-10."""
    X = np.round(rng.normal(size=(400, 2)) * [1.0, 2.0], 0)
    X[rng.random(X.shape) < fraction] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0
    density = _density(X, 2)
    collapsed, every = density.rows(X), density.rows(X, collapse=False)
    assert isinstance(collapsed, Rows) and collapsed.data.rows.shape[0] < 0.5 * X.shape[0]
    assert collapsed.n_weight == X.shape[0]
    for _ in range(3):
        x = rng.normal(size=density.n_dim) * 0.6
        (a, ga), (b, gb) = density(x, collapsed), density(x, every)
        assert a == pytest.approx(b, rel=1e-10)
        np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-10 * np.abs(gb).max())


def test_duplicates_are_rows_equal_in_every_cell_and_missing_in_the_same_places():
    X = np.array([[1.0, np.nan], [1.0, np.nan], [1.0, 2.0], [np.nan, 2.0], [1.0, 2.0]] * 2)
    unique, weight = collapse_duplicates(X, np.arange(10.0))
    np.testing.assert_array_equal(unique, [[1.0, 2.0], [1.0, np.nan], [np.nan, 2.0]])
    np.testing.assert_array_equal(weight, [2 + 4 + 7 + 9, 0 + 1 + 5 + 6, 3 + 8])
    few = np.arange(20.0).reshape(10, 2)
    assert collapse_duplicates(few, None)[0] is few  # nothing to gain: unchanged
