"""Sampling from the EM start: the start itself, the results layout, relabelling, warnings.

One small nutpie run (shared by the module) keeps the suite fast; statistical checks of the
posterior are in test_posterior_slow.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from bayesgmm import (
    BayesianGMM,
    CompileCache,
    EMGaussianMixture,
    GMMPriors,
    SamplingWarning,
    build_model,
    diagnostics,
    sample_posterior,
)
from bayesgmm import _gaussian as g
from bayesgmm._idata import get_attr
from bayesgmm._logdensity import log_density_for
from bayesgmm.alignment import apply_permutations, match_to_reference
from bayesgmm.datasets import simulate_mixture
from bayesgmm.model import observed_rows
from bayesgmm.sampling import _compiled_nutpie, _flat_start
from bayesgmm.start import em_initial_point

# short runs that fall short of the gates and say so: no follow-up runs (max_draws=draws)
SMALL = dict(draws=150, tune=150, chains=2, progressbar=False, max_draws=150)


@pytest.fixture(scope="module")
def data():
    sim = simulate_mixture(
        120,
        weights=[0.6, 0.4],
        means=[[0.0, 0.0], [5.0, 3.0]],
        covariances=[[[1.0, 0.3], [0.3, 1.0]], [[0.6, 0.0], [0.0, 0.8]]],
        random_state=7,
    )
    return sim.X


@pytest.fixture(scope="module")
def cache():
    return CompileCache()


@pytest.fixture(scope="module")
def fitted(data, cache):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        bgmm = BayesianGMM(2, random_seed=3, compile_cache=cache, **SMALL).fit(data)
    return bgmm, caught


def test_nutpie_chains_start_at_em(data, cache):
    em = EMGaussianMixture(2, random_state=0).fit(data)
    model = build_model(data, 2)
    compiled = _compiled_nutpie(model, em, "jax", cache)
    expected = _flat_start(model, em)
    for seed in (0, 1, 12345):
        np.testing.assert_array_equal(compiled._make_initial_points(seed), expected)
    # the flat vector decodes to the EM estimate through the model's own transforms
    point, start = {}, 0
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        size = int(np.prod(model.initial_point()[value.name].shape))
        point[value.name] = expected[start : start + size].reshape(
            model.initial_point()[value.name].shape
        )
        start += size
    (weights, means) = model.replace_rvs_by_values([model["weights"], model["means"]])
    fn = model.compile_fn([weights, means], inputs=model.value_vars, on_unused_input="ignore")
    got_weights, got_means = fn(point)
    np.testing.assert_allclose(got_weights, em.weights_, rtol=1e-9)
    np.testing.assert_allclose(got_means, em.means_, rtol=1e-12)


def test_inference_data_layout(fitted, data):
    bgmm, _ = fitted
    idata = bgmm.idata_
    assert set(idata.children) >= {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "em",
    }
    post = idata.posterior
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariances"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 150
    assert not any(name.endswith("__") for name in post.data_vars)
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "obs_id")
    np.testing.assert_array_equal(idata.observed_data["obs"].values, data)
    em = idata.em
    np.testing.assert_allclose(em["means"].values, bgmm.em_.means_)
    diff = post["covariances"] - em["covariances"]
    assert diff.dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert idata.sample_stats["label_permutation"].dims == ("chain", "draw", "component")
    attrs = post.attrs
    assert attrs["sampler"] == "nutpie" and attrs["random_seed"] == 3
    assert GMMPriors.from_json(attrs["priors"]) == bgmm.priors_
    assert "pymc" in attrs["versions"]
    perm = idata.sample_stats["label_permutation"].values
    moved = (perm != np.arange(2)).any(axis=-1).sum(axis=1)  # relabelled draws per chain
    assert get_attr(idata, "relabelled_draws_per_chain") == moved.tolist()


def test_pointwise_log_likelihood_matches_scipy(fitted, data):
    """The stored pointwise log-likelihood is the mixture density at each draw (SciPy oracle)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    bgmm, _ = fitted
    for chain, draw in [(0, 0), (1, 17), (1, 149)]:
        post = bgmm.idata_.posterior.isel(chain=chain, draw=draw)
        w, mu, cov = (post[v].values for v in ("weights", "means", "covariances"))
        dens = [np.log(w[k]) + multivariate_normal(mu[k], cov[k]).logpdf(data) for k in range(2)]
        stored = bgmm.idata_.log_likelihood["obs"].isel(chain=chain, draw=draw).values
        np.testing.assert_allclose(stored, logsumexp(np.stack(dens), axis=0), rtol=1e-10)


