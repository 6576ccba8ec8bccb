"""The 14 covariance models: parameter counts, constraints, a never-decreasing likelihood, units,
and parity with R mclust from the same start.

The mclust references in tests/data were computed once by tests/data/make_mclust_parity.R and
tests/data/make_mclust_orientation.R (R mclust 6.0); these tests do not need R.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayesgmm import CollapsedComponentWarning, EMGaussianMixture, _mstep
from bayesgmm import _gaussian as g
from bayesgmm import _models as models
from bayesgmm.datasets import load_faithful, simulate_mixture

DATA = Path(__file__).parent / "data"
MODELS = models.MODEL_NAMES
PER_FEATURE = [m for m in MODELS if models.per_feature_scaling(m)]
UNIT_DEPENDENT = [m for m in MODELS if not models.per_feature_scaling(m)]
PARITY = json.loads((DATA / "mclust_parity.json").read_text())
# EVE on swiss from Mclust's default start, where the first orientation M-step has local minima
ORIENTATION = json.loads((DATA / "mclust_orientation.json").read_text())
PARTITIONS = PARITY["partitions"] | ORIENTATION["partitions"]
FITTED = ("weights_", "means_", "covariances_")


def _dataset(name: str) -> np.ndarray:
    if name == "faithful":
        return load_faithful().to_numpy()
    if name == "iris":
        return load_iris().data
    return pd.read_csv(DATA / f"{name}.csv").to_numpy()


def _start_from_partition(X: np.ndarray, labels: np.ndarray, model: str, k: int) -> dict:
    """One M-step (no regularisation) from a hard partition, as ``*_init`` in the user's units.

    This is the start mclust's ``me`` takes from ``z = unmap(labels)``.
    """
    layout = models.layout(model)
    stats = g.weighted_statistics(X, np.eye(k)[labels], np.zeros((k, X.shape[1])), layout)
    weights, means, covariances, _ = _mstep.m_step(stats, 0.0, model)
    factor = g.precision_cholesky(covariances, layout)
    precisions = factor @ np.swapaxes(factor, -1, -2) if layout in ("full", "tied") else factor**2
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


def _fit_from_mclust_start(reference: dict) -> tuple[EMGaussianMixture, np.ndarray]:
    X = _dataset(reference["dataset"])
    k = reference["K"]
    labels = np.array(PARTITIONS[reference["dataset"]][str(k)])
    em = EMGaussianMixture(
        k,
        covariance_type=reference["model"],
        reg_covar=0.0,
        tol=1e-15,
        max_iter=50_000,
        **_start_from_partition(X, labels, reference["model"], k),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return em.fit(X), X


@pytest.fixture(scope="module")
def correlated():
    """D=3, K=3, correlated components of different volumes and shapes, odd units."""
    sim = simulate_mixture(
        450,
        weights=[0.4, 0.35, 0.25],
        means=[[0, 0, 0], [4, 1, -1], [-1, 4, 3]],
        covariances=[
            [[1.0, 0.6, 0.3], [0.6, 1.0, 0.2], [0.3, 0.2, 1.0]],
            [[0.5, -0.2, 0.0], [-0.2, 1.5, 0.4], [0.0, 0.4, 0.8]],
            [[2.2, 0.5, 0.5], [0.5, 0.7, 0.1], [0.5, 0.1, 3.0]],
        ],
        random_state=5,
    )
    return sim.X * [1.0, 20.0, 0.05] + [10.0, 0.0, -3.0]


# --------------------------------------------------------------------------- vocabulary
def test_n_parameters_equal_mclust():
    """mclust's nMclustParams (tests/data/mclust_n_parameters.csv) for every model, D and K."""
    table = pd.read_csv(DATA / "mclust_n_parameters.csv")
    got = [
        models.n_parameters(row.model, row.n_components, row.n_features)
        for row in table.itertuples()
    ]
    np.testing.assert_array_equal(got, table["n_parameters"])
    assert set(table["model"]) == set(MODELS)
    for alias, name in models.ALIASES.items():
        assert g.n_parameters(4, 5, alias) == models.n_parameters(name, 4, 5)


