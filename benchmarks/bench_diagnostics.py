"""The gates' R-hat and ESS: bayesgmm's vectorised statistics against ArviZ's, side by side.

The sampler judges R-hat and bulk and tail ESS of every scalar (weights, means, the
covariances' lower triangles) after each run it makes (:func:`bayesgmm.diagnostics.
parameter_diagnostics`). Printed for posteriors of the sizes a fit makes (components x
features, chains x draws): ArviZ's ``summary(kind="diagnostics")`` (the call the gates made
before), ArviZ's ``ess`` (bulk, tail) and ``rhat`` alone, and
:func:`bayesgmm._convergence.rank_diagnostics`, with the ratios and the largest relative
difference between ours and ArviZ's numbers. The draws are AR(1) chains, correlation 0.7.

    python benchmarks/bench_diagnostics.py
    python benchmarks/bench_diagnostics.py --repeats 5
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import arviz_stats as azs
import numpy as np
import xarray as xr

from bayesgmm._convergence import rank_diagnostics

# (components, features, chains, draws): Old Faithful K=2; iris K=3; a 12-feature K=3
# (gclus body girths) after NUTS and after the darting step's 1000 + 3000 iterations;
# 13 features, K=4 (wine)
SIZES = ((2, 2, 4, 1000), (3, 4, 4, 1000), (3, 12, 4, 1000), (3, 12, 4, 4000), (4, 13, 4, 2000))


def _draws(n_scalars: int, chains: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    values = np.empty((chains, draws, n_scalars))
    values[:, 0] = rng.standard_normal((chains, n_scalars))
    for t in range(1, draws):
        values[:, t] = 0.7 * values[:, t - 1] + rng.standard_normal((chains, n_scalars))
    return values


def _best(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'K':>2} {'D':>3} {'scalars':>7} {'chains x draws':>15} {'summary s':>10} "
        f"{'ess+rhat s':>10} {'ours s':>8} {'summary/ours':>12} {'max rel diff':>12}"
    )
    for k, d, chains, draws in SIZES:
        n_scalars = k * (1 + d + d * (d + 1) // 2)
        values = _draws(n_scalars, chains, draws, rng)
        dataset = xr.Dataset({"theta": (("chain", "draw", "scalar"), values)})

        def arviz_summary(dataset=dataset):
            return az.summary(dataset, kind="diagnostics", round_to="none")

        def arviz_alone(dataset=dataset):
            return (
                azs.ess(dataset, method="bulk"),
                azs.ess(dataset, method="tail"),
                azs.rhat(dataset),
            )

        summary_s = _best(arviz_summary, args.repeats)
        alone_s = _best(arviz_alone, args.repeats)
        ours_s = _best(lambda values=values: rank_diagnostics(values), args.repeats)
        ours, theirs = rank_diagnostics(values), arviz_summary()
        diff = max(
            float(np.max(np.abs(ours[c] - theirs[c].to_numpy()) / np.abs(theirs[c].to_numpy())))
            for c in ("ess_bulk", "ess_tail", "r_hat")
        )
        print(
            f"{k:>2} {d:>3} {n_scalars:>7} {f'{chains} x {draws}':>15} {summary_s:>10.3f} "
            f"{alone_s:>10.3f} {ours_s:>8.3f} {summary_s / ours_s:>12.1f} {diff:>12.1e}"
        )


if __name__ == "__main__":
    main()
