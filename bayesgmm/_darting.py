"""Hamiltonian Monte Carlo with darting moves, after NUTS, for posteriors whose chains switch
rarely between the memberships of a few rows (issue 15).

An outlying row can sit in either of two components: in one of them only if that component
widens to reach it. The posterior then has two sub-modes, the row in one component or the
other, with a valley between them that NUTS crosses a few times per thousand draws, so R-hat
fails on the parameters the row moves although every chain visits both (scikit-learn's breast
cancer data, 10 "mean" columns, K=3: row 112 sits in component 2 in 73% of the draws, its
responsibility is near 0 or 1 in every draw, chains switch 3-10 times in 1000 draws, and
component 0's spread of the size features, which it widens, has a bulk ESS of 39 and R-hat
1.088).

:func:`switch_rows` finds such rows in the NUTS draws: rows whose most probable component
changes between draws (the minority at least :data:`MIN_MINORITY`) far less often than draws
independent of each other would change it (:data:`MAX_SWITCH_RATIO`). For each, the *dart* is
the difference between the mean of the draws with the row on its minority side and the mean of
the others, in the unconstrained space with the draws' labels aligned
(:func:`bayesgmm._unconstrained.permute_components`). Chains then alternate one Hamiltonian
trajectory (whitened by the pooled draws' covariance; path lengths
drawn uniformly from :data:`PATH_LENGTH`; step size tuned by dual averaging for
:data:`WARMUP` iterations, then fixed) with one Metropolis proposal ``x +- dart`` per switch
row (sign at random, so the proposal is symmetric), accepted with probability
``min(1, p(x') / p(x))``. The darts and metric are fixed before the kept iterations, so each
chain is an exact MCMC kernel for the posterior (the NUTS draws only chose it); a trajectory
whose energy error exceeds :data:`MAX_ENERGY_ERROR` counts as divergent.

The step also runs when divergent transitions are left after the follow-ups' raised targets
(with R-hat and the ESS met or not): without darts when no row switches rarely, as a
Hamiltonian kernel of another make (a fixed step size tuned for :data:`TARGET_ACCEPT`, jittered
path lengths, the NUTS draws' covariance as the metric), which may follow where NUTS's
trajectories did not. R's milk (86 x 8, K=2): NUTS had 1 divergent transition in 4000 at a
target of 0.99; the step's 1000 iterations per chain had none, R-hat 1.003, ESS 1006, in
2.5 s (with the Python leapfrog loop and its other bits, one divergent trajectory, and a
second run at 0.95 without). HSAUR3's heptathlon (25 x 7, K=2, 71 parameters): 3 divergent
trajectories in the second run even at 0.95, 18 s spent, NUTS kept.

The result replaces the NUTS result only when it meets the gates itself (R-hat, bulk and tail
ESS, no divergence, one mode, no drifting chain); otherwise NUTS's stays, and the attrs say
that the step was tried and why it was not kept. A first run of ``draws`` iterations per
chain that fails is followed by a second from where each chain ended, the metric and darts
refitted to its draws, for as many iterations as its ESS per iteration says the gates need
(with :data:`ESS_MARGIN`, at least the first's length; at most ``max_draws`` per chain in
all). When R-hat fails it goes on in segments of that length, judged as each ends, until it
meets the gates, a trajectory diverges, or it reaches :data:`R_HAT_GROWTH` times the first's
length (one segment when the ESS asks for more than that; gclus body girths,
K=3: R-hat 1.016 after the first 1000 iterations, every gate met after 1000 more, where the
whole 3000 took 14 s more). The second is appended to the first (and kept alone only
when it alone meets the gates: the first still settling), except after a divergent trajectory:
then it replaces the first, its step size tuned for :data:`RAISED_TARGET_ACCEPT`, as joined
chains would keep the divergence. An appended run with a divergent trajectory is drawn again
once, from the same points, at :data:`RAISED_TARGET_ACCEPT`. A first run far from the gates
(R-hat above :data:`bayesgmm.diagnostics.MILD_R_HAT`, several modes, a drifting chain, or
divergent trajectories in more than :data:`MAX_DIVERGENT_SHARE` of its iterations) gets no
second: on mlbench's Glass (K=3) one took 280 s to fail as the first had. The step runs right
after the first NUTS run, before NUTS's follow-ups, when that run's ESS per draw says NUTS's
extension would end short of the gates within ``max_draws`` (:func:`before_follow_ups`).

Measured (default ``BayesianGMM(K, random_seed=1)``, 2 cores): scikit-learn's breast cancer,
10 columns, K=3: NUTS R-hat 1.067, ESS 44; with this step 18 s in all, R-hat 1.003, ESS 701,
darts accepted 2-3% of the time (a prototype with the same trajectories and no darts: R-hat
1.034, ESS 101). With 15 columns (232 and 407 dimensions): K=2 25 s, K=3 52 s, R-hat 1.005 and
1.007 (NUTS: 1.087 and 1.209), darts accepted 1-2%. mclust's wreath, K=4: NUTS R-hat 1.077,
ESS 44; 6.0 s in all, R-hat 1.003, ESS 2417. Its limit: a dart is a translation, so it is
accepted rarely when the two sub-modes differ in shape as well as place (MASS painters, K=2:
rows that move together, 0.1% accepted; R-hat 1.005, ESS 567 after 4000 iterations, but one
divergent trajectory: NUTS's result is kept, and warned about).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ._followup import _divergences, _flat, _gates, announce, extension_cut
from ._idata import Tree, get_group
from ._independence import (
    INTERRUPTED,
    Chain,
    _verdict,
    attempt,
    blocked_text,
    draws_blocks,
    raw_tree,
)
from ._logdensity import log_density_for
from ._progress import progress_bar
from .diagnostics import GATES, MILD_R_HAT, draws_for_gates, gate_shortfalls
from .membership import draw_assignments
from .model import observed_rows

__all__ = [
    "ESS_MARGIN",
    "MAX_DIVERGENT_SHARE",
    "MAX_ENERGY_ERROR",
    "MAX_LEAPFROG",
    "MAX_ROWS",
    "MAX_SWITCH_RATIO",
    "MIN_DRAWS_PER_DIM",
    "MIN_MINORITY",
    "MIN_SIDE_DRAWS",
    "PATH_LENGTH",
    "RAISED_TARGET_ACCEPT",
    "R_HAT_GROWTH",
    "TARGET_ACCEPT",
    "WARMUP",
    "Kernel",
    "SwitchRow",
    "before_follow_ups",
    "darting_chain",
    "darts",
    "refine",
    "skip_reason",
    "switch_rows",
]

# at most this many switch rows get a dart (the slowest to switch first; rows that switch
# together share one)
MAX_ROWS = 4
# a row switches when its most probable component differs from its usual one in at least
# this share of the draws ...
MIN_MINORITY = 0.02
# ... and changes between consecutive draws at most this times as often as it would in
# independent draws (2 f (1 - f) per draw; breast cancer's row 112: 0.01)
MAX_SWITCH_RATIO = 0.25
# draws on each side of a switch row, all chains pooled, for its dart's means
MIN_SIDE_DRAWS = 40
# NUTS draws per dimension, all chains pooled, for the metric (the draws' covariance)
MIN_DRAWS_PER_DIM = 4
# iterations of step-size tuning (dual averaging) before the kept ones, not counted as draws
WARMUP = 300
# the Metropolis acceptance dual averaging aims at (breast cancer, 10 columns, K=3: single
# divergent trajectories at 0.8 and, on the CSV export, 0.85 failed the step; none at 0.9, in
# about the same time: fewer iterations needed) ...
TARGET_ACCEPT = 0.9
# ... and in a run that replaces one with a divergent trajectory (shorter steps)
RAISED_TARGET_ACCEPT = 0.95
# trajectory lengths, in units of the whitened posterior's standard deviation: uniform on this
# range (jittered lengths avoid the periodic orbits of a fixed one)
PATH_LENGTH = (1.0, 3.0)
# leapfrog steps of one trajectory at most (NUTS's tree depth 10), should the step size shrink
MAX_LEAPFROG = 1024
# a trajectory whose Hamiltonian changed more than this (nats) diverged, as in Stan and nutpie
MAX_ENERGY_ERROR = 1000.0
# the second run is sized for this times the ESS the gates ask for, from the first's ESS per
# iteration, and runs only when at least _MIN_EXTRA iterations per chain are left
ESS_MARGIN = 1.5
# ... and, when R-hat fails, it goes on in segments of that length, judged as each ends, up to
# this times the first run (breast cancer, 10 columns, K=3: R-hat 1.016 with ESS 499 after
# 1000 + 1000 iterations; carData's Davis, K=2: R-hat 1.012, ESS 690 after 1000 + 2237, and
# 1.005, ESS 887 after 1000 + 3000, 6 s more with the compiled leapfrog: by default,
# max_draws = 4 * draws, the whole budget)
R_HAT_GROWTH = 3
_MIN_EXTRA = 100
# a first run with divergent trajectories in more than this share of its iterations gets no
# second (mlbench's Glass, K=3: 2%, and a second run at 0.95 diverged as often, after 280 s)
MAX_DIVERGENT_SHARE = 0.01
_CHAIN_FIELDS = ("draws", "accepted", "logp", "diverging", "energy")
# two rows whose away-draws overlap this much (Jaccard) are one switch (rows that move together)
_SAME_SWITCH = 0.95
# a ridge on the metric, relative to the draws' mean variance (a dimension the draws never moved)
_RIDGE = 1e-8
# mixed into the run's seed, so this step's random numbers differ from NUTS's and IMH's
_SALT = 16


@dataclass(frozen=True)
class SwitchRow:
    """A row whose most probable component changes rarely between draws: its usual
    ``component``, the share of draws elsewhere (``minority``) and how often it changes
    relative to independent draws (``switch_ratio``)."""

    row: int
    component: int
    minority: float
    switch_ratio: float


def switch_rows(assignments: np.ndarray) -> list[SwitchRow]:
    """The rows that switch component rarely, slowest first (at most :data:`MAX_ROWS`, one
    per group of rows that switch together).

    Parameters
    ----------
    assignments : ndarray of int, shape (chain, draw, n_rows)
        Every draw's most probable component of every row, labels aligned
        (:func:`bayesgmm.membership.draw_assignments`).

    Returns
    -------
    list of SwitchRow
    """
    n_chains, n_draws, _ = assignments.shape
    n_components = int(assignments.max()) + 1
    share = np.stack([(assignments == k).mean(axis=(0, 1)) for k in range(n_components)])
    usual = share.argmax(axis=0)
    home = assignments == usual
    minority = 1.0 - home.mean(axis=(0, 1))
    changes = np.abs(np.diff(home.astype(np.int8), axis=1)).sum(axis=(0, 1))
    expected = 2.0 * minority * (1.0 - minority) * (n_draws - 1) * n_chains
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected > 0, changes / expected, np.inf)
    enough = minority * n_chains * n_draws >= MIN_SIDE_DRAWS
    candidates = np.flatnonzero((minority >= MIN_MINORITY) & (ratio <= MAX_SWITCH_RATIO) & enough)
    found: list[SwitchRow] = []
    for i in candidates[np.argsort(ratio[candidates], kind="stable")]:
        if any(_same_switch(home[..., i], home[..., s.row]) for s in found):
            continue
        found.append(SwitchRow(int(i), int(usual[i]), float(minority[i]), float(ratio[i])))
        if len(found) == MAX_ROWS:
            break
    return found


def _same_switch(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two rows switch together: the draws with one away from its usual component and
    those with the other away (or, mirrored, at home) overlap in at least :data:`_SAME_SWITCH`
    of their union (Jaccard; agreement over all draws would merge any two rows that are rarely
    away)."""
    away_a = ~a
    return max(_jaccard(away_a, ~b), _jaccard(away_a, b)) >= _SAME_SWITCH


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def darts(draws: np.ndarray, homes: list[np.ndarray]) -> np.ndarray:
    """One dart per switch row: the mean of the draws away from its usual component minus the
    mean of the others.

    Parameters
    ----------
    draws : ndarray of shape (n_draws, n_dim)
        Aligned unconstrained draws.
    homes : list of bool arrays of shape (n_draws,)
        Per switch row, whether each draw has it in its usual component.

    Returns
    -------
    ndarray of shape (n_darts, n_dim)
    """
    return np.array([draws[~home].mean(axis=0) - draws[home].mean(axis=0) for home in homes])


