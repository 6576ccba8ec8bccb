"""The sweep on threads (``em_sweep(n_jobs=...)``): the same table as on one thread, cell by
cell (log-likelihoods to the bit, statuses, iterations, messages); the threads are used; bad
``n_jobs`` is one named error."""

from __future__ import annotations

import os
import threading

import numpy as np
import pandas as pd
import pytest

from bayesgmm import EMGaussianMixture, em_sweep
from bayesgmm._population import Population
from bayesgmm.datasets import load_faithful
from bayesgmm.selection import _n_threads

COLUMNS = ["model_name", "status", "log_likelihood", "bic", "icl", "n_iter", "message"]


def _collapsing() -> np.ndarray:
    """Gaussian rows and a tight clump of 5: starts collapse in em-EM and fits are marked."""
    rng = np.random.default_rng(1)
    return np.vstack([rng.normal(size=(100, 2)), 8.0 + 1e-3 * rng.normal(size=(5, 2))])


@pytest.mark.parametrize(
    ("X", "ks"),
    [(load_faithful(), [1, 2, 3, 4, 5]), (_collapsing(), [1, 2, 3, 4])],
    ids=["faithful", "collapsing"],
)
def test_threaded_sweep_equals_the_serial_sweep_cell_by_cell(X, ks):
    serial = em_sweep(X, ks, "all", reg_covar=0.0, progress=False, n_jobs=1)
    threaded = em_sweep(X, ks, "all", reg_covar=0.0, progress=False, n_jobs=2)
    pd.testing.assert_frame_equal(threaded.table, serial.table, check_exact=True)
    assert threaded.best == serial.best
    for key, fit in serial.fits.items():
        np.testing.assert_array_equal(threaded.fits[key].means_, fit.means_)
        np.testing.assert_array_equal(
            threaded.fits[key].log_likelihood_trace_, fit.log_likelihood_trace_
        )
    if X.shape[0] == 105:  # the data must exercise the statuses compared above
        assert set(serial.table.status) >= {"ok", "collapsed"}


def test_the_runs_go_on_the_pools_threads_only_when_asked(monkeypatch):
    """Runs advance through the population's compiled calls (and the per-run path for runs
    that left it): both are spied on."""
    names: list[str] = []
    advance, iterate = EMGaussianMixture._advance, Population._iterate

    def spy(self, *args):
        names.append(threading.current_thread().name)
        return advance(self, *args)

    def spy_population(self, *args):
        names.append(threading.current_thread().name)
        return iterate(self, *args)

    monkeypatch.setattr(EMGaussianMixture, "_advance", spy)
    monkeypatch.setattr(Population, "_iterate", spy_population)
    X = load_faithful()
    em_sweep(X, [2, 3], ["VVV", "EEE"], progress=False, n_jobs=2)
    assert any(name.startswith("bayesgmm-sweep") for name in names)
    names.clear()
    em_sweep(X, [2, 3], ["VVV", "EEE"], progress=False, n_jobs=None)
    assert names and set(names) == {threading.current_thread().name}


def test_missing_cells_sweep_the_same_with_threads():
    """Missing cells take the general E-step, which stays on the calling thread."""
    X = np.asarray(load_faithful(), dtype=float).copy()
    X[::7, 0] = np.nan
    serial = em_sweep(X, [1, 2, 3], ["VVV", "VII"], progress=False, n_jobs=1)
    threaded = em_sweep(X, [1, 2, 3], ["VVV", "VII"], progress=False, n_jobs=-1)
    pd.testing.assert_frame_equal(threaded.table[COLUMNS], serial.table[COLUMNS])


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2", True, np.inf])
def test_bad_n_jobs_is_named_before_any_fit(n_jobs):
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer or None"):
        em_sweep(load_faithful(), [1, 2], n_jobs=n_jobs, progress=False)


def test_n_jobs_follows_scikit_learns_convention():
    cores = os.cpu_count() or 1
    assert _n_threads(None) == 1
    assert _n_threads(1) == 1
    assert _n_threads(3) == 3
    assert _n_threads(np.int64(2)) == 2
    assert _n_threads(-1) == cores
    assert _n_threads(-2) == max(1, cores - 1)
    assert _n_threads(-1000) == 1
