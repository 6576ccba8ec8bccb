"""The edge cases a real user hits: extreme scales, one component, dependent columns, an
extreme outlier, new data with other columns, and BayesianGMM as a scikit-learn estimator
that pickles and saves."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from bayesgmm import (
    BayesianGMM,
    CollapsedComponentWarning,
    CompileCache,
    EMGaussianMixture,
    GMMPriors,
    SamplerError,
    SamplingWarning,
    em_sweep,
    load_faithful,
    select_n_components,
)

RUN = dict(draws=40, tune=40, chains=2, random_seed=3, progressbar=False)


def _fit(X, k=2, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return BayesianGMM(k, **{**RUN, **kwargs}).fit(X)


@pytest.fixture(scope="module")
def faithful():
    return load_faithful()


@pytest.fixture(scope="module")
def reference(faithful):
    return _fit(faithful)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_extreme_scales_fit_as_at_scale_one(faithful, scale):
    """The model samples on standardised features: the same seed gives the same chains (to
    rounding, which NUTS trajectories amplify a little), and every reported number is the
    scale-1 number in the data's units. Unwhitened: whitened trajectories amplify rounding
    more (the Laplace approximation itself is the same at every scale: test_precondition)."""
    fit = _fit(faithful * scale, precondition="none")
    reference = _fit(faithful, precondition="none")
    posterior, base = fit.idata_.posterior, reference.idata_.posterior
    np.testing.assert_allclose(posterior["means"] / scale, base["means"], rtol=1e-6)
    np.testing.assert_allclose(posterior["stds"] / scale, base["stds"], rtol=1e-6)
    np.testing.assert_allclose(posterior["correlations"], base["correlations"], atol=1e-6)
    np.testing.assert_allclose(fit.predict_proba(), reference.predict_proba(), atol=1e-6)
    table, base_table = fit.compare(), reference.compare()
    for column in ("mean", "sd", "hdi_low", "hdi_high"):
        ratio = np.where(table["parameter"].str.startswith(("means", "stds")), scale, 1.0)
        np.testing.assert_allclose(table[column] / ratio, base_table[column], rtol=1e-5)
    np.testing.assert_allclose(table["z"], base_table["z"], rtol=1e-4, atol=1e-6)
    diagnostics = fit.diagnostics().set_index("check")["value"]
    expected = reference.diagnostics().set_index("check")["value"]
    np.testing.assert_allclose(diagnostics, expected, rtol=0.02)
    log_lik = fit.idata_.log_likelihood["obs"] + 2 * np.log(scale)  # the Jacobian per row
    np.testing.assert_allclose(log_lik, reference.idata_.log_likelihood["obs"], rtol=1e-5)


def test_priors_from_tiny_data_are_not_constant(faithful):
    priors = GMMPriors.from_data(faithful * 1e-200)
    np.testing.assert_allclose(
        np.asarray(priors.sd_scale) / 1e-200, faithful.std(ddof=0).to_numpy(), rtol=1e-12
    )
    assert np.all(np.isfinite(GMMPriors.from_data(faithful * 1e200).means_scale))
    # the inverse-gamma's scale is kept as a standard deviation: no variance to overflow
    unit = GMMPriors.from_data(faithful, sd_prior="inverse_gamma", n_components=3)
    for factor in (1e-200, 1e200):
        scaled = GMMPriors.from_data(faithful * factor, sd_prior="inverse_gamma", n_components=3)
        np.testing.assert_allclose(np.asarray(scaled.sd_scale) / factor, unit.sd_scale, rtol=1e-12)
        loc, scale = faithful.mean().to_numpy() * factor, faithful.std(ddof=0).to_numpy() * factor
        np.testing.assert_allclose(
            scaled.standardised(loc, scale).sd_scale,
            unit.standardised(loc / factor, scale / factor).sd_scale,
            rtol=1e-12,
        )


def test_one_component_fits_and_summarises(faithful):
    fit = _fit(faithful, k=1)
    assert np.all(fit.idata_.posterior["weights"].values == 1.0)
    table = fit.diagnostics().set_index("check")
    assert "weights[0]" not in str(table["worst"].tolist())  # constant: no R-hat, no gate
    assert len(fit.summary()) == 1 + 2 + 3
    assert (fit.predict() == 0).all()


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (lambda f: 3.0 * f["eruptions"] - 7.0, r"column 'extra' repeats column 'eruptions'"),
        (lambda f: f["eruptions"] + 0.1 * f["waiting"], r"linearly dependent"),
    ],
)
def test_dependent_columns_are_named_before_any_work(faithful, column, message, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("EM started")

    monkeypatch.setattr("bayesgmm.em.EMGaussianMixture._fit", started)  # every EM fit
    frame = faithful.assign(extra=column(faithful))
    with pytest.raises(ValueError, match=message) as caught:
        BayesianGMM(2).fit(frame)
    assert "--columns eruptions waiting" in str(caught.value)


def test_infinite_cells_are_refused_before_any_work(faithful, monkeypatch):
    """(NaN cells are missing values, which BayesianGMM fits: tests/test_bayesian_missing.py.)"""

    def started(*args, **kwargs):
        raise AssertionError("EM started")

    monkeypatch.setattr("bayesgmm.em.EMGaussianMixture._fit", started)
    frame = faithful.astype(float)
    frame.loc[3, "waiting"] = np.inf
    with pytest.raises(ValueError, match=r"contains infinity .*'waiting'.*Correct or drop"):
        BayesianGMM(2).fit(frame)


def test_an_extreme_outlier_is_named_before_sampling(faithful):
    frame = faithful.copy()
    frame.loc[3, "waiting"] = 1e12
    with pytest.raises(SamplerError, match=r"row 3 lies .* standard deviations.*'waiting'"):
        _fit(frame)


def test_bayesian_fits_name_collapsed_rows_by_the_data_index(faithful):
    """BayesianGMM.fit rebuilt its frame with a default index after leaving out the empty
    rows, so EM's collapse warning named positions among the rows kept."""
    frame = faithful.copy()
    frame.loc[3, "waiting"] = 1e12
    frame.loc[0] = np.nan  # left out: the positions shift, the labels do not
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="data row")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SamplerError):
            _fit(frame)
    assert any("mostly rows [4] (data row)" in str(w.message) for w in caught)


