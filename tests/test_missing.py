"""Missing values in EM against a naive oracle: a loop over rows with SciPy's densities of the
observed entries and explicit conditional expectations of the missing ones."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from bayesgmm import EMGaussianMixture, _missing, em_sweep
from bayesgmm import _gaussian as g
from bayesgmm import _kernels as kernels
from bayesgmm import _models as models
from bayesgmm._restarts import partition_pool
from bayesgmm._scaling import AffineScaling
from bayesgmm.datasets import simulate_mixture

MODELS = ("VVV", "EEE", "VVI", "VII", "EVE", "VEV", "VEE")


@pytest.fixture(scope="module")
def data():
    """D=3, K=2 with correlated components; about 25% of cells missing, a few complete rows."""
    sim = simulate_mixture(
        240,
        weights=[0.4, 0.6],
        means=[[0.0, 0.0, 0.0], [4.0, 2.0, -1.0]],
        covariances=[
            [[1.0, 0.6, 0.2], [0.6, 1.5, -0.3], [0.2, -0.3, 0.8]],
            [[0.7, -0.2, 0.1], [-0.2, 1.0, 0.4], [0.1, 0.4, 1.2]],
        ],
        random_state=5,
    )
    X = np.asarray(sim.X, dtype=float)
    rng = np.random.default_rng(9)
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.25] = np.nan
    Xm[np.isnan(Xm).all(axis=1), 0] = X[np.isnan(Xm).all(axis=1), 0]  # keep one entry
    return X, Xm


def _fit(X, model, *, sample_weight_ones=False, **kw):
    params = dict(covariance_type=model, random_state=0, tol=0.0, max_iter=8) | kw
    weight = np.ones(len(X)) if sample_weight_ones else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return EMGaussianMixture(2, **params).fit(X, sample_weight=weight)


def _naive_density(em, X):
    """Per-row log density of the observed entries and responsibilities, row by row."""
    k, d = em.n_components, em.n_features_in_
    cov = g.full_covariances(em.covariances_, em.model_name_, k, d)
    log_norm, resp = np.empty(len(X)), np.empty((len(X), k))
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        joint = np.log(em.weights_).copy()
        if o.any():  # a row with nothing observed: density 1, the weights as memberships
            joint += [
                multivariate_normal(em.means_[j, o], cov[j][np.ix_(o, o)]).logpdf(x[o])
                for j in range(k)
            ]
        log_norm[i] = logsumexp(joint)
        resp[i] = np.exp(joint - log_norm[i])
    return log_norm, resp, cov


def _naive_statistics(X, weights, means, cov, weight=None):
    """E-step statistics by the definition: complete each row per component, accumulate."""
    k, d = means.shape
    log_lik, nk = 0.0, np.zeros(k)
    first, second = np.zeros((k, d)), np.zeros((k, d, d))
    weight = np.ones(len(X)) if weight is None else weight
    for x, w in zip(X, weight, strict=True):
        o, m = ~np.isnan(x), np.isnan(x)
        dens = np.array(
            [multivariate_normal(means[j, o], cov[j][np.ix_(o, o)]).logpdf(x[o]) for j in range(k)]
        )
        joint = np.log(weights) + dens
        log_lik += w * logsumexp(joint)
        r = w * np.exp(joint - logsumexp(joint))
        for j in range(k):
            s = cov[j]
            b = s[np.ix_(m, o)] @ np.linalg.inv(s[np.ix_(o, o)])
            xhat = x.copy()
            xhat[m] = means[j, m] + b @ (x[o] - means[j, o])
            extra = np.zeros((d, d))
            extra[np.ix_(m, m)] = s[np.ix_(m, m)] - b @ s[np.ix_(o, m)]
            dev = xhat - means[j]
            nk[j] += r[j]
            first[j] += r[j] * dev
            second[j] += r[j] * (np.outer(dev, dev) + extra)
    return log_lik, nk, first, second


@pytest.mark.parametrize("layout", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("engine", kernels.ENGINES)
@pytest.mark.parametrize("weighted", [True, False])
def test_e_step_equals_naive(data, layout, engine, weighted):
    """Every engine (the serial one: all patterns in one compiled call) against the E-step by
    its definition, row by row with SciPy's densities, with and without frequency weights."""
    _, Xm = data
    rng = np.random.default_rng(1)
    k, d = 2, 3
    scaling = AffineScaling(np.array([1.0, -0.5, 0.3]), np.array([2.0, 1.5, 0.8]))
    a = rng.normal(size=(k, d, d))
    full = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.array([0.8, 1.7]),
    }[layout]
    means = rng.normal(size=(k, d))
    weights = np.array([0.3, 0.7])
    mixture = kernels.Mixture(scaling, weights, means, g.precision_cholesky(cov, layout), layout)
    w = rng.integers(1, 4, size=len(Xm)).astype(float) if weighted else np.ones(len(Xm))
    rows = _missing.RowData(Xm, w if weighted else None)
    ours = _missing.e_step(rows, mixture, block_rows=13, engine=engine)
    unit = scaling.transform(Xm)
    log_lik, nk, first, second = _naive_statistics(
        unit, weights, means, g.full_covariances(cov, layout, k, d), w
    )
    missing_jacobian = np.sum(w[:, None] * np.isnan(Xm) * np.log(scaling.scale))
    np.testing.assert_allclose(ours.log_likelihood, log_lik + missing_jacobian, rtol=1e-12)
    assert ours.n_samples == pytest.approx(w.sum())
    np.testing.assert_allclose(ours.resp_sum, nk, rtol=1e-11)
    np.testing.assert_allclose(ours.first, first, rtol=1e-10, atol=1e-10)
    expected = second if layout in ("full", "tied") else np.diagonal(second, axis1=1, axis2=2)
    np.testing.assert_allclose(ours.second, expected, rtol=1e-10, atol=1e-10)


