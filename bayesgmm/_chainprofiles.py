"""Label-invariant profiles of MCMC chains, for judging which mode each chain is in
(:func:`bayesgmm.modes.find_modes`): the pointwise log-likelihood, log predictive densities and
their divergence, and each chain's robust summary of its relabelled parameters."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._idata import Tree, get_group, has_group
from ._units import scaling_of, standardised
from .alignment import match_to_reference

__all__ = ["divergence", "lppd", "parameter_profiles", "pointwise"]


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
    """Each chain's median and robust scale (1.4826 MAD) of every relabelled parameter
    (weights, standardised means, log standardised standard deviations), ``(chain, P)`` each;
    None without the parameters in the posterior.

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
    take = np.take_along_axis
    log_sd = 0.5 * np.log(np.maximum(np.diagonal(covariances, axis1=-2, axis2=-1), 1e-300))
    flat = [
        take(weights, perm, axis=2),
        take(means, perm[..., None], axis=2).reshape(*perm.shape[:2], -1),
        take(log_sd, perm[..., None], axis=2).reshape(*perm.shape[:2], -1),
    ]
    values = np.concatenate(flat, axis=2)  # (chain, draw, P)
    values[~finite] = np.nan  # draws an interrupted chain never made
    median = np.nanmedian(values, axis=1)
    scale = 1.4826 * np.nanmedian(np.abs(values - median[:, None, :]), axis=1)
    return median, scale
