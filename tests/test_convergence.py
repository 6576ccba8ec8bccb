"""The vectorised R-hat and ESS give ArviZ's numbers, scalar by scalar, and the gates' table
is ArviZ's summary table."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from arviz_base import rcParams
from arviz_stats.base.array import array_stats
from scipy.stats import rankdata

import bayesgmm._convergence as convergence
from bayesgmm import EMGaussianMixture
from bayesgmm._convergence import _average_ranks, rank_diagnostics
from bayesgmm._idata import flat_values, get_group
from bayesgmm._units import scaling_of, standardised
from bayesgmm.diagnostics import PARAMETERS, parameter_diagnostics, scalar_parameters

from ._fake import idata_around, simulated_data

# ArviZ's summary takes the tail ESS at its default credible-interval probability p (0.89):
# the quantiles 1 - p and p
TAIL = float(rcParams["stats.ci_prob"])


def _arviz(values: np.ndarray) -> dict[str, np.ndarray]:
    """ArviZ's statistics, one scalar at a time (its array interface, ``(P, chain, draw)``)."""
    per_scalar = np.moveaxis(values, 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # (a constant scalar's R-hat: 0/0)
        return {
            "ess_bulk": array_stats.ess(per_scalar, method="bulk"),
            "ess_tail": array_stats.ess(per_scalar, method="tail", prob=TAIL),
            "r_hat": array_stats.rhat(per_scalar),
        }


def _chains(rng, n_chain: int, n_draw: int) -> np.ndarray:
    """Draws of 6 scalars that take every branch of the ESS: independent, AR(1) at 0.5, 0.9,
    0.99 and -0.6 (antithetic: its autocorrelation pairs turn negative at once), and one with
    chains apart (R-hat well above 1)."""
    phi = np.array([0.0, 0.5, 0.9, 0.99, -0.6, 0.3])
    values = np.zeros((n_chain, n_draw, 6))
    values[:, 0] = rng.standard_normal((n_chain, 6))
    for t in range(1, n_draw):
        values[:, t] = phi * values[:, t - 1] + rng.standard_normal((n_chain, 6))
    values[..., 5] += 0.4 * np.arange(n_chain)[:, None]
    return values


@pytest.mark.parametrize(
    "n_chain, n_draw",
    [
        (4, 1000),
        (4, 1001),
        (2, 7),
        (1, 50),
        (3, 4),
        (4, 5),
        (4, 6),
        (8, 300),
        (2, 2),
        (2, 3),
        (4, 12),
        (3, 9),
    ],
)
def test_the_statistics_are_arviz_s_for_every_shape(rng, n_chain, n_draw):
    """Odd draws (the middle one left out by the split), the fewest draws ArviZ accepts and
    one fewer (NaN), one chain (no R-hat), and rounded draws (tied ranks)."""
    values = _chains(rng, n_chain, n_draw)
    for draws in (values, np.round(values * 2) / 2):
        ours, theirs = rank_diagnostics(draws), _arviz(draws)
        for name in theirs:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-10, err_msg=name)


def test_constant_nan_and_infinite_scalars_are_as_arviz_says(rng):
    """A constant scalar has the ESS of every draw and no R-hat; a scalar with a NaN draw has
    no statistic; one with an infinite draw is ranked (ArviZ checks only for NaN); the others
    keep theirs."""
    values = rng.standard_normal((4, 200, 5))
    values[..., 1] = 2.5
    values[2, 17, 2] = np.nan
    values[0, 3, 3] = np.inf
    values[1, 5, 4] = -np.inf
    ours = rank_diagnostics(values)
    kept = [0, 1, 3, 4]
    theirs = _arviz(values[..., kept])
    for name in theirs:
        np.testing.assert_allclose(ours[name][kept], theirs[name], rtol=1e-10, err_msg=name)
        assert np.isnan(ours[name][2]), name
    assert ours["ess_bulk"][1] == 800 and np.isnan(ours["r_hat"][1])
    assert np.isfinite(ours["r_hat"][[3, 4]]).all()


def test_chains_constant_at_different_values_have_infinite_r_hat():
    values = np.zeros((2, 10, 1))
    values[1] = 1.0
    assert np.isinf(_arviz(values)["r_hat"][0]) and np.isinf(rank_diagnostics(values)["r_hat"][0])


