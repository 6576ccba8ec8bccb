"""Posterior predictive imputation of missing cells (bayesgmm.imputation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from bayesgmm import BayesianGMM, EMGaussianMixture
from bayesgmm._idata import tree_from_arrays
from bayesgmm._scaling import AffineScaling
from bayesgmm._units import record_scaling
from bayesgmm.datasets import simulate_mixture
from bayesgmm.imputation import posterior_imputation

FEATURES = ["a", "b", "c"]
MEANS = np.array([[0.0, 1.0, -1.0], [4.0, -2.0, 3.0]])
COVS = np.array(
    [
        [[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.7]],
        [[0.8, -0.4, 0.1], [-0.4, 1.0, 0.3], [0.1, 0.3, 1.5]],
    ]
)


def fixed_tree(weights, means, covariances, *, n_chains=2, n_draws=2000, observed=None):
    """A posterior whose every draw is the same parameters (in the data's units)."""

    def rep(a):
        return np.broadcast_to(np.asarray(a, float), (n_chains, n_draws, *np.shape(a))).copy()

    groups = {
        "posterior": {"weights": rep(weights), "means": rep(means), "covariances": rep(covariances)}
    }
    if observed is not None:
        groups["observed_data"] = {"obs": observed}
    return tree_from_arrays(
        groups,
        dims={
            "weights": ["component"],
            "means": ["component", "feature"],
            "covariances": ["component", "feature", "feature_bis"],
            "obs": ["obs_id", "feature"],
        },
        coords={
            "feature": FEATURES[: np.shape(means)[-1]],
            "feature_bis": FEATURES[: np.shape(means)[-1]],
        },
    )


def gaussian_conditional(mean, cov, x, missing):
    """Closed-form ``x_M | x_O`` of one Gaussian: mean and covariance."""
    obs = np.setdiff1d(np.flatnonzero(~np.isnan(x)), missing)
    b = cov[np.ix_(missing, obs)] @ np.linalg.inv(cov[np.ix_(obs, obs)])
    cm = mean[missing] + b @ (x[obs] - mean[obs])
    return cm, cov[np.ix_(missing, missing)] - b @ cov[np.ix_(obs, missing)]


def test_one_component_is_the_gaussian_conditional():
    tree = fixed_tree([1.0], MEANS[:1], COVS[:1])
    X = np.array([[0.5, np.nan, np.nan], [np.nan, 2.0, -0.5], [1.0, 0.0, np.nan]])
    out = posterior_imputation(tree, X, prob=0.9, random_seed=0)
    z = stats.norm.ppf(0.95)
    for i, row in enumerate(X):
        missing = np.flatnonzero(np.isnan(row))
        cm, cc = gaussian_conditional(MEANS[0], COVS[0], row, missing)
        sd = np.sqrt(np.diag(cc))
        cells = out.where(out.row == i, drop=True)
        assert list(cells.feature.values) == [FEATURES[j] for j in missing]
        np.testing.assert_allclose(cells["mean"].values, cm, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(cells["sd"].values, sd, rtol=1e-12)
        # 4000 predictive draws: the 5% quantile's standard error is about 0.034 sd
        np.testing.assert_allclose(cells["low"].values, cm - z * sd, atol=0.15 * sd.max())
        np.testing.assert_allclose(cells["high"].values, cm + z * sd, atol=0.15 * sd.max())
    assert out.attrs["interval"] == "equal-tailed" and out.attrs["prob"] == 0.9


def mixture_predictive(weights, means, covs, x, j):
    """The exact predictive of one missing cell ``j`` of ``x``: responsibilities from SciPy's
    densities of the observed entries, then a mixture of the Gaussian conditionals."""
    obs = np.setdiff1d(np.flatnonzero(~np.isnan(x)), [j])
    dens = np.array(
        [
            w * stats.multivariate_normal(m[obs], c[np.ix_(obs, obs)]).pdf(x[obs])
            for w, m, c in zip(weights, means, covs, strict=True)
        ]
    )
    resp = dens / dens.sum()
    parts = [gaussian_conditional(m, c, x, np.array([j])) for m, c in zip(means, covs, strict=True)]
    loc = np.array([p[0][0] for p in parts])
    scale = np.sqrt([p[1][0, 0] for p in parts])
    return resp, loc, scale


def mixture_quantile(resp, loc, scale, q):
    """The ``q`` quantile of a 1-D Gaussian mixture (root of its CDF)."""
    return optimize.brentq(lambda v: resp @ stats.norm.cdf(v, loc, scale) - q, -50, 50, xtol=1e-12)


def test_two_components_match_the_exact_mixture_predictive():
    weights = [0.4, 0.6]
    # a row between the components: its predictive is a genuine two-component mixture
    X = np.array([[2.0, np.nan, np.nan], [np.nan, -0.5, 1.0]])
    out = posterior_imputation(
        fixed_tree(weights, MEANS, COVS, n_draws=10000), X, prob=0.8, random_seed=1
    )
    for cell in range(out.sizes["cell"]):
        i = int(out.row[cell])
        j = FEATURES.index(str(out.feature[cell].values))
        resp, loc, scale = mixture_predictive(weights, MEANS, COVS, X[i], j)
        mean = resp @ loc
        sd = np.sqrt(resp @ (scale**2 + (loc - mean) ** 2))
        np.testing.assert_allclose(out["mean"][cell], mean, rtol=1e-10)
        np.testing.assert_allclose(out["sd"][cell], sd, rtol=1e-10)
        for name, q in (("low", 0.1), ("high", 0.9)):
            exact = mixture_quantile(resp, loc, scale, q)
            # 20000 draws: standard error of a 10% quantile is below 0.02 sd here
            assert abs(float(out[name][cell]) - exact) < 0.08 * sd


def test_mean_is_em_conditional_mean_when_every_draw_is_em():
    X = simulate_mixture(200, weights=[0.4, 0.6], means=MEANS, covariances=COVS, random_state=3).X
    Xm = X.copy()
    Xm[np.random.default_rng(0).random(X.shape) < 0.25] = np.nan
    Xm[5] = np.nan  # a row with nothing observed: the mixture's mean
    with pytest.warns(UserWarning, match="every feature missing"):
        em = EMGaussianMixture(2, random_state=0).fit(Xm)
    tree = fixed_tree(em.weights_, em.means_, em.covariances_, n_draws=50)
    out = posterior_imputation(tree, Xm, random_seed=0)
    filled = em.impute(Xm)
    np.testing.assert_allclose(
        out["mean"].values,
        filled[out.row.values, [FEATURES.index(f) for f in out.feature.values]],
        rtol=1e-10,
        atol=1e-10,
    )
    assert out.sizes["cell"] == int(np.isnan(Xm).sum())
    assert set(out.row.values.tolist()) == set(np.flatnonzero(np.isnan(Xm).any(axis=1)).tolist())
    assert np.all(np.diff(out.row.values) >= 0)  # ordered by row


def test_units_do_not_matter_and_seed_reproduces():
    X = np.array([[0.5, np.nan, 1.0], [np.nan, np.nan, 2.0]])
    tree = fixed_tree([0.4, 0.6], MEANS, COVS, n_draws=300)
    first = posterior_imputation(tree, X, random_seed=5)
    np.testing.assert_array_equal(
        first.to_array(), posterior_imputation(tree, X, random_seed=5).to_array()
    )
    assert not np.allclose(first["low"], posterior_imputation(tree, X, random_seed=6)["low"])
    record_scaling(tree, AffineScaling(np.array([3.0, -1.0, 10.0]), np.array([2.0, 0.5, 7.0])))
    scaled = posterior_imputation(tree, X, random_seed=5)
    np.testing.assert_allclose(scaled.to_array(), first.to_array(), rtol=1e-9, atol=1e-9)


def test_complete_rows_give_no_cells_and_default_rows_are_the_observed_data():
    observed = np.array([[0.5, np.nan, 1.0], [1.0, 2.0, 3.0]])
    tree = fixed_tree([0.4, 0.6], MEANS, COVS, n_draws=20, observed=observed)
    out = posterior_imputation(tree, random_seed=0)
    assert out.row.values.tolist() == [0] and out.feature.values.tolist() == ["b"]
    empty = posterior_imputation(tree, observed[1:], random_seed=0)
    assert empty.sizes["cell"] == 0 and set(empty.data_vars) == {"mean", "sd", "low", "high"}


@pytest.mark.parametrize(
    ("X", "prob", "message"),
    [
        (np.zeros((2, 2)), 0.9, "3 features"),
        (np.array([[np.inf, np.nan, 0.0]]), 0.9, "infinite"),
        (np.array([[0.0, np.nan, 0.0]]), 1.0, "prob must be"),
        (np.array([[0.0, np.nan, 0.0]]), True, "prob must be"),
    ],
)
def test_bad_input_is_named(X, prob, message):
    tree = fixed_tree([0.4, 0.6], MEANS, COVS, n_draws=5)
    with pytest.raises(ValueError, match=message):
        posterior_imputation(tree, X, prob=prob)


def test_bayesian_gmm_impute_checks_rows_against_the_fit():
    observed = np.array([[0.5, np.nan, 1.0], [1.0, 2.0, 3.0]])
    fit = BayesianGMM(2)
    with pytest.raises(ValueError, match="not fitted"):
        fit.impute()
    fit.idata_ = fixed_tree([0.4, 0.6], MEANS, COVS, n_draws=20, observed=observed)
    fit.n_features_in_, fit.feature_names_ = 3, FEATURES
    direct = posterior_imputation(fit.idata_, observed, prob=0.5, random_seed=2)
    np.testing.assert_array_equal(fit.impute(prob=0.5, random_seed=2).to_array(), direct.to_array())
    np.testing.assert_array_equal(
        fit.impute(observed, prob=0.5, random_seed=2).to_array(), direct.to_array()
    )
    with pytest.raises(ValueError, match="3 features"):
        fit.impute(observed[:, :2])


@pytest.mark.slow
def test_fitted_posterior_intervals_cover_held_out_cells():
    """A real fit (complete rows): its 90% intervals cover removed values of new rows from the
    same mixture at about 90%, and its predictive means sit near EM's conditional means."""
    sim = simulate_mixture(500, weights=[0.4, 0.6], means=MEANS, covariances=COVS, random_state=11)
    train, new = sim.X[:300], sim.X[300:]
    fit = BayesianGMM(2, draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    fit.fit(train)
    mask = np.random.default_rng(4).random(new.shape) < 0.3
    mask[mask.all(axis=1), 0] = False
    cells = fit.impute(np.where(mask, np.nan, new), prob=0.9, random_seed=5)
    truth = new[cells.row.values, [fit.feature_names_.index(f) for f in cells.feature.values]]
    hits = (cells["low"].values <= truth) & (truth <= cells["high"].values)
    n = hits.size  # 158 cells: the binomial 99.9% range of the rate
    assert abs(hits.mean() - 0.9) < 3.3 * np.sqrt(0.09 / n), (hits.mean(), n)
    em_filled = fit.em_.impute(np.where(mask, np.nan, new))[mask]
    # cells are ordered by row then feature, as the mask's True entries are
    assert np.max(np.abs(cells["mean"].values - em_filled) / cells["sd"].values) < 0.2


@pytest.mark.slow
def test_fit_with_missing_cells_imputes_its_own_holes():
    """BayesianGMM fitted on rows with NaN: impute() covers the removed training values at
    about 90% and returns one row per missing cell of the fitted data."""
    X = simulate_mixture(300, weights=[0.4, 0.6], means=MEANS, covariances=COVS, random_state=12).X
    mask = np.random.default_rng(6).random(X.shape) < 0.2
    mask[mask.all(axis=1), 1] = False
    fit = BayesianGMM(2, draws=400, tune=400, chains=2, random_seed=4, progressbar=False)
    fit.fit(np.where(mask, np.nan, X))
    cells = fit.impute(prob=0.9, random_seed=7)
    assert cells.sizes["cell"] == int(mask.sum())
    truth = X[cells.row.values, [fit.feature_names_.index(f) for f in cells.feature.values]]
    hits = (cells["low"].values <= truth) & (truth <= cells["high"].values)
    assert abs(hits.mean() - 0.9) < 3.3 * np.sqrt(0.09 / hits.size), (hits.mean(), hits.size)