@dataclass(frozen=True)
class Kernel:
    """A fixed HMC-with-darts kernel: the metric's Cholesky factor ``(n_dim, n_dim)`` (the
    draws' covariance), the step size, the darts ``(n_darts, n_dim)``, and the acceptance
    rate a warm-up tunes the step size for."""

    factor: np.ndarray
    step: float
    darts: np.ndarray
    target: float = TARGET_ACCEPT
    factor_t: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # the transpose, contiguous, for the compiled leapfrog
        object.__setattr__(self, "factor_t", np.ascontiguousarray(np.asarray(self.factor).T))


def _trajectory(log_p_grad, x, lp, grad, kernel, step, n_steps, rng, compiled=None):
    """One leapfrog trajectory of ``n_steps`` in coordinates whitened by ``kernel.factor``,
    Metropolis-accepted: ``(x, lp, grad, acceptance probability, moved, diverged, energy)``;
    ``energy`` is the Hamiltonian where the trajectory ends up (its end when accepted, its
    start when not). ``compiled``: :meth:`bayesgmm._logdensity.LogDensity.leapfrog`'s steps
    (else :func:`_python_leapfrog`'s over ``log_p_grad``)."""
    p = rng.standard_normal(x.shape[0])
    start_energy = -lp + 0.5 * p @ p
    if compiled is None:
        y, p_new, lp_new, grad_new = _python_leapfrog(log_p_grad, x, p, grad, kernel, step, n_steps)
    else:
        y, p_new, lp_new, grad_new = compiled(
            x, p, grad, kernel.factor, kernel.factor_t, step, n_steps
        )
    if not np.isfinite(lp_new):
        return x, lp, grad, 0.0, False, True, start_energy
    energy = -lp_new + 0.5 * p_new @ p_new
    error = energy - start_energy
    diverged = not np.isfinite(error) or error > MAX_ENERGY_ERROR
    acceptance = 0.0 if diverged else float(min(1.0, np.exp(-error)))
    if rng.uniform() < acceptance:
        return y, lp_new, grad_new, acceptance, True, diverged, energy
    return x, lp, grad, acceptance, False, diverged, start_energy


