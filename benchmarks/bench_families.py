"""Cost of the Bayesian covariance models: one log-density-and-gradient call, and a short run.

For each of the six models (VVV, EEE, VVI, EEI, VII, EII), on data simulated from a mixture of
that model (N rows, D features, K components), in one process:

- the E-step kernel's log density and gradient (what nutpie calls at every leapfrog step):
  median time of a call, as a ratio to VVV's in the same run;
- ``BayesianGMM`` with 4 chains of 500 tuning steps and 500 draws (EM, sampling, relabelling):
  wall time, gradient evaluations, the worst R-hat and the lowest bulk ESS.

    python benchmarks/bench_families.py            # N=1000, D=5, K=4
    python benchmarks/bench_families.py --n 300 --d 3 --k 3
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bayesgmm import BayesianGMM, SamplingWarning, build_model
from bayesgmm._logdensity import log_density_for
from bayesgmm.datasets import simulate_mixture

MODELS = ("VVV", "EEE", "VVI", "EEI", "VII", "EII")


def _covariances(name: str, k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    scales = rng.uniform(0.5, 2.0, size=(k, d))
    if name.startswith("E"):
        scales[:] = scales[0]
    if name in ("VII", "EII"):
        scales[:] = scales[:, :1]
    out = []
    for s in scales:
        corr = np.eye(d)
        if not name.endswith("I"):
            a = rng.normal(size=(d, d))
            cov = a @ a.T + d * np.eye(d)
            corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        out.append(corr * np.outer(s, s))
    out = np.array(out)
    if name == "EEE":
        out[:] = out[0]
    return out


def _data(name: str, n: int, d: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(k, d)) * 4.0
    sim = simulate_mixture(
        n,
        weights=np.full(k, 1 / k),
        means=means,
        covariances=_covariances(name, k, d, rng),
        random_state=2,
    )
    return sim.X


def _call_time(name: str, X: np.ndarray, k: int, repeats: int = 2000) -> float:
    density = log_density_for(build_model(X, k, covariance_type=name))
    x = np.random.default_rng(0).normal(size=density.n_dim) * 0.1
    data = np.ascontiguousarray(X, dtype=np.float64)
    density(x, data)  # compiled and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        density(x, data)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _run(name: str, X: np.ndarray, k: int) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = BayesianGMM(
            k,
            covariance_type=name,
            draws=500,
            tune=500,
            chains=4,
            random_seed=0,
            progressbar=False,
        ).fit(X)
    seconds = time.perf_counter() - start
    checks = fit.diagnostics().set_index("check")["value"]
    steps = int(fit.idata_.sample_stats["n_steps"].sum())
    return {
        "seconds": seconds,
        "gradients": steps,
        "r_hat": checks["r_hat"],
        "ess_bulk": checks["ess_bulk"],
        "modes": len(fit.modes()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    data = {name: _data(name, args.n, args.d, args.k) for name in MODELS}
    calls = {name: _call_time(name, data[name], args.k) for name in MODELS}
    print(f"N={args.n} D={args.d} K={args.k}")
    print(
        f"{'model':6} {'call us':>8} {'vs VVV':>7} {'run s':>7} {'grads':>8} "
        f"{'r_hat':>6} {'ess':>6} {'modes':>5}"
    )
    for name in MODELS:
        r = _run(name, data[name], args.k)
        print(
            f"{name:6} {calls[name] * 1e6:8.1f} {calls[name] / calls['VVV']:7.2f} "
            f"{r['seconds']:7.1f} {r['gradients']:8d} {r['r_hat']:6.3f} {r['ess_bulk']:6.0f} "
            f"{r['modes']:5d}"
        )


if __name__ == "__main__":
    main()
