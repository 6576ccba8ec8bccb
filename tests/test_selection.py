"""Choosing K: the EM sweep's table, its known optimum on Old Faithful, and the LOO comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.mixture import GaussianMixture

from bayesgmm import SamplerError
from bayesgmm._models import MODEL_NAMES, inestimable
from bayesgmm.datasets import load_faithful
from bayesgmm.selection import candidate_components, em_sweep, select_n_components


@pytest.fixture(scope="module")
def faithful_sweep():
    return em_sweep(
        load_faithful(),
        range(1, 5),
        ("full", "tied", "diag", "spherical"),
        tol=1e-8,
        max_iter=2000,
        progress=False,
    )


def test_selection_table_reaches_the_known_optimum_with_em_options():
    """The K=2 row of select_n_components' own table, with tol=1e-8 passed through."""
    sel = select_n_components(
        load_faithful(),
        [1, 2, 3],
        bayesian=False,
        progress=False,
        em_options={"tol": 1e-8, "max_iter": 2000},
    )
    table = sel.em.table.set_index(["n_components", "covariance_type"])
    np.testing.assert_allclose(table.loc[(2, "full"), "log_likelihood"], -1130.26, atol=1e-2)
    assert sel.em.fits[(2, "full")].tol == 1e-8


def test_faithful_known_optimum(faithful_sweep):
    table = faithful_sweep.table.set_index(["n_components", "covariance_type"])
    # R mclust: VVV (full) with G=2 has log-likelihood -1130.26
    np.testing.assert_allclose(table.loc[(2, "full"), "log_likelihood"], -1130.26, atol=1e-2)
    # mclust's BIC over all families picks EEE (tied) with G=3 (loglik -1126.3, BIC 2314.3)
    assert faithful_sweep.best["bic"] == (3, "tied")
    np.testing.assert_allclose(table.loc[(3, "tied"), "bic"], 2314.3, atol=0.1)
    np.testing.assert_allclose(table.loc[(3, "tied"), "log_likelihood"], -1126.3, atol=0.1)


def test_table_columns_and_criteria(faithful_sweep):
    table = faithful_sweep.table
    assert list(table.columns) == [
        "n_components",
        "covariance_type",
        "model_name",
        "status",
        "log_likelihood",
        "n_parameters",
        "bic",
        "aic",
        "icl",
        "converged",
        "n_iter",
        "message",
    ]
    assert len(table) == 16
    row = table.iloc[5]
    n = 272
    np.testing.assert_allclose(
        row["bic"], -2 * row["log_likelihood"] + row["n_parameters"] * np.log(n)
    )
    np.testing.assert_allclose(row["aic"], -2 * row["log_likelihood"] + 2 * row["n_parameters"])
    assert (table["icl"] >= table["bic"] - 1e-9).all()
    for criterion in ("bic", "aic", "icl"):
        k, family = faithful_sweep.best[criterion]
        ok = table[table["status"] == "ok"]
        assert ok[criterion].min() == pytest.approx(
            table[(table.n_components == k) & (table.covariance_type == family)][criterion].item()
        )


def test_failed_fits_are_listed_not_raised():
    X = np.vstack([np.random.default_rng(0).normal(size=(30, 2)), [[9.0, 9.0]] * 3])
    sweep = em_sweep(X, [1, 2, 40], ("full",), reg_covar=0.0, progress=False)
    table = sweep.table.set_index("n_components")
    assert table.loc[40, "status"] == "failed"
    assert "n_samples >= n_components" in table.loc[40, "message"]
    assert np.isnan(table.loc[40, "bic"])
    assert sweep.best["bic"][0] in (1, 2)


def test_components_above_the_rows_are_refused_without_any_starts(monkeypatch):
    """A sweep asked for K far above the rows (R's meteo, 11 rows, K up to 59 took 38-160 s
    of k-means starts no fit could use) builds starts only up to the rows; every cell above
    them is a failed row saying why."""
    import bayesgmm._restarts as restarts

    seen: list[int] = []
    kmeans = restarts.kmeans_labels
    monkeypatch.setattr(
        restarts, "kmeans_labels", lambda X, k, *a, **kw: seen.append(k) or kmeans(X, k, *a, **kw)
    )
    X = np.random.default_rng(0).normal(size=(11, 2))
    table = em_sweep(X, range(1, 30), ("EII", "VVV"), progress=False).table
    assert seen and max(seen) == 11
    above = table[table["n_components"] > 11]
    assert len(above) == 2 * 18 and (above["status"] == "failed").all()
    assert above["message"].str.contains("n_samples >= n_components").all()
    low = table[(table["n_components"] <= 3) & (table["covariance_type"] == "EII")]
    assert (low["status"] != "failed").all()


