"""InferenceData built without sampling: draws scattered around an EM fit (fast tests)."""

from __future__ import annotations

import arviz as az
import numpy as np

from bayesgmm import _gaussian as g
from bayesgmm._idata import add_groups
from bayesgmm.sampling import em_dataset

DIMS = {
    "weights": ["component"],
    "means": ["component", "feature"],
    "covariances": ["component", "feature", "feature_bis"],
    "stds": ["component", "feature"],
    "correlations": ["component", "feature", "feature_bis"],
}


def fake_idata(em, X, *, n_chain=2, n_draw=200, spread=0.05, mean_shift=0.0, seed=0):
    """Posterior draws around ``em`` (means shifted by ``mean_shift`` posterior sds)."""
    rng = np.random.default_rng(seed)
    k, d = em.n_components, em.n_features_in_
    shape = (n_chain, n_draw)
    weights = rng.dirichlet(em.weights_ * 400, size=shape)
    scale = spread * np.sqrt(np.diagonal(em.covariances_, axis1=1, axis2=2))
    means = em.means_ + scale * (mean_shift + rng.standard_normal((*shape, k, d)))
    cov = em.covariances_ * np.exp(spread * rng.standard_normal((*shape, k, 1, 1)))
    stds, corr = g.std_and_correlation(cov)
    names = [f"x{j}" for j in range(d)]
    coords = {"component": np.arange(k), "feature": names, "feature_bis": names}
    idata = az.from_dict(
        posterior={
            "weights": weights,
            "means": means,
            "covariances": cov,
            "stds": stds,
            "correlations": corr,
        },
        observed_data={"obs": X},
        coords={**coords, "obs_id": np.arange(len(X))},
        dims={**DIMS, "obs": ["obs_id", "feature"]},
    )
    log_lik = np.stack(
        [
            np.stack(
                [
                    g.log_responsibilities(
                        X,
                        weights[c, s],
                        means[c, s],
                        g.precision_cholesky(cov[c, s], "full"),
                        "full",
                    )[0]
                    for s in range(n_draw)
                ]
            )
            for c in range(n_chain)
        ]
    )
    idata.add_groups(
        {"log_likelihood": {"obs": log_lik}},
        coords={"obs_id": np.arange(len(X))},
        dims={"obs": ["obs_id"]},
    )
    add_groups(idata, {"em": em_dataset(em, coords)})
    return idata
