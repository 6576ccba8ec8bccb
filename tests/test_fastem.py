"""Compiled EM iterations (bayesgmm._fastem): bit for bit the Python loop's, for every model
that has them, and an iteration that would fail is left to the Python loop, which raises."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from bayesgmm import EMGaussianMixture, _fastem
from bayesgmm._gaussian import SingularCovarianceError
from bayesgmm._restarts import Strategy, one_hot, partition_pool
from bayesgmm.datasets import load_faithful
from bayesgmm.em import _Run


@pytest.fixture(scope="module")
def faithful():
    return np.ascontiguousarray(np.asarray(load_faithful(), dtype=float))


def _fitted(X, k, model, reg_covar):
    """A fit of ``model`` (its scaling and layout set) from the hierarchical start."""
    em = EMGaussianMixture(k, covariance_type=model, reg_covar=reg_covar, tol=1e-5, max_iter=1000)
    start = partition_pool(X, [k], Strategy(n_kmeans=2, n_random=0), 0)[k]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em._fit(X, starts=start, strategy=Strategy(short_iter=1))
    return em


def _start(em, rows, labels):
    """A fresh run of ``em`` from a hard partition (one M-step), as em-EM starts one."""
    resp = one_hot(labels, em.n_components, rows.shape[0])
    return _Run(em._params_from_resp(rows, resp))


def _advance_both(em, X, run, n_iter, monkeypatch):
    """``run`` advanced ``n_iter`` iterations by the compiled path and by the Python loop."""
    compiled = replace(run, params=replace(run.params), trace=list(run.trace))
    python = replace(run, params=replace(run.params), trace=list(run.trace))
    em._advance(X, em._scaling, compiled, n_iter)
    with monkeypatch.context() as patch:
        patch.setattr(_fastem, "MODEL_CODES", {})
        em._advance(X, em._scaling, python, n_iter)
    return compiled, python


@pytest.mark.parametrize("model", sorted(_fastem.MODEL_CODES))
@pytest.mark.parametrize(("k", "reg_covar"), [(3, 0.0), (8, 1e-6)])
def test_compiled_iterations_equal_the_python_loop_bit_for_bit(
    faithful, model, k, reg_covar, monkeypatch
):
    """From the same start, 3 iterations, then on to convergence: the same traces, parameters,
    warm start and convergence, exactly (K = 8 exercises NumPy's pairwise sums)."""
    em = _fitted(faithful, k, model, reg_covar)
    labels = np.arange(faithful.shape[0]) % k
    run = _start(em, em._scaling.transform(faithful), labels)
    for n_iter in (3, None):
        compiled, python = _advance_both(em, faithful, run, n_iter, monkeypatch)
        assert compiled.trace == python.trace and compiled.trace
        assert (compiled.n_iter, compiled.converged) == (python.n_iter, python.converged)
        assert compiled.lower_bound == python.lower_bound
        for name in ("weights", "means", "precisions_chol", "covariances"):
            a, b = getattr(compiled.params, name), getattr(python.params, name)
            assert a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        if python.params.warm is not None:
            np.testing.assert_array_equal(compiled.params.warm.volumes, python.params.warm.volumes)
        else:
            assert compiled.params.warm is None
        run = python
    assert run.converged


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 15, 16, 17, 54, 128, 129, 300, 1031])
def test_numpy_sum_repeats_numpys_order(n):
    rng = np.random.default_rng(n)
    for _ in range(50):
        a = rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 6, n)
        assert _fastem._numpy_sum(a) == a.sum()


@pytest.mark.parametrize("model", ["VVV", "VVI"])
def test_an_iteration_that_would_fail_is_raised_by_the_python_loop(faithful, model):
    """A component moved far from every row takes no row at the next E-step, and without
    regularisation its covariance is zero: the compiled loop takes no iteration and the fit
    raises the Python M-step's error."""
    em = _fitted(faithful, 3, model, 0.0)
    run = _start(em, em._scaling.transform(faithful), np.arange(faithful.shape[0]) % 3)
    means = run.params.means.copy()
    means[0] += 1e3
    run.params = replace(run.params, means=means)
    before = (run.n_iter, list(run.trace))
    _fastem.advance(em._small_loop(faithful, em._scaling), run, 5, em)
    assert (run.n_iter, run.trace) == before
    with pytest.raises(SingularCovarianceError):
        em._advance(faithful, em._scaling, run, 5)
