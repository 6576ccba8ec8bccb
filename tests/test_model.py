"""The PyMC model: structure, and its log-likelihood checked against EM's (one math, two sides)."""

from __future__ import annotations

import json

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

from bayesgmm import EMGaussianMixture, GMMPriors, build_model
from bayesgmm import _gaussian as g
from bayesgmm.datasets import load_faithful
from bayesgmm.model import model_spec
from bayesgmm.start import em_initial_point, em_initial_values


@pytest.fixture(scope="module")
def faithful():
    return load_faithful()


def _obs_loglik(model, point):
    return float(model.compile_logp(vars=[model["obs"]], sum=True)(point))


@pytest.mark.parametrize("cov_type", ["full", "diag", "tied", "EEI", "spherical", "EII"])
def test_model_log_likelihood_equals_em(faithful, cov_type):
    """At EM's estimate of the same model, the model's log-likelihood is EM's. Old Faithful's
    features differ in spread 14-fold: a spherical model standardised feature by feature
    would be another model, whose start could not reproduce EM's spheres."""
    em = EMGaussianMixture(2, covariance_type=cov_type, tol=1e-8, random_state=0).fit(faithful)
    model = build_model(faithful, 2, covariance_type=cov_type)
    point = em_initial_point(model, em)
    np.testing.assert_allclose(
        _obs_loglik(model, point), em.score_samples(faithful).sum(), rtol=1e-8
    )


@pytest.mark.parametrize(
    ("shift", "scale"), [(1e9, 1.0), (0.0, 1e-150), (0.0, 1e150)], ids=["far", "tiny", "huge"]
)
def test_model_log_likelihood_far_from_origin_and_at_extreme_scales(faithful, shift, scale):
    """The residual is formed before whitening, so neither an offset nor the scale costs digits."""
    X = faithful.to_numpy() * scale + shift
    em = EMGaussianMixture(2, tol=1e-8, random_state=0).fit(X)
    model = build_model(X, 2)
    point = em_initial_point(model, em)
    np.testing.assert_allclose(_obs_loglik(model, point), em.score_samples(X).sum(), rtol=1e-8)


def test_model_structure(faithful):
    priors = GMMPriors.from_data(faithful)
    model = build_model(faithful, 3, priors=priors)
    assert model.coords["feature"] == ("eruptions", "waiting")
    assert len(model.coords["obs_id"]) == 272
    assert {v.name for v in model.free_RVs} == {
        "weights",
        "means_z",
        "chol_cov_0",
        "chol_cov_1",
        "chol_cov_2",
    }
    assert {v.name for v in model.deterministics} == {
        "means",
        "covariances",
        "stds",
        "correlations",
    }
    assert model.named_vars_to_dims["means"] == ("component", "feature")
    assert model.named_vars_to_dims["covariances"] == ("component", "feature", "feature_bis")
    assert model.named_vars_to_dims["obs"] == ("obs_id", "feature")
    assert model.named_vars_to_dims["correlations"] == ("component", "feature", "feature_bis")


def test_diag_model_has_no_lkj(faithful):
    model = build_model(faithful, 2, covariance_type="diag")
    assert {v.name for v in model.free_RVs} == {"weights", "means_z", "stds_z"}
    assert {v.name for v in model.deterministics} == {"means", "covariances", "stds"}


FAMILY_VARIABLES = {
    "EEE": ({"chol_cov": None}, True),
    "EEI": ({"stds_z": ("feature",)}, False),
    "VII": ({"stds_z": ("component",)}, False),
    "EII": ({"stds_z": ()}, False),
}


@pytest.mark.parametrize("cov_type", sorted(FAMILY_VARIABLES))
def test_family_structure_and_standardisation(faithful, cov_type):
    """One free covariance for the shared models, one scale for the spherical ones, broadcast
    to (component, feature, feature_bis) in the deterministics; VII and EII standardise with
    one common scale (a per-feature one would make another model), the others per feature."""
    variables, has_correlations = FAMILY_VARIABLES[cov_type]
    model = build_model(faithful, 3, covariance_type=cov_type)
    spec = model_spec(model)
    assert spec.covariance_type == cov_type
    assert [v.name for v in model.free_RVs] == ["weights", "means_z", *variables]
    for name, dims in variables.items():
        if dims is not None:
            assert model.named_vars_to_dims.get(name, ()) == dims
    names = {"means", "covariances", "stds"} | ({"correlations"} if has_correlations else set())
    assert {v.name for v in model.deterministics} == names
    assert model.named_vars_to_dims["covariances"] == ("component", "feature", "feature_bis")
    scale = spec.scaling.scale
    isotropic = cov_type in ("VII", "EII")
    assert np.allclose(scale, scale[0]) == isotropic
    covariances = pm.draw(model["covariances"], random_seed=1)
    assert covariances.shape == (3, 2, 2)
    if cov_type.startswith("E"):  # shared by every component
        np.testing.assert_array_equal(covariances, np.broadcast_to(covariances[0], (3, 2, 2)))
    if cov_type.endswith("I"):
        assert np.all(covariances[:, 0, 1] == 0)
    if isotropic:  # spheres in the data's units
        np.testing.assert_allclose(covariances[:, 0, 0], covariances[:, 1, 1], rtol=1e-12)