def test_collapsed_fit_is_marked():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (5, 1))])
    sweep = em_sweep(X, [2], ("full",), progress=False)
    assert sweep.table["status"].item() == "collapsed"
    assert "Collapsed component" in sweep.table["message"].item()


def test_candidates_are_the_best_distinct_k():
    table = pd.DataFrame(
        {
            "n_components": [1, 2, 3, 2, 4],
            "covariance_type": ["full", "full", "full", "diag", "full"],
            "status": ["ok"] * 4 + ["failed"],
            "bic": [10.0, 3.0, 5.0, 2.0, np.nan],
        }
    )
    assert candidate_components(table, 2) == [2, 3]
    assert candidate_components(table, 1) == [2, 3]  # at least two
    assert candidate_components(table, 3) == [1, 2, 3]


def test_candidates_put_collapsed_fits_last():
    table = pd.DataFrame(
        {
            "n_components": [1, 2, 3, 4],
            "covariance_type": ["full"] * 4,
            "status": ["ok", "ok", "ok", "collapsed"],
            "bic": [30.0, 10.0, 20.0, 5.0],  # the collapsed K=4 has the lowest BIC
        }
    )
    assert candidate_components(table, 2) == [2, 3]
    assert candidate_components(table, 4) == [1, 2, 3, 4]  # still there when there is room


def test_bad_arguments():
    with pytest.raises(ValueError, match="covariance type"):
        em_sweep(load_faithful(), [1, 2], ("banana",), progress=False)
    with pytest.raises(ValueError, match="positive"):
        em_sweep(load_faithful(), [0, 1], progress=False)
    with pytest.raises(ValueError, match=r"bayes_covariance_type 'VEV'.*'tied'.*'EII'"):
        select_n_components(load_faithful(), [1, 2], bayes_covariance_type="VEV", progress=False)


@pytest.mark.parametrize("value", [["EII", "VVV"], "VVV"])
def test_the_single_model_keyword_is_refused_with_the_sweeps_own(value):
    """em_sweep(X, covariance_type=[...]) raised "unhashable type: 'list'" from inside
    (a string: "got multiple values for keyword argument", after the first warnings)."""
    with pytest.raises(TypeError, match=r"pass covariance_types=.*not covariance_type"):
        em_sweep(load_faithful(), [1, 2], covariance_type=value, progress=False)


def test_bayesian_comparison_marks_converged_winner():
    """Two candidates with tiny draws: the table has LOO, Pareto-k and diagnostics per model."""
    sel = select_n_components(
        load_faithful(),
        [1, 2, 3],
        n_candidates=2,
        draws=200,
        tune=200,
        chains=2,
        progress=False,
    )
    loo = sel.loo
    assert set(loo.index) == {"K=2", "K=3"}
    for column in (
        "elpd_loo",
        "weight",
        "pareto_k_above_0.7",
        "max_r_hat",
        "min_ess_bulk",
        "divergences",
        "converged",
        "failed_checks",
        "winner",
    ):
        assert column in loo.columns
    # 400 draws cannot pass the ESS gate of 400 for every parameter: nothing is a winner
    # unless it converged, and the chosen K follows the winner column
    winners = loo.index[loo["winner"]].tolist()
    assert all(loo.loc[w, "converged"] for w in winners)
    assert sel.chosen["loo"] == (int(winners[0].split("=")[1]) if winners else None)
    np.testing.assert_allclose(loo["weight"].sum(), 1.0, atol=1e-6)
    # what the sampler warned of is kept per candidate (not printed, not dropped)
    for label in loo.index[~loo["converged"]]:
        assert any("ESS" in message for message in sel.warnings[label]), sel.warnings


