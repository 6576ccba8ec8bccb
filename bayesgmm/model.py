"""The PyMC model of the Gaussian mixture, and nothing else.

The parameters are sampled on standardised features, ``z = (x - loc) / scale`` with the mean
and standard deviation of each feature of the data the model is built on, so that NUTS works
on numbers near 1 whatever the data's units (data at 1e-200 or 1e200 sample as data at 1);
the priors are converted to that scale, so the model in the data's units is the one documented
below. Parameterisation (``K`` components, ``D`` features), one name per quantity shared with
EM and ArviZ:

- ``weights ~ Dirichlet(alpha)``, dims ``component``;
- ``means_z ~ Normal((loc_prior - loc) / scale, scale_prior / scale)``, dims
  ``(component, feature)``: the standardised means;
- the covariances, in one of six of mclust's models (:mod:`bayesgmm._families`, which states
  their priors): VVV (``full``) has one ``pm.LKJCholeskyCov`` per component, named
  ``chol_cov_{k}`` (the batched form fails in PyMC), the lower Cholesky factors of the
  standardised covariances; EEE (``tied``) one, named ``chol_cov``, for every component; the
  diagonal models VVI (``diag``), EEI, VII (``spherical``) and EII have ``stds_z`` (HalfNormal,
  or the square root of an inverse-gamma: ``GMMPriors.sd_prior``) with dims ``(component,
  feature)``, ``(feature,)``, ``(component,)`` and ``()``;
- deterministics in the data's units: ``means`` ``(component, feature)``, ``covariances``
  ``(component, feature, feature_bis)``, ``stds`` ``(component, feature)`` and, for VVV and
  EEE, ``correlations`` (a shared covariance repeated for every component);
- the labels are marginalised: ``obs`` (the data, in their units) is a ``pm.CustomDist`` whose
  log density is ``logsumexp_k(log weights_k + log MvNormal(z | means_z_k, chol_k)) -
  sum(log scale)`` (:func:`mixture_logp` of the standardised rows, and the Jacobian). Rows with
  missing cells (NaN, missing at random) contribute the density of their observed entries:
  the missingness patterns are constants of the graph, each scored under the marginal mixture
  (``means_z[:, O]`` and the Cholesky factors of ``Sigma[O, O]``) with the Jacobian of the
  observed features; ``X`` holds 0 in the missing cells, so PyMC imputes nothing (no NaN
  observation becomes a free variable). Frequency weights multiply each row's term.

The data enter through ``pm.Data("X")`` so a compiled model can be reused for new data of the
same shape (the standardisation stays the one of the data the model was built on, which is as
exact: any ``loc`` and ``scale`` define the same model).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ._families import BAYES_COVARIANCE_TYPES, Family, bayes_family, chol_cov_name, family_cholesky
from ._gaussian import LOG_2PI
from ._missing import drop_empty_rows, observed_summary
from ._scaling import AffineScaling
from ._validation import check_matrix, check_sample_weight
from .priors import DEFAULT_SD_PRIOR, GMMPriors, joint_resolution_floor, resolution_floor

__all__ = [
    "BAYES_COVARIANCE_TYPES",
    "ModelSpec",
    "build_model",
    "chol_cov_name",
    "default_priors",
    "mixture_logp",
    "model_spec",
    "observed_rows",
]


def _drop_batch(param: pt.TensorVariable, core_ndim: int) -> pt.TensorVariable:
    """PyMC hands CustomDist parameters with size-1 batch dims; the mixture's don't vary by row."""
    return param[(0,) * (param.ndim - core_ndim)] if param.ndim > core_ndim else param


def mixture_logp(
    value: pt.TensorVariable,
    weights: pt.TensorVariable,
    means: pt.TensorVariable,
    chol: pt.TensorVariable,
) -> pt.TensorVariable:
    """Per-row mixture log density, ``logsumexp_k(log w_k + log N(x | mu_k, L_k L_k'))``.

    The symbolic twin of :func:`bayesgmm._gaussian.log_responsibilities` (the tests check the
    two agree). Each component's residuals are whitened by the inverse of its Cholesky factor,
    ``z = (x - mu_k) L_k^{-T}``: the ``D x D`` inverses come from one small triangular solve
    against the identity, then all rows go through one batched matrix product (whose gradient
    is a product too). A triangular solve over all ``N`` rows instead cost about 30% more per
    logp-and-gradient call under JAX. The residual is formed before the product, so data far
    from the origin lose no precision. The log-determinant comes from the Cholesky diagonal.
    Faster to compile and evaluate than ``pm.Mixture`` of ``MvNormal``.

    Parameters
    ----------
    value : TensorVariable of shape (N, D)
        The rows.
    weights : TensorVariable of shape (K,)
    means : TensorVariable of shape (K, D)
    chol : TensorVariable of shape (K, D, D)
        Lower Cholesky factors of the covariances. Leading size-1 batch dims that PyMC adds
        to ``CustomDist`` parameters are dropped.

    Returns
    -------
    TensorVariable of shape (N,)

    Examples
    --------
    >>> import numpy as np, pytensor.tensor as pt
    >>> x = pt.as_tensor(np.zeros((1, 2)))
    >>> w, mu = pt.as_tensor([0.5, 0.5]), pt.as_tensor(np.zeros((2, 2)))
    >>> chol = pt.as_tensor(np.stack([np.eye(2), np.eye(2)]))
    >>> float(mixture_logp(x, w, mu, chol).eval()[0])  # log N(0 | 0, I) in 2-D
    -1.8378770664093453
    """
    weights, means, chol = _drop_batch(weights, 1), _drop_batch(means, 2), _drop_batch(chol, 3)
    n_features = value.shape[-1]
    identity = pt.broadcast_to(pt.eye(n_features), chol.shape)
    inverse = pt.linalg.solve_triangular(chol, identity, lower=True)  # (K, D, D)
    whitened = (value[None, :, :] - means[:, None, :]) @ inverse.mT  # (K, N, D)
    log_det = pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    log_dens = -0.5 * (whitened**2).sum(axis=-1) - log_det[:, None] - 0.5 * n_features * LOG_2PI
    return pt.logsumexp(pt.log(weights)[:, None] + log_dens, axis=0)


def _observed_logp(value, weights, means, chol, loc, scale):
    """Log density of rows in the data's units: the mixture of the standardised rows, and the
    Jacobian ``-sum(log scale)`` of the standardisation."""
    loc, scale = _drop_batch(loc, 1), _drop_batch(scale, 1)
    return mixture_logp((value - loc) / scale, weights, means, chol) - pt.log(scale).sum()


def _patterns_logp(value, weights, means, chol, loc, scale, *, patterns, sample_weight):
    """Per-row log density of the observed entries of rows with missing cells (and weights).

    ``patterns`` are constants baked into the graph: ``(rows, observed)`` index arrays of each
    missingness pattern. A pattern's rows are standardised on their observed features and
    scored under the marginal mixture: means ``mu_k[O]``, the Cholesky factors of the observed
    sub-covariances ``Sigma_k[O, O]``, and the Jacobian ``-sum_{j in O} log scale_j``. The
    cells outside ``observed`` (filled with 0) never enter the graph. Each row's term is
    multiplied by its frequency weight, if any.
    """
    weights, means, chol = _drop_batch(weights, 1), _drop_batch(means, 2), _drop_batch(chol, 3)
    loc, scale = _drop_batch(loc, 1), _drop_batch(scale, 1)
    covariances = chol @ chol.mT
    parts, order = [], []
    for rows, observed in patterns:
        z = (value[rows][:, observed] - loc[observed]) / scale[observed]
        if observed.size == covariances.shape[-1]:
            sub_chol = chol
        else:
            sub = covariances[:, observed][:, :, observed]
            sub_chol = pt.linalg.cholesky(sub, lower=True)
        log_dens = mixture_logp(z, weights, means[:, observed], sub_chol)
        parts.append(log_dens - pt.log(scale[observed]).sum())
        order.append(rows)
    per_row = pt.concatenate(parts)[np.argsort(np.concatenate(order))]
    return per_row if sample_weight is None else per_row * sample_weight


def _mixture_random(weights, means, chol, loc, scale, rng=None, size=None):
    """Draws from the mixture in the data's units (prior and posterior predictive checks)."""
    weights, means, chol = (np.asarray(a) for a in (weights, means, chol))
    loc, scale = (np.asarray(a).reshape(-1, np.shape(a)[-1])[0] for a in (loc, scale))
    weights = weights.reshape(-1, weights.shape[-1])[0]
    means = means.reshape(-1, *means.shape[-2:])[0]
    chol = chol.reshape(-1, *chol.shape[-3:])[0]
    n_rows = int(np.prod(size)) if size is not None else 1
    labels = rng.choice(len(weights), size=n_rows, p=weights / weights.sum())
    z = rng.standard_normal((n_rows, means.shape[1]))
    draws = (means[labels] + np.einsum("nij,nj->ni", chol[labels], z)) * scale + loc
    shape = tuple(np.atleast_1d(size)) if size is not None else ()
    return draws.reshape(*shape, means.shape[1])


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`build_model` built: read back by sampling and by the kernel log density.

    Attributes
    ----------
    n_components, n_features : int
    covariance_type : str
        mclust's name of the model as built (VVV and EEE are built as VVI and EEI for one
        feature; see :func:`bayesgmm._families.bayes_family`).
    priors : GMMPriors
        In the data's units, one value per feature (recorded with the results).
    scaling : AffineScaling
        The standardisation the parameters are sampled on (one common scale for VII and EII).
    missing : ndarray of bool, shape (n_samples, n_features), or None
        The data's missing cells (the model's ``X`` holds 0 there), None when there are none.
    sample_weight : ndarray of shape (n_samples,) or None
        The rows' frequency weights.

    Examples
    --------
    >>> from bayesgmm import build_model, load_faithful
    >>> spec = model_spec(build_model(load_faithful(), 2))
    >>> spec.covariance_type, spec.standardised_priors.means_loc == (0.0, 0.0)
    ('VVV', True)
    """

    n_components: int
    n_features: int
    covariance_type: str
    priors: GMMPriors
    scaling: AffineScaling
    missing: np.ndarray | None = field(default=None, compare=False, repr=False)
    sample_weight: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def standardised_priors(self) -> GMMPriors:
        """The priors on the standardised scale the model samples on."""
        return self.priors.standardised(self.scaling.loc, self.scaling.scale)

    @property
    def family(self) -> Family:
        """How the covariances are parameterised."""
        return bayes_family(self.covariance_type)


def model_spec(model: pm.Model) -> ModelSpec | None:
    """The :class:`ModelSpec` of a :func:`build_model` model (None for any other model).

    Parameters
    ----------
    model : pymc.Model

    Returns
    -------
    ModelSpec or None

    Examples
    --------
    >>> import pymc as pm
    >>> model_spec(pm.Model()) is None
    True
    """
    return getattr(model, "_bayesgmm_spec", None)


def observed_rows(model: pm.Model) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows a :func:`build_model` model is conditioned on (NaN in missing cells) and their
    frequency weights (None: every row counts once).

    Parameters
    ----------
    model : pymc.Model

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,) or None

    Examples
    --------
    >>> X = np.array([[1.0, np.nan], [2.0, 1.0], [3.0, 0.0], [4.0, 2.0]])
    >>> rows, weight = observed_rows(build_model(X, 1))
    >>> bool(np.isnan(rows[0, 1])), weight is None
    (True, True)
    """
    X = np.asarray(model["X"].get_value(), dtype=np.float64)
    spec = model_spec(model)
    if spec is None:
        return X, None
    _check_same_rows(X, spec)
    if spec.missing is None:
        return X, spec.sample_weight
    return np.where(spec.missing, np.nan, X), spec.sample_weight