def test_a_component_collapsed_onto_an_outlier_names_its_rows(faithful):
    """carData's Davis (one row's weight and height swapped): EM collapsed every K >= 2 onto
    that row and a few others, and the warning named no row. The rows a component on too
    few rows holds are named, most responsible first."""
    frame = faithful.copy()
    frame.loc[3, "waiting"] = 1e12
    with pytest.warns(CollapsedComponentWarning) as caught:
        EMGaussianMixture(2, random_state=0).fit(frame)
    (message,) = [str(w.message) for w in caught if w.category is CollapsedComponentWarning]
    held = "component 0: effective size 1, covariance at the reg_covar floor, mostly rows [3]"
    assert held in message
    assert "component 1: effective size 271, covariance at the reg_covar floor." in message
    assert "an outlying row" in message


def test_collapsed_rows_are_named_by_the_data_index(faithful):
    """carData's UN with the command's ``--dropna``: the warning named positions among the
    rows kept ("rows [53, 3, 32, 0, 70]"), read as the file's rows (60, 5, 37, 1, 81). A
    DataFrame's index names them, in a fit and in a sweep; its name says what they count;
    no stray "X does not have valid feature names" warning comes with it."""
    frame = faithful.copy()
    frame.loc[3, "waiting"] = 1e12
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="data row")  # as the command reads it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        EMGaussianMixture(2, random_state=0).fit(frame)
    said = [str(w.message) for w in caught]
    assert any("mostly rows [4] (data row)" in m for m in said), said
    assert not any("feature names" in m for m in said), said
    dropped = frame.drop(index=[1, 2])  # positions shift, labels do not
    with pytest.warns(CollapsedComponentWarning, match=r"mostly rows \[4\] \(data row\)"):
        EMGaussianMixture(2, random_state=0).fit(dropped)
    sweep = em_sweep(dropped, [2], ["full"], progress=False, random_state=0)
    assert "mostly rows [4] (data row)" in sweep.table["message"].iloc[0]
    unnamed = frame.set_axis(frame.index * 10, axis=0).rename_axis(None)
    with pytest.warns(CollapsedComponentWarning, match=r"mostly rows \[40\] \(the index\)"):
        EMGaussianMixture(2, random_state=0).fit(unnamed)
    dated = frame.set_axis(pd.date_range("2020-01-01", periods=len(frame)), axis=0)
    with pytest.warns(CollapsedComponentWarning, match=r"rows \['2020-01-04 00:00:00'\]"):
        EMGaussianMixture(2, random_state=0).fit(dated)


