"""Collapsing exact duplicate rows before kernel sampling: evaluations of the log density.

The kernel log density (value and gradient, the call NUTS makes) at the EM start, on all rows
against the unique rows weighted by their counts (the weighted Numba pass), in the same run:
Old Faithful (272 rows), and simulated data rounded to one decimal (many duplicates). Prints
the unique fraction, microseconds per call and the ratio all / unique (above 1: collapsing is
faster); ``bayesgmm._logdensity_missing.COLLAPSE_FRACTION`` is where collapsing starts.

    python benchmarks/bench_duplicates.py
"""

from __future__ import annotations

import os
import time

import numpy as np

from bayesgmm import EMGaussianMixture, build_model
from bayesgmm._logdensity import log_density_for
from bayesgmm._logdensity_missing import Rows, collapse_duplicates
from bayesgmm.datasets import load_faithful, simulate_mixture
from bayesgmm.sampling import _flat_start


def _per_call(density, x, data, repeats: int) -> float:
    density(x, data)  # compiled and warm
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            density(x, data)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


def _case(name: str, X: np.ndarray, k: int) -> None:
    model = build_model(X, k)
    density = log_density_for(model)
    x = _flat_start(model, EMGaussianMixture(k, random_state=0).fit(X))
    full = np.ascontiguousarray(X, dtype=np.float64)
    unique, counts = collapse_duplicates(full, None)
    if counts is None:  # below the threshold: collapse anyway, to measure
        unique, counts = np.unique(full, axis=0, return_counts=True)
        counts = counts.astype(np.float64)
    collapsed = Rows.prepare(unique, counts)
    a, b = density(x, full), density(x, collapsed)
    assert abs(a[0] - b[0]) <= 1e-10 * abs(a[0])
    repeats = max(20, int(2e6 / X.shape[0]))
    t_full = _per_call(density, x, full, repeats)
    t_unique = _per_call(density, x, collapsed, repeats)
    print(
        f"| {name} | {X.shape[0]} | {unique.shape[0] / X.shape[0]:.3f} | {t_full:.1f} | "
        f"{t_unique:.1f} | {t_full / t_unique:.2f} |"
    )


def main() -> None:
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average)")
    print("| data | rows | unique fraction | all rows (us) | unique rows (us) | ratio |")
    print("|---|---|---|---|---|---|")
    _case("Old Faithful, K=2", load_faithful().to_numpy(), 2)
    sim = simulate_mixture(
        20000,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [3.0, 3.0]],
        covariances=[np.eye(2), np.eye(2)],
        random_state=1,
    )
    _case("simulated N=20000 rounded to 0.1, K=2", np.round(sim.X, 1), 2)


if __name__ == "__main__":
    main()