def _check_same_rows(X: np.ndarray, spec: ModelSpec) -> None:
    """The missingness patterns and weights are constants of the model: data set with
    ``pm.set_data`` must have the same rows' shape and miss exactly the same cells."""
    n_rows = None if spec.sample_weight is None else spec.sample_weight.size
    if spec.missing is not None:
        n_rows = spec.missing.shape[0]
        changed = X.shape != spec.missing.shape
        if not changed:
            held = X[spec.missing]  # build_model stores 0 there; NaN says the same
            changed = np.isnan(X[~spec.missing]).any() or np.any((held != 0) & ~np.isnan(held))
    else:
        changed = n_rows is not None and X.shape[0] != n_rows
    if changed:
        raise ValueError(
            f"The model's data were replaced (pm.set_data, now shape {X.shape}), but it was "
            f"built on {n_rows} rows with their missing cells and weights fixed in the graph: "
            "call build_model on the new data (with its sample_weight) instead."
        )


def _observed_dist(spec: ModelSpec) -> Any:
    """The ``obs`` log density: today's for complete, unweighted rows, else per pattern."""
    if spec.missing is None and spec.sample_weight is None:
        return _observed_logp
    from ._missing import group_patterns

    mask = spec.missing
    if mask is None:
        mask = np.zeros((spec.sample_weight.size, spec.n_features), bool)
    patterns = [(p.rows, p.observed) for p in group_patterns(np.where(mask, np.nan, 0.0))]
    return functools.partial(_patterns_logp, patterns=patterns, sample_weight=spec.sample_weight)


