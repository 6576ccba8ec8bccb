"""What slowly mixing chains do, in label-invariant views and against the Laplace metric.

Usage::

    python benchmarks/diagnose_mixing.py data.csv:3 --seed 1 [--draws 1000] [--save out.npz]

Fits EM and builds the default model as ``BayesianGMM`` does, finds the posterior mode and its
Laplace approximation (:mod:`bayesgmm._precondition`), runs one whitened nutpie run with the
E-step kernel (no follow-ups, no drift watch) and prints (issue 15):

- the run: leapfrog steps per draw, step sizes and divergences per chain, and each chain's mean
  log density by half against the Laplace typical set (``log p(mode) - n / 2``, sd
  ``sqrt(n / 2)``);
- how wrong the Laplace metric is: per unconstrained coordinate (named by value variable and
  offset), the draws' sd over the Laplace sd and the draws' mean shift from the mode in Laplace
  sds, worst first; the top eigenvalues of the whitened draws' covariance (1 where the Laplace
  approximation is right) and the coordinates the top eigenvector loads on;
- the slowest coordinates: bulk ESS and R-hat, each chain's means over fifths of its draws (a
  chain that sits for hundreds of draws in one of two levels is hopping between configurations)
  and a text histogram of the slowest one;
- per chain and half, the components sorted by their mean of the first feature: weights,
  those means and the log-determinants of the covariances (standardised scale), and the
  smallest weight (a weight near 0 with a wandering covariance is a funnel).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import arviz as az
import numpy as np
import pandas as pd

from bayesgmm import BayesianGMM
from bayesgmm._backends import _run_nutpie
from bayesgmm._idata import get_group
from bayesgmm._logdensity import log_density_for
from bayesgmm.model import observed_rows
from bayesgmm.sampling import _UNCONSTRAINED, _kernel_compiled, _kernel_laplace


def coordinate_names(model) -> list[str]:
    """``value_variable[offset]`` for every coordinate of nutpie's unconstrained vector."""
    point = model.initial_point()
    names = []
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv].name
        names += [f"{value}[{i}]" for i in range(np.size(point[value]))]
    return names