def test_a_candidate_that_cannot_be_sampled_is_reported_not_fatal(faithful):
    """At K=2 EM puts a component on the outlier and sampling cannot start; K=1 can."""
    frame = faithful.copy()
    frame.loc[3, "waiting"] = 1e12
    with pytest.warns(SamplingWarning, match="K=2 could not be sampled"):
        selection = select_n_components(
            frame, range(1, 3), draws=20, tune=20, chains=2, progress=False
        )
    assert list(selection.fits) == ["K=1"]
    assert "row 3" in selection.failed["K=2"]


def test_new_data_must_have_the_fitted_columns(faithful, reference):
    reordered = faithful[["waiting", "eruptions"]]
    renamed = faithful.rename(columns={"waiting": "wait"})
    for method in ("predict", "predict_proba", "membership", "co_clustering"):
        call = getattr(reference, method)
        with pytest.raises(ValueError, match="same order"):
            call(reordered.head(20))
        with pytest.raises(ValueError, match="unseen at fit time"):
            call(renamed.head(20))
        with pytest.raises(ValueError, match="features"):
            call(faithful.to_numpy()[:20, :1])
    np.testing.assert_array_equal(reference.predict(faithful), reference.predict())


def test_scikit_learn_estimator_protocol(reference):
    params = reference.get_params()
    assert params["n_components"] == 2 and params["draws"] == 40
    copy = clone(reference)
    assert copy.get_params() == params and not hasattr(copy, "idata_")
    assert copy.set_params(n_components=3).n_components == 3
    assert "BayesianGMM(" in repr(copy)
    cache = CompileCache()
    assert clone(BayesianGMM(compile_cache=cache)).compile_cache is cache  # shared


def test_pickled_fit_predicts_and_rebuilds_its_model(faithful, reference):
    restored = pickle.loads(pickle.dumps(reference))
    np.testing.assert_array_equal(restored.predict(faithful), reference.predict(faithful))
    assert restored.model_["means"] is not None


