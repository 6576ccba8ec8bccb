"""Relabelled-looking results (DataTree) built without sampling, for the plotting tests.

Draws are simulated around an EM fit (Dirichlet weights, jittered means, covariances
``A Sigma A'`` with ``A`` near the identity), so every figure has a posterior whose centre is
the EM estimate, in one to three features.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr

from bayesgmm import EMGaussianMixture
from bayesgmm import _gaussian as g
from bayesgmm._idata import add_groups, new_tree
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


def _draws(
    em: EMGaussianMixture,
    n_chains: int,
    n_draws: int,
    rng: np.random.Generator,
    mean_shift: float = 0.0,
):
    """Draws around ``em``; the means are offset by ``mean_shift`` of their posterior sd."""
    k, d = em.means_.shape
    shape = (n_chains, n_draws)
    weights = rng.dirichlet(400 * em.weights_, size=shape)
    means = em.means_ + 0.08 * (mean_shift + rng.standard_normal((*shape, k, d)))
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
    """(Results with posterior, sample_stats, observed_data and em groups; the EM fit).

    A quarter of chain 0's draws are recorded as relabelled, and chain 1 has 3 divergences.
    """
    X = simulated_data(n_features)
    em = EMGaussianMixture(n_components, random_state=seed, n_init=2).fit(X)
    idata = idata_around(em, X, n_chains=n_chains, n_draws=n_draws, seed=seed, with_em=with_em)
    return idata, em


def _log_likelihood(X: np.ndarray, draws: dict) -> np.ndarray:
    """Pointwise mixture log density of every draw, with the package's Gaussian math."""
    weights, means, cov = draws["weights"], draws["means"], draws["covariances"]
    chol = g.batched_precision_cholesky(cov)
    out = np.empty((*weights.shape[:2], X.shape[0]))
    for c, s in np.ndindex(*weights.shape[:2]):
        out[c, s] = g.log_responsibilities(X, weights[c, s], means[c, s], chol[c, s], "full")[0]
    return out


def idata_around(
    em: EMGaussianMixture,
    X: np.ndarray,
    *,
    n_chains: int = 2,
    n_draws: int = 100,
    seed: int = 0,
    mean_shift: float = 0.0,
    with_em: bool = True,
):
    """Results whose posterior is scattered around ``em`` (no sampling)."""
    n_components, n_features = em.means_.shape
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
    # chain 0 switched labels once, a quarter of its draws before the end (undone by the
    # relabelling; components swapping from draw to draw would fail the labels check)
    perm[0, n_draws - n_draws // 4 :] = np.roll(np.arange(n_components), 1)
    diverging = np.zeros((n_chains, n_draws), dtype=bool)
    diverging[1, :3] = True
    draws = _draws(em, n_chains, n_draws, rng, mean_shift)
    idata = az.from_dict(
        {
            "posterior": draws,
            "sample_stats": {"diverging": diverging, "label_permutation": perm},
            "observed_data": {"obs": X},
            "log_likelihood": {"obs": _log_likelihood(X, draws)},
        },
        coords=coords,
        dims={**dims, "obs": ["obs_id", "feature"]},
    )
    if with_em:
        add_groups(idata, {"em": em_dataset(em, coords)})
    return idata


def partition_tree(where: np.ndarray, rng) -> xr.DataTree:
    """Rows in four clusters at the corners of a square, and chains whose draws split them
    left | right (``where`` 0) or bottom | top (1), with the same log-likelihood profile and
    parameters so widely spread (a mean's sd 1 for a gap of 3) that neither tells the two
    splits apart: only the partitions do."""
    corners = np.array([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]])
    X = np.repeat(corners, 15, axis=0) + 0.3 * rng.normal(size=(60, 2))
    centres = np.array([[[-3.0, 0.0], [3.0, 0.0]], [[0.0, -3.0], [0.0, 3.0]]])
    sds = np.array([[[1.0, 3.0], [1.0, 3.0]], [[3.0, 1.0], [3.0, 1.0]]])
    n_chains, n_draws = where.shape
    means = centres[where] + rng.normal(size=(n_chains, n_draws, 2, 2))
    sd = sds[where] * np.exp(0.4 * rng.normal(size=(n_chains, n_draws, 2, 2)))
    weights = 0.5 + 0.01 * rng.normal(size=(n_chains, n_draws, 1)) * np.array([1.0, -1.0])
    dims = ("chain", "draw", "component")
    posterior = xr.Dataset(
        {
            "weights": (dims, weights),
            "means": ((*dims, "feature"), means),
            "covariances": ((*dims, "feature", "feature_bis"), sd[..., None] ** 2 * np.eye(2)),
        },
        coords={"component": [0, 1], "feature": ["x0", "x1"], "feature_bis": ["x0", "x1"]},
    )
    loglik = rng.normal(size=60) + 0.05 * rng.normal(size=(n_chains, n_draws, 60))
    return new_tree(
        {
            "posterior": posterior,
            "log_likelihood": xr.Dataset({"obs": (("chain", "draw", "obs_id"), loglik)}),
            "observed_data": xr.Dataset({"obs": (("obs_id", "feature"), X)}),
        }
    )
