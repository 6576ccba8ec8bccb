"""Posterior predictive imputation of missing cells, with intervals.

For a row with observed entries ``x_O`` and missing ones ``x_M``, the posterior predictive of
the missing entries is ``p(x_M | x_O, data) = E_theta[p(x_M | x_O, theta)]``. Under one
posterior draw ``theta_s`` it is a mixture over components: component ``k`` has the
responsibility ``r_sk = p(k | x_O, theta_s)`` of the *observed* entries (the marginal mixture,
means ``mu_k[O]`` and covariances ``Sigma_k[O, O]``) and, given ``k``, ``x_M`` is Gaussian with
the conditional mean ``mu_k[M] + B_k (x_O - mu_k[O])`` and covariance
``Sigma_k[M, M] - B_k Sigma_k[O, M]``, ``B_k = Sigma_k[M, O] Sigma_k[O, O]^-1`` (the same
conditional-Gaussian math as EM's :func:`bayesgmm._missing.impute`, from
:mod:`bayesgmm._missing`).

Per missing cell :func:`posterior_imputation` reports

- ``mean`` and ``sd``: the predictive mean and standard deviation, computed exactly over the
  draws (Rao-Blackwellised: the average over draws and components of the conditional means,
  and the law of total variance), so they carry no sampling noise beyond the posterior's own;
  when every draw is the EM estimate, ``mean`` is EM's conditional mean exactly;
- ``low`` and ``high``: the **equal-tailed** (central) interval of probability ``prob``, the
  ``(1 - prob) / 2`` and ``(1 + prob) / 2`` quantiles of one predictive sample ``x_M`` per
  draw (component drawn from ``r_s``, then the conditional Gaussian). Equal-tailed rather than
  HDI: a cell's predictive is a mixture and can be bimodal, where an HDI is a union of
  intervals that a (low, high) pair cannot express; the central interval is one interval, is
  unchanged by monotone transformations of the feature, and misses the value with probability
  ``(1 - prob) / 2`` on each side, which is what a coverage check tests.

Everything is computed on the standardised scale the model samples on (see
:mod:`bayesgmm._units`) and reported in the data's units. Imputations do not depend on the
components' labels, so label switching does not matter here.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import xarray as xr

from . import _gaussian as g
from ._idata import Tree, get_group, posterior_draws, posterior_with
from ._missing import _regressions, conditional_means, group_patterns
from ._units import scaling_of, standardised

__all__ = ["posterior_imputation"]

_DEFAULT_MAX_BYTES = 2**26
_NAMES = ("weights", "means", "covariances")
_LOC_ROWS = np.array([1.0, 0.0, 1.0, 1.0])[:, None, None]  # mean, sd, low, high: sd has no loc


def _unit_draws(idata: Tree) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The scaling and the draws' weights ``(S, K)``, means ``(S, K, D)`` and covariances
    ``(S, K, D, D)`` on the standardised scale."""
    post = posterior_with(idata, _NAMES, "imputations")
    scaling = scaling_of(idata)
    weights, means, covariances = posterior_draws(standardised(post, scaling), _NAMES)
    return scaling, weights, means, covariances


def _log_responsibilities(
    xu: np.ndarray, weights: np.ndarray, means: np.ndarray, cov: np.ndarray, observed: np.ndarray
) -> np.ndarray:
    """``log p(k | x_O, theta_s)`` of every draw, row and component, ``(S, n, K)``."""
    n_draws, n_components = weights.shape
    if observed.size == 0:  # nothing observed: the mixing weights
        with np.errstate(divide="ignore"):
            log_w = np.log(weights)
        return np.broadcast_to(log_w[:, None, :], (n_draws, xu.shape[0], n_components))
    sub = cov[:, :, observed][:, :, :, observed]
    factors = g.batched_precision_cholesky(sub)
    out = np.empty((n_draws, xu.shape[0], n_components))
    for draws, _, log_resp in g.draw_log_responsibilities(
        xu, weights, np.ascontiguousarray(means[:, :, observed]), factors
    ):
        out[draws] = log_resp
    return out


