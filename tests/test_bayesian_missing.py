"""BayesianGMM on rows with missing cells and frequency weights: every row is sampled on.

Small draws and fixed seeds; the log density these fits sample is checked against PyMC and
SciPy in ``test_model_missing.py`` and ``test_logdensity_missing.py``.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import multivariate_normal

from bayesgmm import BayesianGMM
from bayesgmm._idata import loo
from bayesgmm._logdensity import log_density_for
from bayesgmm._logdensity_missing import Rows
from bayesgmm.datasets import load_faithful, simulate_mixture
from bayesgmm.model import model_spec, observed_rows


@pytest.fixture(scope="module")
def holes() -> np.ndarray:
    X = load_faithful().to_numpy().astype(float)
    X[np.random.default_rng(1).random(X.shape) < 0.15] = np.nan
    return X[~np.isnan(X).all(axis=1)]


def _small(**kw) -> BayesianGMM:
    settings = dict(draws=60, tune=60, chains=2, random_seed=3, progressbar=False) | kw
    return BayesianGMM(2, **settings)


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_kernel_fit_uses_every_row_with_missing_cells(holes):
    fit = _small().fit(holes)
    spec = model_spec(fit.model_)
    np.testing.assert_array_equal(spec.missing, np.isnan(holes))
    log_lik = fit.idata_.log_likelihood["obs"]
    assert log_lik.sizes["obs_id"] == holes.shape[0]
    assert np.isfinite(log_lik.values).all()
    np.testing.assert_array_equal(fit.idata_.observed_data["obs"].values, holes)
    means = fit.idata_.posterior["means"].mean(("chain", "draw")).values
    # EM on the same rows (with missing cells) is the posterior's start and near its centre
    np.testing.assert_allclose(np.sort(means[:, 1]), np.sort(fit.em_.means_[:, 1]), rtol=0.03)
    assert fit.idata_.posterior.attrs["backend"] == "kernel"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # unweighted: no warning about weights
        loo(fit.idata_)


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_pymc_sampler_fits_rows_with_missing_cells(holes):
    """PyMC's own NUTS on the PyMC graph (per-pattern constants), one chain in-process."""
    rows = holes[::4]
    fit = BayesianGMM(
        2, draws=30, tune=30, chains=1, sampler="pymc", random_seed=2, progressbar=False
    ).fit(rows)
    posterior = fit.idata_.posterior
    assert np.isfinite(posterior["means"].values).all()
    assert fit.idata_.log_likelihood["obs"].sizes["obs_id"] == rows.shape[0]


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_weighted_fit_keeps_one_log_likelihood_entry_per_row(holes):
    weight = np.random.default_rng(0).integers(1, 4, size=holes.shape[0])
    fit = _small(max_starts=1).fit(holes, sample_weight=weight)
    np.testing.assert_array_equal(model_spec(fit.model_).sample_weight, weight)
    assert fit.idata_.log_likelihood["obs"].sizes["obs_id"] == holes.shape[0]


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_weighted_fit_pickled_or_saved_rebuilds_the_weighted_model(holes, tmp_path):
    """The model rebuilt after pickling or loading has the fit's weights (its log density at
    a point equals the original model's), and pickling leaves the original's model alone."""
    weight = np.random.default_rng(0).integers(0, 4, size=holes.shape[0]).astype(float)
    weight[:2] = 1.0
    fit = _small(max_starts=1, draws=20, tune=20).fit(holes, sample_weight=weight)
    model = fit.model_
    point = model.initial_point()
    expected = model.compile_logp()(point)
    copy = pickle.loads(pickle.dumps(fit))
    assert fit.model_ is model
    fit.save(tmp_path / "fit.nc")
    for other in (copy, BayesianGMM.load(tmp_path / "fit.nc")):
        np.testing.assert_array_equal(model_spec(other.model_).sample_weight, weight)
        np.testing.assert_array_equal(model_spec(other.model_).missing, np.isnan(holes))
        assert other.model_.compile_logp()(point) == pytest.approx(expected, rel=1e-12)
    # LOO sums one term per row: not the repeated rows' elpd, and it says so
    with pytest.warns(UserWarning, match="LOO counts each row once, not by its sample_weight"):
        loo(fit.idata_)