def test_short_run_warns_and_still_returns(fitted):
    bgmm, caught = fitted
    messages = [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]
    assert messages, "300 draws cannot reach ESS 400: a SamplingWarning is expected"
    assert "ess_bulk" in messages[0] and "increase draws" in messages[0]
    table = bgmm.diagnostics()
    assert list(table["check"]) == ["divergences", "r_hat", "ess_bulk", "ess_tail", "bfmi"]
    assert not table.set_index("check").loc["ess_bulk", "passed"]
    assert bgmm.idata_.posterior.sizes["draw"] == 150


def test_real_posterior_scrambled_is_restored(fitted, rng):
    bgmm, _ = fitted
    post = bgmm.idata_.posterior
    scramble = np.stack([np.stack([rng.permutation(2) for _ in range(150)]) for _ in range(2)])
    scrambled = apply_permutations(post, scramble)
    em = bgmm.idata_.em
    perm = match_to_reference(
        scrambled["means"].values,
        scrambled["covariances"].values,
        em["means"].values,
        em["covariances"].values,
    )
    xr.testing.assert_identical(apply_permutations(scrambled, perm), post)


def test_memberships_from_the_fit(fitted, data):
    bgmm, _ = fitted
    proba, low, high = bgmm.predict_proba(return_interval=True, hdi_prob=0.9)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)
    # a skewed membership distribution may have its mean outside its HDI: check the bounds only
    assert np.all(0 <= low) and np.all(low <= high) and np.all(high <= 1)
    agreement = np.mean(bgmm.predict() == bgmm.em_.predict(data))
    assert agreement > 0.95
    co = bgmm.co_clustering()
    assert co.shape == (120, 120)
    # Jensen: E[sum_k r_nk^2] >= sum_k E[r_nk]^2 on the diagonal, with equality only without
    # posterior uncertainty; the full matrix against a SciPy oracle over every draw
    assert np.all(np.diag(co.values) >= (proba**2).sum(axis=1) - 1e-12)
    np.testing.assert_allclose(co.values, _co_clustering_oracle(bgmm.idata_, data), atol=1e-10)


def _co_clustering_oracle(idata, X):
    from scipy.special import softmax
    from scipy.stats import multivariate_normal

    post = idata.posterior.to_dataset().stack(sample=("chain", "draw"))
    total = np.zeros((len(X), len(X)))
    for s in range(post.sizes["sample"]):
        draw = post.isel(sample=s)
        w, mu, cov = (draw[v].values for v in ("weights", "means", "covariances"))
        log_dens = [
            np.log(w[k]) + multivariate_normal(mu[k], cov[k]).logpdf(X) for k in range(len(w))
        ]
        resp = softmax(np.stack(log_dens, axis=1), axis=1)
        total += resp @ resp.T
    return total / post.sizes["sample"]


def test_compile_cache_reuses_model_with_new_data(data, cache):
    import pymc as pm

    em = EMGaussianMixture(2, random_state=0).fit(data)
    model = build_model(data, 2)
    first = _compiled_nutpie(model, em, "jax", cache)
    shifted = data + 1.0
    with model:
        pm.set_data({"X": shifted})
    em2 = EMGaussianMixture(2, random_state=0).fit(shifted)
    second = _compiled_nutpie(model, em2, "jax", cache)
    assert second._make_logp_func is first._make_logp_func  # the same compiled function
    np.testing.assert_array_equal(second._shared_data["X"], shifted)
    np.testing.assert_array_equal(second._make_initial_points(0), _flat_start(model, em2))


def test_same_model_sampled_twice_without_cache(data):
    # nutpie 0.16 wrote the transformed variables' default dims into the model, and a second
    # compilation of that model failed with "Unknown dimension size".
    em = EMGaussianMixture(2, random_state=0).fit(data)
    model = build_model(data, 2)
    dims = dict(model.named_vars_to_dims)
    _compiled_nutpie(model, em, "jax", None)
    assert dict(model.named_vars_to_dims) == dims
    run = dict(draws=20, tune=20, chains=1, progressbar=False, check=False)
    first = sample_posterior(model, em, random_seed=0, **run)
    second = sample_posterior(model, em, random_seed=1, **run)
    assert first.posterior.sizes["draw"] == second.posterior.sizes["draw"] == 20


def test_unseeded_run_records_its_seed_and_priors(data, cache):
    em = EMGaussianMixture(2, random_state=0).fit(data)
    model = build_model(data, 2)
    run = dict(draws=15, tune=15, chains=1, progressbar=False, check=False, compile_cache=cache)
    first = sample_posterior(model, em, **run)
    seed = first.posterior.attrs["random_seed"]
    again = sample_posterior(model, em, random_seed=seed, **run)
    xr.testing.assert_equal(first.posterior["means"], again.posterior["means"])
    assert GMMPriors.from_json(first.posterior.attrs["priors"]) == GMMPriors.from_data(data)


