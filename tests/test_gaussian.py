"""The Gaussian math checked against SciPy and against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

from bayesgmm import _gaussian as g
from bayesgmm._mstep import m_step


def _random_covariances(rng, k, d):
    a = rng.normal(size=(k, d, d))
    return a @ np.swapaxes(a, 1, 2) + d * np.eye(d)


def _family_covariances(rng, cov_type, k, d):
    full = _random_covariances(rng, k, d)
    return {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([c[0, 0] for c in full]),
    }[cov_type]


@pytest.mark.parametrize("cov_type", g.COVARIANCE_TYPES)
def test_log_gaussian_prob_matches_scipy(rng, cov_type):
    k, d = 3, 4
    X = rng.normal(size=(50, d)) * 3
    means = rng.normal(size=(k, d))
    cov = _family_covariances(rng, cov_type, k, d)
    chol = g.precision_cholesky(cov, cov_type)
    got = g.log_gaussian_prob(X, means, chol, cov_type)
    full = g.full_covariances(cov, cov_type, k, d)
    expected = np.column_stack([multivariate_normal(means[j], full[j]).logpdf(X) for j in range(k)])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("cov_type", g.COVARIANCE_TYPES)
def test_precision_cholesky_round_trip_and_matches_sklearn(rng, cov_type):
    cov = _family_covariances(rng, cov_type, 3, 3)
    chol = g.precision_cholesky(cov, cov_type)
    np.testing.assert_allclose(chol, _compute_precision_cholesky(cov, cov_type), rtol=1e-12)
    np.testing.assert_allclose(
        g.covariances_from_precision_cholesky(chol, cov_type), cov, rtol=1e-12
    )


@pytest.mark.parametrize("cov_type", ["full", "tied"])
def test_precision_cholesky_from_precisions_is_upper_factor(rng, cov_type):
    cov = _family_covariances(rng, cov_type, 2, 4)
    precisions = np.linalg.inv(cov)  # test oracle only; the package never inverts
    chol = g.precision_cholesky_from_precisions(precisions, cov_type)
    np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), precisions, rtol=1e-10)
    np.testing.assert_array_equal(np.tril(chol, -1), 0.0)
    np.testing.assert_allclose(chol, g.precision_cholesky(cov, cov_type), rtol=1e-10)


def test_singular_covariance_names_the_component():
    cov = np.stack([np.eye(2), np.zeros((2, 2))])
    with pytest.raises(g.SingularCovarianceError, match=r"component 1.*reg_covar"):
        g.precision_cholesky(cov, "full")


def test_packed_cholesky_round_trip(rng):
    cov = _random_covariances(rng, 1, 4)[0]
    packed = g.packed_cholesky(cov)
    assert packed.shape == (10,)
    chol = g.unpack_cholesky(packed, 4)
    np.testing.assert_allclose(chol @ chol.T, cov, rtol=1e-12)


def test_log_responsibilities_normalise(rng):
    X = rng.normal(size=(40, 2))
    cov = _random_covariances(rng, 3, 2)
    log_norm, log_resp = g.log_responsibilities(
        X,
        np.array([0.2, 0.3, 0.5]),
        rng.normal(size=(3, 2)),
        g.precision_cholesky(cov, "full"),
        "full",
    )
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0, rtol=1e-12)
    assert log_norm.shape == (40,)


@pytest.mark.parametrize("cov_type", g.COVARIANCE_TYPES)
def test_m_step_equals_weighted_moments(rng, cov_type):
    X = rng.normal(size=(200, 3)) + 5.0
    resp = rng.dirichlet(np.ones(2), size=200)
    stats = g.weighted_statistics(X, resp, rng.normal(size=(2, 3)), cov_type)
    weights, means, cov, _ = m_step(stats, 0.0, cov_type)
    np.testing.assert_allclose(weights, resp.mean(axis=0), rtol=1e-10)
    for k in range(2):
        np.testing.assert_allclose(means[k], np.average(X, axis=0, weights=resp[:, k]), rtol=1e-10)
    full = [np.cov(X.T, aweights=resp[:, k], bias=True) for k in range(2)]
    expected = {
        "full": np.stack(full),
        "tied": sum(w * c for w, c in zip(weights, full, strict=True)),
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.diag(c).mean() for c in full]),
    }[cov_type]
    np.testing.assert_allclose(cov, expected, rtol=1e-9)


@pytest.mark.parametrize("cov_type", g.COVARIANCE_TYPES)
def test_statistics_add_over_chunks(rng, cov_type):
    X = rng.normal(size=(90, 2))
    cov = _family_covariances(rng, cov_type, 3, 2)
    args = (np.array([0.3, 0.3, 0.4]), rng.normal(size=(3, 2)), g.precision_cholesky(cov, cov_type))
    whole = g.e_step_statistics(X, *args, cov_type)
    parts = g.e_step_statistics(X[:37], *args, cov_type) + g.e_step_statistics(
        X[37:], *args, cov_type
    )
    for name in ("log_likelihood", "resp_sum", "first", "second"):
        np.testing.assert_allclose(getattr(parts, name), getattr(whole, name), rtol=1e-10)
    assert parts.n_samples == 90


@pytest.mark.parametrize("cov_type", g.COVARIANCE_TYPES)
def test_n_parameters_matches_sklearn(cov_type):
    from sklearn.mixture import GaussianMixture

    sk = GaussianMixture(3, covariance_type=cov_type).fit(
        np.random.default_rng(0).normal(size=(60, 4))
    )
    assert g.n_parameters(3, 4, cov_type) == sk._n_parameters()


def test_std_and_correlation(rng):
    cov = _random_covariances(rng, 2, 3)
    std, corr = g.std_and_correlation(cov)
    np.testing.assert_allclose(std[..., :, None] * corr * std[..., None, :], cov, rtol=1e-12)
    np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0)


@pytest.mark.parametrize("chunk", [256, 2])
def test_posterior_draws_at_a_correlation_of_one_are_factored_with_jitter(rng, monkeypatch, chunk):
    # a draw the sampler accepted (correlation within 1e-17 of 1 in its own factors) that is
    # singular once formed: with jitter=True it is factored, the others are exactly as before
    # (whether a chunk of the fallback holds one singular draw, two, or none)
    monkeypatch.setattr(g, "_JITTER_CHUNK", chunk)
    a = rng.normal(size=(5, 3, 3))
    cov = a @ np.swapaxes(a, -1, -2) + np.eye(3)
    sds = np.array([1.0, 2.0, 0.5])
    singular = np.outer(sds, sds)  # correlation 1 between every pair
    stack = np.concatenate([cov[:2], singular[None], cov[2:], singular[None]])
    with pytest.raises(g.SingularCovarianceError):
        g.batched_precision_cholesky(stack)
    with pytest.warns(RuntimeWarning, match="2 of 7 covariance draws"):
        factors = g.batched_precision_cholesky(stack, jitter=True)
    np.testing.assert_array_equal(factors[[0, 1, 3, 4, 5]], g.batched_precision_cholesky(cov))
    for index in (2, 6):
        lower = np.linalg.inv(factors[index].T)  # the jittered covariance's Cholesky factor
        np.testing.assert_allclose(lower @ lower.T, singular, atol=1e-6 * sds.max() ** 2)
        assert np.all(np.diag(lower) > 0)


def test_draw_log_responsibilities_equals_one_draw_at_a_time(rng):
    X = rng.normal(size=(30, 3))
    a = rng.normal(size=(7, 2, 3, 3))
    cov = a @ np.swapaxes(a, -1, -2) + np.eye(3)
    weights = rng.dirichlet(np.ones(2), size=7)
    means = rng.normal(size=(7, 2, 3))
    chol = g.batched_precision_cholesky(cov)
    seen = []
    for draws, log_norm, log_resp in g.draw_log_responsibilities(
        X, weights, means, chol, max_bytes=4000
    ):
        for i, s in enumerate(range(draws.start, draws.stop)):
            expected = g.log_responsibilities(X, weights[s], means[s], chol[s], "full")
            np.testing.assert_allclose(log_norm[i], expected[0], rtol=1e-12)
            np.testing.assert_allclose(log_resp[i], expected[1], rtol=1e-10, atol=1e-12)
            seen.append(s)
    assert seen == list(range(7))


def test_kernel_draw_log_density_equals_scipy(rng):
    """The pointwise log-likelihood kernel (one log density per draw and row) against SciPy."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    from bayesgmm._kernels import draw_log_density

    n_draws, k, d = 5, 3, 3
    X = rng.normal(size=(700, d)) * [1.0, 10.0, 0.1] + 1e3  # more rows than one block
    weights = rng.dirichlet(np.ones(k), size=n_draws)
    weights[0, 1] = 0.0  # an empty component contributes nothing
    weights[0] /= weights[0].sum()
    means = X.mean(axis=0) + rng.normal(size=(n_draws, k, d)) * [1.0, 10.0, 0.1]
    factors = rng.normal(size=(n_draws, k, d, d)) * 0.3 + np.eye(d)
    covariances = factors @ np.swapaxes(factors, -1, -2) * np.outer([1.0, 10.0, 0.1], [1, 10, 0.1])
    got = draw_log_density(X, weights, means, covariances)
    for s in range(n_draws):
        with np.errstate(divide="ignore"):
            dens = [
                np.log(weights[s, c])
                + multivariate_normal(means[s, c], covariances[s, c]).logpdf(X)
                for c in range(k)
            ]
        np.testing.assert_allclose(got[s], logsumexp(np.stack(dens), axis=0), rtol=1e-11)


