"""The one seam to ArviZ: the results container and every ArviZ statistic bayesgmm uses.

Results are ``xarray.DataTree`` objects (what PyMC 6, nutpie and ArviZ 1 return): one child
group per ArviZ group (``posterior``, ``sample_stats``, ``log_likelihood``,
``observed_data``, and bayesgmm's ``em``). Group access, group creation, attrs and every call
into ArviZ (summaries, HDIs, ESS, R-hat, E-BFMI, LOO, model comparison, labels, the ECDF
band, kernel density estimates) live here, so the next ArviZ change is one file. Other
modules work on ``xarray.Dataset`` objects obtained through these functions.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_base.labels import BaseLabeller

from ._errors import warn

__all__ = [
    "RUN_STAT",
    "Tree",
    "add_groups",
    "bfmi",
    "compare",
    "ecdf_band",
    "entry_label",
    "ess",
    "flat_values",
    "get_attr",
    "get_group",
    "groups",
    "has_group",
    "hdi",
    "kde",
    "load",
    "loo",
    "new_tree",
    "posterior_draws",
    "posterior_with",
    "replace_group",
    "rhat",
    "save",
    "set_attrs",
    "summary",
    "tree_from_arrays",
]

Tree = xr.DataTree
SAMPLE_DIMS = ("chain", "draw")
# sample_stats entry that numbers, per draw, the run of the sampler that drew it (0 first)
# when a chain's draws come from several runs (:func:`bfmi`)
RUN_STAT = "sampler_run"


# ----------------------------------------------------------------------------- container
def groups(tree: Tree) -> list[str]:
    """Names of the tree's groups (its children), in order."""
    return list(tree.children)


def has_group(tree: Tree, name: str) -> bool:
    return name in tree.children


def get_group(tree: Tree, name: str) -> xr.Dataset:
    """The named group as a Dataset, or a ValueError that says which groups exist."""
    if not isinstance(tree, xr.DataTree):
        raise TypeError(
            f"Expected the xarray.DataTree that bayesgmm (or PyMC / ArviZ) returns, got "
            f"{type(tree).__name__}."
        )
    if not has_group(tree, name):
        raise ValueError(f"The results have no {name!r} group (they have {groups(tree)}).")
    return tree[name].to_dataset()


def posterior_with(tree: Tree, names: tuple[str, ...], purpose: str) -> xr.Dataset:
    """The posterior, or a ValueError naming the variables ``purpose`` needs but lacks."""
    posterior = get_group(tree, "posterior")
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


def replace_group(tree: Tree, name: str, dataset: xr.Dataset) -> None:
    """Replace (or create) a group in place; the Dataset's attrs become the group's."""
    tree[name] = xr.DataTree(dataset)


def add_groups(tree: Tree, new: Mapping[str, xr.Dataset]) -> None:
    for name, dataset in new.items():
        replace_group(tree, name, dataset)


def new_tree(new: Mapping[str, xr.Dataset]) -> Tree:
    """A results tree holding the given groups."""
    return xr.DataTree.from_dict({f"/{name}": dataset for name, dataset in new.items()})


def without_warmup(tree: Tree) -> Tree:
    """``tree`` without its tuning groups (``warmup_*``; ``tree`` itself when it has none)."""
    if not any(name.startswith("warmup") for name in tree.children):
        return tree
    return new_tree(
        {k: v.to_dataset() for k, v in tree.children.items() if not k.startswith("warmup")}
    )