def _python_leapfrog(log_p_grad, x, p, grad, kernel, step, n_steps) -> tuple:
    """``n_steps`` leapfrog steps (position by ``step * factor @ p``, momentum by ``step *
    factor.T @ grad``, half steps at both ends) for any ``log_p_grad``: ``(y, p, lp, grad)``
    where they ended or where the log density first stopped being finite. The targets of the
    tests and rows with missing cells take this loop; complete rows take its compiled twin,
    :func:`bayesgmm._logdensity._leapfrog` (the same bits: tests/test_darting.py)."""
    y, p_new = x, p + 0.5 * step * (kernel.factor_t @ grad)
    lp_new, grad_new = -np.inf, grad
    for i in range(n_steps):
        y = y + step * (kernel.factor @ p_new)
        lp_new, grad_new = log_p_grad(y)
        if not np.isfinite(lp_new):
            break
        p_new = p_new + (step if i < n_steps - 1 else 0.5 * step) * (kernel.factor_t @ grad_new)
    return y, p_new, lp_new, grad_new


def _dart(log_p_grad, x, lp, grad, dart, rng):
    """One Metropolis proposal ``x +- dart``: ``(x, lp, grad, acceptance)``."""
    y = x + rng.choice((-1.0, 1.0)) * dart
    lp_new, grad_new = log_p_grad(y)
    acceptance = float(min(1.0, np.exp(lp_new - lp))) if np.isfinite(lp_new) else 0.0
    if rng.uniform() < acceptance:
        return y, lp_new, grad_new, acceptance
    return x, lp, grad, acceptance


