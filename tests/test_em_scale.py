"""EM at scale: the fused kernel against the NumPy reference and SciPy, chunk invariance,
bounded memory, and Dask arrays on a LocalCluster. Speed is measured in benchmarks/, not here."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from bayesgmm import EMGaussianMixture
from bayesgmm import _gaussian as g
from bayesgmm import _kernels as kernels
from bayesgmm import em as em_module
from bayesgmm._models import layout
from bayesgmm._scaling import AffineScaling
from bayesgmm.datasets import simulate_mixture

from ._starts import identity_precisions

COV_TYPES = g.COVARIANCE_TYPES
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _family_covariances(rng, cov_type, k, d):
    a = rng.normal(scale=0.4, size=(k, d, d)) + np.eye(d)
    full = a @ np.swapaxes(a, 1, 2)
    return {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(c) for c in full]),
        "spherical": np.array([np.diag(c).mean() for c in full]),
    }[cov_type]


def _start(X, cov_type, k, seed=0):
    """A common start (user units) so that fits can be compared parameter by parameter."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    precisions = identity_precisions(layout(cov_type), k, d)
    return {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": X[rng.choice(X.shape[0], k, replace=False)],
        "precisions_init": precisions,
    }


@pytest.fixture(scope="module")
def overlapping():
    """D=3, K=3 overlapping mixture: enough rows for the kernel engine, in odd units."""
    sim = simulate_mixture(
        3001,
        weights=[0.45, 0.35, 0.2],
        means=[[0, 0, 0], [2.5, 1, 0], [0, 2.5, 2.5]],
        covariances=np.stack([np.eye(3), 0.5 * np.eye(3) + 0.2, np.diag([1.0, 0.3, 2.0])]),
        random_state=7,
    )
    return sim.X * [1.0, 30.0, 0.01] + [5.0, -200.0, 0.0]


