"""bayesgmm's own convergence checks, run after relabelling, with advice when they fail.

PyMC and nutpie log their warnings rather than raising them; bayesgmm computes the standard
checks itself (Vehtari et al. 2021 for rank-normalised R-hat and ESS; Betancourt 2016 for
E-BFMI) and warns with :class:`SamplingWarning`. Results are returned either way.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import numpy as np
import pandas as pd
import xarray as xr

from ._chainprofiles import partition_drift
from ._convergence import rank_diagnostics
from ._drift import LEFT_MASS_MARGIN, LEFT_MODE_SDS
from ._errors import SamplingWarning, ignored_stacklevel, warn
from ._idata import Tree, bfmi, flat_values, get_attr, get_group, has_group, summary
from ._scaling import AffineScaling
from ._stuck import stuck_chains
from ._units import scaling_of, standardised

__all__ = [
    "GATES",
    "MILD_R_HAT",
    "NOT_CONVERGENCE",
    "SamplingWarning",
    "check_sampling",
    "diagnostics",
    "draws_for_gates",
    "gate_shortfalls",
    "label_flips",
    "log_likelihood_drift",
    "mode_failures",
    "modes_text",
    "parameter_diagnostics",
]

GATES = {"r_hat": 1.01, "ess_bulk": 400.0, "ess_tail": 400.0, "bfmi": 0.3, "divergences": 0}
# the largest share of a chain's consecutive draws whose matching to EM's components may
# change before the components count as not identified (the ``labels`` row): 0 in identified
# posteriors (Old Faithful K=2, iris K=2 and 3), 0.17-0.23 where a component has no role of
# its own (carData's Davis and HSAUR3's skulls at K=2) and 0.39-0.46 for Old Faithful at K=3
# (draws of the independence sampler, nearly independent)
LABEL_FLIPS = 0.05
# the largest share of a NUTS chain's draws whose trajectories may stop at the sampler's
# maximum tree depth before the ``treedepth`` row shows (PyMC's rule for its warning)
TREE_DEPTH_SHARE = 0.05
# checks that judge what the draws describe, not whether the sampler converged: a comparison
# that does not depend on labels (LOO in model selection) does not wait for them
NOT_CONVERGENCE = ("labels",)
# R-hat up to this counts as Monte Carlo noise that more draws shrink; above it the chains
# disagree (other modes, a chain stuck), which more draws of the same chains do not fix
MILD_R_HAT = 1.05
PARAMETERS = ("weights", "means", "covariances")

_ADVICE = {
    "divergences": "raise target_accept (e.g. 0.95); persistent divergences often mean too "
    "many components for the data (try fewer)",
    "r_hat": "chains disagree: tune and draw longer, or use fewer components (an empty or "
    "duplicated component makes the posterior multimodal)",
    "ess_bulk": "increase draws (or tune longer); a low ESS with many components suggests "
    "fewer components",
    "ess_tail": "increase draws so the tails (and HDIs) are estimated reliably",
    "bfmi": "the momentum resampling explores energy poorly: tune longer, or use fewer components",
    "modes": "the chains ended in different modes (not label switches), so R-hat over all "
    "chains fails for that reason: read each mode on its own (bayesgmm.modes.mode_table, "
    "BayesianGMM.modes(), summary(mode=...))",
    "drift": "a chain moved to another region while its draws were kept (its log-likelihood "
    "shifted by more than its spread, or its partition of the rows changed), so its draws mix "
    "two regions and the region it started in holds little of the posterior; longer tuning "
    "does not help when the new region mixes slowly. If the smallest weight fell, the "
    "posterior prefers near-empty components: use fewer components or a simpler "
    "covariance_type",
    "left_mode": "chains left the posterior mode found from EM (its Laplace approximation's "
    "typical set) and ran again: every chain where they went when that region held clearly "
    "more mass, else each chain in its own region (then the modes row reports the regions "
    "with their weights). If the smallest weight is small, the posterior prefers near-empty "
    "components (too many components for the data; their parameters are then barely "
    "identified and mix slowly): use fewer components or a simpler covariance_type",
    "stuck": "a chain's trajectories were mostly rejected: its step size, tuned where it "
    "started, is too large where it went (a narrow region, such as a near-empty component), "
    "so it repeats its draws and its R-hat and ESS say little. Tune longer or raise "
    "target_accept (e.g. 0.95); if a weight is small, use fewer components or a simpler "
    "covariance_type",
    "labels": "each draw's components are matched to EM's, and that matching changes from "
    "one draw to the next: some component has no role of its own (too many components, or one "
    "EM collapsed onto a few rows), so per-component results (weights, means, covariances, "
    "each component's memberships) average over components and describe none of them; the "
    "mixture's density, LOO and co-clustering do not depend on labels. Use fewer components, "
    "or read only those label-free results",
    "treedepth": "trajectories ran to the sampler's maximum length without turning back: the "
    "chain went where some direction is far wider than the step size was tuned for (a "
    "near-empty component whose parameters follow their prior, or components without roles of "
    "their own), so each draw costs up to a thousand gradients and moves little. A deeper "
    "tree only makes the draws slower: use fewer components or a simpler covariance_type",
    "interrupted": "sampling was stopped early: these are the draws finished by then; run again "
    "to completion",
}


# findings shown in the advice column of a check that passed
_NOTES = {
    "left_mode": "a finding about the model, not a sampling failure: chains left the EM mode, "
    "and the runs after it converged. A small weight means near-empty component(s): the data "
    "support fewer components (compare fewer, or a simpler covariance_type)",
    "treedepth": "an efficiency finding, not a sampling failure: the chains converged, but "
    "some trajectories ran to the sampler's maximum length, which made the run slow (often "
    "near-empty components: compare fewer, or a simpler covariance_type)",
}


def _lower_pairs(da: xr.DataArray, offset: int) -> xr.DataArray:
    """The entries of a symmetric ``(feature, feature_bis)`` matrix on and below the diagonal
    (``offset=0``) or strictly below it (``offset=-1``), stacked into one ``pair`` dim."""
    rows, cols = np.tril_indices(da.sizes["feature"], offset)
    picked = da.isel(
        feature=xr.DataArray(rows, dims="pair"), feature_bis=xr.DataArray(cols, dims="pair")
    )
    names = [
        f"{a}, {b}"
        for a, b in zip(picked["feature"].values, picked["feature_bis"].values, strict=True)
    ]
    return picked.drop_vars(["feature", "feature_bis"]).assign_coords(pair=names)


def scalar_parameters(posterior: xr.Dataset, var_names: tuple[str, ...]) -> xr.Dataset:
    """The named variables without entries duplicated by symmetry or fixed by definition.

    ``covariances`` keep their lower triangle (diagonal included) and ``correlations`` their
    strictly lower triangle (the diagonal is 1), stacked into a ``pair`` dimension whose
    labels make ArviZ write ``covariances[0, waiting, eruptions]``.
    """
    missing = [v for v in var_names if v not in posterior]
    if missing:
        raise ValueError(f"The posterior has no variable(s) {missing}.")
    variables = {}
    for name in var_names:
        da = posterior[name]
        if name in ("covariances", "correlations"):
            if name == "correlations" and da.sizes["feature"] < 2:
                continue  # one feature: no correlation to summarise
            da = _lower_pairs(da, 0 if name == "covariances" else -1)
        variables[name] = da
    return xr.Dataset(variables)


def summarise(dataset: xr.Dataset, *, kind: str = "all", hdi_prob: float = 0.94) -> pd.DataFrame:
    """ArviZ's summary of a Dataset from :func:`scalar_parameters`, unrounded, with HDIs
    (columns ``hdi_low``, ``hdi_high``).

    Entries constant over every draw (the weight of a one-component model, the zero
    covariances of a diagonal one) have no R-hat or ESS (NaN); the callers drop or show it.
    """
    return summary(dataset, kind=kind, hdi_prob=hdi_prob)


_LOCATIONS = ("mean", "median", "hdi_low", "hdi_high")
_SCALES = ("sd", "mcse_mean", "mcse_sd")


def _unit_maps(
    unit: xr.Dataset, names: tuple[str, ...], scaling: AffineScaling
) -> tuple[pd.Series, pd.Series]:
    """Per scalar entry, the shift and factor that take it from the standardised scale to the
    data's units (labelled as :func:`summarise` labels the entries)."""
    loc = xr.DataArray(scaling.loc, dims="feature")
    scale = xr.DataArray(scaling.scale, dims="feature")
    factors = {
        "means": scale,
        "stds": scale,
        "covariances": scale * scale.rename(feature="feature_bis"),
    }
    shift, factor = {}, {}
    for name in names:
        template = xr.zeros_like(unit[name].isel(chain=0, draw=0, drop=True))
        factor[name] = template + factors.get(name, 1.0)
        shift[name] = template + (loc if name == "means" else 0.0)
    return (
        flat_values(scalar_parameters(xr.Dataset(shift), names)),
        flat_values(scalar_parameters(xr.Dataset(factor), names)),
    )