def test_serial_e_step_failure_is_a_value_error(data, monkeypatch):
    """A marginal covariance the compiled E-step cannot factor raises SingularCovarianceError,
    a ValueError, which em-EM takes as a failed start (as the per-pattern path's error)."""
    _, Xm = data
    scaling = AffineScaling(np.zeros(3), np.ones(3))
    mixture = kernels.Mixture(
        scaling, np.array([0.5, 0.5]), np.zeros((2, 3)), np.ones((2, 3)), "diag"
    )

    def fails(*args):
        return False, None

    monkeypatch.setattr(_missing, "rows_statistics", fails)
    with pytest.raises(g.SingularCovarianceError, match="not positive definite"):
        _missing.e_step(_missing.RowData(Xm, None), mixture, block_rows=13, engine="serial")


def _naive_em(X, weights, means, cov, n_iter):
    """VVV EM by the definition, without regularisation, in the user's units."""
    trace = []
    for _ in range(n_iter):
        log_lik, nk, first, second = _naive_statistics(X, weights, means, cov)
        trace.append(log_lik / len(X))
        delta = first / nk[:, None]
        means = means + delta
        cov = second / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
        weights = nk / nk.sum()
    return weights, means, cov, np.array(trace)


def test_whole_em_equals_naive_em(data):
    _, Xm = data
    start_means = np.array([[0.5, 0.0, 0.0], [3.0, 2.0, -1.0]])
    start_cov = np.stack([np.eye(3), np.eye(3)])
    start = dict(
        weights_init=[0.5, 0.5], means_init=start_means, precisions_init=np.linalg.inv(start_cov)
    )
    em = _fit(Xm, "VVV", reg_covar=0.0, **start)
    weights, means, cov, trace = _naive_em(Xm, np.array([0.5, 0.5]), start_means, start_cov, 8)
    np.testing.assert_allclose(em.log_likelihood_trace_, trace, rtol=1e-10)
    np.testing.assert_allclose(em.weights_, weights, rtol=1e-9)
    np.testing.assert_allclose(em.means_, means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(em.covariances_, cov, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("model", MODELS)
def test_predictions_equal_scipy_marginals(data, model):
    _, Xm = data
    em = _fit(Xm, model)
    log_norm, resp, _ = _naive_density(em, Xm)
    np.testing.assert_allclose(em.score_samples(Xm), log_norm, rtol=1e-10)
    np.testing.assert_allclose(em.predict_proba(Xm), resp, atol=1e-10)
    np.testing.assert_array_equal(em.predict(Xm), resp.argmax(axis=1))
    criteria = em._criteria(Xm)
    np.testing.assert_allclose(criteria["log_likelihood"], log_norm.sum(), rtol=1e-10)


@pytest.mark.parametrize("model", ["VVV", "VVI"])
def test_impute_equals_conditional_means(data, model):
    _, Xm = data
    em = _fit(Xm, model)
    _, resp, cov = _naive_density(em, Xm)
    out = em.impute(Xm)
    for i, x in enumerate(Xm):
        o, m = ~np.isnan(x), np.isnan(x)
        expected = x.copy()
        expected[m] = sum(
            resp[i, j]
            * (
                em.means_[j, m]
                + cov[j][np.ix_(m, o)]
                @ np.linalg.solve(cov[j][np.ix_(o, o)], x[o] - em.means_[j, o])
            )
            for j in range(2)
        )
        np.testing.assert_allclose(out[i], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", ["VVV", "EEE", "VII", "EVE"])
def test_complete_data_take_todays_path(data, model):
    """Complete, unweighted rows are fitted by the complete-data kernel, untouched; the
    pattern machinery (through unit weights) gives the same fit to rounding."""
    X, _ = data
    prepared, _ = _missing.prepare(X, None, 2)
    assert prepared is X
    ours = _fit(X, model)
    through_rows = _fit(X, model, sample_weight_ones=True)
    for name in ("weights_", "means_", "covariances_", "log_likelihood_trace_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(through_rows, name), rtol=1e-12)


def test_rows_with_nothing_observed_are_dropped_with_a_warning(data):
    _, Xm = data
    X = np.vstack([Xm, np.full((3, 3), np.nan)])
    with pytest.warns(UserWarning, match="3 row"):
        em = _fit(X, "VVV")
    reference = _fit(Xm, "VVV")
    np.testing.assert_allclose(em.means_, reference.means_, rtol=1e-12)
    assert em.bic(X) == pytest.approx(reference.bic(Xm), rel=1e-12)
    np.testing.assert_allclose(em.predict_proba(X[-3:]), np.tile(em.weights_, (3, 1)))
    np.testing.assert_allclose(em.score_samples(X[-3:]), 0.0, atol=1e-12)


def test_feature_missing_everywhere_is_named(data):
    _, Xm = data
    X = Xm.copy()
    X[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"Feature\(s\) 1 of X are missing \(NaN\) in every row"):
        EMGaussianMixture(2).fit(X)


def test_infinity_is_still_an_error(data):
    _, Xm = data
    X = Xm.copy()
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        EMGaussianMixture(2).fit(X)


@pytest.mark.parametrize("model", models.MODEL_NAMES)
def test_every_model_fits_with_missing_cells(data, model):
    _, Xm = data
    em = _fit(Xm, model, reg_covar=0.0, max_iter=15)
    assert np.all(np.diff(em.log_likelihood_trace_) >= -1e-9 * np.abs(em.lower_bound_))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    fraction=st.floats(0.05, 0.5),
    model=st.sampled_from(["VVV", "EEE", "VVI", "VEV", "EVE"]),
)
def test_likelihood_never_decreases_with_random_masks(data, seed, fraction, model):
    X, _ = data
    rng = np.random.default_rng(seed)
    Xm = X.copy()
    Xm[rng.random(X.shape) < fraction] = np.nan
    Xm[np.isnan(Xm).all(axis=1), rng.integers(3)] = 1.0  # no empty rows
    em = _fit(Xm, model, reg_covar=0.0, max_iter=12, random_state=seed % 1000)
    steps = np.diff(em.log_likelihood_trace_)
    assert np.all(steps >= -1e-9 * np.abs(em.lower_bound_))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), fraction=st.floats(0.0, 0.9))
def test_row_density_equals_scipy_marginal(data, seed, fraction):
    X, _ = data
    em = _fitted_vvv(X)
    rng = np.random.default_rng(seed)
    rows = X[rng.choice(len(X), 20)].copy()
    rows[rng.random(rows.shape) < fraction] = np.nan
    log_norm, resp, _ = _naive_density(em, rows)
    np.testing.assert_allclose(em.score_samples(rows), log_norm, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(em.predict_proba(rows), resp, atol=1e-10)


_FITTED: dict[str, EMGaussianMixture] = {}


def _fitted_vvv(X):
    if "vvv" not in _FITTED:
        _FITTED["vvv"] = _fit(X, "VVV")
    return _FITTED["vvv"]


@pytest.mark.parametrize("n_features", [3, 70])  # integer codes, and unique rows beyond 62
def test_patterns_group_every_row_once(n_features):
    rng = np.random.default_rng(n_features)
    X = rng.normal(size=(200, n_features))
    X[rng.random(X.shape) < 0.3 / np.sqrt(n_features)] = np.nan
    groups = _missing.group_patterns(X)
    assert groups[0].missing.size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([p.rows for p in groups])), np.arange(200))
    for p in groups:
        np.testing.assert_array_equal(
            np.isnan(X[p.rows]),
            np.isin(np.arange(n_features), p.missing)[None].repeat(p.rows.size, 0),
        )
        np.testing.assert_array_equal(p.values, X[np.ix_(p.rows, p.observed)])


