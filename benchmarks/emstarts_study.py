"""Fewer em-EM starts per cell, judged against issue 13's own bar (not against main's optima).

The bar, per data set, model and K = 1..9: bayesgmm's log-likelihood >= the reference - 0.1
nats, the reference being the better of mclust's and scikit-learn's ``GaussianMixture(n_init=10)``
that is not degenerate (as :func:`bench_mclust.cell_rows` defines it), and the same best-BIC
model as mclust or a better BIC.

Two steps, so that the references are computed once and a candidate strategy costs one sweep
per data set:

    python benchmarks/emstarts_study.py refs --out /tmp/refs.json [--data DIR] [--datasets a,b]
        # mclust (committed numbers, or R with --r) and scikit-learn per cell
    python benchmarks/emstarts_study.py sweep --refs /tmp/refs.json [--set n_kmeans=4 ...]
        # one em_sweep (14 models, K = 1..9, reg_covar=0, random_state=--seed, one thread) per data
        # set with the Strategy's fields overridden: misses, best BIC, fits, starts, EM
        # iterations and CPU seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from bench_mclust import (
    DATA,
    DEFICIT,
    MCLUST_MODELS,
    cell_rows,
    mclust_cells,
    reference_mclust,
    run_mclust,
    run_sklearn,
)
from threadpoolctl import threadpool_limits

import bayesgmm
from bayesgmm import _population, _restarts, em_sweep
from bayesgmm._restarts import Strategy


def load(data: Path, name: str) -> pd.DataFrame:
    """A data set as float (scikit-learn's score truncates integer input)."""
    return pd.read_csv(data / f"{name}.csv").astype(float)


def references(args: argparse.Namespace) -> None:
    """mclust's and scikit-learn's per-cell log-likelihoods, and mclust's best BIC, as JSON."""
    out = {}
    for name in args.datasets.split(","):
        X = load(args.data, name)
        mclust = (run_mclust([name], 9, data=args.data) if args.r else reference_mclust([name], 9))[
            name
        ]
        with threadpool_limits(limits=1):
            sk = run_sklearn(X, list(MCLUST_MODELS), 9, 10)
        out[name] = {
            "data": str(args.data),
            "mclust": [[m, k, v] for (m, k), v in mclust_cells(mclust).items()],
            "mclust_best": mclust["best"],
            "mclust_seconds": mclust["seconds"],
            "sklearn": [[m, k, v] for (m, k), v in sk["cells"].items()],
            "spikes": sorted(sk["spikes"]),
        }
        print(name, "done", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float) + "\n")


def counted_sweep(
    X: pd.DataFrame, strategy: Strategy, seed: int = 0
) -> tuple[pd.DataFrame, dict, dict]:
    """One sweep with the fits, starts and EM iterations counted; its table, best and counts."""
    counts = {"fits": 0, "starts": 0, "iterations": 0}
    em_em, advance_many = _restarts.em_em, _population.Population.advance_many

    def em_em_counted(start, advance, resps, *args, **kwargs):
        counts["fits"] += 1
        counts["starts"] += len(resps)
        return em_em(start, advance, resps, *args, **kwargs)

    def advance_counted(self, runs, n_iter, map_runs=map):
        before = [r.n_iter for r in runs]
        out = advance_many(self, runs, n_iter, map_runs)
        counts["iterations"] += sum(r.n_iter - b for r, b in zip(runs, before, strict=True))
        return out

    _restarts.em_em, _population.Population.advance_many = em_em_counted, advance_counted
    try:
        start = time.process_time()
        sweep = em_sweep(
            X, range(1, 10), list(MCLUST_MODELS), reg_covar=0.0, random_state=seed,
            progress=False, strategy=strategy,
        )  # fmt: skip
        counts["cpu"] = time.process_time() - start
    finally:
        _restarts.em_em, _population.Population.advance_many = em_em, advance_many
    return sweep.table, sweep.best, counts


