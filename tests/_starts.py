"""Starting values for EM tests: identity precisions in every storage layout, so that a fit
runs no data-driven initialisation and fits can be compared from the same start."""

from __future__ import annotations

import numpy as np


def identity_precisions(layout: str, k: int, d: int) -> np.ndarray:
    """Unit precisions of ``k`` components in ``d`` features, stored as ``layout`` stores them."""
    return {
        "full": np.stack([np.eye(d)] * k),
        "tied": np.eye(d),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
    }[layout]
