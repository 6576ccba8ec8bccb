"""The Bayesian covariance models EEE, EEI, VII and EII end to end, on data with known truth.

Each model is sampled (short runs, fixed seeds) on data simulated from that model, whose two
features differ in spread 10-fold (so a spherical model standardised feature by feature would
be another model); the posterior must cover the truth, keep the model's structure in every
draw, and every downstream summary must work on it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bayesgmm import BayesianGMM, SamplingWarning
from bayesgmm.datasets import simulate_mixture

RUN = dict(draws=200, tune=300, chains=2, progressbar=False)
MEANS = np.array([[0.0, 0.0], [4.0, 30.0]])
TRUTH = {  # covariances in the data's units, per model
    "EEE": np.array([[[1.0, 6.0], [6.0, 100.0]]] * 2),
    "EEI": np.array([np.diag([1.0, 100.0])] * 2),
    "VII": np.array([np.eye(2) * 4.0, np.eye(2) * 16.0]),
    "EII": np.array([np.eye(2) * 9.0] * 2),
}


def _truth_means(name: str) -> np.ndarray:
    # spherical models: components apart on both features on one scale
    return np.array([[0.0, 0.0], [20.0, 25.0]]) if name in ("VII", "EII") else MEANS


@pytest.fixture(scope="module", params=sorted(TRUTH))
def family_fit(request):
    name = request.param
    sim = simulate_mixture(
        400,
        weights=[0.4, 0.6],
        means=_truth_means(name),
        covariances=TRUTH[name],
        random_state=11,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # short runs
        fit = BayesianGMM(2, covariance_type=name, random_seed=4, **RUN).fit(sim.X)
    return name, sim, fit


def _order(fit, means: np.ndarray) -> np.ndarray:
    """The posterior's component for each true component (matched on the means)."""
    posterior = fit.idata_.posterior["means"].mean(("chain", "draw")).values
    distance = ((posterior[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1)
    return np.argmin(distance, axis=0)


def test_posterior_covers_the_truth(family_fit):
    name, _, fit = family_fit
    order = _order(fit, _truth_means(name))
    assert sorted(order) == [0, 1]
    posterior = fit.idata_.posterior
    for variable, truth in (
        ("weights", np.array([0.4, 0.6])),
        ("means", _truth_means(name)),
        ("covariances", TRUTH[name]),
    ):
        draws = posterior[variable].isel(component=order)
        mean = draws.mean(("chain", "draw")).values
        sd = draws.std(("chain", "draw")).values
        sd = np.where(sd > 0, sd, 1.0)  # structural zeros (off-diagonals of a diagonal model)
        z = np.abs(mean - truth) / sd
        assert np.all(z < 4.0), (variable, mean, truth)


def test_every_draw_has_the_models_structure(family_fit):
    name, _, fit = family_fit
    cov = fit.idata_.posterior["covariances"].transpose("chain", "draw", "component", ...).values
    assert cov.shape[2:] == (2, 2, 2)
    if name.startswith("E"):  # one covariance for every component
        np.testing.assert_array_equal(cov[:, :, 0], cov[:, :, 1])
    if name.endswith("I"):  # diagonal
        assert np.all(cov[..., 0, 1] == 0) and np.all(cov[..., 1, 0] == 0)
    if name in ("VII", "EII"):  # spheres in the data's units
        np.testing.assert_allclose(cov[..., 0, 0], cov[..., 1, 1], rtol=1e-12)
    else:
        assert not np.allclose(cov[..., 0, 0], cov[..., 1, 1], rtol=0.5)
    assert ("correlations" in fit.idata_.posterior) == (name == "EEE")


def test_downstream_summaries_work(family_fit, tmp_path):
    name, sim, fit = family_fit
    summary = fit.summary()
    assert np.all(np.isfinite(summary["mean"]))
    off_diagonal = [
        label
        for label in summary.index
        if label.startswith("covariances[") and len(set(label[:-1].split(", ")[1:])) == 2
    ]
    # a diagonal model's zero covariances are the model's, not estimates: not listed
    assert len(off_diagonal) == (0 if name.endswith("I") else 2), off_diagonal
    table = fit.compare()
    assert len(table) and np.all(np.isfinite(table["mean"]))
    assert set(fit.diagnostics()["check"]) >= {"r_hat", "ess_bulk", "divergences"}
    assert np.isfinite(fit.compare_mixture().select_dtypes("number").to_numpy()).any()
    labels = fit.predict()
    agreement = max(np.mean(labels == sim.labels), np.mean(labels != sim.labels))
    assert agreement > 0.95
    fit.save(tmp_path / "fit.nc")
    loaded = BayesianGMM.load(tmp_path / "fit.nc")
    assert loaded.em_ is not None and loaded.em_.covariance_type == name
    np.testing.assert_allclose(loaded.em_.covariances_, fit.em_.covariances_, rtol=1e-8)
    np.testing.assert_array_equal(loaded.predict(sim.X[:20]), fit.predict(sim.X[:20]))


def test_cli_fit_and_report_take_the_covariance_model(tmp_path, capsys, monkeypatch):
    from bayesgmm import bayesian
    from bayesgmm.cli import build_parser, main

    built = []

    def recording(*args, **kwargs):
        built.append(kwargs["covariance_type"])
        return build_model(*args, **kwargs)

    build_model = bayesian.build_model
    monkeypatch.setattr(bayesian, "build_model", recording)
    sim = simulate_mixture(
        120, weights=[0.5, 0.5], means=MEANS, covariances=TRUTH["EEE"], random_state=2
    )
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in sim.X))
    argv = ["fit", str(csv), "--components", "2", "--draws", "40", "--tune", "40"]
    assert main([*argv, "--chains", "2", "--quiet", "--covariance-type", "tied"]) == 0
    assert built == ["tied"] and "Diagnostics" in capsys.readouterr().out
    assert main([*argv, "--covariance-type", "VEV"]) == 2  # an EM-only model: usage error
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("bayesgmm: error:") and "'EII'" in line
    args = build_parser().parse_args(["report", "--bayes-covariance-type", "EII"])
    assert args.bayes_covariance_type == "EII"