def test_bad_weights_are_refused_before_any_work(holes, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("EM started")

    monkeypatch.setattr("bayesgmm.em.EMGaussianMixture._fit", started)
    with pytest.raises(ValueError, match="sample_weight has 1 negative"):
        _small().fit(holes, sample_weight=np.r_[-1.0, np.ones(holes.shape[0] - 1)])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_integer_weights_give_the_posterior_of_repeated_rows():
    """Posterior means and standard deviations of every parameter agree within Monte Carlo
    error (4 combined MCSE)."""
    sim = simulate_mixture(
        120,
        weights=[0.6, 0.4],
        means=[[0.0, 0.0], [5.0, 1.0]],
        covariances=[np.eye(2), [[1.0, 0.5], [0.5, 1.5]]],
        random_state=4,
    )
    X = sim.X.copy()
    X[np.random.default_rng(5).random(X.shape) < 0.1] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    counts = np.random.default_rng(6).integers(1, 4, size=X.shape[0])
    settings = dict(draws=500, tune=300, chains=2, random_seed=8, progressbar=False)
    summaries = [
        BayesianGMM(2, **settings).fit(X, sample_weight=counts).summary(),
        BayesianGMM(2, **settings).fit(np.repeat(X, counts, axis=0)).summary(),
    ]
    a, b = (s.loc[s.index.str.match(r"(weights|means|stds)\[")] for s in summaries)
    bound = 4 * np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert (np.abs(a["mean"] - b["mean"]) < bound).all(), pd.concat([a["mean"], b["mean"]], axis=1)
    bound = 4 * np.hypot(a["mcse_sd"], b["mcse_sd"])  # the weights' share: narrower posteriors
    assert (np.abs(a["sd"] - b["sd"]) < bound).all(), pd.concat([a["sd"], b["sd"]], axis=1)


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_rounded_rows_are_sampled_collapsed_and_scored_per_original_row():
    X = load_faithful().to_numpy()
    X[:, 0] = np.round(X[:, 0], 1)  # eruptions to 0.1 minute: 209 unique rows of 272
    fit = _small(max_starts=1).fit(X)
    model = fit.model_
    rows = log_density_for(model).rows(*observed_rows(model))
    assert isinstance(rows, Rows) and rows.data.rows.shape[0] == 209
    log_lik = fit.idata_.log_likelihood["obs"]
    assert log_lik.sizes["obs_id"] == X.shape[0]
    # duplicate rows: equal pointwise log-likelihoods, entry by entry
    _, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    first = np.flatnonzero(inverse.ravel() == np.argmax(counts))
    assert first.size > 1
    values = log_lik.isel(obs_id=first).values
    np.testing.assert_array_equal(values, np.broadcast_to(values[..., :1], values.shape))


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_memberships_of_rows_with_missing_cells_use_their_observed_entries(holes):
    """Posterior mean membership against SciPy: each draw's responsibilities from the
    densities of the observed entries, averaged over draws."""
    fit = _small(max_starts=1, draws=20).fit(holes)
    probability = fit.membership()["probability"].values
    post = fit.idata_.posterior.to_dataset().stack(sample=("chain", "draw"))
    w, mu, cov = (post[n].values for n in ("weights", "means", "covariances"))
    for i in np.flatnonzero(np.isnan(holes).any(axis=1))[:5]:
        o = ~np.isnan(holes[i])
        resp = np.zeros(2)
        for s in range(w.shape[-1]):
            dens = np.array(
                [
                    w[k, s]
                    * multivariate_normal(mu[k, o, s], cov[k][np.ix_(o, o)][..., s]).pdf(
                        holes[i, o]
                    )
                    for k in range(2)
                ]
            )
            resp += dens / dens.sum()
        np.testing.assert_allclose(probability[i], resp / w.shape[-1], rtol=1e-8)
    assert np.isfinite(probability).all()
    labels = fit.predict()
    np.testing.assert_array_equal(labels, np.argmax(probability, axis=1))
    # new rows with missing cells: the same memberships as those rows in the training data
    np.testing.assert_allclose(fit.predict_proba(holes[:12]), probability[:12], rtol=1e-12)
    np.testing.assert_array_equal(fit.predict(holes[:12]), labels[:12])
    empty = fit.predict_proba(np.full((1, 2), np.nan))  # nothing observed: the mixing weights
    np.testing.assert_allclose(empty[0], w.mean(axis=-1), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_compare_mixture_scores_rows_with_missing_cells_by_their_observed_entries(holes):
    """EM's side of compare_mixture as EM scores and labels the rows (by the density of
    their observed cells): the complete-data density gave every such row NaN, a log-likelihood
    'value' of 0, an empty 'em' cell and label 0 (R's airquality: ARI 0.32 for 0.92)."""
    from sklearn.metrics import adjusted_rand_score

    fit = _small(max_starts=1, draws=20).fit(holes)
    table = fit.compare_mixture().set_index("metric")
    em_log_lik = fit.em_.score(holes) * holes.shape[0]
    assert table.loc["log_likelihood", "em"] == pytest.approx(em_log_lik, rel=1e-10)
    em_labels, labels = fit.em_.predict(holes), fit.predict()
    assert table.loc["label_agreement", "value"] == pytest.approx(np.mean(em_labels == labels))
    ari = adjusted_rand_score(em_labels, labels)
    assert table.loc["adjusted_rand_index", "value"] == pytest.approx(ari)
    assert np.isfinite(table["value"]).all()


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_a_weighted_fit_rebuilds_its_weighted_model_after_pickling(holes, tmp_path):
    weight = np.random.default_rng(0).integers(1, 4, size=holes.shape[0]).astype(float)
    fit = _small(max_starts=1, draws=20, tune=20).fit(holes, sample_weight=weight)
    np.testing.assert_array_equal(fit.idata_.observed_data["sample_weight"].values, weight)
    again = pickle.loads(pickle.dumps(fit))
    spec = model_spec(again.model_)
    np.testing.assert_array_equal(spec.sample_weight, weight)
    np.testing.assert_array_equal(spec.missing, np.isnan(holes))
    path = tmp_path / "fit.nc"
    fit.save(path)
    loaded = BayesianGMM.load(path)
    np.testing.assert_array_equal(model_spec(loaded.model_).sample_weight, weight)


def test_rows_with_nothing_observed_are_counted_in_one_warning(holes, monkeypatch):
    """EM and the model both leave such rows out; the user hears it once (was twice)."""
    empty = xr.DataTree.from_dict({"posterior": xr.Dataset()})  # sampling is not the point
    monkeypatch.setattr("bayesgmm.bayesian.sample_posterior", lambda *args, **kwargs: empty)
    X = np.vstack([holes[:60], np.full((2, 2), np.nan)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = _small(max_starts=1).fit(X)
    empty = [w for w in caught if "every feature missing" in str(w.message)]
    assert len(empty) == 1 and str(empty[0].message).startswith("2 row(s)")
    assert empty[0].filename == __file__  # pointed at the user's call
    assert model_spec(fit.model_).missing.shape[0] == 60
