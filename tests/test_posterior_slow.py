"""Statistical checks of the posterior (minutes): run with `make test-slow`."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from bayesgmm import BayesianGMM, SamplingWarning, load_faithful, simulate_mixture
from bayesgmm.alignment import apply_permutations, match_to_reference

pytestmark = pytest.mark.slow

TRUTH = dict(
    weights=[0.5, 0.3, 0.2],
    means=[[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]],
    covariances=[
        [[1.0, 0.3], [0.3, 1.0]],
        [[0.5, 0.0], [0.0, 1.5]],
        [[1.0, -0.4], [-0.4, 0.8]],
    ],
)


def _fit(X, k, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplingWarning)  # the gates must hold: no warning
        return BayesianGMM(k, random_seed=2, progressbar=False, **kwargs).fit(X)


def _assert_gates(fit):
    table = fit.diagnostics().set_index("check")
    assert table["passed"].all(), table


def test_well_separated_simulation_converges_and_covers_truth():
    sim = simulate_mixture(500, **TRUTH, random_state=5)
    fit = _fit(sim.X, 3)
    _assert_gates(fit)
    post = fit.idata_.posterior.to_dataset()
    truth_cov = np.asarray(TRUTH["covariances"])
    # relabel to the truth (EM's labels are arbitrary)
    perm = match_to_reference(
        post["means"].values, post["covariances"].values, np.asarray(TRUTH["means"]), truth_cov
    )
    aligned = apply_permutations(post, perm)
    hdi = az.hdi(aligned[["weights", "means"]], prob=0.94)
    w, m = np.asarray(TRUTH["weights"]), np.asarray(TRUTH["means"])
    low, high = {"ci_bound": "lower"}, {"ci_bound": "upper"}
    assert np.all((hdi["weights"].sel(low) <= w) & (w <= hdi["weights"].sel(high)))
    assert np.all((hdi["means"].sel(low) <= m) & (m <= hdi["means"].sel(high)))


def test_old_faithful_two_components_em_inside_hdi():
    fit = _fit(load_faithful(), 2)
    _assert_gates(fit)
    table = fit.compare(hdi_prob=0.94)
    assert table["em_in_hdi"].all(), table[~table["em_in_hdi"]]
    assert int(fit.idata_.sample_stats["diverging"].sum()) == 0


def test_nutpie_and_pymc_agree_within_monte_carlo_error():
    X = load_faithful()
    a = _fit(X, 2, sampler="nutpie")
    b = _fit(X, 2, sampler="pymc")
    names = ["weights", "means", "stds"]
    sa = az.summary(a.idata_, var_names=names, kind="all", round_to="none")
    sb = az.summary(b.idata_, var_names=names, kind="all", round_to="none")
    tolerance = 4.0 * np.sqrt(sa["mcse_mean"] ** 2 + sb["mcse_mean"] ** 2)
    assert (np.abs(sa["mean"] - sb["mean"]) <= tolerance).all(), sa["mean"] - sb["mean"]
    # the sd agrees too (a looser check: its Monte Carlo error is larger)
    np.testing.assert_allclose(sa["sd"], sb["sd"], rtol=0.1)