def _fit(X, cov_type, k=3, **kw):
    kw = {
        "covariance_type": cov_type,
        "tol": 1e-10,
        "max_iter": 400,
        **_start(X, cov_type, k),
        **kw,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return EMGaussianMixture(k, **kw).fit(X)


# --------------------------------------------------------------------------- kernel vs reference
def _oracle_statistics(X, scaling, weights, means, cov, cov_type):
    """E-step statistics from SciPy densities, written out directly."""
    Xu = scaling.transform(X)
    k = means.shape[0]
    full = g.full_covariances(cov, cov_type, k, X.shape[1])
    dens = np.column_stack(
        [multivariate_normal(means[j], full[j]).logpdf(Xu) for j in range(k)]
    ) + np.log(weights)
    log_norm = logsumexp(dens, axis=1)
    resp = np.exp(dens - log_norm[:, None])
    diff = Xu[:, None, :] - means[None, :, :]
    second = np.einsum("nk,nkd,nke->kde", resp, diff, diff)
    if cov_type in ("diag", "spherical"):
        second = np.diagonal(second, axis1=1, axis2=2)
    first = np.einsum("nk,nkd->kd", resp, diff)
    return log_norm.sum(), resp.sum(axis=0), first, second


@pytest.mark.parametrize("block_rows", [7, 333, 4096])
@pytest.mark.parametrize("engine", ["parallel", "serial"])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_kernel_equals_numpy_reference_and_scipy(rng, cov_type, engine, block_rows):
    n, d, k = 1001, 4, 3
    X = rng.normal(size=(n, d)) * [1.0, 5.0, 0.1, 2.0] + [3.0, -1.0, 0.0, 10.0]
    scaling = AffineScaling.fit(X)
    weights = np.array([0.2, 0.5, 0.3])
    means = rng.normal(size=(k, d))
    cov = _family_covariances(rng, cov_type, k, d)
    chol = g.precision_cholesky(cov, cov_type)
    mixture = kernels.Mixture(scaling, weights, means, chol, cov_type)
    got = kernels.e_step(X, mixture, block_rows=block_rows, engine=engine)
    ref = kernels.e_step(X, mixture, block_rows=97, engine="numpy")
    oracle = _oracle_statistics(X, scaling, weights, means, cov, cov_type)
    assert got.n_samples == ref.n_samples == n
    for name, expected in zip(
        ("log_likelihood", "resp_sum", "first", "second"), oracle, strict=True
    ):
        value = getattr(got, name)
        np.testing.assert_allclose(value, getattr(ref, name), rtol=1e-12, atol=1e-11)
        np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(got.shift, means)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_kernel_handles_an_empty_component(rng):
    X = rng.normal(size=(500, 2))
    scaling = AffineScaling.fit(X)
    weights = np.array([0.5, 0.5, 0.0])
    means = np.array([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]])
    chol = g.precision_cholesky(np.stack([np.eye(2)] * 3), "full")
    mixture = kernels.Mixture(scaling, weights, means, chol, "full")
    got = kernels.e_step(X, mixture, block_rows=64, engine="serial")
    ref = kernels.e_step(X, mixture, block_rows=64, engine="numpy")
    assert np.isfinite(got.log_likelihood)
    np.testing.assert_allclose(got.log_likelihood, ref.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(got.resp_sum, ref.resp_sum, rtol=1e-12, atol=1e-300)


def test_column_summary_scaling_equals_affine_scaling(rng):
    X = rng.normal(size=(5003, 3)) * [1e-200, 1.0, 1e200] + [0.0, 4.0, 3e200]
    for isotropic in (False, True):
        whole = AffineScaling.fit(X, isotropic=isotropic)
        for block_rows in (None, 999):
            summary = kernels.column_summary(X, block_rows)
            chunked = summary.scaling(isotropic=isotropic)
            np.testing.assert_allclose(chunked.loc, whole.loc, rtol=1e-12)
            np.testing.assert_allclose(chunked.scale, whole.scale, rtol=1e-12)
    assert summary.n_samples == 5003 and summary.n_bad_rows == 0


# --------------------------------------------------------------------------- whole fits
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_fit_does_not_depend_on_chunk_size_or_engine(overlapping, cov_type, monkeypatch):
    assert em_module._engine(*overlapping.shape[:1], 3, 3) == "serial"  # the kernel runs
    base = _fit(overlapping, cov_type)
    odd = _fit(overlapping, cov_type, chunk_size=7)
    for engine in ("parallel", "numpy"):
        monkeypatch.setattr(em_module, "_engine", lambda *_, e=engine: e)
        other = _fit(overlapping, cov_type, chunk_size=1000)
        np.testing.assert_allclose(other.lower_bound_, base.lower_bound_, rtol=1e-10)
        np.testing.assert_allclose(other.means_, base.means_, rtol=1e-8, atol=1e-10)
    assert odd.n_iter_ == base.n_iter_
    np.testing.assert_allclose(odd.log_likelihood_trace_, base.log_likelihood_trace_, rtol=1e-10)
    for name in FITTED:
        np.testing.assert_allclose(getattr(odd, name), getattr(base, name), rtol=1e-10, atol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = base.fit_predict(overlapping)
    np.testing.assert_array_equal(odd.predict(overlapping), labels)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_kernel_fit_reaches_sklearn_optimum(overlapping, cov_type):
    X = (overlapping - overlapping.mean(axis=0)) / overlapping.std(axis=0)
    kw = dict(covariance_type=cov_type, tol=1e-12, max_iter=3000, **_start(X, cov_type, 3))
    ours = EMGaussianMixture(3, **kw).fit(X)
    theirs = GaussianMixture(3, **kw).fit(X)
    assert ours.converged_ and theirs.converged_
    np.testing.assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-8)
    for name in FITTED:
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), atol=1e-6)


def test_chunked_predictions_equal_scipy_oracle(overlapping):
    em = _fit(overlapping, "full", chunk_size=100)
    full = em.covariances_
    dens = np.column_stack(
        [multivariate_normal(em.means_[k], full[k]).logpdf(overlapping) for k in range(3)]
    ) + np.log(em.weights_)
    expected = logsumexp(dens, axis=1)
    np.testing.assert_allclose(em.score_samples(overlapping), expected, rtol=1e-10)
    np.testing.assert_allclose(
        em.predict_proba(overlapping), np.exp(dens - expected[:, None]), atol=1e-10
    )
    np.testing.assert_array_equal(em.predict(overlapping), dens.argmax(axis=1))