class _DualAveraging:
    """Nesterov dual averaging of the log step size (Hoffman & Gelman 2014, section 3.2)."""

    def __init__(self, step: float, target: float) -> None:
        self.mu, self.target = np.log(10.0 * step), target
        self.h_bar, self.log_step_bar, self.t = 0.0, 0.0, 0
        self.step = step

    def update(self, acceptance: float) -> None:
        self.t += 1
        weight = 1.0 / (self.t + 10.0)
        self.h_bar = (1.0 - weight) * self.h_bar + weight * (self.target - acceptance)
        log_step = self.mu - np.sqrt(self.t) / 0.05 * self.h_bar
        eta = self.t**-0.75
        self.log_step_bar = eta * log_step + (1.0 - eta) * self.log_step_bar
        self.step = float(np.exp(log_step))

    @property
    def final(self) -> float:
        return float(np.exp(self.log_step_bar))


def darting_chain(
    log_p_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    kernel: Kernel,
    steps: int,
    rng: np.random.Generator,
    *,
    warmup: int = 0,
    advance: Callable[[int], None] | None = None,
    compiled: Callable | None = None,
) -> tuple[Chain, Kernel, float]:
    """``warmup`` tuning iterations (step size by dual averaging, discarded), then ``steps``
    iterations of one trajectory and one dart per switch row.

    Parameters
    ----------
    log_p_grad : callable
        The target's log density and its gradient at one point.
    start : ndarray of shape (n_dim,)
    kernel : Kernel
        The metric, darts and the step size to start from (or to keep, without warm-up).
    steps : int
    rng : numpy.random.Generator
    warmup : int
    advance : callable, optional
        Called with 1 after every iteration (a progress bar).
    compiled : callable, optional
        The target's compiled leapfrog steps
        (:meth:`bayesgmm._logdensity.LogDensity.leapfrog`: the same bits as the Python loop
        over ``log_p_grad``, without its per-step overhead or the GIL); None: the Python loop.

    Returns
    -------
    (chain, kernel, dart acceptance)
        The kept iterations (``accepted``: whether the trajectory moved the chain), the
        kernel with the tuned step size, and the darts' mean acceptance probability.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a tuning step too long: rejected
        return _iterate(log_p_grad, start, kernel, steps, rng, warmup, advance, compiled)


def _iterate(
    log_p_grad, start, kernel, steps, rng, warmup, advance, compiled
) -> tuple[Chain, Kernel, float]:
    """:func:`darting_chain`'s iterations."""
    x = np.asarray(start, dtype=np.float64)
    lp, grad = log_p_grad(x)
    tuner = _DualAveraging(kernel.step, kernel.target)
    n_dim = x.shape[0]
    out = np.empty((steps, n_dim))
    logp, energy = np.empty(steps), np.empty(steps)
    accepted, diverging = np.zeros(steps, dtype=bool), np.zeros(steps, dtype=bool)
    dart_acceptance = []
    step = kernel.step
    for it in range(warmup + steps):
        n_steps = int(np.clip(np.ceil(rng.uniform(*PATH_LENGTH) / step), 1, MAX_LEAPFROG))
        x, lp, grad, a, moved, div, e = _trajectory(
            log_p_grad, x, lp, grad, kernel, step, n_steps, rng, compiled
        )
        for dart in kernel.darts:
            x, lp, grad, d = _dart(log_p_grad, x, lp, grad, dart, rng)
            if it >= warmup:
                dart_acceptance.append(d)
        if it < warmup:
            tuner.update(a)
            step = tuner.step if it < warmup - 1 else tuner.final
        else:
            i = it - warmup
            out[i], accepted[i], logp[i], diverging[i], energy[i] = x, moved, lp, div, e
        if advance is not None:
            advance(1)
    chain = Chain(out, accepted, logp, diverging, energy)
    tuned = dataclasses.replace(kernel, step=step)
    return chain, tuned, float(np.mean(dart_acceptance)) if dart_acceptance else float("nan")


