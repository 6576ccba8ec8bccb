"""Label-invariant profiles of MCMC chains, for judging which mode each chain is in
(:func:`bayesgmm.modes.find_modes`): the pointwise log-likelihood, log predictive densities and
their divergence, each chain's robust summary of its relabelled parameters, and the partition
each chain holds (its co-clustering probabilities)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import logsumexp

from . import _gaussian as g
from ._idata import Tree, get_group, has_group
from ._units import scaling_of, standardised
from .alignment import match_to_reference
from .membership import _responsibility_draws

__all__ = [
    "divergence",
    "lppd",
    "parameter_profiles",
    "parameters_agree",
    "partition_drift",
    "partition_gap",
    "partition_profiles",
    "partitions_agree",
    "pointwise",
]

_PARTITION_ROWS = 100  # rows compared, evenly spaced: 4,950 pairs
_PARTITION_DRAWS = 50  # draws per half chain, evenly spaced
PARTITION_FLOOR = 0.05  # mean co-clustering difference below which two chains are one mode


def pointwise(idata: Tree) -> np.ndarray:
    """The pointwise log-likelihood ``(chain, draw, obs)``."""
    da = get_group(idata, "log_likelihood")["obs"]
    values = da.transpose("chain", "draw", ...).values
    return values.reshape(da.sizes["chain"], da.sizes["draw"], -1)


def lppd(values: np.ndarray) -> np.ndarray:
    """Log predictive density of each row under the draws of ``values`` ``(draw, obs)``."""
    return logsumexp(values, axis=0) - np.log(values.shape[0])


def divergence(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two pointwise log predictive densities (nats per row)."""
    return float(np.mean(np.abs(a - b)))


def parameter_profiles(idata: Tree) -> tuple[np.ndarray, np.ndarray] | None:
    """Each chain's median and robust scale (1.4826 MAD) of every relabelled parameter,
    ``(chain, component, 1 + 2 D)`` each: the weight, the standardised means and the log
    standardised standard deviations of every component; None without the parameters in the
    posterior (or with a chain that holds no complete draw).

    Every draw is first matched to one reference (the best draw overall), so the profiles do
    not depend on the labels: chains in one mode get the same medians, chains in modes that
    split the data differently get medians that differ by many posterior standard deviations
    (even when their log-likelihoods are the same).
    """
    if not has_group(idata, "posterior"):
        return None
    posterior = get_group(idata, "posterior")
    if not {"weights", "means", "covariances"} <= set(posterior.data_vars):
        return None
    unit = standardised(posterior, scaling_of(idata))
    means = unit["means"].transpose("chain", "draw", "component", "feature").values
    covariances = unit["covariances"].transpose("chain", "draw", "component", ...).values
    weights = unit["weights"].transpose("chain", "draw", "component").values
    finite = np.isfinite(weights).all(2) & np.isfinite(covariances).all((2, 3, 4))
    finite &= np.isfinite(means).all((2, 3))
    if not finite.any(axis=1).all():  # a chain without one whole draw: nothing to compare
        return None
    totals = np.where(finite, pointwise(idata).sum(axis=2), -np.inf)
    c, s = np.unravel_index(np.argmax(totals), totals.shape)
    perm = np.broadcast_to(np.arange(weights.shape[2]), weights.shape).copy()
    matched = match_to_reference(
        means[finite][None], covariances[finite][None], means[c, s], covariances[c, s]
    )
    perm[finite] = matched[0]
    log_sd = 0.5 * np.log(np.maximum(np.diagonal(covariances, axis1=-2, axis2=-1), 1e-300))
    values = np.concatenate([weights[..., None], means, log_sd], axis=3)
    values = np.take_along_axis(values, perm[..., None], axis=2)  # (chain, draw, K, 1 + 2D)
    values[~finite] = np.nan  # draws an interrupted chain never made
    median = np.nanmedian(values, axis=1)
    scale = 1.4826 * np.nanmedian(np.abs(values - median[:, None]), axis=1)
    return median, scale


def parameters_agree(
    profiles: tuple[np.ndarray, np.ndarray], a: int, b: int, factor: float, n_rows: int
) -> bool:
    """Whether chains ``a`` and ``b`` of :func:`parameter_profiles` agree: every median
    within ``factor`` times the larger robust scale (plus 0.05). A component that holds
    fewer than two rows' worth of weight in either chain is compared by its weight alone:
    its mean and standard deviations are its prior's, not the data's, and may wander."""
    median, scale = profiles
    gap = np.abs(median[a] - median[b])
    allowed = factor * np.maximum(scale[a], scale[b]) + 0.05
    held = np.minimum(median[a, :, 0], median[b, :, 0]) * n_rows >= 2.0
    return bool(np.all(gap[:, 0] <= allowed[:, 0]) and np.all(gap[held] <= allowed[held]))


