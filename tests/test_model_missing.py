"""The PyMC model and the kernel log density on rows with missing cells and frequency weights.

Oracles: SciPy's ``multivariate_normal`` on each row's observed entries (the explicit per-row
density ``log sum_k w_k N(x_O | mu_k[O], Sigma_k[O, O])``, times the row's weight); PyMC's
compiled ``logp``/``dlogp`` of the model for the kernel; an explicit per-pattern model of
PyMC's own ``Mixture`` and ``MvNormal`` for both; repeated rows for integer weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import EMGaussianMixture, GMMPriors, build_model
from bayesgmm._families import family_cholesky
from bayesgmm._logdensity import log_density_for
from bayesgmm._units import to_data_units
from bayesgmm.model import default_priors, model_spec, observed_rows

from .test_logdensity import PYTHON, _split, assert_equals_pymc

COV_TYPES = ["full", "diag", "EEE", "EEI", "VII", "EII"]


def _holes(rng: np.random.Generator, n: int = 40, fraction: float = 0.3) -> np.ndarray:
    X = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.2] + 3.0
    X[rng.random(X.shape) < fraction] = np.nan
    X[np.isnan(X).all(axis=1), 1] = 2.0
    return X


def _oracle(X, weight, density, x) -> float:
    """Sum over rows of weight times SciPy's log density of the observed entries."""
    point = density.posterior(
        x[None, None], {"component": [0, 1], "feature": [0, 1, 2], "feature_bis": [0, 1, 2]}
    )
    params = to_data_units(point, density.scaling).isel(chain=0, draw=0)
    w, mu, cov = (params[n].values for n in ("weights", "means", "covariances"))
    total = 0.0
    for i, row in enumerate(X):
        o = ~np.isnan(row)
        dens = [
            np.log(w[k]) + multivariate_normal(mu[k, o], cov[k][np.ix_(o, o)]).logpdf(row[o])
            for k in range(w.size)
        ]
        total += (1.0 if weight is None else weight[i]) * logsumexp(dens)
    return total


def _likelihood_of_kernel(density, rows, x) -> float:
    """The kernel's log-likelihood: its posterior density less that of one complete row,
    plus that row's SciPy density (the priors cancel: they do not depend on the data)."""
    one = np.ascontiguousarray(density.scaling.loc[None, :])
    return density(x, rows)[0] - density(x, one)[0] + _oracle(one, None, density, x)


@pytest.mark.parametrize(
    ("cov_type", "sd_prior"),
    [(c, "halfnormal") for c in COV_TYPES] + [("full", "inverse_gamma"), ("EII", "inverse_gamma")],
)
def test_kernel_equals_pymc_with_missing_cells_and_weights(cov_type, sd_prior, rng):
    X = _holes(rng)
    weight = rng.integers(0, 4, size=X.shape[0]).astype(float)
    weight[:4] = 1.0
    priors = default_priors(X, weight, sd_prior=sd_prior, n_components=2)
    model = build_model(X, 2, covariance_type=cov_type, sample_weight=weight, priors=priors)
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    assert_equals_pymc(model, density, rows, rng, points=3, spread=0.6)


@pytest.mark.parametrize("cov_type", ["full", "diag", "VII"])
def test_pymc_likelihood_equals_scipy_on_the_observed_entries(cov_type, rng):
    X = _holes(rng)
    weight = rng.uniform(0.2, 3.0, size=X.shape[0])
    model = build_model(X, 2, covariance_type=cov_type, sample_weight=weight)
    density = log_density_for(model)
    likelihood = model.compile_fn(
        model.logp(vars=model.observed_RVs), inputs=model.value_vars, mode=PYTHON
    )
    for _ in range(2):
        x = rng.normal(size=density.n_dim) * 0.6
        assert likelihood(_split(model, x)) == pytest.approx(
            _oracle(X, weight, density, x), rel=1e-10
        )


