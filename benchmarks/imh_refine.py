"""Prototype (issue 15): NUTS, then independence Metropolis-Hastings from a Gaussian mixture
fitted to its draws, for posteriors whose sub-modes NUTS crosses rarely. The package's step
(:mod:`bayesgmm._independence`, run by ``sample_posterior`` when the gates still fail after the
NUTS follow-ups) grew out of this; the script now uses its proposal and chains, with the
rounds, steps and components chosen on the command line.

Usage::

    python benchmarks/imh_refine.py data.csv:3 --seed 1 [--steps 20000] [--components 3]

The default model and the first whitened nutpie run (4 chains, 300 tuning steps, 1000 draws) as
:mod:`diagnose_mixing` runs them; then a proposal ``q``: a Gaussian mixture with
``--components`` components (default: by BIC) fitted (scikit-learn) to the second halves of the
NUTS chains in the unconstrained space, each covariance inflated by ``--inflate``, and a
defensive component (the draws' mean, 4 times their covariance) of weight 0.1, so ``p / q``
stays bounded further out. 4 independence Metropolis-Hastings chains of ``--steps`` steps start
at the NUTS chains' last draws: propose ``y ~ q``, accept with ``min(1, p(y) q(x) / (p(x)
q(y)))``. ``q`` is fixed before these chains start, so each is an exact MCMC kernel for the
posterior (the first run only chose it). With ``--rounds`` above 1, each round but the last (a
quarter of the steps) only refits ``q`` to the draws so far (the first run's second halves and
every fourth draw of each round's second halves). One step costs one log-density evaluation;
NUTS costs 7-30 gradients a draw.

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

from bayesgmm import BayesianGMM, diagnostics
from bayesgmm._backends import _run_nutpie
from bayesgmm._idata import get_group
from bayesgmm._independence import fit_proposal, independence_chain, raw_tree
from bayesgmm._logdensity import log_density_for
from bayesgmm.model import observed_rows
from bayesgmm.modes import mode_table
from bayesgmm.sampling import _UNCONSTRAINED, _kernel_compiled, _kernel_laplace, _results


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
    parser.add_argument("--components", type=int, default=None, help="default: by BIC")
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
        proposal = fit_proposal(pool, args.seed, components=args.components, inflate=args.inflate)
        chains = [
            independence_chain(lambda x: density(x, rows)[0], proposal, start, steps, rng)
            for start in starts
        ]
        draws = np.stack([c.draws for c in chains])
        pool = np.concatenate([pool, draws[:, steps // 2 :: 4].reshape(-1, pool.shape[1])])
        starts = draws[:, -1]
    imh_seconds = time.perf_counter() - started
    imh, _ = _results(raw_tree(chains), model=model, em=em, kernel=True)
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
            "acceptance": [round(c.acceptance, 3) for c in chains],
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