def tree_from_arrays(
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    *,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> Tree:
    """A results tree from ``{group: {variable: (chain, draw, ...) array}}`` (ArviZ's
    ``from_dict``); ``observed_data``-like groups take arrays without sample dims."""
    return az.from_dict(dict(arrays), dims=dict(dims or {}), coords=dict(coords or {}))


def _attr_value(value: Any) -> Any:
    """A netCDF-safe attribute: numbers and strings as they are, anything else as JSON."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, str | int | float | np.integer | np.floating):
        return value
    return json.dumps(value, default=json_default)


def set_attrs(tree: Tree, attrs: Mapping[str, Any], *, group: str = "posterior") -> None:
    """Store provenance in a group's attrs; non-scalar values are stored as JSON strings."""
    get_group(tree, group)  # a clear error if the group is missing
    node_attrs = tree[group].attrs
    for key, value in attrs.items():
        node_attrs[key] = _attr_value(value)


def get_attr(tree: Tree, key: str, *, group: str = "posterior", default: Any = None) -> Any:
    """Read an attr written by :func:`set_attrs` (JSON decoded where it was encoded)."""
    value = get_group(tree, group).attrs.get(key, default)
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


def save(tree: Tree, path: str | os.PathLike) -> None:
    """Write the results to one netCDF file (HDF5, through h5netcdf)."""
    tree.to_netcdf(path, engine="h5netcdf")


def load(path: str | os.PathLike) -> Tree:
    """Read results written by :func:`save` into memory (the file is closed afterwards)."""
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load().copy()


# ----------------------------------------------------------------------------- statistics
def _interval_columns(table: pd.DataFrame) -> pd.DataFrame:
    """ArviZ names interval bounds after their mass (``hdi94_lb``); bayesgmm's tables use
    ``hdi_low`` and ``hdi_high`` whatever the mass (recorded in the table's attrs)."""
    renames = {}
    for column in table.columns:
        if column.startswith("hdi") and column.endswith("_lb"):
            renames[column] = "hdi_low"
        elif column.startswith("hdi") and column.endswith("_ub"):
            renames[column] = "hdi_high"
    return table.rename(columns=renames)


def summary(dataset: xr.Dataset, *, kind: str = "all", hdi_prob: float = 0.94) -> pd.DataFrame:
    """ArviZ's summary of every entry of ``dataset``, unrounded, with HDIs.

    Columns as ArviZ's ``summary(kind=...)`` (mean, sd, hdi_low, hdi_high, ess_bulk,
    ess_tail, r_hat, mcse_mean, mcse_sd for ``kind="all"``), rows labelled as ArviZ labels
    them (``means[0, waiting]``). Entries constant over every draw (the weight of a
    one-component model) have no R-hat or ESS: ArviZ returns NaN for them after a 0/0 that
    NumPy would report; that warning is silenced here, and the callers drop or show the NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = az.summary(dataset, kind=kind, ci_kind="hdi", ci_prob=hdi_prob, round_to="none")
    table = _interval_columns(table)
    table.attrs["hdi_prob"] = hdi_prob
    return table


def flat_values(dataset: xr.Dataset) -> pd.Series:
    """Every scalar entry of ``dataset`` (no sample dims), labelled as :func:`summary` labels
    the posterior's entries, in the order of each variable's values (C order).

    Labels are made from the coordinates directly: ArviZ's ``xarray_var_iter`` selects every
    entry with xarray (0.2 s for 273 entries), and the gates label hundreds after every run.
    """
    labeller = BaseLabeller()
    labels, values = [], []
    for name, da in dataset.data_vars.items():
        coords = [da[dim].values for dim in da.dims]  # (a dim without coordinates: 0 .. n-1)
        for isel in itertools.product(*(range(n) for n in da.shape)):
            sel = {dim: coords[i][j] for i, (dim, j) in enumerate(zip(da.dims, isel, strict=True))}
            labels.append(
                labeller.make_label_flat(name, sel, dict(zip(da.dims, isel, strict=True)))
            )
        values.append(np.asarray(da.values, dtype=float).ravel())
    return pd.Series(np.concatenate(values) if values else [], index=labels, dtype=float)


def entry_label(name: str, sel: Mapping[str, Any], isel: Mapping[str, int]) -> str:
    """ArviZ's label of one entry of a variable (``means[0, waiting]``)."""
    return BaseLabeller().make_label_flat(name, dict(sel), dict(isel))


def hdi(dataset: xr.Dataset, prob: float) -> xr.Dataset:
    """Highest-density intervals over chain and draw; last dim ``ci_bound`` (lower, upper)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = az.hdi(dataset, prob=prob)
    return out.transpose(..., "ci_bound")


def ess(dataset: xr.Dataset, method: str = "bulk") -> xr.Dataset:
    """Effective sample size of every entry (``method`` "bulk" or "tail")."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return az.ess(dataset, method=method)


def rhat(dataset: xr.Dataset) -> xr.Dataset:
    """Rank-normalised split R-hat of every entry."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return az.rhat(dataset)


def bfmi(tree: Tree) -> np.ndarray:
    """E-BFMI of every chain (NaN when the sampler recorded no energy).

    A chain joined from several runs of the sampler (``sample_stats["sampler_run"]``, e.g. a
    follow-up's extension after its re-tune) is judged on its energy centred within each
    run: a Hamiltonian's level is defined up to a constant that moves with the metric
    (nutpie's energy less the potential, ``-logp``, stepped by 11-20 between the first run and
    its extension on MASS painters, K = 2), and that step is not a transition the momenta
    made. Centring leaves a single run's E-BFMI unchanged; at each join it puts one
    difference of two centred draws in place of the step. ArviZ's own ``az.bfmi`` or
    ``plot_energy`` on such results still show the step.
    """
    stats = get_group(tree, "sample_stats")
    if "energy" not in stats:
        return np.full(stats.sizes.get("chain", 1), np.nan)
    energy = stats["energy"].transpose("chain", "draw")
    if RUN_STAT in stats:
        runs = stats[RUN_STAT].transpose("chain", "draw").values
        energy = energy.copy(data=_centred_within_runs(energy.values, runs))
    data = new_tree({"sample_stats": energy.to_dataset(name="energy")})
    return np.asarray(az.bfmi(data)["energy"].values, dtype=float)


def _centred_within_runs(values: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """``values`` ``(chain, draw)`` less their mean within each chain's run (``runs``; NaN,
    a chain joined from results that did not number their runs, counts as one run)."""
    out = np.array(values, dtype=float)
    runs = np.nan_to_num(np.asarray(runs, dtype=float), nan=-1.0)
    for c in range(len(out)):
        for run in np.unique(runs[c]):
            within = runs[c] == run
            if np.isfinite(out[c, within]).any():  # (a chain padded with NaN: nothing to centre)
                out[c, within] -= np.nanmean(out[c, within])
    return out


def _warn_if_weighted(trees: Iterable[Tree]) -> None:
    """LOO sums one term per row: say so for fits with frequency weights (kept in
    ``observed_data`` as ``sample_weight``), whose elpd is not that of the repeated rows."""
    for tree in trees:
        observed = getattr(tree, "children", {}).get("observed_data")
        if observed is None or "sample_weight" not in observed:
            continue
        if np.any(observed["sample_weight"].values != 1):
            warn(
                "LOO counts each row once, not by its sample_weight: for a weighted fit "
                "elpd_loo is that of the distinct rows (rows of weight zero, never fitted, "
                "included), not of the repeated rows. Fit the repeated rows to compare by LOO.",
                UserWarning,
            )
            return


def loo(tree: Tree) -> Any:
    """PSIS-LOO with pointwise results (``elpd``, ``se``, ``p``, ``pareto_k`` per row)."""
    _warn_if_weighted([tree])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Pp]areto.*")
        return az.loo(tree, pointwise=True)


COMPARE_COLUMNS = {"elpd": "elpd_loo", "p": "p_loo"}


def compare(trees: Mapping[str, Tree]) -> pd.DataFrame:
    """LOO comparison with stacking weights, unrounded.

    Columns as ArviZ 1's ``compare`` with ``elpd`` and ``p`` renamed ``elpd_loo`` and
    ``p_loo`` (what they are): rank, elpd_loo, p_loo, elpd_diff, weight, se, dse, p_worse,
    diag_diff, diag_elpd.
    """
    _warn_if_weighted(trees.values())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Pp]areto.*")
        table = az.compare(dict(trees), method="stacking", round_to="none")
    return table.rename(columns=COMPARE_COLUMNS)


def ecdf_band(
    n_values: int,
    eval_points: np.ndarray,
    prob: float,
    *,
    n_simulations: int = 10_000,
    random_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band of the ECDF of ``n_values`` uniform values (Säilynoja et
    al. 2022), at ``eval_points`` in (0, 1): the lower and upper ECDF values.

    ArviZ 1 computes the pointwise level that makes the band simultaneous by simulation;
    a fixed ``random_seed`` makes the band reproducible.
    """
    from arviz_stats.ecdf_utils import get_pointwise_confidence_band, simulate_confidence_bands

    rng = np.random.default_rng(random_seed)
    pointwise = simulate_confidence_bands(n_values, 1, eval_points, prob, n_simulations, rng)
    lower, upper = get_pointwise_confidence_band(pointwise, n_values, eval_points)
    return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)


def kde(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's kernel density estimate of a 1-D sample: grid and density."""
    da = xr.DataArray(np.asarray(values, dtype=float).ravel(), dims=["sample"])
    density = az.kde(da, dim="sample")
    return density.sel(plot_axis="x").values, density.sel(plot_axis="y").values