@st.composite
def _masked(draw):
    mask = draw(arrays(bool, (12, 3)))
    mask[mask.all(axis=1), 0] = False  # every row observes something
    mask[np.arange(9), np.arange(9) % 3] = False  # every feature observed in 3 rows at least
    return mask


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=_masked(), seed=st.integers(0, 2**16))
def test_kernel_likelihood_equals_scipy_for_random_masks(mask, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=mask.shape) * [1.0, 5.0, 0.2] + 3.0
    X[mask] = np.nan
    density = log_density_for(build_model(X, 2, covariance_type="full"))
    x = rng.normal(size=density.n_dim) * 0.6
    assert _likelihood_of_kernel(density, density.rows(X), x) == pytest.approx(
        _oracle(X, None, density, x), rel=1e-10, abs=1e-9
    )


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=_masked(), seed=st.integers(0, 2**16))
def test_pymc_likelihood_equals_scipy_for_random_masks(mask, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=mask.shape) * [1.0, 5.0, 0.2] + 3.0
    X[mask] = np.nan
    model = build_model(X, 2, covariance_type="EEE")
    likelihood = model.compile_fn(
        model.logp(vars=model.observed_RVs), inputs=model.value_vars, mode=PYTHON
    )
    x = rng.normal(size=log_density_for(model).n_dim) * 0.6
    expected = _oracle(X, None, log_density_for(model), x)
    assert likelihood(_split(model, x)) == pytest.approx(expected, rel=1e-10)


def test_integer_weights_equal_repeated_rows_in_the_pymc_model(rng):
    X = _holes(rng, n=20)
    counts = rng.integers(1, 4, size=X.shape[0])
    priors = GMMPriors(means_loc=(3.0, 3.0, 3.0), means_scale=(2.0, 10.0, 0.4))
    weighted = build_model(X, 2, priors=priors, sample_weight=counts)
    repeated = build_model(np.repeat(X, counts, axis=0), 2, priors=priors)
    x = rng.normal(size=log_density_for(weighted).n_dim) * 0.6
    values = []
    for model in (weighted, repeated):
        point = _split(model, x)
        values.append(
            (
                model.compile_logp(jacobian=True, mode=PYTHON)(point),
                model.compile_dlogp(jacobian=True, mode=PYTHON)(point),
            )
        )
    (a, ga), (b, gb) = values
    assert a == pytest.approx(b, rel=1e-10)
    np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-10 * np.abs(gb).max())


def test_missing_cells_are_not_free_variables_and_x_holds_zero(rng):
    X = _holes(rng)
    model = build_model(X, 2)
    assert [rv.name for rv in model.observed_RVs] == ["obs"]
    assert [rv.name for rv in model.free_RVs] == ["weights", "means_z", "chol_cov_0", "chol_cov_1"]
    assert np.array_equal(model["X"].get_value()[np.isnan(X)], np.zeros(np.isnan(X).sum()))
    assert np.array_equal(model_spec(model).missing, np.isnan(X))
    back, weight = observed_rows(model)
    np.testing.assert_array_equal(back, X)
    assert weight is None


def test_complete_unweighted_model_records_no_missing_cells(rng):
    spec = model_spec(build_model(rng.normal(size=(30, 2)), 2))
    assert spec.missing is None and spec.sample_weight is None


def test_empty_rows_and_features_match_em(rng):
    X = _holes(rng)
    X[5] = np.nan
    with pytest.warns(UserWarning, match="1 row\\(s\\) of X have every feature missing") as em_w:
        EMGaussianMixture(2, random_state=0).fit(X)
    with pytest.warns(UserWarning, match="1 row\\(s\\) of X have every feature missing") as w:
        model = build_model(X, 2)
    assert str(w[0].message) == str(em_w[0].message)
    assert model["X"].get_value().shape[0] == X.shape[0] - 1
    X[:, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="Feature\\(s\\) 2 of X are missing") as em_err:
            EMGaussianMixture(2).fit(X)
        with pytest.raises(ValueError, match="Feature\\(s\\) 2 of X are missing") as err:
            build_model(X, 2)
    assert str(err.value) == str(em_err.value)