def test_covariance_round_trip_through_pymc_parameterisation(faithful):
    """EM covariance -> packed LKJ Cholesky -> the model's own covariances deterministic."""
    em = EMGaussianMixture(2, random_state=0).fit(faithful)
    model = build_model(faithful, 2)
    values = em_initial_values(model, em)
    scale = model_spec(model).scaling.scale
    for k in range(2):
        chol = g.unpack_cholesky(values[f"chol_cov_{k}"], 2)  # standardised
        np.testing.assert_allclose(
            chol @ chol.T * np.outer(scale, scale), em.covariances_[k], rtol=1e-12
        )
    point = em_initial_point(model, em)
    (graph,) = model.replace_rvs_by_values([model["covariances"]])
    covariances = model.compile_fn(graph, inputs=model.value_vars, on_unused_input="ignore")(point)
    np.testing.assert_allclose(covariances, em.covariances_, rtol=1e-10)


def test_prior_log_density_matches_scipy_for_means(faithful):
    """The means prior is the documented Normal(loc, scale) in the data's units: the model
    samples standardised means, whose density is that one times the Jacobian prod(scale)."""
    from scipy.stats import norm

    priors = GMMPriors(means_loc=(1.0, 50.0), means_scale=(2.0, 20.0), sd_scale=(1.0, 10.0))
    model = build_model(faithful, 2, priors=priors)
    scaling = model_spec(model).scaling
    means = np.array([[0.5, 40.0], [3.0, 90.0]])
    point = model.initial_point()
    point["means_z"] = scaling.transform(means)
    logp = model.compile_logp(vars=[model["means_z"]], sum=True)(point)
    expected = norm(loc=[1.0, 50.0], scale=[2.0, 20.0]).logpdf(means).sum()
    np.testing.assert_allclose(logp, expected + 2 * scaling.log_jacobian, rtol=1e-10)
    (graph,) = model.replace_rvs_by_values([model["means"]])
    shown = model.compile_fn(graph, inputs=model.value_vars, on_unused_input="ignore")(point)
    np.testing.assert_allclose(shown, means, rtol=1e-12)


@pytest.mark.parametrize(("cov_type", "var_shape"), [("diag", 1.5), ("spherical", 3.0)])
def test_inverse_gamma_prior_matches_scipy(faithful, cov_type, var_shape):
    """``sd_prior="inverse_gamma"``: each variance is InvGamma(var_shape, sd_scale^2) in the
    data's units (spherical: the pooled scale, the mean of ``sd_scale^2``); the model samples
    standardised standard deviations, whose density is that of ``s`` times ``scale``."""
    from scipy.stats import invgamma

    sd_scale = np.array([0.5, 12.0])
    priors = GMMPriors(sd_scale=tuple(sd_scale), sd_prior="inverse_gamma", var_shape=var_shape)
    model = build_model(faithful, 2, priors=priors, covariance_type=cov_type)
    scaling = model_spec(model).scaling
    stds = np.array([[0.3, 4.0], [1.1, 9.0]])
    beta = sd_scale**2
    if cov_type == "spherical":
        stds, beta = stds[:, :1], np.mean(beta)
    point = model.initial_point()
    point["stds_z_log__"] = np.log(stds / scaling.scale[: stds.shape[1]]).reshape(
        point["stds_z_log__"].shape
    )
    logp = model.compile_logp(vars=[model["stds_z"]], sum=True, jacobian=False)(point)
    density_of_s = invgamma(var_shape, scale=beta).logpdf(stds**2) + np.log(2 * stds)
    expected = density_of_s + np.log(scaling.scale[: stds.shape[1]])
    np.testing.assert_allclose(logp, expected.sum(), rtol=1e-12)