def test_floor_reached_agrees_with_the_smallest_eigenvalue(rng):
    """A block is at the floor exactly when its smallest eigenvalue in units of the features'
    variances is at most ``floor`` (eigvalsh as the oracle): full blocks built with a chosen
    smallest eigenvalue on either side of it, diagonal and spherical ones likewise."""
    d, floor = 4, 1e-3
    variances = rng.uniform(0.5, 4.0, size=d)
    std = np.sqrt(variances)
    blocks, expected = [], []
    for smallest in (0.1 * floor, 0.9 * floor, 1.1 * floor, 10 * floor, 1.0):
        basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
        values = np.concatenate([[smallest], rng.uniform(0.5, 2.0, size=d - 1)])
        unit = basis @ np.diag(values) @ basis.T  # in units of the variances
        blocks.append(unit * np.outer(std, std))
        expected.append(np.linalg.eigvalsh(unit)[0] <= floor)
    got = g.floor_reached(np.array(blocks), variances, floor)
    np.testing.assert_array_equal(got, expected)
    assert got.tolist() == [True, True, False, False, False]
    diagonal = np.array([variances * 1.0, variances * 0.5 * floor, variances * 2 * floor])
    assert g.floor_reached(diagonal[..., None], variances, floor).tolist() == [False, True, False]
    spherical = np.array([0.5, 2.0]) * floor * variances.mean()
    assert g.floor_reached(spherical[:, None, None], variances, floor).tolist() == [True, False]
