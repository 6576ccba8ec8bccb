"""The mode search when the start sits on a likelihood singularity (bayesgmm._precondition).

Oracles: closed forms. A Gaussian target times ``|x_0|^-c`` has a singularity at ``x_0 = 0``
(no stationary point near it, like a component collapsing along a direction few rows see)
and a mode of known place and curvature away from it; a search that climbs into the
singularity must not be trusted, and the second start must find the mode.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
from sklearn.datasets import load_wine

from bayesgmm import EMGaussianMixture, SamplerError, build_model, sample_posterior
from bayesgmm._logdensity import log_density_for
from bayesgmm._precondition import RETRY_FLOOR, laplace
from bayesgmm.model import default_priors, observed_rows
from bayesgmm.sampling import _flat_start, _kernel_start
from bayesgmm.start import em_initial_values

SCALE = np.array([1.0, 0.5, 2.0] + [1.0] * 57)  # 60 dimensions: a climb below n_dim
CENTRE, POWER = 4.0, 0.05


def _density(x, X):
    """Gaussian around (4, 0, ...) times |x_0|^-0.05."""
    r = (x - np.r_[CENTRE, np.zeros(x.size - 1)]) / SCALE
    grad = -r / SCALE
    grad[0] -= POWER / x[0]
    return -0.5 * r @ r - POWER * np.log(abs(x[0])), grad


def _mode_and_sd():
    """The mode of x_0 (root of -(x - 4) - 0.05 / x = 0 above 2) and sd from its curvature."""
    x0 = 2.0 + np.sqrt(4.0 - POWER)
    return x0, 1.0 / np.sqrt(1.0 - POWER / x0**2)


def test_a_search_into_a_singularity_is_not_trusted():
    start = np.r_[1e-3, np.ones(SCALE.size - 1)]
    approx = laplace(_density, np.empty((0, 1)), start)
    assert approx.kind == "none" and not approx.retried
    np.testing.assert_array_equal(approx.mode, start)


def test_the_retry_start_finds_the_mode_and_its_curvature():
    start = np.r_[1e-3, np.ones(SCALE.size - 1)]
    retry = np.r_[3.0, np.zeros(SCALE.size - 1)]
    approx = laplace(_density, np.empty((0, 1)), start, retry=lambda: retry)
    assert approx.kind == "laplace" and approx.retried
    x0, sd0 = _mode_and_sd()
    np.testing.assert_allclose(approx.mode, np.r_[x0, np.zeros(SCALE.size - 1)], atol=1e-8)
    np.testing.assert_allclose(np.diag(approx.factor), np.r_[sd0, SCALE[1:]], rtol=1e-6)
    np.testing.assert_allclose(approx.factor, np.diag(np.diag(approx.factor)), atol=1e-6)


def test_no_retry_when_the_first_search_succeeds():
    start = np.r_[3.5, np.ones(SCALE.size - 1)]

    def retry():
        raise AssertionError("the second start was asked for")

    approx = laplace(_density, np.empty((0, 1)), start, retry=retry)
    assert approx.kind == "laplace" and not approx.retried
    assert approx.mode[0] == pytest.approx(_mode_and_sd()[0], abs=1e-8)


def _two_basins(narrow_height: float):
    """Two Gaussian bumps far apart: at 0 narrow along x_1 (sd 1e-3, condition 1e6) with log
    height ``narrow_height``; at (20, 20) round, log height 0."""
    a, sa = np.zeros(2), np.array([1.0, 1e-3])
    b, sb = np.full(2, 20.0), np.ones(2)

    def density(x, X):
        ra, rb = (x - a) / sa, (x - b) / sb
        la, lb = narrow_height - 0.5 * ra @ ra, -0.5 * rb @ rb
        top = max(la, lb)
        wa, wb = np.exp(la - top), np.exp(lb - top)
        grad = (wa * -ra / sa + wb * -rb / sb) / (wa + wb)
        return top + np.log(wa + wb), grad

    return density, a, b


@pytest.mark.parametrize(
    ("narrow_height", "moves"),
    [(-3.0, True), (3.0, True), (10.0, False)],  # its log mass: height + log(1e-3) + log(2 pi)
)
def test_a_mode_on_a_narrow_ridge_is_compared_with_the_retry_start(narrow_height, moves):
    """The search from the start ends at a mode on a narrow ridge (condition 1e6, as a
    component the prior bounds at the rounding noise): the retry start is searched too, and
    its mode is kept only where its Laplace mass is higher. At height 3 the narrow bump is
    higher but holds exp(3 - 6.91) of the round one's mass: the search moves."""
    density, a, b = _two_basins(narrow_height)
    approx = laplace(density, np.empty((0, 1)), a, retry=lambda: b)
    assert approx.kind == "laplace" and approx.retried == moves
    np.testing.assert_allclose(approx.mode, b if moves else a, atol=1e-6)
    assert (approx.condition < 10) == moves


