"""The validation harness itself: prior simulator, ranks, uniformity and coverage tests, outputs.

Most tests use synthetic ranks or stub fitters (posterior draws made without NUTS); one runs the
real fitter twice. Its statistical checks are slow (`make test-slow`): deliberately
mis-specified, SBC catches it; calibrated, it passes. The full study is `make validate`.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

from bayesgmm.priors import DEFAULT_SD_PRIOR
from bayesgmm.validation import (
    DEFAULT_STUDY_PRIORS,
    FIXED_TRUTH,
    SBC_PRIORS,
    SBC_PRIORS_IG,
    STUDY_PRIORS,
    Fitter,
    PosteriorFit,
    SamplerSettings,
    calibration_tests,
    chi_square_uniformity,
    covered,
    draw_prior,
    ecdf_band,
    ecdf_uniformity,
    format_summary,
    fractional_ranks,
    invariant_quantities,
    main,
    quantity_names,
    rank_draws,
    rank_of_truth,
    run_sbc,
    run_validation,
    simulate,
    summarize_sbc,
    thin_indices,
    truth_coverage,
)

NAMES = ("a", "b", "c")
TINY = SamplerSettings(draws=100, tune=150, chains=2)


# -- the prior simulator is the model's prior, as documented ------------------------------------


@pytest.mark.parametrize(
    "priors",
    [
        SBC_PRIORS,
        dataclasses.replace(
            SBC_PRIORS,
            weights_concentration=3.0,
            lkj_eta=1.0,
            means_loc=(1.0, -2.0),
            means_scale=(0.5, 4.0),
            sd_scale=(2.0, 0.3),
        ),
        dataclasses.replace(SBC_PRIORS_IG, sd_scale=(2.0, 0.3), var_shape=2.5),
    ],
)
def test_prior_draws_follow_the_documented_priors(priors):
    draws = draw_prior(priors, 3000, random_seed=1)
    p = priors.for_features(2)
    a = p.weights_concentration
    checks = [(draws["weights"][:, 0], stats.beta(a, a).cdf)]
    stds = np.sqrt(np.diagonal(draws["covariances"], axis1=-2, axis2=-1))
    for j in range(2):
        checks.append(
            (draws["means"][:, :, j].ravel(), stats.norm(p.means_loc[j], p.means_scale[j]).cdf)
        )
        if p.sd_prior == "halfnormal":
            checks.append((stds[:, :, j].ravel(), stats.halfnorm(scale=p.sd_scale[j]).cdf))
        else:
            variance = stats.invgamma(p.var_shape, scale=p.sd_scale[j] ** 2)
            checks.append((stds[:, :, j].ravel() ** 2, variance.cdf))
    corr = draws["covariances"][:, :, 0, 1] / (stds[:, :, 0] * stds[:, :, 1])
    checks.append(((corr.ravel() + 1) / 2, stats.beta(p.lkj_eta, p.lkj_eta).cdf))  # LKJ, D=2
    for values, cdf in checks:
        assert stats.kstest(values, cdf).pvalue > 1e-3


def test_prior_draws_with_the_conditional_barrier_follow_the_model():
    """The default study prior (resolution, ``f = g = 0.3``, ``c = 1``, ``eta = 2``) has the
    conditional barrier on full covariances (a potential the model's RVs do not draw): the
    draws are thinned by rejection. In 2-D with ``g = f``, integrating out both standard
    deviations leaves the correlation's density ``(1 - rho^2)^(eta - 1) exp(-2 sqrt(2) (f /
    c) / sqrt(1 - rho^2))``; without the thinning it is the LKJ's ``(1 - rho^2)^(eta - 1)``."""
    from scipy import integrate

    priors = DEFAULT_STUDY_PRIORS
    assert priors.sd_prior == "resolution"
    assert priors.sd_floor == priors.sd_floor_given_others == (0.3,)
    draws = draw_prior(priors, 3000, random_seed=2)
    assert draws["covariances"].shape == (3000, 2, 2, 2)
    stds = np.sqrt(np.diagonal(draws["covariances"], axis1=-2, axis2=-1))
    rho = (draws["covariances"][:, :, 0, 1] / (stds[:, :, 0] * stds[:, :, 1])).ravel()
    ratio, eta = 0.3 / 1.0, priors.lkj_eta
    grid = np.linspace(-1.0, 1.0, 40_001)[1:-1]
    density = (1 - grid**2) ** (eta - 1) * np.exp(-2 * np.sqrt(2) * ratio / np.sqrt(1 - grid**2))
    cdf = integrate.cumulative_trapezoid(density, grid, initial=0.0)
    cdf /= cdf[-1]
    assert stats.kstest(rho, lambda v: np.interp(v, grid, cdf)).pvalue > 1e-3


