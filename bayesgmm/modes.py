"""Several optima, honestly: chains started from distinct EM optima, and modes found and reported.

A mixture's posterior can have several modes that are not label switches of one another (two
ways of splitting the data). NUTS does not cross between them, so chains started at one EM
optimum say nothing about the others, and chains that end in different modes make R-hat fail
for a reason that more draws do not fix. This module

1. finds the **distinct EM optima** of several restarts (:func:`distinct_optima`): two fits are
   the same optimum when their parameters agree once the components are matched (so the
   comparison does not depend on the labels), and only optima within ``within`` nats of the
   best log-likelihood are kept, best first;
2. starts the chains from them **round robin** (:func:`start_assignment`, used by
   :func:`bayesgmm.sample_posterior` with ``starts=``);
3. after sampling, judges **label-invariantly** whether chains ended in different modes
   (:func:`find_modes`): each chain's log-likelihood distribution, and a mixture-level
   divergence between chains, the mean absolute difference of their pointwise log predictive
   densities (nats per observation), set against the same divergence between the two halves
   of each chain, each chain's medians of its parameters matched to one reference (modes of
   equal likelihood that split the data differently differ there), and the partition each
   chain holds: which pairs of rows share a component (a posterior as wide as the gap
   between two splits, with nearly as many parameters as rows, differs only there);
4. if they did (:func:`record_modes`): relabels the draws within each mode (to the mode's
   best draw), weighs the modes by **stacking** (Yao, Vehtari & Gelman 2022, "Stacking for
   non-mixing Bayesian computations": LOO stacking of the chain groups), records
   ``sample_stats["mode"]`` per chain and the table in the posterior's attrs, and warns with a
   :class:`~bayesgmm.SamplingWarning` naming the modes. The overall R-hat is left as it is (it
   fails, as it should); :func:`mode_table` gives each mode's own R-hat, ESS and weight, and
   :func:`mode_posterior` the draws of one mode.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._chainprofiles import (
    divergence,
    lppd,
    parameter_profiles,
    parameters_agree,
    partition_profiles,
    partitions_agree,
    pointwise,
)
from ._drift import concat_chains
from ._errors import ignored_stacklevel
from ._errors import warn as _warn
from ._idata import Tree, compare, get_attr, get_group, new_tree, replace_group, set_attrs
from ._units import em_standardised, scaling_of, standardised
from .alignment import apply_permutations, match_to_reference
from .diagnostics import SamplingWarning, modes_text, parameter_diagnostics
from .em import EMGaussianMixture

__all__ = [
    "distinct_optima",
    "find_modes",
    "main_mode",
    "mode_posterior",
    "mode_table",
    "record_modes",
    "same_optimum",
    "start_assignment",
]

_PARAMETER_TOLERANCE = 0.05  # standardised units: far above EM's convergence, far below a mode
_MIN_DRAWS = 20  # fewer draws per chain (an early interrupt) are too few to judge modes by


def same_optimum(a: EMGaussianMixture, b: EMGaussianMixture, scaling: Any = None) -> bool:
    """Whether two EM fits are the same optimum, whatever their labels.

    The components of ``b`` are matched to those of ``a``
    (:func:`~bayesgmm.alignment.match_to_reference`); the fits are the same optimum when the
    matched weights, standardised means and standardised covariances all agree to 0.05.

    Parameters
    ----------
    a, b : EMGaussianMixture
        Fitted on the same data.
    scaling : AffineScaling, optional
        The standardisation to compare in (defaults to ``a``'s own).

    Returns
    -------
    bool

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, load_faithful
    >>> X = load_faithful()
    >>> a = EMGaussianMixture(2, random_state=0).fit(X)
    >>> b = EMGaussianMixture(2, random_state=1, init_params="random_from_data").fit(X)
    >>> same_optimum(a, b)
    True
    """
    scaling = scaling or a._scaling
    wa, ma, ca = em_standardised(a, scaling)
    wb, mb, cb = em_standardised(b, scaling)
    perm = match_to_reference(mb[None, None], cb[None, None], ma, ca)[0, 0]
    gaps = (np.abs(wb[perm] - wa), np.abs(mb[perm] - ma), np.abs(cb[perm] - ca))
    return all(float(gap.max()) < _PARAMETER_TOLERANCE for gap in gaps)


def distinct_optima(
    X: Any,
    n_components: int,
    *,
    covariance_type: str = "full",
    n_restarts: int = 5,
    within: float = 5.0,
    max_optima: int = 4,
    random_state: int | None = None,
    best: EMGaussianMixture | None = None,
    sample_weight: Any = None,
    **em_options: Any,
) -> list[EMGaussianMixture]:
    """The distinct EM optima of several restarts, best first, within ``within`` nats.

    Each restart is one EM run from data points drawn at random as the means
    (``init_params="random_from_data"``, which reaches more optima than k-means
    initialisation); restarts that fail, do not converge or collapse a component (a
    likelihood singularity, not a mode) are left out. ``best`` (e.g. the usual
    best-of-``n_init`` fit) joins them whatever its state.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
    covariance_type : str
    n_restarts : int
        Single EM runs, each from its own seed.
    within : float
        Keep optima whose total log-likelihood is at most this many nats below the best.
    max_optima : int
        At most this many (e.g. the number of chains).
    random_state : int, optional
    best : EMGaussianMixture, optional
        A fit to include.
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the rows, for every restart.
    **em_options
        Further :class:`~bayesgmm.EMGaussianMixture` parameters (``tol``, ``reg_covar``, ...).

    Returns
    -------
    list of EMGaussianMixture
        Distinct optima (see :func:`same_optimum`), by decreasing log-likelihood.

    Examples
    --------
    >>> from bayesgmm import load_faithful
    >>> optima = distinct_optima(load_faithful(), 2, random_state=0)
    >>> len(optima)
    1
    """
    if not isinstance(n_restarts, int | np.integer) or n_restarts < 0:
        raise ValueError(f"n_restarts must be an integer >= 0, got {n_restarts!r}.")
    seeds = np.random.SeedSequence(random_state).generate_state(max(n_restarts, 1))
    fits = [best] if best is not None else []
    for seed in seeds[:n_restarts]:
        em = EMGaussianMixture(
            n_components,
            covariance_type=covariance_type,
            init_params="random_from_data",
            random_state=int(seed),
            **em_options,
        )
        if _optimum(em, X, sample_weight):
            fits.append(em)
    if not fits:
        raise ValueError(
            "No EM restart reached an optimum (each failed, collapsed a component or did not "
            "converge): fit EM with more iterations or fewer components and pass it as best."
        )
    n = np.shape(X)[0] if sample_weight is None else float(np.sum(sample_weight))
    fits.sort(key=lambda f: -f.lower_bound_)
    top = fits[0].lower_bound_ * n
    scaling = fits[0]._scaling
    kept: list[EMGaussianMixture] = []
    for fit in fits:
        if fit.lower_bound_ * n < top - within or len(kept) >= max_optima:
            break
        if best is not None and fit is not best and same_optimum(best, fit, scaling):
            fit = best  # a restart that reached best's optimum again (a hair higher) is best
        if not any(k is fit or same_optimum(k, fit, scaling) for k in kept):
            kept.append(fit)
    return kept


def _optimum(em: EMGaussianMixture, X: Any, sample_weight: Any = None) -> bool:
    """Fit ``em``; whether it reached an optimum: converged, no component collapsed onto a
    likelihood singularity (a higher likelihood that is not a mode), no error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said by the outcome below
        try:
            em.fit(X, sample_weight=sample_weight)
        except (ValueError, ArithmeticError):  # a singular restart: not an optimum
            return False
    return bool(em.converged_) and not len(getattr(em, "collapsed_components_", []))


def start_assignment(n_starts: int, n_chains: int) -> np.ndarray:
    """Which start each chain begins at: round robin over the starts (best first).

    Parameters
    ----------
    n_starts, n_chains : int

    Returns
    -------
    ndarray of int, shape (n_chains,)

    Examples
    --------
    >>> start_assignment(2, 5)
    array([0, 1, 0, 1, 0])
    """
    return np.arange(n_chains) % max(1, min(n_starts, n_chains))


def sample_groups(
    sample_all: Callable[[list[tuple[Any, dict]]], tuple[list[Tree], bool]],
    starts: Sequence[Any],
    run: dict[str, Any],
) -> tuple[Tree, bool]:
    """Sample the chains of each start (round robin) and put them together, ordered by start;
    ``sample_stats["start"]`` records each chain's start.

    ``sample_all(groups)`` samples every group ``(start, run of its chains)`` (one after another,
    :func:`one_after_another`, or all at once) and returns ``(trees, interrupted)``: the results
    of the groups sampled, in order (fewer when interrupted). Each group gets its own seed
    derived from ``run["seed"]``, so its chains are the same however the groups are run.
    Returns ``(tree, interrupted)``.
    """
    assignment = start_assignment(len(starts), run["chains"])
    groups, index = [], []
    for j, start in enumerate(starts):
        count = int(np.sum(assignment == j))
        if count:
            seed = (int(run["seed"]) + 7919 * j) % 2**31
            groups.append((start, {**run, "chains": count, "seed": seed}))
            index.append(j)
    trees, interrupted = sample_all(groups)
    sizes = [get_group(tree, "posterior").sizes["chain"] for tree in trees]
    out = concat_chains(trees)
    stats = get_group(out, "sample_stats").copy()  # (interrupted: fewer trees than groups)
    stats["start"] = ("chain", np.repeat(index[: len(trees)], sizes).astype(np.int64))
    replace_group(out, "sample_stats", stats)
    return out, interrupted


def one_after_another(
    sample_one: Callable[[Any, dict], tuple[Tree, bool]],
) -> Callable[[list[tuple[Any, dict]]], tuple[list[Tree], bool]]:
    """A ``sample_all`` for :func:`sample_groups` that samples the groups in turn with
    ``sample_one(start, run)`` (``(tree, interrupted)``); an interrupted group ends the run
    with the groups sampled so far."""

    def sample_all(groups: list[tuple[Any, dict]]) -> tuple[list[Tree], bool]:
        trees = []
        for start, group in groups:
            tree, interrupted = sample_one(start, group)
            trees.append(tree)
            if interrupted:
                return trees, True
        return trees, False

    return sample_all


# ----------------------------------------------------------------------------- modes
def find_modes(idata: Tree, *, factor: float = 4.0) -> np.ndarray:
    """Which mode each chain ended in, judged label-invariantly.

    Two chains are in the same mode when (a) their total log-likelihoods differ in mean by at
    most ``factor`` times the larger of their standard deviations, (b) their mixture-level
    divergence (the mean absolute difference of their pointwise log predictive densities) is
    at most ``factor`` times the larger divergence between the halves of either chain (plus
    0.01 nats per row), and (c) when the posterior holds the parameters, the medians of every
    relabelled parameter (each draw matched to the best draw: weights, standardised means and
    log standard deviations) differ by at most ``factor`` times the larger of the two chains'
    robust standard deviations (1.4826 MAD, plus 0.05; a component that holds fewer than
    two rows' worth of weight in either chain by its weight alone, as its other parameters
    are its prior's), and (d) when the results hold the parameters and the observed data,
    the median co-clustering probabilities of pairs of rows differ (mean over pairs) by at
    most ``factor`` times the smaller difference between either chain's halves, plus 0.05
    (:func:`bayesgmm._chainprofiles.partition_profiles`; R's state.x77[, 1:5], K = 2: chains
    that split the states by population and by illiteracy and murder rate differ by 0.49
    there, chains of one split by at most 0.03, while (a)-(c) could not tell them apart).
    Medians and MADs keep a chain that visited another mode for a minority of its draws
    with the mode it spent most draws in (that mode's own R-hat then shows the visit). Modes
    are the groups of chains linked by that relation, numbered by decreasing mean
    log-likelihood.

    Parameters
    ----------
    idata : xarray.DataTree
        With a ``log_likelihood`` group (``obs``: chain, draw, obs_id).
    factor : float

    Returns
    -------
    ndarray of int, shape (chain,)

    Examples
    --------
    >>> find_modes(fit.idata_)  # doctest: +SKIP
    array([0, 0, 0, 0])
    """
    values = pointwise(idata)
    n_chains, n_draws = values.shape[:2]
    totals = values.sum(axis=2)
    half = n_draws // 2
    noise = [divergence(lppd(v[:half]), lppd(v[half:])) if half else 0.0 for v in values]
    densities = [lppd(v) for v in values]
    profiles = parameter_profiles(idata)
    partitions = partition_profiles(idata)
    parent = list(range(n_chains))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(n_chains):
        for b in range(a + 1, n_chains):
            spread = max(totals[a].std(), totals[b].std(), 1e-12)
            close = abs(totals[a].mean() - totals[b].mean()) <= factor * spread
            level = factor * max(noise[a], noise[b]) + 0.01
            if profiles is not None:
                close = close and parameters_agree(profiles, a, b, factor, values.shape[2])
            if partitions is not None:
                close = close and partitions_agree(partitions, a, b, factor)
            if close and divergence(densities[a], densities[b]) <= level:
                parent[root(b)] = root(a)
    roots = np.array([root(i) for i in range(n_chains)])
    groups = sorted(set(roots.tolist()), key=lambda r: -totals[roots == r].mean())
    return np.array([groups.index(r) for r in roots], dtype=np.int64)


def _relabel_within(idata: Tree, modes: np.ndarray) -> None:
    """Relabel each mode's draws to its best draw (highest log-likelihood), in place."""
    posterior = get_group(idata, "posterior")
    unit = standardised(posterior, scaling_of(idata))
    totals = pointwise(idata).sum(axis=2)
    means = unit["means"].transpose("chain", "draw", "component", "feature").values
    covariances = unit["covariances"].transpose("chain", "draw", "component", ...).values
    perm = np.broadcast_to(np.arange(means.shape[2]), means.shape[:3]).copy()
    for mode in np.unique(modes):
        chains = np.flatnonzero(modes == mode)
        c, s = np.unravel_index(np.argmax(totals[chains]), totals[chains].shape)
        ref = (means[chains[c], s], covariances[chains[c], s])
        perm[chains] = match_to_reference(means[chains], covariances[chains], *ref)
    replace_group(idata, "posterior", apply_permutations(posterior, perm))
    stats = get_group(idata, "sample_stats").copy()
    if "label_permutation" in stats:
        before = stats["label_permutation"].transpose("chain", "draw", "component").values
        perm = np.take_along_axis(before, perm, axis=2)
    stats["label_permutation"] = (("chain", "draw", "component"), perm)
    replace_group(idata, "sample_stats", stats)


def mode_posterior(idata: Tree, mode: int) -> Tree:
    """The draws of one mode: ``posterior``, ``sample_stats`` and ``log_likelihood`` of its
    chains (renumbered), with the other groups.

    Parameters
    ----------
    idata : xarray.DataTree
        Results with ``sample_stats["mode"]`` (:func:`record_modes`).
    mode : int

    Returns
    -------
    xarray.DataTree

    Examples
    --------
    >>> first = mode_posterior(fit.idata_, 0)  # doctest: +SKIP
    """
    modes = _modes_of(idata)
    chains = np.flatnonzero(modes == mode)
    if chains.size == 0:
        raise ValueError(f"No mode {mode!r}: the modes are {sorted(set(modes.tolist()))}.")
    groups = {}
    for name, node in idata.children.items():
        data = node.to_dataset()
        if "chain" in data.dims:
            data = data.isel(chain=chains).assign_coords(chain=np.arange(chains.size))
        groups[name] = data
    return new_tree(groups)


def main_mode(idata: Tree) -> int:
    """The mode with the largest stacking weight (:func:`mode_table`); the first (highest
    mean log-likelihood) where the weights could not be computed. 0 for a single mode.

    Parameters
    ----------
    idata : xarray.DataTree
        Results of :func:`bayesgmm.sample_posterior`.

    Returns
    -------
    int

    Examples
    --------
    >>> main_mode(fit.idata_)  # doctest: +SKIP
    0
    """
    table = mode_table(idata)
    weights = table["stacking_weight"].to_numpy(dtype=float)
    if np.isnan(weights).any():
        return int(table["mode"].iloc[0])
    return int(table["mode"].iloc[int(np.argmax(weights))])


def _modes_of(idata: Tree) -> np.ndarray:
    stats = get_group(idata, "sample_stats")
    if "mode" not in stats:
        return np.zeros(stats.sizes["chain"], dtype=np.int64)
    return np.asarray(stats["mode"].values, dtype=np.int64)


def _table(idata: Tree, modes: np.ndarray, warn: bool = True) -> pd.DataFrame:
    """One row per mode: chains, mean log-likelihood, stacking weight, own R-hat and ESS
    (``warn``: say so when the stacking weights cannot be computed)."""
    trees = {m: mode_posterior(idata, m) for m in np.unique(modes)}
    totals = pointwise(idata).sum(axis=2)
    weights = _stacking_weights(trees, warn)
    rows = []
    for m, tree in trees.items():
        params = parameter_diagnostics(tree)
        rows.append(
            {
                "mode": int(m),
                "chains": np.flatnonzero(modes == m).tolist(),
                "mean_log_likelihood": float(totals[modes == m].mean()),
                "stacking_weight": float(weights[f"mode {m}"]),
                **_gate_values(tree, params),
            }
        )
    return pd.DataFrame(rows)


_NO_WEIGHTS = (
    "stacking weights could not be computed: a mode whose draws barely move (e.g. a component "
    "collapsed onto tied rows) has no PSIS-LOO. They are left NaN; read each mode's own summary"
)


def _stacking_weights(trees: dict[int, Tree], warn: bool = True) -> pd.Series:
    """Each mode's stacking weight; NaN (with a warning if ``warn``) where PSIS-LOO cannot be
    computed (a degenerate mode whose draws give rows the same log-likelihood), so the run is
    not lost."""
    named = {f"mode {m}": t for m, t in trees.items()}
    try:
        return compare(named)["weight"]
    except ValueError as err:
        if warn:
            _warn(f"The modes' {_NO_WEIGHTS} ({err}).", SamplingWarning)
        return pd.Series(np.nan, index=list(named))


def _gate_values(tree: Tree, params: pd.DataFrame) -> dict:
    """The convergence gates' values over the draws of ``tree`` (one mode's)."""
    stats = get_group(tree, "sample_stats")
    return {
        "max_r_hat": float(params["r_hat"].max()),
        "min_ess_bulk": float(params["ess_bulk"].min()),
        "min_ess_tail": float(params["ess_tail"].min()),
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else 0,
    }


def record_modes(
    idata: Tree, *, warn: bool = True, stacklevel: int | None = None
) -> pd.DataFrame | None:
    """Find the modes the chains ended in and record them, in place; warn if there are several.

    Always stores ``sample_stats["mode"]`` (chain) and ``n_modes`` in the posterior's attrs
    (one mode, unjudged, with one chain or fewer than 20 draws per chain).
    With several modes it also relabels the draws within each mode, stores the
    :func:`mode_table` in the attrs (``modes``) and warns with a :class:`SamplingWarning`.

    Parameters
    ----------
    idata : xarray.DataTree
        Results of :func:`bayesgmm.sample_posterior` (before this is recorded).
    warn : bool
        Warn when there are several modes.
    stacklevel : int, optional
        Deprecated and ignored: the warning points at the first line outside bayesgmm.

    Returns
    -------
    pandas.DataFrame or None
        The :func:`mode_table` when there are several modes.

    Examples
    --------
    >>> table = record_modes(idata)  # doctest: +SKIP
    """
    ignored_stacklevel(stacklevel)
    sizes = get_group(idata, "posterior").sizes
    judged = sizes["chain"] > 1 and sizes["draw"] >= _MIN_DRAWS
    modes = find_modes(idata) if judged else np.zeros(sizes["chain"], dtype=np.int64)
    stats = get_group(idata, "sample_stats").copy()
    stats["mode"] = ("chain", modes)
    replace_group(idata, "sample_stats", stats)
    n_modes = int(modes.max()) + 1
    set_attrs(idata, {"n_modes": n_modes})
    if n_modes == 1:
        return None
    _relabel_within(idata, modes)
    table = _table(idata, modes, warn)
    set_attrs(idata, {"modes": table.to_dict(orient="records")})
    if warn:
        _warn_modes(table)
    return table


def _warn_modes(table: pd.DataFrame) -> None:
    """Warn with a :class:`SamplingWarning` naming the modes of a :func:`mode_table`."""
    weighed = table["stacking_weight"].notna().all()
    described = "; ".join(
        f"mode {r.mode}: chains {r.chains}"
        + (f", stacking weight {r.stacking_weight:.2f}" if weighed else "")
        for r in table.itertuples()
    )
    failing = modes_text(table.to_dict(orient="records"), only_failing=True)
    _warn(
        f"The chains ended in {len(table)} different modes (not label switches of one another; "
        f"{described}). R-hat over all chains fails for that reason and summaries over all "
        "chains average over the modes: read each mode on its own (mode_table(), "
        "mode_posterior(idata, mode), BayesianGMM.summary(mode=...)). "
        + (
            f"Not every mode converged on its own chains ({failing}): its summaries and the "
            "stacking weights (which rest on its draws) are not reliable; run with more draws "
            "(max_draws) or fewer components."
            if failing
            else "Each mode converged on its own chains (R-hat, ESS, no divergences)."
        )
        + ("" if weighed else f" The {_NO_WEIGHTS}."),
        SamplingWarning,
    )


def mode_table(idata: Tree) -> pd.DataFrame:
    """The modes of a run: one row per mode.

    Columns ``mode``, ``chains``, ``mean_log_likelihood``, ``stacking_weight`` (Yao, Vehtari
    & Gelman 2022; 1 for a single mode), ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``
    and ``divergences`` (within the mode).

    A stacking weight is the share of the mode's posterior predictive in the combination that
    best predicts left-out rows (PSIS-LOO), not the posterior mass of the mode: two modes that
    predict the data alike get similar weights whatever their masses (MASS geyser, K=3: 0.49 /
    0.51, where the modes' estimated log masses differ by 2.6 nats, about 0.93 in one:
    benchmarks/results/bench_mcmc_real.txt).

    Parameters
    ----------
    idata : xarray.DataTree
        Results of :func:`bayesgmm.sample_posterior`.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> mode_table(fit.idata_)  # doctest: +SKIP
    """
    stored = get_attr(idata, "modes")
    if stored is not None:
        return pd.DataFrame(json.loads(stored) if isinstance(stored, str) else stored)
    modes = _modes_of(idata)
    if modes.max() > 0:
        return _table(idata, modes)
    params = parameter_diagnostics(idata)
    totals = pointwise(idata).sum(axis=2)
    row = {
        "mode": 0,
        "chains": list(range(modes.size)),
        "mean_log_likelihood": float(totals.mean()),
        "stacking_weight": 1.0,
        **_gate_values(idata, params),
    }
    return pd.DataFrame([row])