def test_sweep_and_fit_predict_take_missing_cells(data):
    _, Xm = data
    X = np.vstack([Xm, np.full((2, 3), np.nan)])
    sweep = em_sweep(X, [1, 2], ["VVV", "VII"], n_init=1, progress=False, max_iter=30)
    em = sweep.fits[(2, "VVV")]
    row = sweep.table.query("n_components == 2 and covariance_type == 'VVV'").iloc[0]
    assert "2 row(s) of X have every feature missing" in row["message"]
    assert row["bic"] == pytest.approx(em.bic(Xm), rel=1e-12)  # empty rows do not count
    with pytest.warns(UserWarning, match="2 row"):
        labels = EMGaussianMixture(2, random_state=0).fit_predict(X)
    assert labels.shape == (len(X),)


def test_sweep_with_missing_cells_runs_em_em_on_the_fitted_rows(data, monkeypatch):
    """em-EM (the sweep's default) is not silently replaced by n_init restarts when cells are
    missing: its pool is built on the rows the fits keep (not the rows with nothing
    observed), mean-filled; adding rows with nothing observed changes no fit."""
    from bayesgmm import _restarts

    _, Xm = data
    pools = []

    def spy(X, ks, strategy, random_state):
        pools.append(X)
        return partition_pool(X, ks, strategy, random_state)

    monkeypatch.setattr(_restarts, "partition_pool", spy)
    kw = dict(n_components=[1, 2, 3], covariance_types=["VVV", "VII"], progress=False)
    plain = em_sweep(Xm, **kw)
    padded = em_sweep(np.vstack([Xm[:5], np.full((2, 3), np.nan), Xm[5:]]), **kw)
    assert padded.table["message"].str.contains("2 row").all()
    assert [p.shape for p in pools] == [Xm.shape, Xm.shape]
    assert np.isfinite(pools[0]).all()
    np.testing.assert_allclose(
        padded.table["log_likelihood"], plain.table["log_likelihood"], rtol=1e-10
    )