def test_inverse_gamma_defaults_are_mclusts(faithful):
    """``from_data(sd_prior="inverse_gamma")`` is mclust's defaultPrior marginally: each
    variance ~ InvGamma(dof - D + 1 = 3/2, scale_jj / 2). mclust 6.0, R 4.2.2:
    ``defaultPrior(as.matrix(faithful), 3, "VVV")`` (scale with R's n - 1 variance; ours
    divides by n)."""
    mclust_scale = np.array([0.43424277761648944, 61.6077707835901904])
    n = faithful.shape[0]
    priors = GMMPriors.from_data(faithful, sd_prior="inverse_gamma", n_components=3)
    assert priors.var_shape == 1.5 and priors.sd_prior == "inverse_gamma"
    np.testing.assert_allclose(np.square(priors.sd_scale), mclust_scale / 2 * (n - 1) / n)
    # VII: mclust's one scale is fac * mean(var) = 31.021006780603336, our pooled one
    from bayesgmm._families import pooled_sd_scale

    pooled = pooled_sd_scale(priors.sd_scale) ** 2
    np.testing.assert_allclose(pooled, 31.021006780603336 / 2 * (n - 1) / n)


def test_default_model_priors_take_the_components(faithful):
    """build_model's default inverse-gamma scale depends on K (``var / K^(2/D)``)."""
    from bayesgmm.model import default_priors

    X = np.asarray(faithful)
    two = default_priors(X, sd_prior="inverse_gamma", n_components=2)
    four = default_priors(X, sd_prior="inverse_gamma", n_components=4)
    np.testing.assert_allclose(np.square(two.sd_scale) / np.square(four.sd_scale), 2.0)
    weighted = default_priors(X, np.ones(len(X)), sd_prior="inverse_gamma", n_components=2)
    np.testing.assert_allclose(weighted.sd_scale, two.sd_scale, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"covariance_type": "VVE"}, "covariance_type 'VVE'.*'full', 'tied'.*'EII'"),
        ({"n_components": 0}, "n_components"),
        ({"priors": GMMPriors(means_loc=(0.0, 1.0, 2.0))}, "3 values but the data has 2"),
    ],
)
def test_bad_model_arguments(faithful, kwargs, match):
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_model(faithful, **kwargs)


def test_bad_priors():
    with pytest.raises(ValueError, match="lkj_eta must be a positive"):
        GMMPriors(lkj_eta=0)
    with pytest.raises(ValueError, match="sd_scale must be positive"):
        GMMPriors(sd_scale=(-1.0,))
    with pytest.raises(ValueError, match=r"sd_prior 'lognormal'.*'inverse_gamma'"):
        GMMPriors(sd_prior="lognormal")
    with pytest.raises(ValueError, match="var_shape must be a positive"):
        GMMPriors(sd_prior="inverse_gamma", var_shape=0.0)
    with pytest.raises(ValueError, match="pass n_components"):
        GMMPriors.from_data(load_faithful(), sd_prior="inverse_gamma")


def test_priors_json_round_trip(faithful):
    priors = GMMPriors.from_data(faithful, weights_concentration=2.0)
    assert GMMPriors.from_json(priors.to_json()) == priors
    ig = GMMPriors.from_data(faithful, sd_prior="inverse_gamma", n_components=2)
    assert GMMPriors.from_json(ig.to_json()) == ig
    # results saved before sd_prior existed read back as the HalfNormal they were
    old = {k: v for k, v in json.loads(priors.to_json()).items() if k in ("lkj_eta", "sd_scale")}
    assert GMMPriors.from_json(json.dumps(old)).sd_prior == "halfnormal"


def test_em_incompatible_with_model(faithful):
    em = EMGaussianMixture(3, random_state=0).fit(faithful)
    with pytest.raises(ValueError, match=r"3 components.*model has 2"):
        em_initial_values(build_model(faithful, 2), em)


def test_pymc_path_starts_every_chain_at_em(faithful):
    """PyMC's own initialisation with our arguments yields the EM point for every chain."""
    em = EMGaussianMixture(2, random_state=0).fit(faithful)
    model = build_model(faithful, 2)
    initial_points, _ = pm.init_nuts(
        init="adapt_diag",
        chains=3,
        initvals=em_initial_values(model, em),
        model=model,
        random_seed=[1, 2, 3],
    )
    expected = em_initial_point(model, em)
    for point in initial_points:
        for name, value in expected.items():
            np.testing.assert_allclose(point[name], value, rtol=1e-12)


