"""Prototype (issue 15): NUTS, then independence Metropolis-Hastings from a Gaussian mixture
fitted to its draws, for posteriors whose sub-modes NUTS crosses rarely.

Usage::

    python benchmarks/imh_refine.py data.csv:3 --seed 1 [--steps 20000] [--components 3]

The default model and the first whitened nutpie run (4 chains, 300 tuning steps, 1000 draws)
as :mod:`diagnose_mixing` runs them; then a proposal ``q``: a Gaussian mixture with
``--components`` components fitted (scikit-learn) to the second halves of the NUTS chains in
the unconstrained space, each covariance inflated by ``--inflate``, and a defensive component
(the draws' mean, 4 times their covariance) of weight 0.1, so ``p / q`` stays bounded further
out. 4 independence Metropolis-Hastings chains of ``--steps`` steps start at the NUTS chains'
last draws: propose ``y ~ q``, accept with ``min(1, p(y) q(x) / (p(x) q(y)))``. ``q`` is fixed
before these chains start, so each is an exact MCMC kernel for the posterior (the first run
only chose it). With ``--rounds`` above 1, each round but the last (a quarter of the steps)
only refits ``q`` to the draws so far (the first run's second halves and every fourth draw of
each round's second halves). One step costs one log-density evaluation; NUTS costs 7-30
gradients a draw.

Printed: the NUTS run's gates and gradients, the independence chains' acceptance, their gates
through bayesgmm's own relabelling and diagnostics, and the label-invariant posterior means
(components sorted by their mean of the first feature) of both, with the NUTS draws' Monte
Carlo standard error (from their bulk ESS) beside the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from bayesgmm import BayesianGMM, diagnostics
from bayesgmm._backends import _run_nutpie
from bayesgmm._idata import get_group, new_tree
from bayesgmm._logdensity import log_density_for
from bayesgmm.model import observed_rows
from bayesgmm.modes import mode_table
from bayesgmm.sampling import _UNCONSTRAINED, _kernel_compiled, _kernel_laplace, _results


class Proposal:
    """A Gaussian mixture in the unconstrained space (fitted components plus a wide one)."""

    def __init__(self, draws: np.ndarray, components: int, inflate: float, seed: int):
        fitted = GaussianMixture(
            components, covariance_type="full", random_state=seed, reg_covar=1e-8
        ).fit(draws)
        self.means = [*fitted.means_, draws.mean(axis=0)]
        covariances = [inflate * c for c in fitted.covariances_] + [4.0 * np.cov(draws.T)]
        self.weights = np.append(0.9 * fitted.weights_, 0.1)
        self.factors = [np.linalg.cholesky(c) for c in covariances]
        self.parts = [
            multivariate_normal(m, c) for m, c in zip(self.means, covariances, strict=True)
        ]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        which = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, len(self.means[0])))
        return np.stack(
            [self.means[j] + self.factors[j] @ e for j, e in zip(which, noise, strict=True)]
        )

    def log_density(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        terms = [
            np.log(w) + np.atleast_1d(p.logpdf(x))
            for w, p in zip(self.weights, self.parts, strict=True)
        ]
        return np.logaddexp.reduce(np.stack(terms), axis=0)


def independence_chain(log_p, proposal, start, steps, rng) -> tuple[np.ndarray, float]:
    """``steps`` independence Metropolis-Hastings steps from ``start``: (draws, acceptance)."""
    candidates = proposal.sample(rng, steps)
    log_ratio = np.array([log_p(y) for y in candidates]) - proposal.log_density(candidates)
    current, current_ratio = start, log_p(start) - proposal.log_density(start)[0]
    draws, accepted = np.empty((steps, start.size)), 0
    for i, threshold in enumerate(np.log(rng.uniform(size=steps))):
        if threshold < log_ratio[i] - current_ratio:
            current, current_ratio, accepted = candidates[i], log_ratio[i], accepted + 1
        draws[i] = current
    return draws, accepted / steps


def raw_tree(theta: np.ndarray, n_steps: np.ndarray, diverging: np.ndarray):
    """nutpie-like raw results of unconstrained draws ``(chain, draw, n_dim)``."""
    coords = {"chain": np.arange(theta.shape[0]), "draw": np.arange(theta.shape[1])}
    posterior = xr.Dataset({_UNCONSTRAINED: (("chain", "draw", "dim"), theta)}, coords)
    stats = xr.Dataset(
        {"n_steps": (("chain", "draw"), n_steps), "diverging": (("chain", "draw"), diverging)},
        coords,
    )
    return new_tree({"posterior": posterior, "sample_stats": stats})


def sorted_summary(idata) -> xr.Dataset:
    """Weights and means with the components sorted by their mean of the first feature."""
    posterior = get_group(idata, "posterior")
    order = posterior["means"].isel(feature=0).argsort(axis=-1)
    weights = np.take_along_axis(posterior["weights"].values, order.values, axis=-1)
    means = np.take_along_axis(posterior["means"].values, order.values[..., None], axis=-2)
    dims = ("chain", "draw", "sorted")
    return xr.Dataset(
        {"weights": (dims, weights), "means": ((*dims, "feature"), means)},
        coords={"feature": posterior["feature"].values},
    )


def gates(idata) -> dict:
    values = diagnostics(idata).set_index("check")["value"]
    return {k: round(float(values[k]), 3) for k in ("r_hat", "ess_bulk", "ess_tail", "divergences")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", help="path.csv:k")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--components", type=int, default=3)
    parser.add_argument("--inflate", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=1, help="fits of the proposal")
    args = parser.parse_args()
    path, k = args.case.rsplit(":", 1)
    tiny = dict(draws=10, tune=10, max_draws=10, chains=1, progressbar=False)
    fit = BayesianGMM(int(k), random_seed=args.seed, **tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit.fit(pd.read_csv(path))
    model, em = fit.model_, fit.em_
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    approx = _kernel_laplace(model, em, "laplace")
    run = dict(draws=1000, tune=300, chains=4, seed=args.seed, target_accept=0.8)
    started = time.perf_counter()
    raw, _ = _run_nutpie(_kernel_compiled(model, em, density, approx), progressbar=False, **run)
    nuts_seconds = time.perf_counter() - started
    stats = get_group(raw, "sample_stats")
    theta = get_group(raw, "posterior")[_UNCONSTRAINED].transpose("chain", "draw", ...).values
    nuts, _ = _results(raw, model=model, em=em, kernel=True)

    rng = np.random.default_rng(args.seed)
    pool = theta[:, theta.shape[1] // 2 :].reshape(-1, theta.shape[2])
    starts = theta[:, -1]
    started = time.perf_counter()
    for round_ in range(args.rounds):  # adaptation rounds: the proposal refitted to the draws
        steps = args.steps if round_ == args.rounds - 1 else args.steps // 4
        proposal = Proposal(pool, args.components, args.inflate, args.seed)
        chains = [
            independence_chain(lambda x: density(x, rows)[0], proposal, start, steps, rng)
            for start in starts
        ]
        draws = np.stack([c[0] for c in chains])
        pool = np.concatenate([pool, draws[:, steps // 2 :: 4].reshape(-1, pool.shape[1])])
        starts = draws[:, -1]
    imh_seconds = time.perf_counter() - started
    shape = draws.shape[:2]
    imh, _ = _results(
        raw_tree(draws, np.ones(shape), np.zeros(shape, dtype=bool)),
        model=model,
        em=em,
        kernel=True,
    )
    row = {
        "case": args.case,
        "seed": args.seed,
        "load": round(os.getloadavg()[0], 2),
        "nuts": {
            "seconds": round(nuts_seconds, 1),
            "gradients": int(stats["n_steps"].values.sum()),
            **gates(nuts),
        },
        "imh": {
            "seconds": round(imh_seconds, 1),
            "evaluations": int(draws.shape[0] * args.steps * (1 + (args.rounds - 1) / 4)),
            "acceptance": [round(c[1], 3) for c in chains],
            **gates(imh),
        },
    }
    print("IMH " + json.dumps(row))
    for name, tree in (("nuts", nuts), ("imh", imh)):
        table = mode_table(tree)
        print(f"{name} modes:\n{table.to_string() if table is not None else 'one'}")
    a, b = sorted_summary(nuts), sorted_summary(imh)
    error = {v: a[v].std(("chain", "draw")) / np.sqrt(az.ess(a)[v]) for v in a.data_vars}
    for v in a.data_vars:
        for name, tree in (("nuts", a), ("imh", b)):
            spread = tree[v].std(("chain", "draw")).round(3).values
            print(
                f"{v} ({name}): mean {tree[v].mean(('chain', 'draw')).round(3).values}, sd {spread}"
            )
        difference = b[v].mean(("chain", "draw")) - a[v].mean(("chain", "draw"))
        print(f"{v}: imh - nuts in nuts MCSEs\n{(difference / error[v]).round(1).values}")


if __name__ == "__main__":
    main()
