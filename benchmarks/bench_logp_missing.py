"""Kernel log density over rows with missing cells against the complete-data kernel.

Per-call time (value and gradient, the call NUTS makes) at the EM start, in the same run: Old
Faithful K=2 with 15% of cells removed, and simulated N=1000, D=6, K=3 with 20% removed. Prints
microseconds per call on the complete rows and on the rows with holes, and their ratio.

    python benchmarks/bench_logp_missing.py
"""

from __future__ import annotations

import os

import numpy as np
from bench_duplicates import _per_call  # the same timing loop (this script's folder)

from bayesgmm import EMGaussianMixture, build_model
from bayesgmm._logdensity import log_density_for
from bayesgmm.datasets import load_faithful, simulate_mixture
from bayesgmm.sampling import _flat_start


def _case(name: str, X: np.ndarray, k: int, fraction: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    holes = X.copy()
    holes[rng.random(X.shape) < fraction] = np.nan
    holes = holes[~np.isnan(holes).all(axis=1)]
    model = build_model(holes, k)
    density = log_density_for(model)
    x = _flat_start(model, EMGaussianMixture(k, random_state=0).fit(holes))
    complete = density.rows(X, collapse=False)
    missing = density.rows(holes, collapse=False)
    repeats = max(20, int(2e5 / X.shape[0]))
    t_complete = _per_call(density, x, complete, repeats)
    t_missing = _per_call(density, x, missing, repeats)
    n_patterns = len(np.unique(np.isnan(holes), axis=0))
    print(
        f"| {name} | {holes.shape[0]} | {fraction:.2f} | {n_patterns} | {t_complete:.1f} | "
        f"{t_missing:.1f} | {t_missing / t_complete:.2f} |"
    )


def main() -> None:
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average)")
    print("| data | rows | missing | patterns | complete (us) | missing (us) | ratio |")
    print("|---|---|---|---|---|---|---|")
    faithful = np.ascontiguousarray(load_faithful().to_numpy(), dtype=np.float64)
    _case("Old Faithful K=2", faithful, 2, 0.15, 0)
    rng = np.random.default_rng(0)
    means = rng.normal(scale=4.0, size=(3, 6))
    factors = rng.normal(size=(3, 6, 6)) / 3.0 + np.eye(6)
    sim = simulate_mixture(
        1000,
        weights=[0.3, 0.3, 0.4],
        means=means,
        covariances=factors @ np.swapaxes(factors, 1, 2),
        random_state=1,
    )
    _case("simulated D=6 K=3", np.ascontiguousarray(sim.X, dtype=np.float64), 3, 0.20, 2)


if __name__ == "__main__":
    main()
