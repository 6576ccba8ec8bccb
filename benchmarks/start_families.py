"""Where an em_sweep's EM iterations go by start family and em-EM stage, and which family wins.

Every em-EM call of ``em_sweep(X, range(1, kmax + 1), 14 models, reg_covar=0)`` is recorded:
each start's family (``hc``, ``kmeans``, ``random``, ``split``, ``cross``; the merge pass's
``merge`` and ``current``), the EM iterations it took in each stage (``screen``: the first
iteration; ``reserve``: the iterations up to ``reserve_iter``; ``short``; ``loose``; ``conv``:
to convergence), where it stopped, and its log-likelihood. Per call the best run is the
"winner"; a family "reaches" the call's optimum when one of its runs that converged ends
within 0.1 nats of the winner (runs dropped before converging are not known to, so this
undercounts how often a family would have reached it).

``--analyse DUMP ...`` reads such dumps (``--out``) and prints the family table over all their
data sets, then simulates, on the recorded traces, two rules that would cut iterations:

- ``hopeless``: in the short and loose stages (one run each, from iteration 11 to the loose
  tolerance, checked every 5 iterations), a run dropped once it is more than
  ``max(m / N, H * its rise per iteration over the last 5)`` below the ``n_best``-th best;
  the rule changes a call where a dropped run is among the ``n_best`` after the loose stage,
  and loses its optimum where the dropped run was the call's winner;
- ``hc-stop``: the hierarchical start continued only because it is always continued (it did
  not rank among the loose stage's) stopped at the loose tolerance ``tol`` (first check from
  iteration 11 on) when it is then more than ``margin`` nats below the best other continued
  run's optimum; lost where it would have ended more than 0.1 nats above that.

    python benchmarks/start_families.py --datasets diabetes,faithful --seed 0 --out FILE.json
    python benchmarks/start_families.py --analyse FILE.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from em_em_screening import DATA, MODELS
from optima_search import parse_strategy
from threadpoolctl import threadpool_limits

from bayesgmm import _restarts, em_sweep
from bayesgmm import em as em_module

RECORDS: list[dict] = []
_em_em = _restarts.em_em
_fit_em_em = em_module.EMGaussianMixture._em_em
CONTEXT: dict = {}


def _stage_of(n_iter, calls: int) -> str:
    """The stage of a ``step(runs, n_iter)`` call, by its ``n_iter`` and the calls before."""
    if n_iter is None:
        return "conv"
    if calls == 0:
        return "screen"
    if n_iter == 5:
        return "loose"
    return "reserve" if n_iter == 1 else "short"


def recording_em_em(
    start, advance, resps, strategy, map_runs=map, advance_many=None, start_many=None, sound=None
):
    """em_em with every start's run and each stage's iterations per run recorded."""
    step = advance_many or _restarts._per_run(advance)
    starter = start_many or _restarts._per_start(start)
    runs: list = []
    spent: dict = defaultdict(lambda: defaultdict(int))
    after: dict = defaultdict(dict)
    calls = [0]

    def recorded_start(batch):
        out = starter(batch)
        runs.extend(out)
        return out

    def recorded_step(stage_runs, n_iter, map_runs=map):
        stage = _stage_of(n_iter, calls[0])
        calls[0] += 1
        before = [r.n_iter for r in stage_runs]
        out = step(stage_runs, n_iter, map_runs)
        for r, b in zip(stage_runs, before, strict=True):
            spent[id(r)][stage] += r.n_iter - b
            after[id(r)][stage] = float(r.lower_bound)
        return out

    t0 = time.process_time()
    best = _em_em(
        start, advance, resps, strategy, map_runs, recorded_step, recorded_start, sound=sound
    )
    seconds = time.process_time() - t0
    rows = []
    for (kind, _), run in zip(resps, runs, strict=True):
        if isinstance(run, Exception):
            rows.append({"kind": kind, "failed": True, "its": {}})
            continue
        rows.append(
            {
                "kind": kind,
                "failed": False,
                "lb": float(run.lower_bound),
                "n_iter": int(run.n_iter),
                "converged": bool(run.converged),
                "its": dict(spent[id(run)]),
                "after": after[id(run)],
                "trace": [float(v) for v in run.trace] if "short" in spent[id(run)] else [],
                "winner": run is best,
            }
        )
    RECORDS.append({**CONTEXT, "runs": rows, "seconds": seconds})
    return best


def recording_fit(self, data, scaling, starts, strategy, map_runs=map):
    CONTEXT.update(model=self.model_name_, k=int(self.n_components), n=int(data.shape[0]))
    return _fit_em_em(self, data, scaling, starts, strategy, map_runs)


STAGES = ["screen", "reserve", "short", "loose", "conv"]


def _forward(rec: dict) -> bool:
    """Whether an em-EM call is a forward fit (not the merge pass's, which has ``current``)."""
    return not any(r["kind"] == "current" for r in rec["runs"])


def family_table(records: list[dict]) -> None:
    """Per family: starts, iterations by stage, calls it was in, won, reached within 0.1 nats
    (a converged run), reached alone."""
    its: dict = defaultdict(lambda: defaultdict(int))
    starts, won, reached, alone, calls = (defaultdict(int) for _ in range(5))
    seconds = defaultdict(float)
    for rec in records:
        seconds["forward" if _forward(rec) else "merge pass"] += rec["seconds"]
        for r in rec["runs"]:
            starts[r["kind"]] += 1
            for stage, n in r["its"].items():
                its[r["kind"]][stage] += n
        ok = [r for r in rec["runs"] if not r["failed"] and np.isfinite(r["lb"])]
        if not ok:
            continue
        best = max(r["lb"] for r in ok)
        near = {r["kind"] for r in ok if r["converged"] and (best - r["lb"]) * rec["n"] <= 0.1}
        for r in ok:
            won[r["kind"]] += r["winner"]
        for kind in {r["kind"] for r in ok}:
            calls[kind] += 1
        for kind in near:
            reached[kind] += 1
        if len(near) == 1:
            alone[next(iter(near))] += 1
    total = sum(sum(v.values()) for v in its.values())
    print(
        f"em-EM CPU: forward {seconds['forward']:.1f} s, merge pass {seconds['merge pass']:.1f} s;"
        f" EM iterations {total}"
    )
    print(
        f"{'family':<8} {'starts':>7} "
        + " ".join(f"{s:>7}" for s in STAGES)
        + f" {'its%':>5} {'calls':>6} {'won':>5} {'<=0.1':>6} {'alone':>6}"
    )
    for f in sorted(its, key=lambda f: -sum(its[f].values())):
        row = " ".join(f"{its[f][s]:>7}" for s in STAGES)
        share = 100 * sum(its[f].values()) / total
        print(
            f"{f:<8} {starts[f]:>7} {row} {share:>5.1f} {calls[f]:>6} {won[f]:>5} "
            f"{reached[f]:>6} {alone[f]:>6}"
        )
    by_stage = {s: sum(its[f][s] for f in its) for s in STAGES}
    print("by stage: " + ", ".join(f"{s} {100 * v / total:.1f}%" for s, v in by_stage.items()))


def _loose_end(run: dict) -> int:
    """The run's iterations at the end of the loose stage (or where it stopped before)."""
    return sum(run["its"].get(s, 0) for s in STAGES[:4])


def hopeless(records: list[dict], horizon: float, margin: float, n_best: int = 2) -> tuple:
    """The ``hopeless`` rule (module docstring) on the recorded traces: (iterations saved,
    the loose stage's iterations, calls changed, calls whose winner was dropped)."""
    saved = total = changed = lost = 0
    for rec in filter(_forward, records):
        entrants = [r for r in rec["runs"] if "loose" in r.get("after", {}) and r["trace"]]
        if len(entrants) <= n_best:
            continue
        traces = [np.asarray(r["trace"]) for r in entrants]
        ends = [_loose_end(r) for r in entrants]
        final = [t[e - 1] for t, e in zip(traces, ends, strict=True)]
        top = set(np.argsort(final)[::-1][:n_best])
        dropped: dict[int, int] = {}
        for check in range(11, max(ends), 5):
            now = [
                -np.inf if i in dropped else t[min(check, e) - 1]
                for i, (t, e) in enumerate(zip(traces, ends, strict=True))
            ]
            cut = sorted(now, reverse=True)[n_best - 1]
            for i, (t, e) in enumerate(zip(traces, ends, strict=True)):
                if i in dropped or e <= check:
                    continue
                rise = (t[check - 1] - t[check - 6]) / 5
                if cut - t[check - 1] > max(margin / rec["n"], horizon * rise):
                    dropped[i] = check
        total += sum(max(e - 11, 0) for e in ends)
        for i, check in dropped.items():
            saved += ends[i] - check
            changed += i in top
            lost += i in top and entrants[i]["winner"]
    return saved, total, changed, lost


def hc_stop(records: list[dict], tol: float, margin: float) -> tuple:
    """The ``hc-stop`` rule (module docstring) on the recorded traces: (hierarchical runs
    continued only as ``always``, those stopped, iterations saved, cells lost as
    ``(model, K, nats)``)."""
    forced = stopped = saved = 0
    lost = []
    for rec in filter(_forward, records):
        runs = rec["runs"]
        hc = [
            r
            for r in runs
            if r["kind"] == "hc"
            and not r["failed"]
            and r["trace"]
            and r["its"].get("conv", 0) > 0
            and "loose" not in r["after"]
        ]
        others = [
            r["lb"]
            for r in runs
            if r not in hc and not r["failed"] and r["converged"] and "conv" in r["its"]
        ]
        if not hc or not others:
            continue
        forced += 1
        trace, best, n = np.asarray(hc[0]["trace"]), max(others), rec["n"]
        check = next(
            (c for c in range(11, trace.size, 5) if trace[c - 1] - trace[c - 2] < tol), None
        )
        if check is None or trace[check - 1] >= best - margin / n:
            continue
        stopped += 1
        saved += trace.size - check
        if (trace[-1] - best) * n > 0.1:
            lost.append(f"{rec['name']} {rec['model']}{rec['k']}:+{(trace[-1] - best) * n:.2f}")
    return forced, stopped, saved, lost


def analyse(paths: list[Path], data: list[Path]) -> None:
    """The family table and the two rules' simulations over the dumps at ``paths`` (the rows
    of a data set read from its CSV in ``data`` where a dump does not have them)."""
    for path in paths:
        dump = json.loads(path.read_text())
        records = []
        for name, recs in dump.items():
            if any("n" not in rec for rec in recs):
                csv = next(d / f"{name}.csv" for d in data if (d / f"{name}.csv").exists())
                n = len(pd.read_csv(csv))
            records += [{"n": n, **rec, "name": name} for rec in recs]
        print(f"== {path.name}: {', '.join(dump)}")
        family_table(records)
        for horizon in (20, 50, 100, 200, 400):
            for margin in (0.5, 2.0, 10.0):
                saved, total, changed, lost = hopeless(records, horizon, margin)
                print(
                    f"hopeless H={horizon:<3} m={margin:<4}: saves {saved} of the loose "
                    f"stage's {total} iterations; calls changed {changed}, lost {lost}"
                )
        for tol in (3e-4, 1e-4):
            for margin in (0.5, 5.0, 20.0):
                forced, stopped, saved, lost = hc_stop(records, tol, margin)
                where = " ".join(lost)
                print(
                    f"hc-stop tol={tol:g} margin={margin:<4}: {stopped} of {forced} always-"
                    f"continued hc runs stopped, {saved} iterations saved; lost {len(lost)} "
                    f"{where}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kmax", type=int, default=9)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--strategy", default="", help="field=value,... over Strategy's fields")
    parser.add_argument("--analyse", type=Path, nargs="+", help="dumps written by --out")
    args = parser.parse_args()
    if args.analyse:
        analyse(args.analyse, [DATA, args.data])
        return
    _restarts.em_em = recording_em_em
    em_module.EMGaussianMixture._em_em = recording_fit
    strategy = parse_strategy(f"x={args.strategy}" if args.strategy else "default")[1]
    print("load average", os.getloadavg())
    out = {}
    with threadpool_limits(1):
        for name in args.datasets.split(","):
            X = pd.read_csv(args.data / f"{name}.csv").astype(float)
            RECORDS.clear()
            t0 = time.process_time()
            em_sweep(
                X,
                range(1, args.kmax + 1),
                MODELS,
                reg_covar=0.0,
                progress=False,
                random_state=args.seed,
                strategy=strategy,
            )
            print(f"== {name}: {time.process_time() - t0:.2f} s CPU")
            family_table(RECORDS)
            out[name] = list(RECORDS)
    print("load average", os.getloadavg())
    if args.out:
        args.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