def test_pymc_sampler_path_gives_the_same_layout(data):
    """sampler="pymc": every group of the nutpie path, the pointwise log-likelihood included."""
    em = EMGaussianMixture(2, random_state=0).fit(data)
    idata = sample_posterior(
        build_model(data, 2),
        em,
        sampler="pymc",
        draws=10,
        tune=10,
        chains=1,
        random_seed=2,
        progressbar=False,
        check=False,
    )
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "em"):
        assert group in idata.children, group
    assert idata.log_likelihood["obs"].dims == ("chain", "draw", "obs_id")
    np.testing.assert_array_equal(idata.observed_data["obs"].values, data)
    assert idata.posterior.attrs["sampler"] == "pymc"
    assert idata.posterior.attrs["backend"] == "pymc-c"
    assert idata.sample_stats["label_permutation"].dims == ("chain", "draw", "component")
    post = idata.posterior.isel(chain=0, draw=0)
    chol = g.precision_cholesky(post["covariances"].values, "full")
    expected, _ = g.log_responsibilities(
        data, post["weights"].values, post["means"].values, chol, "full"
    )
    np.testing.assert_allclose(idata.log_likelihood["obs"].values[0, 0], expected, rtol=1e-10)


def test_pymc_sampler_starts_every_chain_at_em(data, monkeypatch):
    """PyMC 6 hands models to nutpie unless told otherwise, and its default init jitters the
    start: the initial points PyMC's own NUTS actually uses are the EM start, in every chain."""
    import pymc.sampling.mcmc as mcmc

    captured = {}
    init_nuts = mcmc.init_nuts

    def spy(*args, **kwargs):
        captured["points"], step = init_nuts(*args, **kwargs)
        return captured["points"], step

    monkeypatch.setattr(mcmc, "init_nuts", spy)
    em = EMGaussianMixture(2, random_state=0).fit(data)
    model = build_model(data, 2)
    run = dict(draws=5, tune=5, chains=2, progressbar=False, check=False)
    sample_posterior(model, em, sampler="pymc", random_seed=4, **run)
    expected = em_initial_point(model, em)
    assert len(captured["points"]) == 2
    for point in captured["points"]:
        assert point.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_allclose(point[name], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "metropolis"}, "sampler.*'nutpie', 'pymc'"),
        ({"draws": 0}, "draws"),
        ({"target_accept": 1.5}, "target_accept"),
        ({"backend": "torch"}, "backend"),
    ],
)
def test_bad_sampling_arguments(data, kwargs, match):
    em = EMGaussianMixture(2, random_state=0).fit(data)
    with pytest.raises(ValueError, match=match):
        sample_posterior(build_model(data, 2), em, **kwargs)


def test_bayesian_gmm_rejects_mismatched_em(data):
    em = EMGaussianMixture(3, random_state=0).fit(data)
    with pytest.raises(ValueError, match="3 components"):
        BayesianGMM(2, **SMALL).fit(data, em=em)


def test_diagnostics_requires_fit():
    with pytest.raises(ValueError, match="not fitted"):
        BayesianGMM(2).diagnostics()


def test_diagnostics_function_on_idata(fitted):
    bgmm, _ = fitted
    table = diagnostics(bgmm.idata_).set_index("check")
    divergent = int(bgmm.idata_.sample_stats["diverging"].sum())
    assert table.loc["divergences", "value"] == divergent
    assert table.loc["divergences", "passed"] == (divergent == 0)