def test_geyer_s_truncation_on_exact_zeros_is_arviz_s(monkeypatch):
    """Autocovariances chosen so that pairs of autocorrelations sum to exactly 0 and single
    lags are exactly 0 (9 draws: every step exact in binary): where the sequence stops and
    which last lag it keeps are ArviZ's, scalar by scalar."""
    rng = np.random.default_rng(0)
    n_par, n = 3000, 9
    acov = np.zeros((n_par, 1, n))
    acov[:, 0, 0] = 8.0  # rho_t = 1 - (9 - a_t) / 8
    lags = rng.integers(-9, 12, size=(n_par, n - 1)).astype(float)
    for j in range(0, n - 2, 2):  # a pair sums to 0 when a_even + a_odd = 2
        zero = rng.random(n_par) < 0.3
        lags[zero, j + 1] = 2 - lags[zero, j]
    lags[rng.random((n_par, n - 1)) < 0.1] = 1.0  # rho_t = 0
    acov[:, 0, 1:] = lags
    values = rng.standard_normal((n_par, 1, n))
    monkeypatch.setattr(convergence, "_autocovariance", lambda v: acov)
    ours = convergence._ess(values)
    for p in range(n_par):
        monkeypatch.setattr(array_stats, "autocov", lambda ary, axis=-1, p=p: acov[p].copy())
        assert ours[p] == pytest.approx(array_stats._ess(values[p]), rel=1e-12), p


def test_average_ranks_are_scipy_s(rng):
    rows = np.round(rng.standard_normal((30, 257)) * 3) / 3  # many ties
    np.testing.assert_array_equal(_average_ranks(rows), rankdata(rows, axis=1))


def test_the_gates_table_is_arviz_s_summary(rng):
    """``parameter_diagnostics`` labels and values every scalar as ArviZ's summary does, on a
    posterior of 3 full-covariance components (the standardised scale it judges on)."""
    X = simulated_data(2)
    em = EMGaussianMixture(3, random_state=0, n_init=2).fit(X)
    idata = idata_around(em, X[:30], n_chains=3, n_draws=301, seed=2)
    table = parameter_diagnostics(idata)
    posterior = standardised(get_group(idata, "posterior"), scaling_of(idata))
    reference = az.summary(
        scalar_parameters(posterior, PARAMETERS), kind="diagnostics", round_to="none"
    )
    assert list(table.index) == [i for i in reference.index if i in table.index]  # its order
    reference = reference.loc[table.index, ["ess_bulk", "ess_tail", "r_hat"]]
    assert len(table) >= 3 * (1 + 2 + 3) - 1  # weights (one constant sum), means, covariances
    np.testing.assert_allclose(table[reference.columns], reference, rtol=1e-10)
    assert list(table.columns) == ["ess_bulk", "ess_tail", "r_hat"]


def test_flat_values_label_every_entry_as_arviz_does():
    """Coordinates of strings and numbers, a dim without coordinates, a 0-d variable and the
    ``pair`` labels of covariances, in each variable's C order: as ArviZ's iterator labels
    and orders them."""
    from arviz_base import xarray_var_iter
    from arviz_base.labels import BaseLabeller

    rng = np.random.default_rng(3)
    dataset = xr.Dataset(
        {
            "means": (("component", "feature"), rng.normal(size=(2, 3))),
            "covariances": (("component", "pair"), rng.normal(size=(2, 2))),
            "free": (("slot",), rng.normal(size=4)),
            "scale": ((), 1.5),
        },
        coords={"component": [0, 1], "feature": ["a", "b", "c"], "pair": ["a, a", "b, a"]},
    )
    labeller = BaseLabeller()
    reference = pd.Series(
        {
            labeller.make_label_flat(var, sel, isel): float(value)
            for var, sel, isel, value in xarray_var_iter(dataset, combined=True)
        }
    )
    assert flat_values(dataset).equals(reference)


def test_the_gates_table_leaves_out_constant_and_nan_entries():
    """A scalar constant over every draw has no R-hat or ESS, one with a NaN draw none at
    all: neither is a row; their neighbours are."""
    X = simulated_data(2)
    em = EMGaussianMixture(3, random_state=0, n_init=2).fit(X)
    idata = idata_around(em, X[:30], n_chains=3, n_draws=60, seed=2)
    means = get_group(idata, "posterior")["means"].values
    means[:, :, 0, 0] = 0.25
    means[1, 7, 1, 1] = np.nan
    table = parameter_diagnostics(idata)
    assert "means[0, x0]" not in table.index and "means[1, x1]" not in table.index
    assert {"means[0, x1]", "means[1, x0]"} <= set(table.index)
    assert table.notna().any(axis=1).all()