def test_log_mass_of_a_gaussian_is_its_normalising_constant():
    """Closed form: exp(h) N(x; mu, S) unnormalised at height h has mass
    h + (d/2) log 2 pi + (1/2) log det S."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + 4 * np.eye(4)
    precision, mu, h = np.linalg.inv(cov), rng.normal(size=4), 1.7

    def density(x, X):
        r = x - mu
        return h - 0.5 * r @ precision @ r, -precision @ r

    approx = laplace(density, np.empty((0, 1)), np.zeros(4))
    expected = h + 2.0 * np.log(2.0 * np.pi) + 0.5 * np.linalg.slogdet(cov)[1]
    assert approx.log_mass == pytest.approx(expected, abs=1e-6)


def test_a_well_conditioned_mode_is_kept_without_the_retry():
    density, _, b = _two_basins(0.0)

    def retry():
        raise AssertionError("the second start was asked for")

    approx = laplace(density, np.empty((0, 1)), b, retry=retry)
    assert approx.kind == "laplace" and not approx.retried


def test_floor_raises_the_standardised_eigenvalues_only():
    X = np.asarray(load_wine().data)[:, :4]
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    plain, floored = em_initial_values(model, em), em_initial_values(model, em, floor=0.5)
    np.testing.assert_array_equal(plain["means_z"], floored["means_z"])
    for k in range(2):
        values, before = (
            np.linalg.eigvalsh(_covariance(v[f"chol_cov_{k}"])) for v in (floored, plain)
        )
        assert before.min() < 0.5  # the floor changes something
        np.testing.assert_allclose(values, np.maximum(before, 0.5), rtol=1e-10)


def _covariance(packed: np.ndarray) -> np.ndarray:
    """The covariance of a Cholesky factor packed row by row (PyMC's LKJCholeskyCov)."""
    d = int((np.sqrt(8 * packed.size + 1) - 1) / 2)
    chol = np.zeros((d, d))
    chol[np.tril_indices(d)] = packed
    return chol @ chol.T


@pytest.mark.slow
def test_wine_with_missing_cells_from_a_collapsing_em_fit():
    """Issue 15: EM (this seed) ends on the singularity missing cells allow (a component's
    covariance collapses along a direction only its few complete rows see). With a barrier on
    each standard deviation alone the search from it finds no mode and the one from the
    floored start does (at EM's partition); with the default prior's barrier on each variance
    given the others (wine's values tie jointly) the search from EM ends at a bounded spike
    (condition ~2e5, 3.6 nats lower), so the floored start is searched too and its mode
    kept."""
    X = np.asarray(load_wine().data).copy()
    X[np.random.default_rng(3).random(X.shape) < 0.15] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em = EMGaussianMixture(3, tol=1e-6, max_iter=1000, random_state=2).fit(X)
    assert not em.converged_  # still climbing the singularity
    default = build_model(X, 3)
    alone = build_model(X, 3, priors=replace(default_priors(X), sd_floor_given_others=0.0))
    for model, spike in ((alone, False), (default, True)):
        density = log_density_for(model)
        rows = density.rows(*observed_rows(model))
        start = _flat_start(model, em)
        first = laplace(density, rows, start)
        assert first.kind == ("laplace" if spike else "none")
        assert not spike or first.condition > 1e5
        floored = _flat_start(model, em, RETRY_FLOOR)
        approx = laplace(density, rows, start, retry=lambda floored=floored: floored)
        assert approx.kind == "laplace" and approx.retried and approx.condition < 1e4
        assert np.abs(density(approx.mode, rows)[1]).max() < 1e-6
        assert not spike or approx.log_density > first.log_density + 1.0


def test_an_end_where_the_gradient_does_not_vanish_is_not_trusted():
    """The gradient disagrees with the value (a stand-in for a search stopped short): the
    Hessian is negative definite and the climb small, so only stationarity catches it."""

    def density(x, X):
        return -0.5 * x @ x, -x + 1.0

    approx = laplace(density, np.empty((0, 1)), np.zeros(4))
    assert approx.kind == "none"


def _split_on_a_binary_feature():
    """A 0/1 column EM splits the rows on: every component collapses onto one of its values
    (variance at reg_covar, correlation exactly 0), so no healthy component lends a covariance
    to the start (sklearn's diabetes data, whose second column is sex, at K = 2)."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=120), rng.integers(0, 2, size=120)]).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em = EMGaussianMixture(2, random_state=0).fit(X)
    assert sorted(em.collapsed_components_) == [0, 1]
    return X, em


def test_a_start_on_every_component_collapsed_is_floored():
    X, em = _split_on_a_binary_feature()
    model = build_model(X, 2)
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    assert np.any(density(_flat_start(model, em), rows)[1] == 0)  # nutpie cannot start there
    start, floored = _kernel_start(density, model, em, rows)
    assert floored
    np.testing.assert_array_equal(start, _flat_start(model, em, RETRY_FLOOR))
    logp, grad = density(start, rows)
    assert np.isfinite(logp) and np.all(np.isfinite(grad)) and np.all(grad != 0)


def test_a_start_nutpie_can_use_is_em_itself():
    X = np.asarray(load_wine().data)[:, :3]
    em = EMGaussianMixture(2, random_state=0).fit(X)
    model = build_model(X, 2)
    density = log_density_for(model)
    start, floored = _kernel_start(density, model, em, density.rows(*observed_rows(model)))
    assert not floored
    np.testing.assert_array_equal(start, _flat_start(model, em))


def _sample_split(draws: int, chains: int, **options) -> object:
    """The posterior of the binary split, sampled quietly with follow-ups off."""
    X, em = _split_on_a_binary_feature()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sample_posterior(
            build_model(X, 2),
            em,
            draws=draws,
            tune=draws,
            chains=chains,
            max_draws=draws,
            random_seed=1,
            progressbar=False,
            **options,
        )


def test_a_posterior_of_a_split_on_a_binary_feature_is_sampled():
    """The floored start's mode search finds the posterior's mode (the resolution prior
    bounds the variance along the 0/1 column); before, sampling refused to start."""
    idata = _sample_split(100, 2)
    attrs = idata.posterior.attrs
    assert attrs["precondition"] == "laplace" and "floored at 0.01" in attrs["start"]
    sds = idata.posterior["stds"].sel(feature="x1").values
    assert np.all(np.isfinite(sds)) and sds.min() > 0.01  # off the collapse, at rounding noise


def test_unwhitened_chains_from_the_floored_start_say_so():
    attrs = _sample_split(20, 1, precondition="none").posterior.attrs
    assert attrs["precondition"] == "none"
    floored = "EM estimate with its covariances' eigenvalues floored at 0.01, no jitter"
    assert attrs["start"] == floored


def _duplicated(em: EMGaussianMixture) -> EMGaussianMixture:
    """A one-component fit as two identical halves: a stationary point of the likelihood
    whose density has an exactly zero slope along the weights (MASS michelson, K = 2: one
    of the distinct EM optima the chains were to start from)."""
    twin = EMGaussianMixture(2, random_state=0).fit(em.sample(200)[0])
    twin.weights_ = np.array([0.5, 0.5])
    twin.means_ = np.repeat(em.means_, 2, axis=0)
    twin.covariances_ = np.repeat(em.covariances_, 2, axis=0)
    twin.precisions_cholesky_ = np.repeat(em.precisions_cholesky_, 2, axis=0)
    return twin


def test_an_optimum_where_sampling_cannot_start_is_dropped_not_fatal():
    X = np.asarray(load_wine().data)[:, :2]
    em = EMGaussianMixture(2, random_state=0).fit(X)
    other = EMGaussianMixture(2, covariance_type="full", init_params="random", random_state=3).fit(
        X
    )
    dup = _duplicated(EMGaussianMixture(1, random_state=0).fit(X))
    model = build_model(X, 2)
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    assert np.any(density(_flat_start(model, dup), rows)[1] == 0)  # nutpie cannot start there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = sample_posterior(
            model, em, starts=[other, dup], draws=20, tune=20, chains=2, max_draws=20,
            random_seed=1, progressbar=False,
        )  # fmt: skip
    attrs = idata.posterior.attrs
    assert json.loads(attrs["starts_dropped"]) == [
        [1, "the posterior density there is flat in some direction"]
    ]
    assert attrs["start"].startswith("2 distinct EM optima")
    assert set(idata.sample_stats["start"].values.tolist()) == {0, 1}  # EM and the usable one
    with pytest.raises(SamplerError, match="cannot start at the EM estimate"):
        sample_posterior(model, dup, draws=20, tune=20, chains=1, progressbar=False)
