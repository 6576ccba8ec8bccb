"""The embedded Old Faithful data and simulators with known truth."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

__all__ = ["SimulatedMixture", "load_faithful", "simulate_mixture"]


def load_faithful() -> pd.DataFrame:
    """Old Faithful geyser eruptions (Yellowstone), 272 rows.

    Columns ``eruptions`` (duration, minutes) and ``waiting`` (minutes to the next eruption).
    R's ``datasets::faithful`` (Härdle 1991; Azzalini and Bowman 1990), public domain.

    Returns
    -------
    pandas.DataFrame of shape (272, 2)

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> load_faithful().shape
    (272, 2)
    """
    with resources.files("bayesgmm").joinpath("data/faithful.csv").open("r") as handle:
        return pd.read_csv(handle)


@dataclass(frozen=True)
class SimulatedMixture:
    """Data drawn from a Gaussian mixture with known parameters.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
        The component that generated each row.
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features, n_features)

    Examples
    --------
    >>> sim = simulate_mixture(50, weights=[1.0], means=[[0.0]], covariances=[[[1.0]]],
    ...                        random_state=0)
    >>> sim.X.shape, sim.labels.shape
    ((50, 1), (50,))
    """

    X: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


def simulate_mixture(
    n_samples: int,
    *,
    weights: Any,
    means: Any,
    covariances: Any,
    random_state: Any = None,
) -> SimulatedMixture:
    """Draw ``n_samples`` rows from a full-covariance Gaussian mixture.

    Labels are drawn independently per row (not sorted), so any prefix of the data is itself a
    sample from the mixture.

    Parameters
    ----------
    n_samples : int
    weights : array-like of shape (n_components,)
    means : array-like of shape (n_components, n_features)
    covariances : array-like of shape (n_components, n_features, n_features)
    random_state : int, Generator, RandomState or None

    Examples
    --------
    >>> from bayesgmm.datasets import simulate_mixture
    >>> sim = simulate_mixture(100, weights=[0.5, 0.5], means=[[0, 0], [5, 5]],
    ...                        covariances=[np.eye(2), np.eye(2)], random_state=0)
    >>> sim.X.shape
    (100, 2)
    """
    weights = np.asarray(weights, dtype=float)
    means = np.atleast_2d(np.asarray(means, dtype=float))
    covariances = np.asarray(covariances, dtype=float)
    n_components, n_features = means.shape
    if weights.shape != (n_components,) or not np.isclose(weights.sum(), 1.0):
        raise ValueError("weights must have one entry per row of means and sum to 1.")
    if covariances.shape != (n_components, n_features, n_features):
        raise ValueError(
            f"covariances must have shape {(n_components, n_features, n_features)}, "
            f"got {covariances.shape}."
        )
    rng = random_state if isinstance(random_state, np.random.Generator) else None
    if rng is None:
        rng = np.random.default_rng(check_random_state(random_state).randint(2**31))
    labels = rng.choice(n_components, size=n_samples, p=weights)
    chol = np.linalg.cholesky(covariances)
    z = rng.standard_normal((n_samples, n_features))
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return SimulatedMixture(X, labels, weights, means, covariances)
