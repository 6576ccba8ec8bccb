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
    for diagonal covariances only the ``HalfNormal`` standard deviations. The models with one
    covariance for every component (EEE, EEI, EII) put the same priors on that one covariance;
    the spherical ones (VII, EII, ``Sigma = sigma^2 I``) put ``sigma ~ HalfNormal(pooled)``
    with ``pooled = sqrt(mean(sd_scale**2))`` (the table in :mod:`bayesgmm._families`).

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
        from ._scaling import AffineScaling

        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 2 or not np.all(np.isfinite(X)):
            raise ValueError("X must be a 2-D array of finite numbers with at least two rows.")
        constant = np.flatnonzero(np.max(X, axis=0) == np.min(X, axis=0))
        if constant.size:
            raise ValueError(
                f"Feature(s) {constant.tolist()} of X are constant: drop them before setting "
                "priors."
            )
        # mean and standard deviation without squaring the data (exact at 1e-200 and 1e200)
        return cls.from_scaling(
            AffineScaling.fit(X),
            weights_concentration=weights_concentration,
            lkj_eta=lkj_eta,
            means_spread=means_spread,
            sd_spread=sd_spread,
        )

    @classmethod
    def from_scaling(
        cls,
        scaling: Any,
        *,
        weights_concentration: float = 1.0,
        lkj_eta: float = 2.0,
        means_spread: float = 2.0,
        sd_spread: float = 1.0,
    ) -> GMMPriors:
        """:meth:`from_data`'s priors from the features' means and standard deviations
        (``scaling.loc`` and ``scaling.scale``, an :class:`~bayesgmm._scaling.AffineScaling`),
        e.g. those of the observed cells of rows with missing values, counted by weight."""
        with np.errstate(over="ignore"):
            means_scale, sd_scale = means_spread * scaling.scale, sd_spread * scaling.scale
        return cls(
            weights_concentration=weights_concentration,
            lkj_eta=lkj_eta,
            means_loc=tuple(scaling.loc),
            means_scale=tuple(means_scale),
            sd_scale=tuple(sd_scale),
        )

    def standardised(self, loc: Any, scale: Any) -> GMMPriors:
        """The same priors for standardised features ``z = (x - loc) / scale``.

        The model samples on that scale (:func:`bayesgmm.build_model`); the prior of each
        parameter in the data's units is unchanged: a mean's Normal moves and shrinks with the
        feature, a standard deviation's HalfNormal shrinks with it, and the LKJ prior on the
        correlations does not depend on the units.

        Parameters
        ----------
        loc, scale : array-like of shape (n_features,)

        Returns
        -------
        GMMPriors
            With one value per feature.

        Examples
        --------
        >>> priors = GMMPriors(means_loc=10.0, means_scale=4.0, sd_scale=2.0)
        >>> unit = priors.standardised([10.0], [2.0])
        >>> unit.means_loc, unit.means_scale, unit.sd_scale
        ((0.0,), (2.0,), (1.0,))
        """
        loc, scale = np.asarray(loc, dtype=float), np.asarray(scale, dtype=float)
        own = self.for_features(loc.size)
        with np.errstate(over="ignore", under="ignore"):
            values = {
                "means_loc": (np.asarray(own.means_loc) - loc) / scale,
                "means_scale": np.asarray(own.means_scale) / scale,
                "sd_scale": np.asarray(own.sd_scale) / scale,
            }
        for name, value in values.items():
            if not np.all(np.isfinite(value)) or (name != "means_loc" and np.any(value <= 0)):
                raise ValueError(
                    f"priors.{name} {getattr(own, name)} is out of all proportion to the "
                    f"data's spread (standard deviations {scale.tolist()}): give values on the "
                    "data's scale, or use GMMPriors.from_data(X)."
                )
        return GMMPriors(self.weights_concentration, self.lkj_eta, **values)

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
