"""EM estimates converted to the PyMC parameterisation: the point every chain starts from."""

from __future__ import annotations

import numpy as np
import pymc as pm
from pymc.initial_point import make_initial_point_fn

from ._families import bayes_family, start_values
from ._scaling import AffineScaling
from ._units import em_standardised
from .em import EMGaussianMixture
from .model import model_spec

__all__ = ["em_initial_point", "em_initial_values"]

_MIN_WEIGHT = 1e-6


def _check_compatible(model: pm.Model, em: EMGaussianMixture) -> None:
    n_components = len(model.coords["component"])
    n_features = len(model.coords["feature"])
    if (em.n_components, em.n_features_in_) != (n_components, n_features):
        raise ValueError(
            f"The EM fit has {em.n_components} components and {em.n_features_in_} features, "
            f"but the model has {n_components} components and {n_features} features: fit EM "
            "with the model's n_components on the same data."
        )


def _broaden_collapsed(covariances: np.ndarray, collapsed: np.ndarray) -> np.ndarray:
    """Replace collapsed components' covariances by the mean of the healthy ones."""
    healthy = np.setdiff1d(np.arange(len(covariances)), collapsed)
    if collapsed.size == 0 or healthy.size == 0:
        return covariances
    out = covariances.copy()
    out[collapsed] = covariances[healthy].mean(axis=0)
    return out


def _floored(covariances: np.ndarray, floor: float) -> np.ndarray:
    """``covariances`` (K, D, D) with their eigenvalues raised to at least ``floor``."""
    if floor <= 0:
        return covariances
    values, vectors = np.linalg.eigh(covariances)
    return (vectors * np.maximum(values, floor)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def em_initial_values(
    model: pm.Model, em: EMGaussianMixture, *, floor: float = 0.0
) -> dict[str, np.ndarray]:
    """EM estimates as initial values of the model's free variables (natural space).

    The means and covariances are converted to the standardised scale the model samples on
    (``means_z``, ``chol_cov_k``, ``chol_cov`` or ``stds_z``; see :func:`bayesgmm.build_model`).
    Weights below ``1e-6`` are lifted to it (and renormalised) so the simplex transform stays
    finite. EM's covariances are expanded to full matrices and then mapped to the model's
    family (:func:`bayesgmm._families.start_values`): an EM fit of the same model starts at
    its own estimate; another family is projected (a shared covariance is the weighted mean
    of EM's, a spherical variance the mean over features, a diagonal model keeps the
    diagonal). A component EM reports as collapsed
    (``collapsed_components_``) sits on a likelihood singularity, not at a posterior mode:
    it starts from the average covariance of the other components instead (where NUTS can
    take a step), with its EM mean and weight.

    Parameters
    ----------
    model : pymc.Model
        Built by :func:`bayesgmm.build_model`.
    em : EMGaussianMixture
        Fitted on the model's data.
    floor : float
        Raise the standardised covariances' eigenvalues to at least this: a start off a
        likelihood singularity EM may sit on (see :mod:`bayesgmm._precondition`).

    Returns
    -------
    dict
        Keyed by the model's random-variable names.

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, build_model, load_faithful
    >>> X = load_faithful()
    >>> em = EMGaussianMixture(2, random_state=0).fit(X)
    >>> sorted(em_initial_values(build_model(X, 2), em))
    ['chol_cov_0', 'chol_cov_1', 'means_z', 'weights']
    """
    _check_compatible(model, em)
    spec = model_spec(model)
    d = em.n_features_in_
    scaling = spec.scaling if spec is not None else AffineScaling(np.zeros(d), np.ones(d))
    family = bayes_family(spec.covariance_type if spec is not None else "full", d)
    weights, means, covariances = em_standardised(em, scaling)
    weights = np.maximum(weights, _MIN_WEIGHT)
    values = {"weights": weights / weights.sum(), "means_z": means}
    covariances = _broaden_collapsed(
        covariances, np.asarray(getattr(em, "collapsed_components_", []), dtype=int)
    )
    covariances = _floored(covariances, floor)
    return values | start_values(family, values["weights"], covariances)


def em_initial_point(
    model: pm.Model, em: EMGaussianMixture, *, floor: float = 0.0
) -> dict[str, np.ndarray]:
    """The EM start on the sampler's unconstrained space, keyed by value-variable names.

    Uses PyMC's own transforms (no jitter), so it is exactly what NUTS starts from.

    Parameters
    ----------
    model : pymc.Model
        From :func:`bayesgmm.build_model`.
    em : EMGaussianMixture
        A fitted EM estimate of the same data shape and number of components.
    floor : float
        See :func:`em_initial_values`.

    Returns
    -------
    dict of str to ndarray

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, build_model, load_faithful
    >>> X = load_faithful()
    >>> model = build_model(X, 2)
    >>> point = em_initial_point(model, EMGaussianMixture(2, random_state=0).fit(X))
    >>> sorted(point) == sorted(v.name for v in model.value_vars)
    True
    """
    point_fn = make_initial_point_fn(
        model=model,
        overrides=em_initial_values(model, em, floor=floor),
        jitter_rvs=set(),
        return_transformed=True,
    )
    return point_fn(None)
