"""Posterior membership probabilities, with their uncertainty.

For every posterior draw ``s`` the responsibilities ``r_s[n, k] = p(z_n = k | x_n, theta_s)``
come from the same Gaussian math as EM (:mod:`bayesgmm._gaussian`). Their posterior mean is the
membership probability, their HDI its uncertainty. Nothing per observation is stored in the
trace: memberships are computed on demand, in blocks of observations, so memory stays bounded
by ``max_bytes`` however many draws and rows there are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from . import _gaussian as g
from ._idata import Tree, get_group, hdi, posterior_draws, posterior_with
from ._missing import group_patterns
from ._units import scaling_of, standardised

__all__ = ["co_clustering", "draw_assignments", "posterior_membership"]

_DEFAULT_MAX_BYTES = 2**26


def _posterior_parameters(
    idata: Tree, X: Any
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The rows and the draws' weights ``(S, K)``, means ``(S, K, D)``, precision factors
    ``(S, K, D, D)`` and covariances ``(S, K, D, D)`` (for rows with missing cells), all on
    the standardised scale of :mod:`bayesgmm._units` (memberships do not depend on the units;
    the covariances of data at 1e200 do not fit in float64)."""
    post = posterior_with(idata, ("weights", "means", "covariances"), "memberships")
    scaling = scaling_of(idata)
    unit = standardised(post, scaling)
    weights, means, covariances = posterior_draws(unit, ("weights", "means", "covariances"))
    data = scaling.transform(_observed(idata, X))
    factors = g.batched_precision_cholesky(covariances, jitter=True)
    return data, (weights, means, factors, covariances)


def _responsibility_draws(X: np.ndarray, params: tuple[np.ndarray, ...]) -> np.ndarray:
    """Responsibilities of every draw for a block of rows: ``(S, n, K)``.

    A row with missing cells (NaN) is classified by its observed entries, under each draw's
    marginal mixture (means ``mu[O]``, covariances ``Sigma[O, O]``; rows grouped by pattern);
    a row with nothing observed gets the mixing weights.
    """
    weights, means, chol, covariances = params
    out = np.empty((weights.shape[0], X.shape[0], weights.shape[1]))
    if not np.isnan(X).any():
        for draws, _, log_resp in g.draw_log_responsibilities(X, weights, means, chol):
            out[draws] = np.exp(log_resp)
        return out
    for pattern in group_patterns(X):
        o = pattern.observed
        if o.size == 0:
            out[:, pattern.rows] = weights[:, None, :]
            continue
        sub = g.batched_precision_cholesky(covariances[:, :, o][:, :, :, o], jitter=True)
        parts = g.draw_log_responsibilities(pattern.values, weights, means[:, :, o], sub)
        for draws, _, log_resp in parts:
            out[draws, pattern.rows] = np.exp(log_resp)
    return out


