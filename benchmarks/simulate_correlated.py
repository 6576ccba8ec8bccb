"""Write the simulated benchmark data set with known truth: strongly correlated components.

Four components in five features, each with within-component correlations of 0.9 to 0.95
(equicorrelated, autoregressive, mixed-sign and on another scale), so that the diagonal and
spherical models fit poorly and EM's starting point matters. Writes
``benchmarks/data/simcorr.csv`` (features), ``simcorr_labels.csv`` (the generating component)
and ``simcorr_truth.json`` (weights, means and covariances).

    python benchmarks/simulate_correlated.py [out_dir]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bayesgmm.datasets import simulate_mixture

N_SAMPLES = 500
SEED = 20240613


def correlation(kind: str, n_features: int) -> np.ndarray:
    """A correlation matrix whose off-diagonal entries are 0.9 or more in absolute value."""
    idx = np.arange(n_features)
    if kind == "equicorrelated":
        signs = np.ones(n_features)
        rho = 0.92
    elif kind == "mixed-sign":
        signs = np.where(idx % 2 == 0, 1.0, -1.0)
        rho = 0.9
    elif kind == "autoregressive":
        return 0.98 ** np.abs(idx[:, None] - idx[None, :])
    else:
        raise ValueError(f"unknown correlation kind {kind!r}")
    return rho * np.outer(signs, signs) + (1.0 - rho) * np.eye(n_features)


def truth() -> dict[str, np.ndarray]:
    """Weights, means and covariances of the generating mixture (D = 5, K = 4)."""
    d = 5
    scales = np.array([[1.0] * d, [1.5, 1.0, 0.8, 1.2, 1.0], [0.7] * d, [3.0, 2.0, 2.5, 3.0, 2.0]])
    kinds = ["equicorrelated", "autoregressive", "mixed-sign", "equicorrelated"]
    covariances = np.stack(
        [np.outer(s, s) * correlation(kind, d) for s, kind in zip(scales, kinds, strict=True)]
    )
    means = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [3.0, 1.0, -2.0, 0.0, 2.0],
            [-2.0, 2.0, 1.0, -3.0, 0.0],
            [1.0, -4.0, 3.0, 2.0, -2.0],
        ]
    )
    weights = np.array([0.35, 0.25, 0.25, 0.15])
    return {"weights": weights, "means": means, "covariances": covariances}


def main(out_dir: Path) -> None:
    params = truth()
    sim = simulate_mixture(N_SAMPLES, random_state=SEED, **params)
    columns = [f"x{j + 1}" for j in range(sim.X.shape[1])]
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(sim.X, columns=columns).to_csv(
        out_dir / "simcorr.csv", index=False, float_format="%.6f"
    )
    pd.DataFrame({"class": sim.labels + 1}).to_csv(out_dir / "simcorr_labels.csv", index=False)
    record = {key: value.tolist() for key, value in params.items()}
    record.update(n_samples=N_SAMPLES, seed=SEED, generator="bayesgmm.datasets.simulate_mixture")
    (out_dir / "simcorr_truth.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"simcorr: N = {N_SAMPLES}, D = {sim.X.shape[1]}, K = {len(params['weights'])}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