def strategy_from(settings: list[str]) -> Strategy:
    """The default Strategy with ``field=value`` overrides (values as the fields' types)."""
    types = {f.name: type(getattr(Strategy(), f.name)) for f in fields(Strategy)}
    changes = {}
    for item in settings:
        key, value = item.split("=")
        kind = types[key]
        changes[key] = (value.lower() == "true") if kind is bool else kind(value)
    return replace(Strategy(), **changes)


def judge(name: str, ref: dict, table: pd.DataFrame, best: tuple, X: pd.DataFrame) -> dict:
    """The cells below the reference by more than 0.1, and whether the best BIC passes."""
    ours_cells = {
        (r.model_name, int(r.n_components)): (float(r.log_likelihood), r.status)
        for r in table.itertuples()
    }
    k, cov = best["bic"]
    row = table[(table.n_components == k) & (table.covariance_type == cov)].iloc[0]
    ours = {"cells": ours_cells}
    sk = {
        "cells": {(m, k): v for m, k, v in ref["sklearn"]},
        "spikes": {tuple(s) for s in ref["spikes"]},
    }
    mclust = {(m, k): (np.nan if v is None else v) for m, k, v in ref["mclust"]}
    rows = cell_rows(list(MCLUST_MODELS), 9, mclust, ours, sk, X.shape)
    misses = [
        (r["model"], r["K"], round(r["ours_minus_reference"], 2))
        for r in rows
        if not np.isnan(r["reference"]) and not r["ours_minus_reference"] >= -DEFICIT
    ]
    mb = ref["mclust_best"]
    same = (mb["model"], mb["G"]) == (row.model_name, k)
    better = -float(row.bic) > mb["bic"] + 1e-6
    margins = sorted(r["ours_minus_reference"] for r in rows if not np.isnan(r["reference"]))
    return {
        "misses": misses,
        "best_ok": same or better,
        "best": f"{row.model_name}{k}" + ("=" if same else (">" if better else "<")),
        "margin5": [round(m, 2) for m in margins[:3]],
        "cells": {f"{m}-{k}": v for (m, k), (v, _) in ours_cells.items()},
    }


def sweeps(args: argparse.Namespace) -> None:
    """One counted sweep per data set with the given Strategy; a line per data set."""
    refs = json.loads(Path(args.refs).read_text())
    strategy = strategy_from(args.set)
    names = args.datasets.split(",") if args.datasets else list(refs)
    one_minute = os.getloadavg()[0]
    print(f"{bayesgmm.__file__} seed {args.seed} {args.set} load {one_minute:.2f}", flush=True)
    record = {}
    with threadpool_limits(limits=1):
        em_sweep(np.random.default_rng(0).normal(size=(300, 3)), [1, 2, 3], ["all"], progress=False)
        for name in names:
            X = load(Path(refs[name]["data"]), name)
            table, best, counts = counted_sweep(X, strategy, args.seed)
            verdict = judge(name, refs[name], table, best, X)
            record[name] = {**verdict, **counts}
            print(
                f"{name:10s} fits {counts['fits']:4d} starts {counts['starts']:5d} "
                f"iters {counts['iterations']:6d} cpu {counts['cpu']:6.2f} "
                f"best {verdict['best']:8s} worst {verdict['margin5']} "
                f"misses {len(verdict['misses'])} {verdict['misses']}",
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps({"set": args.set, "runs": record}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    refs = sub.add_parser("refs")
    refs.add_argument("--out", required=True)
    refs.add_argument("--data", type=Path, default=DATA)
    refs.add_argument("--datasets", required=True)
    refs.add_argument("--r", action="store_true", help="run R mclust (else committed numbers)")
    sweep = sub.add_parser("sweep")
    sweep.add_argument("--refs", required=True)
    sweep.add_argument("--datasets")
    sweep.add_argument("--set", nargs="*", default=[])
    sweep.add_argument("--out")
    sweep.add_argument("--seed", type=int, default=0, help="the sweep's random_state")
    args = parser.parse_args()
    (references if args.command == "refs" else sweeps)(args)


if __name__ == "__main__":
    main()