def summarise_in_units(
    posterior: xr.Dataset,
    names: tuple[str, ...],
    scaling: AffineScaling,
    *,
    kind: str = "all",
    hdi_prob: float = 0.94,
) -> pd.DataFrame:
    """:func:`summarise` of the named parameters in the data's units, plus their ``median``.

    Computed on the standardised scale (:mod:`bayesgmm._units`) and mapped back entry by
    entry (a mean, median or HDI bound by the affine map of its feature, a standard deviation
    or error by its factor; R-hat and ESS do not change), so that data at 1e-200 keep their
    spread (it would underflow to 0) and data at 1e200 their standard deviations. Entries
    that are zero in every draw (the off-diagonal covariances of a diagonal or spherical
    model: zero by the model, not estimated) are left out.
    """
    unit = standardised(posterior, scaling)
    parameters = scalar_parameters(unit, names)
    table = summarise(parameters, kind=kind, hdi_prob=hdi_prob)
    estimated = flat_values((parameters != 0).any(("chain", "draw"))).reindex(table.index)
    table = table[estimated.fillna(1.0).astype(bool)]
    table["median"] = flat_values(parameters.median(("chain", "draw"))).reindex(table.index)
    shift, factor = (values.reindex(table.index) for values in _unit_maps(unit, names, scaling))
    with np.errstate(over="ignore", invalid="ignore"):
        for column in _LOCATIONS:
            table[column] = shift + factor * table[column]
        for column in set(_SCALES) & set(table.columns):
            table[column] = factor * table[column]
    return table


