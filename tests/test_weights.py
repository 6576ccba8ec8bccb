"""Frequency weights in EM: integer weights are repeated rows, a zero weight is a removed row."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from bayesgmm import EMGaussianMixture, em_sweep
from bayesgmm import _kernels as kernels
from bayesgmm import _models as models
from bayesgmm._scaling import AffineScaling
from bayesgmm.em import CollapsedComponentWarning

from ._starts import identity_precisions

MODELS = models.MODEL_NAMES


@pytest.fixture(scope="module")
def weighted():
    """Rows with integer weights (0 to 3) and the same rows repeated that many times."""
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(60, 3)), rng.normal(size=(40, 3)) * 0.6 + [3, 1, -2]])
    w = rng.integers(0, 4, size=X.shape[0])
    return X, w, np.repeat(X, w, axis=0)


def _start(X, k, model="VVV"):
    """A full start (weights, means and precisions), so that no data-driven step runs."""
    d = X.shape[1]
    precisions = identity_precisions(models.layout(model), k, d)
    means = X[[0, 70, 30][:k]]
    return {"weights_init": np.full(k, 1 / k), "means_init": means, "precisions_init": precisions}


@pytest.mark.parametrize("engine", kernels.ENGINES)
def test_e_step_weights_equal_repeated_rows(weighted, engine):
    X, w, repeated = weighted
    scaling = AffineScaling.fit(repeated)
    factors = np.stack([np.eye(3), 0.7 * np.eye(3) + 0.1])
    mixture = kernels.Mixture(scaling, np.array([0.4, 0.6]), X[[1, 80]] / 2, factors, "full")
    ours = kernels.e_step(X, mixture, block_rows=17, engine=engine, sample_weight=w.astype(float))
    theirs = kernels.e_step(repeated, mixture, block_rows=17, engine=engine)
    assert ours.n_samples == theirs.n_samples == w.sum()
    np.testing.assert_allclose(ours.log_likelihood, theirs.log_likelihood, rtol=1e-12)
    for name in ("resp_sum", "first", "second"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-11)


def _fit(X, model, sample_weight=None, **kw):
    em = EMGaussianMixture(2, covariance_type=model, tol=0.0, max_iter=25, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return em.fit(X, sample_weight=sample_weight)


@pytest.mark.parametrize("model", MODELS)
def test_integer_weights_equal_repeated_rows(weighted, model):
    X, w, repeated = weighted
    ours = _fit(X, model, w, **_start(X, 2, model))
    theirs = _fit(repeated, model, **_start(X, 2, model))
    np.testing.assert_allclose(ours.log_likelihood_trace_, theirs.log_likelihood_trace_, rtol=1e-10)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-10)
    for criterion in ("bic", "aic", "icl"):
        mine = ours._criteria(X, sample_weight=w)[criterion]
        np.testing.assert_allclose(mine, getattr(theirs, criterion)(repeated), rtol=1e-10)


def test_zero_weight_removes_the_row(weighted):
    X, _, _ = weighted
    w = np.ones(X.shape[0])
    w[::4] = 0.0
    ours = _fit(X, "VVV", w, **_start(X, 2))
    theirs = _fit(X[w > 0], "VVV", **_start(X, 2))
    for name in ("weights_", "means_", "covariances_", "log_likelihood_trace_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-10)


@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random_from_data"])
def test_initialisation_uses_the_weights(weighted, init):
    """Zero-weight rows far away never become a starting centre or pull k-means."""
    X, _, _ = weighted
    far = np.vstack([X, np.full((300, 3), 1e3)])
    w = np.r_[np.ones(X.shape[0]), np.zeros(300)]
    em = EMGaussianMixture(2, init_params=init, max_iter=0, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapsedComponentWarning)  # one-hot starts
        em.fit(far, sample_weight=w)
    assert em.weights_.min() > 0.01  # no component started on the rows of zero weight


def test_unit_weights_equal_the_unweighted_fit(weighted):
    X, _, _ = weighted
    ours = _fit(X, "VVV", np.ones(X.shape[0]), random_state=0)
    theirs = _fit(X, "VVV", random_state=0)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-10)


def test_sweep_takes_weights(weighted):
    X, w, repeated = weighted
    kw = dict(n_init=1, progress=False, init_params="random_from_data", max_iter=50)
    ours = em_sweep(X, [1], ["VVV", "EII"], sample_weight=w, **kw).table
    theirs = em_sweep(repeated, [1], ["VVV", "EII"], **kw).table
    np.testing.assert_allclose(ours["bic"], theirs["bic"], rtol=1e-10)


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        (np.ones(5), r"shape \(100,\)"),
        (np.r_[np.ones(99), -1.0], "negative"),
        (np.r_[np.ones(99), np.nan], "NaN or infinity"),
        (np.r_[np.ones(1), np.zeros(99)], "positive on 1 row"),
        (np.array(["a"] * 100), "numbers"),
    ],
)
def test_bad_weights_raise(weighted, weight, match):
    X, _, _ = weighted
    with pytest.raises(ValueError, match=match):
        EMGaussianMixture(2).fit(X, sample_weight=weight)