class _StubFit:
    """What bayesian_comparison reads from a fitted BayesianGMM: idata_ and diagnostics()."""

    def __init__(self, idata):
        self.idata_ = idata

    def diagnostics(self):
        from bayesgmm import diagnostics

        return diagnostics(self.idata_)


def _stub_fits() -> dict:
    """Posteriors at K = 2 and 3 around EM's fits of two-component data, no divergences
    (:func:`tests._fake.idata_around`): K = 3 has the better elpd."""
    from bayesgmm import EMGaussianMixture

    from ._fake import idata_around, simulated_data

    X = simulated_data(2, n_samples=150)
    fits = {}
    for k in (2, 3):
        em = EMGaussianMixture(k, random_state=0, n_init=2).fit(X)
        idata = idata_around(em, X, n_chains=2, n_draws=1000, seed=k)
        idata.sample_stats["diverging"].values[:] = False
        fits[f"K={k}"] = _StubFit(idata)
    return fits


@pytest.mark.parametrize("true_k_converged", [True, False, "labels"])
def test_winner_is_the_best_converged_model(true_k_converged):
    """K=3 (the truth) has the better elpd; it wins only if its chains agree. Components
    matched to EM's differently from draw to draw ("labels") fail a check that LOO, which
    does not depend on labels, does not wait for: the model still wins, the check listed."""
    from bayesgmm.selection import bayesian_comparison

    fits = _stub_fits()
    idata = fits["K=3"].idata_
    if true_k_converged is False:
        idata.posterior["means"].values[1] += 0.5  # chain 1 elsewhere: R-hat fails
    if true_k_converged == "labels":
        idata.sample_stats["label_permutation"].values[1, ::2] = [2, 0, 1]
    table = bayesian_comparison(fits)
    assert table["rank"].idxmin() == "K=3"  # the better elpd, converged or not
    assert table.loc["K=3", "converged"] == bool(true_k_converged)
    assert table.loc["K=2", "converged"]
    assert table.index[table["winner"]].tolist() == (["K=3"] if true_k_converged else ["K=2"])
    if not true_k_converged:
        assert "r_hat" in table.loc["K=3", "failed_checks"]
    assert (table.loc["K=3", "failed_checks"] == "labels") == (true_k_converged == "labels")


def test_sweep_over_the_14_models_picks_mclusts_model():
    """mclustBIC(faithful, G = 1:3) over all 14 models: EEE, G = 3, BIC 2314.32 (mclust sign)."""
    sweep = em_sweep(load_faithful(), range(1, 4), "all", n_init=2, progress=False)
    table = sweep.table
    assert len(table) == 14 * 3
    assert list(table["model_name"].unique()) == list(MODEL_NAMES)
    assert (table["model_name"] == table["covariance_type"]).all()
    assert sweep.best["bic"] == (3, "EEE")
    best = table.set_index(["n_components", "model_name"]).loc[(3, "EEE")]
    np.testing.assert_allclose(best["bic"], 2314.32, atol=0.05)
    # every model reaches mclust's BIC (or a better one) at K = 2, where the optimum is clear
    mclust_k2 = {"EII": 3453.00, "VII": 3458.30, "EEI": 2354.60, "VEI": 2350.61, "EVI": 2352.62}
    mclust_k2 |= {"VVI": 2346.06, "EEE": 2325.22, "VEE": 2322.97, "EVE": 2324.27, "VVE": 2320.43}
    mclust_k2 |= {"EEV": 2329.12, "VEV": 2325.42, "EVV": 2327.60, "VVV": 2322.19}
    k2 = table[table["n_components"] == 2].set_index("model_name")["bic"]
    for name, bic in mclust_k2.items():
        assert k2[name] <= bic + 0.01, name


