"""Every use of the ArviZ container lives here.

ArviZ 1.x replaces ``InferenceData`` with ``xarray.DataTree``; keeping group access, group
creation and attrs in this one module makes that move one file. Other modules work on
``xarray.Dataset`` objects obtained through these functions.
"""

from __future__ import annotations

import json
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

__all__ = [
    "add_groups",
    "get_attr",
    "get_group",
    "has_group",
    "posterior_draws",
    "posterior_with",
    "replace_group",
    "set_attrs",
]


def has_group(idata: az.InferenceData, name: str) -> bool:
    return name in idata.groups()


def get_group(idata: az.InferenceData, name: str) -> xr.Dataset:
    """The named group as a Dataset, or a ValueError that says which groups exist."""
    if not has_group(idata, name):
        raise ValueError(
            f"The InferenceData has no {name!r} group (it has {list(idata.groups())})."
        )
    return idata[name]


def posterior_with(idata: az.InferenceData, names: tuple[str, ...], purpose: str) -> xr.Dataset:
    """The posterior, or a ValueError naming the variables ``purpose`` needs but lacks."""
    posterior = get_group(idata, "posterior")
    missing = [v for v in names if v not in posterior]
    if missing:
        raise ValueError(
            f"The posterior lacks {missing}: {purpose} need {', '.join(names)} (models from "
            "bayesgmm.build_model provide them)."
        )
    return posterior


def posterior_draws(posterior: xr.Dataset, names: tuple[str, ...]) -> list[np.ndarray]:
    """The named variables as arrays with chain and draw flattened to one leading axis.

    Component-indexed variables come with ``component`` first after the draws.
    """
    out = []
    for name in names:
        da = posterior[name]
        order = ["chain", "draw", *[d for d in ("component",) if d in da.dims]]
        values = da.transpose(*order, ...).values
        out.append(values.reshape(-1, *values.shape[2:]))
    return out


def replace_group(idata: az.InferenceData, name: str, dataset: xr.Dataset) -> None:
    """Replace (or create) a group in place."""
    if has_group(idata, name):
        setattr(idata, name, dataset)
    else:
        idata.add_groups({name: dataset}, warn_on_custom_groups=False)


def add_groups(idata: az.InferenceData, groups: dict[str, xr.Dataset]) -> None:
    for name, dataset in groups.items():
        replace_group(idata, name, dataset)


def set_attrs(idata: az.InferenceData, attrs: dict[str, Any], *, group: str = "posterior") -> None:
    """Store provenance in a group's attrs; non-scalar values are stored as JSON strings."""
    dataset = get_group(idata, group)
    for key, value in attrs.items():
        if isinstance(value, str | int | float | bool | np.integer | np.floating):
            dataset.attrs[key] = value
        else:
            dataset.attrs[key] = json.dumps(value, default=json_default)


def get_attr(idata: az.InferenceData, key: str, *, group: str = "posterior", default: Any = None):
    """Read an attr written by :func:`set_attrs` (JSON decoded where it was encoded)."""
    value = get_group(idata, group).attrs.get(key, default)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values (anything else is stored as its string)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return str(value)