def test_draw_prior_stops_when_the_barrier_rejects_nearly_everything(monkeypatch):
    import bayesgmm.validation.simulation as simulation

    monkeypatch.setattr(simulation, "_MAX_PASSES", 2)
    priors = dataclasses.replace(DEFAULT_STUDY_PRIORS, sd_floor_given_others=(30.0,))
    with pytest.raises(RuntimeError, match=r"lower priors\.sd_floor_given_others"):
        draw_prior(priors, 50, random_seed=0)


def test_draw_prior_returns_when_its_last_pass_fills_the_draws(monkeypatch):
    """The pass that completes the draws ends the rejection, also when it is the last one
    allowed (it raised before: the count was checked only at the start of the next pass)."""
    import bayesgmm.validation.simulation as simulation

    monkeypatch.setattr(simulation, "_MAX_PASSES", 1)
    priors = dataclasses.replace(DEFAULT_STUDY_PRIORS, sd_floor_given_others=(0.01,))
    draws = draw_prior(priors, 20, random_seed=0)  # acceptance ~1 at g = 0.01: one pass
    assert draws["covariances"].shape == (20, 2, 2, 2)


def test_draw_prior_keeps_the_draw_axis_for_one_draw():
    draws = draw_prior(SBC_PRIORS, 1, random_seed=0)
    assert draws["covariances"].shape == (1, 2, 2, 2)


# -- test quantities and ranks -------------------------------------------------------------------


def _random_parameters(rng, n_sets=5, k=2, d=2):
    weights = rng.dirichlet(np.ones(k), size=n_sets)
    means = rng.normal(0, 3, size=(n_sets, k, d))
    factor = rng.normal(size=(n_sets, k, d, d))
    covariances = factor @ np.swapaxes(factor, -1, -2) + 0.5 * np.eye(d)
    return weights, means, covariances


def test_invariant_quantities_ignore_labels_and_match_scipy(rng):
    weights, means, covariances = _random_parameters(rng)
    X, held_out = rng.normal(size=(30, 2)), rng.normal(size=2)
    values = invariant_quantities(weights, means, covariances, X, held_out)
    assert values.shape == (5, len(quantity_names(2, 2)))
    swapped = invariant_quantities(
        weights[:, ::-1], means[:, ::-1], covariances[:, ::-1], X, held_out
    )
    np.testing.assert_allclose(swapped, values)
    for s in range(5):
        rows = np.vstack([X, held_out])
        dens = [
            stats.multivariate_normal(means[s, k], covariances[s, k]).logpdf(rows) for k in (0, 1)
        ]
        log_p = logsumexp(np.log(weights[s])[:, None] + np.array(dens), axis=0)
        np.testing.assert_allclose(values[s, -2:], [log_p[:-1].sum(), log_p[-1]], rtol=1e-10)
        first = np.argmin(means[s, :, 0])
        np.testing.assert_allclose(values[s, 2:4], means[s, first])
        assert values[s, 0] == weights[s].min()


def test_thin_indices_are_distinct_and_evenly_spaced():
    kept = thin_indices(1000, 7)
    assert kept[0] == 0 and kept[-1] == 999 and len(set(kept)) == 7
    assert np.ptp(np.diff(kept)) <= 1
    np.testing.assert_array_equal(thin_indices(5, 5), np.arange(5))
    with pytest.raises(ValueError, match="n_keep"):
        thin_indices(5, 6)


def test_rank_draws_follow_the_effective_sample_size(rng):
    independent = rng.normal(size=(2, 500, 3))
    assert rank_draws(independent) > 600
    walk = np.cumsum(rng.normal(size=(2, 500, 3)), axis=1)
    assert rank_draws(walk) < 50


def test_ranks_and_fractional_ranks(rng):
    draws = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0]])
    np.testing.assert_array_equal(rank_of_truth(draws, np.array([1.5, 100.0])), [2, 3])
    # ranks uniform on {0..L} with L varying by simulation pool to exactly uniform values
    n_draws = rng.integers(1, 30, size=20000)
    u = fractional_ranks(rng.integers(0, n_draws + 1), n_draws, rng)
    assert 0 < u.min() and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_covered_is_the_central_interval():
    assert covered(0.5, 0.5) and covered(0.06, 0.9) and not covered(0.04, 0.9)
    assert not covered(0.76, 0.5)
    u = np.linspace(0, 1, 100001)
    assert covered(u, 0.9).mean() == pytest.approx(0.9, abs=1e-4)