def histogram(values: np.ndarray, bins: int = 16) -> str:
    counts, edges = np.histogram(values, bins=bins)
    scale = max(counts.max() // 40, 1)
    return "\n".join(
        f"  {e:8.3f} {'#' * (c // scale)}" for e, c in zip(edges, counts, strict=False)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", help="path.csv:k")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--target-accept", type=float, default=0.8)
    parser.add_argument("--covariance-type", default="full")
    parser.add_argument("--save", help="npz file for the unconstrained draws and log densities")
    args = parser.parse_args()
    path, k = args.case.rsplit(":", 1)
    X = pd.read_csv(path)
    tiny = dict(draws=10, tune=10, max_draws=10, chains=1, progressbar=False)
    fit = BayesianGMM(int(k), covariance_type=args.covariance_type, random_seed=args.seed, **tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit.fit(X)  # EM, priors and model exactly as the default path; the tiny run is unused
    model, em = fit.model_, fit.em_
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    approx = _kernel_laplace(model, em, "laplace")
    if approx is None:
        raise SystemExit("no usable Laplace approximation: nothing to compare with")
    n = density.n_dim
    print(
        f"{args.case} seed {args.seed}: n_dim {n}, Laplace {approx.kind}, condition "
        f"{approx.condition:.3g}, log p(mode) {approx.log_density:.2f}, "
        f"{approx.n_gradients} gradients; other EM optima {len(fit.starts_)}"
    )
    run = dict(
        draws=args.draws,
        tune=args.tune,
        chains=4,
        seed=args.seed,
        target_accept=args.target_accept,
        progressbar=False,
    )
    started = time.perf_counter()
    raw, _ = _run_nutpie(_kernel_compiled(model, em, density, approx), **run)
    seconds = time.perf_counter() - started
    stats = get_group(raw, "sample_stats")
    theta = get_group(raw, "posterior")[_UNCONSTRAINED].transpose("chain", "draw", ...).values
    chains, draws, _ = theta.shape
    print(
        f"run: {seconds:.1f} s (load {os.getloadavg()[0]:.1f}); steps/draw "
        f"{stats['n_steps'].mean('draw').values.round(1)}, step size "
        f"{stats['step_size'].mean('draw').values.round(3)}, divergences "
        f"{stats['diverging'].sum('draw').values}"
    )
    logp = np.array([[density(theta[c, i], rows)[0] for i in range(draws)] for c in range(chains)])
    half = draws // 2
    print(
        f"log p: Laplace typical set {approx.log_density - n / 2:.2f} +- {np.sqrt(n / 2):.2f}; "
        "chains by half "
        + ", ".join(
            f"{logp[c, :half].mean():.2f}/{logp[c, half:].mean():.2f}" for c in range(chains)
        )
    )

    names = coordinate_names(model)
    laplace_sd = np.sqrt(np.sum(approx.factor**2, axis=1))
    pooled = theta.reshape(-1, n)
    ratio = pooled.std(axis=0) / laplace_sd
    shift = (pooled.mean(axis=0) - approx.mode) / laplace_sd
    print(
        "draws' sd / Laplace sd (and mean shift in Laplace sds), worst 8; median "
        f"{np.median(ratio):.2f}:"
    )
    for i in np.argsort(-ratio)[:8]:
        print(f"  {names[i]:24s} {ratio[i]:5.2f} ({shift[i]:+.2f})")
    z = approx.to_z(pooled)
    values, vectors = np.linalg.eigh(np.cov(z.T))
    top = vectors[:, -1]
    print(
        f"whitened draws' covariance: eigenvalues {values[:2].round(2)} ... "
        f"{values[-4:].round(2)}; top vector loads on "
        + ", ".join(f"{names[i]} {top[i]:+.2f}" for i in np.argsort(-np.abs(top))[:6])
    )

    dataset = az.convert_to_dataset({"theta": theta})
    ess, rhat = az.ess(dataset)["theta"].values, az.rhat(dataset)["theta"].values
    slow = np.argsort(ess)[:4]
    print("slowest coordinates (bulk ESS, R-hat; each chain's means over fifths of its draws):")
    for i in slow:
        fifths = theta[:, : draws - draws % 5, i].reshape(chains, 5, -1).mean(axis=2).round(2)
        print(f"  {names[i]:24s} ESS {ess[i]:6.0f} R-hat {rhat[i]:.3f} {fifths.tolist()}")
    print(f"histogram of {names[slow[0]]}:\n{histogram(pooled[:, slow[0]])}")

    result = density.posterior(theta, model.coords)
    weights, means = result["weights"].values, result["means"].values
    log_det = np.linalg.slogdet(result["covariances"].values)[1]
    order = np.argsort(means[..., 0], axis=-1)

    def by_first_feature(a):
        return np.take_along_axis(a, order, axis=-1)

    feature = model.coords["feature"][0]
    print(f"components sorted by their mean {feature!r}: weights | means | log det | min weight")
    for c in range(chains):
        for part in (slice(0, half), slice(half, draws)):
            w = by_first_feature(weights)[c, part]
            print(
                f"  chain {c} draws {part.start:5d}+: {w.mean(0).round(3)} | "
                f"{by_first_feature(means[..., 0])[c, part].mean(0).round(2)} | "
                f"{by_first_feature(log_det)[c, part].mean(0).round(2)} | {w.min():.4f}"
            )
    if args.save:
        np.savez(
            args.save,
            theta=theta,
            logp=logp,
            mode=approx.mode,
            factor=approx.factor,
            n_steps=stats["n_steps"].values,
            diverging=stats["diverging"].values,
        )


if __name__ == "__main__":
    main()
