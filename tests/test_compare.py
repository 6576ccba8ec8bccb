"""The EM-vs-posterior tables, checked against ArviZ on the same posterior."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from bayesgmm import EMGaussianMixture
from bayesgmm.compare import compare, compare_mixture

from ._fake import idata_around


@pytest.fixture(scope="module")
def em(three_clusters):
    return EMGaussianMixture(3, random_state=0).fit(three_clusters.X)


@pytest.fixture(scope="module")
def idata(em, three_clusters):
    return idata_around(em, three_clusters.X, n_draws=300, seed=1)


def test_rows_and_columns(idata):
    table = compare(None, idata, hdi_prob=0.9)
    assert list(table.columns) == [
        "parameter",
        "em",
        "mean",
        "median",
        "sd",
        "hdi_low",
        "hdi_high",
        "em_in_hdi",
        "z",
        "r_hat",
        "ess_bulk",
    ]
    # 3 weights, 3x2 means, 3x2 stds, 3 correlations below the diagonal
    assert len(table) == 3 + 6 + 6 + 3
    assert "means[0, x1]" in set(table["parameter"])
    assert "correlations[2, x1, x0]" in set(table["parameter"])
    assert not table.isna().any().any()


def test_values_equal_arviz(idata):
    table = compare(None, idata, hdi_prob=0.9).set_index("parameter")
    post = idata.posterior.to_dataset()
    hdi = az.hdi(post[["means"]], prob=0.9)["means"]
    np.testing.assert_allclose(
        table.loc["means[1, x0]", "hdi_low"], hdi.sel(component=1, feature="x0", ci_bound="lower")
    )
    np.testing.assert_allclose(
        table.loc["means[1, x0]", "hdi_high"],
        hdi.sel(component=1, feature="x0", ci_bound="upper"),
    )
    draws = post["stds"].sel(component=2, feature="x1").values
    np.testing.assert_allclose(table.loc["stds[2, x1]", "mean"], draws.mean())
    np.testing.assert_allclose(table.loc["stds[2, x1]", "median"], np.median(draws))
    np.testing.assert_allclose(table.loc["stds[2, x1]", "sd"], draws.std(ddof=1))
    np.testing.assert_allclose(
        table.loc["weights[0]", "r_hat"], az.rhat(post[["weights"]])["weights"].sel(component=0)
    )
    np.testing.assert_allclose(
        table.loc["weights[0]", "ess_bulk"], az.ess(post[["weights"]])["weights"].sel(component=0)
    )
    row = table.loc["means[1, x0]"]
    np.testing.assert_allclose(row["z"], (row["em"] - row["mean"]) / row["sd"])
    np.testing.assert_allclose(row["em"], idata.em["means"].sel(component=1, feature="x0"))


def test_em_outside_hdi_is_flagged(em, three_clusters):
    shifted = idata_around(em, three_clusters.X, n_draws=200, mean_shift=6.0, seed=2)
    table = compare(em, shifted).set_index("parameter")
    means = table[table.index.str.startswith("means")]
    assert not means["em_in_hdi"].any()
    assert (means["z"] < -4).all()
    centred_idata = idata_around(em, three_clusters.X, n_draws=200, seed=3)
    centred = compare(em, centred_idata).set_index("parameter")
    assert centred.loc[centred.index.str.startswith("means"), "em_in_hdi"].all()


def test_explicit_em_equals_em_group(em, idata):
    a = compare(em, idata)
    b = compare(None, idata)
    np.testing.assert_allclose(a["em"], b["em"])


def test_mixture_level_summary(em, idata, three_clusters):
    table = compare_mixture(None, idata).set_index("metric")
    em_log_lik = em.score_samples(three_clusters.X).sum()
    np.testing.assert_allclose(table.loc["log_likelihood", "em"], em_log_lik, rtol=1e-10)
    post_ll = idata.log_likelihood["obs"].sum("obs_id")
    np.testing.assert_allclose(table.loc["log_likelihood", "mean"], post_ll.mean())
    np.testing.assert_allclose(table.loc["log_likelihood", "value"], (post_ll < em_log_lik).mean())
    assert table.loc["adjusted_rand_index", "value"] > 0.95
    assert 0 <= table.loc["mean_kl_em_to_posterior", "value"] < 0.05


def test_missing_em_group_and_no_em(idata):
    bare = idata.copy()
    del bare["em"]
    with pytest.raises(ValueError, match="no 'em' group and no em was given"):
        compare(None, bare)


def test_mismatched_em(idata, three_clusters):
    other = EMGaussianMixture(2, random_state=0).fit(three_clusters.X)
    with pytest.raises(ValueError, match=r"2 components.*posterior has 3 components"):
        compare(other, idata)


def test_unfitted_em(idata):
    with pytest.raises(ValueError, match="fitted"):
        compare(EMGaussianMixture(3), idata)


def test_masked_entries_log_nothing(idata, caplog):
    # Symmetric matrix entries are summarised once, without NaN placeholders, so no "NaN"
    # message from ArviZ (logged or warned) ever reaches the user.
    import logging
    import warnings

    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare(None, idata)
    assert not [r for r in caplog.records if "NaN" in r.getMessage()]
    assert not [w for w in caught if "NaN" in str(w.message)]
