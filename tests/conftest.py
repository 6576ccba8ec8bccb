"""Shared fixtures: small data sets with known truth, fixed seeds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bayesgmm.datasets import simulate_mixture


def benchmark_script(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py`` (the benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_fresh(
    script: str, numba_cache: Path, *, timeout: float = 300, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    """``python -c script`` in a fresh process with its own Numba cache and one OpenMP thread
    (``env``: more variables), its output captured as text."""
    environ = {**os.environ, "NUMBA_CACHE_DIR": str(numba_cache), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", script],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261128)


@pytest.fixture(scope="session")
def three_clusters():
    """Well-separated D=2, K=3 mixture with known truth."""
    return simulate_mixture(
        600,
        weights=[0.5, 0.3, 0.2],
        means=[[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]],
        covariances=[
            [[1.0, 0.3], [0.3, 1.0]],
            [[0.5, 0.0], [0.0, 1.5]],
            [[1.0, -0.4], [-0.4, 0.8]],
        ],
        random_state=1,
    )
