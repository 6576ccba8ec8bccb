"""EM with missing cells: its speed against complete data, and its error against the workarounds.

Part 1, speed. The same simulated data (N=1e5, D=5, K=5, full covariances) fitted complete and
with 20% of cells removed completely at random (MCAR), from the same start, each library
default (Numba's threads). Per-iteration time is the slope between a short and a long run (so
set-up cancels); the whole fit runs to ``tol=1e-6``. Prints the ratio missing / complete (the
bar: within 3x per iteration).

Part 2, accuracy. Real data sets (``benchmarks/data/<name>.csv``) are each fitted complete (VVV, K
as its label count, ``n_init=5``): that fit is the reference. Then 10-40% of its cells are
removed at random (several seeds) and the mixture is refitted from the reference's parameters
by (a) our EM on the observed cells, (b) EM on the complete rows only ("drop rows") and (c)
EM on the data with each missing cell replaced by its feature's observed mean ("mean
imputation"). Errors, against the reference, in the reference's standard deviations:
the RMS difference of the means, and of the covariances (each entry divided by the product of
the two features' standard deviations). A fit that cannot run (fewer complete rows than the
model needs) is counted as failed; with few complete rows "drop rows" still runs but
collapses components (its warnings are silenced here), which its error shows.

    python benchmarks/bench_missing.py                    # both parts
    python benchmarks/bench_missing.py --part accuracy --data banknote --seeds 5
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from bayesgmm import CollapsedComponentWarning, EMGaussianMixture
from bayesgmm.datasets import simulate_mixture

DATA = os.path.join(os.path.dirname(__file__), "data")


def _simulated(n: int, d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    a = rng.normal(size=(k, d, d)) / np.sqrt(d)
    covariances = a @ np.swapaxes(a, 1, 2) + 0.3 * np.eye(d)
    sim = simulate_mixture(
        n, weights=np.full(k, 1 / k), means=means, covariances=covariances, random_state=seed
    )
    start = {
        "weights_init": np.full(k, 1 / k),
        "means_init": means + rng.normal(scale=0.5, size=means.shape),
        "precisions_init": np.linalg.inv(covariances + 0.5 * np.eye(d)),
    }
    return np.asarray(sim.X, dtype=float), start


def _mcar(X: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``X`` with ``fraction`` of its cells removed at random; no row loses every cell."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(X.shape) < fraction] = np.nan
    empty = np.flatnonzero(np.isnan(out).all(axis=1))
    keep = rng.integers(X.shape[1], size=empty.size)
    out[empty, keep] = X[empty, keep]
    return out


def _timed_fit(X, start, **kw) -> tuple[float, EMGaussianMixture]:
    em = EMGaussianMixture(start["means_init"].shape[0], **start, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        em.fit(X)
        return time.perf_counter() - t0, em


def _per_iteration(X, start, short: int = 5, long: int = 30, repeats: int = 5) -> float:
    times = {}
    for n_iter in (short, long):
        times[n_iter] = min(
            _timed_fit(X, start, tol=0.0, max_iter=n_iter)[0] for _ in range(repeats)
        )
    return (times[long] - times[short]) / (long - short)


def speed(n: int = 100_000, d: int = 5, k: int = 5, fraction: float = 0.2) -> None:
    X, start = _simulated(n, d, k)
    Xm = _mcar(X, fraction, seed=1)
    incomplete = np.isnan(Xm).any(axis=1).mean()
    patterns = len(np.unique(np.isnan(Xm), axis=0))
    print(f"## Speed: N={n}, D={d}, K={k}, {fraction:.0%} of cells MCAR")
    print(f"incomplete rows {incomplete:.1%}, missingness patterns {patterns}")
    _timed_fit(X, start, max_iter=2)  # warm up (load the compiled kernels)
    _timed_fit(Xm, start, max_iter=2)
    per = {name: _per_iteration(data, start) for name, data in (("complete", X), ("missing", Xm))}
    whole = {}
    for name, data in (("complete", X), ("missing", Xm)):
        seconds, em = _timed_fit(data, start, tol=1e-6, max_iter=1000)
        whole[name] = (seconds, em.n_iter_)
    print("| data | s / iteration | whole fit (s) | iterations |")
    print("|---|---|---|---|")
    for name in per:
        print(f"| {name} | {per[name]:.4f} | {whole[name][0]:.2f} | {whole[name][1]} |")
    print(f"ratio missing / complete: per iteration {per['missing'] / per['complete']:.2f}x, ")
    print(f"whole fit {whole['missing'][0] / whole['complete'][0]:.2f}x (bar: within 3x)\n")


def _errors(em: EMGaussianMixture, ref: EMGaussianMixture, std: np.ndarray) -> tuple[float, float]:
    mean_err = np.sqrt(np.mean(((em.means_ - ref.means_) / std) ** 2))
    cov_err = np.sqrt(np.mean(((em.covariances_ - ref.covariances_) / np.outer(std, std)) ** 2))
    return float(mean_err), float(cov_err)


def _refit(X, ref: EMGaussianMixture) -> EMGaussianMixture:
    start = dict(weights_init=ref.weights_, means_init=ref.means_, precisions_init=ref.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", CollapsedComponentWarning)
        warnings.simplefilter("ignore", UserWarning)
        return EMGaussianMixture(ref.n_components, tol=1e-6, max_iter=1000, **start).fit(X)


def _methods(Xm: np.ndarray) -> dict[str, np.ndarray]:
    complete_rows = Xm[~np.isnan(Xm).any(axis=1)]
    mean_imputed = np.where(np.isnan(Xm), np.nanmean(Xm, axis=0), Xm)
    return {"EM (missing cells)": Xm, "drop rows": complete_rows, "mean imputation": mean_imputed}


def accuracy(name: str = "banknote", seeds: int = 5) -> None:
    X = pd.read_csv(os.path.join(DATA, f"{name}.csv")).to_numpy(float)
    k = pd.read_csv(os.path.join(DATA, f"{name}_labels.csv"))["class"].nunique()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = EMGaussianMixture(k, n_init=5, random_state=0, tol=1e-6, max_iter=1000).fit(X)
    std = X.std(axis=0)
    print(f"## Accuracy: {name} (N={X.shape[0]}, D={X.shape[1]}), VVV, K={k}, {seeds} seeds")
    print("Errors against the complete-data fit, in its standard deviations (mean over seeds;")
    print("failed = fits that could not run, e.g. fewer complete rows than parameters).\n")
    print("| cells missing | complete rows | method | mean error | covariance error | failed |")
    print("|---|---|---|---|---|---|")
    for fraction in (0.1, 0.2, 0.3, 0.4):
        results: dict[str, list] = {}
        rows = []
        for seed in range(seeds):
            Xm = _mcar(X, fraction, seed)
            rows.append(int((~np.isnan(Xm).any(axis=1)).sum()))
            for method, data in _methods(Xm).items():
                try:
                    results.setdefault(method, []).append(_errors(_refit(data, ref), ref, std))
                except (ValueError, ArithmeticError):
                    results.setdefault(method, []).append(None)
        for method, errs in results.items():
            ok = np.array([e for e in errs if e is not None]).reshape(-1, 2)
            means = ok.mean(axis=0) if len(ok) else (np.nan, np.nan)
            print(
                f"| {fraction:.0%} | {np.mean(rows):.0f} | {method} | {means[0]:.4f} | "
                f"{means[1]:.4f} | {len(errs) - len(ok)}/{len(errs)} |"
            )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "accuracy", "both"), default="both")
    parser.add_argument("--data", default="banknote,thyroid", help="comma-separated names")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores\n")
    if args.part in ("speed", "both"):
        speed(n=args.n)
    if args.part in ("accuracy", "both"):
        for name in args.data.split(","):
            accuracy(name, args.seeds)


if __name__ == "__main__":
    main()