# -- uniformity and coverage tests on synthetic ranks --------------------------------------------


def test_uniform_ranks_pass(rng):
    result = calibration_tests(rng.uniform(size=(200, 3)), NAMES)
    assert result["passed"] and result["n"] == 200
    assert all(
        c["0.9"]["rate"] == pytest.approx(0.9, abs=0.07) for c in result["coverage"].values()
    )


@pytest.mark.parametrize(
    "biased",
    [
        lambda u: u**2,  # posterior shifted: the truth tends to sit low in it
        lambda u: stats.beta(4, 4).ppf(u),  # posterior too wide: over-coverage
        lambda u: stats.beta(0.4, 0.4).ppf(u),  # posterior too narrow: under-coverage
    ],
)
def test_biased_ranks_fail(rng, biased):
    u = rng.uniform(size=(200, 3))
    u[:, 1] = biased(u[:, 1])
    result = calibration_tests(u, NAMES)
    assert not result["passed"] and not result["uniformity_passed"]
    assert not result["chi_square"]["b"]["passed"] and not result["ecdf"]["b"]["passed"]
    assert result["chi_square"]["a"]["passed"] and result["ecdf"]["c"]["passed"]
    assert not result["coverage_passed"]
    assert result["coverage"]["a"]["0.9"]["passed"] and result["coverage"]["c"]["0.5"]["passed"]


def test_ecdf_band_has_its_simultaneous_coverage(rng):
    """The band (and how ecdf_uniformity uses it) holds all of a uniform ECDF ~prob of the time."""
    n, prob = 50, 0.9
    eval_points, lower, upper = ecdf_band(n, prob)
    inside = []
    for _ in range(600):
        ecdf = np.searchsorted(np.sort(rng.uniform(size=n)), eval_points, side="right") / n
        inside.append(np.all((ecdf >= lower) & (ecdf <= upper)))
    assert np.mean(inside) == pytest.approx(prob, abs=0.04)
    assert ecdf_uniformity(np.linspace(0.01, 0.99, n), prob)[0]
    assert not ecdf_uniformity(np.linspace(0.01, 0.4, n), prob)[0]


def test_chi_square_uses_bins_of_ten_values(rng):
    _, p_value, n_bins = chi_square_uniformity(rng.uniform(size=100))
    assert n_bins == 10 and p_value > 0.01
    assert chi_square_uniformity(np.full(100, 0.5))[1] < 1e-10


def test_too_few_simulations_are_not_tested():
    result = calibration_tests(np.full((3, 3), 0.5), NAMES)
    assert result["passed"] is None and "fewer than" in result["skipped"]


# -- the harness end to end with stub fitters (no NUTS) ------------------------------------------


@pytest.fixture(scope="module")
def prior_pool():
    return draw_prior(SBC_PRIORS, 4000, random_seed=99)


class PriorFitter:
    """'Posterior' draws from the prior whatever the data (SBC's classic blind spot for
    quantities of the parameters alone). ``fail_every`` makes some fits raise; ``shrink``
    scales the means (a biased posterior); diagnostics pass on even seeds."""

    def __init__(self, pool, *, fail_every: int = 0, shrink: float = 1.0):
        self.pool = pool
        self.fail_every, self.shrink, self.calls = fail_every, shrink, 0

    def fit(self, X, *, random_seed):
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError("the sampler could not start")
        pick = np.random.default_rng(random_seed).integers(0, 4000, size=400)
        dims = ("chain", "draw", "component")
        posterior = xr.Dataset(
            {
                "weights": (dims, self.pool["weights"][pick].reshape(2, 200, 2)),
                "means": (
                    (*dims, "feature"),
                    self.shrink * self.pool["means"][pick].reshape(2, 200, 2, 2),
                ),
                "covariances": (
                    (*dims, "feature", "feature_bis"),
                    self.pool["covariances"][pick].reshape(2, 200, 2, 2, 2),
                ),
            }
        )
        diagnostics = {"passed": random_seed % 2 == 0, "divergences": 0}
        return PosteriorFit(posterior, diagnostics, {"warnings": []})