# results judged within :func:`reusing_parameter_diagnostics` (None outside it): id -> (a weak
# reference to the results, the posterior's arrays the table was computed from, the table)
_REUSED: ContextVar[dict | None] = ContextVar("bayesgmm_parameter_diagnostics", default=None)


@contextlib.contextmanager
def reusing_parameter_diagnostics() -> Iterator[None]:
    """Within the block, :func:`parameter_diagnostics` of the same results computes once.

    The sampling pipeline judges one set of results up to four times (its follow-up's plan,
    the independence step's check, the final warning): ArviZ's R-hat and ESS were a quarter
    of a crabs K=2 run. A table is reused only for the same results object whose posterior
    still holds the arrays it was computed from (a relabelling replaces them; an array changed
    in place or new scaling attributes are not seen, and the pipeline makes neither). Results
    are held weakly: of the ones a follow-up replaced only the posterior arrays stay (not the
    pointwise log-likelihood). Outside the block every call computes, so results a user
    changes are judged afresh.
    """
    token = _REUSED.set({})
    try:
        yield
    finally:
        _REUSED.reset(token)


def judged_once[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """``func`` run within :func:`reusing_parameter_diagnostics`: a decorator whose frame is
    bayesgmm's own, so warnings from inside still point at the user's line (:mod:`contextlib`'s
    decorator form adds a frame of its own, where they pointed before)."""

    @functools.wraps(func)
    def judged(*args: P.args, **kwargs: P.kwargs) -> R:
        with reusing_parameter_diagnostics():
            return func(*args, **kwargs)

    return judged


def parameter_diagnostics(idata: Tree) -> pd.DataFrame:
    """R-hat, bulk and tail ESS for every scalar of weights, means and covariances.

    ArviZ's rank-normalised statistics (as its ``summary(kind="diagnostics")``), computed for
    all scalars at once (:func:`bayesgmm._convergence.rank_diagnostics`) on the standardised
    scale the model samples on (R-hat and ESS do not depend on the units; covariances of data
    at 1e200 or 1e-200 overflow or underflow in the data's units); entries that are constant
    across all draws (the weight of one component, the zero off-diagonal covariances of a
    diagonal model) have no R-hat or ESS and are left out.

    Parameters
    ----------
    idata : xarray.DataTree
        With a (relabelled) posterior holding any of ``weights``, ``means``, ``covariances``.

    Returns
    -------
    pandas.DataFrame
        One row per scalar parameter, labelled as ArviZ's summary labels it
        (``means[0, waiting]``); columns ``ess_bulk``, ``ess_tail`` and ``r_hat``.

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> parameter_diagnostics(fit.idata_).sort_values("r_hat").tail(3)  # doctest: +SKIP
    """
    reused = _REUSED.get()
    if reused is None:
        return _parameter_diagnostics(idata)
    arrays = [variable.values for variable in get_group(idata, "posterior").data_vars.values()]
    kept = reused.get(id(idata))
    if kept is None or kept[0]() is not idata or not _same_arrays(kept[1], arrays):
        kept = reused[id(idata)] = (weakref.ref(idata), arrays, _parameter_diagnostics(idata))
    return kept[2].copy()


def _same_arrays(kept: list[np.ndarray], arrays: list[np.ndarray]) -> bool:
    return len(kept) == len(arrays) and all(a is b for a, b in zip(kept, arrays, strict=True))


def _parameter_diagnostics(idata: Tree) -> pd.DataFrame:
    posterior = get_group(idata, "posterior")
    if {"weights", "means", "covariances"} <= set(posterior.data_vars):
        posterior = standardised(posterior, scaling_of(idata))
    names = tuple(v for v in PARAMETERS if v in posterior)
    scalars = scalar_parameters(posterior, names)
    labels = flat_values(scalars.isel(chain=0, draw=0, drop=True)).index
    values = np.concatenate(
        [
            da.transpose("chain", "draw", ...).values.reshape(
                da.sizes["chain"], da.sizes["draw"], -1
            )
            for da in scalars.data_vars.values()
        ],
        axis=2,
    )
    table = pd.DataFrame(rank_diagnostics(values), index=labels)
    # constant entries have no R-hat and no ESS (they still get a bulk ESS: drop them); with
    # one chain only R-hat is missing
    table = table[~(np.ptp(values, axis=(0, 1)) == 0)]
    return table.dropna(how="all", subset=["r_hat", "ess_bulk", "ess_tail"])


def mode_failures(row: dict) -> list[str]:
    """The gates one row of :func:`bayesgmm.modes.mode_table` fails, as text ([] when the
    mode converged: at least two chains, and R-hat, bulk and tail ESS and divergences within
    their gates).

    Parameters
    ----------
    row : dict
        ``chains``, ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail`` and ``divergences``.

    Returns
    -------
    list of str

    Examples
    --------
    >>> row = {"chains": [3], "max_r_hat": float("nan"), "min_ess_bulk": 900.0,
    ...        "min_ess_tail": 350.0, "divergences": 0}
    >>> mode_failures(row)
    ['1 chain', 'ESS 350']
    """
    failed = []
    if len(row["chains"]) < 2:
        failed.append(f"{len(row['chains'])} chain")
    elif not row["max_r_hat"] <= GATES["r_hat"]:
        failed.append(f"R-hat {row['max_r_hat']:.3f}")
    ess = min(row["min_ess_bulk"], row["min_ess_tail"])
    if not ess >= GATES["ess_bulk"]:
        failed.append(f"ESS {ess:.0f}")
    if row["divergences"] > GATES["divergences"]:
        failed.append(f"{row['divergences']} divergences")
    return failed


def modes_text(table: list[dict] | None, only_failing: bool = False) -> str:
    """Each mode of a :func:`bayesgmm.modes.mode_table` (its records) with the gates it fails
    (:func:`mode_failures`), or "gates met"; only the failing ones with ``only_failing``;
    "" without a table.

    Parameters
    ----------
    table : list of dict or None
        The mode table's rows, as :func:`mode_failures` takes them, with ``mode``.
    only_failing : bool
        Leave out the modes that meet their gates.

    Returns
    -------
    str

    Examples
    --------
    >>> row = {"chains": [0, 1], "max_r_hat": 1.004, "min_ess_tail": 900.0, "divergences": 0}
    >>> modes_text([{**row, "mode": 0, "min_ess_bulk": 157.0},
    ...             {**row, "mode": 1, "min_ess_bulk": 800.0}])
    'mode 0: ESS 157; mode 1: gates met'
    """
    named = []
    for row in table or []:
        why = mode_failures(row)
        if why or not only_failing:
            named.append(f"mode {row['mode']}: {', '.join(why) or 'gates met'}")
    return "; ".join(named)


def draws_for_gates(draws: int, ess: float, margin: float) -> float:
    """Draws per chain a run of ``draws`` per chain with this smallest ``ess`` would need for
    ``margin`` times the ESS gate, the ESS growing in proportion to the draws.

    Parameters
    ----------
    draws : int
        Draws per chain of the run so far.
    ess : float
        Its smallest bulk or tail ESS (below 1 counts as 1).
    margin : float
        How many times the gate's ESS to plan for (the ESS estimate is noisy).

    Returns
    -------
    float

    Examples
    --------
    >>> draws_for_gates(1000, 200.0, 1.25)
    2500.0
    """
    return margin * GATES["ess_bulk"] * draws / max(ess, 1.0)


def gate_shortfalls(gates: dict) -> list[str]:
    """The R-hat and ESS gates a run fails, as text ([] when both are met).

    Parameters
    ----------
    gates : dict
        ``r_hat`` (the worst over parameters) and ``ess`` (the smallest bulk or tail ESS).

    Returns
    -------
    list of str

    Examples
    --------
    >>> gate_shortfalls({"r_hat": 1.064, "ess": 51.0})
    ['R-hat 1.064', 'ESS 51']
    """
    short = []
    if not gates["r_hat"] <= GATES["r_hat"]:
        short.append(f"R-hat {gates['r_hat']:.3f}")
    if not gates["ess"] >= GATES["ess_bulk"]:
        short.append(f"ESS {gates['ess']:.0f}")
    return short


def _check_rows(idata: Tree) -> list[dict]:
    stats = get_group(idata, "sample_stats")
    params = parameter_diagnostics(idata)
    rows = [
        _divergence_row(idata, stats),
        _worst_row(params, "r_hat", largest=True),
        _worst_row(params, "ess_bulk", largest=False),
        _worst_row(params, "ess_tail", largest=False),
        _energy_row(idata),
    ]
    if _several_modes(idata):  # bayesgmm.modes.record_modes
        modes = np.asarray(stats["mode"].values)
        rows.append(("modes", float(modes.max() + 1), 1.0, False, _modes_text(idata, modes)))
    attrs = get_group(idata, "posterior").attrs
    converged = all(row[3] for row in rows)
    extra = (
        _left_mode_row(idata, converged),
        _treedepth_row(idata, converged),
        _drift_row(idata),
        _stuck_row(idata),
        _labels_row(idata),
    )
    rows += [row for row in extra if row]
    if attrs.get("interrupted"):  # a partial run (Ctrl-C): the row only exists then
        kept, asked = float(stats.sizes["draw"]), float(attrs.get("draws", np.nan))
        rows.append(("interrupted", kept, asked, False, attrs["interrupted"]))
    return [
        {"check": c, "value": v, "threshold": t, "passed": bool(p), "worst": w}
        for c, v, t, p, w in rows
    ]


def _trajectories(idata: Tree) -> bool:
    """Whether the kept draws come from a sampler with trajectories and energy (NUTS), not
    from independence Metropolis-Hastings."""
    return get_attr(idata, "draws_sampler") != "independence_mh"


def _divergence_row(idata: Tree, stats) -> tuple:
    if not _trajectories(idata):
        return ("divergences", np.nan, GATES["divergences"], True, _NOT_APPLICABLE)
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    return ("divergences", float(divergences), GATES["divergences"], divergences == 0, "")


def _energy_row(idata: Tree) -> tuple:
    if not _trajectories(idata):
        return ("bfmi", np.nan, GATES["bfmi"], True, _NOT_APPLICABLE)
    return _bfmi_row(bfmi(idata))


_NOT_APPLICABLE = (
    "not applicable: the draws are independence Metropolis-Hastings draws (no trajectories "
    "or energy; posterior.attrs['independence_mh'])"
)


def _modes_text(idata: Tree, modes: np.ndarray) -> str:
    """Each mode's chains and whether it converged on them (the stored mode table, when
    there is one), and which modes ran again on their own (``mode_reruns``)."""
    table = {row["mode"]: row for row in get_attr(idata, "modes", default=None) or []}
    parts = []
    for m in np.unique(modes):
        text = f"mode {m}: chains {np.flatnonzero(modes == m).tolist()}"
        if m in table:
            failed = mode_failures(table[m])
            text += f" not converged ({', '.join(failed)})" if failed else " converged"
        parts.append(text)
    reruns = get_attr(idata, "mode_reruns", default=None) or []
    if reruns:  # numbered as in the table before each rerun
        ran = ", ".join(f"mode {r['mode']} ({', '.join(r['failed'])})" for r in reruns)
        parts.append(f"new chains for modes that failed: {ran}")
    return "; ".join(parts)


def _worst_row(params: pd.DataFrame, check: str, *, largest: bool) -> tuple:
    """The worst value of one check over parameters; one chain has no R-hat (it fails)."""
    values = params[check].dropna()
    if values.empty:
        return (check, np.nan, GATES[check], False, "not computable: run 2 or more chains")
    worst = values.idxmax() if largest else values.idxmin()
    value = values[worst]
    passed = value <= GATES[check] if largest else value >= GATES[check]
    return (check, value, GATES[check], passed, worst)


def log_likelihood_drift(idata: Tree) -> pd.DataFrame:
    """Whether each chain stayed in one region while its draws were kept.

    A chain drifts when the mean total log-likelihood of the last quarter of its draws
    differs from that of the first quarter by more than the chain's standard deviation of it
    (for a stationary chain the two means differ by a fraction of that), or when the
    partitions of the two quarters differ as those of two modes do
    (:func:`bayesgmm._chainprofiles.partition_drift`: a move between partitions of about
    the same log-likelihood, which the first test cannot see). The smallest component weight
    (posterior mean over each quarter) says whether a component emptied.

    Parameters
    ----------
    idata : xarray.DataTree
        With ``log_likelihood`` (``obs``) and a posterior with ``weights``; the partitions
        are compared when it also holds the means, covariances and observed data.

    Returns
    -------
    pandas.DataFrame
        One row per chain: ``first``, ``last`` (mean total log-likelihood of the first and
        last quarter), ``sd``, ``partition_gap`` and ``partition_level`` (how far the two
        quarters' partitions are apart, and the level above which they are two; NaN when
        they cannot be compared), ``drifted``, ``min_weight_first``, ``min_weight_last``.

    Examples
    --------
    >>> log_likelihood_drift(fit.idata_)  # doctest: +SKIP
    """
    totals = get_group(idata, "log_likelihood")["obs"]
    totals = totals.sum([d for d in totals.dims if d not in ("chain", "draw")])
    values = totals.transpose("chain", "draw").values
    weights = get_group(idata, "posterior")["weights"].transpose("chain", "draw", ...).values
    q = max(values.shape[1] // 4, 1)
    first, last = values[:, :q].mean(axis=1), values[:, -q:].mean(axis=1)
    sd = values.std(axis=1)
    gap, level = partition_drift(idata) or (np.full_like(sd, np.nan), np.full_like(sd, np.nan))
    return pd.DataFrame(
        {
            "first": first,
            "last": last,
            "sd": sd,
            "partition_gap": gap,
            "partition_level": level,
            "drifted": (np.abs(last - first) > sd) | (gap > level),
            "min_weight_first": weights[:, :q].mean(axis=1).min(axis=1),
            "min_weight_last": weights[:, -q:].mean(axis=1).min(axis=1),
        }
    )


def _can_judge_drift(idata: Tree) -> bool:
    """Whether :func:`log_likelihood_drift` can judge the chains: 100 draws per chain
    (quarters of fewer draws differ by the chain's spread too often by chance), the weights
    and the pointwise log-likelihood."""
    posterior = get_group(idata, "posterior")
    if posterior.sizes["draw"] < 100 or "weights" not in posterior:
        return False
    return has_group(idata, "log_likelihood") and "obs" in idata["log_likelihood"]


def _drift_row(idata: Tree) -> tuple | None:
    """The ``drift`` check's row when some chain drifted (:func:`_can_judge_drift`), for the
    chain that moved most: its log-likelihood shift against its sd (nats), or, when its
    partition moved more (relative to its level), that gap against its level."""
    if not _can_judge_drift(idata):
        return None
    table = log_likelihood_drift(idata)
    if not table["drifted"].any():
        return None
    shift = np.nan_to_num((np.abs(table["last"] - table["first"]) / table["sd"]).to_numpy())
    moved = np.nan_to_num((table["partition_gap"] / table["partition_level"]).to_numpy())
    worst = int(np.argmax(np.maximum(shift, moved)))
    r = table.iloc[worst]
    by_partition = moved[worst] > max(shift[worst], 1.0)
    partition = (
        f", partition moved {r['partition_gap']:.2f} (two partitions above "
        f"{r['partition_level']:.2f})"
        if by_partition
        else ""
    )
    where = (
        f"chain {worst} (of {table['drifted'].sum()} drifting): log-likelihood {r['first']:.1f} "
        f"-> {r['last']:.1f} (sd {r['sd']:.1f}){partition}, smallest weight "
        f"{r['min_weight_first']:.3f} -> {r['min_weight_last']:.3f}"
    )
    if by_partition:
        return ("drift", float(r["partition_gap"]), float(r["partition_level"]), False, where)
    return ("drift", float(abs(r["last"] - r["first"])), float(r["sd"]), False, where)


def _stuck_row(idata: Tree) -> tuple | None:
    """The ``stuck`` row when a NUTS chain's mean acceptance fell far below its target
    (:func:`bayesgmm._stuck.stuck_chains`)."""
    table = stuck_chains(idata) if _trajectories(idata) else None
    if table is None or not table["stuck"].any():
        return None
    worst = int(np.nanargmin(table["accept"].to_numpy()))
    r = table.iloc[worst]
    repeated = "" if np.isnan(r["repeated"]) else f", {r['repeated']:.0%} of its draws repeat"
    where = (
        f"chain {worst} (of {int(table['stuck'].sum())} stuck): mean acceptance "
        f"{r['accept']:.2f} against target_accept {r['target']:g}{repeated}"
    )
    return ("stuck", float(r["accept"]), float(r["threshold"]), False, where)


def label_flips(idata: Tree) -> np.ndarray | None:
    """Per chain, the share of consecutive draws whose relabelling (the permutation that
    matches the draw's components to EM's, ``sample_stats["label_permutation"]``) changes.

    Label switching undone is a rare event in a chain (a whole block of draws relabelled the
    same way); components matched one way in a draw and another way in the next have no
    roles of their own.

    Parameters
    ----------
    idata : xarray.DataTree
        Relabelled results (``sample_stats["label_permutation"]``, chain x draw x component).

    Returns
    -------
    ndarray of shape (chain,) or None
        None without permutations or with one draw.

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> label_flips(fit.idata_)  # doctest: +SKIP
    array([0., 0., 0., 0.])
    """
    stats = get_group(idata, "sample_stats")
    if "label_permutation" not in stats or stats.sizes.get("draw", 0) < 2:
        return None
    perm = stats["label_permutation"].transpose("chain", "draw", ...).values
    return np.any(perm[:, 1:] != perm[:, :-1], axis=-1).mean(axis=1)


def _labels_row(idata: Tree) -> tuple | None:
    """The ``labels`` row when a chain's relabelling changes between more than
    :data:`LABEL_FLIPS` of its consecutive draws (:func:`label_flips`)."""
    flips = label_flips(idata)
    if flips is None or not (flips > LABEL_FLIPS).any():
        return None
    worst = int(np.argmax(flips))
    perm = get_group(idata, "sample_stats")["label_permutation"].transpose("chain", "draw", ...)
    moves = np.sum(np.diff(perm.values[worst], axis=0) != 0, axis=0)  # per EM component
    swapped = sorted(np.argsort(-moves, kind="stable")[:2].tolist())
    where = (
        f"chain {worst} (of {int(np.sum(flips > LABEL_FLIPS))} above the gate): matched "
        f"differently from one draw to the next in {flips[worst]:.0%} of its draws, most often "
        f"EM's components {swapped[0]} and {swapped[1]}"
    )
    return ("labels", float(flips[worst]), LABEL_FLIPS, False, where)


def _left_mode_row(idata: Tree, converged: bool) -> tuple | None:
    """The ``left_mode`` row when chains left the mode they were whitened at and ran again
    (``posterior.attrs["left_mode_depth"]``, :mod:`bayesgmm._drift`).

    It passes when the second run converged (the checks before it, ``converged``): the
    sampler then did its job, and the row is a finding about the model (the posterior
    prefers near-empty components), not a sampling failure. It fails with them otherwise.
    When the chain whose crossing stopped the first run had come back by the stop (no chain
    below the rule), the row says so and passes: the other checks judge the run.
    """
    posterior = get_group(idata, "posterior")
    depth = np.asarray(get_attr(idata, "left_mode_depth", default=[]), dtype=float)
    if depth.size == 0:
        return None
    left = np.flatnonzero(depth < -LEFT_MODE_SDS)
    if left.size == 0:
        where = (
            f"a chain crossed below the EM mode's typical set and came back (the deepest "
            f"{-np.nanmin(depth):.1f} sds at the stop; the rule is {LEFT_MODE_SDS:g}); "
            f"{_restart_text(idata)}"
        )
        return ("left_mode", 0.0, 0.0, True, where)
    where = (
        f"chain(s) {left.tolist()} settled {-np.nanmin(depth):.1f} sds below the EM mode's "
        f"typical set in the first run; {_restart_text(idata)}"
    )
    stages = get_attr(idata, "left_mode_stages", default=1)
    if stages > 1:
        moved = get_attr(idata, "left_mode_moved", default=[])
        where += f" ({stages} times: a chain of the next run left again; moved {list(moved)})"
    if "weights" in posterior:
        weights = np.sort(posterior["weights"].mean(("chain", "draw")).values)
        where += f"; weights now {np.round(weights, 3).tolist()} (smallest {weights[0]:.3f})"
    return ("left_mode", float(left.size), 0.0, converged, where)


def _treedepth_row(idata: Tree, converged: bool) -> tuple | None:
    """The ``treedepth`` row when more than :data:`TREE_DEPTH_SHARE` of a NUTS chain's draws
    stopped at the maximum tree depth (nutpie's ``maxdepth_reached``, PyMC's
    ``reached_max_treedepth``). Like ``left_mode`` it passes when the checks before it do: it
    is then a finding about the run's cost; it fails with them otherwise."""
    stats = get_group(idata, "sample_stats")
    name = next((n for n in ("maxdepth_reached", "reached_max_treedepth") if n in stats), None)
    if name is None or not _trajectories(idata):
        return None
    share = stats[name].astype(float).mean("draw").values
    if not (share > TREE_DEPTH_SHARE).any():
        return None
    worst = int(np.argmax(share))
    where = (
        f"chain {worst} (of {int(np.sum(share > TREE_DEPTH_SHARE))} above the gate): "
        f"{share[worst]:.0%} of its draws stopped at the maximum tree depth"
    )
    if "n_steps" in stats:
        steps = float(stats["n_steps"].isel(chain=worst).mean())
        where += f", {steps:.0f} leapfrog steps a draw on average"
    posterior = get_group(idata, "posterior")
    if "weights" in posterior:  # a near-empty component is the usual cause
        weights = posterior["weights"].isel(chain=worst).mean("draw").values
        where += f"; its smallest mean weight {np.min(weights):.3f}"
    return ("treedepth", float(share[worst]), TREE_DEPTH_SHARE, converged, where)


def _restart_text(idata: Tree) -> str:
    """How the chains ran again after the first run (``left_mode_*`` attrs)."""
    source = get_attr(idata, "left_mode_restarted_from", default=None)
    if source is None:
        return "every chain ran again from its own draws"
    moved = get_attr(idata, "left_mode_moved", default=["all"])
    margin = get_attr(idata, "left_mode_mass_margin", default=[np.nan])[0]
    mass = (
        f"log mass {margin:+.1f} nats against the chains that stayed, margin {LEFT_MASS_MARGIN:g}"
    )
    if np.isnan(margin):  # a chain stopped with too few draws to weigh its region
        mass = "too few draws to weigh the regions' log masses"
    elif np.isinf(margin):
        mass = "no chain stayed"
    if moved[0] == "all":
        return f"every chain ran again from the draws of chain(s) {list(source)} ({mass})"
    return (
        f"chain(s) {list(source)} ran again from their own draws and the others from theirs at "
        f"the EM mode ({mass}: the region left for not clearly heavier, so each kept its chains)"
    )


def _bfmi_row(values: np.ndarray) -> tuple:
    if np.all(np.isnan(values)):  # no energy recorded (e.g. a posterior built by hand)
        return ("bfmi", np.nan, GATES["bfmi"], True, "energy not recorded")
    lowest = float(np.nanmin(values))
    return ("bfmi", lowest, GATES["bfmi"], lowest >= GATES["bfmi"], f"chain {np.nanargmin(values)}")


def diagnostics(idata: Tree) -> pd.DataFrame:
    """One row per convergence check.

    Columns: ``check`` (divergences, r_hat, ess_bulk, ess_tail, bfmi; ``modes`` when the
    chains ended in several modes, :mod:`bayesgmm.modes`; ``left_mode`` when chains left the
    posterior mode they were whitened at and ran again, :mod:`bayesgmm._drift`, passing when
    the other checks do, since it is then a finding about the model; ``drift``
    when a chain moved to another region while drawing, :func:`log_likelihood_drift`;
    ``stuck`` when a NUTS chain's mean acceptance fell below half its target,
    :func:`bayesgmm._stuck.stuck_chains`; ``treedepth`` when more than
    :data:`TREE_DEPTH_SHARE` of a NUTS chain's draws stopped at the maximum tree depth,
    passing, like ``left_mode``, when the other checks do (the run was then only slow);
    ``labels`` when a chain's draws are matched to EM's
    components differently from one draw to the next in more than :data:`LABEL_FLIPS` of
    them, :func:`label_flips` (components without roles of their own: per-component results
    describe none of them);
    divergences and bfmi pass as not applicable to independence Metropolis-Hastings draws,
    ``posterior.attrs["draws_sampler"]``, :mod:`bayesgmm._independence`),
    ``value`` (the count,
    the worst R-hat or ESS over parameters, the lowest E-BFMI over chains), ``threshold``,
    ``passed``, ``worst`` (the parameter or chain responsible) and ``advice`` (what to try
    when a check failed; a note on a finding such as ``left_mode`` when it passed).

    Parameters
    ----------
    idata : xarray.DataTree
        With a (relabelled) posterior and ``sample_stats`` (``diverging``; ``energy`` for
        E-BFMI, which passes as not recorded without it).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> table = diagnostics(fit.idata_)  # doctest: +SKIP
    >>> bool(table["passed"].all())  # doctest: +SKIP
    True
    """
    table = pd.DataFrame(_check_rows(idata))
    table["advice"] = [
        _advice(idata, check, value) if not passed else _NOTES.get(check, "")
        for check, passed, value in zip(
            table["check"], table["passed"], table["value"], strict=True
        )
    ]
    return table


# the target acceptances of the follow-up runs after divergences, in turn
# (bayesgmm._followup): at or above the first, raising it to that is no longer the advice for
# divergences; at the last, raising it is no advice at all
RAISED_TARGETS = (0.95, 0.99)
_HIGH_TARGET_ACCEPT, _LAST_TARGET_ACCEPT = RAISED_TARGETS


def _advice(idata: Tree, check: str, value: float = np.nan) -> str:
    """What to try for a failed check (its ``value``), in the light of what the run already
    did: a run whose chains were already at target_accept 0.95 (the follow-up's) is not told
    to raise it to 0.95, R-hat's note on a single chain only shows with one chain, and an
    R-hat above :data:`MILD_R_HAT` is not told that longer runs fix it."""
    target = max(
        float(get_attr(idata, name, default=0.0) or 0.0)
        for name in ("target_accept", "follow_up_target_accept", "extension_target_accept")
    )
    if check == "divergences" and target >= _HIGH_TARGET_ACCEPT:
        last = (
            ""
            if target >= _LAST_TARGET_ACCEPT
            else f"; target_accept {_LAST_TARGET_ACCEPT:g} is a last, slow try"
        )
        return (
            f"the chains already ran at target_accept {target:g}: divergences that stay "
            "there mark a region NUTS cannot follow (a near-empty or collapsing component's "
            f"funnel): use fewer components or a simpler covariance_type{last}"
        )
    if check == "stuck" and target >= _HIGH_TARGET_ACCEPT:
        return (
            f"a chain's trajectories were mostly rejected although the chains ran at "
            f"target_accept {target:g}: it went to a region narrower than where its step size "
            "was tuned (such as a near-empty component), so it repeats its draws and its R-hat "
            "and ESS say little; use fewer components or a simpler covariance_type, or tune "
            "longer"
        )
    if check == "r_hat" and get_group(idata, "posterior").sizes.get("chain", 2) < 2:
        return "with one chain R-hat cannot be computed: run 2 or more chains"
    if check in ("r_hat", "ess_bulk", "ess_tail") and _several_modes(idata):
        return (
            "over all chains, which ended in different modes (the modes row): longer runs do "
            "not join modes; judge each mode on its own (BayesianGMM.modes() gives each "
            "mode's R-hat and ESS, summary(mode=...) its summary)"
        )
    if check == "r_hat" and value > MILD_R_HAT:
        return (
            f"chains disagree by more than longer runs fix (above {MILD_R_HAT}: they sit in "
            "regions they cross rarely, and more draws or tuning of the same chains seldom "
            "join them; UCI's vowel at K=4, R-hat 1.29, gave 1.57 with 1000 tuning steps and "
            "2000 draws instead of 300 and 1000): use fewer components or a simpler "
            "covariance_type"
        )
    return _ADVICE[check]


def _several_modes(idata: Tree) -> bool:
    """Whether the chains were found to end in more than one mode (:mod:`bayesgmm.modes`)."""
    stats = get_group(idata, "sample_stats")
    return "mode" in stats and int(stats["mode"].max()) > 0


def check_sampling(idata: Tree, *, stacklevel: int | None = None) -> pd.DataFrame:
    """Run :func:`diagnostics` and warn with :class:`SamplingWarning` if any check fails.

    Parameters
    ----------
    idata : xarray.DataTree
        As for :func:`diagnostics`.
    stacklevel : int, optional
        Deprecated and ignored: the warning points at the first line outside bayesgmm.

    Returns
    -------
    pandas.DataFrame
        The :func:`diagnostics` table, returned whether or not it warned.

    Examples
    --------
    >>> import warnings
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> with warnings.catch_warnings(record=True) as caught:  # doctest: +SKIP
    ...     table = check_sampling(fit.idata_)
    """
    ignored_stacklevel(stacklevel)
    table = diagnostics(idata)
    failed = table[~table["passed"]]
    if not failed.empty:
        lines = [
            f"{r.check} = {r.value:.4g} (gate {r.threshold:g}"
            + (f"; worst: {r.worst}" if r.worst else "")
            + f"): {r.advice}"
            for r in failed.itertuples()
        ]
        converged = set(failed["check"]) <= set(NOT_CONVERGENCE)
        head = (
            "The chains converged, but a check of what their draws mean failed; the results "
            "are returned, read them as it says."
            if converged
            else "Sampling diagnostics failed; the results are returned but treat them with care."
        )
        warn(head + "\n  " + "\n  ".join(lines), SamplingWarning)
    return table