def skip_reason(
    idata: Tree, raw: Tree, run: dict, max_draws: int, gates: dict | None = None
) -> tuple[str, str]:
    """Whether the step runs after NUTS and its follow-ups: ``(failing, blocked)``.

    Parameters
    ----------
    idata : xarray.DataTree
        The finished results (modes recorded).
    raw : xarray.DataTree
        Their raw unconstrained draws.
    run : dict
        With ``draws``, the draws per chain asked for.
    max_draws : int
    gates : dict, optional
        :func:`bayesgmm._followup._gates` of ``idata``, when known.

    Returns
    -------
    (failing, blocked) : (str, str)
        ``failing`` names the R-hat and ESS gates the results fail, and their divergent
        transitions, left after the follow-ups' raised targets ("" when there is nothing
        to do: the gates are met, the chains ended in several modes, each followed up and
        reported on its own, or ``max_draws == draws``: follow-ups off); ``blocked`` says why
        the step does not run although they fail ("" when it may): a drifting chain, one
        chain, fewer than :data:`MIN_DRAWS_PER_DIM` NUTS draws per dimension (all chains
        pooled) for the metric.
    """
    if max_draws <= run["draws"]:
        return "", ""
    gates = _gates(idata) if gates is None else gates
    if gates["n_modes"] > 1:  # modes are followed up, and reported, each on its own
        return "", ""
    short = gate_shortfalls(gates)
    if gates["divergences"]:
        short.append(f"{gates['divergences']} divergences")
    failing = ", ".join(short)
    blocked = {
        "a chain drifted": gates["drifted"],
        **draws_blocks(raw, MIN_DRAWS_PER_DIM),
    }
    return failing, blocked_text(blocked)


def refine(
    raw: Tree,
    finished: tuple,
    results: Callable[[Tree], tuple],
    model,
    run: dict,
    max_draws: int,
) -> tuple[Tree, object, dict]:
    """HMC with darting moves after the NUTS follow-ups, when the chains are in one mode, fail
    R-hat or the ESS, and some rows switch component rarely, or when divergent transitions
    are left (then without darts when no row switches rarely); the result replaces NUTS's only
    when it meets the gates itself.

    Parameters
    ----------
    raw : xarray.DataTree
        The final NUTS chains' raw results (unconstrained draws).
    finished : tuple
        ``results(raw)``: the finished (relabelled) results and their label switching summary.
    results : callable
        Raw results to ``(finished results, label switching summary)``.
    model : pymc.Model
        The :func:`bayesgmm.build_model` model (its E-step kernel log density).
    run : dict
        The first run's ``draws``, ``chains``, ``seed`` and ``progressbar``.
    max_draws : int
        The most kept iterations per chain of a run; ``max_draws == draws`` turns the step
        off.

    Returns
    -------
    (results, label switching summary, attrs)
        ``attrs``: ``darting_hmc`` when the step ran or was blocked (switch rows; per run:
        iterations per chain, target acceptance, divergences, the verdict after each of its
        segments (``checks``), and per chain the step size and the acceptance of trajectories
        and of darts; seconds, kept, reason), and
        ``draws_sampler="darting_hmc"`` when its result was kept. Ctrl-C during the step keeps
        the NUTS result.
    """
    failing, blocked = skip_reason(finished[0], raw, run, max_draws)
    if not failing:
        return *finished, {}
    return _step(raw, finished, results, model, run, max_draws, (failing, blocked))


def before_follow_ups(
    raw: Tree,
    finished: tuple,
    results: Callable[[Tree], tuple],
    model,
    run: dict,
    max_draws: int,
) -> tuple[tuple | None, dict]:
    """The step right after the first NUTS run, in place of NUTS's follow-ups, where those are
    expected to fall short: the chains are in one mode, without divergences or a drifting
    chain, some rows switch component rarely, and by the first run's ESS per draw the NUTS
    extension needs more draws than ``max_draws`` leaves
    (:func:`bayesgmm._followup.extension_cut`). On 47 default fits of real data
    (``BayesianGMM(K, random_seed=s)``, 2 cores) it ran 4 times: mclust's wreath (K=4) 11.1 ->
    5.2 s, gclus ozone (K=2) 12.6 -> 6.8 s and 9.8 -> 4.5 s, the same gates met; wine (K=4)
    83.5 -> 96.3 s, not met either way. Where the extension's plan fits, as on gclus body
    girths (K=3, ESS 204-396 after the first run), darting first was as often slower (15 -> 23
    s) as faster (18 -> 14 s), so NUTS is extended there as before
    (``benchmarks/results/darting_first_20261208.txt``).

    Parameters are :func:`refine`'s.

    Returns
    -------
    (kept, attrs)
        ``kept``: the results and their label switching summary when the step ran and met
        the gates (``attrs`` are then :func:`refine`'s, with ``follow_up`` saying why NUTS was
        not followed up), or the first run's when Ctrl-C stopped the step; None when it did
        not run (``attrs`` empty) or was not kept (``attrs["darting_hmc_before_follow_ups"]``:
        its record). NUTS's follow-ups then run, and the step after them.
    """
    gates = _gates(finished[0])
    failing, blocked = skip_reason(finished[0], raw, run, max_draws, gates)
    if not failing or blocked or gates["divergences"]:
        return None, {}
    if not extension_cut(finished[0], max_draws, gates):
        return None, {}
    assignments = draw_assignments(finished[0])  # (0.8 s on wreath's 4000 draws of 1000 rows)
    if not switch_rows(assignments):
        return None, {}
    reasons = (failing, "")
    *kept, attrs = _step(raw, finished, results, model, run, max_draws, reasons, assignments)
    record = attrs["darting_hmc"]
    if record["reason"].endswith(INTERRUPTED):  # no follow-ups either: NUTS's result stays
        return finished, attrs
    if not record["kept"]:
        return None, {"darting_hmc_before_follow_ups": record}
    why = (
        f"{failing}: darting HMC before NUTS's follow-ups, as the extension would need more "
        f"than max_draws={max_draws} draws per chain by the first run's ESS per draw"
    )
    return tuple(kept), {"follow_up": [why], **attrs}


