"""The affine map between the user's units and the unit-scale coordinates EM works in.

EM is equivariant under ``x -> (x - loc) / scale`` for every covariance family when ``scale`` is
per feature (full, tied, diag) or one number (spherical). Working on standardised data makes the
fit independent of the data's units: data at scale 1e-200 or 1e200 fits exactly as at scale 1,
where squares would otherwise underflow or overflow, and ``reg_covar`` becomes a fraction of each
feature's variance rather than an absolute number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AffineScaling:
    """``x_unit = (x - loc) / scale`` with ``loc`` and ``scale`` of shape ``(n_features,)``."""

    loc: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, *, isotropic: bool = False) -> AffineScaling:
        """Centre on the mean and scale by the standard deviation, computed without overflow.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Finite data with no constant feature (validated beforehand).
        isotropic : bool
            Use one scale for every feature (needed by spherical covariances), the root mean
            of the per-feature variances.
        """
        magnitude = np.max(np.abs(X), axis=0)
        magnitude = np.where(magnitude > 0, magnitude, 1.0)
        reduced = X / magnitude
        mean = reduced.mean(axis=0)
        var = reduced.var(axis=0)
        loc = mean * magnitude
        if isotropic:
            common = np.max(magnitude)
            rel_var = var * (magnitude / common) ** 2
            scale = np.full(X.shape[1], np.sqrt(rel_var.mean()) * common)
        else:
            scale = np.sqrt(var) * magnitude
        scale = np.where(scale > 0, scale, 1.0)
        return cls(loc=loc, scale=scale)

    @property
    def log_jacobian(self) -> float:
        """``sum(log(scale))``: subtract from a unit-scale log density to get the user's."""
        return float(np.sum(np.log(self.scale)))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """User units to unit scale."""
        return (X - self.loc) / self.scale

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Unit scale to user units."""
        return X * self.scale + self.loc

    def means_to_unit(self, means: np.ndarray) -> np.ndarray:
        return self.transform(means)

    def means_from_unit(self, means: np.ndarray) -> np.ndarray:
        return self.inverse_transform(means)

    def covariances_from_unit(self, covariances: np.ndarray, covariance_type: str) -> np.ndarray:
        """Covariances in user units (may overflow to inf for data beyond ~1e154)."""
        s = self.scale
        with np.errstate(over="ignore"):
            if covariance_type in ("full", "tied"):
                return covariances * s[:, None] * s[None, :]
            if covariance_type == "diag":
                return covariances * s**2
            return covariances * s[0] ** 2

    def precisions_cholesky_to_unit(
        self, precisions_chol: np.ndarray, covariance_type: str
    ) -> np.ndarray:
        """Precision factors of the user's units mapped to unit scale (``U_unit = D U``)."""
        s = self.scale
        if covariance_type in ("full", "tied"):
            return precisions_chol * s[:, None]
        if covariance_type == "diag":
            return precisions_chol * s
        return precisions_chol * s[0]

    def precisions_cholesky_from_unit(
        self, precisions_chol: np.ndarray, covariance_type: str
    ) -> np.ndarray:
        """Precision factors in user units (``U = D^-1 U_unit``)."""
        s = self.scale
        if covariance_type in ("full", "tied"):
            return precisions_chol / s[:, None]
        if covariance_type == "diag":
            return precisions_chol / s
        return precisions_chol / s[0]