def _standardisation(
    data: np.ndarray,
    weight: np.ndarray | None,
    priors: GMMPriors | None,
    family: Family,
    n_components: int,
) -> tuple[AffineScaling, GMMPriors]:
    """The model's standardisation and default priors: of the data as they are (complete,
    unweighted), else of the observed cells counted by weight."""
    priors = priors or default_priors(data, weight, n_components=n_components)
    if weight is None and not np.isnan(data).any():
        return AffineScaling.fit(data, isotropic=family.isotropic), priors
    return observed_summary(data, weight).scaling(isotropic=family.isotropic), priors


def default_priors(
    X: np.ndarray,
    sample_weight: np.ndarray | None = None,
    *,
    sd_prior: str = DEFAULT_SD_PRIOR,
    n_components: int | None = None,
) -> GMMPriors:
    """:meth:`GMMPriors.from_data` of validated rows that may have missing cells (NaN) or
    frequency weights: the means and standard deviations of each feature's observed cells,
    rows counted by weight (those of the repeated rows, for integer weights).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    sample_weight : ndarray of shape (n_samples,), optional
    sd_prior : {"halfnormal", "inverse_gamma", "resolution"}, default="resolution"
        The standard deviations' prior (:class:`GMMPriors`, :data:`DEFAULT_SD_PRIOR`).
    n_components : int, optional
        ``K``: the inverse-gamma prior's scale depends on it.

    Returns
    -------
    GMMPriors

    Examples
    --------
    >>> X = np.array([[1.0, np.nan], [3.0, 1.0], [3.0, 3.0]])
    >>> default_priors(X, np.array([2.0, 1.0, 1.0])).means_loc
    (2.0, 2.0)
    """
    kwargs = {"sd_prior": sd_prior, "n_components": n_components}
    if sample_weight is None and not np.isnan(X).any():
        return GMMPriors.from_data(X, **kwargs)
    scaling = observed_summary(X, sample_weight).scaling(isotropic=False)
    floor, joint = resolution_floor(X, sample_weight), joint_resolution_floor(X, sample_weight)
    return GMMPriors.from_scaling(scaling, sd_floor=floor, sd_floor_given_others=joint, **kwargs)