def _step(raw, finished, results, model, run, max_draws, reasons, assignments=None) -> tuple:
    """:func:`refine` on results that fail the gates (``reasons``: :func:`skip_reason`'s
    ``(failing, blocked)``; ``assignments``: their :func:`draw_assignments`, when known)."""
    failing, blocked = reasons
    record: dict = {"kept": False}
    if blocked:
        record["reason"] = f"{failing} after NUTS; not run: {blocked}"
        return *finished, {"darting_hmc": record}
    if assignments is None:
        assignments = draw_assignments(finished[0])
    rows = switch_rows(assignments)
    if not rows and not _divergences(finished[0]):
        record["reason"] = f"{failing} after NUTS; not run: no row switches component rarely"
        return *finished, {"darting_hmc": record}
    record["switch_rows"] = [r.row for r in rows]
    homes = _homes(assignments, rows)
    kept = attempt(
        lambda: _runs(raw, finished[0], homes, rows, results, model, run, max_draws, record),
        record,
        failing,
        "darting HMC",
    )
    if kept is None:
        return *finished, {"darting_hmc": record}
    return *kept, {"darting_hmc": record, "draws_sampler": "darting_hmc"}


def _aligned(raw: Tree, idata: Tree, density) -> np.ndarray:
    """The raw unconstrained draws ``(chain, draw, n_dim)`` with the labels of the finished
    results (``sample_stats["label_permutation"]``)."""
    perm = get_group(idata, "sample_stats")["label_permutation"]
    return density.permute(_flat(raw), perm.transpose("chain", "draw", "component").values)


def _homes(assignments: np.ndarray, rows: list[SwitchRow]) -> list[np.ndarray]:
    """Per switch row, whether each draw ``(chain, draw)`` has it in its usual component."""
    return [assignments[..., r.row] == r.component for r in rows]


def _kernel(draws: np.ndarray, homes: list[np.ndarray], step: float, before=None) -> Kernel:
    """The metric and the darts of aligned draws ``(chain, draw, n_dim)``; ``homes`` per
    switch row ``(chain, draw)``.

    The metric is the draws' covariance within the groups of :func:`_within_covariance`
    (Ledoit-Wolf shrinkage of it halved the step size on breast cancer, 15 columns, and left
    K=2 unconverged). A switch row whose draws all sit on one side keeps its dart from
    ``before`` (the first kernel has every row on both sides: :func:`switch_rows` asks for
    :data:`MIN_SIDE_DRAWS`, so the darts stay one per row)."""
    pooled = draws.reshape(-1, draws.shape[2])
    flat = [h.reshape(-1) for h in homes]
    covariance = _within_covariance(pooled, flat)
    ridge = _RIDGE * np.diag(covariance).mean()
    factor = np.linalg.cholesky(covariance + ridge * np.eye(len(covariance)))
    new = [darts(pooled, [h])[0] if 0 < h.sum() < h.size else None for h in flat]
    old = before.darts if before is not None else [None] * len(new)
    chosen = [d if d is not None else o for d, o in zip(new, old, strict=True)]
    kept = [d for d in chosen if d is not None]
    return Kernel(factor, step, np.array(kept) if kept else np.zeros((0, len(covariance))))


def _within_covariance(draws: np.ndarray, homes: list[np.ndarray]) -> np.ndarray:
    """The draws' covariance within the groups of draws that have every switch row on the
    same side: the darts move between the groups, trajectories within one (the covariance of
    all the draws spans the valleys between them, where steps that long diverged: breast
    cancer, 10 columns, K=3, 23 divergent trajectories). Without switch rows, one group: the
    draws' covariance."""
    sides = np.stack(homes, axis=1) if homes else np.zeros((len(draws), 1), dtype=bool)
    groups = np.unique(sides, axis=0, return_inverse=True)[1].reshape(-1)
    centred = draws.copy()
    for g in np.unique(groups):
        centred[groups == g] -= draws[groups == g].mean(axis=0)
    return centred.T @ centred / (len(draws) - len(np.unique(groups)))