def test_models_that_cannot_be_fitted_are_rows():
    """Too few rows for the components' covariances, or singular without regularisation:
    rows, no raise."""
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(14, 3)), np.tile([[6.0, 6.0, 6.0]], (4, 1))])
    kinds = ("VVV", "EII", "spherical")
    sweep = em_sweep(X, [1, 2, 3, 5], kinds, reg_covar=0.0, progress=False)
    table = sweep.table.set_index(["n_components", "covariance_type"])
    assert table.loc[(5, "VVV"), "status"] == "failed"  # 5 full 3 x 3 covariances: 4 rows each
    assert (
        "needs 20 rows for its components' covariances but has 18"
        in table.loc[(5, "VVV"), "message"]
    )
    assert table.loc[(5, "VVV"), "n_parameters"] == 49
    assert table.loc[(3, "VVV"), "status"] == "failed"  # own axes, as many parameters as rows
    assert "free parameters" in table.loc[(3, "VVV"), "message"]
    assert table.loc[(3, "VVV"), "n_parameters"] == 29
    assert table.loc[(1, "EII"), "status"] == "ok"
    singular = table[table["message"].str.contains("singular", na=False)]
    assert (singular["status"] == "failed").all() and len(singular) >= 1
    assert table.loc[(2, "spherical"), "model_name"] == "VII"


@pytest.mark.parametrize(
    ("name", "k", "n", "d", "reason"),
    [
        ("EEE", 2, 32, 6, ""),  # 34 parameters, one covariance from every row
        ("VII", 9, 47, 6, ""),  # 71 parameters, 2 rows a component suffice
        ("EEE", 5, 10, 6, "needs 11 rows"),  # a shared covariance: K + D rows
        ("VVV", 5, 18, 3, "needs 20 rows"),  # D + 1 rows a component
        ("EEV", 9, 47, 6, "needs 63 rows"),  # own axes, D + 1 rows each: MASS swiss
        ("EEV", 2, 50, 6, ""),  # 49 parameters
        ("EEV", 2, 49, 6, "49 free parameters"),  # own axes: not with as many as rows
        ("VVE", 7, 48, 6, "needs 49 rows"),  # own shapes on turning axes
        ("VVE", 2, 93, 13, ""),  # 131 parameters, axes shared by all rows: MASS Cars93
        ("VVV", 2, 93, 13, "209 free parameters"),  # own axes: Cars93 again
        ("VVI", 9, 18, 3, ""),  # own shapes on fixed axes: 2 rows each
        ("VVV", 1, 43, 12, ""),  # 90 parameters, but one component is EEE: R's USJudgeRatings
        ("EEV", 1, 43, 12, ""),
        ("VVV", 1, 12, 12, "needs 13 rows"),  # as EEE: D + 1 rows
        ("EEE", 1, 12, 12, "needs 13 rows"),
    ],
)
def test_which_models_the_rows_can_estimate(name, k, n, d, reason):
    found = inestimable(name, k, n, d)
    assert (reason in found) if reason else found == ""


def test_more_parameters_than_rows_is_fitted_where_the_model_is_estimable():
    """A covariance shared by the components is estimated from every row: EEE at K = 2 in
    6 dimensions has 34 free parameters for 32 rows (MASS's mtcars), and its optimum is
    scikit-learn's tied model's (oracle, best of 10 starts)."""
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(16, 6)), rng.normal(size=(16, 6)) + 3.0])
    sweep = em_sweep(X, [2], ("EEE", "EII"), reg_covar=0.0, progress=False)
    row = sweep.table.set_index("covariance_type").loc["EEE"]
    assert row["n_parameters"] == 34 > len(X)
    assert row["status"] == "ok"
    sk = GaussianMixture(2, covariance_type="tied", n_init=10, reg_covar=1e-10, random_state=0)
    reference = sk.fit(X).score(X) * len(X)
    assert row["log_likelihood"] >= reference - 0.1


