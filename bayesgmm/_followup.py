"""Follow-up runs after sampling, so results meet the convergence gates rather than only warn.

Two cases are followed up, on the E-step kernel path (whose whitening bayesgmm controls):

**Extension** (:func:`extension_plan`, :func:`continue_chains`). The chains are in one mode,
without divergences and without a chain that moved while it drew, and R-hat is at most
:data:`MILD_R_HAT`, but R-hat is above its gate or the smallest bulk or tail ESS below 400:
every chain draws more, sized from the ESS per draw measured so far (with a margin), up to
``max_draws`` per chain in all, in at most :data:`ROUNDS` rounds (a second only when the
first raised the smallest ESS, or met the ESS gate). An extension is judged as it goes and
stops once the chains so far meet the gates (:func:`continue_chains`). Runs in several modes are
not extended: on MASS geyser (K=3) longer chains of a slowly mixing mode crossed into the
other, which merged the two modes and left one failing R-hat (1.24) in place of two modes
with their own.

nutpie 0.16.11 (nuts-rs 0.18.3) cannot resume a chain with its tuned step size and metric:
``sample`` takes no mass matrix (``DiagAdaptStrategy::init`` always starts it from the
gradient at the initial point), ``tune=0`` fails an assertion (``early_end < num_tune`` in
``GlobalStrategy::new``), and only the step size can be fixed
(``StepSizeAdaptMethod::Fixed``). So each chain runs again from its last draw, whitened by the
covariance of its own draws (:func:`bayesgmm._drift.restart_points`: dense, so usually a better
metric than the curvature at the mode), after a short re-tune (:data:`RETUNE` steps, discarded),
and the kept draws are appended to the chain's.

The joined chain is a valid sample: both parts are draws of NUTS kernels that leave the
posterior invariant, the second part starts where the first ended (a draw of the posterior, as
the first part is in one mode with R-hat near 1), and its kept draws use a fixed kernel (the
re-tune only chooses it). Only the autocorrelation changes at the join, which the ESS estimate
absorbs (the joined chain's ESS is about the sum of the parts'). Deciding to draw more from the
ESS seen so far is the usual practice; with chains in one mode its effect on the estimates is
far below their Monte Carlo error. When R-hat or the ESS still fails with the first run's
draws but the gates are met without them (a chain still settling in the first run), those are
dropped as warm-up (``warmup_draws_dropped``). (USArrests K=2 with seed 2 stays short: R-hat
1.032 at 1000 draws per chain, 1.012 at the 3000 allowed, and the extension's 2000 alone fall
short too.)

**Per-mode reruns** (:func:`modes_to_rerun`, :func:`rerun_modes`). The chains ended in several
modes (:func:`bayesgmm.modes.find_modes`) and some mode holds fewer than two chains or has an
R-hat above :data:`MILD_R_HAT` within itself, or a chain moved to another region while it drew
(MASS geyser K=3: a chain crossed at draw ~707; MASS crabs K=3: a chain fell 43 nats of
log-likelihood at draw ~350 to where another chain sat throughout, only 16 nats lower in log
posterior density, 2.7 sds of the Laplace typical set, so :mod:`bayesgmm._drift` let it be,
and its spread joined both regions into one mode with R-hat 1.55): the chains are grouped by
where they *ended* (the modes of their last quarters), and each group gets new chains (the
``chains`` shared out, at least two each), started at the last draws of its chains and
whitened by the covariance of their last quarters. The new chains replace the first run's, so
that every mode found in them has its own R-hat and ESS, and the stacking weights are
recomputed on their draws (an extension follows only if they all end in one mode). A chain
"moves" when its log-likelihood shifts by more than its spread or when its partition of the
rows changes (:func:`bayesgmm.diagnostics.log_likelihood_drift`; R's airquality, K = 3: a
chain held another partition of about the same log-likelihood for 600 draws, R-hat 1.28).
Where a chain spent its draws says nothing of how much of the posterior each region holds,
so this rerun also starts chains where a moved chain began (:func:`rerun_groups`: a group of
its own when that region is another mode). When the new chains are in one mode but one of
them moved too, they run once more from where they ended (:data:`RERUNS`; carData's
Prestige, K = 2); in several modes, each mode gets chains of its own instead (below). The cost
is bounded: every new chain's draws (not its tuning steps) count against ``max_draws``, over
all chains; the extension's against it per chain.

**Modes that still fail** (:func:`converge_modes`). After that rerun (or without one), a mode
of several that fails its own gates (:func:`bayesgmm.diagnostics.mode_failures`: fewer than two
chains, R-hat above 1.01, bulk or tail ESS below 400, divergences; issue 15) gets
:data:`MODE_CHAINS` new chains of its own, started at distinct draws of its chains and whitened
by their pooled covariance, with a short re-tune; the mode is then judged by its own chains, the
old ones with the new (or only the new, when they alone meet the gates and the joined chains do
not, or when the old ones diverged and the new ones ran one step up the ladder of targets,
as a divergent rerun's chains replace a run's), and the modes and stacking weights are found
afresh over the final chains, so that each mode's weight rests on the same kind of draws as
its R-hat and ESS. A lone chain cannot give a split R-hat across chains, and two chains of a
mode seldom give an ESS of 400 where four do.
These runs count against ``max_draws`` like every follow-up, never against a clock (a
result must not depend on how busy the machine was); when the draws left are too few the
record says so and the modes warning names the modes that fail.

**Divergences** (:func:`divergent_rerun`). A run with divergences below a target acceptance of
:data:`RAISED_TARGET_ACCEPT` gets new chains the same way (grouped by where they ended, one
group when they are in one mode), at that target, replacing the first run's; when those still
diverge (in one mode), new chains run once more from where they ended at
:data:`LAST_TARGET_ACCEPT`. The extension then uses the last target too
(``posterior.attrs["follow_up_target_accept"]``; ``target_accept`` stays the first run's).
Divergent draws are not extended: their trajectories stopped short of a region, so more of
them keep its bias. For the same reason an extension whose own draws diverged (its re-tune
chose steps too long for a region the chains reached only then) is drawn again, every chain's,
from where the chains ended before it at the next raised target (:func:`_steady_extension`;
``extension_target_accept``), its draws counted against ``max_draws`` like new chains'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr

from ._drift import concat_chains, pooled_metric, restart_points, run_checked, run_parallel
from ._idata import RUN_STAT, Tree, get_attr, get_group, new_tree
from .diagnostics import (
    GATES,
    MILD_R_HAT,
    RAISED_TARGETS,
    _can_judge_drift,
    draws_for_gates,
    gate_shortfalls,
    log_likelihood_drift,
    mode_failures,
    modes_text,
    parameter_diagnostics,
)

__all__ = [
    "BUDGET",
    "LAST_TARGET_ACCEPT",
    "MARGIN",
    "MILD_R_HAT",
    "MODE_CHAINS",
    "MODE_RETUNE",
    "MODE_ROUNDS",
    "RAISED_TARGET_ACCEPT",
    "RERUNS",
    "RETUNE",
    "ROUNDS",
    "announce",
    "concat_draws",
    "continue_chains",
    "converge_modes",
    "divergent_rerun",
    "drifted_chains",
    "extension_cut",
    "extension_plan",
    "follow_up",
    "modes_to_rerun",
    "new_chains",
    "raised_target",
    "rerun_groups",
    "rerun_modes",
]

# re-tuning steps of a continued chain (whitened by its own draws' covariance, the metric
# needs little adapting; nuts-rs needs a few dozen for its step size and early windows)
RETUNE = 100
# tuning steps of a mode's new chains (they start at other draws of the mode, often at a raised
# target, whose step size is found afresh): MASS crabs (K = 4), a mode's 2 new chains at 0.95
# had ESS 108 and R-hat 1.025 after 100 steps, met the gates after 300
MODE_RETUNE = 300
# draws planned for this many times the ESS the gates ask for (the ESS estimate is noisy)
MARGIN = 1.25
# at most this many extensions (each re-tunes; a second one when the first fell short and
# raised the smallest ESS, or left only R-hat failing)
ROUNDS = 2
# the fewest extra draws per chain worth a re-tune
_MIN_EXTRA = 100
# an extension is judged at the end of each of the first CHECKS - 1 of this many equal parts
# of it as it goes (at its end it is judged as before) ...
CHECKS = 4
# ... when the parts have at least this many draws, and not before the extension has as many
# draws as the chains had: gclus body girths, K = 3, seed 2 (R-hat 1.014, ESS 456 after 1000
# draws) met the gates 250 draws into its extension, but after all 1000 its ESS was 334 (two
# rows' clusters crossed slowly; the darting step then met the gates)
_MIN_CHECK = 200
# ... and stops once the chains so far meet the gates with this margin on the ESS (judged
# after the fact rather than planned, so a smaller margin than MARGIN's). gclus body girths,
# 507 x 12, K = 3, seed 5: ESS 69 after 1000 draws planned 3000 more, and the gates were met
# (ESS 460, R-hat 1.008) after 1500 of them; seed 6: ESS 130 planned 2835, met after 708
CHECK_MARGIN = 1.1
# a judgement (the results so far finished, then their diagnostics, while the samplers
# pause) costs about this many gradients per draw judged, per chain, counted as the sampling
# it may save is (4 chains on 2 cores): gclus body girths, K = 3, about 7 x 2 (1750 draws
# per chain judged in 6 s, a gradient 125 us); gclus ozone, K = 2, about 11 x 2; 16 judges
# a little more often than the dearer estimate would (a judgement that passes also replaces
# the results of the longer run). So a judgement is made only where the draws left would
# cost more: body girths' extensions take 31 NUTS steps per draw; ozone's (K = 3) 15, where
# judging each quarter did not pay (one judgement, 67.6 -> 70.8 s, though the gates were
# met a quarter in)
JUDGE_COST = 16
# after a judgement that failed, the next is made only where the gates' trend says they may
# be met, within this factor: the extension's draws often mix better than the first run's,
# so the line undershoots (gclus body girths, K = 3, seed 5: ESS 69, then 201 after 700 draws
# of the extension: on that line 352 after 1500, where it was 460; MASS Pima.tr, K = 4: 66,
# then 193 after 700: 338 after 1500, where it was 196)
TREND_SLACK = 0.8
# NUTS target acceptance of new chains after a run with divergences (smaller steps, about 1.6
# times the gradients; what the diagnostics' advice suggests), and of the chains after those
# when they still diverge (R's milk, K = 2: 6 divergences at 0.95, none at 0.99)
RAISED_TARGET_ACCEPT, LAST_TARGET_ACCEPT = RAISED_TARGETS
# new chains a mode that fails its gates gets per round (2 cores: they run side by side), and
# at most this many such rounds
MODE_CHAINS = 2
MODE_ROUNDS = 2
# max_draws by default, in draws per chain: this many times the first run's. Raised from 3
# when a mode's chains began to re-tune longer (MODE_RETUNE): MASS crabs (K = 4) then met every
# mode's gates with a second round of a mode's chains, which 3 times left no draws for (53 s)
BUDGET = 4
# times the chains may run again from where they ended; after the first, only for a chain
# that moved while drawing or divergences below LAST_TARGET_ACCEPT, with the chains in one
# mode (several modes get chains of their own instead: converge_modes)
RERUNS = 2


def _gates(idata: Tree) -> dict:
    """Worst R-hat, smallest bulk or tail ESS over parameters, divergences, whether a chain
    drifted while it drew, and the number of modes."""
    params = parameter_diagnostics(idata)
    drifted = bool(_drifted(idata).size)
    return {
        "r_hat": float(params["r_hat"].max()),
        "ess": _smallest_ess(params),
        "divergences": _divergences(idata),
        "drifted": drifted,
        "n_modes": int(get_attr(idata, "n_modes", default=1)),
    }


def _smallest_ess(params: pd.DataFrame) -> float:
    """The smallest bulk or tail ESS of a :func:`parameter_diagnostics` table."""
    return float(min(params["ess_bulk"].min(), params["ess_tail"].min()))


def _divergences(idata: Tree) -> int:
    """Divergent transitions over all chains and draws."""
    stats = get_group(idata, "sample_stats")
    return int(stats["diverging"].sum()) if "diverging" in stats else 0


def extension_plan(
    idata: Tree, max_draws: int, ess_before: float | None = None, gates: dict | None = None
) -> tuple[int, str]:
    """Extra draws per chain the run needs to meet the R-hat and ESS gates (0: none, or none
    worth trying), and why.

    After an extension (``ess_before``: the smallest ESS before it) whose draws did not
    raise the smallest ESS while it is below its gate, there is no second: the chains cross
    slowly between regions, so their autocorrelation time grew with their length, and more
    draws of the same kernel do not meet the gate (gclus ozone, K = 2: ESS 167, then 140
    after 1986 more draws per chain and 211 after 1014 more; gclus body girths, K = 3: 365,
    then 298 after 368 more and 215 after 1368 more; the step after NUTS,
    :mod:`bayesgmm._darting`, met the gates on both). That step then runs on the chains.

    Parameters
    ----------
    idata : xarray.DataTree
        Finished, relabelled results (after :func:`bayesgmm.modes.record_modes`).
    max_draws : int
        The most draws per chain the run may have in all.
    ess_before : float, optional
        The smallest bulk or tail ESS before the extension that made ``idata`` (None: no
        extension yet).
    gates : dict, optional
        :func:`_gates` of ``idata``, when known.

    Returns
    -------
    (extra, reason)
        ``extra`` draws per chain; ``reason`` names the failed gates ("" when met) or why the
        run is not extended.
    """
    draws = get_group(idata, "posterior").sizes["draw"]
    gates = _gates(idata) if gates is None else gates
    short = gate_shortfalls(gates)
    if not short:
        return 0, ""
    blocked = {
        "divergences": gates["divergences"] > 0,
        "a chain drifted": gates["drifted"],
        f"R-hat above {MILD_R_HAT}": not gates["r_hat"] <= MILD_R_HAT,
        "several modes": gates["n_modes"] > 1,
        "one chain": get_group(idata, "posterior").sizes["chain"] < 2,
    }
    reasons = [name for name, hit in blocked.items() if hit]
    if reasons:  # (over several modes, each mode's own gates: pooled ones say nothing)
        failed = modes_text(get_attr(idata, "modes")) if gates["n_modes"] > 1 else ""
        return 0, f"{failed or ', '.join(short)}; not extended: {', '.join(reasons)}"
    # (with the ESS gate met, R-hat alone fails: a lower ESS is then noise, not slow crossing)
    below = gates["ess"] < GATES["ess_bulk"]
    if ess_before is not None and below and not gates["ess"] > ess_before:
        return 0, (
            f"{', '.join(short)}; not extended again: the last extension did not raise the ESS "
            f"({ess_before:.0f} before it), so the chains cross slowly between regions"
        )
    extra = min(max(_wanted(draws, gates), _MIN_EXTRA), max_draws - draws)
    if extra < _MIN_EXTRA:
        return 0, f"{', '.join(short)}; not extended: max_draws={max_draws} reached"
    return int(extra), ", ".join(short)


def _wanted(draws: int, gates: dict) -> int:
    """Draws per chain a run of ``draws`` per chain with these :func:`_gates` needs added for
    the gates: the ESS grows with the chains' length (:data:`MARGIN` times the gate), and
    R-hat's noise shrinks with it (at least ``draws`` more when R-hat fails)."""
    wanted = int(np.ceil(draws_for_gates(draws, gates["ess"], MARGIN))) - draws
    if gates["r_hat"] > GATES["r_hat"]:
        wanted = max(wanted, draws)
    return wanted