def _runs(raw, idata, homes, rows, results, model, run, max_draws, record) -> tuple:
    """The first run and, when it fails the gates but is near them, a second from where it
    ended, its metric and darts refitted to the first run's draws: the finished results kept
    and their verdict.

    The second run is sized from the first's ESS and R-hat (:func:`_second_length`), goes in
    segments judged as they end (:func:`_run`) and runs only when the first is near the gates
    (:func:`_hopeless`). It is appended to the first (kept alone when only it meets the gates:
    the first still settling), or, when the first had a divergent trajectory, replaces it at
    :data:`RAISED_TARGET_ACCEPT` (joined chains would keep the divergence). An appended run
    with a divergent trajectory is drawn again once, from the same points, at
    :data:`RAISED_TARGET_ACCEPT` (:func:`_continue`).
    """
    density = log_density_for(model)
    data = density.rows(*observed_rows(model))
    target = (lambda x: density(x, data), density.leapfrog(data))
    draws = _aligned(raw, idata, density)
    seeds = np.random.SeedSequence([int(run["seed"]), _SALT]).spawn(3)
    kernel = _kernel(draws, homes, float(draws.shape[2]) ** -0.25)
    first = _run(target, draws[:, -1], kernel, (int(run["draws"]),) * 2, seeds[0], run, record)
    finished = results(raw_tree(first[0]))
    verdict = _judge(finished[0])
    diverged = bool(verdict[2]["divergences"])
    lengths = _second_length(verdict[2], int(run["draws"]), max_draws, diverged)
    if verdict[0] or lengths[1] < _MIN_EXTRA:
        return finished, verdict
    if hopeless := _hopeless(verdict[2], int(run["draws"]) * len(first[0])):
        record["second_run"] = f"not run: the first is far from the gates ({hopeless})"
        return finished, verdict
    fresh = _aligned(raw_tree(first[0]), finished[0], density)
    step = float(np.median([k.step for k in first[1]]))
    kernel = _kernel(fresh, _homes(draw_assignments(finished[0]), rows), step, before=kernel)
    if diverged:
        kernel = dataclasses.replace(kernel, target=RAISED_TARGET_ACCEPT)
        alone = functools.partial(_judged, results)
        more = _run(target, fresh[:, -1], kernel, lengths, seeds[1], run, record, alone)
        record["first_run_dropped"] = True
        return more[2] or alone(more[0])
    joined = functools.partial(_judged_after, first[0], results)
    more = _continue(target, fresh[:, -1], kernel, lengths, seeds[1:], run, record, joined)
    return _appended(first[0], more, results, record)


def _judged(results, chains: list[Chain]) -> tuple:
    """The finished results of ``chains`` and their :func:`_judge` verdict."""
    finished = results(raw_tree(chains))
    return finished, _judge(finished[0])


def _judged_after(first: list[Chain], results, more: list[Chain]) -> tuple:
    """:func:`_judged` of the chains ``first`` with ``more`` appended."""
    return _judged(results, [_joined(a, b) for a, b in zip(first, more, strict=True)])


def _hopeless(gates: dict, iterations: int) -> str:
    """Why a failing first run is too far from the gates for a second to be worth its time
    ("" when it is not): R-hat above :data:`MILD_R_HAT` (chains in regions they do not cross,
    which longer chains of the same kernel seldom join), or divergent trajectories in more than
    :data:`MAX_DIVERGENT_SHARE` of the iterations (steps too long for much of the posterior:
    mlbench's Glass, K=3, 79 in 4000, and a second run at 0.95 had 109 in 16000 after 280 s),
    several modes or a drifting chain (what the step does not join)."""
    reasons = []
    if not gates["r_hat"] <= MILD_R_HAT:
        reasons.append(f"R-hat {gates['r_hat']:.3f} above {MILD_R_HAT}")
    if gates["n_modes"] > 1:
        reasons.append(f"{gates['n_modes']} modes")
    if gates["drifted"]:
        reasons.append("a chain drifted")
    if gates["divergences"] > MAX_DIVERGENT_SHARE * iterations:
        reasons.append(f"{gates['divergences']} divergent trajectories in {iterations}")
    return ", ".join(reasons)


def _continue(target, starts, kernel, lengths, seeds, run, record, judge) -> tuple:
    """The appended run's chains from ``starts`` (:func:`_run` in segments, ``judge``
    judging them joined to the first run's): ``(chains, judged)``, ``judged`` None when a
    trajectory diverged. Drawn again once at :data:`RAISED_TARGET_ACCEPT` when one did (its
    step size, tuned on a region the first run had not reached, too long there: MASS
    painters, K=2, and carData's Davis, K=2, one divergent trajectory in 8000-9000 with every
    other gate met). A run already at that target is not drawn again."""
    more, _, judged = _run(target, starts, kernel, lengths, seeds[0], run, record, judge)
    if not _diverged(more) or kernel.target >= RAISED_TARGET_ACCEPT:
        return more, judged
    record["second_run_redrawn"] = True
    raised = dataclasses.replace(kernel, target=RAISED_TARGET_ACCEPT)
    more, _, judged = _run(target, starts, raised, lengths, seeds[1], run, record, judge)
    return more, judged


def _diverged(chains: list[Chain]) -> bool:
    return any(c.diverging.any() for c in chains)


def _appended(first: list, more: tuple, results, record: dict) -> tuple:
    """The first run's chains with ``more`` (``(chains, judged)`` of :func:`_continue`)
    appended, finished and judged; ``more`` alone when only it meets the gates (the first
    still settling)."""
    joined, verdict = more[1] or _judged_after(first, results, more[0])
    if not verdict[0]:
        alone = _judged(results, more[0])
        if alone[1][0]:
            record["first_run_dropped"] = True
            return alone
    return joined, verdict


def _second_length(gates: dict, steps: int, max_draws: int, replace: bool) -> tuple[int, int]:
    """Iterations per chain of the second run after a first of ``steps`` with these gates:
    ``(segment, most)``. ``segment``: what its ESS per iteration says the gates need
    (:data:`ESS_MARGIN`), at least ``steps``; ``most``: :data:`R_HAT_GROWTH` times ``steps``
    when R-hat fails (its noise shrinks with the chains' length) and that is more, else
    ``segment``; both within ``max_draws`` per chain in all (the second run's alone when it
    ``replace``s the first). The run goes on in segments of ``segment`` until it meets the
    gates, a trajectory diverges, or it reaches ``most`` (:func:`_run`); only the chains it
    makes are judged there (joined to the first run's, or alone when they replace it)."""
    wanted = draws_for_gates(steps, gates["ess"], ESS_MARGIN) - (0 if replace else steps)
    room = max_draws if replace else max_draws - steps
    if not np.isfinite(wanted):  # no ESS to plan from (no scalar that varied)
        wanted = steps
    segment = int(min(max(np.ceil(wanted), steps), room))
    if gates["r_hat"] <= GATES["r_hat"]:
        return segment, segment
    return segment, int(min(max(segment, R_HAT_GROWTH * steps), room))