def test_collapsed_em_component_still_starts_sampling(rng):
    """One far point makes EM collapse a component onto it; NUTS must still start (and the
    collapsed component starts from a broadened covariance, not the reg_covar floor)."""
    from bayesgmm import CollapsedComponentWarning
    from bayesgmm import _gaussian as g
    from bayesgmm.model import model_spec
    from bayesgmm.start import em_initial_values

    X = np.vstack([rng.normal(size=(60, 2)), [[12.0, 12.0]]])
    with pytest.warns(CollapsedComponentWarning):
        em = EMGaussianMixture(2, random_state=0).fit(X)
    (k,) = em.collapsed_components_
    model = build_model(X, 2)
    values = em_initial_values(model, em)
    start_cov = g.unpack_cholesky(values[f"chol_cov_{k}"], 2)  # on the standardised scale
    scale = model_spec(model).scaling.scale
    start_cov = start_cov @ start_cov.T * np.outer(scale, scale)
    np.testing.assert_allclose(start_cov, em.covariances_[1 - k], rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        idata = sample_posterior(
            model, em, draws=30, tune=30, chains=2, random_seed=0, progressbar=False
        )
    assert idata.posterior.sizes["draw"] == 30


def test_summary_has_each_parameter_once(fitted):
    bgmm, _ = fitted
    table = bgmm.summary()
    k, d = 2, bgmm.em_.n_features_in_
    assert len(table) == k + k * d + k * d * (d + 1) // 2  # one covariance triangle each
    post = bgmm.idata_.posterior
    assert table.loc["weights[1]", "mean"] == pytest.approx(float(post["weights"][..., 1].mean()))
    lower = [name for name in table.index if name.startswith("covariances[0")]
    assert len(lower) == d * (d + 1) // 2
    assert {"hdi_low", "hdi_high", "r_hat", "ess_bulk"} <= set(table.columns)


def test_the_gil_switch_interval_is_short_while_sampling_and_restored(data, monkeypatch):
    """nutpie's chains take the GIL back after every kernel call; the main thread's own Python
    must hand it over within 0.1 ms, not CPython's 5 ms (bayesgmm.sampling._responsive_gil).
    The interval is process-wide, so it is restored, also when sampling fails."""
    import sys

    import bayesgmm.sampling as sampling

    seen = []

    def failing(*args, **kwargs):
        seen.append(sys.getswitchinterval())
        raise RuntimeError("stop here")

    monkeypatch.setattr(sampling, "_sample", failing)
    before = sys.getswitchinterval()
    em = EMGaussianMixture(2, random_state=0).fit(data)
    with pytest.raises(RuntimeError, match="stop here"):
        sample_posterior(build_model(data, 2), em, random_seed=1, progressbar=False)
    assert seen == [pytest.approx(min(1e-4, before))]
    assert sys.getswitchinterval() == before
    with sampling._responsive_gil(1e-3):  # a shorter interval set by the user is kept
        with sampling._responsive_gil(1e-2):
            assert sys.getswitchinterval() == pytest.approx(1e-3)
    assert sys.getswitchinterval() == before


def test_a_run_computes_each_results_diagnostics_once(data, cache, monkeypatch):
    """sample_posterior judges its results in the independence step's check and in the final
    warning: ArviZ's R-hat and ESS of one results object are computed once."""
    import importlib

    module = importlib.import_module("bayesgmm.diagnostics")
    computed = []
    compute = module._parameter_diagnostics
    monkeypatch.setattr(
        module, "_parameter_diagnostics", lambda idata: computed.append(id(idata)) or compute(idata)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        BayesianGMM(2, random_seed=3, compile_cache=cache, **SMALL).fit(data)
    assert computed and len(computed) == len(set(computed))


@pytest.mark.parametrize("precondition", ["laplace", "none"])
def test_two_components_start_where_the_weights_slope_is_exactly_zero(precondition):
    """Two clusters of 20 rows each, 15 standard deviations apart: every responsibility is 0
    or 1 to rounding, EM's weights are exactly 1/2 and 1/2, where the symmetric Dirichlet
    prior is flat too, so the slope along the weights is exactly 0, also with the covariances
    floored (the clusters are wider than the floor), and nutpie could not start (SBC's
    simulation 42 at seed 2 failed so: 50 and 50 rows); the chains start a step off it."""
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 15.0])
    em = EMGaussianMixture(2, random_state=0).fit(X)
    assert np.array_equal(em.weights_, [0.5, 0.5])
    idata = _sampled_from_a_flat_start(X, em, "full", precondition)
    weights = idata.posterior["weights"].mean(("chain", "draw")).values
    np.testing.assert_allclose(weights, 0.5, atol=0.1)


def _sampled_from_a_flat_start(X, em, covariance_type: str, precondition: str):
    """Sampling from ``em``, whose density has an exactly zero slope (asserted) as nutpie
    would see it: 30 draws of 2 chains."""
    model = build_model(X, em.n_components, covariance_type=covariance_type)
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    assert np.any(density(_flat_start(model, em), rows)[1] == 0)  # as nutpie would see it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        idata = sample_posterior(
            model, em, draws=30, tune=30, chains=2, random_seed=0, progressbar=False,
            precondition=precondition,
        )  # fmt: skip
    assert idata.posterior.sizes["draw"] == 30
    return idata


@pytest.mark.parametrize("precondition", ["laplace", "none"])
def test_one_component_starts_where_a_slope_is_exactly_zero(precondition):
    """Every column sums to exactly zero (rows in +/- pairs): with one component, EM's mean
    and the posterior mode sit exactly on the data's mean, where the means' prior is centred
    too, so the slope along some mean is exactly 0 there and nutpie could not start (R's
    swiss, a diagonal covariance, failed so); the chains start a step off it."""
    half = np.random.default_rng(0).normal(size=(30, 3)) * [1.0, 2.0, 0.5]
    X = np.empty((60, 3))
    X[0::2], X[1::2] = half, -half
    em = EMGaussianMixture(1, covariance_type="diag", random_state=0).fit(X)
    idata = _sampled_from_a_flat_start(X, em, "diag", precondition)
    np.testing.assert_allclose(idata.posterior["means"].mean(("chain", "draw")), 0.0, atol=0.5)