def _blocks(n_rows: int, n_draws: int, n_components: int, max_bytes: int) -> Iterator[slice]:
    size = max(1, max_bytes // (8 * n_draws * n_components))
    for start in range(0, n_rows, size):
        yield slice(start, start + size)


def _observed(idata: Tree, X: Any) -> np.ndarray:
    if X is not None:
        array = np.asarray(X, dtype=float)
        if array.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {array.shape}.")
        return array
    return get_group(idata, "observed_data")["obs"].values


def draw_assignments(
    idata: Tree, X: Any = None, *, max_bytes: int = _DEFAULT_MAX_BYTES
) -> np.ndarray:
    """Every draw's most probable component of every row: ``(chain, draw, obs_id)``.

    Parameters
    ----------
    idata : xarray.DataTree
        Relabelled posterior with ``weights``, ``means`` and ``covariances``.
    X : array-like of shape (n_samples, n_features), optional
        Rows to classify; defaults to the observed data.
    max_bytes : int
        Memory budget of one block of draws x rows x components.

    Returns
    -------
    ndarray of int8, shape (chain, draw, n_samples)
        The component of highest responsibility under each draw (rows with missing cells
        classified by their observed entries).

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> labels = draw_assignments(fit.idata_)  # doctest: +SKIP
    >>> (labels[..., 0] == 0).mean()  # doctest: +SKIP
    """
    data, params = _posterior_parameters(idata, X)
    n_draws, n_components = params[0].shape
    posterior = get_group(idata, "posterior")
    out = np.empty((n_draws, data.shape[0]), dtype=np.int8)
    for rows in _blocks(data.shape[0], n_draws, n_components, max_bytes):
        out[:, rows] = _responsibility_draws(data[rows], params).argmax(axis=2)
    return out.reshape(posterior.sizes["chain"], posterior.sizes["draw"], data.shape[0])


def posterior_membership(
    idata: Tree,
    X: Any = None,
    *,
    hdi_prob: float = 0.94,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> xr.Dataset:
    """Membership probabilities of every observation, with HDIs and entropy.

    Parameters
    ----------
    idata : xarray.DataTree
        Relabelled posterior with ``weights``, ``means`` and ``covariances``.
    X : array-like of shape (n_samples, n_features), optional
        Rows to classify; defaults to the observed data.
    hdi_prob : float
        Probability mass of the highest-density intervals.
    max_bytes : int
        Memory budget of one block of draws x rows x components.

    Returns
    -------
    xarray.Dataset
        ``probability`` (obs_id, component): posterior mean membership; ``hdi_low`` and
        ``hdi_high`` (obs_id, component); ``entropy`` (obs_id): entropy in nats of the mean
        membership (0 = certain, ``log K`` = maximally ambiguous); ``hdi_width`` (obs_id): the
        widest membership interval of the row; ``most_probable`` (obs_id).

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> m = posterior_membership(fit.idata_, hdi_prob=0.9)  # doctest: +SKIP
    >>> m["entropy"].sortby(m["entropy"]).obs_id[-5:]  # most ambiguous  # doctest: +SKIP
    """
    data, params = _posterior_parameters(idata, X)
    n_draws, n_components = params[0].shape
    n_chains = get_group(idata, "posterior").sizes["chain"]
    mean = np.empty((data.shape[0], n_components))
    low = np.empty_like(mean)
    high = np.empty_like(mean)
    for rows in _blocks(data.shape[0], n_draws, n_components, max_bytes):
        resp = _responsibility_draws(data[rows], params)
        mean[rows] = resp.mean(axis=0)
        draws = resp.reshape(n_chains, n_draws // n_chains, *resp.shape[1:])
        interval = hdi(
            xr.Dataset({"p": (("chain", "draw", "obs_id", "component"), draws)}), hdi_prob
        )["p"].values
        low[rows], high[rows] = interval[..., 0], interval[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        # (0 - sum: a certain row's entropy is +0, not the -0 a negation gives, shown "-0")
        entropy = 0.0 - np.sum(np.where(mean > 0, mean * np.log(mean), 0.0), axis=1)
    dims = ("obs_id", "component")
    coords = {"obs_id": np.arange(data.shape[0]), "component": np.arange(n_components)}
    return xr.Dataset(
        {
            "probability": (dims, mean),
            "hdi_low": (dims, low),
            "hdi_high": (dims, high),
            "entropy": ("obs_id", entropy),
            "hdi_width": ("obs_id", (high - low).max(axis=1)),
            "most_probable": ("obs_id", mean.argmax(axis=1)),
        },
        coords=coords,
        attrs={"hdi_prob": hdi_prob},
    )


def co_clustering(
    idata: Tree,
    X: Any = None,
    *,
    max_samples: int = 5000,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> xr.DataArray:
    """Posterior similarity matrix: the probability that two observations share a component.

    ``P[i, j] = E_theta[sum_k r_ik(theta) r_jk(theta)]``, averaged over the draws in blocks.
    Every draw of ``idata`` counts alike: over chains that ended in several modes, each mode
    weighs as many chains as it happened to get. :meth:`bayesgmm.BayesianGMM.co_clustering`
    weighs the modes by their stacking weights instead; one mode's draws are
    :func:`bayesgmm.modes.mode_posterior`.

    Parameters
    ----------
    idata : xarray.DataTree
        Relabelled posterior with ``weights``, ``means`` and ``covariances``.
    X : array-like of shape (n_samples, n_features), optional
        Rows to compare; defaults to the observed data.
    max_samples : int
        Largest number of rows accepted (the matrix has ``n_samples**2`` entries).
    max_bytes : int
        Memory budget of one block of draws x rows x components.

    Returns
    -------
    xarray.DataArray of shape (obs_id, obs_id_bis)

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> co = co_clustering(fit.idata_)  # doctest: +SKIP
    >>> float(co.sel(obs_id=0, obs_id_bis=1))  # P(rows 0 and 1 share a component)  # doctest: +SKIP
    """
    data, (weights, means, chol, covariances) = _posterior_parameters(idata, X)
    n = data.shape[0]
    if n > max_samples:
        raise ValueError(
            f"The co-clustering matrix of {n} observations has {n * n:,} entries; it is meant "
            f"for at most max_samples={max_samples}. Pass a subset of rows as X, or raise "
            "max_samples."
        )
    n_draws, n_components = weights.shape
    total = np.zeros((n, n))
    step = max(1, max_bytes // (8 * n * n_components))
    for start in range(0, n_draws, step):
        sl = slice(start, start + step)
        resp = _responsibility_draws(data, (weights[sl], means[sl], chol[sl], covariances[sl]))
        stacked = np.concatenate(list(resp), axis=1)
        total += stacked @ stacked.T
    ids = np.arange(n)
    return xr.DataArray(
        total / n_draws, dims=("obs_id", "obs_id_bis"), coords={"obs_id": ids, "obs_id_bis": ids}
    )
