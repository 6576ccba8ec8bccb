"""Where an em_sweep's time and EM iterations go: CPU time by part, iterations by em-EM stage.

One warm sweep (14 models x K = 1..kmax, ``reg_covar=0``, one thread) per data set, twice:

- CPU time, each part's own (its callees' time taken out), by wrapping the sweep's functions
  (no profiler, so the numbers are near those of an unwrapped sweep): the compiled EM
  iterations, the starts' first M-steps, em-EM's stage logic, the fits' own work, the
  starts' construction, the criteria and predictions;
- EM iterations by stage (``screen``: one per start; ``reserve``; ``short``: the rest of the
  short runs; ``loose``; ``converge``; ``merge-*`` the same stages of the merge pass), in
  total and per K, and the runs continued to convergence that end at an optimum another
  continued run of the same fit reached (within 1e-3 nats).

    python benchmarks/sweep_costs.py --datasets diabetes,thyroid
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
from em_em_screening import DATA, MODELS
from threadpoolctl import threadpool_limits

from bayesgmm import _population, _restarts, _sweepmoves, em, em_sweep, selection

PARTS = [
    (_population.Population, "_iterate", "compiled EM iterations"),
    (_population.Population, "start_many", "starts' first M-steps"),
    (_restarts, "em_em", "em-EM stage logic (Python)"),
    (em.EMGaussianMixture, "_fit", "fit: checks, scaling, store"),
    (em.EMGaussianMixture, "_criteria", "criteria (last E-step)"),
    (em.EMGaussianMixture, "_predict_rows", "predictions (labels, merge starts)"),
    (selection, "_fit_one", "sweep row"),
    (_restarts, "partition_pool", "pool: hc and k-means"),
    (_restarts, "sweep_starts", "split and cross starts"),
    (_sweepmoves, "merge_starts", "merge starts"),
    (_restarts, "merge_pass", "merge pass"),
    (selection, "sweep_rows", "sweep"),
]


def _timed(function, label: str, own: dict, stack: list):
    """``function`` adding its own CPU time (without its timed callees') to ``own[label]``."""

    def wrapper(*args, **kwargs):
        start = time.process_time()
        stack.append(0.0)
        try:
            return function(*args, **kwargs)
        finally:
            inner = stack.pop()
            total = time.process_time() - start
            own[label] += total - inner
            if stack:
                stack[-1] += total

    return wrapper


def cpu_parts(X: pd.DataFrame, kmax: int) -> tuple[float, dict]:
    """CPU seconds of one sweep and each part's own share."""
    own: dict = defaultdict(float)
    stack: list = []
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in PARTS]
    for owner, attr, label in PARTS:
        setattr(owner, attr, _timed(getattr(owner, attr), label, own, stack))
    try:
        start = time.process_time()
        em_sweep(X, range(1, kmax + 1), MODELS, reg_covar=0.0, progress=False, random_state=0)
        return time.process_time() - start, own
    finally:
        for owner, attr, function in saved:
            setattr(owner, attr, function)


def _stage(n_iter: int | None, caller: str) -> str:
    """The em-EM stage of an ``advance_many`` call, from its length and caller."""
    if caller == "_screen":
        return "reserve"
    return {1: "screen", 5: "loose", None: "converge"}.get(n_iter, "short")


def stage_iterations(X: pd.DataFrame, kmax: int) -> tuple[pd.DataFrame, list]:
    """Iterations of one sweep by stage, model and K; each converge call's final bounds."""
    rows, finals, merging = [], [], [False]
    advance_many, merge_pass = _population.Population.advance_many, _restarts.merge_pass

    def counted(self, runs, n_iter, map_runs=map):
        before = [r.n_iter for r in runs]
        out = advance_many(self, runs, n_iter, map_runs)
        stage = _stage(n_iter, inspect.stack()[2].function)
        stage = f"merge-{stage}" if merging[0] else stage
        taken = sum(r.n_iter - b for r, b in zip(runs, before, strict=True))
        rows.append((stage, self.model, self.em.n_components, taken))
        if n_iter is None:
            n = self.small.X.shape[0]
            finals.append([(r.lower_bound * n, r.n_iter) for r in runs])
        return out

    def flagged(*args, **kwargs):
        merging[0] = True
        try:
            return merge_pass(*args, **kwargs)
        finally:
            merging[0] = False

    _population.Population.advance_many, _restarts.merge_pass = counted, flagged
    try:
        em_sweep(X, range(1, kmax + 1), MODELS, reg_covar=0.0, progress=False, random_state=0)
    finally:
        _population.Population.advance_many, _restarts.merge_pass = advance_many, merge_pass
    return pd.DataFrame(rows, columns=["stage", "model", "K", "iterations"]), finals


def _same_optimum(finals: list) -> tuple[int, int]:
    """Continued runs, and those ending within 1e-3 nats of a better-ranked one of their fit."""
    total = same = 0
    for runs in finals:
        ends = [end for end, _ in runs]
        total += len(ends)
        same += sum(any(abs(end - ends[j]) < 1e-3 for j in range(i)) for i, end in enumerate(ends))
    return total, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="diabetes,faithful,iris,thyroid,banknote")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--kmax", type=int, default=9)
    args = parser.parse_args()
    print("load average", os.getloadavg())
    with threadpool_limits(1):
        em_sweep(pd.read_csv(DATA / "faithful.csv"), range(1, 3), MODELS, progress=False)
        for name in args.datasets.split(","):
            X = pd.read_csv(args.data / f"{name}.csv").astype(float)
            em_sweep(X, range(1, 3), MODELS, progress=False)  # warm: this shape's kernels
            total, own = cpu_parts(X, args.kmax)
            print(f"\n{name} {X.shape}: CPU {total:.3f} s (one thread)")
            for label, seconds in sorted(own.items(), key=lambda item: -item[1]):
                print(f"  {label:<36} {seconds:6.3f} s {100 * seconds / total:5.1f} %")
            table, finals = stage_iterations(X, args.kmax)
            by_stage = table.groupby("stage").iterations.sum().sort_values(ascending=False)
            print(
                f"  EM iterations {table.iterations.sum()}: "
                + ", ".join(f"{stage} {count}" for stage, count in by_stage.items())
            )
            per_k = table.pivot_table(
                index="stage", columns="K", values="iterations", aggfunc="sum", fill_value=0
            )
            print("  by K:\n" + per_k.to_string().replace("\n", "\n  "))
            continued, same = _same_optimum(finals)
            print(
                f"  runs continued to convergence {continued}, at an optimum a better-ranked "
                f"one of the same fit reached {same}"
            )
    print("\nload average", os.getloadavg())


if __name__ == "__main__":
    main()