def test_pointwise_log_likelihood_is_each_rows_observed_density(rng):
    """Per draw and row, SciPy's density of the row's observed entries (in the data's units);
    one entry per row."""
    from bayesgmm._results import _pointwise_log_likelihood
    from bayesgmm._scaling import AffineScaling

    X = _holes(rng, n=15)
    scaling = AffineScaling(np.array([3.0, 2.0, 3.5]), np.array([1.5, 4.0, 0.3]))
    n_draws, k = 3, 2
    factors = rng.normal(size=(1, n_draws, k, 3, 3)) * 0.3 + np.eye(3)
    unit = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), rng.dirichlet([2, 2], (1, n_draws))),
            "means": (
                ("chain", "draw", "component", "feature"),
                rng.normal(size=(1, n_draws, k, 3)),
            ),
            "covariances": (
                ("chain", "draw", "component", "feature", "feature_bis"),
                factors @ np.swapaxes(factors, -1, -2),
            ),
        }
    )
    got = _pointwise_log_likelihood(unit, X, scaling).values[0]
    assert got.shape == (n_draws, X.shape[0])
    for s in range(n_draws):
        d = unit.isel(chain=0, draw=s)
        mu = d["means"].values * scaling.scale + scaling.loc
        cov = d["covariances"].values * np.outer(scaling.scale, scaling.scale)
        for i, row in enumerate(X):
            o = ~np.isnan(row)
            dens = [
                np.log(d["weights"].values[c])
                + multivariate_normal(mu[c, o], cov[c][np.ix_(o, o)]).logpdf(row[o])
                for c in range(k)
            ]
            assert got[s, i] == pytest.approx(logsumexp(dens), rel=1e-10)


def _explicit_per_pattern_model(X: np.ndarray, cov_type: str) -> pm.Model:
    """The model of ``build_model(X, 2, covariance_type=cov_type)`` written out with PyMC's own
    distributions: the same priors (same variable names, hence the same value variables), and
    for every missingness pattern a ``pm.Mixture`` of ``pm.MvNormal`` on that pattern's rows,
    observed columns only, with the covariances' ``[O, O]`` blocks; plus the standardisation's
    Jacobian over the observed cells as a potential. Nothing of bayesgmm's likelihood code."""
    spec = model_spec(build_model(X, 2, covariance_type=cov_type))
    unit, family = spec.standardised_priors, spec.family
    loc, scale = spec.scaling.loc, spec.scaling.scale
    missing = np.isnan(X)
    patterns = np.unique(missing, axis=0)
    coords = {"component": [0, 1], "feature": [0, 1, 2], "feature_bis": [0, 1, 2]}
    with pm.Model(coords=coords) as model:
        weights = pm.Dirichlet("weights", a=np.full(2, unit.weights_concentration))
        means_z = pm.Normal(
            "means_z",
            mu=np.broadcast_to(np.asarray(unit.means_loc), (2, 3)),
            sigma=np.broadcast_to(np.asarray(unit.means_scale), (2, 3)),
        )
        chol = family_cholesky(family, 2, 3, unit)
        cov = chol @ chol.mT
        for p, pattern in enumerate(patterns):
            rows = (missing == pattern).all(axis=1)
            o = np.flatnonzero(~pattern)
            components = [pm.MvNormal.dist(mu=means_z[k][o], cov=cov[k][o][:, o]) for k in range(2)]
            z = (X[rows][:, o] - loc[o]) / scale[o]
            pm.Mixture(f"obs_{p}", w=weights, comp_dists=components, observed=z)
            pm.Potential(f"jacobian_{p}", pt.as_tensor(-rows.sum() * np.log(scale[o]).sum()))
    return model