def _deterministics(means_z, chol, scaling: AffineScaling, family: Family) -> None:
    """``means``, ``covariances``, ``stds`` (and ``correlations``) in the data's units."""
    loc, scale = scaling.loc, scaling.scale
    pm.Deterministic("means", loc + scale * means_z, dims=("component", "feature"))
    covariances_z = chol @ chol.mT
    stds_z = pt.sqrt(pt.diagonal(covariances_z, axis1=1, axis2=2))
    pm.Deterministic(
        "covariances",
        covariances_z * np.outer(scale, scale),
        dims=("component", "feature", "feature_bis"),
    )
    pm.Deterministic("stds", stds_z * scale, dims=("component", "feature"))
    if not family.diagonal:
        pm.Deterministic(
            "correlations",
            covariances_z / (stds_z[:, :, None] * stds_z[:, None, :]),
            dims=("component", "feature", "feature_bis"),
        )


def build_model(
    X: Any,
    n_components: int,
    *,
    priors: GMMPriors | None = None,
    covariance_type: str = "full",
    sample_weight: Any = None,
) -> pm.Model:
    """Build the PyMC Gaussian mixture with the labels marginalised.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data; a DataFrame's column names become the ``feature`` coordinate. NaN cells are
        missing values (missing at random): each row contributes the density of its observed
        entries, with the missingness patterns fixed in the model (``X`` holds 0 in those
        cells, and PyMC imputes nothing). Rows with every cell missing are left out with a
        warning, as EM does; a feature missing everywhere is an error. New data given with
        ``pm.set_data`` must miss the same cells (build a new model otherwise).
    n_components : int
    priors : GMMPriors, optional
        Defaults to :meth:`GMMPriors.from_data`.
    covariance_type : str
        One of :data:`BAYES_COVARIANCE_TYPES`: ``"full"`` (VVV), ``"tied"`` (EEE), ``"diag"``
        (VVI), ``"spherical"`` (VII), or mclust's ``"VVV"``, ``"EEE"``, ``"VVI"``, ``"EEI"``,
        ``"VII"``, ``"EII"`` (see :mod:`bayesgmm._families`). With one feature VVV and EEE
        coincide with VVI and EEI and are built so (PyMC 6.4's ``LKJCholeskyCov`` fails for
        ``n=1``). VII and EII are sampled on features standardised with one common scale.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights: each row's log-likelihood term is multiplied by its weight (integer
        weights give the model of the repeated rows).

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
    bayes_family(covariance_type)  # checked before the data
    if not isinstance(n_components, int | np.integer) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
    data, names = check_matrix(X, n_components=n_components, caller="build_model", allow_nan=True)
    weight = check_sample_weight(sample_weight, data.shape[0], int(n_components), data)
    data, weight = drop_empty_rows(data, weight)
    n_samples, n_features = data.shape
    family = bayes_family(covariance_type, n_features)
    scaling, priors = _standardisation(data, weight, priors, family, int(n_components))
    priors = priors.for_features(n_features)
    missing = np.isnan(data)
    spec = ModelSpec(
        int(n_components),
        n_features,
        family.name,
        priors,
        scaling,
        missing if missing.any() else None,
        weight,
    )
    data = np.where(missing, 0.0, data)
    unit = spec.standardised_priors
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
        means_z = pm.Normal(
            "means_z",
            mu=np.broadcast_to(np.asarray(unit.means_loc), (n_components, n_features)),
            sigma=np.broadcast_to(np.asarray(unit.means_scale), (n_components, n_features)),
            dims=("component", "feature"),
        )
        chol = family_cholesky(family, n_components, n_features, unit)
        _deterministics(means_z, chol, spec.scaling, family)
        pm.CustomDist(
            "obs",
            weights,
            means_z,
            chol,
            spec.scaling.loc,
            spec.scaling.scale,
            logp=_observed_dist(spec),
            random=_mixture_random,
            signature="(k),(k,d),(k,d,d),(d),(d)->(d)",
            observed=observed,
            dims=("obs_id", "feature"),
        )
    # read back by sample_posterior (the priors it records, the standardisation it undoes) and
    # by the E-step kernel's log density of this model (bayesgmm._logdensity)
    model._bayesgmm_spec = spec
    return model
