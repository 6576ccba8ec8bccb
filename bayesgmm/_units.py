"""The two units of the Bayesian half: the data's, and the standardised ones the model samples on.

:func:`bayesgmm.build_model` samples on standardised features ``z = (x - loc) / scale``
(:class:`~bayesgmm._scaling.AffineScaling`); results are reported in the data's units, with
``loc`` and ``scale`` recorded in the posterior's attrs. Everything that computes with the
parameters (relabelling, log-likelihoods, memberships, convergence diagnostics) works on the
standardised values, which are numbers near 1 whatever the data's units: in the data's units a
covariance of data at 1e200 is 1e400, which overflows to infinity, and one of data at 1e-200
underflows to zero. Memberships and R-hat are the same in either unit; log densities differ by
the Jacobian ``sum(log scale)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from . import _gaussian as g
from ._idata import Tree, get_attr, get_group, set_attrs
from ._models import layout
from ._scaling import AffineScaling

__all__ = [
    "em_standardised",
    "record_scaling",
    "scaling_of",
    "standardised",
    "to_data_units",
]

_MATRIX = ("feature", "feature_bis")


def _along(values: np.ndarray, dim: str = "feature") -> xr.DataArray:
    return xr.DataArray(np.asarray(values, dtype=float), dims=dim)


def _full_precision_cholesky(em: Any) -> np.ndarray:
    """EM's precision factors, ``(K, D, D)`` whatever its covariance family."""
    k, d = em.n_components, em.n_features_in_
    factor = np.asarray(em.precisions_cholesky_, dtype=float)
    kind = layout(em.covariance_type)  # mclust's names too (e.g. "EEE" is stored as "tied")
    if kind == "full":
        return factor
    if kind == "tied":
        return np.broadcast_to(factor, (k, d, d)).copy()
    diagonal = factor if kind == "diag" else np.repeat(factor[:, None], d, axis=1)
    return diagonal[:, :, None] * np.eye(d)[None]


def em_standardised(em: Any, scaling: AffineScaling) -> tuple[np.ndarray, ...]:
    """EM's weights, means ``(K, D)`` and full covariances ``(K, D, D)`` on the standardised
    scale, from its precision factors (finite where its covariances overflow)."""
    unit = _full_precision_cholesky(em) * scaling.scale[:, None]
    covariances = g.covariances_from_precision_cholesky(unit, "full")
    means = (np.asarray(em.means_, dtype=float) - scaling.loc) / scaling.scale
    return np.asarray(em.weights_, dtype=float), means, covariances


def to_data_units(dataset: xr.Dataset, scaling: AffineScaling) -> xr.Dataset:
    """Standardised ``means``, ``stds``, ``covariances`` (and unit-free ``weights``,
    ``correlations``) in the data's units; covariances beyond float64's range overflow to
    infinity, as EM's ``covariances_`` do."""
    loc, scale = _along(scaling.loc), _along(scaling.scale)
    scale_bis = _along(scaling.scale, "feature_bis")
    out = dataset.copy()
    with np.errstate(over="ignore", under="ignore"):
        out["means"] = dataset["means"] * scale + loc
        out["stds"] = dataset["stds"] * scale
        out["covariances"] = dataset["covariances"] * scale * scale_bis
    return out.transpose(*dataset.dims)


def standardised(dataset: xr.Dataset, scaling: AffineScaling) -> xr.Dataset:
    """``weights``, ``means``, ``stds``, ``covariances`` (and ``correlations``) of a posterior
    or an ``em`` group in the data's units, on the standardised scale.

    Covariances are rebuilt from the standard deviations and correlations (a diagonal
    covariance has none), which stay finite where the covariances in the data's units do not.
    """
    loc, scale = _along(scaling.loc), _along(scaling.scale)
    names = [v for v in ("weights", "means", "stds", "covariances", "correlations") if v in dataset]
    out = dataset[names].copy()
    out["means"] = (dataset["means"] - loc) / scale
    covariances = dataset["covariances"]
    correlations = dataset.get("correlations")
    identity = xr.DataArray(np.eye(covariances.sizes["feature"]), dims=_MATRIX)
    if correlations is None and "stds" in dataset and _off_diagonal_zero(covariances):
        correlations = identity
    if "stds" in dataset and correlations is not None:
        out["stds"] = dataset["stds"] / scale
        out["covariances"] = out["stds"] * out["stds"].rename(feature="feature_bis") * correlations
    else:
        out["covariances"] = covariances / (scale * scale.rename(feature="feature_bis"))
        out["stds"] = np.sqrt((out["covariances"] * identity).sum("feature_bis"))
    order = [d for d in dataset.dims if d in out.dims]
    return out.transpose(*order)


def _off_diagonal_zero(covariances: xr.DataArray) -> bool:
    values = np.moveaxis(covariances.transpose(..., *_MATRIX).values, (-2, -1), (0, 1))
    off = ~np.eye(values.shape[0], dtype=bool)
    return bool(np.all(values[off] == 0))


def record_scaling(tree: Tree, scaling: AffineScaling) -> None:
    """Store the standardisation in the posterior's attrs (``data_loc``, ``data_scale``)."""
    set_attrs(tree, {"data_loc": scaling.loc.tolist(), "data_scale": scaling.scale.tolist()})


def scaling_of(tree: Tree) -> AffineScaling:
    """The standardisation recorded with the results; none (loc 0, scale 1) for results made
    otherwise."""
    loc = get_attr(tree, "data_loc")
    scale = get_attr(tree, "data_scale")
    if loc is None or scale is None:
        n_features = get_group(tree, "posterior").sizes.get("feature", 1)
        return AffineScaling(loc=np.zeros(n_features), scale=np.ones(n_features))
    return AffineScaling(loc=np.asarray(loc, dtype=float), scale=np.asarray(scale, dtype=float))