def test_saved_fit_loads_without_sampling(faithful, reference, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    reference.save(path)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled again")

    monkeypatch.setattr("bayesgmm.bayesian.sample_posterior", no_sampling)
    loaded = BayesianGMM.load(path)
    assert loaded.get_params() == {**reference.get_params(), "compile_cache": None}
    np.testing.assert_array_equal(loaded.predict(faithful), reference.predict(faithful))
    np.testing.assert_allclose(loaded.predict_proba(), reference.predict_proba())
    pd.testing.assert_frame_equal(loaded.compare(), reference.compare())
    pd.testing.assert_frame_equal(loaded.summary(), reference.summary())
    pd.testing.assert_frame_equal(loaded.diagnostics(), reference.diagnostics())
    np.testing.assert_allclose(loaded.em_.means_, reference.em_.means_, rtol=1e-10)
    with pytest.raises(ValueError, match="same order"):
        loaded.predict(faithful[["waiting", "eruptions"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]  # no temporary left


def test_load_refuses_other_files(tmp_path):
    path = tmp_path / "other.nc"
    path.write_bytes(b"not a netCDF file")
    with pytest.raises(ValueError, match="cannot read a saved fit"):
        BayesianGMM.load(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_components": "3"}, r"n_components must be an integer >= 1, got '3'"),
        ({"n_components": True}, r"n_components must be an integer"),
        ({"draws": 0}, r"draws must be an integer >= 1"),
        ({"tune": -1}, r"tune must be an integer >= 0"),
        ({"random_seed": -2}, r"random_seed must be an integer >= 0"),
        ({"target_accept": 1.5}, r"target_accept must be a number in \(0, 1\)"),
        ({"priors": {"lkj_eta": 2}}, r"priors must be a GMMPriors"),
        ({"sampler": "stan"}, r"Unknown sampler 'stan'"),
        ({"sd_prior": "gamma"}, r"sd_prior 'gamma'.*'resolution'"),
        ({"sd_prior": "resolution", "priors": GMMPriors()}, r"with priors= given, set it there"),
    ],
)
def test_bad_parameters_are_named(faithful, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BayesianGMM(**{"n_components": 2, **kwargs}).fit(faithful)


def test_errors_never_name_internal_classes(faithful):
    with pytest.raises(ValueError) as caught:
        from bayesgmm import build_model

        build_model(faithful.head(1), 1)
    assert "_Holder" not in str(caught.value) and "build_model" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_components": range(1, 501)}, r"K=500 exceeds the 272 observations"),
        ({"n_components": [0, 2]}, r"positive integers"),
        ({"n_candidates": 0}, r"n_candidates must be an integer >= 1"),
        ({"draws": 0}, r"draws must be an integer >= 1"),
    ],
)
def test_selection_arguments_are_checked_before_the_sweep(faithful, kwargs, message, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("the sweep started")

    monkeypatch.setattr("bayesgmm.selection.em_sweep", started)
    with pytest.raises(ValueError, match=message):
        select_n_components(faithful, **{"n_components": range(1, 3), **kwargs})


def test_more_free_parameters_than_rows_warns_before_sampling(monkeypatch):
    """Two full 4 x 4 covariances from 20 rows (29 free parameters, like swiss's 55 for 47):
    a SamplingWarning naming the smaller models that fit, before the model is built; none
    once the rows (or their weights) outnumber the parameters, or with a smaller model."""
    import bayesgmm.bayesian as bayesian

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the model")

    monkeypatch.setattr(bayesian, "build_model", stop)
    X = np.random.default_rng(0).normal(size=(20, 4))
    X[:10] += 4.0
    expected = (
        r"29 free parameters for 20 rows.*'diag' \(17 free parameters\), covariance_type='tied' "
        r"\(19 free parameters\) or covariance_type='spherical' \(11 free parameters\)"
        r".*or a single component \(14 free parameters\), i\.e\. no mixture\.$"
    )
    with pytest.warns(SamplingWarning, match=expected), pytest.raises(RuntimeError):
        BayesianGMM(2, random_seed=0).fit(X)
    quiet = [
        dict(model=BayesianGMM(2, random_seed=0, covariance_type="diag")),
        dict(model=BayesianGMM(2, random_seed=0), sample_weight=np.full(20, 2.0)),
    ]
    for case in quiet:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SamplingWarning)
            with pytest.raises(RuntimeError):
                case["model"].fit(X, sample_weight=case.get("sample_weight"))


def test_too_many_parameters_even_for_one_component_says_so():
    """R's longley (16 rows, 7 features): one full component alone has 35 free parameters,
    so "fewer components" is no remedy; the warning names a smaller model that fits, or
    fewer features when none does."""
    from bayesgmm._fitwarnings import warn_many_parameters

    with pytest.warns(SamplingWarning) as caught:
        warn_many_parameters(16, 2, 7, "full")
    message = str(caught[0].message)
    assert "71 free parameters for 16 rows" in message
    with pytest.warns(SamplingWarning, match=r"'full', 1 component, 7 features\) has 35"):
        warn_many_parameters(16, 1, 7, "full")  # (HSAUR3's pottery read "1 components")
    # no smaller model fits two components either: the remedy is fewer components only
    assert message.endswith(
        "Use covariance_type='diag' with a single component (14 free parameters), i.e. no mixture."
    )
    with pytest.warns(SamplingWarning) as caught:
        warn_many_parameters(30, 2, 6, "full")  # two diagonal or spherical components fit
    assert str(caught[0].message).endswith(
        "Use covariance_type='diag' (25 free parameters) or covariance_type='spherical' (15 "
        "free parameters), or a single component (27 free parameters), i.e. no mixture."
    )
    from bayesgmm.cli import command_terms  # (cluster votes.repub: "... or 'spherical'")

    assert (
        "--bayes-covariance-type diag (25 free parameters) or --bayes-covariance-type "
        "spherical (15" in command_terms(str(caught[0].message))
    )
    with pytest.warns(
        SamplingWarning, match=r"fewer features \(one 'full' component alone has 35\)"
    ):
        warn_many_parameters(7, 2, 7, "full")  # not even one spherical one (8)


@pytest.mark.parametrize(
    "k, covariance_type, weight, match",
    [  # carData's Duncan is 45 x 3: K = 45 full covariances ran NUTS over 10 minutes
        (45, "full", None, r"K=45 needs 180 rows .* but has 45.* Use at most 11 components\."),
        (12, "full", None, r"K=12 needs 48 rows .* Use at most 11 components\."),
        (23, "diag", None, r"VVI model with K=23 needs 46 rows .* at most 22 components\."),
        # rows of weight 0 span nothing: 40 carry weight, so 10 full components at most
        (11, "full", np.r_[np.zeros(5), np.ones(40)], r"but has 40.* at most 10 components"),
    ],
)
def test_more_components_than_the_rows_support_are_refused_before_any_work(
    monkeypatch, k, covariance_type, weight, match
):
    """Fewer rows than the components' covariances need (D + 1 each for full, two each for
    diagonal): every EM fit collapses a component and the posterior is the priors', so the
    fit is refused with the largest K the rows support, before EM starts."""

    def started(*args, **kwargs):
        raise AssertionError("EM started")

    monkeypatch.setattr("bayesgmm.em.EMGaussianMixture._fit", started)
    X = np.random.default_rng(0).normal(size=(45, 3))
    model = BayesianGMM(k, covariance_type=covariance_type, random_seed=0)
    with pytest.raises(ValueError, match=match):
        model.fit(X, sample_weight=weight)
    assert not hasattr(model, "feature_names_")  # nothing set on a refused fit


def test_a_single_component_is_the_remedy_when_the_rows_support_no_mixture():
    from bayesgmm._fitwarnings import refuse_too_few_rows

    with pytest.raises(ValueError, match=r"Use a single component, i\.e\. no mixture\.$"):
        refuse_too_few_rows(7, 2, 5, "full")  # two full 5-feature components need 12 rows
    with pytest.raises(ValueError, match=r"Use covariance_type='diag' with at most 3 components"):
        refuse_too_few_rows(6, 4, 6, "full")  # not even one full one (7 rows): 3 diagonal ones
    refuse_too_few_rows(12, 2, 5, "full")  # exactly enough: no error


def test_a_component_collapsed_onto_tied_values_warns_before_sampling(monkeypatch):
    """Zero-inflated like fgl's Ba (176 of 214 rows exactly 0): EM puts a component on the
    zeros with its spread at the floor, where the posterior has no bound; fit warns, naming
    the feature, the value and the count, before the model is built. Jittered by the
    rounding unit (0.01), the same data give no such warning."""
    import bayesgmm.bayesian as bayesian

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the model")

    monkeypatch.setattr(bayesian, "build_model", stop)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=80), "b": 0.0})
    X.loc[50:, "b"] = rng.normal(3.0, 1.0, size=30)
    with pytest.warns(SamplingWarning, match=r"component \d on b = 0, a value 50 rows share"):
        with pytest.raises(RuntimeError):
            BayesianGMM(2, random_seed=0, sd_prior="halfnormal").fit(X)
    X["b"] += rng.uniform(-0.005, 0.005, size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplingWarning)
        with pytest.raises(RuntimeError):
            BayesianGMM(2, random_seed=0, sd_prior="halfnormal").fit(X)