def test_resolution_floor_is_the_rounding_noise_of_tied_features():
    """Sheppard: a feature rounded to steps of ``h``, at most ``m`` rows sharing a value, gets
    ``sqrt(m / 2) h / sqrt(12)``; a feature without ties gets 0 (the HalfNormal, unchanged);
    missing cells are ignored."""
    from bayesgmm.model import default_priors
    from bayesgmm.priors import resolution_floor

    rng = np.random.default_rng(0)
    X = np.column_stack([np.round(rng.normal(size=200), 1), rng.normal(size=200)])
    m = np.unique(X[:, 0], return_counts=True)[1].max()
    expected = [np.sqrt(m / 2) * 0.1 / np.sqrt(12), 0.0]
    np.testing.assert_allclose(resolution_floor(X), expected, rtol=1e-9)
    priors = GMMPriors.from_data(X, sd_prior="resolution")
    assert priors.sd_floor == tuple(resolution_floor(X)) and priors.sd_prior == "resolution"
    halfnormal = GMMPriors.from_data(X, sd_prior="halfnormal")
    assert priors.sd_scale == halfnormal.sd_scale
    assert halfnormal.sd_floor == (0.0,) * X.shape[1]  # others: no floor
    assert GMMPriors.from_data(X) == priors  # the default prior of data
    missing = X.copy()
    missing[::7, 1] = np.nan
    weighted = default_priors(missing, np.ones(200), sd_prior="resolution")
    assert weighted.sd_floor == priors.sd_floor
    # standardised with the data: the floor is a scale, like sd_scale
    unit = priors.standardised([0.0, 0.0], [2.0, 4.0])
    np.testing.assert_allclose(unit.sd_floor, np.array(priors.sd_floor) / [2.0, 4.0])


def test_resolution_floor_counts_frequency_weights_as_repeated_rows():
    """A row of weight ``w`` is ``w`` tied rows: the floor of weighted rows is that of the
    rows repeated (a feature tied only through a weight gets one; weight 0 is not observed)."""
    from bayesgmm.model import default_priors
    from bayesgmm.priors import resolution_floor

    rng = np.random.default_rng(1)
    X = np.column_stack([np.round(rng.normal(size=60), 1), rng.normal(size=60)])
    weight = rng.integers(0, 4, size=60)
    repeated = np.repeat(X, weight, axis=0)
    np.testing.assert_allclose(resolution_floor(X, weight), resolution_floor(repeated))
    assert resolution_floor(X, weight)[1] > 0.0 == resolution_floor(X)[1]
    priors = default_priors(X, weight.astype(float), sd_prior="resolution")
    np.testing.assert_allclose(priors.sd_floor, resolution_floor(repeated))


@pytest.mark.parametrize(("scale", "floor"), [(1.0, 0.05), (0.7, 0.4), (2.0, 0.0)])
def test_resolution_prior_is_a_normalised_density(scale, floor):
    """The ``"resolution"`` prior's log density (the PyMC graph the model uses) integrates to
    one over ``s > 0``, is SciPy's HalfNormal where ``f = 0``, and its draws follow it."""
    from scipy import integrate, stats

    from bayesgmm._families import _resolution_logp, _resolution_random

    s = pt.dvector("s")
    params = np.asarray(scale, dtype=np.float64), np.asarray(floor, dtype=np.float64)
    logp = pytensor.function([s], _resolution_logp(s, *params), mode="FAST_COMPILE")
    # beyond 12 c the density is below exp(-72): the integral over (0, 12 c) is the total
    grid = np.linspace(0.0, 12.0 * scale, 200_001)[1:]
    density = np.exp(logp(grid))
    total = integrate.quad(lambda v: np.exp(logp(np.array([v]))[0]), 0, 12 * scale, limit=200)
    np.testing.assert_allclose(total[0], 1.0, rtol=1e-10)
    if floor == 0:
        np.testing.assert_allclose(
            logp(grid[::5000]), stats.halfnorm(scale=scale).logpdf(grid[::5000])
        )
    cdf = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    draws = _resolution_random(scale, floor, rng=np.random.default_rng(1), size=(4000,))
    assert stats.kstest(draws, lambda v: np.interp(v, grid, cdf)).pvalue > 0.01