def extension_cut(idata: Tree, max_draws: int, gates: dict) -> bool:
    """Whether the extension :func:`extension_plan` plans for these results is cut short by
    ``max_draws``: by their ESS per draw the gates need more draws than are left, so it is
    expected to end short of them. On mclust's wreath (K=4) and gclus ozone (K=2) the first
    runs' ESS (26 and 52) asked for more than 3000 draws per chain; the 3000 drawn left ESS 333
    and 176, and the step after NUTS met the gates (:mod:`bayesgmm._darting`).

    Parameters
    ----------
    idata : xarray.DataTree
        Finished, relabelled results.
    max_draws : int
        The most draws per chain the run may have in all.
    gates : dict
        :func:`_gates` of ``idata``.
    """
    extra, _ = extension_plan(idata, max_draws, gates=gates)
    draws = get_group(idata, "posterior").sizes["draw"]
    return extra > 0 and _wanted(draws, gates) > extra


def _without_first(raw: Tree, n_draws: int) -> Tree:
    """Raw results without each chain's first ``n_draws`` draws (renumbered from 0)."""
    groups = {}
    for name, node in raw.children.items():
        data = node.to_dataset()
        if "draw" in data.dims:
            data = data.isel(draw=slice(n_draws, None))
            data = data.assign_coords(draw=np.arange(data.sizes["draw"]))
        groups[name] = data
    return new_tree(groups)


