"""The hard posteriors of the MCMC benchmark: strong correlation, near-collinearity, real data.

- ``correlated``: simulated, D = 5, K = 4, N = 200, every component with within-component
  correlation 0.95 (equicorrelated or mixed-sign);
- ``collinear``: simulated, D = 4, K = 3, N = 300, the last column the sum of the others plus
  noise of 2% of its spread (near-singular covariances);
- ``wine``: scikit-learn's wine data (178 x 13, K = 3), shipped with scikit-learn;
- ``crabs``: ``MASS::crabs`` (200 x 5 morphometric measurements, K = 4), read through
  ``Rscript`` when R and MASS are installed.

The real data sets are held back from the repository on purpose (benchmarks/data/README.md):
they are read at run time and never written here.
"""

from __future__ import annotations

import subprocess
from io import StringIO

import numpy as np
import pandas as pd

from bayesgmm.datasets import simulate_mixture

__all__ = ["HARD_CASES", "hard_case"]


def correlated(n_rows: int = 200, rho: float = 0.95) -> np.ndarray:
    """Four components in five features, within-component correlation ``rho``."""
    d = 5
    signs = [np.ones(d), np.where(np.arange(d) % 2 == 0, 1.0, -1.0), np.ones(d), -np.ones(d)]
    scales = np.array([[1.0] * d, [1.5, 1.0, 0.8, 1.2, 1.0], [0.7] * d, [2.0, 1.5, 2.0, 2.5, 1.5]])
    covariances = []
    for s, sign in zip(scales, signs, strict=True):
        corr = rho * np.outer(sign, sign) + (1.0 - rho) * np.eye(d)
        covariances.append(np.outer(s, s) * corr)
    means = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [4.0, 1.0, -3.0, 0.0, 3.0],
            [-3.0, 3.0, 1.0, -4.0, 0.0],
            [2.0, -5.0, 4.0, 3.0, -3.0],
        ]
    )
    sim = simulate_mixture(
        n_rows,
        weights=[0.3, 0.25, 0.25, 0.2],
        means=means,
        covariances=covariances,
        random_state=20261202,
    )
    return sim.X


def collinear(n_rows: int = 300, noise: float = 0.02) -> np.ndarray:
    """Three components in three free features plus their sum (noise: ``noise`` of its sd)."""
    sim = simulate_mixture(
        n_rows,
        weights=[0.4, 0.35, 0.25],
        means=[[0.0, 0.0, 0.0], [4.0, -2.0, 1.0], [-3.0, 3.0, 4.0]],
        covariances=[
            np.eye(3),
            [[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]],
            np.diag([0.5, 2.0, 1.0]),
        ],
        random_state=20261203,
    )
    total = sim.X.sum(axis=1)
    rng = np.random.default_rng(20261204)
    column = total + noise * total.std() * rng.standard_normal(n_rows)
    return np.column_stack([sim.X, column])


def wine() -> np.ndarray:
    """scikit-learn's wine recognition data (178 x 13)."""
    from sklearn.datasets import load_wine

    return load_wine().data


def crabs() -> np.ndarray:
    """``MASS::crabs``' five measurements (200 x 5), through ``Rscript``."""
    code = "library(MASS); write.csv(crabs[, 4:8], stdout(), row.names = FALSE)"
    out = subprocess.run(
        ["Rscript", "-e", code], capture_output=True, text=True, check=True, timeout=120
    )
    return pd.read_csv(StringIO(out.stdout)).to_numpy(dtype=float)


# name -> (loader, number of components)
HARD_CASES = {
    "correlated": (correlated, 4),
    "collinear": (collinear, 3),
    "wine": (wine, 3),
    "crabs": (crabs, 4),
}


def hard_case(name: str) -> tuple[np.ndarray, int]:
    """The data and number of components of one hard case."""
    loader, k = HARD_CASES[name]
    return loader(), k