def test_data_dependent_quantities_catch_a_fitter_that_ignores_the_data(prior_pool):
    """Prior draws pass SBC on the parameters, but not on the log-likelihood of the data. They
    pass on the held-out point's log predictive density: the point is drawn independently of
    the truth (drawn from the truth, it ranked the truth high: 35 of 40 ranks above 0.9)."""
    result = run_sbc(
        40, fitter=PriorFitter(prior_pool), random_seed=3, progressbar=False, priors=SBC_PRIORS
    )
    summary = summarize_sbc(result)
    tests = summary["all"]
    for name in (*result.quantities[:6], "log_predictive"):
        assert tests["chi_square"][name]["passed"] and tests["ecdf"][name]["passed"]
    assert not tests["ecdf"]["log_likelihood"]["passed"] and not tests["uniformity_passed"]
    assert summary["counts"]["fitted"] == 40
    assert 0 < summary["counts"]["diagnostics_passed"] < 40
    assert summary["diagnostics_passed"]["n"] == summary["counts"]["diagnostics_passed"]
    record = result.records[0]
    assert set(record) >= {"truth", "ranks", "fractional_ranks", "n_rank_draws", "diagnostics"}
    assert record["n_rank_draws"] > 200  # independent draws: L is near all 400 of them


def test_harness_detects_a_shrunk_stub(prior_pool):
    fitter = PriorFitter(prior_pool, shrink=0.5)
    result = run_sbc(40, fitter=fitter, random_seed=3, progressbar=False, priors=SBC_PRIORS)
    tests = summarize_sbc(result)["all"]
    assert not tests["uniformity_passed"]
    means = [q for q in tests["ecdf"] if q.startswith("sorted_means")]
    # too narrow a means posterior: every mean's 90% interval misses the truth too often, and
    # the ranks of some mean leave the ECDF band (which one varies with the draws at n=10)
    assert not any(tests["coverage"][q]["0.9"]["passed"] for q in means)
    assert not all(tests["ecdf"][q]["passed"] for q in means)


def test_failed_fits_are_reported_not_dropped(prior_pool):
    fitter = PriorFitter(prior_pool, fail_every=4)
    result = run_sbc(12, fitter=fitter, random_seed=0, progressbar=False, priors=SBC_PRIORS)
    counts = summarize_sbc(result)["counts"]
    assert counts["failed"] == 3 and counts["failed_indices"] == [3, 7, 11]
    assert len(result.records) == 12
    assert "could not start" in result.records[3]["error"]
    assert result.fractional_ranks().shape == (9, len(result.quantities))


def test_same_seed_same_study(prior_pool):
    first, second = (
        run_sbc(
            4, fitter=PriorFitter(prior_pool), random_seed=5, progressbar=False, priors=SBC_PRIORS
        )
        for _ in range(2)
    )
    for a, b in zip(first.records, second.records, strict=True):
        a.pop("seconds"), b.pop("seconds")
        assert a == b


def test_run_validation_writes_json_and_png(tmp_path, prior_pool):
    results = run_validation(
        30,
        n_datasets=8,
        out_dir=tmp_path,
        fitter=PriorFitter(prior_pool),
        priors=SBC_PRIORS,
        progressbar=False,
    )
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["passed"] == results["passed"]
    assert len(stored["sbc"]["simulations"]) == 30 and len(stored["coverage"]["datasets"]) == 8
    assert (tmp_path / "rank_ecdfs.png").stat().st_size > 10_000
    text = format_summary(results)
    assert "30 simulations" in text and "Coverage at the truth" in text
    # prior draws ignore the data, so at a fixed truth the 90% intervals are far too wide
    assert results["coverage"]["pooled_rate"] == 1.0 and results["passed"] is False


@pytest.mark.parametrize("function", [run_validation, run_sbc, truth_coverage, Fitter])
def test_the_study_defaults_to_the_package_prior(function):
    """Called without ``priors``, the study's functions simulate and fit under the prior users
    get by default (as its command line does), not the HalfNormal of ``SBC_PRIORS``."""
    import inspect

    default = inspect.signature(function).parameters["priors"].default
    assert default is DEFAULT_STUDY_PRIORS is STUDY_PRIORS[DEFAULT_SD_PRIOR]
    assert default.sd_prior == DEFAULT_SD_PRIOR