def continue_chains(
    raw: Tree,
    compile_one: Callable,
    run: dict,
    extra: int,
    results: Callable,
    round_: int = 1,
    before: dict | None = None,
) -> tuple[Tree, tuple] | None:
    """Up to ``extra`` more draws of every chain of nutpie's raw results, appended to them:
    ``(raw, results(raw))`` of the longer chains.

    Each chain restarts at its last draw, whitened by the covariance of the second half of
    its draws (unconstrained; :func:`bayesgmm._drift.restart_points`), with :data:`RETUNE`
    tuning steps. An extension of at least :data:`CHECKS` times :data:`_MIN_CHECK` draws is
    judged each time the chains have drawn another ``extra / CHECKS`` of them (before its
    end, and never before they have drawn as many as they had: a slow crossing between
    regions shows only over a longer stretch), and stops when the chains so far meet the
    gates with :data:`CHECK_MARGIN` (:func:`_met`): the draws planned from the first run's
    ESS per draw are often more than needed, as its chains were still leaving their start.
    A judgement is made only where it may pay (:func:`_worth_judging`) and, after one that
    failed, where the gates' trend since the one before (``before``: the gates of ``raw``'s
    results, if given) says they may be met (:func:`_may_pass`). Returns None when Ctrl-C
    stopped the extension (the caller keeps ``raw``).
    """
    flat = _flat(raw)
    announce(run, f"extending every chain by up to {extra} draws (+{RETUNE} re-tuning steps)")
    runs = []
    for c, point in enumerate(restart_points(flat)):
        seed = (int(run["seed"]) + 15485863 * round_ + 7907 * (c + 1)) % 2**31
        start = dataclasses.replace(point, mode=flat[c, -1])
        runs.append(_one_chain(compile_one, start, run, seed, extra, RETUNE))
    judged: list = []
    trend = [(0, before)] if before else []  # (draws added, gates) of the judgements so far

    def judge(traces: list) -> bool:
        part = concat_chains(traces)
        added = get_group(part, "posterior").sizes["draw"]
        if not _worth_judging(part, extra, flat.shape[1]):
            return False
        if len(trend) > 1 and not _may_pass(trend[-2:], added, flat.shape[1]):
            return False
        longer = concat_draws(raw, part)
        judged[:] = [longer, results(longer)]
        trend.append((added, _gates(judged[1][0])))
        return _met(trend[-1][1])

    every = extra // CHECKS
    checks = [every * k for k in range(1, CHECKS) if every * k >= flat.shape[1]]
    try:
        if every >= _MIN_CHECK and checks:
            more, stopped = run_checked(runs, judge, checks)
        else:
            more, stopped = run_parallel(runs), False
    except KeyboardInterrupt:
        return None
    if stopped:
        return judged[0], judged[1]
    longer = concat_draws(raw, concat_chains(more))
    return longer, results(longer)