def partition_profiles(
    idata: Tree, centre: Callable = np.median
) -> tuple[np.ndarray, np.ndarray] | None:
    """The partition each chain holds: the median (or other ``centre``) over its draws of
    every pair of rows' co-clustering probability ``(chain, pair)``, and the mean absolute
    difference between those in its two halves ``(chain,)``; None without the parameters in
    the posterior or the observed data (or with a chain that holds fewer than two complete
    draws).

    A draw's ``sum_k r_ik r_jk`` (responsibilities as in :func:`bayesgmm.co_clustering`, rows
    with missing cells by their observed entries) does not depend on the labels: two chains
    that split the data differently differ in many pairs, however alike their likelihoods
    and however wide their parameters' spread (a posterior with nearly as many parameters as
    rows). Medians keep a chain that visited another partition for a minority of its draws
    with the one it spent most draws in, as :func:`parameter_profiles` does. At most
    ``_PARTITION_ROWS`` rows and ``_PARTITION_DRAWS`` draws per half chain are used, evenly
    spaced.
    """
    if not (has_group(idata, "posterior") and has_group(idata, "observed_data")):
        return None
    posterior = get_group(idata, "posterior")
    if not {"weights", "means", "covariances"} <= set(posterior.data_vars):
        return None
    scaling = scaling_of(idata)
    unit = standardised(posterior, scaling)
    params = [
        unit[name].transpose("chain", "draw", "component", ...).values
        for name in ("weights", "means", "covariances")
    ]
    data = scaling.transform(np.asarray(get_group(idata, "observed_data")["obs"].values, float))
    rows = _evenly(len(data), _PARTITION_ROWS)
    if rows.size < 2:
        return None
    finite = np.ones(params[0].shape[:2], dtype=bool)
    for values in params:
        finite &= np.isfinite(values.reshape(*values.shape[:2], -1)).all(axis=2)
    medians, noise = [], []
    for chain, kept in enumerate(finite):
        draws = np.flatnonzero(kept)
        if draws.size < 2:
            return None
        halves = [
            _pair_draws(data[rows], [v[chain, part] for v in params])
            for part in np.array_split(draws, 2)
        ]
        medians.append(centre(np.concatenate(halves), axis=0))
        noise.append(divergence(*(centre(half, axis=0) for half in halves)))
    return np.array(medians), np.array(noise)


def _evenly(n: int, most: int) -> np.ndarray:
    """At most ``most`` evenly spaced indices of ``range(n)``."""
    return np.unique(np.linspace(0, n - 1, min(n, most)).astype(int))


def _pair_draws(data: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
    """Co-clustering probability of every pair of rows ``(draw, pair)`` under at most
    ``_PARTITION_DRAWS`` evenly spaced draws of ``params`` (weights, means, covariances)."""
    weights, means, covariances = (v[_evenly(len(v), _PARTITION_DRAWS)] for v in params)
    factors = g.batched_precision_cholesky(covariances, jitter=True)
    resp = _responsibility_draws(data, (weights, means, factors, covariances))
    upper = np.triu_indices(len(data), 1)
    return (resp @ resp.transpose(0, 2, 1))[:, upper[0], upper[1]]


def partitions_agree(
    profiles: tuple[np.ndarray, np.ndarray], a: int, b: int, factor: float
) -> bool:
    """Whether chains ``a`` and ``b`` of :func:`partition_profiles` hold one partition: their
    median co-clustering probabilities differ (mean over pairs) by at most ``factor`` times
    the *smaller* difference between either chain's halves, plus :data:`PARTITION_FLOOR`.
    The smaller, so that a chain that wandered between partitions (its halves far apart)
    does not join two settled chains that hold different ones."""
    gap, level = partition_gap(profiles, a, b, factor)
    return gap <= level


def partition_gap(
    profiles: tuple[np.ndarray, np.ndarray],
    a: int,
    b: int,
    factor: float,
    noise_of: Callable = np.min,
) -> tuple[float, float]:
    """How far apart the partitions of chains ``a`` and ``b`` are (the mean absolute
    difference of their median co-clustering probabilities) and the level above which they
    are two modes (:func:`partitions_agree`: ``factor`` times the smaller of their noises,
    or ``noise_of`` the pair, plus :data:`PARTITION_FLOOR`)."""
    medians, noise = profiles
    level = factor * noise_of(noise[[a, b]]) + PARTITION_FLOOR
    return float(divergence(medians[a], medians[b])), float(level)


def partition_drift(idata: Tree, factor: float = 4.0) -> tuple[np.ndarray, np.ndarray] | None:
    """How far each chain's partition moved while it drew: the gap between the mean
    co-clustering probabilities of its first and last quarter and the level above which they
    are two partitions, each ``(chain,)`` (:func:`partition_gap` with the *mean* of the two
    quarters' noises, not the smaller: each quarter's halves are next to each other in time,
    so one of them understates a slowly mixing chain's noise by chance); None where
    :func:`partition_profiles` is.

    A chain can leave one partition for another of about the same log-likelihood (R's
    airquality, K = 3: a chain held a partition 0.29 away from the others' for its first 600
    draws, 4 nats lower, within its spread, then joined them), which its log-likelihood
    does not show; its draws then mix two regions and its R-hat fails (1.28 there). Means
    over draws, not medians: a chain that crosses between two partitions again and again
    (independence Metropolis-Hastings between mirrored modes) holds about the same share of
    each in every quarter, while the median pair flips with which one holds the majority.
    Simulated chains that switch between two partitions, staying 5-200 draws in each (100-1000
    draws a chain), are flagged 0-4 times in 40 (the slowest switching) with the mean of the
    noises, 0-15 times with the smaller; a chain that holds one partition for 300 or 600 of
    1000 draws and then another, every time. The larger noise missed airquality's chain (gap
    0.248, quarters' noises 0.056 and 0.033: level 0.274 against 0.228 with their mean).
    """
    n_draws = get_group(idata, "posterior").sizes["draw"]
    quarter = max(n_draws // 4, 2)
    parts = [slice(0, quarter), slice(n_draws - quarter, n_draws)]
    profiles = [
        partition_profiles(idata.isel(draw=part, missing_dims="ignore"), np.mean) for part in parts
    ]
    if profiles[0] is None or profiles[1] is None:
        return None
    both = tuple(np.concatenate(pair) for pair in zip(*profiles, strict=True))
    n_chains = len(profiles[0][1])
    gaps = [partition_gap(both, c, n_chains + c, factor, np.mean) for c in range(n_chains)]
    return np.array([gap for gap, _ in gaps]), np.array([level for _, level in gaps])
