"""Chains that leave the posterior mode they were whitened at, and their second run.

NUTS is whitened by the Laplace approximation at the posterior mode found from EM
(:mod:`bayesgmm._precondition`). Where that mode holds little of the posterior (an overfitted
mixture: with a Dirichlet concentration below half a component's parameter count, the posterior
prefers to empty surplus components, Rousseau & Mengersen 2011), chains leave it during tuning
or drawing for a region the curvature at the mode says nothing about: a near-empty component's
parameters spread to their prior, fifty times wider than the metric expects, and NUTS
random-walks there (benchmarks/results/bench_mcmc_drift.txt: MASS crabs, K = 4).

Under the Laplace approximation ``log p`` of a draw is ``log p(mode) - chi2_n / 2`` (mean
``n / 2`` below the mode, sd ``sqrt(n / 2)``, ``n`` the unconstrained dimension).
:func:`left_mode` flags the chains whose mean ``log p`` over the second half of their kept draws
lies more than :data:`LEFT_MODE_SDS` of those sds below that mean. :func:`restart_points` then
gives each chain a new start and metric from its own draws (their mean and covariance, in the
unconstrained space), so a second run tunes and draws where the chain actually went.

A chain that left costs about ten times the gradients per draw of one at the mode (MASS crabs,
K = 4: about 900 leapfrog steps against 100, the curvature at the mode being no metric for the
region of near-empty components; whitened by draws from that region, about 80), and chains
leave at random times (crabs: from early in tuning to after 800 draws), so letting the first
run finish cost most of its time. :func:`stop_when_one_left` therefore watches the first run
and stops it :data:`WATCH_DRAWS` draws after the first draw at which any chain's latest
:data:`WATCH_DRAWS` draws lie below the mode's typical set and :data:`LEFT_APART_SDS` below the
highest other chain's, when they still lie there then (:func:`first_crossings`; a chain whose
``log p`` only dipped is back by then), as soon as every chain has drawn that far: a
point fixed by the draws alone, not by when the watcher looked, so that a seeded run stops, and
continues, alike in every process (each chain's draws depend only on the seed).
:func:`run_again_if_left` then weighs the region the chains went to against the one the others
stayed in (:func:`region_log_mass`: mean ``log p`` plus the entropy of a Gaussian fitted to
each chain's latest draws; :func:`move_all`). When it holds clearly more mass
(:data:`LEFT_MASS_MARGIN` nats: an overfitted mixture), every chain starts again, alike, at
distinct draws of the chains that left, whitened by those draws' covariance
(:func:`leaver_restarts`): where the chain that left went, with a metric that fits there
(benchmarks/results/bench_mcmc_nuts60.txt). Otherwise the chains that left start again from
their draws and each chain that stayed from its own latest draw, whitened as before, so that a
mode at EM's optimum that holds real mass keeps its chains and is reported with its weight
(:mod:`bayesgmm.modes`) rather than dropped. A first run in which no chain crossed is judged
on the second half of each chain's draws (:func:`depth`), by the same rule: chains that sit
together below the Laplace line have not left it, the line's prediction is off (gclus body
girths, K = 3, 272 dimensions: all four chains 5-6 sds below it, a posterior far from
Gaussian), and their draws are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from ._idata import Tree, get_group, new_tree, replace_group, without_warmup
from ._precondition import Laplace

__all__ = [
    "LEFT_APART_SDS",
    "LEFT_LEVEL_SDS",
    "LEFT_MASS_MARGIN",
    "LEFT_MODE_SDS",
    "MAX_STAGES",
    "RERUN_TUNE",
    "WATCH_DRAWS",
    "below_others",
    "chain_log_masses",
    "chain_modes",
    "complete",
    "concat_chains",
    "depth",
    "first_crossings",
    "first_draws",
    "laplace_log_mass",
    "latest_depth",
    "leaver_restarts",
    "left_mode",
    "move_all",
    "pooled_metric",
    "region_log_mass",
    "replace_chains",
    "restart_points",
    "run_again_if_left",
    "run_parallel",
    "run_watched",
    "stop_when_one_left",
]

# chains' mean log p this many sds of chi2_n / 2 below the Laplace mean count as having left
# (benchmarks/results/bench_mcmc_drift.txt: healthy chains within ..., crabs' drifted ones ...)
LEFT_MODE_SDS = 3.0
# tuning steps of the second run, whose metric comes from the chains' own draws
RERUN_TUNE = 300
# a chain of the first run counts as having left only when its latest draws also lie this many
# sds below the highest other chain's (at the same iteration; chains that leave together all
# count): the Laplace line is a prediction, and on some posteriors every chain sits near it
# (MASS Pima.tr K=3, 107 dimensions: all four chains 2.0-3.3 sds below it, within 1.6 of each
# other, so one crossed it by chance), while a chain that left sits apart (MASS crabs K=4:
# 2.3-3 sds below a chain that stayed; a level measured from draws, as LEFT_LEVEL_SDS, so a
# margin below LEFT_MODE_SDS)
LEFT_APART_SDS = 2.0
# the first run is judged while it goes on on each chain's latest this many draws
WATCH_DRAWS = 100
# second runs started from the draws of chains that left; all but the last are watched too
# (crabs K = 4 empties a component, then another: each step needs its own metric)
MAX_STAGES = 3
# a chain of such a run counts as having left when its latest draws lie this many sds below
# the pool's mean log p: a level measured from draws, not predicted by the Laplace
# approximation, so a smaller margin (window means vary by about 0.2 sd); crabs K = 4's second
# step down (the second near-empty component) is about 2 sds below the first
LEFT_LEVEL_SDS = 1.5
# every chain moves to the region of the chains that left only when that region's log mass
# (:func:`region_log_mass`) exceeds that of every region a chain stayed in by more than this
# many nats (a mass ratio of e^5, about 150); else each chain runs again in its own region
LEFT_MASS_MARGIN = 5.0
_POLL_SECONDS = 2.0


def depth(logp: np.ndarray, modes: Sequence[float], n_dim: int) -> np.ndarray:
    """How far below the Laplace approximation's typical set each chain sits: the mean
    ``log p`` of the second half of its finished draws minus ``log p(mode) - n_dim / 2``, in sds of
    ``chi2_n / 2`` (about 0 for draws of the approximation itself).

    Parameters
    ----------
    logp : ndarray of shape (n_chains, n_draws)
        The log posterior density of each kept draw (nutpie's ``logp`` statistic).
    modes : sequence of float
        Each chain's log density at the mode it was whitened at.
    n_dim : int
        Length of the unconstrained vector.

    Returns
    -------
    ndarray of shape (n_chains,)

    Examples
    --------
    >>> depth(np.array([[-14.0] * 10, [-34.0] * 10]), [-10.0, -10.0], 8).tolist()
    [0.0, -10.0]
    """
    halves = [_second_half(chain) for chain in np.asarray(logp, dtype=float)]
    means = np.array([half.mean() if half.size else np.nan for half in halves])
    return _sds_from_typical(means, modes, n_dim)


def _second_half(values: np.ndarray) -> np.ndarray:
    """The second half of a chain's finished draws (nutpie pads a chain stopped early with
    NaN after its last draw), along the first axis."""
    finished = values[np.all(np.isfinite(values.reshape(len(values), -1)), axis=1)]
    return finished[len(finished) // 2 :]


def latest_depth(logp: np.ndarray, modes: Sequence[float], n_dim: int, window: int) -> np.ndarray:
    """:func:`depth` of each chain's latest ``window`` finished draws (NaN for a chain with
    fewer), the same parameters otherwise.

    Examples
    --------
    >>> logp = np.array([[-14.0] * 10 + [-34.0] * 4, [-14.0] * 14])
    >>> latest_depth(logp, [-10.0, -10.0], 8, 4).tolist()
    [-10.0, 0.0]
    >>> bool(np.isnan(latest_depth(logp, [-10.0, -10.0], 8, 20)).all())
    True
    """
    out = []
    for chain in np.asarray(logp, dtype=float):
        finished = chain[np.isfinite(chain)]
        out.append(finished[-window:].mean() if finished.size >= window else np.nan)
    return _sds_from_typical(np.array(out), modes, n_dim)


def _sds_from_typical(mean_logp, modes, n_dim: int) -> np.ndarray:
    """Mean ``log p`` minus the Laplace typical set's ``log p(mode) - n_dim / 2``, in sds of
    ``chi2_n / 2`` (``sqrt(n_dim / 2)``)."""
    expected = np.asarray(modes, dtype=float) - 0.5 * n_dim
    return (np.asarray(mean_logp, dtype=float) - expected) / np.sqrt(0.5 * n_dim)


def first_crossings(
    logp: np.ndarray,
    levels: Sequence[float],
    n_dim: int,
    sds: Sequence[float],
    window: int,
    apart: float | None = None,
    confirm: int = 0,
) -> np.ndarray:
    """For each chain, the index (among its finished draws) of the last draw of the first
    ``window`` draws in a row whose mean ``log p`` lies ``sds`` sds below the typical set of
    its level (:func:`latest_depth` of the draws up to there), or -1 when none does yet.

    Parameters
    ----------
    logp : ndarray of shape (n_chains, n_draws)
        Each chain's ``log p`` in the order drawn, NaN for draws not finished.
    levels : sequence of float
        Each chain's log density at the mode (or level) it is judged against.
    n_dim : int
        Length of the unconstrained vector.
    sds : sequence of float
        Each chain's margin, in sds of ``chi2_n / 2``.
    window : int
    apart : float, optional
        Count a window only where it also lies this many sds below the highest other chain's
        window ending at the same draw (:func:`below_others`), judged over the draws every
        chain has finished: a chain that left is apart from the others, and chains that sit
        together near the line have not left it.
    confirm : int
        Count a window only where the window ending ``confirm`` draws later lies below too
        and, with ``apart``, ``apart`` sds below the highest other chain's window at the first
        (:func:`_confirmed`): a chain that left stays there, while the window means of a chain
        that mixes slowly in ``log p`` dip and come back (gclus body girths, K = 3, 272
        dimensions: four chains together 5-6 sds below the Laplace line, one window 2 sds
        below the others, back within 100 draws).

    Returns
    -------
    ndarray of int, shape (n_chains,)

    Examples
    --------
    >>> logp = np.array([[-14.0] * 6 + [-34.0] * 6, [-14.0] * 12])
    >>> first_crossings(logp, [-10.0, -10.0], 8, [3.0, 3.0], 4).tolist()
    [7, -1]
    >>> together = np.array([[-22.0] * 12, [-21.0] * 12])  # both below, neither apart
    >>> first_crossings(together, [-10.0, -10.0], 8, [3.0, 3.0], 4, apart=1.5).tolist()
    [-1, -1]
    >>> dipped = np.array([[-14.0] * 4 + [-34.0] * 2 + [-14.0] * 10, [-14.0] * 16])
    >>> first_crossings(dipped, [-10.0, -10.0], 8, [3.0, 3.0], 4).tolist()
    [5, -1]
    >>> first_crossings(dipped, [-10.0, -10.0], 8, [3.0, 3.0], 4, confirm=4).tolist()
    [-1, -1]
    >>> stays = np.array([[-14.0] * 4 + [-34.0] * 12, [-14.0] * 16])
    >>> first_crossings(stays, [-10.0, -10.0], 8, [3.0, 3.0], 4, confirm=4).tolist()
    [5, -1]
    """
    logp = np.asarray(logp, dtype=float)
    out = np.full(len(logp), -1)
    if apart is not None:  # judged where every chain has drawn, so chains compare like with like
        logp = logp[:, : int(np.isfinite(logp).sum(axis=1).min())]
    depths = [
        _sds_from_typical(_window_means(chain[np.isfinite(chain)], window), levels[c], n_dim)
        for c, chain in enumerate(logp)
    ]
    below = _below(depths, sds, apart)
    if confirm:
        below = _confirmed(depths, below, sds, apart, confirm)
    for c, below_c in enumerate(below):
        hits = np.flatnonzero(below_c)
        if hits.size:
            out[c] = hits[0] + window - 1
    return out


def _window_means(values: np.ndarray, window: int) -> np.ndarray:
    """Means of every ``window`` consecutive values (none when there are fewer)."""
    if values.size < window:
        return np.empty(0)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    return (sums[window:] - sums[:-window]) / window


def _below(depths: list[np.ndarray], sds: Sequence[float], apart: float | None) -> list:
    """Where each chain's depths lie ``sds`` below its line and, with ``apart``, also
    ``apart`` sds below the highest other chain's depth at the same position
    (:func:`below_others`)."""
    below = [d < -margin for d, margin in zip(depths, sds, strict=True)]
    if apart is None or not below or not below[0].size:
        return below
    return list(np.array(below) & below_others(np.array(depths), apart))


def below_others(depths: np.ndarray, sds: float) -> np.ndarray:
    """Whether each chain's depth lies ``sds`` below the highest other chain's (so chains that
    went down together all count): ``depths`` of shape ``(n_chains, ...)``, compared position
    by position. NaN (not drawn yet) is below nothing and the others' NaN are left out (none
    known: below nothing); a chain alone has no other to lie above it (True).

    Examples
    --------
    >>> below_others(np.array([-5.0, -2.5, -2.0]), 1.5).tolist()
    [True, False, False]
    >>> below_others(np.array([-5.0, -4.5, -2.0]), 1.5).tolist()  # two went down together
    [True, True, False]
    >>> below_others(np.array([[-5.0], [np.nan]]), 1.5).tolist()
    [[False], [False]]
    >>> below_others(np.array([-5.0]), 1.5).tolist()
    [True]
    """
    depths = np.asarray(depths, dtype=float)
    if len(depths) < 2:
        return np.ones(depths.shape, dtype=bool)
    return depths < _highest_others(depths) - sds


def _highest_others(depths: np.ndarray) -> np.ndarray:
    """Each chain's highest other chain's depth at the same position (``depths`` of shape
    ``(n_chains, ...)``, at least two chains; NaN left out, -inf where none is known)."""
    depths = np.where(np.isnan(depths), -np.inf, np.asarray(depths, dtype=float))
    return np.stack([np.delete(depths, c, axis=0).max(axis=0) for c in range(len(depths))])


def _confirmed(
    depths: list[np.ndarray], below: list, sds: Sequence[float], apart: float | None, confirm: int
) -> list:
    """Where a chain's window below its line (and apart: ``below``) is followed, ``confirm``
    positions later, by one still below its line and, with ``apart``, still ``apart`` below
    the highest other chain's depth at the first: a chain that left stays where it went, also
    when other chains follow it down (MASS crabs, K = 4, seed 3: all four leave within 120
    iterations), while one whose ``log p`` dipped comes back to the others."""
    best = _highest_others(np.array(depths)) if apart is not None and len(depths) > 1 else None
    out = []
    for c, (d, b, margin) in enumerate(zip(depths, below, sds, strict=True)):
        later = d[confirm:] < -margin
        if best is not None:
            later &= d[confirm:] < best[c, : len(later)] - apart
        out.append(b[: len(later)] & later)
    return out


def _stop_point(lengths: np.ndarray, crossings: np.ndarray, finished: bool) -> int | None:
    """How many draws of every chain a watched run keeps: up to the earliest crossing
    (:func:`first_crossings`), decided once every chain has drawn that far (so that no chain
    can still cross earlier) or the run has finished; None while undecided or none crossed."""
    hits = crossings[crossings >= 0]
    if hits.size == 0:
        return None
    keep = int(hits.min()) + 1
    return keep if finished or bool(np.all(lengths >= keep)) else None


def first_draws(tree: Tree, keep: int) -> Tree:
    """``tree`` cut to every chain's first ``keep`` iterations, tuning (``warmup_`` groups, if
    kept, all of whose draws come first) then draws: a stop during tuning keeps no draws."""
    out = tree.copy()
    warm = tree["warmup_sample_stats"].sizes["draw"] if "warmup_sample_stats" in tree else 0
    for name, node in tree.children.items():
        data = node.to_dataset()
        if "draw" in data.dims:
            n = min(keep, warm) if name.startswith("warmup") else max(keep - warm, 0)
            replace_group(out, name, data.isel(draw=slice(0, n)))
    return out


def stop_when_one_left(
    sampler, log_density: float, n_dim: int, window: int = WATCH_DRAWS, settle: int = WATCH_DRAWS
) -> Tree:
    """Wait for nutpie's running (non-blocking) sampler, stopping it ``settle`` iterations
    after the first at which any chain's latest ``window`` iterations lie
    :data:`LEFT_MODE_SDS` sds below the typical set of the mode its chains were whitened at
    and :data:`LEFT_APART_SDS` below the highest other chain's latest ``window`` iterations,
    when they still lie there ``settle`` iterations later (:func:`first_crossings` with
    ``confirm=settle``), once every chain has come that far.

    Tuning draws count (the run keeps them: ``save_warmup``): chains that leave a poor mode
    often do so early in tuning, and every tuning step after costs as much as a draw (crabs
    K=4: 500-900 leapfrog steps an iteration from tuning step 100 on). The ``settle``
    iterations after the crossing put the latest draws, which the chains start again from
    (:func:`run_again_if_left`), where the chain went rather than on its way there: stopped at
    the crossing itself, crabs K=4's restarts drew from that transit, and the runs after took
    2.6 times as long, unconverged (seed 1).

    Parameters
    ----------
    sampler
        nutpie's background sampler (``nutpie.sample(..., blocking=False)``), waited for with
        ``wait(timeout=...)`` (TimeoutError while it runs) and read about every
        ``_POLL_SECONDS`` (:func:`running_logp`; ``inspect()`` at the stop).
    log_density : float
        The log density at the mode.
    n_dim : int
        Length of the unconstrained vector.
    window : int
    settle : int
        Iterations kept after the crossing (a run that ends first is returned whole).

    Returns
    -------
    xarray.DataTree
        The finished run's results without its tuning groups when no chain left, or when
        the run ended before the stop (as an unwatched run's), else every chain's iterations
        up to the stop (:func:`first_draws`: tuning groups kept, draws possibly none), the
        same whenever the run was looked at or stopped, and also when it finished before the
        watcher saw the crossing.
    """

    def measure(logp: np.ndarray) -> np.ndarray:
        chains = len(logp)
        margins = [LEFT_MODE_SDS] * chains
        crossings = first_crossings(
            logp, [log_density] * chains, n_dim, margins, window, LEFT_APART_SDS, settle
        )
        return np.where(crossings >= 0, crossings + settle, -1)

    (trace,), keep = _watched([sampler], measure)
    if keep is None or keep > np.isfinite(_arrays([trace])[1]).sum(axis=1).min():
        return without_warmup(trace)  # no crossing, or the run ended before the stop
    return first_draws(trace, keep)


def leaver_restarts(
    flat: np.ndarray, logp: np.ndarray, leavers: Sequence[int], window: int, n_chains: int
) -> list[Laplace]:
    """Starts and one shared whitening for ``n_chains`` chains, from the latest ``window``
    finished draws of the chains that left (unconstrained, ``(n_chains, n_draws, n_dim)``,
    and their ``logp``, ``(n_chains, n_draws)``; NaN after a chain's last draw).

    The draws are pooled; the factor is the Cholesky factor of their covariance (shrunk
    towards its diagonal as in :func:`restart_points`), the same for every chain so that all
    are tuned alike; the starts are draws evenly spaced through the pool (distinct points of
    the region the chains went to). ``kind`` is ``"draws"``; ``log_density`` is the pool's
    mean ``log p`` plus ``n_dim / 2``, so that :func:`latest_depth` measures later draws
    against the pool's level.
    """
    flat, logp = np.asarray(flat, dtype=float), np.asarray(logp, dtype=float)
    pool, levels = zip(*(_latest(flat[c], logp[c], window) for c in leavers), strict=True)
    draws = np.concatenate(pool)
    shared = pooled_metric(draws)
    level = float(np.concatenate(levels).mean()) + 0.5 * draws.shape[1]
    picks = np.linspace(0, len(draws) - 1, n_chains).round().astype(int)
    return [
        Laplace(draws[i].copy(), shared.factor, "draws", level, shared.condition, 0) for i in picks
    ]


def _latest(flat: np.ndarray, logp: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """One chain's latest ``window`` finished draws ``(n, n_dim)`` and their ``logp``."""
    finished = np.all(np.isfinite(flat), axis=1) & np.isfinite(logp)
    return flat[finished][-window:], logp[finished][-window:]


def region_log_mass(draws: np.ndarray, logp: np.ndarray) -> float:
    """Log of the posterior mass of the region that ``draws`` sample, from a Gaussian fitted
    to them: ``mean(log p) + 0.5 * log det(2 pi e Sigma)`` (the mean log density plus the
    fitted Gaussian's entropy; exact for a Gaussian region, ``log p`` unnormalised).

    ``log det Sigma`` is that of the draws' sample covariance less its expected bias for
    ``n`` independent Gaussian draws (``E log det S = log det Sigma + sum_i psi((nu - i + 1) /
    2) + d log(2 / nu)``, ``nu = n - 1``, Wishart), so that estimates from equally many draws
    of regions of different shape compare. Autocorrelated draws understate the spread (so
    the mass) of the slower region; a non-Gaussian region's entropy is below the Gaussian's
    (so its mass overstated): :data:`LEFT_MASS_MARGIN` leaves room for both.

    Parameters
    ----------
    draws : ndarray of shape (n, n_dim)
        Unconstrained draws of one region (e.g. a chain's latest).
    logp : ndarray of shape (n,)
        Their log posterior density.

    Returns
    -------
    float
        NaN when there are too few draws for a full-rank covariance (``n <= n_dim + 1``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(4000, 2)) * [1.0, 3.0]
    >>> logp = 7.0 - 0.5 * ((x / [1.0, 3.0]) ** 2).sum(axis=1)  # log mass 7 + log(2 pi 3)
    >>> bool(abs(region_log_mass(x, logp) - (7.0 + np.log(6 * np.pi))) < 0.05)
    True
    """
    from scipy.special import digamma

    n, n_dim = draws.shape
    nu = n - 1
    if nu <= n_dim:
        return np.nan
    sign, logdet = np.linalg.slogdet(np.cov(draws.T).reshape(n_dim, n_dim))
    if sign <= 0:
        return np.nan
    bias = digamma(0.5 * (nu - np.arange(n_dim))).sum() + n_dim * np.log(2.0 / nu)
    entropy = 0.5 * (logdet - bias) + 0.5 * n_dim * np.log(2.0 * np.pi * np.e)
    return float(np.mean(logp) + entropy)


def laplace_log_mass(point: Laplace) -> float:
    """Log mass of a mode under its Laplace approximation, ``log p(mode) + 0.5 * log det(2 pi
    Sigma)`` (NaN for a start whitened by draws or by nothing).

    It weighs a chain that had no draws yet when the first run stopped (nutpie runs as many
    chains at once as there are cores). It is not :func:`region_log_mass`'s equal: at the same
    mode it was 26 nats lower on iris (K = 4) and about 40 on MASS crabs (K = 4) (the
    posterior is wider than the curvature at the mode says), so where no chain that stayed
    has draws, moving is easier than :data:`LEFT_MASS_MARGIN` says
    (benchmarks/results/bench_mcmc_nuts60.txt).

    Examples
    --------
    >>> point = Laplace(np.zeros(2), np.diag([1.0, 3.0]), "laplace", 7.0, 9.0, 0)
    >>> bool(np.isclose(laplace_log_mass(point), 7.0 + np.log(6 * np.pi)))
    True
    """
    return point.log_mass


def chain_log_masses(flat: np.ndarray, logp: np.ndarray, window: int) -> np.ndarray:
    """:func:`region_log_mass` of each chain's latest ``window`` finished draws (NaN for a
    chain with fewer; arrays as in :func:`leaver_restarts`): every estimate from the same
    number of draws, so that their biases match."""
    masses = []
    for x, lp in (_latest(f, p, window) for f, p in zip(flat, logp, strict=True)):
        masses.append(region_log_mass(x, lp) if len(lp) == window else np.nan)
    return np.array(masses)


def move_all(masses: np.ndarray, leavers: Sequence[int]) -> tuple[bool, float]:
    """Whether every chain should move to the region of the chains that left: their mean
    log mass (:func:`chain_log_masses`) minus the largest of the chains that stayed, and
    whether it exceeds :data:`LEFT_MASS_MARGIN` (a NaN margin, too few draws to tell, does
    not). With no chain left behind the margin is ``inf``.

    Examples
    --------
    >>> move_all(np.array([-100.0, -90.0, -101.0]), [1])
    (True, 10.0)
    >>> move_all(np.array([-100.0, -97.0, -101.0]), [1])
    (False, 3.0)
    """
    masses = np.asarray(masses, dtype=float)
    stayed = np.setdiff1d(np.arange(len(masses)), leavers)
    if stayed.size == 0:
        return True, np.inf
    left = masses[np.asarray(leavers, dtype=int)]
    if np.isnan(masses[stayed]).all() or np.isnan(left).all():
        return False, np.nan
    margin = float(np.nanmean(left) - np.nanmax(masses[stayed]))
    return margin > LEFT_MASS_MARGIN, margin


def left_mode(logp: np.ndarray, modes: Sequence[float], n_dim: int) -> np.ndarray:
    """Which chains lie below the Laplace approximation's typical set: :func:`depth` below
    ``-LEFT_MODE_SDS`` (same parameters; a bool per chain). The line alone: a chain counts
    as having left in :func:`run_again_if_left` only when it also lies apart from the others
    (:func:`below_others`).

    Examples
    --------
    >>> logp = np.array([[-15.0] * 10, [-40.0] * 10])
    >>> left_mode(logp, [-10.0, -10.0], 8).tolist()
    [False, True]
    """
    return depth(logp, modes, n_dim) < -LEFT_MODE_SDS


def restart_points(flat: np.ndarray) -> list[Laplace]:
    """Each chain's start and whitening for a second run, from its own kept draws.

    The second half of a chain's finished draws (unconstrained, ``(n_chains, n_draws,
    n_dim)``, NaN after the last draw of a chain stopped early) gives
    the start (their mean) and the factor (the Cholesky factor of their covariance, shrunk
    towards its diagonal by ``n_dim / n_draws`` so that few draws still give a usable one).
    ``kind`` is ``"draws"``.
    """
    return [pooled_metric(_second_half(chain)) for chain in np.asarray(flat, dtype=float)]


def pooled_metric(draws: np.ndarray) -> Laplace:
    """The mean of ``draws`` (n, n_dim) and the Cholesky factor of their covariance, shrunk
    towards its diagonal by ``n_dim / n`` (``kind`` ``"draws"``): a start and whitening
    for new chains from draws of one region (e.g. one mode's chains pooled)."""
    n, n_dim = draws.shape
    covariance = np.cov(draws.T) if n > 1 else np.eye(n_dim)
    shrink = min(1.0, n_dim / max(n, 1))
    covariance = (1.0 - shrink) * covariance + shrink * np.diag(np.diag(covariance))
    covariance += 1e-10 * np.eye(n_dim)
    factor = np.linalg.cholesky(covariance)
    condition = float(np.linalg.cond(covariance))
    return Laplace(draws.mean(axis=0), factor, "draws", np.nan, condition, 0)


def complete(idata: Tree, draws: int) -> bool:
    """Whether every chain holds ``draws`` finished draws (not a run stopped early, nor one
    whose second run Ctrl-C stopped)."""
    logp = get_group(idata, "sample_stats")["logp"].values
    return logp.shape[-1] >= draws and bool(np.all(np.isfinite(logp)))


def chain_modes(idata: Tree, approxes: Sequence[Laplace | None]) -> list[float]:
    """Each chain's log density at the mode it was whitened at (``sample_stats["start"]``
    says which start's; NaN for a start without one, which is never judged)."""
    starts = _chain_starts(idata)
    return [np.nan if approxes[s] is None else approxes[s].log_density for s in starts]


def _chain_starts(idata: Tree) -> np.ndarray:
    """Which start each chain ran from (``sample_stats["start"]``, else all the first)."""
    stats = get_group(idata, "sample_stats")
    return stats["start"].values if "start" in stats else np.zeros(stats.sizes["chain"], int)


def _chain_points(
    idata: Tree, approxes: Sequence[Laplace | None], flat: np.ndarray
) -> list[Laplace]:
    """What each chain ran with (the approximation of its start; for a start without one, no
    whitening from the chain's first draw, at a level never judged)."""
    n_dim, points = flat.shape[2], []
    for c, s in enumerate(_chain_starts(idata)):
        first = flat[c][np.all(np.isfinite(flat[c]), axis=1)][:1]
        none = Laplace(
            first[0] if len(first) else np.zeros(n_dim), np.eye(n_dim), "none", np.nan, 1.0, 0
        )
        points.append(none if approxes[s] is None else approxes[s])
    return points


def run_parallel(runs: Sequence[Callable[[], object]]) -> list:
    """Start every sampler (``run()`` returns nutpie's background sampler) and wait for all;
    Ctrl-C or a failure cancels the ones still running."""
    return start_all(runs, lambda samplers: [sampler.wait() for sampler in samplers])


def run_watched(runs: Sequence[Callable[[], object]], measure: Callable) -> tuple[list, int | None]:
    """:func:`run_parallel`, the samplers looked at about every ``_POLL_SECONDS``.

    ``measure(logp)`` (every chain's log densities so far, tuning first, ``(chain, draw)``,
    NaN after a chain's latest draw) gives each chain's :func:`first_crossings`. Once the
    earliest crossing is certain (every chain has drawn that far), the samplers still running
    are cancelled. Returns the traces (the finished results, or those so far of the samplers
    cancelled) and how many draws of each chain to keep (None when no chain crossed): the same
    wherever the samplers were when looked at.
    """
    return start_all(runs, lambda samplers: _watched(samplers, measure))


def run_checked(
    runs: Sequence[Callable[[], object]], judge: Callable[[list], bool], checks: Sequence[int]
) -> tuple[list, bool]:
    """:func:`run_parallel`, judged when every chain has drawn each of ``checks`` draws.

    ``judge(traces)`` sees every sampler's trace cut to the same number of draws per chain
    (tuning steps, which these runs do not keep, are not counted), at each of ``checks`` in
    order (numbers below the runs' draws); when it returns True the samplers still running
    are cancelled. Every check is made, the ones the samplers outran too, so the outcome
    depends only on the draws, never on when the samplers were looked at: a seeded run stops
    at the same draw on any machine. Returns the traces (cut, when the judge stopped them)
    and whether it stopped them.
    """
    return start_all(runs, lambda samplers: _checked(samplers, judge, list(checks)))


def start_all(runs: Sequence[Callable[[], object]], wait: Callable) -> object:
    """``wait(samplers)`` after starting every run (``run()`` returns nutpie's background
    sampler); Ctrl-C or a failure, while starting them or out of ``wait``, cancels them all."""
    samplers = []
    try:
        for run in runs:
            samplers.append(run())
        return wait(samplers)
    except BaseException:
        for sampler in samplers:
            sampler.cancel()
        raise


def _watched(samplers: list, measure: Callable) -> tuple[list, int | None]:
    """:func:`run_watched`'s wait (see there)."""
    done: list = [None] * len(samplers)
    while True:
        _poll(done, samplers)
        finished = all(d is not None for d in done)
        logp = _padded([_latest_logp(d, s) for d, s in zip(done, samplers, strict=True)])
        keep = _stop_point(np.isfinite(logp).sum(axis=1), measure(logp), finished)
        if finished or keep is not None:
            for i, sampler in enumerate(samplers):
                if done[i] is None:
                    done[i] = sampler.inspect()
                    sampler.cancel()
            return done, keep


def _checked(samplers: list, judge: Callable[[list], bool], checks: list[int]) -> tuple[list, bool]:
    """:func:`run_checked`'s wait (see there)."""
    done: list = [None] * len(samplers)
    while True:
        _poll(done, samplers)
        drawn = min(_drawn(d, s) for d, s in zip(done, samplers, strict=True))
        while checks and checks[0] <= drawn:
            at = checks.pop(0)
            running = [s for d, s in zip(done, samplers, strict=True) if d is None]
            for sampler in running:  # (the judgement then has the cores to itself)
                sampler.pause()
            traces = [s.inspect() if d is None else d for d, s in zip(done, samplers, strict=True)]
            cut = [first_draws(trace, at) for trace in traces]
            if judge(cut):
                for sampler in running:
                    sampler.cancel()
                return cut, True
            for sampler in running:
                sampler.resume()
        if all(d is not None for d in done):
            return done, False


def _drawn(done: Tree | None, sampler) -> int:
    """The fewest kept draws (tuning steps not counted) of any chain of the finished results
    ``done``, else of the running ``sampler`` (read as :func:`running_logp` reads, with the
    same fallback)."""
    if done is not None:
        return int(get_group(done, "posterior").sizes["draw"])
    try:
        tuning = _arrow_column(sampler, "tuning")
        return min((int(np.sum(~t.astype(bool))) for t in tuning), default=0)
    except (AttributeError, KeyError, TypeError, ValueError):
        return int(get_group(sampler.inspect(), "posterior").sizes["draw"])


def _poll(done: list, samplers: list) -> None:
    """Wait about ``_POLL_SECONDS`` in all for the samplers not yet finished, putting the
    results of those that finish in ``done`` (in place)."""
    for i, sampler in enumerate(samplers):
        if done[i] is None:
            try:
                done[i] = sampler.wait(timeout=_POLL_SECONDS / len(samplers))
            except TimeoutError:
                pass


def _latest_logp(done: Tree | None, sampler) -> list[np.ndarray]:
    """Each chain's log densities so far, tuning first: of the finished results ``done``, else
    of the running ``sampler``."""
    if done is None:
        return running_logp(sampler)
    return [lp for _, lp in _chain_draws(done)]


def _padded(per_sampler: list[list[np.ndarray]]) -> np.ndarray:
    """The chains of every sampler in order, ``(chain, draw)``, NaN after a chain's end."""
    chains = [lp for sampler in per_sampler for lp in sampler]
    out = np.full((len(chains), max(map(len, chains))), np.nan)
    for c, lp in enumerate(chains):
        out[c, : len(lp)] = lp
    return out


def running_logp(sampler) -> list[np.ndarray]:
    """Each chain's log densities so far, tuning first, of nutpie's running background
    sampler, read from the Arrow record batches it keeps.

    nutpie's own ``inspect()`` converts every variable of every draw so far to an ArviZ tree,
    at a cost that grows with the draws: on crabs K=3 (4 chains, up to 1,300 iterations each)
    its 60 looks took 10.6 s of a 113 s run, holding the GIL the chains need between
    gradients; reading this one column took 0.05 s in all. nutpie has no public reader of a
    running trace's columns, so this uses its sampler's ``_sampler``; where that fails
    (another nutpie: no such attribute, no Arrow trace, no ``logp`` column; a stand-in) it
    falls back to ``inspect()``.
    """
    try:
        return [lp.astype(float) for lp in _arrow_column(sampler, "logp")]
    except (AttributeError, KeyError, TypeError, ValueError):
        return [lp for _, lp in _chain_draws(sampler.inspect())]


def _arrow_column(sampler, name: str) -> list[np.ndarray]:
    """Each chain's sampler statistic ``name`` so far, from the Arrow record batches of
    nutpie's running background sampler (its private ``_sampler``: see
    :func:`running_logp`); raises AttributeError, KeyError, TypeError or ValueError where
    that is not there."""
    _, stats = sampler._sampler.inspect().get_arrow_trace()
    return [np.asarray(batch.column(name)) for batch in stats]


def concat_chains(trees: list[Tree]) -> Tree:
    """Groups with a ``chain`` dim concatenated along it (chains renumbered), the others from
    the first tree."""
    groups = {}
    for name, node in trees[0].children.items():
        first = node.to_dataset()
        if "chain" not in first.dims:
            groups[name] = first
            continue
        parts = [t[name].to_dataset() for t in trees if name in t.children]
        joined = xr.concat(parts, dim="chain", join="outer", combine_attrs="override")
        groups[name] = joined.assign_coords(chain=np.arange(joined.sizes["chain"]))
    return new_tree(groups)


def replace_chains(idata: Tree, new: dict[int, Tree]) -> Tree:
    """``idata`` with chain ``c`` replaced by the one-chain results ``new[c]`` (the chains'
    ``sample_stats["start"]`` kept)."""
    stats = get_group(idata, "sample_stats")
    start = stats["start"].values if "start" in stats else None
    n_chains = stats.sizes["chain"]
    parts = [new.get(c) or idata.isel(chain=[c], missing_dims="ignore") for c in range(n_chains)]
    for c, part in enumerate(parts):
        if "start" in part["sample_stats"]:
            parts[c] = part.copy()
            parts[c]["sample_stats"] = part["sample_stats"].to_dataset().drop_vars("start")
    out = concat_chains(parts)
    if start is not None:
        joined = get_group(out, "sample_stats").copy()
        joined["start"] = ("chain", start)
        replace_group(out, "sample_stats", joined)
    return out


def run_again_if_left(
    idata: Tree,
    approxes: Sequence[Laplace | None],
    compile_one: Callable[[Laplace], object],
    run: dict,
) -> tuple[Tree, dict]:
    """When a chain left the mode it was whitened at, run every chain again.

    A first run that :func:`stop_when_one_left` stopped (fewer than ``run["draws"]`` draws)
    is judged on each chain's latest :data:`WATCH_DRAWS` draws by the rule that stopped it
    (below the typical set and :data:`LEFT_APART_SDS` below the highest other chain; when the
    others followed the chain that crossed down by the stop, no chain is apart and every
    chain runs again from its own draws, as after a finished run in which a chain left).
    Every chain starts again at a draw of the chains that left, all whitened by those draws'
    covariance (:func:`leaver_restarts`), when their region holds :data:`LEFT_MASS_MARGIN`
    nats more mass than any chain that stayed (:func:`move_all`), else the chains that stayed
    start again where they are, with their own whitening (:func:`_run_from_leavers`). A
    finished first run is judged on the second half of each chain's draws by the same rule
    (chains together below the typical set are kept as they are), and when a chain left,
    every chain, the ones that stayed too, starts again at the mean of the second half of its
    own finished draws, whitened by their covariance (:func:`restart_points`). Either way
    every chain runs with the same :data:`RERUN_TUNE` tuning steps (at most ``run["tune"]``)
    and ``run["draws"]`` draws: all kept chains are tuned alike, so R-hat and ESS compare
    like with like.

    Parameters
    ----------
    idata : xarray.DataTree
        nutpie's results of the E-step kernel's model (``posterior["unconstrained_point"]``,
        ``sample_stats["logp"]``; a chain stopped early is padded with NaN), with the tuning
        draws (``warmup_`` groups) of a run :func:`stop_when_one_left` stopped, which are
        judged with its draws.
    approxes : sequence of Laplace or None
        The approximation of each start (``sample_stats["start"]`` indexes it).
    compile_one : callable
        nutpie's compiled model whitened by a :class:`Laplace` (its ``mode`` the start).
    run : dict
        ``draws``, ``tune``, ``target_accept``, ``seed`` and ``progressbar`` of the first run.

    Returns
    -------
    (results, attrs)
        The results, never with tuning groups (the first run's when no chain left, or when
        Ctrl-C stopped the second run: then possibly short, for the caller to mark as
        partial) and the attrs that say
        what happened when the chains ran again (else empty): ``left_mode_depth``, each
        chain's :func:`depth` (or :func:`latest_depth`, NaN for a chain with fewer draws) in
        the first run, ``left_mode_rerun_tune``, and, when the first run was stopped,
        ``left_mode_restarted_from`` (the chains that left), ``left_mode_stages``,
        ``left_mode_log_mass``, ``left_mode_mass_margin`` and ``left_mode_moved`` (each stop's
        chains' log masses, the margin and ``"all"`` or ``"apart"``).
    """
    import nutpie

    stopped = not complete(idata, int(run["draws"]))  # by stop_when_one_left
    if not stopped:  # judged on its draws alone
        idata = without_warmup(idata)
    flat, logp = _arrays([idata])  # a stopped run's tuning draws first
    modes, n_dim = chain_modes(idata, approxes), flat.shape[2]
    if stopped:  # the rule that stopped it, at the stop
        chain_depth = latest_depth(logp, modes, n_dim, WATCH_DRAWS)
    else:
        chain_depth = depth(logp, modes, n_dim)
    # below the line and apart from the others: chains together below it have not left
    left = (chain_depth < -LEFT_MODE_SDS) & below_others(chain_depth, LEFT_APART_SDS)
    leavers = np.flatnonzero(left)
    if leavers.size == 0 and not stopped:
        return without_warmup(idata), {}
    tune = min(int(run["tune"]), RERUN_TUNE)
    options = {"draws": run["draws"], "tune": tune, "target_accept": run["target_accept"]}

    def start(stage: int, chain: int, point: Laplace, watched: bool = False) -> Callable:
        return lambda: nutpie.sample(
            compile_one(point),
            chains=1,
            seed=(int(run["seed"]) + 104729 * (chain + 1) + 7919 * stage) % 2**31,
            progress_bar=run["progressbar"],
            save_warmup=watched,  # a watched chain is judged on its tuning draws too
            blocking=False,
            **options,
        )

    attrs = {
        "left_mode_depth": np.round(chain_depth, 2).tolist(),
        "left_mode_rerun_tune": tune,
    }
    try:
        if not stopped or leavers.size == 0:  # (stopped: the others followed it down)
            # every chain from its own draws, so that all are tuned alike
            runs = [start(0, c, point) for c, point in enumerate(restart_points(flat))]
            again = run_parallel(runs)
        else:
            points = _chain_points(idata, approxes, flat)
            again, record = _run_from_leavers(flat, logp, leavers, points, start, int(run["draws"]))
            attrs.update(record)
    except KeyboardInterrupt:  # keep the first run's finished draws (none when it stopped tuning)
        return without_warmup(idata), {}
    return replace_chains(idata, dict(enumerate(again))), attrs


def _arrays(trees: list[Tree]) -> tuple[np.ndarray, np.ndarray]:
    """The finished draws of every chain of ``trees`` in order, tuning draws (if kept) first:
    unconstrained ``(chain, draw, n_dim)`` and ``logp`` ``(chain, draw)``, NaN after a chain's
    last draw. A trace with nothing drawn yet counts as one chain (a one-chain run)."""
    chains = [draws for tree in trees for draws in _chain_draws(tree)]
    n_dim = next((x.shape[1] for x, _ in chains if x is not None), 0)
    n = max(len(lp) for _, lp in chains)
    flat_out, logp_out = np.full((len(chains), n, n_dim), np.nan), np.full((len(chains), n), np.nan)
    for c, (x, lp) in enumerate(chains):
        if len(lp):
            flat_out[c, : len(lp)], logp_out[c, : len(lp)] = x, lp
    return flat_out, logp_out


def _chain_draws(tree: Tree) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """Each chain's finished draws of one trace, tuning draws (if kept) first: ``(flat,
    logp)``, ``(None, empty)`` for a trace with nothing drawn yet."""
    parts = []
    for prefix in ("warmup_", ""):
        names = (prefix + "posterior", prefix + "sample_stats")
        if all(name in tree.children for name in names) and "logp" in tree[names[1]]:
            x = tree[prefix + "posterior"]["unconstrained_point"].transpose("chain", "draw", ...)
            lp = tree[prefix + "sample_stats"]["logp"].transpose("chain", "draw")
            parts.append((x.values, lp.values))
    if not parts:
        return [(None, np.empty(0))]
    out = []
    for c in range(len(parts[0][1])):
        flats, logps = [], []
        for x, lp in parts:
            finished = np.all(np.isfinite(x[c]), axis=1) & np.isfinite(lp[c])
            flats.append(x[c][finished])
            logps.append(lp[c][finished])
        out.append((np.concatenate(flats), np.concatenate(logps)))
    return out


def _run_from_leavers(
    flat: np.ndarray,
    logp: np.ndarray,
    leavers: np.ndarray,
    points: list[Laplace],
    start: Callable,
    draws: int,
) -> tuple[list, dict]:
    """The runs after a stopped one, at most :data:`MAX_STAGES`, all but the last watched.

    ``points`` holds what each chain ran with (its whitening; ``log_density`` the level its
    latest draws are judged against, :func:`latest_depth`). At each stop the chains that left
    and those that stayed are weighed (:func:`move_all`): when the region the chains went to
    holds clearly more mass, every chain starts again at a draw of the chains that left, all
    whitened alike (:func:`leaver_restarts`); else the chains that left do so and each chain
    that stayed starts again at its latest draw with its own whitening and level, so that a
    region the chains stayed in keeps its chains (the modes are then judged on the results,
    :mod:`bayesgmm.modes`). A chain counts as having left when its latest draws lie
    :data:`LEFT_LEVEL_SDS` below the level of draws it started from, or :data:`LEFT_MODE_SDS`
    below a mode's typical set. Returns the last stage's one-chain results and the attrs
    ``left_mode_restarted_from`` (the first stop's chains that left), ``left_mode_stages``,
    ``left_mode_log_mass`` (each chain's :func:`chain_log_masses` at each stop; for a chain
    that stayed with too few draws, its start's :func:`laplace_log_mass`),
    ``left_mode_mass_margin`` and ``left_mode_moved`` (``"all"`` or ``"apart"``, each stop).
    """
    n_chains, n_dim = len(flat), flat.shape[2]
    sds = np.full(n_chains, LEFT_MODE_SDS)
    record: dict = {"left_mode_restarted_from": leavers.tolist(), "left_mode_stages": 0}
    for key in ("left_mode_log_mass", "left_mode_mass_margin", "left_mode_moved"):
        record[key] = []
    for stage in range(MAX_STAGES):
        masses = chain_log_masses(flat, logp, WATCH_DRAWS)
        for c in np.flatnonzero(np.isnan(masses)):  # too few draws yet: its approximation's
            masses[c] = np.nan if c in leavers else laplace_log_mass(points[c])
        moved, margin = move_all(masses, leavers)
        record["left_mode_log_mass"].append(np.round(masses, 1).tolist())
        record["left_mode_mass_margin"].append(round(margin, 1))
        record["left_mode_moved"].append("all" if moved else "apart")
        record["left_mode_stages"] += 1
        points, sds = _restarts(flat, logp, leavers, points, sds, moved)
        levels = [point.log_density for point in points]

        def measure(logp: np.ndarray, levels: list = levels, sds: np.ndarray = sds) -> np.ndarray:
            return first_crossings(logp, levels, n_dim, sds, WATCH_DRAWS)

        watched = stage < MAX_STAGES - 1
        runs = [start(stage, c, point, watched) for c, point in enumerate(points)]
        again, keep = run_watched(runs, measure) if watched else (run_parallel(runs), None)
        if keep is None and all(
            "sample_stats" in tree.children and complete(tree, draws) for tree in again
        ):
            again = [without_warmup(tree) for tree in again]
            break
        flat, logp = _arrays(again)
        if keep is not None:  # every chain up to the first crossing
            flat[:, keep:], logp[:, keep:] = np.nan, np.nan
        leavers = np.flatnonzero(latest_depth(logp, levels, n_dim, WATCH_DRAWS) < -sds)
    return again, record


def _restarts(
    flat: np.ndarray,
    logp: np.ndarray,
    leavers: np.ndarray,
    points: list[Laplace],
    sds: np.ndarray,
    moved: bool,
) -> tuple[list[Laplace], np.ndarray]:
    """Each chain's start, whitening and level (and margin in sds) for the next stage of
    :func:`_run_from_leavers`: from the pooled draws of the chains that left (every chain
    when ``moved``), else its own latest draw with what it ran with."""
    n_chains = len(flat)
    if moved:
        pool = leaver_restarts(flat, logp, leavers, WATCH_DRAWS, n_chains)
        return pool, np.full(n_chains, LEFT_LEVEL_SDS)
    pool = iter(leaver_restarts(flat, logp, leavers, WATCH_DRAWS, len(leavers)))
    new, new_sds = list(points), np.array(sds, dtype=float)
    for c in range(n_chains):
        if c in leavers:
            new[c], new_sds[c] = next(pool), LEFT_LEVEL_SDS
        else:
            latest, _ = _latest(flat[c], logp[c], 1)
            if len(latest):  # else still tuning when the run stopped: from where it started
                new[c] = dataclasses.replace(points[c], mode=latest[-1].copy())
    return new, new_sds
