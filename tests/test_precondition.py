"""Preconditioning NUTS with the posterior's curvature at its mode (bayesgmm._precondition).

Oracles: a quadratic (whose finite-difference Hessian is exact), central differences of the
whitened density (its gradient), the gradient vanishing at the mode, and the unwhitened path's
results layout. (PyMC's symbolic Hessian of the mixture takes minutes to evaluate: not used.)
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from bayesgmm import EMGaussianMixture, GMMPriors, build_model, load_faithful, sample_posterior
from bayesgmm._logdensity import log_density_for
from bayesgmm._precondition import (
    CAREFUL_TARGET_ACCEPT,
    DEFAULT_TARGET_ACCEPT,
    DEFAULT_TUNE,
    LAPLACE_TUNE,
    Laplace,
    _factor,
    default_target_accept,
    find_mode,
    hessian,
    laplace,
    whitened_density,
)
from bayesgmm.datasets import simulate_mixture
from bayesgmm.sampling import _flat_start, _kernel_compiled


@pytest.fixture(
    scope="module",
    params=[("full", "halfnormal"), ("diag", "halfnormal"), ("full", "inverse_gamma")],
    ids=["full", "diag", "full-inverse_gamma"],
)
def setup(request):
    """A correlated two-component data set, its model, density, EM start and Laplace fit
    (the MAP under either prior on the standard deviations)."""
    sim = simulate_mixture(
        150,
        weights=[0.6, 0.4],
        means=[[0.0, 0.0, 0.0], [4.0, 3.0, -2.0]],
        covariances=[
            [[1.0, 0.9, 0.8], [0.9, 1.0, 0.9], [0.8, 0.9, 1.0]],
            [[0.5, -0.4, 0.0], [-0.4, 0.5, 0.0], [0.0, 0.0, 2.0]],
        ],
        random_state=11,
    )
    X = np.ascontiguousarray(sim.X)
    cov_type, sd_prior = request.param
    em = EMGaussianMixture(2, covariance_type=cov_type, random_state=0).fit(X)
    priors = GMMPriors.from_data(X, sd_prior=sd_prior, n_components=2)
    model = build_model(X, 2, covariance_type=cov_type, priors=priors)
    density = log_density_for(model)
    start = _flat_start(model, em)
    return model, em, density, X, start, laplace(density, X, start)


def test_mode_is_a_stationary_point_above_the_start(setup):
    _, _, density, X, start, approx = setup
    assert approx.kind == "laplace"
    logp, grad = density(approx.mode, X)
    assert logp == pytest.approx(approx.log_density, abs=1e-9)
    assert logp >= density(start, X)[0]
    assert np.abs(grad).max() < 1e-4
    assert approx.n_gradients > 0


def test_the_inverse_gamma_prior_gives_tied_rows_a_mode():
    """60 rows share x2 = 0 (zero-inflated, as Ba in MASS's fgl). Under HalfNormal priors the
    posterior is unbounded there and the search from EM's collapsed fit reaches no stationary
    point; under the inverse-gamma prior on the variances it ends at the MAP, where the tied
    component's sd solves the stationary equation ``s^2 = (2 c^2 + S) / (n_k + 2 a)``, with
    ``n_k = sum_n r_nk`` and ``S = sum_n r_nk (x_n2 - mu_k2)^2`` (about 60 and 0) on the
    standardised scale (responsibilities from SciPy's normal densities)."""
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    tied = np.c_[rng.normal(0.0, 1.0, 60), np.zeros(60)]
    other = np.c_[rng.normal(4.0, 1.0, 60), rng.normal(3.0, 1.0, 60)]
    X = np.ascontiguousarray(np.r_[tied, other])
    with pytest.warns(UserWarning, match="Collapsed component"):
        em = EMGaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    found = {}
    for sd_prior in ("halfnormal", "inverse_gamma"):
        priors = GMMPriors.from_data(X, sd_prior=sd_prior, n_components=2)
        model = build_model(X, 2, covariance_type="diag", priors=priors)
        density = log_density_for(model)
        start = _flat_start(model, em)
        mode, _, _, _ = find_mode(density, X, start)
        found[sd_prior] = (density, mode, np.abs(density(mode, X)[1]).max())
    assert found["halfnormal"][2] > 1.0  # no stationary point
    density, mode, gradient = found["inverse_gamma"]
    assert gradient < 1e-8
    # far above EM's collapsed estimate, and trusted: the density is bounded at ties
    assert density(mode, X)[0] - density(start, X)[0] > density.n_dim
    approx = laplace(density, X, start)
    assert approx.kind == "laplace"
    np.testing.assert_allclose(approx.mode, mode, atol=1e-6)
    post = density.posterior(mode[None, None], model.coords).isel(chain=0, draw=0)
    weights, means, sds = (post[name].values for name in ("weights", "means", "stds"))
    z = density.scaling.transform(X)
    joint = weights * norm.pdf(z[:, None, :], means, sds).prod(axis=2)
    r = joint / joint.sum(axis=1, keepdims=True)
    k = int(np.argmin(sds[:, 1]))
    n_k, spread = r[:, k].sum(), r[:, k] @ (z[:, 1] - means[k, 1]) ** 2
    c_z, a = density.priors.sd_scale[1], density.priors.var_shape
    assert 59.0 < n_k < 61.0
    np.testing.assert_allclose(sds[k, 1] ** 2, (2 * c_z**2 + spread) / (n_k + 2 * a), rtol=1e-8)


def test_hessian_of_a_quadratic_is_exact(rng):
    A = rng.normal(size=(6, 6))
    A = A @ A.T + np.eye(6)
    b = rng.normal(size=6)

    def f(x):
        return -0.5 * x @ A @ x + b @ x, -A @ x + b

    np.testing.assert_allclose(hessian(f, rng.normal(size=6) * 3), -A, rtol=1e-7, atol=1e-7)


def test_factor_inverts_the_curvature_at_the_mode(setup):
    _, _, density, X, _, approx = setup
    H = hessian(lambda x: density(x, X), approx.mode)
    # central differences of the exact gradient against one-sided ones of a smaller step
    i = density.n_dim // 2
    e = np.eye(density.n_dim)[i] * 1e-7
    one_sided = (density(approx.mode + e, X)[1] - density(approx.mode, X)[1]) / 1e-7
    np.testing.assert_allclose(H[:, i], one_sided, rtol=1e-3, atol=1e-4 * np.abs(H).max())
    L = approx.factor
    np.testing.assert_array_equal(L, np.tril(L))
    np.testing.assert_allclose(L.T @ (-H) @ L, np.eye(L.shape[0]), atol=1e-6)


def test_whitened_density_and_its_gradient(setup, rng):
    _, _, density, X, _, approx = setup
    evaluate = whitened_density(density, approx)
    for _ in range(3):
        z = rng.normal(size=density.n_dim)
        value, grad = evaluate(z, X)
        theta = approx.to_theta(z)
        assert value == pytest.approx(density(theta, X)[0], rel=1e-12)
        np.testing.assert_allclose(approx.to_z(theta), z, atol=1e-8)
        h = 1e-6
        numeric = np.array(
            [
                (evaluate(z + h * e, X)[0] - evaluate(z - h * e, X)[0]) / (2 * h)
                for e in np.eye(density.n_dim)
            ]
        )
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5 * np.abs(numeric).max())


class _FarOut:
    """A density whose gradient overflowed (a leapfrog step far out), on weighted rows."""

    _args = ()

    def __call__(self, theta, X):
        return -np.inf, np.array([np.inf, -np.inf, 1.0])


def test_whitened_density_far_out_warns_nothing():
    """NUTS counts a non-finite gradient as a divergence: the whitening adds no RuntimeWarning
    (the rows-with-weights path is numpy, which would warn about inf * 0)."""
    approx = Laplace(np.zeros(3), np.tril(np.ones((3, 3))), "laplace", 0.0, 1.0, 0)
    evaluate = whitened_density(_FarOut(), approx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = evaluate(np.zeros(3), (np.zeros((2, 3)), np.ones(2)))
    assert value == -np.inf
    assert not np.isfinite(grad).all()


def test_kernel_model_starts_at_the_mode_and_keeps_theta(setup, rng):
    model, em, density, X, _, approx = setup
    for native in (True, False):  # the compiled callbacks' expand: test_native.py
        compiled = _kernel_compiled(model, em, density, approx, native=native)
        for seed in (0, 7):
            np.testing.assert_array_equal(compiled._make_initial_points(seed), 0.0)
    z = rng.normal(size=density.n_dim)
    expand = compiled._make_expand_func(0, 0, 0)
    np.testing.assert_allclose(
        expand(z, X=X)["unconstrained_point"], approx.mode + approx.factor @ z, rtol=1e-12
    )


def test_unusable_curvature_falls_back():
    good = np.array([[2.0, 0.5], [0.5, 1.0]])
    factor, kind, condition = _factor(good)
    assert kind == "laplace" and np.isfinite(condition)
    np.testing.assert_allclose(factor @ factor.T, np.linalg.inv(good))
    indefinite = np.array([[2.0, 3.0], [3.0, 1.0]])
    factor, kind, condition = _factor(indefinite)
    assert (kind, condition) == ("diagonal", np.inf)
    np.testing.assert_allclose(factor, np.diag(np.array([2.0, 1.0]) ** -0.5))
    ill = np.diag([1.0, 1e-12])
    assert _factor(ill)[1] == "diagonal"
    assert _factor(np.array([[-1.0, 0.0], [0.0, 1.0]]))[1] == "none"
    assert _factor(np.full((2, 2), np.nan))[1] == "none"


def test_sample_posterior_records_the_precondition_and_keeps_the_layout():
    X = np.asarray(load_faithful())
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    run = dict(draws=30, tune=50, chains=2, random_seed=3, progressbar=False, check=False)
    plain = sample_posterior(model, em, precondition="none", **run)
    whitened = sample_posterior(model, em, **run)  # the default
    assert plain.posterior.attrs["precondition"] == "none"
    assert whitened.posterior.attrs["precondition"] == "laplace"
    assert whitened.posterior.attrs["start"].startswith("posterior mode")
    # tune=None: short tuning on whitened parameters only
    assert (plain.posterior.attrs["tune"], whitened.posterior.attrs["tune"]) == (50, 50)
    short = sample_posterior(model, em, draws=5, chains=1, random_seed=3, progressbar=False)
    assert short.posterior.attrs["tune"] == LAPLACE_TUNE
    long = sample_posterior(model, em, draws=5, chains=1, precondition="none", progressbar=False)
    assert long.posterior.attrs["tune"] == DEFAULT_TUNE
    assert set(plain.children) == set(whitened.children)
    for name, values in plain.posterior.data_vars.items():
        assert whitened.posterior[name].dims == values.dims
        assert whitened.posterior[name].shape == values.shape
    # same posterior region: the whitened draws sit where the unwhitened ones do
    gap = np.abs(whitened.posterior["means"].mean(("chain", "draw")) - em.means_)
    assert np.all(gap.values < 3 * plain.posterior["means"].std(("chain", "draw")).values)


def test_smaller_steps_only_on_an_ill_conditioned_full_laplace():
    def approx(kind, condition):
        return Laplace(np.zeros(2), np.eye(2), kind, 0.0, condition, 0)

    assert default_target_accept(None) == DEFAULT_TARGET_ACCEPT == 0.8
    assert default_target_accept(approx("laplace", 1e3)) == DEFAULT_TARGET_ACCEPT
    assert default_target_accept(approx("laplace", 1e4)) == CAREFUL_TARGET_ACCEPT == 0.9
    # the diagonal fallback's condition (inf: indefinite) says nothing about a ridge
    assert default_target_accept(approx("diagonal", np.inf)) == DEFAULT_TARGET_ACCEPT


def test_near_collinear_data_sample_with_smaller_steps():
    """A feature that is the sum of the others plus 1% noise: a near-singular covariance,
    an ill-conditioned Laplace covariance, and target_accept 0.9 unless one is given."""
    rng = np.random.default_rng(5)
    free = rng.standard_normal((200, 2))
    total = free.sum(axis=1)
    X = np.column_stack([free, total + 0.01 * total.std() * rng.standard_normal(200)])
    em = EMGaussianMixture(1, random_state=0).fit(X)
    model = build_model(X, 1)
    approx = laplace(log_density_for(model), X, _flat_start(model, em))
    assert approx.kind == "laplace" and approx.condition > 5e3
    run = dict(draws=5, tune=5, chains=1, random_seed=3, progressbar=False, check=False)
    assert sample_posterior(model, em, **run).posterior.attrs["target_accept"] == 0.9
    given = sample_posterior(model, em, target_accept=0.85, **run)
    assert given.posterior.attrs["target_accept"] == 0.85
    well = np.asarray(load_faithful())
    em = EMGaussianMixture(2, random_state=0).fit(well)
    plain = sample_posterior(build_model(well, 2), em, **run)
    assert plain.posterior.attrs["target_accept"] == 0.8


def test_bad_precondition_is_refused():
    X = np.asarray(load_faithful())
    em = EMGaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="precondition"):
        sample_posterior(build_model(X, 2), em, precondition="newton", progressbar=False)


@pytest.mark.slow
def test_whitened_and_plain_posteriors_agree_on_faithful():
    """The same posterior within Monte Carlo error (4 x 1000 draws each, fixed seeds)."""
    X = np.asarray(load_faithful())
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    run = dict(random_seed=4, progressbar=False, check=False)
    fits = [sample_posterior(model, em, precondition=p, **run) for p in ("laplace", "none")]
    names = ["weights", "means", "stds", "correlations"]
    a, b = (az.summary(f, var_names=names, kind="all", round_to="none") for f in fits)
    tolerance = 4.0 * np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert (np.abs(a["mean"] - b["mean"]) <= tolerance).all(), a["mean"] - b["mean"]
    np.testing.assert_allclose(a["sd"], b["sd"], rtol=0.1)
    for fit, table in zip(fits, (a, b), strict=True):
        assert int(fit.sample_stats["diverging"].sum()) == 0
        assert float(table["r_hat"].max()) <= 1.01


@pytest.mark.parametrize(("shift", "kind"), [(0.5, "laplace"), (10.0, "none")])
def test_a_mode_far_above_the_start_is_not_trusted(shift, kind):
    """A Gaussian target: the mode and factor are exact when the climb from the start is
    modest; a climb above n_dim (as towards a collapsing component) falls back to the start."""
    scale = np.array([0.5, 1.0, 2.0, 3.0])
    centre = shift * scale

    def density(x, X):
        r = (x - centre) / scale
        return -0.5 * r @ r, -r / scale

    start = np.zeros(4)
    approx = laplace(density, np.empty((0, 1)), start)
    assert approx.kind == kind
    if kind == "laplace":
        np.testing.assert_allclose(approx.mode, centre, atol=1e-6)
        np.testing.assert_allclose(approx.factor, np.diag(scale), atol=1e-5)
    else:
        np.testing.assert_array_equal(approx.mode, start)
        np.testing.assert_array_equal(approx.factor, np.eye(4))


def test_the_approximation_is_the_same_at_every_scale():
    """The model samples on standardised features, so data at 1e-200 give the same mode and
    factor, bit for bit (rounded past the finite differences' rounding noise)."""
    approximations = []
    for scale in (1.0, 1e-200, 1e200):
        X = np.asarray(load_faithful()) * scale
        em = EMGaussianMixture(2, n_init=2, random_state=3).fit(X)
        model = build_model(X, 2)
        data = np.ascontiguousarray(model["X"].get_value(), dtype=np.float64)
        approximations.append(laplace(log_density_for(model), data, _flat_start(model, em)))
    for other in approximations[1:]:
        np.testing.assert_array_equal(other.mode, approximations[0].mode)
        np.testing.assert_array_equal(other.factor, approximations[0].factor)
