"""benchmarks/start_families.py: its recording of em-EM calls and its simulated cuts."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from bayesgmm import _restarts, em_sweep
from bayesgmm import em as em_module
from bayesgmm.datasets import load_faithful

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def families(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("start_families")


def _run(kind: str, trace: list[float], loose: int, winner: bool = False) -> dict:
    """A recorded run that went through the short and loose stages (11 + ``loose``
    iterations, ``trace`` one value per iteration) and then converged."""
    its = {"screen": 1, "reserve": 1, "short": 9, "loose": loose, "conv": 1}
    return {
        "kind": kind,
        "failed": False,
        "lb": trace[-1],
        "n_iter": len(trace),
        "converged": True,
        "its": its,
        "after": {"screen": trace[0], "loose": trace[10 + loose]},
        "trace": trace,
        "winner": winner,
    }


def test_recorded_calls_name_the_best_continued_run(families, monkeypatch):
    monkeypatch.setattr(families, "RECORDS", [])
    monkeypatch.setattr(_restarts, "em_em", families.recording_em_em)
    monkeypatch.setattr(em_module.EMGaussianMixture, "_em_em", families.recording_fit)
    X = load_faithful()[::3]
    em_sweep(X, range(1, 4), ["VVI"], reg_covar=0.0, progress=False, random_state=0)
    assert families.RECORDS
    for rec in families.RECORDS:
        ok = [r for r in rec["runs"] if not r["failed"]]
        assert sum(r["winner"] for r in ok) == 1
        winner = next(r for r in ok if r["winner"])
        continued = [r["lb"] for r in ok if "conv" in r["its"]]
        assert winner["lb"] == max(continued)  # the best of the runs taken to convergence
        for r in ok:  # every iteration counted in one stage
            assert sum(r["its"].values()) == r["n_iter"]


def test_hopeless_counts_a_dropped_winner_as_lost(families):
    flat = list(np.linspace(-2.0, -1.5, 11)) + [-1.5] * 20  # leaders, converged early
    climber = list(np.linspace(-3.0, -2.9, 26)) + list(np.linspace(-2.8, -1.0, 10))
    record = {
        "n": 100,
        "runs": [
            _run("kmeans", flat[:16], 5),
            _run("split", [v - 1e-3 for v in flat[:16]], 5),
            _run("hc", climber, 25, winner=True),
        ],
    }
    saved, _, changed, lost = families.hopeless([record], horizon=20, margin=0.5)
    assert saved > 0 and changed == 1 and lost == 1
    assert families.hopeless([record], horizon=1e6, margin=0.5)[3] == 0  # never cut


def test_hc_stop_loses_a_late_climb_and_keeps_a_flat_run(families):
    plateau = list(np.linspace(-3.0, -2.5, 11)) + [-2.5] * 10
    late = plateau + list(np.linspace(-2.4, -1.0, 10))
    best = _run("split", [-1.5] * 16, 5)
    for trace, lost in ((plateau, 0), (late, 1)):
        hc = {**_run("hc", trace, 0), "after": {"screen": trace[0]}}
        hc["its"] = {"screen": 1, "reserve": 1, "short": 9, "conv": len(trace) - 11}
        record = {"n": 100, "name": "x", "model": "VVV", "k": 3, "runs": [best, hc]}
        forced, stopped, saved, cells = families.hc_stop([record], tol=1e-4, margin=5.0)
        assert (forced, stopped, len(cells)) == (1, 1, lost) and saved > 0
