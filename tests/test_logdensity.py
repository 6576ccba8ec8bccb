"""The E-step kernel's log density (backend="kernel") against PyMC's own model.

The oracle is the PyMC model itself: its compiled ``logp`` and ``dlogp`` (with the Jacobians of
the transforms) on the same unconstrained vector, and its variables computed from the same
draws. A second check runs nutpie on both backends from the same seed.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from bayesgmm import EMGaussianMixture, GMMPriors, build_model, sample_posterior
from bayesgmm._logdensity import log_density_for
from bayesgmm._models import model_name
from bayesgmm._units import to_data_units
from bayesgmm.datasets import load_faithful, simulate_mixture
from bayesgmm.model import observed_rows
from bayesgmm.sampling import _flat_start, _kernel_compiled, resolve_backend

# PyMC's graphs evaluated by PyTensor's Python linker: the same oracle, without compiling C
PYTHON = "FAST_COMPILE"


def _split(model: pm.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """nutpie's flat vector as PyMC's point (value variables in free_RVs order)."""
    point, start = {}, 0
    for rv in model.free_RVs:
        name = model.rvs_to_values[rv].name
        shape = model.initial_point()[name].shape
        size = int(np.prod(shape))
        point[name] = x[start : start + size].reshape(shape)
        start += size
    assert start == x.size
    return point


def _data(n_features: int, rng: np.random.Generator, shift: float = 0.0) -> np.ndarray:
    scales = np.array([1.0, 5.0, 0.2])[:n_features]
    return rng.normal(size=(90, n_features)) * scales + 3.0 + shift


CASES = [
    ("full", 1, 2, GMMPriors(weights_concentration=1.0, lkj_eta=2.0)),
    ("full", 2, 1, GMMPriors(weights_concentration=0.5, lkj_eta=1.0)),
    ("full", 2, 3, GMMPriors(weights_concentration=3.0, lkj_eta=1.0)),
    ("full", 3, 2, GMMPriors(weights_concentration=1.0, lkj_eta=4.0, sd_scale=(2.0, 0.5))),
    ("diag", 1, 3, GMMPriors()),
    ("diag", 3, 2, GMMPriors(weights_concentration=0.7, means_loc=(1.0, -1.0))),
    ("EEE", 3, 3, GMMPriors(weights_concentration=2.0, lkj_eta=3.0, sd_scale=(2.0, 4.0, 0.5))),
    ("tied", 1, 2, GMMPriors()),
    ("EEE", 2, 1, GMMPriors()),  # built as EEI
    ("EEI", 3, 3, GMMPriors(weights_concentration=0.7, sd_scale=(1.0, 3.0, 0.3))),
    ("EEI", 1, 2, GMMPriors()),
    ("VII", 3, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3))),
    ("spherical", 2, 1, GMMPriors()),
    ("EII", 3, 3, GMMPriors(weights_concentration=1.5, sd_scale=(1.0, 3.0, 0.3))),
    ("EII", 1, 2, GMMPriors()),
]
# the inverse-gamma prior on the variances, in every family (and the one-feature builds)
IG = {"sd_prior": "inverse_gamma"}
CASES += [
    ("full", 2, 3, GMMPriors(lkj_eta=1.5, sd_scale=(2.0, 0.5, 1.0), var_shape=2.5, **IG)),
    ("full", 1, 2, GMMPriors(**IG)),
    ("full", 2, 1, GMMPriors(sd_scale=0.3, **IG)),  # built as VVI
    ("EEE", 3, 3, GMMPriors(lkj_eta=3.0, sd_scale=(2.0, 4.0, 0.5), var_shape=0.8, **IG)),
    ("diag", 3, 2, GMMPriors(sd_scale=(0.4, 1.5), **IG)),
    ("EEI", 3, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3), var_shape=4.0, **IG)),
    ("VII", 3, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3), **IG)),
    ("EII", 2, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3), var_shape=2.0, **IG)),
]
# the HalfNormal with a barrier at the rounding noise, some features without one (f = 0), and
# for VVV / EEE the barrier on each variance given the others (g, the potential); the LKJ builds
# compile for 2-5 s: the full one runs in the fast suite (the potential is math of its own),
# EEE's with the slow tests (the kernel's LKJ term uses the same b1 and b2 terms the fast
# diagonal cases and LKJ cases check)
RES = {"sd_prior": "resolution"}
CASES += [
    (
        "full",
        2,
        2,
        GMMPriors(
            lkj_eta=1.5,
            sd_scale=(2.0, 0.5),
            sd_floor=(0.3, 0.0),
            sd_floor_given_others=(0.4, 0.2),
            **RES,
        ),
    ),
    ("full", 2, 1, GMMPriors(sd_scale=0.3, sd_floor=0.2, **RES)),  # built as VVI
    pytest.param(
        "EEE",
        3,
        2,
        GMMPriors(
            sd_scale=(2.0, 4.0), sd_floor=(0.0, 1.0), sd_floor_given_others=(0.0, 0.8), **RES
        ),
        marks=pytest.mark.slow,
    ),
    ("diag", 3, 2, GMMPriors(sd_scale=(0.4, 1.5), sd_floor=(0.2, 0.4), **RES)),
    ("EEI", 3, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3), sd_floor=(0.0, 0.6, 0.1), **RES)),
    ("VII", 3, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3), sd_floor=(0.3, 0.0, 0.1), **RES)),
    ("EII", 2, 3, GMMPriors(sd_scale=(1.0, 3.0, 0.3), sd_floor=0.4, **RES)),
]


def assert_equals_pymc(model, density, data, rng, *, points: int, spread: float) -> None:
    """The kernel's value and gradient on ``data`` are PyMC's compiled ``logp`` and ``dlogp``
    of ``model`` at ``points`` random unconstrained vectors (normal, sd ``spread``)."""
    logp = model.compile_logp(jacobian=True, mode=PYTHON)
    dlogp = model.compile_dlogp(jacobian=True, mode=PYTHON)
    for _ in range(points):
        x = rng.normal(size=density.n_dim) * spread
        value, grad = density(x, data)
        point = _split(model, x)
        np.testing.assert_allclose(value, logp(point), rtol=1e-11)
        expected = dlogp(point)
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize(("cov_type", "k", "d", "priors"), CASES)
def test_value_and_gradient_equal_pymc(cov_type, k, d, priors, rng):
    X = _data(d, rng)
    model = build_model(X, k, priors=priors, covariance_type=cov_type)
    density = log_density_for(model)
    assert density is not None
    floored = max(priors.sd_floor_given_others) > 0 and model_name(cov_type) in ("VVV", "EEE")
    assert [p.name for p in model.potentials] == (["conditional_floor"] if floored else [])
    assert_equals_pymc(model, density, X, rng, points=4, spread=0.7)


def test_the_barrier_given_the_others_equals_pymc_with_missing_cells_and_weights(rng):
    """The potential on the path of rows with missing cells and frequency weights (the same
    prior code, other likelihood statistics)."""
    X = _data(3, rng)
    X[rng.random(X.shape) < 0.2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 3.0
    weights = rng.integers(1, 4, size=X.shape[0]).astype(float)
    priors = GMMPriors(
        means_loc=3.0,
        sd_scale=(1.0, 5.0, 0.2),
        sd_floor=(0.1, 0.0, 0.02),
        sd_floor_given_others=(0.3, 0.5, 0.01),
        **RES,
    )
    model = build_model(X, 2, priors=priors, sample_weight=weights)
    density = log_density_for(model)
    assert [p.name for p in model.potentials] == ["conditional_floor"]
    rows = density.rows(*observed_rows(model))
    assert_equals_pymc(model, density, rows, rng, points=3, spread=0.7)


def test_value_and_gradient_at_the_em_mode_of_offset_data(rng):
    """Data a million units from the origin: the kernel's moments are about the means, so the
    gradient at the EM start keeps its precision (it nearly vanishes there: a tough case)."""
    sim = simulate_mixture(
        300,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [4.0, 4.0]],
        covariances=[np.eye(2), np.eye(2)],
        random_state=3,
    )
    X = sim.X + 1e6
    model = build_model(X, 2)
    em = EMGaussianMixture(2, random_state=0).fit(X)
    x = _flat_start(model, em)
    value, grad = log_density_for(model)(x, X)
    point = _split(model, x)
    np.testing.assert_allclose(
        value, model.compile_logp(jacobian=True, mode=PYTHON)(point), rtol=1e-12
    )
    expected = model.compile_dlogp(jacobian=True, mode=PYTHON)(point)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("cov_type", ["full", "diag", "EEE", "EEI", "VII", "EII"])
def test_posterior_variables_equal_pymc(cov_type, rng):
    """The kernel path's standardised parameters, in the data's units, are the PyMC model's
    deterministics at the same unconstrained points."""
    X = _data(3, rng)
    model = build_model(X, 2, covariance_type=cov_type)
    density = log_density_for(model)
    draws = rng.normal(size=(2, 5, density.n_dim)) * 0.5
    posterior = to_data_units(density.posterior(draws, model.coords), density.scaling)
    names = ["weights", "means", "covariances", "stds"]
    if cov_type in ("full", "EEE"):
        names += ["correlations"]
    assert sorted(posterior.data_vars) == sorted(names)
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    fn = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore", mode=PYTHON)
    for chain, draw in [(0, 0), (1, 3)]:
        expected = fn(_split(model, draws[chain, draw]))
        for name, value in zip(names, expected, strict=True):
            got = posterior[name].isel(chain=chain, draw=draw).values
            np.testing.assert_allclose(got, value, rtol=1e-12, err_msg=name)
    for name in ("weights", "means", "covariances", "stds"):
        assert posterior[name].dims[2:] == model.named_vars_to_dims[name]


def test_a_changed_model_is_not_evaluated_by_the_kernel():
    X = np.asarray(load_faithful())
    model = build_model(X, 2)
    assert resolve_backend(model, "auto") == "kernel"
    with model:
        pm.Potential("penalty", -((model["means"][0, 0] - 2.0) ** 2))
    assert log_density_for(model) is None
    assert resolve_backend(model, "auto") == "jax"
    with pytest.raises(ValueError, match="backend='jax'"):
        resolve_backend(model, "kernel")
    em = EMGaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="build_model makes"):
        sample_posterior(model, em, backend="kernel", progressbar=False)
    # the default samples the changed model through PyMC's graph, penalty included
    run = dict(draws=30, tune=30, chains=1, random_seed=0, progressbar=False, check=False)
    idata = sample_posterior(model, em, **run)
    assert idata.posterior.attrs["backend"] == "jax"
    assert idata.posterior.sizes["draw"] == 30


@pytest.mark.parametrize(
    ("cov_type", "sd_prior"),
    [("full", "halfnormal"), ("diag", "halfnormal"), ("full", "inverse_gamma")],
)
def test_kernel_and_jax_backends_draw_the_same_chain(cov_type, sd_prior):
    """Same model, start and seed: nutpie takes the same steps whichever backend evaluates the
    density, and both produce the same results layout."""
    X = np.asarray(load_faithful())
    em = EMGaussianMixture(2, covariance_type=cov_type, random_state=0).fit(X)
    priors = GMMPriors.from_data(X, sd_prior=sd_prior, n_components=2)
    model = build_model(X, 2, covariance_type=cov_type, priors=priors)
    run = dict(draws=40, tune=60, chains=2, random_seed=5, progressbar=False, check=False)
    run["precondition"] = "none"  # the kernel unwhitened, as the graph is sampled
    kernel = sample_posterior(model, em, max_draws=40, **run)  # (the first run: no follow-up)
    jax = sample_posterior(model, em, backend="jax", **run)
    assert kernel.posterior.attrs["backend"] == "kernel"
    assert jax.posterior.attrs["backend"] == "jax"
    assert set(kernel.children) == set(jax.children)
    assert set(kernel.posterior.data_vars) == set(jax.posterior.data_vars)
    # The two densities agree to rounding (1e-15), so NUTS takes the same number of steps at
    # (nearly) every iteration and the chains stay coupled. Trajectories amplify the rounding
    # differences chaotically: most chains agree to 1e-6 after 100 iterations, but on PyMC
    # 6.4 / JAX 0.12 the warm-up of one chain here ended with step sizes 4e-4 apart, and its
    # draws then stayed within 2.2% of the posterior's spread. Another density, another start
    # or another seed would differ by the spread itself.
    for name, values in jax.posterior.data_vars.items():
        assert kernel.posterior[name].dims == values.dims, name
        spread = values.std(("chain", "draw")).values
        gap = np.abs(kernel.posterior[name] - values).max(("chain", "draw")).values
        assert np.all(gap <= 0.05 * spread + 1e-12), name
    same_steps = kernel.sample_stats["n_steps"].values == jax.sample_stats["n_steps"].values
    assert same_steps.mean() >= 0.95


@pytest.mark.parametrize("cov_type", ["full", "diag", "EEE", "VII"])
@pytest.mark.parametrize("value", [800.0, -800.0, 1e300, -1e300, np.inf, np.nan])
def test_extreme_points_give_a_non_finite_density_not_an_error(cov_type, value):
    """A leapfrog step can land anywhere: the density must come back non-finite (nutpie then
    records a divergence), never raise (which would stop every chain)."""
    X = np.ascontiguousarray(load_faithful().to_numpy(), dtype=np.float64)
    density = log_density_for(build_model(X, 2, covariance_type=cov_type))
    for position in (0, 3, density.n_dim - 1):  # a weight, a mean, a scale
        x = np.zeros(density.n_dim)
        x[position] = value
        logp, grad = density(x, X)
        assert grad.shape == (density.n_dim,)
        if np.isfinite(logp):  # e.g. a vanishing scale: that component explains no row
            assert np.all(np.isfinite(grad))


def test_kernel_path_starts_every_chain_at_em():
    """nutpie asks the start function once per chain with a seed: it must return the EM
    estimate, unjittered, whatever the seed, and that point decodes to EM's parameters."""
    X = np.asarray(load_faithful())
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    density = log_density_for(model)
    compiled = _kernel_compiled(model, em, density)
    expected = _flat_start(model, em)
    for seed in (0, 1, 12345):
        np.testing.assert_array_equal(compiled._make_initial_points(seed), expected)
    start = to_data_units(density.posterior(expected[None, None, :], model.coords), density.scaling)
    np.testing.assert_allclose(start["weights"].values[0, 0], em.weights_, rtol=1e-9)
    np.testing.assert_allclose(start["means"].values[0, 0], em.means_, rtol=1e-12)
    np.testing.assert_allclose(start["covariances"].values[0, 0], em.covariances_, rtol=1e-9)