def test_one_component_full_models_are_the_sample_covariance_whatever_their_count():
    """At K = 1 the eight full-covariance models are one model, the Gaussian with the sample
    mean and (biased) covariance (closed form, SciPy's density): fitted under every name even
    with more free parameters than rows (25 rows, 6 features: 27), and the best BIC among the
    ties is EEE's, not whichever name rounded lowest."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(4)
    X = rng.normal(size=(25, 6)) @ rng.normal(size=(6, 6))
    full = MODEL_NAMES[6:]
    sweep = em_sweep(X, [1], ("EII", *full), reg_covar=0.0, progress=False)
    table = sweep.table.set_index("model_name")
    oracle = multivariate_normal(X.mean(axis=0), np.cov(X.T, bias=True)).logpdf(X).sum()
    assert (table.loc[list(full), "status"] == "ok").all()
    assert (table.loc[list(full), "n_parameters"] == 27).all()
    np.testing.assert_allclose(table.loc[list(full), "log_likelihood"], oracle, rtol=1e-10)
    assert sweep.best["bic"] == (1, "EEE")


def test_best_model_breaks_rounding_ties_by_simplicity_not_by_noise():
    """Criteria equal to rounding go to the fewest parameters, then the smallest K, then the
    first in mclust's order; a real difference, however small beside the values, still wins."""
    from bayesgmm.selection import _best_by_criterion

    def table(rows):
        frame = pd.DataFrame(rows, columns=["n_components", "model_name", "n_parameters", "bic"])
        frame["covariance_type"] = frame["model_name"]
        frame["status"] = "ok"
        return frame.assign(aic=frame["bic"], icl=frame["bic"])

    noise = [
        (1, "VVV", 5, 465.46435962854),
        (1, "EVE", 5, 465.46435962853),
        (1, "EEE", 5, 465.46435962855),
    ]
    assert _best_by_criterion(table(noise))["bic"] == (1, "EEE")
    fewer = [(2, "VVV", 11, 400.0), (1, "VVI", 4, 400.0 * (1 + 1e-12))]
    assert _best_by_criterion(table(fewer))["bic"] == (1, "VVI")
    real = [(1, "EEE", 5, 465.4644), (1, "VVV", 5, 465.4643)]  # 1e-4 lower: not a tie
    assert _best_by_criterion(table(real))["bic"] == (1, "VVV")


def test_aliases_and_names_fit_the_same_model():
    sweep = em_sweep(load_faithful(), [2], ("full", "VVV", "diag", "VVI"), progress=False)
    table = sweep.table.set_index("covariance_type")
    for alias, name in (("full", "VVV"), ("diag", "VVI")):
        assert table.loc[alias, "model_name"] == name
        np.testing.assert_allclose(
            table.loc[alias, ["log_likelihood", "bic", "icl"]].astype(float),
            table.loc[name, ["log_likelihood", "bic", "icl"]].astype(float),
            rtol=1e-12,
        )


def _four_small_clusters(n_each: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]])
    return np.vstack([c + rng.normal(size=(n_each, 3)) for c in centres])


def test_candidates_the_sampled_model_cannot_estimate_are_not_sampled():
    """14 rows in 3-D: full covariances need 4 rows a component, so K = 4 (a candidate by EM's
    BIC under EII) is left out with its reason, and so are K = 3 and K = 2 (29 and 19 free
    parameters for 14 rows, the bar em_sweep sets for full covariances): the next best K that
    the sampled model can estimate, 1, is sampled instead."""
    from bayesgmm.selection import Selection, _sampleable_candidates

    X = _four_small_clusters(4)[:14]
    selection = Selection(em=em_sweep(X, range(1, 5), "EII", progress=False))
    assert candidate_components(selection.em.table, 2) == [3, 4]
    bic = selection.em.table.set_index("n_components")["bic"]
    assert bic[3] < bic[1] < bic[2]  # so the next best K to sample is 1
    assert _sampleable_candidates(selection, 2, "full", X.shape) == [1]
    assert "needs 16 rows for its components' covariances but has 14" in selection.failed["K=4"]
    assert "29 free parameters for 14 rows" in selection.failed["K=3"]
    spherical = Selection(em=selection.em)  # 2 rows a component suffice
    assert _sampleable_candidates(spherical, 2, "spherical", X.shape) == [3, 4]
    assert spherical.failed == {}


def test_candidates_with_more_free_parameters_than_rows_are_not_sampled():
    """robustbase's toxicity (38 x 10): full covariances at K = 2 have 131 free parameters
    (enough rows for each covariance, 11 a component), which em_sweep refuses for VVV and the
    sampler took over 8 minutes on; K = 2 is left out with its reason, as em_sweep's row is,
    and one diagonal model per component fits."""
    from bayesgmm.selection import Selection, _sampleable_candidates

    X = np.random.default_rng(0).normal(size=(38, 10))
    X[:19] += 3.0
    selection = Selection(em=em_sweep(X, [1, 2], "EII", progress=False))
    assert _sampleable_candidates(selection, 2, "full", X.shape) == [1]
    assert "131 free parameters for 38 rows" in selection.failed["K=2"]
    assert selection.failed["K=2"].endswith(
        "Sample a more constrained bayes_covariance_type (e.g. 'diag') or fewer components."
    )
    diagonal = Selection(em=selection.em)  # 1 + 20 + 20 = 41 parameters: no bar for VVI
    assert _sampleable_candidates(diagonal, 2, "diag", X.shape) == [1, 2]


