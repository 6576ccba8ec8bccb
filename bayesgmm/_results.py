"""From a sampler's raw output to bayesgmm's results tree, the same on every sampler path.

The posterior in the data's units (from the standardised parameters the model samples on), the
``em`` group, relabelling to EM's components, the pointwise log-likelihood (for LOO), the
observed data, and the draws an interrupted run leaves (see :func:`keep_finished_draws`).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from . import _gaussian as g
from ._idata import Tree, get_group, has_group, posterior_draws, replace_group
from ._kernels import draw_log_density
from ._missing import group_patterns
from ._scaling import AffineScaling
from ._units import em_standardised, record_scaling, scaling_of, standardised, to_data_units
from .alignment import apply_permutations, match_to_reference
from .model import observed_rows

__all__ = ["em_dataset", "em_reference", "finish", "keep_finished_draws", "relabel"]

PARAMETERS = ("weights", "means", "covariances", "stds", "correlations")
_INTERNAL = ("means_z", "stds_z", "chol_cov")  # and chol_cov_k: the standardised free variables


def em_dataset(
    em: Any, coords: dict[str, Any], *, scaling: AffineScaling | None = None
) -> xr.Dataset:
    """The EM estimate with the posterior's names and dims (the ``em`` group).

    ``covariances`` are expanded to full matrices whatever EM's family, so that
    ``posterior["covariances"] - em["covariances"]`` broadcasts.

    Parameters
    ----------
    em : EMGaussianMixture
        A fitted EM estimate, of any covariance type.
    coords : dict
        Labels of ``component``, ``feature`` and ``feature_bis`` (other keys are ignored).
    scaling : AffineScaling, optional
        A standardisation of the data to compute in (the model's): standard deviations and
        correlations then stay exact where covariances overflow (data beyond about 1e154).

    Returns
    -------
    xarray.Dataset
        ``weights``, ``means``, ``covariances``, ``stds`` and ``correlations``; EM's
        covariance type, lower bound, iterations and convergence as attributes.

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, load_faithful
    >>> em = EMGaussianMixture(2, random_state=0).fit(load_faithful())
    >>> names = ["eruptions", "waiting"]
    >>> ds = em_dataset(em, {"component": [0, 1], "feature": names, "feature_bis": names})
    >>> ds["covariances"].dims
    ('component', 'feature', 'feature_bis')
    """
    d = em.n_features_in_
    scaling = scaling or AffineScaling(loc=np.zeros(d), scale=np.ones(d))
    weights, means, covariances = em_standardised(em, scaling)
    stds, correlations = g.std_and_correlation(covariances)
    component, feature = ("component",), ("component", "feature")
    matrix = ("component", "feature", "feature_bis")
    unit = xr.Dataset(
        {
            "weights": (component, weights),
            "means": (feature, means),
            "covariances": (matrix, covariances),
            "stds": (feature, stds),
            "correlations": (matrix, correlations),
        },
        coords={name: list(coords[name]) for name in ("component", "feature", "feature_bis")},
    )
    out = to_data_units(unit, scaling)
    out.attrs = {
        "covariance_type": em.covariance_type,
        "lower_bound": float(em.lower_bound_),
        "n_iter": int(em.n_iter_),
        "converged": int(bool(em.converged_)),
    }
    return out


def em_reference(idata: Tree, em: Any = None) -> xr.Dataset:
    """The EM estimate as a Dataset named and shaped like the posterior.

    ``em=None`` reads the results' ``em`` group; a fitted :class:`EMGaussianMixture` is
    converted with :func:`em_dataset` after checking it matches the posterior.

    Parameters
    ----------
    idata : xarray.DataTree
        With a posterior (and an ``em`` group when ``em`` is None).
    em : EMGaussianMixture, optional
        A fitted EM estimate with the posterior's numbers of components and features.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> reference = em_reference(fit.idata_)  # the stored em group  # doctest: +SKIP
    """
    posterior = get_group(idata, "posterior")
    if em is None:
        if not has_group(idata, "em"):
            raise ValueError(
                "No EM estimate: the results have no 'em' group and no em was given. Pass "
                "em=<fitted EMGaussianMixture>, or use the results returned by "
                "bayesgmm.sample_posterior (which store the EM estimate)."
            )
        reference = get_group(idata, "em")
        sizes = (reference.sizes["component"], reference.sizes["feature"])
    elif not hasattr(em, "means_"):
        raise ValueError("em must be a fitted EMGaussianMixture: call em.fit(X) first.")
    else:
        sizes = (em.n_components, em.n_features_in_)
    k, d = posterior.sizes["component"], posterior.sizes["feature"]
    if sizes != (k, d):
        raise ValueError(
            f"The EM estimate has {sizes[0]} components and {sizes[1]} features, but the "
            f"posterior has {k} components and {d} features: pass the EM fit the chains "
            "started from."
        )
    if em is None:
        return reference
    coords = {n: posterior[n].values for n in ("component", "feature", "feature_bis")}
    return em_dataset(em, coords, scaling=scaling_of(idata))


def relabel(idata: Tree) -> np.ndarray:
    """Relabel the posterior in place to the ``em`` group's components; return permutations.

    Draws are matched on the standardised scale (:mod:`bayesgmm._units`). The permutations
    are also stored as ``sample_stats["label_permutation"]`` (chain, draw, component).

    Parameters
    ----------
    idata : xarray.DataTree
        With ``posterior``, ``sample_stats`` and ``em`` groups.

    Returns
    -------
    ndarray of shape (chain, draw, component)

    Examples
    --------
    >>> from bayesgmm.sampling import relabel
    >>> permutations = relabel(idata)  # doctest: +SKIP
    """
    scaling = scaling_of(idata)
    posterior = get_group(idata, "posterior")
    unit = standardised(posterior, scaling)
    em = standardised(get_group(idata, "em"), scaling)
    perm = match_to_reference(
        unit["means"].transpose("chain", "draw", "component", "feature").values,
        unit["covariances"].transpose("chain", "draw", "component", ...).values,
        em["means"].values,
        em["covariances"].values,
    )
    replace_group(idata, "posterior", apply_permutations(posterior, perm))
    stats = get_group(idata, "sample_stats").copy()
    stats["label_permutation"] = (("chain", "draw", "component"), perm)
    replace_group(idata, "sample_stats", stats)
    return perm


def _users_variables(posterior: xr.Dataset, model: pm.Model) -> list[str]:
    """Variables a user added to a :func:`bayesgmm.build_model` model (kept as sampled)."""
    own = {v.name for v in model.free_RVs + model.deterministics}
    return [
        str(v)
        for v in posterior.data_vars
        if v in own
        and v not in PARAMETERS
        and v not in _INTERNAL
        and not str(v).startswith("chol_cov_")
    ]


def _pointwise_log_likelihood(unit: xr.Dataset, X: np.ndarray, scaling: AffineScaling):
    """``log p(x_n | theta_s)`` for every draw and row in the data's units, computed on the
    standardised scale with the package's Gaussian math.

    A row with missing cells (NaN) gets the density of its observed entries: rows are grouped
    by missingness pattern and each pattern scored under every draw's marginal mixture (means
    ``mu[O]``, covariances ``Sigma[O, O]``), with the Jacobian of its observed features. One
    entry per row, whatever the row's frequency weight.
    """
    weights, means, covariances = posterior_draws(unit, ("weights", "means", "covariances"))
    shape = (unit.sizes["chain"], unit.sizes["draw"], X.shape[0])
    if not np.isnan(X).any():
        out = draw_log_density(scaling.transform(X), weights, means, covariances)
        out = out.reshape(shape) - scaling.log_jacobian
        return xr.DataArray(out, dims=("chain", "draw", "obs_id"))
    out = np.empty((weights.shape[0], X.shape[0]))
    log_scale = np.log(scaling.scale)
    for pattern in group_patterns(X):
        o = pattern.observed
        values = (pattern.values - scaling.loc[o]) / scaling.scale[o]
        sub = covariances[:, :, o][:, :, :, o]
        dens = draw_log_density(values, weights, means[:, :, o], sub)
        out[:, pattern.rows] = dens - log_scale[o].sum()
    return xr.DataArray(out.reshape(shape), dims=("chain", "draw", "obs_id"))


def _complete_groups(idata: Tree, model: pm.Model, scaling: AffineScaling) -> None:
    """Pointwise log-likelihood (for LOO) and observed data, the same on every sampler path."""
    X, weight = observed_rows(model)
    coords = {name: list(model.coords[name]) for name in ("obs_id", "feature")}
    unit = standardised(get_group(idata, "posterior"), scaling)
    log_lik = _pointwise_log_likelihood(unit, X, scaling).assign_coords(obs_id=coords["obs_id"])
    replace_group(idata, "log_likelihood", xr.Dataset({"obs": log_lik}))
    observed = xr.Dataset({"obs": (("obs_id", "feature"), X)}, coords=coords)
    replace_group(idata, "observed_data", observed)
    if weight is not None:  # kept with the fit, so a model rebuilt from it is the same model
        constant = get_group(idata, "constant_data") if has_group(idata, "constant_data") else None
        weights = xr.Dataset(
            {"sample_weight": ("obs_id", weight)}, coords={"obs_id": coords["obs_id"]}
        )
        replace_group(
            idata, "constant_data", weights if constant is None else constant.merge(weights)
        )


def finish(
    idata: Tree, model: pm.Model, em: Any, scaling: AffineScaling, *, is_standardised: bool
) -> np.ndarray:
    """Turn a sampler's output into bayesgmm's results, in place; return the permutations.

    ``is_standardised``: the posterior holds the standardised parameters (the E-step kernel
    path), rather than the model's variables (PyMC's and nutpie's own paths).
    """
    raw = get_group(idata, "posterior")
    extra = raw[_users_variables(raw, model)]
    unit = raw if is_standardised else standardised(raw, scaling)
    posterior = xr.merge([to_data_units(unit, scaling), extra], compat="override")
    replace_group(idata, "posterior", posterior)
    record_scaling(idata, scaling)
    replace_group(idata, "em", em_dataset(em, model.coords, scaling=scaling))
    permutations = relabel(idata)
    _complete_groups(idata, model, scaling)
    return permutations


def keep_finished_draws(idata: Tree) -> tuple[int, int]:
    """Keep the largest block of draws an interrupted run finished, in place.

    Chains stop at different points (nutpie pads the rest with NaN; a chain not yet started
    has none). The block kept is the first ``n`` draws of the ``m`` chains that maximise
    ``n x m`` among chains that finished at least ``n`` draws.

    Returns
    -------
    (n_draws, n_chains) : tuple of int
        What was kept; ``(0, 0)`` when no draw was finished.
    """
    posterior = get_group(idata, "posterior")
    first = next(v for v in posterior.data_vars if posterior[v].dtype.kind == "f")
    values = posterior[first].transpose("chain", "draw", ...).values
    if values.size == 0:
        return 0, 0
    finished = (~np.isnan(values.reshape(*values.shape[:2], -1)).any(axis=2)).cumprod(axis=1)
    counts = finished.sum(axis=1)
    order = np.argsort(-counts, kind="stable")
    sizes = counts[order] * np.arange(1, counts.size + 1)
    m = int(np.argmax(sizes)) + 1
    n = int(counts[order][m - 1])
    if n == 0:
        return 0, 0
    chains = np.sort(order[:m])
    for name in ("posterior", "sample_stats"):
        group = get_group(idata, name).isel(chain=chains, draw=slice(0, n))
        replace_group(idata, name, group.assign_coords(chain=np.arange(m)))
    return n, m


def versions() -> dict[str, str]:
    """Versions of bayesgmm and the stack below it, for the provenance attrs."""
    names = (
        "bayesgmm",
        "pymc",
        "pytensor",
        "arviz",
        "nutpie",
        "jax",
        "numba",
        "numpy",
        "scipy",
        "scikit-learn",
    )
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
