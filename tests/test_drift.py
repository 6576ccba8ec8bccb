"""Chains that leave the mode they were whitened at, and their second run (bayesgmm._drift).

Oracles: the Laplace approximation's own distribution of ``log p`` (``log p(mode) - chi2_n /
2`` for draws from it), draws from a known Gaussian (their mean and covariance), and the layout
of the results when chains are replaced.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesgmm._drift import LEFT_MODE_SDS, chain_modes, left_mode, replace_chains, restart_points
from bayesgmm._idata import new_tree
from bayesgmm._precondition import Laplace


def _chi2_logp(rng, mode: float, n_dim: int, shape: tuple[int, int]) -> np.ndarray:
    """``log p`` of draws from the Laplace approximation itself."""
    return mode - 0.5 * rng.chisquare(n_dim, size=shape)


@pytest.mark.parametrize("n_dim", [11, 83])
def test_draws_of_the_approximation_stay_and_a_lower_region_is_left(rng, n_dim):
    logp = _chi2_logp(rng, -100.0, n_dim, (4, 400))
    assert not left_mode(logp, [-100.0] * 4, n_dim).any()
    sd = np.sqrt(0.5 * n_dim)
    lower = logp.copy()
    lower[2] -= (LEFT_MODE_SDS + 0.5) * sd  # this chain sits lower than any draw of the mode
    assert left_mode(lower, [-100.0] * 4, n_dim).tolist() == [False, False, True, False]
    slightly = logp - (LEFT_MODE_SDS - 0.5) * sd  # a shift within the margin is not judged
    assert not left_mode(slightly, [-100.0] * 4, n_dim).any()


def test_only_the_second_half_is_judged(rng):
    """A chain that came back to the mode during its draws has not left it."""
    logp = _chi2_logp(rng, 0.0, 20, (1, 200))
    logp[0, :100] -= 100.0
    assert not left_mode(logp, [0.0], 20).any()
    assert left_mode(logp[:, ::-1], [0.0], 20).all()


def test_restart_points_are_the_draws_mean_and_covariance(rng):
    n_dim = 3
    covariance = np.array([[2.0, 0.9, 0.0], [0.9, 1.0, -0.3], [0.0, -0.3, 0.5]])
    mean = np.array([1.0, -2.0, 0.5])
    draws = rng.multivariate_normal(mean, covariance, size=(2, 4000))
    draws[1] += 10.0  # the second chain is elsewhere: its own point
    first, second = restart_points(draws)
    assert first.kind == "draws"
    np.testing.assert_allclose(first.mode, mean, atol=0.1)
    np.testing.assert_allclose(second.mode, mean + 10.0, atol=0.1)
    np.testing.assert_allclose(first.factor @ first.factor.T, covariance, atol=0.1)
    assert np.allclose(first.factor, np.tril(first.factor))
    assert restart_points(draws[:, :4])[0].factor.shape == (n_dim, n_dim)  # few draws: usable


def _tree(n_chains: int, fill: float, start: bool) -> xr.DataTree:
    chain, draw = np.arange(n_chains), np.arange(5)
    posterior = xr.Dataset(
        {"x": (("chain", "draw"), np.full((n_chains, 5), fill))},
        coords={"chain": chain, "draw": draw},
    )
    stats = xr.Dataset(
        {"logp": (("chain", "draw"), np.full((n_chains, 5), fill))},
        coords={"chain": chain, "draw": draw},
    )
    if start:
        stats["start"] = ("chain", np.arange(n_chains) % 2)
    return new_tree({"posterior": posterior, "sample_stats": stats})


def test_replaced_chains_keep_their_place_and_start():
    out = replace_chains(_tree(4, 0.0, True), {1: _tree(1, 1.0, False), 3: _tree(1, 3.0, False)})
    x = out["posterior"]["x"].values
    assert x.shape == (4, 5)
    assert x[:, 0].tolist() == [0.0, 1.0, 0.0, 3.0]
    assert out["sample_stats"]["start"].values.tolist() == [0, 1, 0, 1]
    assert out["posterior"]["chain"].values.tolist() == [0, 1, 2, 3]


def test_chain_modes_follow_each_chains_start():
    approx = [
        Laplace(np.zeros(1), np.eye(1), "laplace", -5.0, 1.0, 0),
        None,
    ]
    assert chain_modes(_tree(4, 0.0, False), approx) == [-5.0] * 4
    modes = chain_modes(_tree(4, 0.0, True), approx)
    assert modes[0] == modes[2] == -5.0 and np.isnan(modes[1]) and np.isnan(modes[3])
