"""CPU seconds of em_sweep (14 models x K = 1..9, reg_covar=0, one thread) against mclust's
``Mclust(X, G = 1:9)``, for A/B runs of two versions of bayesgmm alternating.

Run once per version and round, each in a fresh process whose ``bayesgmm`` is the version to
time (e.g. ``PYTHONPATH=/path/to/export``, or the same code with another ``--strategy``):
every data set is swept twice and the second (warm) sweep's ``time.process_time`` counted;
the table's log-likelihoods, the EM iterations and the load go to ``--out`` (JSON).
``--mclust`` instead times R's ``Mclust`` (user + system CPU of the second of two calls) in
one Rscript.

    python benchmarks/ab_sweep_cpu.py --label main --datasets diabetes,iris --out main1.json
    python benchmarks/ab_sweep_cpu.py --mclust --datasets diabetes,iris --out mclust1.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
from em_em_screening import DATA, ITERATIONS, MODELS, _counted, _counted_population
from optima_search import parse_strategy
from threadpoolctl import threadpool_limits

import bayesgmm
from bayesgmm import _population, em_sweep
from bayesgmm import em as em_module
from bayesgmm._restarts import Strategy

R_TIMING = """
suppressMessages(library(mclust))
for (f in commandArgs(TRUE)) {
  X <- read.csv(f)
  invisible(Mclust(X, G = 1:9, verbose = FALSE))
  t <- system.time(Mclust(X, G = 1:9, verbose = FALSE))
  cat(basename(f), t[["user.self"]] + t[["sys.self"]], t[["elapsed"]], "\\n")
}
"""


def time_mclust(names: list[str], data: Path) -> dict:
    """``name -> {"cpu", "wall"}`` of ``Mclust(X, G = 1:9)`` (the second of two calls)."""
    files = [str(data / f"{name}.csv") for name in names]
    out = subprocess.run(
        ["Rscript", "-e", R_TIMING, *files], capture_output=True, text=True, check=True
    ).stdout
    result = {}
    for line in out.splitlines():
        name, cpu, wall = line.split()
        result[name.removesuffix(".csv")] = {"cpu": float(cpu), "wall": float(wall)}
    return result


def time_sweeps(names: list[str], data: Path, strategy: Strategy | None = None) -> dict:
    """``name -> {"cpu", "its", "ll"}`` of the second of two sweeps per data set."""
    em_module.EMGaussianMixture._advance = _counted
    _population.Population._iterate = _counted_population
    out = {}
    with threadpool_limits(1):
        for name in names:
            X = pd.read_csv(data / f"{name}.csv").astype(float)
            for _ in range(2):
                ITERATIONS[0] = 0
                start = time.process_time()
                table = em_sweep(
                    X,
                    range(1, 10),
                    MODELS,
                    reg_covar=0.0,
                    progress=False,
                    random_state=0,
                    strategy=strategy,
                ).table
                cpu = time.process_time() - start
            ll = [None if pd.isna(v) else float(v) for v in table.log_likelihood]
            out[name] = {"cpu": cpu, "its": ITERATIONS[0], "ll": ll}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--label", default="")
    parser.add_argument("--mclust", action="store_true")
    parser.add_argument("--strategy", help="field=value,... over Strategy's fields (else default)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    names = args.datasets.split(",")
    before = os.getloadavg()
    strategy = parse_strategy(f"x={args.strategy}")[1] if args.strategy else None
    if args.mclust:
        result = time_mclust(names, args.data)
    else:
        result = time_sweeps(names, args.data, strategy)
    record = {"label": "mclust" if args.mclust else args.label, "results": result}
    record["load"] = [before, os.getloadavg()]
    record["bayesgmm"] = bayesgmm.__file__
    args.out.write_text(json.dumps(record))
    for name, r in result.items():
        print(f"{record['label']:<8} {name:<10} cpu {r['cpu']:6.3f} s  load {before[0]:.2f}")


if __name__ == "__main__":
    main()