@pytest.mark.parametrize(
    ("tied", "covariance_type", "sd_prior", "unbounded"),
    [
        (["b"], "full", "resolution", False),
        (["b", "c"], "full", "resolution", False),
        (["b", "c"], "diag", "resolution", False),
        (["b", "c"], "full", "inverse_gamma", True),
    ],
)
def test_the_default_prior_bounds_a_collapse_onto_tied_features(
    monkeypatch, tied, covariance_type, sd_prior, unbounded
):
    """The default resolution prior bounds each standard deviation at the rounding noise of a
    tied feature, and with full covariances each variance given the other features too: a
    component on rows sharing values on one or two features is then proper, and fit does not
    warn of a collapse (rows tied on two features still get the joint-ties warning, which says
    the posterior is bounded). The inverse-gamma bounds each variance only, so on two tied
    features a full covariance's correlation can run to +-1: that collapse warns, naming it."""
    import bayesgmm.bayesian as bayesian

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the model")

    monkeypatch.setattr(bayesian, "build_model", stop)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(np.round(rng.normal(size=(80, 3)), 2), columns=["a", "b", "c"])
    X.loc[:49, tied] = 0.0
    X.loc[50:, tied] += 3.0
    model = BayesianGMM(2, random_seed=0, covariance_type=covariance_type, sd_prior=sd_prior)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError):
            model.fit(X)
    assert model.priors_.sd_prior == sd_prior
    messages = [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]
    collapse = [m for m in messages if "tied values" in m]
    if unbounded:
        (message,) = collapse
        assert "a value 50 rows share" in message and "several features" in message
    else:
        assert collapse == [], messages
    joint = [m for m in messages if m.startswith("50 of 80 rows share b = 0 and c = 0")]
    assert len(joint) == (len(tied) == 2 and covariance_type == "full" and not unbounded)
    assert all(("posterior is bounded" in m) == (sd_prior == "resolution") for m in joint)


