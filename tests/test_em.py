"""EMGaussianMixture against scikit-learn's GaussianMixture, SciPy, invariants and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayesgmm import CollapsedComponentWarning, EMGaussianMixture
from bayesgmm import _gaussian as g
from bayesgmm.datasets import load_faithful, simulate_mixture

from ._starts import identity_precisions

COV_TYPES = g.COVARIANCE_TYPES


@parametrize_with_checks(
    [
        EMGaussianMixture(),
        EMGaussianMixture(2, random_state=0),
        EMGaussianMixture(2, covariance_type="diag", init_params="random", random_state=0),
        EMGaussianMixture(2, covariance_type="tied", init_params="k-means++", random_state=0),
        EMGaussianMixture(
            2, covariance_type="spherical", init_params="random_from_data", random_state=0
        ),
    ],
    # Weighted and repeated rows draw different random starts (k-means' own check fails the
    # same way); from the same start the fits are equal (tests/test_weights.py).
    expected_failed_checks=lambda est: (
        {"check_sample_weight_equivalence_on_dense_data": "random starts differ"}
        if est.n_components > 1
        else {}
    ),
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # tiny check data sets legitimately produce degenerate fits
        warnings.simplefilter("ignore", CollapsedComponentWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def standardised():
    """Overlapping D=3, K=3 data standardised so relative and absolute reg_covar coincide."""
    sim = simulate_mixture(
        500,
        weights=[0.4, 0.35, 0.25],
        means=[[0, 0, 0], [3, 1, 0], [0, 3, 3]],
        covariances=np.stack([np.eye(3)] * 3),
        random_state=3,
    )
    return (sim.X - sim.X.mean(axis=0)) / sim.X.std(axis=0)


def _initial(X, cov_type, k=3):
    rng = np.random.default_rng(0)
    d = X.shape[1]
    precisions = identity_precisions(cov_type, k, d)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    return {"weights_init": np.full(k, 1 / k), "means_init": means, "precisions_init": precisions}


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_reaches_sklearn_optimum_from_same_start(standardised, cov_type):
    kw = dict(
        covariance_type=cov_type, tol=1e-14, max_iter=5000, **_initial(standardised, cov_type)
    )
    ours = EMGaussianMixture(3, **kw).fit(standardised)
    theirs = GaussianMixture(3, **kw).fit(standardised)
    assert ours.converged_ and theirs.converged_
    np.testing.assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-8)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours.predict(standardised), theirs.predict(standardised))


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_score_samples_matches_scipy_oracle(three_clusters, cov_type):
    X = three_clusters.X
    em = EMGaussianMixture(3, covariance_type=cov_type, random_state=0).fit(X)
    full = g.full_covariances(em.covariances_, cov_type, 3, 2)
    dens = np.column_stack([multivariate_normal(em.means_[k], full[k]).logpdf(X) for k in range(3)])
    expected = logsumexp(dens + np.log(em.weights_), axis=1)
    np.testing.assert_allclose(em.score_samples(X), expected, rtol=1e-10)
    np.testing.assert_allclose(em.score(X), expected.mean(), rtol=1e-10)
    resp = em.predict_proba(X)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        resp, np.exp(dens + np.log(em.weights_) - expected[:, None]), atol=1e-10
    )


def test_recovers_known_truth(three_clusters):
    em = EMGaussianMixture(3, random_state=0, n_init=3).fit(three_clusters.X)
    order = np.argsort(em.means_[:, 0] + 2 * em.means_[:, 1])
    truth_order = np.argsort(three_clusters.means[:, 0] + 2 * three_clusters.means[:, 1])
    np.testing.assert_allclose(em.means_[order], three_clusters.means[truth_order], atol=0.25)
    np.testing.assert_allclose(em.weights_[order], three_clusters.weights[truth_order], atol=0.05)
    np.testing.assert_allclose(
        em.covariances_[order], three_clusters.covariances[truth_order], atol=0.3
    )


def test_faithful_two_components_matches_mclust():
    X = load_faithful()
    em = EMGaussianMixture(2, tol=1e-8, max_iter=1000, random_state=0).fit(X)
    # R mclust 6, Mclust(faithful, G = 2, modelNames = "VVV"): loglik -1130.264, BIC -2322.192
    np.testing.assert_allclose(em.lower_bound_ * 272, -1130.264, atol=1e-2)
    np.testing.assert_allclose(em.bic(X), 2322.192, atol=2e-2)
    assert list(em.feature_names_in_) == ["eruptions", "waiting"]


def test_fit_predict_equals_fit_then_predict(three_clusters):
    X = three_clusters.X
    a = EMGaussianMixture(3, max_iter=2, random_state=5, init_params="random")
    with pytest.warns(ConvergenceWarning):
        labels = a.fit_predict(X)
    np.testing.assert_array_equal(labels, a.predict(X))


def test_information_criteria(three_clusters):
    X = three_clusters.X
    em = EMGaussianMixture(3, random_state=0).fit(X)
    n, p = X.shape[0], em.n_parameters()
    log_l = em.score_samples(X).sum()
    assert p == 3 * 3 + 3 * 2 + 2
    np.testing.assert_allclose(em.bic(X), -2 * log_l + p * np.log(n))
    np.testing.assert_allclose(em.aic(X), -2 * log_l + 2 * p)
    z = em.predict_proba(X)
    np.testing.assert_allclose(em.icl(X), em.bic(X) - 2 * np.log(z.max(axis=1)).sum(), rtol=1e-10)
    assert em.icl(X) >= em.bic(X)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_features=st.integers(1, 3),
    n_components=st.integers(1, 3),
    cov_type=st.sampled_from(COV_TYPES),
)
def test_log_likelihood_never_decreases_without_regularisation(
    seed, n_features, n_components, cov_type
):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, n_features)) + rng.integers(0, 3, size=(60, 1)) * 2.0
    em = EMGaussianMixture(
        n_components,
        covariance_type=cov_type,
        reg_covar=0.0,
        tol=0.0,
        max_iter=30,
        init_params="random",
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", CollapsedComponentWarning)
        em.fit(X)
    steps = np.diff(em.log_likelihood_trace_)
    assert np.all(steps >= -1e-9 * np.abs(em.log_likelihood_trace_[1:])), steps.min()


@pytest.mark.parametrize("factor", [1e-200, 1e200])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_fit_is_invariant_to_data_scale(three_clusters, factor, cov_type):
    X = three_clusters.X
    kw = dict(covariance_type=cov_type, random_state=0, tol=1e-10, max_iter=500)
    base = EMGaussianMixture(3, **kw).fit(X)
    scaled = EMGaussianMixture(3, **kw).fit(X * factor)
    np.testing.assert_array_equal(scaled.predict(X * factor), base.predict(X))
    np.testing.assert_allclose(scaled.predict_proba(X * factor), base.predict_proba(X), atol=1e-9)
    np.testing.assert_allclose(scaled.means_ / factor, base.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scaled.weights_, base.weights_, rtol=1e-9)
    shift = -2 * np.log(factor)
    np.testing.assert_allclose(scaled.lower_bound_, base.lower_bound_ + shift, rtol=1e-10)
    np.testing.assert_allclose(
        scaled.score_samples(X * factor), base.score_samples(X) + shift, rtol=1e-10
    )


def test_sklearn_absolute_regularisation_fails_at_tiny_scale(three_clusters):
    """The reason for relative reg_covar: the peer cannot fit data at scale 1e-200."""
    X = three_clusters.X * 1e-200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sk_labels = GaussianMixture(3, random_state=0).fit(X).predict(X)
        except ValueError:
            sk_labels = None
    ours = EMGaussianMixture(3, random_state=0).fit(X).predict(X)
    assert adjusted_rand_score(three_clusters.labels, ours) > 0.95
    if sk_labels is not None:
        assert adjusted_rand_score(three_clusters.labels, sk_labels) < 0.5


def test_sample_follows_fitted_mixture(three_clusters):
    em = EMGaussianMixture(3, random_state=0).fit(three_clusters.X)
    Xs, ys = em.sample(20000)
    assert Xs.shape == (20000, 2)
    assert np.all(np.diff(ys) >= 0)
    np.testing.assert_allclose(np.bincount(ys) / 20000, em.weights_, atol=0.015)
    for k in range(3):
        np.testing.assert_allclose(Xs[ys == k].mean(axis=0), em.means_[k], atol=0.1)
        np.testing.assert_allclose(np.cov(Xs[ys == k].T), em.covariances_[k], atol=0.15)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]]), r"1 of X are missing"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [3.0, 1.0]]), "inf"),
        (np.arange(10.0), "1-D"),
        (np.empty((0, 2)), "0 sample"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "n_samples >= n_components"),
        (np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]]), "constant"),
    ],
)
def test_bad_data_raises_before_fitting(X, match):
    with pytest.raises(ValueError, match=match):
        EMGaussianMixture(3).fit(X)


def test_non_numeric_columns_are_named():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "kind": ["a", "b", "a", "b"]})
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['kind'\].*select_dtypes"):
        EMGaussianMixture(2).fit(df)


def test_numbers_stored_as_text_are_named_with_their_odd_cells():
    """A column of numbers whose missing cells were written '?' or 'n/a ' is read as text:
    the error names the cells and the conversion that keeps the column (select_dtypes would
    drop it); a truly categorical column gets the usual message."""
    y = [str(v) for v in np.arange(8.0)] + ["?", "n/a "]
    df = pd.DataFrame({"x": np.arange(10.0), "y": y, "kind": list("ab" * 5)})
    with pytest.raises(ValueError) as caught:
        EMGaussianMixture(2).fit(df)
    message = str(caught.value)
    assert "column 'y' (2 cell(s) ['?', 'n/a'] are not numbers)" in message
    assert "X['y'] = pd.to_numeric(X['y'], errors='coerce')" in message and "'kind'" not in message
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['kind'\]"):
        EMGaussianMixture(2).fit(df.drop(columns="y"))
    with pytest.raises(ValueError, match=r"'y' \(every cell a number, stored as text or objects\)"):
        EMGaussianMixture(2).fit(df.assign(y=df["x"].astype(object)))


def test_numbers_with_thousands_separators_are_named_with_a_remedy_that_keeps_them():
    """carData's Freedman with populations written "1,062": marking those cells missing, the
    remedy for '?' cells, would discard valid values; the error says to remove the separators."""
    df = pd.DataFrame({"x": np.arange(6.0), "y": ["1,062", "713", "12,345.5", "534", "601", "?"]})
    with pytest.raises(ValueError) as caught:
        EMGaussianMixture(2).fit(df)
    message = str(caught.value)
    assert "thousands separators: column 'y' (2 cell(s) such as ['1,062', '12,345.5'])" in message
    assert "read_csv(..., thousands=',')" in message and "errors='coerce'" not in message
    assert "decimal=','" in message
    decimal = df.assign(y=["0,125", "0,250", "0,5", "534", "601", "?"])  # decimal commas
    with pytest.raises(ValueError) as caught:
        EMGaussianMixture(2).fit(decimal)
    assert "thousands separators" not in str(caught.value)


def test_missing_everywhere_message_names_the_column():
    """NaN cells are missing values (tests/test_missing.py); a column of them is an error."""
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [np.nan] * 4})
    with pytest.raises(ValueError, match=r"1 \('y'\) of X are missing \(NaN\) in every row.*Drop"):
        EMGaussianMixture(2).fit(df)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"covariance_type": "banana"}, "covariance_type.*'full', 'tied', 'diag', 'spherical'"),
        ({"init_params": "kmedoids"}, "init_params.*'kmeans'"),
        ({"n_components": 0}, "n_components"),
        ({"reg_covar": -1.0}, "reg_covar"),
        ({"tol": float("nan")}, "tol"),
        ({"n_init": 0}, "n_init"),
        ({"weights_init": [0.5, 0.6]}, "sum to 1"),
        ({"means_init": np.zeros((3, 2))}, r"means_init must have shape \(2, 2\)"),
        ({"precisions_init": -np.ones((2, 2, 2))}, "positive definite"),
    ],
)
def test_bad_options_raise(three_clusters, params, match):
    estimator = EMGaussianMixture(2).set_params(**params)
    with pytest.raises(ValueError, match=match):
        estimator.fit(three_clusters.X)


def test_predict_with_wrong_number_of_features(three_clusters):
    em = EMGaussianMixture(2, random_state=0).fit(three_clusters.X)
    with pytest.raises(ValueError, match=r"3 features.*expecting 2"):
        em.predict(np.ones((4, 3)))


def test_non_convergence_warning_says_what_to_try(three_clusters):
    with pytest.warns(ConvergenceWarning, match="Increase max_iter.*n_init"):
        EMGaussianMixture(3, max_iter=1, random_state=0).fit(three_clusters.X)


def test_duplicate_points_collapse_is_reported(rng):
    X = np.vstack([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (10, 1))])
    em = EMGaussianMixture(2, random_state=0)
    with pytest.warns(CollapsedComponentWarning, match=r"component \d.*reg_covar floor"):
        em.fit(X)
    collapsed = em.collapsed_components_
    assert collapsed.size == 1
    np.testing.assert_allclose(em.means_[collapsed[0]], [8.0, 8.0])


def test_a_collapse_on_a_binary_feature_names_that_cause(rng):
    """sklearn's diabetes at K = 3: a component on one value of the 0/1 sex column, whose
    rows are not duplicates; the remedy names features that share values, not only rows."""
    X = np.column_stack([rng.normal(size=200), rng.integers(0, 2, size=200)]).astype(float)
    with pytest.warns(CollapsedComponentWarning, match="binary, count or rounded feature"):
        EMGaussianMixture(2, random_state=0).fit(X)


def test_tiny_component_collapse_is_reported(rng):
    """The warning names the fit it comes from (an unseen-data sweep's report printed it on
    stderr among the candidates' fits, without saying which)."""
    X = np.vstack([rng.normal(size=(100, 3)), [[20.0, 20.0, 20.0], [21.0, 19.0, 20.5]]])
    em = EMGaussianMixture(2, random_state=0)
    with pytest.warns(CollapsedComponentWarning, match=r"of the K=2 VVV fit.*effective size 2"):
        em.fit(X)
    assert em.collapsed_components_.size == 1


def test_an_effective_size_just_short_of_the_minimum_is_not_rounded_up_to_it():
    """Robustbase's coleman (20 x 6) read "effective size 7 (minimum 7)" for 6.99999997."""
    from bayesgmm.em import _size_text

    assert _size_text(6.99999997, 7) == "6.99999997"
    assert _size_text(2.0, 4) == "2" and _size_text(1.23456, 2) == "1.23"


def test_singular_without_regularisation_raises_with_remedy(rng):
    X = np.vstack([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (10, 1))])
    with pytest.raises(ValueError, match=r"singular.*Increase reg_covar"):
        EMGaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)


def test_healthy_fit_reports_no_collapse(three_clusters):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapsedComponentWarning)
        em = EMGaussianMixture(3, random_state=0).fit(three_clusters.X)
    assert em.collapsed_components_.size == 0
