"""Our EM against scikit-learn's GaussianMixture, side by side, from the same start.

For each size, both estimators fit the same standardised data (where our relative reg_covar and
scikit-learn's absolute one coincide) from the same weights, means and precisions, with each
library's default threading. Per-iteration time is the slope between a short and a long run, so
initialisation cost cancels; both are warmed up first, and the first fit of ours in the process
(which loads, or on a cold cache compiles, the Numba kernel) is reported on its own.

Peak extra memory is measured two ways during a 2-iteration fit:

- ``traced``: the peak of allocations seen by tracemalloc (NumPy and Python objects). Numba's
  scratch and accumulators are allocated outside tracemalloc's view, so this undercounts ours.
- ``rss``: growth of the process's peak resident set over its resident set before the fit
  (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``); it sees every allocation, but
  also the allocator's page reuse, so small numbers are noisy. ``n/a`` off Linux.

Prints the ratio ours / sklearn, and both fits run to convergence (``tol=1e-8``) from the
same start: the final log-likelihoods must agree to 1e-8 relative (the same optimum).

    python benchmarks/bench_em.py                # all sizes
    python benchmarks/bench_em.py --sizes small  # (N=1e4, D=2, K=3) only
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from bayesgmm import EMGaussianMixture

SIZES = {
    "small": (10_000, 2, 3),
    "medium": (100_000, 5, 5),
    "large": (1_000_000, 10, 8),
}


def make_data(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Overlapping components (EM needs tens of iterations) and a common start."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.5, size=(k, d))
    labels = rng.integers(k, size=n)
    a = rng.normal(scale=0.4, size=(k, d, d)) + np.eye(d)
    X = centres[labels] + np.einsum("nij,nj->ni", a[labels], rng.standard_normal((n, d)))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    start = {
        "weights_init": np.full(k, 1.0 / k),
        "means_init": X[rng.choice(n, size=k, replace=False)],
        "precisions_init": np.stack([np.eye(d)] * k),
    }
    return X, start


def fit_time(make, X: np.ndarray, n_iter: int) -> tuple[float, object]:
    est = make(n_iter)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X)
    return time.perf_counter() - t0, est


def per_iteration(make, X: np.ndarray, short: int, long: int, repeats: int) -> float:
    slopes = []
    for _ in range(repeats):
        t_short, _ = fit_time(make, X, short)
        t_long, _ = fit_time(make, X, long)
        slopes.append((t_long - t_short) / (long - short))
    return min(slopes)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so that RSS growth counts new pages."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(make, X: np.ndarray, n_iter: int) -> tuple[float, float | None]:
    """Peak extra MiB during one fit: (tracemalloc peak, peak RSS growth or None)."""
    gc.collect()
    _release_freed_memory()
    rss_before = _status_kib("VmRSS")
    rss_ok = rss_before is not None and _reset_peak_rss()
    tracemalloc.start()
    fit_time(make, X, n_iter)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status_kib("VmHWM") if rss_ok else None
    growth = None if rss_peak is None else max(0, rss_peak - rss_before) / 2**10
    return peak / 2**20, growth


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def run(name: str, n: int, d: int, k: int, repeats: int, optimum: str = "yes") -> None:
    X, start = make_data(n, d, k)
    common = dict(covariance_type="full", tol=0.0, reg_covar=1e-6, **start)
    if optimum == "only":
        print(f"{name:>6} N={n:>9,} D={d:>2} K={k}: {same_optimum(k, X, common)}", flush=True)
        return

    def ours(it):
        return EMGaussianMixture(k, max_iter=it, **common)

    def theirs(it):
        return GaussianMixture(k, max_iter=it, init_params="random_from_data", **common)

    short, long = (2, 12) if n >= 1_000_000 else (5, 30)
    first, _ = fit_time(ours, X, 1)
    fit_time(theirs, X, 1)
    t_ours = per_iteration(ours, X, short, long, repeats)
    t_sk = per_iteration(theirs, X, short, long, repeats)
    _, a = fit_time(ours, X, long)
    _, b = fit_time(theirs, X, long)
    rel = abs(a.lower_bound_ - b.lower_bound_) / abs(b.lower_bound_)
    optimum = same_optimum(k, X, common) if optimum == "yes" else "optimum not run"
    traced_ours, rss_ours = peak_memory(ours, X, 2)
    traced_sk, rss_sk = peak_memory(theirs, X, 2)
    print(
        f"{name:>6} N={n:>9,} D={d:>2} K={k}: per iteration ours {t_ours * 1e3:9.2f} ms, "
        f"sklearn {t_sk * 1e3:9.2f} ms, ratio {t_ours / t_sk:5.2f} "
        f"(first fit of ours in this process {first:.2f} s) | "
        f"log-lik after {long} it. ours {a.lower_bound_:.10f} sklearn {b.lower_bound_:.10f} "
        f"(rel. diff {rel:.1e}) | peak extra memory traced/rss: ours {traced_ours:.1f}/"
        f"{_mib(rss_ours)} MiB, sklearn {traced_sk:.1f}/{_mib(rss_sk)} MiB "
        f"(X is {X.nbytes / 2**20:.1f} MiB) | {optimum}",
        flush=True,
    )


CONVERGED_TOL = 1e-8


def same_optimum(k: int, X: np.ndarray, common: dict) -> str:
    """Both fitted to convergence (change of the mean log-likelihood below 1e-8)."""
    common = dict(common, tol=CONVERGED_TOL)
    ours = EMGaussianMixture(k, max_iter=5000, **common).fit(X)
    theirs = GaussianMixture(k, max_iter=5000, init_params="random_from_data", **common).fit(X)
    rel = abs(ours.lower_bound_ - theirs.lower_bound_) / abs(theirs.lower_bound_)
    return (
        f"converged (tol {common['tol']:g}): ours {ours.n_iter_} it. "
        f"{ours.lower_bound_:.12f}, sklearn {theirs.n_iter_} it. {theirs.lower_bound_:.12f} "
        f"(rel. diff {rel:.1e}, {'same optimum' if rel <= 1e-8 else 'DIFFERENT optimum'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--optimum",
        choices=["yes", "no", "only"],
        default="yes",
        help="also fit both to convergence (yes), skip that (no), or only that (only); at "
        "the large size scikit-learn needs many minutes to converge",
    )
    args = parser.parse_args()
    for name in args.sizes:
        repeats = args.repeats if name != "large" else 1
        run(name, *SIZES[name], repeats=repeats, optimum=args.optimum)


if __name__ == "__main__":
    main()