class _NothingCollapsed:
    """A fitted EM as the tie warnings read it (a real fit's covariances and labels), with no
    collapsed component."""

    def __init__(self, X: np.ndarray, n_components: int):
        em = EMGaussianMixture(n_components, n_init=2, random_state=0).fit(X)
        self.n_components, self.collapsed_components_ = n_components, []
        self.covariances_, self.precisions_cholesky_ = em.covariances_, em.precisions_cholesky_
        self.model_name_, self.predict = em.model_name_, em.predict


def _tie_warnings(X, n_components, covariance_type="full", priors=None) -> list[str]:
    from bayesgmm._fitwarnings import warn_collapse_on_ties
    from bayesgmm.priors import GMMPriors

    X = np.asarray(X, dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_collapse_on_ties(
            X,
            _NothingCollapsed(X, n_components),
            [f"x{j}" for j in range(X.shape[1])],
            priors=priors or GMMPriors.from_data(X[~np.isnan(X).any(axis=1)]),  # complete rows
            covariance_type=covariance_type,
        )
    return [str(w.message) for w in caught if issubclass(w.category, SamplingWarning)]


def _tied_rows(n_tied: int, features=(1, 2)) -> np.ndarray:
    X = np.round(np.random.default_rng(0).normal(size=(120, 3)), 2)
    X[:n_tied, list(features)] = 0.0
    return X


def test_many_rows_tied_on_two_features_warn_for_full_covariances_only():
    """fgl's case: 120 of 214 rows share Ba = 0 and Fe = 0 and EM's one collapse (on Ba alone)
    is bounded by the prior, yet NUTS's chains gather in spikes on those rows (a full
    covariance's correlation runs to +-1). EM collapsed nothing here, so only these rows speak.
    Rows tied on two features warn, naming both values and the count, from half a
    component's average share of rows (here 20 of 120 at K = 3); not below it, not with one
    component, not with diagonal or shared covariances, not for ties on one feature, and a row
    ties only where both of its cells are observed."""
    (message,) = _tie_warnings(_tied_rows(20), 3)
    assert message.startswith("20 of 120 rows share x1 = 0 and x2 = 0")
    assert "covariance_type='diag'" in message
    assert _tie_warnings(_tied_rows(19), 3) == []
    assert _tie_warnings(_tied_rows(80), 1) == []  # one component holds every row
    assert len(_tie_warnings(_tied_rows(80), 2)) == 1
    assert _tie_warnings(_tied_rows(40), 3, "diag") == []
    assert _tie_warnings(_tied_rows(40), 3, "tied") == []
    assert _tie_warnings(_tied_rows(40, features=(1,)), 3) == []
    X = _tied_rows(40)
    X[:21, 2] = np.nan
    assert _tie_warnings(X, 3) == []


def test_rows_tied_on_two_features_stay_quiet_on_real_rounded_data():
    """iris is rounded to 0.1 cm (petal width 0.2 on 29 of 150 rows, at most 8 rows on one
    pair of values): no warning for any K up to 9."""
    X = (
        pd.read_csv(Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "iris.csv")
        .select_dtypes("number")
        .to_numpy(float)
    )
    assert all(_tie_warnings(X, k) == [] for k in range(1, 10))


class _Labelled:
    """A fitted EM with given covariances (``VVV``) and labels, for :func:`tie_spike`."""

    def __init__(self, covariances: np.ndarray, labels: np.ndarray):
        from bayesgmm._gaussian import precision_cholesky

        self.n_components, self.model_name_ = len(covariances), "VVV"
        self.precisions_cholesky_ = precision_cholesky(covariances, "full")
        self.collapsed_components_ = []
        self.predict = lambda X: labels


def test_the_spike_on_tied_rows_is_measured_against_ems_spread_given_the_others():
    """tie_spike's gain in closed form: 60 rows share x0 = 5, 40 of them in component 0 and
    20 in component 1. Under the barrier ``exp(-f^2 / s^2)`` the spike peaks at
    ``s* = f sqrt(2 / 60)``; each tied row gains ``log(s_k / s*)`` where ``s_k`` is its
    component's spread along x0 given x1 (``sqrt(var (1 - rho^2))``), less the barrier's 30."""
    from bayesgmm._fitwarnings import tie_spike

    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 2))
    X[:60, 0] = 5.0
    labels = np.r_[np.zeros(40, int), np.ones(20, int), rng.integers(0, 2, 90)]
    covariances = np.array([[[4.0, 1.6], [1.6, 1.0]], [[9.0, 0.0], [0.0, 2.0]]])
    floor = np.array([0.05, 0.0])  # x1: no barrier, never measured
    spike = tie_spike(X, _Labelled(covariances, labels), floor)
    narrowest = 0.05 * np.sqrt(2 / 60)
    given_x1 = np.sqrt([4.0 * (1 - 0.8**2), 9.0])
    assert (spike.feature, spike.value, spike.count, spike.component) == (0, 5.0, 60, 0)
    assert spike.spread == pytest.approx(given_x1[0])
    assert spike.narrowest == pytest.approx(narrowest)
    expected = 40 * np.log(given_x1[0] / narrowest) + 20 * np.log(given_x1[1] / narrowest) - 30
    assert spike.gain == pytest.approx(expected)
    assert tie_spike(X, _Labelled(covariances, labels), np.zeros(2)) is None
    X[:60, 0] = np.r_[np.full(30, 5.0), np.full(30, 6.0)]  # 30 < half of 150 / 2 rows: too few
    assert tie_spike(X, _Labelled(covariances, labels), floor) is None