def test_the_study_draws_from_the_chosen_prior(prior_pool, monkeypatch):
    """``--sd-prior inverse_gamma`` gives simulator and default fitter the inverse-gamma
    priors (the truths differ from the HalfNormal study's at the same seed)."""
    import bayesgmm.validation.cli as cli

    seen = {}

    def capture(*args, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_validation", capture)
    with pytest.raises(KeyboardInterrupt):
        main(["--sd-prior", "inverse_gamma", "--no-progress"])
    assert seen["priors"] == SBC_PRIORS_IG
    with pytest.raises(KeyboardInterrupt):
        main(["--sd-prior", "resolution", "--no-progress"])
    assert seen["priors"] == STUDY_PRIORS["resolution"]
    assert seen["priors"].sd_prior == "resolution" and min(seen["priors"].sd_floor) > 0
    with pytest.raises(KeyboardInterrupt):
        main(["--no-progress"])  # make validate: the package's default prior
    assert seen["priors"] == STUDY_PRIORS[DEFAULT_SD_PRIOR]
    truths = {}
    for priors in (SBC_PRIORS, SBC_PRIORS_IG):
        results = run_validation(
            3, n_datasets=2, fitter=PriorFitter(prior_pool), priors=priors, progressbar=False
        )
        assert results["sbc"]["settings"]["priors"]["sd_prior"] == priors.sd_prior
        truths[priors.sd_prior] = results["sbc"]["simulations"][0]["truth"]["covariances"]
    assert truths["halfnormal"] != truths["inverse_gamma"]


# -- the real fitter -------------------------------------------------------------------------------


def test_the_real_fitter_ranks_every_quantity_of_each_simulation():
    """The study's path with the real fitter, fast: two fits, each with a rank per quantity."""
    fitter = Fitter(100, 2, 2, settings=TINY)
    result = run_sbc(2, fitter=fitter, random_seed=3, progressbar=False)
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    for record in result.records:
        n_keep = record["n_rank_draws"]
        assert n_keep > 0  # draws thinned to about their ESS (a follow-up may add draws)
        assert len(record["ranks"]) == len(result.quantities)
        assert all(0 <= r <= n_keep for r in record["ranks"])
        assert all(0.0 <= u < 1.0 for u in record["fractional_ranks"])
        assert record["em"] and record["diagnostics"]


@pytest.mark.slow  # ten real fits, ~70 s cold: the stub fitters above check detection fast
def test_sbc_detects_a_misspecified_fitter():
    """Means prior 10x too narrow in the fitter, not in the simulator: extreme ranks."""
    wrong = dataclasses.replace(SBC_PRIORS, means_scale=0.3)
    fitter = Fitter(100, 2, 2, priors=wrong, settings=TINY)
    result = run_sbc(10, fitter=fitter, priors=SBC_PRIORS, random_seed=11, progressbar=False)
    tests = summarize_sbc(result)["all"]
    assert result.settings["fitter_priors"]["means_scale"] == (0.3,)
    assert summarize_sbc(result)["counts"]["fitted"] == 10
    assert not tests["uniformity_passed"]
    means = [q for q in tests["ecdf"] if q.startswith("sorted_means")]
    # too narrow a means posterior: every mean's 90% interval misses the truth too often, and
    # the ranks of some mean leave the ECDF band (which one varies with the draws at n=10)
    assert not any(tests["coverage"][q]["0.9"]["passed"] for q in means)
    assert not all(tests["ecdf"][q]["passed"] for q in means)


@pytest.mark.slow
def test_sbc_smoke_passes_with_the_calibrated_fitter():
    fitter = Fitter(100, 2, 2, settings=TINY)  # the study's default: the package's prior
    result = run_sbc(20, fitter=fitter, random_seed=2, progressbar=False)
    assert result.settings["fitter_priors"]["sd_prior"] == DEFAULT_SD_PRIOR
    summary = summarize_sbc(result)
    assert summary["counts"]["failed"] == 0
    assert summary["all"]["uniformity_passed"]
    coverage = truth_coverage(8, fitter=fitter, random_seed=2, progressbar=False)
    assert coverage["failed"] == 0 and coverage["pooled_rate"] > 0.6


@pytest.mark.slow
def test_command_line_run(tmp_path, capsys):
    args = ["--simulations", "6", "--coverage-datasets", "5", "--draws", "100", "--tune", "150"]
    code = main([*args, "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert "Overall:" in out and code in (0, 1)
    assert (tmp_path / "results.json").exists() and (tmp_path / "rank_ecdfs.png").exists()
    assert json.loads((tmp_path / "results.json").read_text())["passed"] == (code == 0)
    assert (
        FIXED_TRUTH["weights"]
        == json.loads((tmp_path / "results.json").read_text())["coverage"]["truth"]["weights"]
    )


def test_the_held_out_point_comes_from_the_parameters_given_for_it():
    far = {**FIXED_TRUTH, "means": np.asarray(FIXED_TRUTH["means"]) + 100.0}
    plain = simulate(FIXED_TRUTH, 50, random_seed=4)
    other = simulate(FIXED_TRUTH, 50, random_seed=4, held_out_from=far)
    np.testing.assert_array_equal(other.X, plain.X)  # the data set does not change
    assert np.all(np.abs(other.held_out - 100.0) < 20.0)  # drawn from the far mixture
    assert np.all(np.abs(plain.held_out) < 20.0)
