"""How far apart the partitions of a run's chains are: the fourth check of ``find_modes``.

Fits the default ``BayesianGMM(K, random_seed=SEED)`` on each CSV (numeric columns) and prints
the run's time, its modes, each chain's half-to-half difference of its median co-clustering
probabilities, and the largest difference between two chains of one mode against the level
that would split them (0.05 plus 4 times the smaller of the two chains' half differences):
chains of one mode should sit far below it, chains of different modes far above.

    python benchmarks/mode_partitions.py --data DIR --fits state5:2,quakes:3,melanoma:3
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayesgmm import BayesianGMM
from bayesgmm._chainprofiles import partition_gap, partition_profiles
from bayesgmm.modes import find_modes


def _fit(path: Path, k: int, seed: int) -> tuple[BayesianGMM, float]:
    X = pd.read_csv(path).select_dtypes("number").dropna(axis=1, how="all")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BayesianGMM(k, random_seed=seed, progressbar=False).fit(X)
    return fit, time.perf_counter() - start


def _line(name: str, k: int, fit: BayesianGMM, seconds: float, factor: float) -> str:
    profiles = partition_profiles(fit.idata_)
    noise = profiles[1]
    modes = find_modes(fit.idata_)
    worst_gap, worst_share = 0.0, 0.0
    for a in range(len(modes)):
        for b in range(a + 1, len(modes)):
            if modes[a] != modes[b]:
                continue
            gap, level = partition_gap(profiles, a, b, factor)
            worst_gap, worst_share = max(worst_gap, gap), max(worst_share, gap / level)
    n_modes = int(fit.idata_.posterior.attrs.get("n_modes", 1))
    return (
        f"{name:<12} K={k} {seconds:6.1f} s  modes {modes.tolist()} (recorded {n_modes})  "
        f"halves {np.round(noise, 3).tolist()}  within a mode: max {worst_gap:.3f} "
        f"= {worst_share:.2f} of its level"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of NAME.csv files")
    parser.add_argument("--fits", required=True, help="NAME:K,NAME:K,...")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--factor", type=float, default=4.0)
    args = parser.parse_args()
    for spec in args.fits.split(","):
        name, k = spec.split(":")
        fit, seconds = _fit(args.data / f"{name}.csv", int(k), args.seed)
        print(_line(name, int(k), fit, seconds, args.factor), flush=True)


if __name__ == "__main__":
    main()