def test_the_spike_counts_a_weighted_row_as_its_repeats():
    """Frequency weights: the spike measured with weights is the one measured on the rows
    repeated that many times (a row of weight 0 as absent)."""
    from bayesgmm._fitwarnings import tie_spike

    rng = np.random.default_rng(2)
    X = np.round(rng.normal(size=(120, 2)), 2)
    X[:50, 1] = 1.5
    labels = rng.integers(0, 2, 120)
    covariances = np.array([[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.0], [0.0, 3.0]]])
    weight = rng.integers(0, 4, 120)
    floor = np.array([0.01, 0.02])
    weighted = tie_spike(X, _Labelled(covariances, labels), floor, weight)
    repeated = tie_spike(
        np.repeat(X, weight, axis=0), _Labelled(covariances, np.repeat(labels, weight)), floor
    )
    assert weighted.count == repeated.count == weight[:50].sum()
    assert (weighted.feature, weighted.component) == (repeated.feature, repeated.component)
    assert weighted.gain == pytest.approx(repeated.gain)
    assert weighted.gain != pytest.approx(tie_spike(X, _Labelled(covariances, labels), floor).gain)


def _capped(quantile: float = 0.7) -> pd.DataFrame:
    """Two groups on four features; the last one capped at its ``quantile`` (like Ozone's
    inversion base height at 5000 ft): every row above it holds the cap."""
    rng = np.random.default_rng(3)
    n = 240
    group = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 4)) * [1.0, 1.0, 1.0, 1500.0] + np.outer(group, [3, 3, 0, 1000])
    X = pd.DataFrame(X, columns=["a", "b", "c", "height"]).round(
        {"a": 2, "b": 2, "c": 2, "height": 0}
    )
    X["height"] = np.minimum(X["height"], np.quantile(X["height"], quantile).round())
    return X


