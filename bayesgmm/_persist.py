"""Saving a fitted :class:`~bayesgmm.BayesianGMM` to one netCDF file, and loading it back.

The file is the results tree (``xarray.DataTree``, through h5netcdf) with the estimator's
parameters and feature names in the root's attrs: everything :meth:`BayesianGMM.predict`,
``membership``, ``compare``, ``summary`` and ``diagnostics`` need, so a loaded fit answers
them without sampling again. It is written to a temporary file in the same folder and moved
into place (:mod:`bayesgmm._output`), and is plain netCDF: no pickled code is ever loaded.

The EM estimate (``em_``) is restored from the ``em`` group by EM itself, initialised at that
estimate with zero iterations (its public ``*_init`` parameters); its fitted attributes equal
the saved ones to rounding. Where the data's precisions overflow float64 (data beyond about
1e154 or below 1e-154) that is impossible and ``em_`` is None; the methods then use the ``em``
group, which holds the same estimate.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from ._errors import warn
from ._idata import Tree, get_group, json_default, load, save
from ._models import layout
from ._output import check_targets, staged
from .em import EMGaussianMixture

__all__ = ["read_fit", "restore_em", "write_fit"]

FORMAT = "bayesgmm.BayesianGMM/1"
_SAVED_PARAMS = (
    "n_components",
    "precondition",
    "covariance_type",
    "draws",
    "tune",
    "chains",
    "sampler",
    "target_accept",
    "random_seed",
    "em_n_init",
    "em_reg_covar",
    "max_starts",
    "progressbar",
)


def write_fit(estimator: Any, path: str | os.PathLike) -> None:
    """Save ``estimator.idata_`` and its parameters to ``path`` (replaced whole)."""
    check_targets([(path, "saved fit")])
    tree = estimator.idata_.copy()
    params = {name: getattr(estimator, name) for name in _SAVED_PARAMS}
    params["priors"] = None if estimator.priors is None else estimator.priors.to_json()
    tree.attrs = {
        **tree.attrs,
        "bayesgmm_format": FORMAT,
        "params": json.dumps(params, default=json_default),
        "priors": estimator.priors_.to_json(),
        "feature_names_in": json.dumps(
            getattr(estimator, "feature_names_in_", None), default=json_default
        ),
    }
    with staged() as stage:
        save(tree, stage.path_for(path))


def read_fit(path: str | os.PathLike) -> tuple[Tree, dict[str, Any]]:
    """The results tree and the saved attrs (parameters, priors, feature names)."""
    try:
        tree = load(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read a saved fit from {path}: {err}") from None
    if tree.attrs.get("bayesgmm_format") != FORMAT:
        raise ValueError(
            f"{path} is not a fit saved by BayesianGMM.save (format "
            f"{tree.attrs.get('bayesgmm_format')!r}, expected {FORMAT!r})."
        )
    return tree, {
        "params": json.loads(tree.attrs["params"]),
        "priors": tree.attrs["priors"],
        "feature_names_in": json.loads(tree.attrs["feature_names_in"]),
    }


def _precisions(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """EM's ``precisions_init`` of its family from full covariance matrices."""
    covariance_type = layout(covariance_type)  # mclust's names too
    if covariance_type == "full":
        return np.linalg.inv(covariances)
    if covariance_type == "tied":
        return np.linalg.inv(covariances[0])
    diagonal = np.diagonal(covariances, axis1=1, axis2=2)
    return 1.0 / (diagonal if covariance_type == "diag" else diagonal[:, 0])


def restore_em(tree: Tree, feature_names: list[str] | None) -> EMGaussianMixture | None:
    """EM at the saved estimate (see the module docstring), or None where it cannot be."""
    em = get_group(tree, "em")
    X = get_group(tree, "observed_data")["obs"].values
    if feature_names is not None:
        X = pd.DataFrame(X, columns=feature_names)
    covariance_type = em.attrs["covariance_type"]
    with np.errstate(all="ignore"):
        precisions = _precisions(em["covariances"].values, covariance_type)
    if not np.all(np.isfinite(precisions)) or not np.all(np.isfinite(em["covariances"].values)):
        warn(
            "The saved EM estimate cannot be restored as an EMGaussianMixture at this data "
            "scale (its precisions overflow float64); em_ is None, and the methods use the "
            "saved 'em' group.",
            UserWarning,
        )
        return None
    restored = EMGaussianMixture(
        em.sizes["component"],
        covariance_type=covariance_type,
        weights_init=em["weights"].values,
        means_init=em["means"].values,
        precisions_init=precisions,
        max_iter=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored.fit(X)
    restored.converged_ = bool(em.attrs["converged"])
    restored.n_iter_ = int(em.attrs["n_iter"])
    restored.lower_bound_ = float(em.attrs["lower_bound"])
    return restored