def _judge(idata: Tree) -> tuple[bool, str, dict]:
    """:func:`bayesgmm._independence._verdict`'s gates, and no divergent trajectory."""
    passed, text, gates = _verdict(idata)
    if gates["divergences"]:
        passed = False
        text += f" ({gates['divergences']} divergences)"
    return passed, text, gates


def _run(target, starts, kernel, lengths, seed, run, record, judge=None) -> tuple:
    """One run of :func:`_chains` on ``target`` (``(log_p_grad, compiled leapfrog or None)``),
    recorded: ``(chains, tuned kernels, judged)``.

    ``lengths``: ``(segment, most)`` iterations per chain. The run goes in segments of
    ``segment`` iterations, each chain going on where it stopped with its tuned step size and
    its random numbers (the chains are those of one run of the same length: tuned once, at the
    start), until ``judge`` (chains to ``(finished results, verdict)``) says they meet the gates,
    a trajectory diverges, or ``most`` iterations ran; ``judged``: ``judge``'s last answer,
    on the chains returned (None without ``judge`` or after a divergent trajectory). Each
    verdict is recorded (``checks``): the gates judged as the run goes, like the NUTS
    extensions', may stop it early by chance, as any rule to stop when the gates are met does.
    """
    title = _title(record)
    segment, most = lengths
    rngs = [np.random.default_rng(s) for s in seed.spawn(len(starts))]
    kernels, chains, rates, judged, checks = [kernel] * len(starts), None, [], None, []
    warmup, steps = WARMUP, segment
    while True:
        more = " more" if chains else ""
        announce(run, f"{title}: {steps}{more} iterations per chain")
        new, kernels, new_rates = _chains(target, starts, kernels, steps, rngs, warmup, run, title)
        chains = new if chains is None else [_joined(*p) for p in zip(chains, new, strict=True)]
        rates.append((steps, new_rates))
        if judge is None or _diverged(new):
            judged = None
            break
        judged = judge(chains)
        checks.append(judged[1][1])
        done = len(chains[0].draws)
        if judged[1][0] or done >= most:
            break
        starts, warmup, steps = [c.draws[-1] for c in chains], 0, min(segment, most - done)
    _record(record, chains, kernels, rates, kernel.target, checks)
    return chains, kernels, judged


def _record(record, chains, kernels, rates, target, checks) -> None:
    """A run's entry in each of ``record``'s lists (``rates``: ``(iterations, per-chain dart
    acceptance)`` of each segment, averaged over the iterations)."""
    lengths = np.array([n for n, _ in rates], dtype=float)
    per_chain = np.array([r for _, r in rates], dtype=float).T @ lengths / lengths.sum()
    record.setdefault("steps_per_chain", []).append(len(chains[0].draws))
    record.setdefault("target_accept", []).append(target)
    record.setdefault("step_size", []).append([round(k.step, 4) for k in kernels])
    record.setdefault("acceptance", []).append([round(float(c.accepted.mean()), 3) for c in chains])
    shown = [round(float(r), 3) if np.isfinite(r) else None for r in per_chain]
    record.setdefault("dart_acceptance", []).append(shown)
    record.setdefault("divergences", []).append(int(sum(c.diverging.sum() for c in chains)))
    record.setdefault("checks", []).append(checks)


def _title(record: dict) -> str:
    """What the step runs, for the progress line and bar."""
    rows = record.get("switch_rows", [])
    return f"HMC with darts (rows {rows})" if rows else "HMC without darts (no switch row)"


def _joined(a: Chain, b: Chain) -> Chain:
    """Chain ``b`` appended to chain ``a``."""
    return Chain(
        *(np.concatenate([getattr(a, f), getattr(b, f)]) for f in _CHAIN_FIELDS),
    )


def _cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _chains(target, starts, kernels, steps, rngs, warmup, run, title) -> tuple[list, list, list]:
    """One :func:`darting_chain` per start, kernel and random generator, side by side on
    threads (the log density's kernels release the GIL), with ``warmup`` tuning iterations
    each; Ctrl-C stops them all within an iteration."""
    stop = threading.Event()
    total = len(starts) * (warmup + steps)
    with progress_bar(total, title, enabled=bool(run.get("progressbar"))) as bar:

        def advance(n: int) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            bar.advance(n)

        workers = min(len(starts), _cores())
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(
                    darting_chain,
                    target[0],
                    start,
                    kernel,
                    steps,
                    rng,
                    warmup=warmup,
                    advance=advance,
                    compiled=target[1],
                )
                for start, kernel, rng in zip(starts, kernels, rngs, strict=True)
            ]
            try:
                done = [f.result() for f in futures]
            except BaseException:
                stop.set()
                raise
    return [d[0] for d in done], [d[1] for d in done], [d[2] for d in done]
