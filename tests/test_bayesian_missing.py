"""BayesianGMM on rows with missing cells and frequency weights: every row is sampled on.

Small draws and fixed seeds; the log density these fits sample is checked against PyMC and
SciPy in ``test_model_missing.py`` and ``test_logdensity_missing.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bayesgmm import BayesianGMM
from bayesgmm.datasets import load_faithful
from bayesgmm.model import model_spec


@pytest.fixture(scope="module")
def holes() -> np.ndarray:
    X = load_faithful().to_numpy().astype(float)
    X[np.random.default_rng(1).random(X.shape) < 0.15] = np.nan
    return X[~np.isnan(X).all(axis=1)]


def _small(**kw) -> BayesianGMM:
    return BayesianGMM(2, draws=60, tune=60, chains=2, random_seed=3, progressbar=False, **kw)


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


def test_bad_weights_are_refused_before_any_work(holes, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("EM started")

    monkeypatch.setattr("bayesgmm.em.EMGaussianMixture._fit", started)
    with pytest.raises(ValueError, match="sample_weight has 1 negative"):
        _small().fit(holes, sample_weight=np.r_[-1.0, np.ones(holes.shape[0] - 1)])