def test_no_sampleable_candidate_is_an_error_before_sampling():
    X = _four_small_clusters(3)[:10]
    with pytest.raises(SamplerError, match=r"K=3: The VVV model with K=3 needs 12 rows"):
        select_n_components(X, [3, 4], covariance_types="EII", progress=False)


def _closed_iris() -> np.ndarray:
    from sklearn.datasets import load_iris

    X = load_iris().data
    return X / X.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_closed_iris, r"compositional data.*every model with a full covariance.*ilr"),
        (lambda: np.c_[load_faithful(), 2.0 * load_faithful().iloc[:, 0]], "x2' repeats"),
    ],
)
def test_linearly_dependent_columns_are_said_before_the_sweep(make, match):
    """Every full-covariance cell is then singular (and shows as collapsed): one warning up
    front names the cause and the remedy; the diagonal models still fit."""
    with pytest.warns(UserWarning, match=match):
        sweep = em_sweep(make(), [1, 2], ("VVV", "VVI"), progress=False)
    table = sweep.table.set_index("covariance_type")
    assert (table.loc["VVV", "status"] == "collapsed").all()
    assert (table.loc["VVI", "status"] == "ok").all()


def test_data_the_sampler_refuses_stop_the_selection_before_em(monkeypatch):
    import bayesgmm.selection as selection_module

    def no_sweep(*args, **kwargs):
        raise AssertionError("the EM sweep ran")

    monkeypatch.setattr(selection_module, "em_sweep", no_sweep)
    with pytest.raises(ValueError, match="compositional data"):
        select_n_components(_closed_iris(), [1, 2], progress=False)


def test_all_models_of_one_feature_are_its_two():
    """With one feature the 14 models are two (mclust's E and V): "all" fits those two, and a
    model asked for by name reaches the same optimum and criteria as its class's one."""
    x = load_faithful().iloc[:, :1]
    two = em_sweep(x, [1, 2, 3], "all", progress=False).table
    assert sorted(set(two["model_name"])) == ["EII", "VII"]
    named = em_sweep(x, [1, 2, 3], ("EEE", "EVV", "VEI", "VVV"), progress=False).table
    for name, stands_for in (("EEE", "EII"), ("EVV", "EII"), ("VEI", "VII"), ("VVV", "VII")):
        ours = named[named["model_name"] == name].set_index("n_components")
        theirs = two[two["model_name"] == stands_for].set_index("n_components")
        np.testing.assert_array_equal(ours["n_parameters"], theirs["n_parameters"])
        np.testing.assert_allclose(
            ours[["log_likelihood", "bic"]].astype(float),
            theirs[["log_likelihood", "bic"]].astype(float),
            atol=0.01,  # EM stops at gains below tol=1e-5 per row: 0.003 nats on 272 rows
        )


@pytest.mark.parametrize(
    ("X", "weight", "match"),
    [
        (np.c_[np.arange(20.0), np.ones(20)], None, "constant"),
        (np.r_[np.arange(20.0)], None, "2-D"),
        (np.c_[np.arange(20.0), np.r_[np.inf, np.arange(19.0)]], None, "infinity"),
        (np.c_[np.arange(20.0), np.full(20, np.nan)], None, "missing .NaN. in every row"),
        (np.c_[np.arange(20.0), np.arange(20.0) ** 2], np.ones(5), r"shape \(20,\)"),
        (np.c_[np.arange(20.0), np.arange(20.0) ** 2], -np.ones(20), "negative"),
    ],
)
def test_bad_data_and_weights_are_named_before_the_sweep(X, weight, match):
    """Data or weights that every fit would reject are one named error, not a table of
    identical failures ending in "Every EM fit failed ... increase reg_covar"."""
    with pytest.raises(ValueError, match=match):
        em_sweep(X, [1, 2], progress=False, sample_weight=weight)


