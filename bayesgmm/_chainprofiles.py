"""Label-invariant profiles of MCMC chains, for judging which mode each chain is in
(:func:`bayesgmm.modes.find_modes`): the pointwise log-likelihood, log predictive densities and
their divergence, and each chain's robust summary of its relabelled parameters."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._idata import Tree, get_group, has_group
from ._units import scaling_of, standardised
from .alignment import match_to_reference

__all__ = ["divergence", "lppd", "parameter_profiles", "parameters_agree", "pointwise"]


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