@pytest.mark.parametrize(
    ("covariance_type", "sd_prior", "warns"),
    [
        ("full", "resolution", True),
        ("diag", "resolution", True),
        ("tied", "resolution", False),  # one covariance for all: no component narrows alone
        ("spherical", "resolution", False),
        ("full", "halfnormal", False),  # unmeasured there (the spike has no bound)
    ],
)
def test_a_capped_feature_warns_of_the_spike_before_sampling(
    monkeypatch, covariance_type, sd_prior, warns
):
    """Rows at a cap (the top 30%, from both groups) leave EM's optimum alone but put a deep
    spike in the posterior: fit warns before the model is built, naming the feature, the value
    and the count, and says to mark the capped cells missing; with them missing (NaN), or at
    a few rows, it does not."""
    import bayesgmm.bayesian as bayesian

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the model")

    monkeypatch.setattr(bayesian, "build_model", stop)

    def spikes(X) -> list[str]:
        model = BayesianGMM(2, random_seed=0, covariance_type=covariance_type, sd_prior=sd_prior)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(RuntimeError):
                model.fit(X)
        assert not any("feature names" in str(w.message) for w in caught)
        return [str(w.message) for w in caught if "rounding noise" in str(w.message)]

    X = _capped()
    cap = X["height"].max()
    count = int((X["height"] == cap).sum())
    found = spikes(X)
    assert len(found) == warns, found
    if warns:
        assert found[0].startswith(f"{count} of 240 rows share height = {cap:g}: ")
        assert "mark those cells missing (NaN)" in found[0]
    X.loc[X["height"] == cap, "height"] = np.nan
    assert spikes(X) == []
    assert spikes(_capped(0.9)) == []  # 24 rows at the cap: fewer than half a component's


def test_the_spike_warning_is_for_per_component_spreads_under_the_resolution_prior():
    """With EM's fit the same (full covariances), the capped rows' spike warns for the full
    and diagonal Bayesian models (as deep at any scale of the data), not for the spherical
    or shared ones (whose components cannot narrow one feature alone), and not under priors
    other than the resolution prior even when they carry its floors (the HalfNormal has no
    barrier there)."""
    import dataclasses

    from bayesgmm.priors import GMMPriors

    X = _capped().to_numpy(float)
    (message,) = _tie_warnings(X, 2, "full")
    depth = message.split("about ")[-1].split(" nats")[0]
    for scale in (1e-200, 1e200):  # EM's covariances under- and overflow there
        assert [m.split("about ")[-1].split(" nats")[0] for m in _tie_warnings(X * scale, 2)] == [
            depth
        ]
    assert len(_tie_warnings(X, 2, "diag")) == 1
    assert _tie_warnings(X, 2, "spherical") == []
    assert _tie_warnings(X, 2, "tied") == []
    halfnormal = dataclasses.replace(GMMPriors.from_data(X), sd_prior="halfnormal")
    assert _tie_warnings(X, 2, "full", priors=halfnormal) == []


def test_the_spike_on_a_feature_no_other_warning_named_still_warns():
    """Rows tied on two other features get the joint-ties warning, which names those two;
    the cap on a third feature still gets its own. When the joint ties include the capped
    feature, the joint warning alone speaks for those rows."""
    X = _capped()
    cap = X["height"].max()
    others = np.flatnonzero(X["height"] < cap)[:70]
    X.loc[others, ["a", "b"]] = 0.0
    messages = _tie_warnings(X.to_numpy(float), 2)
    assert len(messages) == 2
    assert messages[0].startswith("70 of 240 rows share x0 = 0 and x1 = 0")
    assert "x3 = " in messages[1] and "rounding noise" in messages[1]
    X = _capped()
    X.loc[X["height"] == cap, "a"] = 0.0  # the capped rows tie on a too
    (message,) = _tie_warnings(X.to_numpy(float), 2)
    assert message.startswith(f"{int((X['height'] == cap).sum())} of 240 rows share x0 = 0")


def test_cli_sd_prior_reaches_the_fit(tmp_path, monkeypatch):
    """``bayesgmm fit --sd-prior resolution`` builds ``BayesianGMM(sd_prior="resolution")``."""
    from bayesgmm import bayesian
    from bayesgmm.cli import main

    seen = []

    class Stop(Exception):
        pass

    class Recording:
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["sd_prior"])

        def fit(self, X):
            raise Stop

    monkeypatch.setattr(bayesian, "BayesianGMM", Recording)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n2,3.5\n3,1\n4,0.5\n")
    main(["fit", str(csv), "--components", "1", "--sd-prior", "resolution", "--quiet"])
    assert seen == ["resolution"]  # (main reports the Stop as an unexpected error)
    assert main(["fit", str(csv), "--components", "1", "--sd-prior", "gamma"]) == 2
