"""em-EM's runs in stacked arrays (:mod:`bayesgmm._population`): the same runs, to the bit, as
the per-run path from the same starts (every model, runs that fail in the compiled loop
included), and never a decreasing likelihood."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest

import bayesgmm.em as em_module
from bayesgmm import EMGaussianMixture, em_sweep
from bayesgmm import _gaussian as g
from bayesgmm._population import Population, start_statistics
from bayesgmm._restarts import Strategy, _kmeans_pp, kmeans_labels, one_hot
from bayesgmm.datasets import load_faithful
from bayesgmm.em import _Run


class _PerRun:
    """A stand-in for :class:`Population` that starts every run as a plain ``_Run`` by
    ``_params_from_resp`` and leaves ``advance_many`` unset: em-EM then takes the per-start
    and per-run path (main's)."""

    def __init__(self, em, *args):
        self.em = em
        self.advance_many = None

    def start_many(self, Xu, resps):
        out = []
        for resp in resps:
            try:
                out.append(_Run(self.em._params_from_resp(Xu, resp)))
            except (ValueError, ArithmeticError) as err:
                out.append(err)
        return out


def _collapsing() -> np.ndarray:
    """Gaussian rows and a tight clump of 5: starts collapse in em-EM."""
    rng = np.random.default_rng(1)
    return np.vstack([rng.normal(size=(100, 2)), 8.0 + 1e-3 * rng.normal(size=(5, 2))])


def _sweep_both(monkeypatch, X, ks):
    """The sweep per run, then with the population."""
    monkeypatch.setattr(em_module, "_population", types.SimpleNamespace(Population=_PerRun))
    per_run = em_sweep(X, ks, "all", reg_covar=0.0, progress=False)
    monkeypatch.undo()
    return per_run, em_sweep(X, ks, "all", reg_covar=0.0, progress=False)


@pytest.mark.parametrize(
    ("X", "ks"),
    [(load_faithful(), [1, 2, 3, 4]), (_collapsing(), [2, 3, 4])],
    ids=["faithful", "collapsing"],
)
def test_the_population_runs_are_the_per_run_paths_to_the_bit(monkeypatch, X, ks):
    per_run, population = _sweep_both(monkeypatch, X, ks)
    pd.testing.assert_frame_equal(population.table, per_run.table, check_exact=True)
    for key, fit in per_run.fits.items():
        np.testing.assert_array_equal(population.fits[key].means_, fit.means_)
        np.testing.assert_array_equal(
            population.fits[key].log_likelihood_trace_, fit.log_likelihood_trace_
        )


@pytest.mark.parametrize("layout", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize(("n", "d", "k"), [(145, 3, 4), (272, 2, 9), (1104, 6, 3), (7, 1, 1)])
def test_stacked_start_statistics_are_each_starts_own_to_the_bit(layout, n, d, k):
    """The batched statistics (compiled products, one-row matmuls) of hard and soft starts
    equal :func:`bayesgmm._gaussian.weighted_statistics` of each start alone, bit for bit."""
    rng = np.random.default_rng(n + d + k)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=d)
    resps = np.stack(
        [one_hot(rng.integers(0, k, size=n), k, n) for _ in range(3)]
        + [rng.dirichlet(np.ones(k), size=n)]
    )
    stacked = start_statistics(X, resps, layout)
    for s, resp in enumerate(resps):
        alone = g.weighted_statistics(X, resp, np.zeros((k, d)), layout)
        singles = (alone.resp_sum, alone.first, alone.second)
        for batched, single in zip(stacked, singles, strict=True):
            np.testing.assert_array_equal(batched[s], single)


def test_runs_that_fail_in_the_compiled_loop_leave_the_arrays(monkeypatch):
    """On the collapsing data some runs' next M-step fails in the compiled loop: they go on by
    the per-run path (which drops them with the M-step's error); the test above shows the fits
    are those of that path."""
    left: list[int] = []
    advance_many = Population.advance_many

    def spy(self, runs, *args):
        errors = advance_many(self, runs, *args)
        left.extend(id(r) for r in runs if r.own is not None)
        return errors

    monkeypatch.setattr(Population, "advance_many", spy)
    em_sweep(_collapsing(), [3, 4], "all", reg_covar=0.0, progress=False)
    assert left


def test_the_likelihood_never_decreases_along_a_population_run():
    sweep = em_sweep(load_faithful(), [2, 3], "all", reg_covar=0.0, progress=False)
    for fit in sweep.fits.values():
        steps = np.diff(fit.log_likelihood_trace_)
        assert np.all(steps >= -1e-9 * np.abs(fit.log_likelihood_trace_[1:]))


def test_the_criteria_pass_gives_predicts_labels_with_missing_cells_too():
    """em_sweep takes the next fits' starting partitions from the criteria's pass."""
    X = np.asarray(load_faithful(), dtype=float).copy()
    X[::9, 1] = np.nan
    em = EMGaussianMixture(3, covariance_type="VEV", random_state=0).fit(X)
    criteria = em._criteria(X, labels=True)
    np.testing.assert_array_equal(criteria["labels"], em.predict(X))
    assert criteria["bic"] == em.bic(X)


def test_the_sweeps_column_summary_is_that_of_the_array_each_fit_iterates_over(monkeypatch):
    """em_sweep standardises every fit by one column summary, computed once: that of the
    C-ordered array the fits iterate over, so a Fortran-ordered input (e.g. from a
    DataFrame) sweeps to the same numbers as each fit preparing its own summary."""
    X = np.asfortranarray(np.asarray(load_faithful(), dtype=float))
    monkeypatch.setattr("bayesgmm.selection._column_summary", lambda *args: None)
    own = em_sweep(X, [2, 3], ["VVV", "EII"], reg_covar=0.0, progress=False)
    monkeypatch.undo()
    once = em_sweep(X, [2, 3], ["VVV", "EII"], reg_covar=0.0, progress=False)
    pd.testing.assert_frame_equal(once.table, own.table, check_exact=True)


def _lloyd(X, k, rng, max_iter=100):
    """Lloyd's k-means as main had it: each cluster's mean by ``X[members].mean``."""
    centres = _kmeans_pp(X, k, rng)
    norms = np.sum(X**2, axis=1)
    labels = np.full(X.shape[0], -1)
    for _ in range(max_iter):
        distances = norms[:, None] - 2.0 * X @ centres.T + np.sum(centres**2, axis=1)
        new = np.argmin(distances, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = labels == c
            if members.any():
                centres[c] = X[members].mean(axis=0)
            else:
                far = int(np.argmax(distances[np.arange(X.shape[0]), labels]))
                centres[c], labels[far] = X[far], c
    return labels


@pytest.mark.parametrize("k", [2, 5, 9])
def test_kmeans_centres_by_one_scatter_add_are_the_per_cluster_means(k):
    X = np.asarray(load_faithful(), dtype=float)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    for seed in range(5):
        expected = _lloyd(X, k, np.random.RandomState(seed))
        np.testing.assert_array_equal(kmeans_labels(X, k, np.random.RandomState(seed)), expected)


@pytest.mark.parametrize("model", ["VVV", "VVI"])
def test_starts_the_compiled_m_step_fails_take_the_python_one_and_its_error(model, monkeypatch):
    """A start with an empty cluster has a zero covariance: the compiled first M-step flags
    it, the Python M-step raises its error (em-EM drops that start, or raises it when no
    start is left), exactly as the per-start path."""
    X = np.asarray(load_faithful(), dtype=float)
    good = (X[:, 0] > np.median(X[:, 0])).astype(int)
    bad = good.copy()  # (no row in cluster 2)
    good[X[:, 1] > np.quantile(X[:, 1], 0.8)] = 2
    starts = [("kmeans", one_hot(good, 3, X.shape[0])), ("kmeans", one_hot(bad, 3, X.shape[0]))]
    outcomes: list = []
    python_start = Population._python_start

    def spy(self, *args):
        outcomes.append(python_start(self, *args))
        return outcomes[-1]

    monkeypatch.setattr(Population, "_python_start", spy)
    em = EMGaussianMixture(3, covariance_type=model, reg_covar=0.0, tol=1e-5, max_iter=1000)
    em._fit(X, starts=starts, strategy=Strategy())
    assert len(outcomes) == 1 and "component 2 is singular" in str(outcomes[0])
    alone = EMGaussianMixture(3, covariance_type=model, reg_covar=0.0)
    with pytest.raises(ValueError, match="covariance of component 2 is singular"):
        alone._fit(X, starts=starts[1:], strategy=Strategy())
    assert em.converged_ and np.isfinite(em.lower_bound_)