def _conditionals(
    xu: np.ndarray, means: np.ndarray, cov: np.ndarray, observed: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Conditional means ``(n, S*K, m)`` and covariances ``(S*K, m, m)`` of ``x_M`` given
    ``x_O`` under every draw's every component (draws and components flattened)."""
    n_features = means.shape[-1]
    flat_means = means.reshape(-1, n_features)
    flat_cov = cov.reshape(-1, n_features, n_features)
    if observed.size == 0:
        cmeans = np.broadcast_to(
            flat_means[:, missing], (xu.shape[0], *flat_means[:, missing].shape)
        )
        return cmeans, flat_cov[:, missing][:, :, missing]
    coef, conditional = _regressions(flat_cov, observed, missing)
    return conditional_means(flat_means, coef, xu, observed, missing), conditional


def _sample(
    resp: np.ndarray, cmeans: np.ndarray, chol: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One predictive draw of ``x_M`` per row and posterior draw, ``(n, S, m)``: a component
    from the responsibilities ``resp`` ``(n, S, K)``, then its conditional Gaussian."""
    n_rows, n_draws, n_components = resp.shape
    u = rng.random((n_rows, n_draws, 1))
    component = np.minimum((np.cumsum(resp, axis=-1) < u).sum(axis=-1), n_components - 1)
    index = np.arange(n_draws)[None, :] * n_components + component  # into S*K
    noise = rng.standard_normal((n_rows, n_draws, chol.shape[-1]))
    rows = np.arange(n_rows)[:, None]
    return cmeans[rows, index] + np.einsum("nsab,nsb->nsa", chol[index], noise)


def _pattern_summary(
    xu: np.ndarray,
    draws: tuple[np.ndarray, np.ndarray, np.ndarray],
    observed: np.ndarray,
    missing: np.ndarray,
    tails: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean, sd and the two tail quantiles of every missing cell of rows ``xu`` (unit scale):
    ``(4, n, m)``."""
    weights, means, cov = draws
    n_draws = weights.shape[0]
    resp = np.exp(_log_responsibilities(xu, weights, means, cov, observed))
    resp = resp.transpose(1, 0, 2)  # (n, S, K)
    cmeans, conditional = _conditionals(xu, means, cov, observed, missing)
    flat_resp = resp.reshape(xu.shape[0], -1, 1) / n_draws  # (n, S*K, 1), sums to 1 per row
    mean = np.sum(flat_resp * cmeans, axis=1)
    spread = np.diagonal(conditional, axis1=1, axis2=2)[None] + (cmeans - mean[:, None]) ** 2
    sd = np.sqrt(np.sum(flat_resp * spread, axis=1))
    sample = _sample(resp, cmeans, np.linalg.cholesky(conditional), rng)
    low, high = np.quantile(sample, tails, axis=1)
    return np.stack([mean, sd, low, high])


def _check_prob(prob: Any) -> None:
    if not isinstance(prob, numbers.Real) or isinstance(prob, bool) or not 0 < prob < 1:
        raise ValueError(f"prob must be a number in (0, 1), e.g. 0.9; got {prob!r}.")


def _rows(idata: Tree, X: Any, n_features: int) -> np.ndarray:
    if X is None:
        return np.asarray(get_group(idata, "observed_data")["obs"].values, dtype=float)
    array = np.asarray(X, dtype=float)
    if array.ndim != 2 or array.shape[1] != n_features:
        raise ValueError(
            f"X must be 2-D with {n_features} features (n_samples, {n_features}), got shape "
            f"{array.shape}."
        )
    if np.isinf(array).any():
        raise ValueError("X has infinite values: only NaN marks a missing cell; replace them.")
    return array


def _row_blocks(n_rows: int, n_draws: int, n_components: int, width: int, max_bytes: int):
    size = max(1, max_bytes // (8 * n_draws * n_components * (width + 1) * (width + 1)))
    for start in range(0, n_rows, size):
        yield slice(start, start + size)


def posterior_imputation(
    idata: Tree,
    X: Any = None,
    *,
    prob: float = 0.9,
    random_seed: Any = None,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> xr.Dataset:
    """Posterior predictive mean, sd and equal-tailed interval of every missing cell.

    Parameters
    ----------
    idata : xarray.DataTree
        A posterior with ``weights``, ``means`` and ``covariances`` in the data's units (as
        :meth:`bayesgmm.BayesianGMM.fit` and :func:`bayesgmm.sample_posterior` make it).
    X : array-like of shape (n_samples, n_features), optional
        Rows with missing cells as NaN; defaults to the observed data (``observed_data``,
        which holds the fitted rows: a row with nothing observed was left out of the fit,
        so pass ``X`` to number the rows as your data do).
    prob : float
        Probability of the central interval.
    random_seed : int, numpy.random.Generator or None
        Seeds the predictive draws the interval comes from (mean and sd are exact).
    max_bytes : int
        Memory budget of one block of rows x draws x components.

    Returns
    -------
    xarray.Dataset
        Over dimension ``cell`` (one per missing cell, ordered by row then feature; rows with
        nothing missing are absent, and complete data give zero cells, not an error):
        ``mean``, ``sd``, ``low``, ``high``; coordinates ``row`` (the row's position in
        ``X``) and ``feature`` (its name). Attrs: ``prob``, ``interval = "equal-tailed"``.
        ``.to_dataframe()`` makes it a table.

    Examples
    --------
    >>> fit = BayesianGMM(2, random_seed=1).fit(X_with_nan)  # doctest: +SKIP
    >>> cells = posterior_imputation(fit.idata_, prob=0.9, random_seed=0)  # doctest: +SKIP
    >>> cells.to_dataframe().set_index(["row", "feature"])  # doctest: +SKIP
    """
    _check_prob(prob)
    scaling, *draws = _unit_draws(idata)
    names = [str(f) for f in get_group(idata, "posterior")["feature"].values]
    data = _rows(idata, X, len(names))
    tails = np.array([(1 - prob) / 2, (1 + prob) / 2])
    rng = np.random.default_rng(random_seed)
    rows, features, values = [], [], []
    for pattern in (p for p in group_patterns(data) if p.missing.size):
        obs, miss = pattern.observed, pattern.missing
        xu = (pattern.values - scaling.loc[obs]) / scaling.scale[obs]
        for block in _row_blocks(xu.shape[0], *draws[0].shape, miss.size, max_bytes):
            unit = _pattern_summary(xu[block], tuple(draws), obs, miss, tails, rng)
            user = unit * scaling.scale[miss] + _LOC_ROWS * scaling.loc[miss]
            values.append(user.reshape(4, -1))
            rows.append(np.repeat(pattern.rows[block], miss.size))
            features.append(np.tile(miss, unit.shape[1]))
    return _cells_dataset(rows, features, values, names, prob)


def _cells_dataset(
    rows: list[np.ndarray],
    features: list[np.ndarray],
    values: list[np.ndarray],
    names: list[str],
    prob: float,
) -> xr.Dataset:
    """The per-cell table, ordered by row then feature."""
    row = np.concatenate(rows) if rows else np.empty(0, dtype=int)
    feature = np.concatenate(features) if features else np.empty(0, dtype=int)
    table = np.concatenate(values, axis=1) if values else np.empty((4, 0))
    order = np.lexsort((feature, row))
    data = {n: ("cell", table[i, order]) for i, n in enumerate(("mean", "sd", "low", "high"))}
    coords = {
        "row": ("cell", row[order].astype(int)),
        "feature": ("cell", np.asarray(names, dtype=object)[feature[order]].astype(str)),
    }
    return xr.Dataset(data, coords=coords, attrs={"prob": prob, "interval": "equal-tailed"})
