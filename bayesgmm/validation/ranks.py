"""Label-invariant test quantities and the rank of the truth among posterior draws."""

from __future__ import annotations

import arviz as az
import numpy as np

from .. import _gaussian as g


def quantity_names(n_components: int, n_features: int) -> tuple[str, ...]:
    """Names of the label-invariant test quantities, in :func:`invariant_quantities` order."""
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
    """
    n_sets = weights.shape[0]
    order = np.argsort(means[:, :, 0], axis=1)
    sorted_means = np.take_along_axis(means, order[:, :, None], axis=1).reshape(n_sets, -1)
    rows = np.vstack([X, np.reshape(held_out, (1, -1))])
    log_dens = g.draw_log_density(rows, weights, means, covariances)
    return np.column_stack(
        [np.sort(weights, axis=1), sorted_means, log_dens[:, :-1].sum(axis=1), log_dens[:, -1]]
    )


def thin_indices(n_total: int, n_keep: int) -> np.ndarray:
    """``n_keep`` distinct indices evenly spaced over ``range(n_total)``."""
    if not 1 <= n_keep <= n_total:
        raise ValueError(f"n_keep must lie in [1, {n_total}], got {n_keep}.")
    return np.linspace(0, n_total - 1, n_keep).round().astype(np.int64)


def rank_draws(values: np.ndarray) -> int:
    """Draws to keep for ranking: the smallest bulk ESS over quantities, ``values (C, S, Q)``."""
    ess = min(float(az.ess(values[:, :, q], method="bulk")) for q in range(values.shape[2]))
    total = values.shape[0] * values.shape[1]
    return int(np.clip(np.floor(ess), 1, total)) if np.isfinite(ess) else 1


def rank_of_truth(draws: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Number of draws below the truth, per quantity: ``draws (L, Q)``, ``truth (Q,)``."""
    return np.sum(draws < truth[None, :], axis=0)


def fractional_ranks(
    ranks: np.ndarray, n_draws: np.ndarray | int, rng: np.random.Generator
) -> np.ndarray:
    """Randomised fractional ranks ``(rank + U(0, 1)) / (L + 1)``.

    A rank uniform on ``{0, ..., L}`` gives an exactly ``Uniform(0, 1)`` value, so simulations
    thinned to different ``L`` can be pooled.
    """
    ranks = np.asarray(ranks, dtype=float)
    return (ranks + rng.uniform(size=ranks.shape)) / (np.asarray(n_draws) + 1.0)


def covered(u: np.ndarray, level: float) -> np.ndarray:
    """Whether the truth lies in the central ``level`` interval, from its posterior quantile."""
    return np.abs(np.asarray(u) - 0.5) <= level / 2.0
