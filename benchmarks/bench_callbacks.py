"""nutpie's cost per gradient: the kernel through compiled callbacks against a Python callback.

Side by side in one process, for each data set: the same model, the same whitening (the
covariance of draws near the EM estimate), the same seed, so both make the same draws (to
rounding) and take the same number of gradients; only the way nutpie calls the density
differs (:mod:`bayesgmm._native`). Printed per data set and per (chains, cores): the
gradients, the wall time and microseconds of wall time per gradient of each, and the ratio
Python / compiled. One core and one chain shows the call's own cost; several chains on two
cores show the GIL: a Python callback holds it for every call, so chains on threads queue.

    python benchmarks/bench_callbacks.py                    # faithful K=2, simcorr K=3, wdbc K=2
    python benchmarks/bench_callbacks.py --data iris:3 --draws 500
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bayesgmm import EMGaussianMixture, build_model
from bayesgmm._drift import pooled_metric
from bayesgmm._logdensity import log_density_for
from bayesgmm.sampling import _kernel_compiled

DATA = Path(__file__).resolve().parent / "data"
LAYOUTS = ((1, 1), (2, 2), (4, 2))  # (chains, cores)


def _setup(name: str, k: int, seed: int):
    X = pd.read_csv(DATA / f"{name}.csv").select_dtypes("number").dropna().to_numpy(float)
    em = EMGaussianMixture(k, random_state=seed).fit(X)
    model = build_model(X, k)
    density = log_density_for(model)
    start = _kernel_compiled(model, em, density)._make_initial_points(0)
    rng = np.random.default_rng(seed)
    approx = pooled_metric(start + 0.02 * rng.standard_normal((400, start.size)))
    return model, em, density, approx


def _timed(compiled, chains: int, cores: int, draws: int, seed: int) -> tuple[int, float]:
    import nutpie

    t0 = time.perf_counter()
    trace = nutpie.sample(
        compiled,
        draws=draws,
        tune=draws,
        chains=chains,
        cores=cores,
        seed=seed,
        progress_bar=False,
        save_warmup=True,
    )
    seconds = time.perf_counter() - t0
    steps = int(trace.sample_stats["n_steps"].sum() + trace.warmup_sample_stats["n_steps"].sum())
    return steps, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["faithful:2", "simcorr:3", "wdbc:2"])
    parser.add_argument("--draws", type=int, default=300, help="draws (and tuning steps) a chain")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(
        "data          K  dim  chains cores  gradients   python s  us/grad   compiled s  us/grad"
        "  ratio"
    )
    for item in args.data:
        name, _, k = item.partition(":")
        model, em, density, approx = _setup(name, int(k), args.seed)
        native = _kernel_compiled(model, em, density, approx)
        python = _kernel_compiled(model, em, density, approx, native=False)
        _timed(native, 1, 1, 20, args.seed)  # compile or load the callbacks first
        for chains, cores in LAYOUTS:
            steps, slow = _timed(python, chains, cores, args.draws, args.seed)
            same, fast = _timed(native, chains, cores, args.draws, args.seed)
            note = "" if same == steps else f"  (gradients differ: {same})"
            print(
                f"{name:12s} {k:>2s} {density.n_dim:4d} {chains:6d} {cores:5d} {steps:10d} "
                f"{slow:10.2f} {1e6 * slow / steps:8.1f} {fast:12.2f} {1e6 * fast / same:8.1f} "
                f"{slow / fast:6.2f}{note}",
                flush=True,
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