def test_fit_memory_stays_far_below_n_k_d(rng):
    """A fit's extra memory is O(chunk x K + K x D^2): not even one copy of X here.

    tracemalloc sees NumPy's allocations, not Numba's; the kernel's own scratch is
    O(D x block + K x block) per thread by construction (see bayesgmm._kernels).
    """
    n, d, k = 200_000, 3, 4
    X = rng.normal(size=(n, d)) + rng.integers(0, 3, size=(n, 1)) * 3.0
    start = _start(X, "full", k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        EMGaussianMixture(k, max_iter=1, **start).fit(X[:5000])  # load the kernel first
        tracemalloc.start()
        try:
            EMGaussianMixture(k, max_iter=3, **start).fit(X)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < X.nbytes / 2, (peak, X.nbytes)
    assert peak < n * k * d * 8 / 8


# --------------------------------------------------------------------------- Dask
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with (
        # worker processes, so tasks and their results are pickled as on a real cluster
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def no_loading(monkeypatch):
    """Converting a whole Dask array to NumPy fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("the Dask array was loaded into memory")

    monkeypatch.setattr(da.Array, "__array__", refuse)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_dask_fit_equals_in_memory_fit(client, overlapping, cov_type, no_loading):
    dX = da.from_array(overlapping, chunks=(777, 2))  # uneven row blocks, split columns
    # Equal trajectories, converged or not: a bounded number of Dask round trips keeps it fast.
    kw = dict(max_iter=60, tol=1e-8, **_start(overlapping, cov_type, 3))
    local = _fit(overlapping, cov_type, **kw)
    remote = _fit(dX, cov_type, **kw)
    assert remote.n_iter_ == local.n_iter_
    np.testing.assert_allclose(remote.lower_bound_, local.lower_bound_, rtol=1e-10)
    for name in FITTED:
        np.testing.assert_allclose(
            getattr(remote, name), getattr(local, name), rtol=1e-8, atol=1e-12
        )
    np.testing.assert_array_equal(remote.collapsed_components_, local.collapsed_components_)


@pytest.mark.parametrize("cov_type", ["EII", "VEI", "EVE", "VEV"])
def test_dask_fits_the_constrained_models(client, overlapping, cov_type, no_loading):
    """The constrained models' M-steps run in the client on the reduced statistics."""
    dX = da.from_array(overlapping, chunks=(1000, 3))
    kw = dict(max_iter=40, tol=1e-8, **_start(overlapping, cov_type, 3))
    local = _fit(overlapping, cov_type, **kw)
    remote = _fit(dX, cov_type, **kw)
    assert remote.n_iter_ == local.n_iter_ and remote.model_name_ == cov_type
    np.testing.assert_allclose(remote.lower_bound_, local.lower_bound_, rtol=1e-10)
    for name in FITTED:
        np.testing.assert_allclose(
            getattr(remote, name), getattr(local, name), rtol=1e-8, atol=1e-12
        )


def test_dask_predictions_are_lazy_and_equal(client, overlapping, no_loading):
    dX = da.from_array(overlapping, chunks=(1000, 3))
    kw = dict(max_iter=60, tol=1e-8, **_start(overlapping, "full", 3))
    em = _fit(overlapping, "full", **kw)
    outputs = {
        "score_samples": em.score_samples(dX),
        "predict_proba": em.predict_proba(dX),
        "predict": em.predict(dX),
    }
    for name, lazy in outputs.items():
        assert isinstance(lazy, da.Array), name
        np.testing.assert_allclose(lazy.compute(), getattr(em, name)(overlapping), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = EMGaussianMixture(3, **kw).fit_predict(dX)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), em.predict(overlapping))
    np.testing.assert_allclose(em.score(dX), em.score(overlapping), rtol=1e-12)


def test_dask_fit_initialises_on_a_subsample(client, three_clusters):
    dX = da.from_array(three_clusters.X, chunks=(250, 2))
    em = EMGaussianMixture(3, random_state=0).fit(dX)
    labels = em.predict(dX).compute()
    assert adjusted_rand_score(three_clusters.labels, labels) > 0.95


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (
            np.array([[1.0, np.nan], [2.0, 3.0], [3.0, 1.0], [0.0, 1.0]]),
            r"NaN.*1 row.*feature\(s\) 1",
        ),
        (np.array([[1.0, np.inf], [2.0, 3.0], [3.0, 1.0], [0.0, 1.0]]), "infinity"),
        (np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]]), r"Feature\(s\) 1 .*constant"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "n_samples >= n_components"),
        (np.arange(10.0), "1-D"),
        (np.empty((0, 2)), "0 sample"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), "real-valued"),
    ],
)
def test_dask_bad_data_raises_before_fitting(X, match, no_loading):
    with pytest.raises(ValueError, match=match):
        EMGaussianMixture(3).fit(da.from_array(X, chunks=2))


def test_dask_prediction_checks_features_and_values(overlapping):
    em = _fit(overlapping, "diag")
    with pytest.raises(ValueError, match=r"2 features.*expecting 3"):
        em.predict(da.zeros((10, 2), chunks=5))
    bad = overlapping[:20].copy()
    bad[13, 2] = np.nan
    lazy = em.predict(da.from_array(bad, chunks=(5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        lazy.compute()
