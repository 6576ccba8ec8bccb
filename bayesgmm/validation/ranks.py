"""Label-invariant test quantities and the rank of the truth among posterior draws."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._idata import ess as bulk_ess
from .._kernels import draw_log_density


def quantity_names(n_components: int, n_features: int) -> tuple[str, ...]:
    """Names of the label-invariant test quantities, in :func:`invariant_quantities` order.

    Parameters
    ----------
    n_components, n_features : int
        ``K`` and ``D``: ``K`` sorted weights, ``K * D`` sorted means, then the data's
        log-likelihood and the held-out point's log predictive density.

    Returns
    -------
    tuple of str

    Examples
    --------
    >>> from bayesgmm.validation import quantity_names
    >>> names = quantity_names(2, 2)
    >>> len(names), names[2], names[-1]
    (8, 'sorted_means[0,0]', 'log_predictive')
    """
    weights = [f"sorted_weights[{k}]" for k in range(n_components)]
    means = [f"sorted_means[{k},{j}]" for k in range(n_components) for j in range(n_features)]
    return (*weights, *means, "log_likelihood", "log_predictive")


def invariant_quantities(
    weights: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    X: np.ndarray,
    held_out: np.ndarray,
) -> np.ndarray:
    """Label-invariant quantities of parameter sets, ``(S, Q)``; see :func:`quantity_names`.

    Parameters
    ----------
    weights : ndarray of shape (S, K)
    means : ndarray of shape (S, K, D)
    covariances : ndarray of shape (S, K, D, D)
    X : ndarray of shape (N, D)
        The data whose log-likelihood is a quantity.
    held_out : ndarray of shape (D,)
        The point whose log predictive density is a quantity.

    Returns
    -------
    ndarray of shape (S, Q)
        ``Q = K + K * D + 2`` columns, named by :func:`quantity_names`.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import FIXED_TRUTH, invariant_quantities, simulate
    >>> sim = simulate(FIXED_TRUTH, 100, random_seed=0)
    >>> w, m, c = sim.weights[None], sim.means[None], sim.covariances[None]  # S = 1 set
    >>> q = invariant_quantities(w, m, c, sim.X, sim.held_out)
    >>> q.round(1).tolist()
    [[0.4, 0.6, -2.0, 0.0, 2.0, 1.0, -329.2, -3.1]]
    >>> swapped = invariant_quantities(w[:, ::-1], m[:, ::-1], c[:, ::-1], sim.X, sim.held_out)
    >>> np.allclose(swapped, q)  # relabelling the components changes nothing
    True
    """
    n_sets = weights.shape[0]
    order = np.argsort(means[:, :, 0], axis=1)
    sorted_means = np.take_along_axis(means, order[:, :, None], axis=1).reshape(n_sets, -1)
    rows = np.vstack([X, np.reshape(held_out, (1, -1))])
    log_dens = draw_log_density(rows, weights, means, covariances)
    return np.column_stack(
        [np.sort(weights, axis=1), sorted_means, log_dens[:, :-1].sum(axis=1), log_dens[:, -1]]
    )


def thin_indices(n_total: int, n_keep: int) -> np.ndarray:
    """``n_keep`` distinct indices evenly spaced over ``range(n_total)``.

    Parameters
    ----------
    n_total : int
        Number of draws (chains concatenated).
    n_keep : int
        Between 1 and ``n_total``, e.g. :func:`rank_draws`.

    Returns
    -------
    ndarray of int64, shape (n_keep,)

    Examples
    --------
    >>> from bayesgmm.validation import thin_indices
    >>> thin_indices(10, 4)
    array([0, 3, 6, 9])
    >>> thin_indices(1000, 3)
    array([  0, 500, 999])
    """
    if not 1 <= n_keep <= n_total:
        raise ValueError(f"n_keep must lie in [1, {n_total}], got {n_keep}.")
    return np.linspace(0, n_total - 1, n_keep).round().astype(np.int64)


def rank_draws(values: np.ndarray) -> int:
    """Draws to keep for ranking: the smallest bulk ESS over quantities, ``values (C, S, Q)``.

    Parameters
    ----------
    values : ndarray of shape (n_chains, n_draws, n_quantities)
        Test quantities of every draw (:func:`invariant_quantities`, split by chain).

    Returns
    -------
    int
        The floor of the smallest bulk ESS, clipped to ``[1, C * S]`` (1 if it is not finite).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import rank_draws
    >>> iid = np.random.default_rng(0).normal(size=(2, 100, 3))  # 200 independent draws
    >>> rank_draws(iid), rank_draws(np.cumsum(iid, axis=1))  # random walks: few are effective
    (147, 3)
    """
    quantities = xr.Dataset({"q": (("chain", "draw", "quantity"), values)})
    ess = float(bulk_ess(quantities, "bulk")["q"].min())
    total = values.shape[0] * values.shape[1]
    return int(np.clip(np.floor(ess), 1, total)) if np.isfinite(ess) else 1


def rank_of_truth(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Number of draws below the truth, per quantity: ``draws (L, Q)``, ``truth (Q,)``.

    Parameters
    ----------
    draws : ndarray of shape (L, Q)
        Test quantities of the (thinned) posterior draws.
    truth : ndarray of shape (Q,)
        The same quantities at the true parameters.

    Returns
    -------
    ndarray of int, shape (Q,)
        Ranks in ``{0, ..., L}``.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import rank_of_truth
    >>> draws = np.array([[0.1, 5.0], [0.4, 6.0], [0.9, 7.0]])  # L = 3 draws, Q = 2
    >>> rank_of_truth(draws, np.array([0.5, 4.0]))
    array([2, 0])
    """
    return np.sum(draws < truth[None, :], axis=0)


def fractional_ranks(
    ranks: np.ndarray, n_draws: np.ndarray | int, rng: np.random.Generator
) -> np.ndarray:
    """Randomised fractional ranks ``(rank + U(0, 1)) / (L + 1)``.

    A rank uniform on ``{0, ..., L}`` gives an exactly ``Uniform(0, 1)`` value, so simulations
    thinned to different ``L`` can be pooled.

    Parameters
    ----------
    ranks : array_like of int
        Ranks (:func:`rank_of_truth`).
    n_draws : int or ndarray
        ``L``, the number of draws ranked (broadcast against ``ranks``).
    rng : numpy.random.Generator
        Source of the ``U(0, 1)`` jitter.

    Returns
    -------
    ndarray of float, the shape of ``ranks``

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import fractional_ranks
    >>> rng = np.random.default_rng(0)
    >>> fractional_ranks([0, 3], 3, rng).round(3)  # rank r of L=3 lies in (r/4, (r+1)/4)
    array([0.159, 0.817])
    """
    ranks = np.asarray(ranks, dtype=float)
    return (ranks + rng.uniform(size=ranks.shape)) / (np.asarray(n_draws) + 1.0)


def covered(u: np.ndarray, level: float) -> np.ndarray:
    """Whether the truth lies in the central ``level`` interval, from its posterior quantile.

    Parameters
    ----------
    u : array_like of float
        Posterior quantiles of the truth (e.g. :func:`fractional_ranks`), in ``[0, 1]``.
    level : float
        Probability of the central interval.

    Returns
    -------
    ndarray of bool, the shape of ``u``

    Examples
    --------
    >>> from bayesgmm.validation import covered
    >>> covered([0.02, 0.5, 0.97], 0.9)  # the central 90% interval: quantiles 0.05 to 0.95
    array([False,  True, False])
    """
    return np.abs(np.asarray(u) - 0.5) <= level / 2.0