def _worth_judging(part: Tree, extra: int, before: int) -> bool:
    """Whether judging an extension's chains so far (``part``, after ``before`` draws per
    chain) could save more than it costs: each draw left to ``extra`` takes the mean NUTS
    steps (gradients) per draw so far, a judgement about :data:`JUDGE_COST` gradients per
    draw judged (``before`` and ``part``'s), both per chain. Counted in draws and steps,
    never seconds, so that a seeded run stops at the same draw on any machine."""
    stats = get_group(part, "sample_stats")
    per_draw = float(stats["n_steps"].mean()) if "n_steps" in stats else np.inf
    return per_draw * (extra - stats.sizes["draw"]) >= JUDGE_COST * (before + stats.sizes["draw"])


def _may_pass(trend: list[tuple[int, dict]], added: int, before: int) -> bool:
    """Whether the gates may be met after ``added`` draws of an extension, from the last two
    judgements of it (``trend``: draws added and :func:`_gates`, the first may be the run's
    before it, at 0; ``before`` draws per chain before the extension): the smallest ESS
    going on along its line through them, the excess of R-hat over 1 shrinking with the
    chains' length; either within :data:`TREND_SLACK`. MASS Pima.tr, K = 4 (measured when
    an extension was judged before it had the first run's length): ESS 66, then 193 700
    draws into the extension, so after 1500 about 338, too few to judge (it was 196)."""
    (a0, g0), (a1, g1) = trend
    ess = g1["ess"] + (g1["ess"] - g0["ess"]) / (a1 - a0) * (added - a1)
    r_hat = 1 + (g1["r_hat"] - 1) * (before + a1) / (before + added)
    target = CHECK_MARGIN * GATES["ess_bulk"]
    return ess >= TREND_SLACK * target and r_hat - 1 <= (GATES["r_hat"] - 1) / TREND_SLACK


def _met(gates: dict) -> bool:
    """Whether :func:`_gates` meet the R-hat gate and :data:`CHECK_MARGIN` times the ESS gate
    in one mode, without a chain that moved while it drew (an extension may stop there)."""
    return (
        gates["r_hat"] <= GATES["r_hat"]
        and gates["ess"] >= CHECK_MARGIN * GATES["ess_bulk"]
        and not gates["drifted"]
        and gates["n_modes"] == 1
    )


def announce(run: dict, text: str) -> None:
    """Say on stderr which follow-up run starts and what it costs, when progress is shown
    (nutpie's bars then show how far it is)."""
    if run.get("progressbar"):
        from rich.console import Console

        Console(stderr=True).print(f"bayesgmm follow-up: {text}", highlight=False)


def _flat(raw: Tree) -> np.ndarray:
    """The unconstrained draws ``(chain, draw, n_dim)`` of nutpie's raw kernel results."""
    return get_group(raw, "posterior")["unconstrained_point"].transpose("chain", "draw", ...).values


def _one_chain(compile_one, point, run: dict, seed: int, draws: int, tune: int) -> Callable:
    """A function that starts one chain in the background (for :func:`run_parallel` or
    :func:`run_checked`)."""
    import nutpie

    return lambda: nutpie.sample(
        compile_one(point),
        draws=draws,
        tune=tune,
        chains=1,
        seed=seed,
        target_accept=run["target_accept"],
        progress_bar=run["progressbar"],
        save_warmup=False,
        blocking=False,
    )


def concat_draws(first: Tree, second: Tree) -> Tree:
    """Each chain's draws of ``second`` appended to its draws in ``first`` (``draw``
    renumbered from 0); variables without a ``draw`` dim (``sample_stats["start"]``) and
    groups without one are kept from ``first``. ``sample_stats["sampler_run"]`` numbers the
    run that drew each draw (:func:`_numbered_runs`).

    Parameters
    ----------
    first, second : xarray.DataTree
        Results with the same chains and variables.

    Returns
    -------
    xarray.DataTree
    """
    groups = {}
    for name, node in first.children.items():
        data = node.to_dataset()
        if "draw" not in data.dims:
            groups[name] = data
            continue
        tail = second[name].to_dataset()
        if name == "sample_stats":
            data, tail = _numbered_runs(data, tail)
        with_draw = [v for v in data.data_vars if "draw" in data[v].dims]
        rest = data.drop_dims("draw")
        tail = tail[with_draw]
        joined = xr.concat([data[with_draw], tail], dim="draw", combine_attrs="override")
        joined = joined.assign_coords(draw=np.arange(joined.sizes["draw"]))
        groups[name] = xr.merge([joined, rest], combine_attrs="override")
    return new_tree(groups)