def test_a_sweep_where_every_fit_fails_says_why_in_its_error():
    """With no table returned, the error itself names the cells' reasons and their counts."""
    X = np.random.default_rng(0).normal(size=(31, 3))
    with pytest.raises(ValueError, match=r"failed: .*n_samples >= n_components.*\(14 of 14 fits\)"):
        em_sweep(X, [40], "all", progress=False)


def test_a_dataframe_is_swept_as_its_values_with_its_feature_names():
    """The DataFrame is validated once: the same table as its values, and every fit carries the
    column names (predict on the DataFrame does not warn about feature names)."""
    frame = pd.DataFrame(np.asarray(load_faithful(), dtype=float), columns=["eruption", "wait"])
    swept = em_sweep(frame, [1, 2, 3], ["VVV", "EII"], progress=False)
    plain = em_sweep(frame.to_numpy(), [1, 2, 3], ["VVV", "EII"], progress=False)
    pd.testing.assert_frame_equal(swept.table, plain.table)
    for fit in swept.fits.values():
        assert list(fit.feature_names_in_) == ["eruption", "wait"]
    assert not hasattr(plain.fits[2, "VVV"], "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        swept.fits[2, "VVV"].predict(frame)


def test_target_accept_reaches_every_candidate_and_is_checked_before_em():
    """The divergence advice says to raise target_accept: model selection, the report and
    the command (--target-accept) now take it, checked before the sweep starts."""
    from bayesgmm.cli import _sampling, build_parser

    X = _four_small_clusters(15)
    with pytest.raises(ValueError, match="target_accept must be a number in \\(0, 1\\)"):
        select_n_components(X, [1, 2], target_accept=1.5, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = select_n_components(
            X, [1, 2], draws=30, tune=30, chains=1, target_accept=0.9, progress=False
        )
    assert {fit.idata_.posterior.attrs["target_accept"] for fit in chosen.fits.values()} == {0.9}
    args = build_parser().parse_args(["report", "--target-accept", "0.95"])
    assert _sampling(args)["target_accept"] == 0.95


def test_candidates_are_ranked_by_the_sampled_models_own_bic():
    """Two elongated clusters: VVI's BIC is best at K = 2, EII's (round components) at K = 3
    and 4. Sampling EII takes EII's best K, not the K of the best BIC over both models (R's
    milk, all 14 models swept and VVI sampled, got EEE's and EVE's best K)."""
    from bayesgmm.selection import Selection, _sampleable_candidates

    rng = np.random.default_rng(0)
    shift = np.array([0.0, 10.0])
    X = np.vstack([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + shift]) * [4.0, 0.3]
    sweep = em_sweep(X, [1, 2, 3, 4], ["EII", "VVI"], progress=False)
    bic = sweep.table.set_index(["model_name", "n_components"])["bic"]
    assert bic["VVI"].idxmin() == 2 and bic["VVI"].min() < bic["EII"].min()
    assert sorted(bic["EII"].sort_values().index[:2]) == [3, 4]
    assert _sampleable_candidates(Selection(em=sweep), 2, "EII", X.shape) == [3, 4]
    assert _sampleable_candidates(Selection(em=sweep), 2, "diag", X.shape) == [2, 3]
    # a sampled model the sweep lacks: every row ranks K, as before
    assert _sampleable_candidates(Selection(em=sweep), 2, "full", X.shape) == [2, 3]


def test_the_sweep_fits_the_sampled_model_when_asked_for_others():
    from bayesgmm.selection import _with_sampled

    X = np.zeros((10, 3))
    assert _with_sampled(["full"], "diag", X) == ["full", "diag"]
    assert _with_sampled(["full"], "VVV", X) == ["full"]  # full is VVV
    assert len(_with_sampled("all", "diag", X)) == 14  # VVI is among them
    assert _with_sampled(["full"], None, X) == ["full"]  # EM only: nothing is sampled
    assert _with_sampled(["full"], "diag", X[:, :1]) == ["full"]  # one feature: all alike


def test_a_model_with_a_component_on_a_point_mass_is_not_the_winner(monkeypatch):
    """K=3 has the better elpd and converged, but one of its components sits on rows sharing
    a value (the likelihood rewards the tie: cluster::plantTraits, K=3, by 196 nats): K=2
    wins, and the table says where K=3's point mass is."""
    from bayesgmm import selection
    from bayesgmm.selection import bayesian_comparison

    fits = _stub_fits()
    X = np.zeros((150, 2))  # (point_masses is replaced: only its being given counts)
    said = "component 1 sits on 31 of its 31 rows, which share x0 = 0"
    monkeypatch.setattr(
        selection, "point_masses", lambda fit, X: [said] if fit is fits["K=3"] else []
    )
    table = bayesian_comparison(fits, X)
    assert table["rank"].idxmin() == "K=3" and table["converged"].all()
    assert table.index[table["winner"]].tolist() == ["K=2"]
    assert table["point_mass"].to_dict() == {"K=3": said, "K=2": ""}
    assert bayesian_comparison(fits).index[bayesian_comparison(fits)["winner"]].tolist() == [
        "K=3"
    ]  # without the data nothing is checked


class _PointMassFit:
    """What point_masses reads: predict(X), the posterior's covariances (one draw, diagonal
    with the standard deviations ``stds``), the feature names."""

    def __init__(self, labels, stds):
        import xarray as xr

        self.labels, self.feature_names_ = labels, ["a", "b"]
        covariances = np.stack([np.diag(np.square(s)) for s in np.asarray(stds, dtype=float)])
        dims = ("chain", "draw", "component", "feature", "feature_bis")
        self.idata_ = xr.DataTree.from_dict(
            {"posterior": xr.Dataset({"covariances": (dims, covariances[None, None])})}
        )

    def predict(self, X):
        return self.labels


def test_point_masses_are_components_narrow_on_a_shared_value():
    from bayesgmm._pointmass import point_masses

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    X[:20, 0] = 0.0  # component 0's rows share a = 0
    labels = np.repeat([0, 1], 20)
    (said,) = point_masses(_PointMassFit(labels, [[1e-4, 1.0], [1.0, 1.0]]), X)
    assert said.startswith("component 0 sits on 20 of its 20 rows, which share a = 0")
    # not narrow (e.g. a rounded feature the prior's floor holds at its resolution)
    assert point_masses(_PointMassFit(labels, [[0.3, 1.0], [1.0, 1.0]]), X) == []
    X[:3, 0] = [1.0, 2.0, 3.0]  # 17 of 20 share the value: below 90%
    assert point_masses(_PointMassFit(labels, [[1e-4, 1.0], [1.0, 1.0]]), X) == []


def test_ranked_components_of_failed_fits_only_is_empty():
    """Every fit of the sampled model failed (VVV on 10 rows at K = 3, 4): no K to rank, and
    the candidates fall back on the other models' rows (test above: the K are then refused
    with their reasons)."""
    from bayesgmm.selection import ranked_components

    table = pd.DataFrame({"n_components": [3, 4], "status": "failed", "bic": np.nan})
    assert ranked_components(table) == []


def test_advice_to_sample_a_model_that_failed_at_every_k_above_one_says_so():
    """cluster's votes.repub (50 x 10), BIC's EVE K=2 sampled with diagonal covariances: the
    report advised VVV, which had failed at every K > 1 (more parameters than rows)."""
    from bayesgmm.selection import _unfitted_advice

    table = pd.DataFrame(
        {
            "n_components": [1, 2, 3, 2],
            "model_name": ["VVV", "VVV", "VVV", "EVE"],
            "status": ["ok", "failed", "failed", "ok"],
        }
    )
    said = _unfitted_advice(table, (2, "EVE"), "diag")
    assert said == (
        " But VVV could not be fitted at any K > 1 on these rows (the EM table says why), so "
        "neither can its posterior be sampled there."
    )
    table.loc[2, "status"] = "ok"  # fitted at K=3: the advice stands
    assert _unfitted_advice(table, (2, "EVE"), "diag") == ""
    assert _unfitted_advice(table.iloc[[0, 3]], (2, "EVE"), "diag") == ""  # (not swept)
    assert _unfitted_advice(table, (2, "EVE"), "full") == ""  # (VVV contains EVE: no advice)