def test_model_equals_an_explicit_per_pattern_pymc_model(rng):
    """Full covariances: the off-diagonal blocks are where marginalising matters."""
    cov_type = "full"
    X = _holes(rng, n=20, fraction=0.2)
    ours = build_model(X, 2, covariance_type=cov_type)
    explicit = _explicit_per_pattern_model(X, cov_type)
    assert [v.name for v in ours.value_vars] == [v.name for v in explicit.value_vars]
    density = log_density_for(ours)
    rows = density.rows(*observed_rows(ours))
    logp = explicit.compile_logp(jacobian=True, mode=PYTHON)
    dlogp = explicit.compile_dlogp(jacobian=True, mode=PYTHON)
    ours_logp = ours.compile_logp(jacobian=True, mode=PYTHON)
    for _ in range(2):
        x = rng.normal(size=density.n_dim) * 0.5
        point = _split(ours, x)
        value, grad = density(x, rows)
        np.testing.assert_allclose(ours_logp(point), logp(point), rtol=1e-10)
        np.testing.assert_allclose(value, logp(point), rtol=1e-10)
        expected = dlogp(point)
        np.testing.assert_allclose(grad, expected, rtol=1e-8, atol=1e-8 * np.abs(expected).max())


def test_feature_observed_only_in_rows_of_weight_zero_is_a_named_error(rng):
    """A zero weight removes a row, so a feature observed only there is missing everywhere:
    named before any work (EM crashed inside KMeans, build_model on a NaN prior)."""
    from bayesgmm import BayesianGMM

    X = _holes(rng)
    X[:, 0] = rng.normal(size=X.shape[0])  # no row is empty
    X[:10, 1] = rng.normal(size=10)
    X[10:, 1] = np.nan
    weight = np.r_[np.zeros(10), np.ones(X.shape[0] - 10)]
    message = "Feature\\(s\\) 1 of X are missing \\(NaN\\) in every row of positive weight"
    with pytest.raises(ValueError, match=message):
        EMGaussianMixture(2).fit(X, sample_weight=weight)
    with pytest.raises(ValueError, match=message):
        build_model(X, 2, sample_weight=weight)
    with pytest.raises(ValueError, match=message):
        BayesianGMM(2).fit(X, sample_weight=weight)
    weight[0] = 1.0  # one positive-weight value: no spread among the rows that count
    with pytest.raises(ValueError, match=r"Feature\(s\) 1 of X are constant .* positive weight"):
        build_model(X, 2, sample_weight=weight)


def test_feature_observed_in_one_row_is_named_as_such(rng):
    X = _holes(rng)
    X[:, 0] = rng.normal(size=X.shape[0])
    X[1:, 2] = np.nan
    X[0, 2] = 1.0
    message = r"Feature\(s\) 2 of X have one value in all their observed cells \(observed once"
    with pytest.raises(ValueError, match=message):
        EMGaussianMixture(2).fit(X)
    with pytest.raises(ValueError, match=message):
        build_model(X, 2)


def test_data_replaced_with_other_rows_or_holes_is_a_named_error(rng):
    """Patterns and weights are constants of the graph: pm.set_data with other rows (a
    broadcasting error before), or values in the cells the model misses (silently ignored
    before), is refused; the same rows with the same holes (NaN or 0) are accepted."""
    import pymc as pm

    X = _holes(rng)
    model = build_model(X, 2)
    with model:
        pm.set_data({"X": X})  # the same holes, as NaN
    np.testing.assert_array_equal(observed_rows(model)[0], X)
    message = "The model's data were replaced .* call build_model on the new data"
    other = np.where(np.isnan(X), 1.0, X)  # values where the model has holes
    for new, n in ((other, X.shape[0]), (np.ones((5, 3)), 5)):
        with model:
            pm.set_data({"X": new}, coords={"obs_id": np.arange(n)})
        with pytest.raises(ValueError, match=message):
            observed_rows(model)
    weighted = build_model(np.nan_to_num(X, nan=1.0), 2, sample_weight=np.ones(X.shape[0]))
    with weighted:
        pm.set_data({"X": np.ones((5, 3))}, coords={"obs_id": np.arange(5)})
    with pytest.raises(ValueError, match=message):
        observed_rows(weighted)