def test_conditional_floor_is_the_barrier_on_each_variance_given_the_others():
    """The resolution prior's factor on correlated covariances, ``-sum_j g_j^2 ((Sigma^-1)_jj
    - 1 / Sigma_jj)``: in 2-D ``-(g_1^2 / s_1^2 + g_2^2 / s_2^2) rho^2 / (1 - rho^2)``, and
    against NumPy's inverse in 4-D; 0 for a diagonal covariance."""
    from bayesgmm._families import conditional_floor_logp

    factor = pt.dmatrix("L")
    floor_sq = np.array([0.09, 0.25])
    fn = pytensor.function(
        [factor], conditional_floor_logp([factor], floor_sq), mode="FAST_COMPILE"
    )
    s1, s2, rho = 0.7, 1.9, -0.93
    lower = np.linalg.cholesky([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    expected = -(floor_sq[0] / s1**2 + floor_sq[1] / s2**2) * rho**2 / (1 - rho**2)
    np.testing.assert_allclose(fn(lower), expected, rtol=1e-12)
    np.testing.assert_allclose(fn(np.diag([s1, s2])), 0.0, atol=1e-15)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 6))
    covariance = a @ a.T / 6
    f2 = rng.uniform(0.0, 0.5, size=4)
    both = [factor, pt.dmatrix("M")]
    fn4 = pytensor.function(both, conditional_floor_logp(both, f2), mode="FAST_COMPILE")
    one = -np.sum(f2 * (np.diag(np.linalg.inv(covariance)) - 1 / np.diag(covariance)))
    lower = np.linalg.cholesky(covariance)
    np.testing.assert_allclose(fn4(lower, lower), 2 * one, rtol=1e-10)
    assert one < 0


def _tied_path(sd_prior: str) -> list[float]:
    """The kernel's log posterior density as one component's correlation runs to 1 at fixed
    standard deviations, the component on 50 rows that share both values (0, 0)."""
    from bayesgmm._logdensity import log_density_for

    rng = np.random.default_rng(0)
    X = np.vstack([np.zeros((50, 2)), np.round(rng.normal(3.0, 1.0, size=(50, 2)), 2)])
    model = build_model(X, 2, priors=GMMPriors.from_data(X, sd_prior=sd_prior, n_components=2))
    density = log_density_for(model)
    assert density is not None
    loc, scale = density.scaling.loc, density.scaling.scale
    s = 0.05  # standardised sds of the tied component, fixed
    values = []
    for one_minus in (1.0, 1e-2, 1e-4, 1e-6, 1e-8):
        packed = [np.log(s), s * np.sqrt(1 - one_minus), np.log(s * np.sqrt(one_minus))]
        x = np.concatenate([[0.0], -loc / scale, (3.0 - loc) / scale, packed, np.zeros(3)])
        values.append(density(x, X)[0])
    return values


def test_resolution_prior_bounds_a_correlation_on_rows_tied_on_two_features():
    """Rows tied on two features (MASS's Boston: 132 share indus and tax): at fixed standard
    deviations the likelihood of a component on them grows as ``-n/2 log(1 - rho^2)``, without
    bound under a barrier on each variance alone (the inverse-gamma's, as the resolution
    prior's was); the resolution prior's barrier on each variance given the other features
    (:func:`bayesgmm._families.conditional_floor`) sends the density to -inf instead."""
    resolution = _tied_path("resolution")
    assert np.all(np.diff(resolution[1:]) < 0) and resolution[-1] < resolution[0] - 1e3
    inverse_gamma = _tied_path("inverse_gamma")
    assert np.all(np.diff(inverse_gamma) > 0) and inverse_gamma[-1] > inverse_gamma[0] + 100


def test_joint_resolution_floor_counts_rows_tied_on_two_features():
    """``g_j = sqrt(m_j / 2) h_j / sqrt(12)`` with ``m_j`` the largest number of rows sharing
    their values on feature ``j`` and another one (brute force over pairs of columns), 0 where
    no two rows do; frequency weights count as repeated rows, and a row ties on a pair only
    where both cells are observed."""
    from bayesgmm.priors import joint_resolution_floor, resolution_floor

    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 4)) * [1.0, 1.0, 0.3, 5.0]
    X = np.column_stack([np.round(X[:, j], d) for j, d in enumerate([1, 1, 1, 3])])
    X[:, 3] += np.arange(300) * 1e-3  # no ties at all: g = 0 there
    expected = np.zeros(4)
    for j in range(4):
        counts = [
            np.unique(X[:, [j, k]], axis=0, return_counts=True)[1].max() for k in range(4) if k != j
        ]
        steps = np.diff(np.unique(X[:, j]))
        m = max(counts)
        expected[j] = steps.min() / np.sqrt(12) * np.sqrt(m / 2) if m > 1 else 0.0
    got = joint_resolution_floor(X)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[3] == 0.0 < got[:3].min() and np.all(got <= resolution_floor(X) + 1e-15)
    weight = rng.integers(0, 4, size=300).astype(float)
    repeated = np.repeat(X, weight.astype(int), axis=0)
    np.testing.assert_allclose(joint_resolution_floor(X, weight), joint_resolution_floor(repeated))
    missing = X.copy()
    missing[:, 1] = np.nan
    assert joint_resolution_floor(missing)[1] == 0.0
