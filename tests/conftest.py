"""Shared fixtures: small data sets with known truth, fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest

from bayesgmm.datasets import simulate_mixture


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