def test_names_and_aliases():
    for alias, name in models.ALIASES.items():
        assert models.model_name(alias) == name
        assert models.layout(alias) == alias == models.layout(name)
    with pytest.raises(ValueError, match=r"covariance_type 'vvv'.*'full'.*'EII'.*'VVV'"):
        models.check_model("vvv")


@pytest.mark.parametrize("model", MODELS)
def test_fitted_model_name_shapes_and_precisions_init(correlated, model):
    em = EMGaussianMixture(3, covariance_type=model, random_state=0).fit(correlated)
    assert em.model_name_ == model and em.covariance_type == model
    k, d = 3, correlated.shape[1]
    shape = {"spherical": (k,), "diag": (k, d), "tied": (d, d), "full": (k, d, d)}
    assert em.covariances_.shape == shape[models.layout(model)]
    assert em.precisions_cholesky_.shape == em.covariances_.shape == em.precisions_.shape
    again = EMGaussianMixture(
        3,
        covariance_type=model,
        weights_init=em.weights_,
        means_init=em.means_,
        precisions_init=em.precisions_,
        tol=1e-10,
        max_iter=500,
    ).fit(correlated)
    assert again.lower_bound_ >= em.lower_bound_ - 1e-9


# --------------------------------------------------------------------------- constraints
def _decompose(covariances: np.ndarray, diagonal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Volumes ``|Sigma_k|^(1/D)`` and shapes (eigenvalues, or the diagonal, over the volume)."""
    values = (
        np.diagonal(covariances, axis1=1, axis2=2)
        if diagonal
        else np.linalg.eigvalsh(covariances)  # test oracle: ascending, matched by rank
    )
    volumes = np.exp(np.log(values).mean(axis=1))
    return volumes, values / volumes[:, None]


def _spread(values: np.ndarray) -> float:
    return float(np.max(np.abs(values - values[0])) / np.max(np.abs(values)))


@pytest.mark.parametrize("model", MODELS)
def test_fitted_covariances_satisfy_the_model(correlated, model):
    """Equal parts are equal, identity parts are the identity, variable parts vary."""
    em = EMGaussianMixture(3, covariance_type=model, random_state=0, n_init=2).fit(correlated)
    cov = g.full_covariances(em.covariances_, model, 3, 3)
    volume, shape, orientation = model
    off_diagonal = cov - np.stack([np.diag(np.diag(c)) for c in cov])
    volumes, shapes = _decompose(cov, diagonal=orientation == "I")
    commutators = [cov[i] @ cov[j] - cov[j] @ cov[i] for i in range(3) for j in range(i)]
    commutator = max(np.abs(c).max() for c in commutators) / np.abs(cov).max() ** 2

    assert (_spread(volumes) < 1e-10) == (volume == "E"), volumes
    if shape == "I":
        np.testing.assert_allclose(shapes, 1.0, rtol=1e-10)
    else:
        assert (_spread(shapes) < 1e-8) == (shape == "E"), shapes
    if orientation == "I":
        assert np.abs(off_diagonal).max() == 0.0
    else:
        assert np.abs(off_diagonal).max() > 0.0
        assert (commutator < 1e-12) == (orientation == "E"), commutator


# --------------------------------------------------------------------------- EM never decreases
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_features=st.integers(1, 3),
    n_components=st.integers(1, 3),
    model=st.sampled_from(MODELS),
    init_params=st.sampled_from(["random", "kmeans"]),
)
def test_log_likelihood_never_decreases(seed, n_features, n_components, model, init_params):
    """Random correlated data in random units, random starts, no regularisation."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_features, n_features)) + np.eye(n_features)
    X = rng.normal(size=(80, n_features)) @ mixing + rng.integers(0, 3, size=(80, 1)) * 2.0
    X *= rng.uniform(0.1, 10.0, size=n_features)
    em = EMGaussianMixture(
        n_components,
        covariance_type=model,
        reg_covar=0.0,
        tol=0.0,
        max_iter=25,
        init_params=init_params,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", CollapsedComponentWarning)
        em.fit(X)
    trace = em.log_likelihood_trace_
    assert np.all(np.diff(trace) >= -1e-10 * np.abs(trace[1:])), np.diff(trace).min()


# --------------------------------------------------------------------------- units
@pytest.mark.parametrize("model", PER_FEATURE)
def test_per_feature_units_do_not_change_the_fit(correlated, model):
    """Invariant models: the fit on X diag(s) is the fit on X, mapped (log-lik by the Jacobian)."""
    s = np.array([1e-3, 7.0, 250.0])
    kw = dict(covariance_type=model, random_state=0, tol=1e-10, max_iter=1000)
    base = EMGaussianMixture(3, **kw).fit(correlated)
    scaled = EMGaussianMixture(3, **kw).fit(correlated * s)
    np.testing.assert_allclose(scaled.lower_bound_, base.lower_bound_ - np.log(s).sum(), rtol=1e-10)
    np.testing.assert_allclose(scaled.means_, base.means_ * s, rtol=1e-8)
    full = g.full_covariances
    np.testing.assert_allclose(
        full(scaled.covariances_, model, 3, 3),
        full(base.covariances_, model, 3, 3) * np.outer(s, s),
        rtol=1e-7,
        atol=1e-12 * np.outer(s, s).max(),
    )


@pytest.mark.parametrize("model", UNIT_DEPENDENT)
def test_unit_dependent_models_follow_one_common_scale_only(correlated, model):
    """EII, VII, EVE, VVE, EEV, VEV: invariant to X c, not to X diag(s) (same start rows)."""
    kw = dict(covariance_type=model, init_params="random_from_data", random_state=3)
    kw.update(tol=1e-10, max_iter=3000)
    base = EMGaussianMixture(3, **kw).fit(correlated)
    c = 40.0
    common = EMGaussianMixture(3, **kw).fit(correlated * c)
    np.testing.assert_allclose(common.lower_bound_, base.lower_bound_ - 3 * np.log(c), rtol=1e-9)
    np.testing.assert_allclose(common.means_, base.means_ * c, rtol=1e-7)
    s = np.array([1e-3, 7.0, 250.0])
    other = EMGaussianMixture(3, **kw).fit(correlated * s)
    assert abs(other.lower_bound_ + np.log(s).sum() - base.lower_bound_) > 1e-3


# --------------------------------------------------------------------------- mclust parity
def _id(reference: dict) -> str:
    return f"{reference['dataset']}-{reference['model']}-K{reference['K']}"


EXACT = [f for f in PARITY["fits"] + ORIENTATION["fits"] if f["model"] != "VVE"]
VVE = [f for f in PARITY["fits"] if f["model"] == "VVE"]


@pytest.mark.parametrize("reference", EXACT, ids=_id)
def test_reaches_mclust_optimum_from_the_same_partition(reference):
    """EM from mclust's start converges where mclust's ``me`` does (tol 1e-14 there).

    Observed: log-likelihoods within 1.5e-10 nats, parameters within 3.3e-6 (relative to
    each array's largest entry), both limited by how far EM gets on a flat likelihood.
    """
    em, X = _fit_from_mclust_start(reference)
    assert em.converged_
    np.testing.assert_allclose(em.lower_bound_ * X.shape[0], reference["loglik"], rtol=0, atol=1e-9)
    k, d = reference["K"], X.shape[1]
    ours = {
        "weights_": em.weights_,
        "means_": em.means_,
        "covariances_": g.full_covariances(em.covariances_, reference["model"], k, d),
    }
    theirs = dict(zip(FITTED, ("weights", "means", "covariances"), strict=True))
    for name, key in theirs.items():
        expected = np.array(reference[key])
        np.testing.assert_allclose(ours[name], expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("model", ["EVE", "VVE"])
@pytest.mark.parametrize("k", [2, 4])
def test_common_orientation_never_decreases_from_the_swiss_start(model, k):
    """EVE and VVE from Mclust's start on swiss, where the first M-step chooses among local
    minima of the orientation subproblem: every later EM iteration still never decreases."""
    reference = {"dataset": "swiss", "model": model, "K": k}
    em, _ = _fit_from_mclust_start(reference)
    trace = em.log_likelihood_trace_
    assert trace.size > 1
    assert np.all(np.diff(trace) >= -1e-12 * np.abs(trace[1:])), np.diff(trace).min()


def test_fresh_orientation_takes_the_lowest_local_minimum():
    """swiss, K=2: from the eigenvectors of sum W_k alone the orientation loop stops at a local
    minimum of F 4.7 above the one mclust's start (D = I) reaches; the M-step keeps the lower."""
    X = _dataset("swiss")
    labels = np.array(PARTITIONS["swiss"]["2"])
    stats = g.weighted_statistics(X, np.eye(2)[labels], np.zeros((2, 6)), "full")
    nk = stats.resp_sum
    scatter = np.array([np.cov(X[labels == k].T, bias=True) * nk[k] for k in range(2)])
    objective = {}
    for name, (start, empty) in zip(
        ("pooled", "axes"), _mstep._fresh_orientations(scatter), strict=True
    ):
        values = _mstep._orientation_loop(scatter, nk, start, empty, True, 1e-9, 500)
        objective[name] = _mstep._orientation_objective(scatter, nk, start, values)
    assert objective["pooled"] > objective["axes"] + 4.0
    warm = _mstep.m_step(stats, 0.0, "EVE")[3]
    chosen = _mstep._orientation_objective(scatter, nk, warm.orientation, warm.values)
    np.testing.assert_allclose(chosen, objective["axes"], rtol=1e-12)


def _mclust_vve(scatter, nk, warm, tol):
    """VVE's M-step as mclust 6 computes it: rotations weighted by ``1/A_k``, not ``1/V_k``.

    Otherwise :func:`bayesgmm._mstep._orientation_loop`, step for step.
    """
    if warm is None:
        orientation = np.ascontiguousarray(np.linalg.eigh(scatter.sum(axis=0))[1])
        rotated = orientation.T @ scatter @ orientation
        values = _mstep._rule_vv(np.diagonal(rotated, axis1=1, axis2=2).copy(), nk)
    else:
        orientation, values = warm.orientation.copy(), warm.values
        rotated = orientation.T @ scatter @ orientation
    previous = np.inf
    for _ in range(500):
        inverse = 1.0 / values
        shape_inverse = inverse / np.exp(np.log(inverse).mean(axis=1, keepdims=True))
        _mstep._rotation_sweep(rotated, shape_inverse, orientation)
        projected = np.diagonal(rotated, axis1=1, axis2=2).copy()
        values = _mstep._rule_vv(projected, nk)
        objective = nk @ np.log(values).sum(axis=1) + (projected / values).sum()
        if not previous - objective > tol:
            break
        previous = objective
    warm = _mstep.Warm(orientation=orientation, values=values)
    return _mstep._rotate(orientation[None], values), warm


@pytest.mark.parametrize("reference", VVE, ids=_id)
def test_vve_improves_on_mclust_whose_orientation_weights_differ(reference, monkeypatch):
    """mclust 6 weights VVE's orientation update by 1/A_k, not 1/(lambda_k A_k).

    With that weighting our EM reproduces mclust's VVE log-likelihood; with the correct one it
    reaches a higher likelihood from the same start, and mclust's point is not stationary.
    """
    em, X = _fit_from_mclust_start(reference)
    assert em.lower_bound_ * X.shape[0] > reference["loglik"] + 0.05
    monkeypatch.setitem(_mstep._RULES, "VVE", _mclust_vve)
    variant, _ = _fit_from_mclust_start(reference)
    np.testing.assert_allclose(
        variant.lower_bound_ * X.shape[0], reference["loglik"], rtol=0, atol=1e-7
    )


# --------------------------------------------------------------------------- estimator checks
@parametrize_with_checks(
    [
        EMGaussianMixture(2, covariance_type="EII", random_state=0),
        EMGaussianMixture(2, covariance_type="VEI", random_state=0),
        EMGaussianMixture(2, covariance_type="VEE", init_params="random", random_state=0),
        EMGaussianMixture(2, covariance_type="EVE", random_state=0),
        EMGaussianMixture(2, covariance_type="VVE", init_params="k-means++", random_state=0),
        EMGaussianMixture(2, covariance_type="VEV", random_state=0),
    ],
    # As in test_em.py: weighted and repeated rows draw different random starts; from the
    # same start every model's fits are equal (tests/test_weights.py).
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data": "random starts differ"
    },
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapsedComponentWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# --------------------------------------------------------------------------- degenerate fits
# A component's own volume or shape has no maximum on duplicated points (no regularisation).
OWN_VOLUME_OR_SHAPE = [m for m in MODELS if m[0] == "V" or m[1] == "V"]


@pytest.mark.parametrize("model", MODELS)
def test_duplicated_points_are_singular_or_reported(model):
    """reg_covar=0: a named error with a remedy; default reg_covar: collapse reported."""
    rng = np.random.default_rng(20261128)
    X = np.vstack([rng.normal(size=(100, 2)), np.tile([[8.0, 8.0]], (10, 1))])
    kw = dict(covariance_type=model, means_init=[[0.0, 0.0], [8.0, 8.0]], weights_init=[0.9, 0.1])
    kw["random_state"] = 0
    if model in OWN_VOLUME_OR_SHAPE and model != "EVE":  # EVE: rounding leaves a shape
        with pytest.raises(g.SingularCovarianceError, match=r"component 1 is singular.*reg_covar"):
            EMGaussianMixture(2, reg_covar=0.0, **kw).fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em = EMGaussianMixture(2, **kw).fit(X)
    collapsed = [w for w in caught if issubclass(w.category, CollapsedComponentWarning)]
    own_volume = model[0] == "V"  # only then can the component shrink to the floor
    assert em.collapsed_components_.tolist() == ([1] if own_volume else [])
    assert bool(collapsed) == own_volume
    np.testing.assert_allclose(em.means_[1], [8.0, 8.0])


# rows whose values spread by 1% of a unit: the models with a shared volume (a volume of its
# own lets EM find a one-row spike there, another collapse)
TIE_CASES = [(m, 0.0) for m in MODELS] + [(m, 1e-2) for m in MODELS if m[0] == "E"]


@pytest.mark.parametrize(("model", "spread"), TIE_CASES)
def test_rows_on_one_value_of_a_feature_collapse_a_component_with_a_shape_of_its_own(model, spread):
    """Rows that share one value of a feature (a rating or count scale), and spread in the
    others: a component with a shape of its own (mclust's second letter V) shrinks that one
    direction until only the reg_covar floor holds it up, and is reported collapsed (a spike
    the sweep's BIC would otherwise pick). With a shared volume (EVI, EVE, EVV) the model's
    constraints rescale the floor (here about ten times it), where a check of the variance
    against twice the floor misses it. Shared shapes cannot shrink one direction of one
    component: nothing is reported; nor where the rows spread a little (``TIE_CASES``)."""
    rng = np.random.default_rng(0)
    tied = np.column_stack([3.0 + spread * rng.normal(size=20), rng.normal(0.0, 2.0, (20, 2))])
    other = np.column_stack([rng.normal(0.0, 1.0, 30), rng.normal(5.0, 0.5, (30, 2))])
    X = np.vstack([tied, other])
    kw = dict(covariance_type=model, means_init=[tied.mean(axis=0), other.mean(axis=0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em = EMGaussianMixture(2, random_state=0, **kw).fit(X)
    reported = [w for w in caught if issubclass(w.category, CollapsedComponentWarning)]
    own_shape = model[1] == "V" and spread == 0.0
    assert bool(reported) == own_shape
    assert bool(em.collapsed_components_.size) == own_shape
    if own_shape and model[0] == "E":  # the tied rows' component, which the old check missed
        assert em.collapsed_components_.tolist() == [0]
        assert em.means_[0, 0] == pytest.approx(3.0, abs=1e-9)
        assert "reg_covar floor" in str(reported[0].message)
