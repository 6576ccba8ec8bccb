"""em-EM's screening on the benchmark CSVs: the sweep with and without the reserve, and where
the start of the best basin ranks.

``--ab``: for each data set, ``em_sweep`` over the 14 models and K = 1..9 with
``Strategy(n_reserve=0)`` (the screening by one iteration alone) and with the default strategy,
in the same process, alternating: per-cell log-likelihood differences (every cell that got
lower is printed), the EM iterations of each sweep (a cost that does not depend on the load)
and the wall times.

``--ranks MODEL:K,...``: the same sweep with the default strategy; for each listed cell, every
start of its em-EM is also run on its own, and the table says where the starts that reach the
best optimum any start reaches ranked after 1, 2, 10 and 20 iterations (1 = best): whether
screening by a short run could have kept them.

    python benchmarks/em_em_screening.py --ab simcorr,wreath,thyroid
    python benchmarks/em_em_screening.py --ranks simcorr EEE:7,EEV:7
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bayesgmm import _population, em_sweep
from bayesgmm import em as em_module
from bayesgmm._restarts import Strategy

DATA = Path(__file__).resolve().parent / "data"
MODELS = [*("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE")]
MODELS += [*("VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")]
ITERATIONS = [0]
_advance = em_module.EMGaussianMixture._advance


def _counted(self, X, scaling, run, n_iter, *args):  # every EM iteration of the sweep, counted
    before = run.n_iter
    _advance(self, X, scaling, run, n_iter, *args)
    ITERATIONS[0] += run.n_iter - before


_iterate = _population.Population._iterate


def _counted_population(self, inside, group, limits):  # the compiled stages' iterations too
    out = _iterate(self, inside, group, limits)
    ITERATIONS[0] += int(out[1].sum())
    return out


def sweep(
    X: pd.DataFrame, strategy: Strategy, kmax: int = 9, random_state: int = 0
) -> tuple[dict, int, float]:
    """Log-likelihood per (model, K), EM iterations and seconds of one sweep."""
    ITERATIONS[0] = 0
    start = time.perf_counter()
    table = em_sweep(
        X,
        range(1, kmax + 1),
        MODELS,
        reg_covar=0.0,
        strategy=strategy,
        progress=False,
        random_state=random_state,
    ).table
    seconds = time.perf_counter() - start
    cells = {(r.covariance_type, r.n_components): r.log_likelihood for r in table.itertuples()}
    return cells, ITERATIONS[0], seconds


def ab(names: list[str]) -> None:
    """Old (no reserve) against new (default) strategy on each data set."""
    sweep(pd.read_csv(DATA / "faithful.csv"), Strategy(), kmax=2)  # compile every kernel
    for name in names:
        X = pd.read_csv(DATA / f"{name}.csv")
        old, its_old, t_old = sweep(X, Strategy(n_reserve=0))
        new, its_new, t_new = sweep(X, Strategy())
        diff = {c: new[c] - old[c] for c in old if np.isfinite(old[c]) and np.isfinite(new[c])}
        up = {c: d for c, d in diff.items() if d > 1e-6}
        down = {c: d for c, d in diff.items() if d < -1e-6}
        print(
            f"{name}: EM iterations {its_old} -> {its_new} (x{its_new / its_old:.3f}); "
            f"sweep {t_old:.2f} s -> {t_new:.2f} s (x{t_new / t_old:.2f})"
        )
        print(
            f"  higher ({len(up)}): "
            + " ".join(f"{m}{k}:{d:+.2f}" for (m, k), d in sorted(up.items()))
        )
        print(
            f"  LOWER ({len(down)}): "
            + " ".join(f"{m}{k}:{d:+.2f}" for (m, k), d in sorted(down.items()))
        )


def ranks(name: str, cells: list[tuple[str, int]]) -> None:
    """Where the starts reaching the best optimum rank along their short runs."""
    found: dict = {}
    original = em_module.EMGaussianMixture._em_em

    def recording(self, data, scaling, starts, strategy, map_runs=map):
        best = original(self, data, scaling, starts, strategy, map_runs)
        if (self.model_name_, self.n_components) in cells:
            rows, weight = em_module._missing.initial_rows(data)
            Xu, paths = scaling.transform(rows), []
            for kind, resp in starts:
                path = []
                try:
                    run = em_module._Run(self._params_from_resp(Xu, resp, weight))
                    for step in (1, 1, 8, 10, None):
                        self._advance(data, scaling, run, step)
                        path.append(run.lower_bound * rows.shape[0])
                except (ValueError, ArithmeticError):
                    path += [-np.inf] * (5 - len(path))
                paths.append((kind, path))
            found[self.model_name_, self.n_components] = (best.lower_bound * rows.shape[0], paths)
        return best

    em_module.EMGaussianMixture._em_em = recording
    sweep(pd.read_csv(DATA / f"{name}.csv"), Strategy(), kmax=max(k for _, k in cells))
    em_module.EMGaussianMixture._em_em = original
    for (model, k), (chosen, paths) in sorted(found.items()):
        P = np.nan_to_num(np.array([p for _, p in paths]), nan=-np.inf)
        top = P[:, -1].max()
        reach = np.flatnonzero(P[:, -1] > top - 0.1)
        where = [
            (paths[i][0], *[int((P[:, j] > P[i, j]).sum()) + 1 for j in range(4)]) for i in reach
        ]
        print(
            f"{name} {model} K={k}: {len(paths)} starts, best reachable - chosen "
            f"{top - chosen:.2f} nats; reaching it (kind, rank after 1, 2, 10, 20): {where}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ab", help="comma-separated data sets: old against new strategy")
    parser.add_argument("--ranks", nargs=2, metavar=("DATASET", "CELLS"), help="MODEL:K,...")
    args = parser.parse_args()
    em_module.EMGaussianMixture._advance = _counted
    print("load average", os.getloadavg())
    with threadpool_limits(1):
        if args.ab:
            ab(args.ab.split(","))
        if args.ranks:
            cells = [(c.split(":")[0], int(c.split(":")[1])) for c in args.ranks[1].split(",")]
            ranks(args.ranks[0], cells)
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
