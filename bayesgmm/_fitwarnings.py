"""Warnings :class:`bayesgmm.BayesianGMM` gives before sampling, when the data cannot support
the model's posterior: more free parameters than rows, or EM's collapse onto tied values."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._gaussian import full_covariances
from ._models import n_parameters
from .diagnostics import SamplingWarning

__all__ = ["warn_collapse_on_ties", "warn_many_parameters"]


def warn_many_parameters(
    n_rows: float, n_components: int, n_features: int, covariance_type: str, *, stacklevel: int
) -> None:
    """Warn, before sampling, when the mixture has more free parameters than rows.

    Such a posterior is barely identified by the data (e.g. two full 6 x 6 covariances from
    47 rows): NUTS then fails its diagnostics however long it runs. The warning names the
    smaller covariance models (and their parameter counts) that the rows can support.

    Parameters
    ----------
    n_rows : float
        Rows (the sum of the frequency weights, if any).
    n_components, n_features : int
    covariance_type : str
        One of the Bayesian model's covariance types.
    stacklevel : int
    """
    count = n_parameters(covariance_type, n_components, n_features)
    if count <= n_rows:
        return
    smaller = {
        name: n_parameters(name, n_components, n_features)
        for name in ("diag", "tied", "spherical")  # diag keeps each component its own scales
        if name != covariance_type
    }
    fits = [f"'{name}' ({p})" for name, p in smaller.items() if p <= min(n_rows, count)]
    remedy = f"covariance_type={', '.join(fits)} (free parameters), or " if fits else ""
    warnings.warn(
        f"The model (covariance_type={covariance_type!r}, {n_components} components, "
        f"{n_features} features) has {count} free parameters for {n_rows:g} rows: the data "
        f"barely identify its posterior and NUTS is unlikely to converge. Use {remedy}fewer "
        "components.",
        SamplingWarning,
        stacklevel=stacklevel,
    )


def warn_collapse_on_ties(X: np.ndarray, em: Any, names: Sequence[str], *, stacklevel: int) -> None:
    """Warn, before sampling, when EM collapsed a component onto rows that share a value.

    With tied values (rounded or zero-inflated features) a component on those rows can shrink
    that feature's standard deviation to 0, where the likelihood grows without bound; the
    HalfNormal priors on standard deviations do not prevent it, so the posterior is improper
    and NUTS cannot converge (MASS's ``fgl``: 176 of 214 rows have Ba = 0); the resolution and
    inverse-gamma priors on the variances (``GMMPriors.sd_prior``) do for diagonal models (with
    full covariances, rows tied on several features still let a correlation reach 1). The
    warning names
    the feature whose spread collapsed, the tied value and its count, and the remedies.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The rows EM was fitted on (NaN for missing cells).
    em : EMGaussianMixture
        Fitted; its ``collapsed_components_`` and ``covariances_`` are read.
    names : sequence of str
        Feature names.
    stacklevel : int
    """
    full = full_covariances(em.covariances_, em.model_name_, em.n_components, X.shape[1])
    found = []
    for k in getattr(em, "collapsed_components_", []):
        j = int(np.argmin(np.sqrt(np.diagonal(full[k])) / np.nanstd(X, axis=0)))
        values, counts = np.unique(X[~np.isnan(X[:, j]), j], return_counts=True)
        values, counts = values[counts >= 2], counts[counts >= 2]
        if values.size:  # the tied value the component sits on: the one nearest its mean
            at = int(np.argmin(np.abs(values - em.means_[k, j])))
            found.append(
                f"component {k} on {names[j]} = {values[at]:g}, a value {counts[at]} rows share"
            )
    if found:
        warnings.warn(
            f"EM collapsed a component onto tied values ({'; '.join(found)}): a component's "
            "standard deviation can shrink to 0 on rows that share a value, where the "
            "posterior has no bound under HalfNormal priors, so NUTS will not converge. Add "
            "noise of the rounding unit's size to the feature, drop or transform it, use "
            "fewer components, or bound each variance below with sd_prior='resolution' (at "
            "the rounding noise) or 'inverse_gamma' (mclust's prior); with a full or tied "
            "covariance, rows tied on several features still let a correlation run to +-1, "
            "so pair it with covariance_type='diag'.",
            SamplingWarning,
            stacklevel=stacklevel,
        )
