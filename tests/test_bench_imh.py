"""The independence Metropolis-Hastings prototype of benchmarks/imh_refine.py samples a known
bimodal target exactly: each mode's mass and the target's mean and spread, within Monte Carlo
error, from a proposal fitted to draws that saw the modes in the wrong proportions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from .conftest import benchmark_script


@pytest.fixture(scope="module")
def imh():
    return benchmark_script("imh_refine")


# two correlated Gaussian modes, 70% / 30%, 3-D: exact mean, mode masses
_MEANS = np.array([[0.0, 0.0, 0.0], [4.0, -3.0, 1.0]])
_COV = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
_MASS = np.array([0.7, 0.3])


def _log_p(x: np.ndarray) -> float:
    parts = [
        np.log(m) + multivariate_normal(mu, _COV).logpdf(x)
        for m, mu in zip(_MASS, _MEANS, strict=True)
    ]
    return float(logsumexp(parts))


def test_independence_chains_recover_a_bimodal_target(imh):
    rng = np.random.default_rng(3)
    # "first run" draws with the modes in the wrong proportions (50/50) and too narrow
    seen = np.concatenate([rng.multivariate_normal(mu, 0.6 * _COV, size=400) for mu in _MEANS])
    proposal = imh.Proposal(seen, components=2, inflate=1.5, seed=0)
    draws, acceptance = imh.independence_chain(_log_p, proposal, seen[0], 20000, rng)
    assert 0.2 < acceptance < 1.0
    in_second = draws[:, 0] > 2.0
    # mode 2's mass: 0.3; a standard error below 0.01 at this acceptance
    assert abs(in_second.mean() - _MASS[1]) < 0.04
    exact_mean = _MASS @ _MEANS
    np.testing.assert_allclose(draws.mean(axis=0), exact_mean, atol=0.2)
    np.testing.assert_allclose(draws[~in_second].std(axis=0), np.sqrt(np.diag(_COV)), rtol=0.1)
