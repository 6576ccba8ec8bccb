"""Relabelled-looking InferenceData built without sampling, for the plotting tests.

Draws are simulated around an EM fit (Dirichlet weights, jittered means, covariances
``A Sigma A'`` with ``A`` near the identity), so every figure has a posterior whose centre is
the EM estimate, in one to three features.
"""

from __future__ import annotations

import arviz as az
import numpy as np

from bayesgmm import EMGaussianMixture
from bayesgmm import _gaussian as g
from bayesgmm._idata import add_groups
from bayesgmm.datasets import simulate_mixture
from bayesgmm.sampling import em_dataset

_MEANS = [[0.0, 0.0, 0.0], [5.0, 1.0, -2.0], [1.0, 5.0, 3.0]]
_COV = [
    [[1.0, 0.3, 0.1], [0.3, 1.0, 0.0], [0.1, 0.0, 0.8]],
    [[0.6, -0.2, 0.0], [-0.2, 1.2, 0.2], [0.0, 0.2, 1.0]],
    [[0.9, 0.0, 0.3], [0.0, 0.5, -0.1], [0.3, -0.1, 1.1]],
]


def simulated_data(n_features: int, n_samples: int = 240, seed: int = 3) -> np.ndarray:
    """Three well-separated components in the first ``n_features`` features."""
    d = slice(0, n_features)
    return simulate_mixture(
        n_samples,
        weights=[0.45, 0.35, 0.2],
        means=np.array(_MEANS)[:, d],
        covariances=np.array(_COV)[:, d, d],
        random_state=seed,
    ).X


def _draws(em: EMGaussianMixture, n_chains: int, n_draws: int, rng: np.random.Generator):
    k, d = em.means_.shape
    shape = (n_chains, n_draws)
    weights = rng.dirichlet(400 * em.weights_, size=shape)
    means = em.means_ + 0.08 * rng.standard_normal((*shape, k, d))
    jitter = np.eye(d) + 0.05 * rng.standard_normal((*shape, k, d, d))
    covariances = jitter @ em.covariances_ @ np.swapaxes(jitter, -1, -2)
    stds, correlations = g.std_and_correlation(covariances)
    return {
        "weights": weights,
        "means": means,
        "covariances": covariances,
        "stds": stds,
        "correlations": correlations,
    }


def make_idata(
    n_features: int,
    *,
    n_components: int = 3,
    n_chains: int = 2,
    n_draws: int = 100,
    seed: int = 0,
    with_em: bool = True,
):
    """(InferenceData with posterior, sample_stats, observed_data and em groups; the EM fit).

    A quarter of chain 0's draws are recorded as relabelled, and chain 1 has 3 divergences.
    """
    X = simulated_data(n_features)
    em = EMGaussianMixture(n_components, random_state=seed, n_init=2).fit(X)
    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(n_features)]
    coords = {
        "component": np.arange(n_components),
        "feature": names,
        "feature_bis": names,
        "obs_id": np.arange(X.shape[0]),
    }
    matrix = ["component", "feature", "feature_bis"]
    dims = {
        "weights": ["component"],
        "means": ["component", "feature"],
        "stds": ["component", "feature"],
        "covariances": matrix,
        "correlations": matrix,
        "obs": ["obs_id", "feature"],
        "label_permutation": ["component"],
    }
    perm = np.broadcast_to(np.arange(n_components), (n_chains, n_draws, n_components)).copy()
    perm[0, ::4] = np.roll(np.arange(n_components), 1)
    diverging = np.zeros((n_chains, n_draws), dtype=bool)
    diverging[1, :3] = True
    idata = az.from_dict(
        posterior=_draws(em, n_chains, n_draws, rng),
        sample_stats={"diverging": diverging, "label_permutation": perm},
        observed_data={"obs": X},
        coords=coords,
        dims=dims,
    )
    if with_em:
        add_groups(idata, {"em": em_dataset(em, coords)})
    return idata, em
