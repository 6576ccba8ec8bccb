"""Posterior memberships checked against EM's responsibilities and closed forms."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from bayesgmm import EMGaussianMixture
from bayesgmm import _gaussian as g
from bayesgmm.membership import co_clustering, draw_assignments, posterior_membership


def _idata_from_params(weights, means, covariances):
    """Results whose posterior draws are the given (chain, draw, ...) arrays."""
    return az.from_dict(
        {"posterior": {"weights": weights, "means": means, "covariances": covariances}},
        dims={
            "weights": ["component"],
            "means": ["component", "feature"],
            "covariances": ["component", "feature", "feature_bis"],
        },
    )


@pytest.fixture(scope="module")
def em_fit(three_clusters):
    return EMGaussianMixture(3, random_state=0).fit(three_clusters.X)


def _repeat(a, n_chain=2, n_draw=10):
    return np.broadcast_to(a, (n_chain, n_draw, *np.shape(a))).copy()


def test_point_mass_posterior_equals_em(three_clusters, em_fit):
    idata = _idata_from_params(
        _repeat(em_fit.weights_), _repeat(em_fit.means_), _repeat(em_fit.covariances_)
    )
    X = three_clusters.X
    m = posterior_membership(idata, X, hdi_prob=0.9, max_bytes=4096)
    resp = em_fit.predict_proba(X)
    np.testing.assert_allclose(m["probability"].values, resp, atol=1e-12)
    np.testing.assert_allclose(m["hdi_low"].values, resp, atol=1e-12)
    np.testing.assert_allclose(m["hdi_high"].values, resp, atol=1e-12)
    expected_entropy = -np.sum(
        np.where(resp > 0, resp * np.log(np.maximum(resp, 1e-300)), 0), axis=1
    )
    np.testing.assert_allclose(m["entropy"].values, expected_entropy, atol=1e-10)
    far = em_fit.means_[:1] + 100.0 * (em_fit.means_[:1] - em_fit.means_.mean(axis=0))
    certain = posterior_membership(idata, far)["entropy"].values  # the others underflow to 0
    assert certain == [0.0] and not np.signbit(certain).any()  # +0: a table shows "0", not "-0"
    np.testing.assert_array_equal(m["most_probable"].values, em_fit.predict(X))
    co = co_clustering(idata, X[:50], max_bytes=4096)
    np.testing.assert_allclose(co.values, resp[:50] @ resp[:50].T, atol=1e-12)


def test_mixture_of_two_parameter_sets(three_clusters, em_fit, rng):
    """Half the draws at EM, half shifted: the mean is the average, the HDI spans both."""
    X = three_clusters.X[:40]
    shifted = em_fit.means_ + 1.5
    means = np.stack([_repeat(em_fit.means_, 1, 10)[0], _repeat(shifted, 1, 10)[0]])
    idata = _idata_from_params(_repeat(em_fit.weights_), means, _repeat(em_fit.covariances_))
    m = posterior_membership(idata, X, hdi_prob=0.99)
    a = em_fit.predict_proba(X)
    chol = g.precision_cholesky(em_fit.covariances_, "full")
    _, log_b = g.log_responsibilities(X, em_fit.weights_, shifted, chol, "full")
    b = np.exp(log_b)
    np.testing.assert_allclose(m["probability"].values, (a + b) / 2, atol=1e-12)
    np.testing.assert_allclose(m["hdi_low"].values, np.minimum(a, b), atol=1e-12)
    np.testing.assert_allclose(m["hdi_high"].values, np.maximum(a, b), atol=1e-12)


def test_each_draw_assigns_a_row_to_its_most_probable_component(three_clusters, em_fit):
    """Chain 0 at EM, chain 1 with the means shifted: each draw's labels are its own
    parameters' most probable components (EM's predict), blocks of rows or not, and a row
    with a missing cell is classified by its observed feature alone."""
    X = three_clusters.X[:40].copy()
    shifted = em_fit.means_ + 1.5
    means = np.stack([_repeat(em_fit.means_, 1, 10)[0], _repeat(shifted, 1, 10)[0]])
    idata = _idata_from_params(_repeat(em_fit.weights_), means, _repeat(em_fit.covariances_))
    labels = draw_assignments(idata, X, max_bytes=4096)
    assert labels.shape == (2, 10, 40) and labels.dtype == np.int8
    chol = g.precision_cholesky(em_fit.covariances_, "full")
    _, log_b = g.log_responsibilities(X, em_fit.weights_, shifted, chol, "full")
    np.testing.assert_array_equal(labels[0], np.broadcast_to(em_fit.predict(X), (10, 40)))
    np.testing.assert_array_equal(labels[1], np.broadcast_to(log_b.argmax(axis=1), (10, 40)))
    covariances = em_fit.covariances_[:, :1, :1]
    chol_1 = g.precision_cholesky(covariances, "full")
    _, log_r = g.log_responsibilities(
        X[:, :1], em_fit.weights_, em_fit.means_[:, :1], chol_1, "full"
    )
    row = np.flatnonzero(log_r.argmax(axis=1) != labels[0, 0])[0]  # the second feature decides
    X[row, 1:] = np.nan
    assert draw_assignments(idata, X)[0, 0, row] == log_r[row].argmax()


def test_missing_variables_are_named():
    idata = az.from_dict({"posterior": {"weights": np.ones((1, 2, 2)) / 2}})
    with pytest.raises(ValueError, match=r"lacks \['means', 'covariances'\]"):
        posterior_membership(idata, np.zeros((3, 2)))


def test_co_clustering_refuses_huge_n(em_fit):
    idata = _idata_from_params(
        _repeat(em_fit.weights_), _repeat(em_fit.means_), _repeat(em_fit.covariances_)
    )
    with pytest.raises(ValueError, match="max_samples"):
        co_clustering(idata, np.zeros((20, 2)), max_samples=10)


def test_batched_precision_cholesky_agrees(rng):
    a = rng.normal(size=(5, 3, 4, 4))
    cov = a @ np.swapaxes(a, -1, -2) + np.eye(4)
    batched = g.batched_precision_cholesky(cov)
    for s in range(5):
        np.testing.assert_allclose(batched[s], g.precision_cholesky(cov[s], "full"), rtol=1e-10)
