"""The PyMC model of the Gaussian mixture, and nothing else.

Parameterisation (``K`` components, ``D`` features), one name per quantity shared with EM and
ArviZ:

- ``weights ~ Dirichlet(alpha)``, dims ``component``;
- ``means ~ Normal(loc, scale)``, dims ``(component, feature)``;
- full covariances: one ``pm.LKJCholeskyCov`` per component, named ``chol_cov_{k}`` (the batched
  form fails in PyMC 5.28), stacked into lower Cholesky factors ``(K, D, D)``; diagonal
  covariances: ``stds ~ HalfNormal``;
- deterministics ``covariances`` ``(component, feature, feature_bis)``, ``stds``
  ``(component, feature)`` and, for full covariances, ``correlations``;
- the labels are marginalised: ``obs ~ Mixture(weights, MvNormal(means, chol))``.

The data enter through ``pm.Data("X")`` so a compiled model can be reused for new data of the
same shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ._validation import check_choice, check_matrix
from .priors import GMMPriors

__all__ = ["BAYES_COVARIANCE_TYPES", "build_model", "chol_cov_name"]

BAYES_COVARIANCE_TYPES = ("full", "diag")


def chol_cov_name(component: int) -> str:
    """Name of the ``LKJCholeskyCov`` variable of one component."""
    return f"chol_cov_{component}"


def _full_cholesky(n_components: int, n_features: int, priors: GMMPriors) -> pt.TensorVariable:
    factors = []
    for k in range(n_components):
        packed = pm.LKJCholeskyCov(
            chol_cov_name(k),
            n=n_features,
            eta=priors.lkj_eta,
            sd_dist=pm.HalfNormal.dist(sigma=np.asarray(priors.sd_scale), shape=n_features),
            compute_corr=False,
        )
        factors.append(pm.expand_packed_triangular(n_features, packed, lower=True))
    return pt.stack(factors)


def _diag_cholesky(n_components: int, n_features: int, priors: GMMPriors) -> pt.TensorVariable:
    stds = pm.HalfNormal(
        "stds",
        sigma=np.broadcast_to(np.asarray(priors.sd_scale), (n_components, n_features)),
        dims=("component", "feature"),
    )
    return stds[:, :, None] * pt.eye(n_features)[None, :, :]


def build_model(
    X: Any,
    n_components: int,
    *,
    priors: GMMPriors | None = None,
    covariance_type: str = "full",
) -> pm.Model:
    """Build the PyMC Gaussian mixture with the labels marginalised.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; a DataFrame's column names become the ``feature`` coordinate.
    n_components : int
    priors : GMMPriors, optional
        Defaults to :meth:`GMMPriors.from_data`.
    covariance_type : {"full", "diag"}

    Returns
    -------
    pymc.Model
        With coords ``obs_id``, ``component``, ``feature`` and ``feature_bis``.

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> model = build_model(load_faithful(), 2)
    >>> sorted(model.coords)
    ['component', 'feature', 'feature_bis', 'obs_id']
    """
    check_choice("covariance_type", covariance_type, BAYES_COVARIANCE_TYPES)
    if not isinstance(n_components, int | np.integer) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
    data, names = check_matrix(X, n_components=n_components)
    n_samples, n_features = data.shape
    priors = (priors or GMMPriors.from_data(data)).for_features(n_features)
    coords = {
        "obs_id": np.arange(n_samples),
        "component": np.arange(n_components),
        "feature": names,
        "feature_bis": names,
    }
    with pm.Model(coords=coords) as model:
        observed = pm.Data("X", data, dims=("obs_id", "feature"))
        weights = pm.Dirichlet(
            "weights", a=np.full(n_components, priors.weights_concentration), dims="component"
        )
        means = pm.Normal(
            "means",
            mu=np.broadcast_to(np.asarray(priors.means_loc), (n_components, n_features)),
            sigma=np.broadcast_to(np.asarray(priors.means_scale), (n_components, n_features)),
            dims=("component", "feature"),
        )
        if covariance_type == "full":
            chol = _full_cholesky(n_components, n_features, priors)
        else:
            chol = _diag_cholesky(n_components, n_features, priors)
        covariances = pm.Deterministic(
            "covariances", chol @ chol.mT, dims=("component", "feature", "feature_bis")
        )
        if covariance_type == "full":
            stds = pm.Deterministic(
                "stds",
                pt.sqrt(pt.diagonal(covariances, axis1=1, axis2=2)),
                dims=("component", "feature"),
            )
            pm.Deterministic(
                "correlations",
                covariances / (stds[:, :, None] * stds[:, None, :]),
                dims=("component", "feature", "feature_bis"),
            )
        pm.Mixture(
            "obs",
            w=weights,
            comp_dists=pm.MvNormal.dist(mu=means, chol=chol),
            observed=observed,
            dims=("obs_id", "feature"),
        )
    return model