def _numbered_runs(first: xr.Dataset, second: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """The ``sample_stats`` of two results to be joined, each draw numbered by the run of
    the sampler that drew it (``sample_stats["sampler_run"]``: ``second``'s runs after
    ``first``'s), so that E-BFMI is judged within runs (:func:`bayesgmm._idata.bfmi`)."""

    def runs(stats: xr.Dataset) -> xr.DataArray:
        if RUN_STAT in stats:
            return stats[RUN_STAT]
        shape = (stats.sizes["chain"], stats.sizes["draw"])
        return xr.DataArray(np.zeros(shape, dtype=np.int64), dims=("chain", "draw"))

    before = runs(first)
    after = runs(second) + int(np.nanmax(before.values, initial=-1)) + 1
    return first.assign({RUN_STAT: before}), second.assign({RUN_STAT: after})


def follow_up(
    raw: Tree,
    finished: tuple,
    results: Callable[[Tree], tuple],
    compile_one: Callable,
    run: dict,
    max_draws: int,
) -> tuple[Tree, Tree, object, dict]:
    """Follow a finished run up until it meets the gates, the budget ends or nothing helps.

    Parameters
    ----------
    raw : xarray.DataTree
        nutpie's raw results of the E-step kernel's model (unconstrained draws).
    finished : tuple
        ``results(raw)``: the finished results and their label switching summary.
    results : callable
        Raw results to ``(finished results, label switching summary)`` (modes recorded).
    compile_one : callable
        nutpie's compiled model whitened by a :class:`~bayesgmm._precondition.Laplace`.
    run : dict
        The first run's ``draws``, ``tune``, ``chains``, ``seed``, ``target_accept`` and
        ``progressbar``.
    max_draws : int
        The most draws per chain in all.

    Returns
    -------
    (raw, results, label switching summary, attrs)
        ``raw``: the final chains' unconstrained draws (:mod:`bayesgmm._independence` fits
        on them). ``attrs``: ``follow_up`` (what ran and why, or why nothing did),
        ``extended_draws`` (draws added per chain), ``first_run_modes`` (the first run's
        :func:`bayesgmm.modes.mode_table` when its modes ran again), ``warmup_draws_dropped``,
        ``follow_up_target_accept`` (the new chains' target after divergences) and
        ``extension_target_accept`` (an extension's, drawn again after its own divergences:
        :func:`_steady_extension`), when there was anything to follow up; ``mode_reruns``
        when modes ran again on their own.
    """
    done, attrs = [], {}
    spare = (max_draws - run["draws"]) * run["chains"]  # draws the follow-ups may add in all
    for round_ in range(RERUNS):
        raw, finished, run, spent = _rerun(
            raw, finished, results, compile_one, run, spare, done, attrs, later=round_ > 0
        )
        if not spent:
            break
        spare -= spent
    raw, finished, run, spare = converge_modes(
        raw, finished, results, compile_one, run, spare, done, attrs
    )  # (the extension that may follow runs at the highest target the modes' chains reached)
    extended, ess_before = 0, None
    for round_ in range(1, ROUNDS + 1):
        before = _gates(finished[0])  # (the plan's, and the extension's judge starts from them)
        extra, reason = extension_plan(finished[0], max_draws, ess_before, gates=before)
        if not extra:
            if reason:
                done.append(reason)
            break
        ess_before = before["ess"]
        longer = continue_chains(raw, compile_one, run, extra, results, round_, before)
        if longer is None:
            done.append(f"{reason}; the extension was interrupted (Ctrl-C): kept the draws before")
            break
        planned = f"{reason}: {extra} more draws per chain after a {RETUNE}-step re-tune"
        done.append(_stopped_text(planned, extra, _added(raw, longer[0])))
        longer, later, run, spare, interrupted = _steady_extension(
            raw, longer, results, compile_one, run, spare, done, attrs, round_
        )
        raw, finished, extended = longer, later, extended + _added(raw, longer)
        if interrupted:
            break
    if extended:
        raw, finished = _drop_first_run(raw, finished, results, run["draws"], done, attrs)
    if not done:
        return raw, *finished, {}
    return raw, *finished, {"follow_up": done, "extended_draws": extended, **attrs}


def _added(raw: Tree, longer: Tree) -> int:
    """Draws per chain ``longer`` has beyond ``raw``."""
    return get_group(longer, "posterior").sizes["draw"] - get_group(raw, "posterior").sizes["draw"]


def _stopped_text(text: str, extra: int, added: int) -> str:
    """``text``, the record of an extension planned at ``extra`` draws per chain, saying so
    when it stopped after ``added`` (:func:`continue_chains`)."""
    if added < extra:
        text += f", stopped after {added} as the chains so far met the gates"
    return text


def _steady_extension(raw, longer, results, compile_one, run, spare, done, attrs, round_):
    """An extension (``longer``: its raw results and results) whose draws diverged, drawn
    again from where ``raw``'s chains ended at the next :func:`raised_target`, while ``spare``
    draws allow (over all chains): ``(raw, results, run, spare, interrupted)`` of the extension
    kept, ``run`` at its target, ``interrupted`` when Ctrl-C stopped a redo (the divergent
    extension is then kept). ``round_``: the extension's round (the new draws' seeds differ).
    ``attrs["extension_target_accept"]`` records the target of the kept extension's draws.

    The chains before it did not diverge (an extension follows only such a run), so the
    divergences are the extension's own: its re-tune chose steps too long for a region the
    chains reached later (MASS Pima.tr, K = 3: 1 divergence in 4 x 1301 extra draws at 0.95
    after none in 4 x 1000). More draws of that kernel keep the region's bias, as a divergent
    run's would. So the extension is replaced because of its outcome, every chain's together
    (as :func:`divergent_rerun` replaces a run), never some chains' draws by theirs; the draws
    before it, which did not diverge, stay at their lower target (so
    ``follow_up_target_accept``, the target every kept draw ran at or above, is not raised).
    """
    before = get_group(raw, "posterior").sizes
    extra = _added(raw, longer[0])
    for step in range(1, len(RAISED_TARGETS) + 2):  # (the last pass only records)
        diverged = _divergences(longer[1][0])
        if not diverged:
            break
        why = f"{diverged} divergences in the extension at target_accept {run['target_accept']:g}"
        target = raised_target(run["target_accept"])
        needed = extra * before["chain"]
        if target is None or needed > spare:
            left = f"max_draws leaves too few draws ({spare} left)" if target else "last target"
            done.append(f"{why}; kept, not drawn again: {left}")
            break
        higher = {**run, "target_accept": target}
        again = continue_chains(raw, compile_one, higher, extra, results, round_ + ROUNDS * step)
        if again is None:
            done.append(f"{why}; drawing it again was interrupted (Ctrl-C): kept it")
            return *longer, run, spare, True
        longer, run, spare = again, higher, spare - needed
        attrs["extension_target_accept"] = target
        redone = f"{why}: its {extra} draws per chain drawn again at target_accept {target:g}"
        done.append(_stopped_text(redone, extra, _added(raw, again[0])))
    return *longer, run, spare, False


def _rerun(raw, finished, results, compile_one, run, spare, done, attrs, later) -> tuple:
    """:func:`rerun_modes` when :func:`modes_to_rerun` or :func:`divergent_rerun` says so (a
    ``later`` round, with the chains in one mode: :func:`drifted_chains` or
    :func:`divergent_rerun`) and ``spare`` draws allow: ``(raw, finished, run, spent)`` of
    the new chains (or as they were, ``spent`` 0), ``run`` with the target acceptance they
    used, ``spent`` their draws; ``done`` and ``attrs`` record it."""
    if later and get_attr(finished[0], "n_modes", default=1) > 1:
        return raw, finished, run, 0  # each mode gets chains of its own (converge_modes)
    why = drifted_chains(finished[0]) if later else modes_to_rerun(finished[0])
    raised = divergent_rerun(finished[0], run["target_accept"])
    if not (why or raised):
        return raw, finished, run, 0
    why = "; ".join(filter(None, [why, raised]))
    target = raised_target(run["target_accept"])
    again_run = {**run, "target_accept": target} if raised else run
    groups = rerun_groups(finished[0], origins=not later)
    n_new = sum(new_chains(groups, run["chains"]))
    if n_new * run["draws"] > spare:
        done.append(f"{why}; not rerun: max_draws allows too few draws ({spare} left)")
        return raw, finished, run, 0
    again = rerun_modes(raw, groups, compile_one, again_run)
    if again is None:
        done.append(f"{why}; the new chains were interrupted (Ctrl-C): kept the first")
        return raw, finished, run, 0
    if get_attr(finished[0], "modes") and not later:  # the first run's modes, for the record
        attrs["first_run_modes"] = get_attr(finished[0], "modes")
    if raised:
        attrs["follow_up_target_accept"] = target
    ended = ", ".join(_sources_text(group) for group in groups)
    done.append(
        f"{why}: {n_new} new chains from where the chains ended, at least 2 for each group "
        f"of chains that ended in one mode ({ended})"
        + (f", target_accept {target:g}" if raised else "")
    )
    return again, results(again), again_run, n_new * run["draws"]


def _sources_text(group: list[tuple[int, bool]]) -> str:
    """A group of :func:`rerun_groups` for the record: ``[0, 1, 3's start]``."""
    return "[" + ", ".join(f"{c}'s start" if first else str(c) for c, first in group) + "]"


def raised_target(target_accept: float) -> float | None:
    """The target acceptance of new chains after divergences at ``target_accept``:
    :data:`RAISED_TARGET_ACCEPT`, then :data:`LAST_TARGET_ACCEPT`; None above both."""
    return next((t for t in RAISED_TARGETS if t > target_accept), None)


def divergent_rerun(idata: Tree, target_accept: float) -> str:
    """Why the chains need to run again at a higher target acceptance (:func:`raised_target`;
    "" when they do not): the run had divergences at a lower target.

    A divergent trajectory is cut short where the step size is too large for the curvature
    (a near-empty component's funnel, the narrow end of a curved ridge), so the chains miss
    that region and their draws are biased; more draws with the same step size do not fix
    that, smaller steps do. The new chains replace the first run's (Old Faithful, K=3: 30 to
    80 divergences at 0.8 in 4 chains of 1000 draws, none at 0.95; R's milk, K=2: 39 at 0.9,
    6 at 0.95, none at 0.99).
    """
    divergences = _divergences(idata)  # not _gates: no R-hat, ESS or drift needed here
    if divergences == 0 or raised_target(target_accept) is None:
        return ""
    return f"{divergences} divergences at target_accept {target_accept:g}"


def _drop_first_run(raw, finished, results, n_draws: int, done, attrs) -> tuple:
    """An extended run without its first ``n_draws`` draws per chain (as warm-up), when
    R-hat or the ESS fails with them and the gates are met without them (a chain still
    settling in the first run keeps R-hat up, or its trend the ESS down, however long the
    run; MASS cats, K = 3: tail ESS 399 over 4000 draws a chain, 822 over the last 2000):
    ``(raw, finished)`` of either."""
    failed = ", ".join(gate_shortfalls(_gates(finished[0])))
    if not failed:
        return raw, finished
    later_raw = _without_first(raw, n_draws)
    later = results(later_raw)
    if gate_shortfalls(_gates(later[0])):
        return raw, finished
    attrs["warmup_draws_dropped"] = n_draws
    done.append(
        f"{failed} with the first run's draws, gates met without them: dropped the "
        f"first {n_draws} draws of every chain as warm-up"
    )
    return later_raw, later


def modes_to_rerun(idata: Tree) -> str:
    """Why the chains need to run again where they ended ("" when they do not): several
    modes, some with fewer than two chains or an R-hat above :data:`MILD_R_HAT` within itself
    (a smaller excess is left to the extension), or a chain that moved to another region
    while it drew (:func:`bayesgmm.diagnostics.log_likelihood_drift`; its draws mix two
    regions, and by its spread it can join chains of both into one mode)."""
    why = []
    table = get_attr(idata, "modes") or []
    short = [
        f"mode {row['mode']}: "
        + (f"{len(row['chains'])} chain" if len(row["chains"]) < 2 else "")
        + (f"R-hat {row['max_r_hat']:.3f}" if len(row["chains"]) >= 2 else "")
        for row in table
        if len(row["chains"]) < 2 or not row["max_r_hat"] <= MILD_R_HAT
    ]
    if short:
        why.append(f"{len(table)} modes ({'; '.join(short)})")
    return "; ".join(filter(None, [*why, drifted_chains(idata)]))


def drifted_chains(idata: Tree) -> str:
    """Which chains moved to another region while they drew ("" when none did,
    :func:`bayesgmm.diagnostics.log_likelihood_drift`): they had not settled, so the chains
    run again from where they ended, a second time when a new chain moves too (carData's
    Prestige, K = 2: a new chain held another partition for 400 draws, then joined the
    others)."""
    drifted = _drifted(idata)
    if not drifted.size:
        return ""
    return f"chain(s) {drifted.tolist()} moved to another region while drawing"


def _drifted(idata: Tree) -> np.ndarray:
    """The chains that moved while they drew (none with too few draws to judge)."""
    if not _can_judge_drift(idata):
        return np.array([], dtype=np.int64)
    return np.flatnonzero(log_likelihood_drift(idata)["drifted"].to_numpy())


def rerun_groups(idata: Tree, origins: bool = False) -> list[list[tuple[int, bool]]]:
    """Where new chains start: groups of sources ``(chain, from_start)``, one group per mode
    (label-invariantly, :func:`bayesgmm.modes.find_modes`, best mean log-likelihood first)
    that the chains' last quarters are in, and with ``origins`` the first quarters of the
    chains that moved while they drew (:func:`_drifted`) too.

    A chain that left one region for another does not say which holds more of the posterior:
    time spent is not mass. So the first rerun after a move starts chains where the moved
    chains began as well as where every chain ended (one group when they are one mode); if
    those chains leave their region too, the rerun after shows it, and if they stay, the
    modes and their stacking weights say how much each holds.
    """
    from .modes import find_modes

    n_chains = get_group(idata, "posterior").sizes["chain"]
    sources = [(c, False) for c in range(n_chains)]
    parts = [_quarter(idata, range(n_chains), first=False)]
    moved = _drifted(idata) if origins else np.array([], dtype=np.int64)
    if moved.size:
        sources += [(int(c), True) for c in moved]
        parts.append(_quarter(idata, moved, first=True))
    modes = find_modes(concat_chains(parts))
    return [[sources[i] for i in np.flatnonzero(modes == m)] for m in range(int(modes.max()) + 1)]


def _quarter(idata: Tree, chains, first: bool) -> Tree:
    """The first or last quarter (at least 20 draws) of the given chains, draws renumbered."""
    n_draws = get_group(idata, "posterior").sizes["draw"]
    size = min(max(n_draws // 4, 20), n_draws)
    part = idata.isel(
        chain=list(chains),
        draw=slice(0, size) if first else slice(n_draws - size, n_draws),
        missing_dims="ignore",
    )
    groups = {}
    for name, node in part.children.items():
        data = node.to_dataset()
        if "draw" in data.dims:
            data = data.assign_coords(draw=np.arange(data.sizes["draw"]))
        groups[name] = data
    return new_tree(groups)


def new_chains(groups: list, chains: int) -> list[int]:
    """How many new chains each group gets: ``chains`` shared out, at least two each."""
    return [max(2, chains // len(groups))] * len(groups)


def rerun_modes(
    raw: Tree, groups: list[list[tuple[int, bool]]], compile_one: Callable, run: dict
) -> Tree | None:
    """New chains for each group of sources (:func:`rerun_groups`, :func:`new_chains`),
    ``run["draws"]`` draws each after ``run["tune"]`` tuning steps, all run at once; None
    after Ctrl-C.

    A group's new chains start at its sources in turn: a chain's last draw (a chain used
    again starts an eighth of its length earlier each time), whitened by the covariance of
    its last quarter (unconstrained; :func:`bayesgmm._drift.restart_points`), or for a chain's
    beginning its first draw (later ones the same eighth apart), whitened by its first
    quarter's covariance.
    """
    flat = _flat(raw)
    quarter = max(flat.shape[1] // 4, 20)
    counts = new_chains(groups, run["chains"])
    announce(
        run,
        f"running {sum(counts)} new chains from where the chains ended "
        f"({run['tune']} tuning steps and {run['draws']} draws each)",
    )
    runs = []
    for sources, count in zip(groups, counts, strict=True):
        for j in range(count):
            (chain, from_start), step = sources[j % len(sources)], j // len(sources)
            if from_start:
                point = pooled_metric(flat[chain, :quarter])
                draw = min(step * (quarter // 2), flat.shape[1] - 1)
            else:
                point = restart_points(flat[chain][None, -2 * quarter :])[0]
                draw = max(-1 - step * (quarter // 2), -flat.shape[1])  # a short run: its first
            point = dataclasses.replace(point, mode=flat[chain, draw])
            seed = (int(run["seed"]) + 32452843 + 7907 * (len(runs) + 1)) % 2**31
            runs.append(_one_chain(compile_one, point, run, seed, run["draws"], run["tune"]))
    try:
        return concat_chains(run_parallel(runs))
    except KeyboardInterrupt:
        return None


# ----------------------------------------------------------------------------- per-mode runs
def converge_modes(
    raw: Tree,
    finished: tuple,
    results: Callable[[Tree], tuple],
    compile_one: Callable,
    run: dict,
    spare: int,
    done: list,
    attrs: dict,
) -> tuple[Tree, tuple, dict, int]:
    """New chains for each mode that fails its gates, judged by that mode's own chains.

    For up to :data:`MODE_ROUNDS` rounds, while the chains are in several modes and some mode
    fails :func:`mode_failures`: every such mode gets :data:`MODE_CHAINS` new chains (all run
    at once), started at distinct draws of its chains' second halves and whitened by those
    draws' pooled covariance (unconstrained), with :data:`MODE_RETUNE` tuning steps, as many
    draws as its chains have, at the next :func:`raised_target` when it had divergences (a later
    round from there: every mode's chains at least at the target the round before raised
    to, a mode with divergences one step higher). The mode then
    keeps its old chains with the new ones, or only the new ones when they alone meet the gates
    and the joined chains do not (a better run of the same mode: e.g. an old chain with
    divergences), or when the old chains diverged and the new ones ran one step up the ladder
    of targets (see :func:`_assemble`); the new chains are added in any case when they ended
    in another mode, so no mode is lost. Modes that passed keep their chains untouched. The
    final results are judged afresh (:func:`bayesgmm.modes.record_modes`: modes and stacking
    weights over the final chains). Returns the raw results, their results, the run's
    settings at the highest target reached (an extension after this runs there) and the
    draws ``spare`` still leaves.

    A round starts only when its draws fit ``spare`` (the draws ``max_draws`` leaves, over
    all chains); otherwise ``done`` says which modes still fail and what to try.
    ``attrs["mode_reruns"]`` records every round: the mode, its chains and failures before,
    what was kept and the new chains' numbers in the final results.
    """
    records = attrs.setdefault("mode_reruns", [])
    for round_ in range(1, MODE_ROUNDS + 1):
        table = get_attr(finished[0], "modes") or []
        failing = {row["mode"]: mode_failures(row) for row in table}
        failing = {m: why for m, why in failing.items() if why}
        if not failing:
            break
        named = modes_text(table, only_failing=True)
        n_draws = get_group(raw, "posterior").sizes["draw"]
        if MODE_CHAINS * len(failing) * n_draws > spare:
            done.append(
                f"{named}; not run again: max_draws leaves too few draws ({spare} over all "
                f"chains, {MODE_CHAINS * len(failing) * n_draws} needed); raise max_draws or "
                "draws (each mode's chains then meet the gates on their own) or use fewer "
                "components; each mode's gates are in mode_table()"
            )
            break
        new = _run_modes(raw, table, failing, compile_one, run, n_draws, round_)
        if new is None:
            done.append(f"{named}; the new chains were interrupted (Ctrl-C): kept the chains")
            break
        spare -= MODE_CHAINS * len(failing) * n_draws
        higher = raised_target(run["target_accept"])
        raised = {r["mode"] for r in table if r["mode"] in failing and r["divergences"] > 0}
        # (their new chains ran above every old chain's target; none above the last one)
        raised = raised if higher else set()
        if raised:  # a later round climbs from the raised target (modes are found afresh)
            run = {**run, "target_accept": higher}
        raw, kept = _assemble(raw, table, failing, new, results, raised)
        finished = results(raw)
        records += kept
        done.append(
            f"{named}: {MODE_CHAINS} new chains for each ({MODE_RETUNE} tuning steps, {n_draws} "
            f"draws; round {round_}): " + "; ".join(f"mode {k['mode']} {k['kept']}" for k in kept)
        )
    if not records:
        del attrs["mode_reruns"]
    return raw, finished, run, spare


def _run_modes(raw, table, failing, compile_one, run, n_draws, round_) -> dict | None:
    """:data:`MODE_CHAINS` new chains for each failing mode, all run at once: ``{mode:
    results of its new chains}``; None after Ctrl-C."""
    flat = _flat(raw)
    announce(
        run,
        f"running {MODE_CHAINS} new chains for each of mode(s) {sorted(failing)} "
        f"({MODE_RETUNE} tuning steps and {n_draws} draws each)",
    )
    runs, owners = [], []
    for row in table:
        if row["mode"] not in failing:
            continue
        target = raised_target(run["target_accept"]) if row["divergences"] > 0 else None
        mode_run = {**run, "target_accept": target} if target else run
        halves = flat[row["chains"], n_draws // 2 :]
        pooled = halves.reshape(-1, flat.shape[2])
        metric = pooled_metric(pooled)
        for j in range(MODE_CHAINS):  # distinct draws, spread over the pooled halves
            point = dataclasses.replace(metric, mode=pooled[(2 * j + 1) * len(pooled) // 4])
            seed = (int(run["seed"]) + 86028121 * round_ + 7907 * (len(runs) + 1)) % 2**31
            runs.append(_one_chain(compile_one, point, mode_run, seed, n_draws, MODE_RETUNE))
            owners.append(row["mode"])
    try:
        done = run_parallel(runs)
    except KeyboardInterrupt:
        return None
    owners = np.asarray(owners)
    return {m: concat_chains([done[i] for i in np.flatnonzero(owners == m)]) for m in failing}


def _chains(raw: Tree, chains) -> Tree:
    """The given chains of raw results, renumbered, without ``sample_stats["start"]`` (the
    first run's starts; new chains have none)."""
    part = raw.isel(chain=list(chains), missing_dims="ignore")
    part = concat_chains([part])
    if "start" in part["sample_stats"]:
        part["sample_stats"] = part["sample_stats"].to_dataset().drop_vars("start")
    return part


def _passes(tree: Tree, results: Callable[[Tree], tuple]) -> tuple[bool, int]:
    """Whether the chains of raw results ``tree`` are in one mode that meets the gates, and
    how many modes they are in. The draws are judged as the mode table will judge them as a
    mode of the final results: relabelled to their best draw
    (:func:`bayesgmm.modes.record_modes`), not to EM's estimate as ``results`` leaves them.
    The two differ near the gates (MASS crabs, K = 4, the same two chains: ESS 416 relabelled
    to EM, 324 to their best draw), and a mode kept as passing must show as passing."""
    from .modes import _relabel_within

    idata = results(tree)[0]
    n_modes = int(get_attr(idata, "n_modes", default=1))
    if n_modes == 1:  # (several: record_modes relabelled within each already)
        n_chains = get_group(idata, "posterior").sizes["chain"]
        _relabel_within(idata, np.zeros(n_chains, dtype=np.int64))
    gates = _gates(idata)
    met = not gate_shortfalls(gates)
    return n_modes == 1 and met and gates["divergences"] == 0, n_modes


def _assemble(raw, table, failing, new, results, raised) -> tuple[Tree, list[dict]]:
    """The raw results with each failing mode's chains joined by, or replaced with, its new
    chains (:func:`converge_modes`), and the record of what was kept. ``raised``: the modes
    whose old chains diverged and whose new chains ran one step up the ladder of targets,
    above every old chain's; those replace the old ones even short of the gates (as
    :func:`divergent_rerun`'s chains replace a run's): the old draws, from steps too long for
    the mode, are not trusted beside them. A later round, when ``MODE_ROUNDS`` and the
    draws left allow one, adds to them; otherwise the mode is reported on them, failing."""
    keep = [c for row in table if row["mode"] not in failing for c in row["chains"]]
    parts, records = [_chains(raw, keep)] if keep else [], []
    for row in table:
        if row["mode"] not in failing:
            continue
        old, fresh = _chains(raw, row["chains"]), _chains(new[row["mode"]], range(MODE_CHAINS))
        joined = concat_chains([old, fresh])
        joined_passes, joined_modes = _passes(joined, results)
        kept, passed = "old and new chains", joined_passes
        if not joined_passes and joined_modes == 1 and _passes(fresh, results)[0]:
            joined, kept = fresh, "new chains only (they meet the gates, the old did not)"
            passed = True
        elif not joined_passes and joined_modes == 1 and row["mode"] in raised:
            joined, kept = fresh, "new chains only (the old ones diverged at a lower target)"
        elif joined_modes > 1:
            kept = "old and new chains (the new ones ended elsewhere too)"
        first = sum(get_group(p, "posterior").sizes["chain"] for p in parts)
        parts.append(joined)
        n_after = get_group(joined, "posterior").sizes["chain"]
        records.append(
            {
                "mode": int(row["mode"]),
                "chains_before": list(row["chains"]),
                "failed": mode_failures(row),
                "kept": kept,
                "chains_after": list(range(first, first + n_after)),
                "converged": bool(passed),
            }
        )
    return concat_chains(parts), records
