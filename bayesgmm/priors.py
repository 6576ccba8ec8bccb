"""Prior settings of the Bayesian mixture, as one frozen, documented value."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["GMMPriors"]


def _vector(value: Any, name: str) -> tuple[float, ...]:
    array = np.atleast_1d(np.asarray(value, dtype=float))
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite number or a 1-D sequence, got {value!r}.")
    return tuple(float(v) for v in array)


@dataclass(frozen=True)
class GMMPriors:
    """Priors of the Bayesian Gaussian mixture.

    ``weights ~ Dirichlet(weights_concentration * ones(K))``;
    ``means[k, j] ~ Normal(means_loc[j], means_scale[j])``;
    for full covariances, ``Sigma_k = diag(s_k) Omega_k diag(s_k)`` with correlations
    ``Omega_k ~ LKJ(lkj_eta)`` and standard deviations ``s_k[j] ~ HalfNormal(sd_scale[j])``;
    for diagonal covariances only the ``HalfNormal`` standard deviations.

    Per-feature settings are tuples (one value per feature) or one number for every feature.

    Parameters
    ----------
    weights_concentration : float, default=1.0
        Dirichlet concentration; 1 is uniform on the simplex, values below 1 let surplus
        components empty out, values above 1 keep components populated.
    lkj_eta : float, default=2.0
        LKJ shape; 1 is uniform over correlation matrices, 2 mildly favours weak correlations.
    means_loc, means_scale : float or tuple of float
        Location and scale of the Normal prior on every component mean.
    sd_scale : float or tuple of float
        Scale of the HalfNormal prior on component standard deviations.

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> priors = GMMPriors.from_data(load_faithful())
    >>> priors.lkj_eta, len(priors.means_loc)
    (2.0, 2)
    """

    weights_concentration: float = 1.0
    lkj_eta: float = 2.0
    means_loc: tuple[float, ...] = field(default=(0.0,))
    means_scale: tuple[float, ...] = field(default=(10.0,))
    sd_scale: tuple[float, ...] = field(default=(5.0,))

    def __post_init__(self) -> None:
        for name in ("means_loc", "means_scale", "sd_scale"):
            object.__setattr__(self, name, _vector(getattr(self, name), name))
        for name in ("weights_concentration", "lkj_eta"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
            object.__setattr__(self, name, float(value))
        for name in ("means_scale", "sd_scale"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")

    @classmethod
    def from_data(
        cls,
        X: Any,
        *,
        weights_concentration: float = 1.0,
        lkj_eta: float = 2.0,
        means_spread: float = 2.0,
        sd_spread: float = 1.0,
    ) -> GMMPriors:
        """Weakly informative priors scaled to the data, feature by feature.

        ``means_loc`` is the feature mean and ``means_scale = means_spread * std`` (so the
        prior on every component mean covers the data's range twice over); ``sd_scale =
        sd_spread * std`` (a component is at most about as wide as the data, with the
        HalfNormal's mass on ``(0, 2 std)``). Using the data to set the scale of the priors is
        an empirical-Bayes convenience; pass explicit values for a fully prior-driven model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        weights_concentration, lkj_eta : float
        means_spread, sd_spread : float
            Multiples of each feature's standard deviation.
        """
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError("X must be a 2-D array with at least two rows.")
        std = X.std(axis=0)
        if np.any(std == 0):
            raise ValueError("X has a constant feature: drop it before setting priors.")
        return cls(
            weights_concentration=weights_concentration,
            lkj_eta=lkj_eta,
            means_loc=tuple(X.mean(axis=0)),
            means_scale=tuple(means_spread * std),
            sd_scale=tuple(sd_spread * std),
        )

    def for_features(self, n_features: int) -> GMMPriors:
        """Broadcast the per-feature settings to ``n_features`` (one value repeats)."""
        out = {}
        for name in ("means_loc", "means_scale", "sd_scale"):
            values = getattr(self, name)
            if len(values) == 1:
                values = values * n_features
            elif len(values) != n_features:
                raise ValueError(
                    f"priors.{name} has {len(values)} values but the data has {n_features} "
                    "features: give one value per feature or a single value."
                )
            out[name] = values
        return GMMPriors(self.weights_concentration, self.lkj_eta, **out)

    def to_json(self) -> str:
        """A JSON string, as stored in the attrs of the results."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GMMPriors:
        return cls(**json.loads(text))
