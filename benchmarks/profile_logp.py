"""Cost of one logp-and-gradient call, and how well chain threads overlap, for each backend.

nutpie runs chains in threads and calls back into Python for every logp-and-gradient
evaluation. This script times the function nutpie calls, for the E-step kernel (the default,
``backend="kernel"``) and for the PyMC graph compiled by JAX (``backend="jax"``), on one
thread, then the throughput of two threads calling it at once: a speedup near 2 means the
chains overlap, near 1 means the call is serialised (the GIL, or the dispatch of the XLA
executable). It is the measurement behind the README's "Speed of the Bayesian path".

    python benchmarks/profile_logp.py                 # N = 20, 272, 5000 (D=2, K=3)
    python benchmarks/profile_logp.py --rows 5000 --calls 500
"""

from __future__ import annotations

import argparse
import threading
import time
import warnings

import numpy as np
from bench_mcmc import simulated  # the benchmark's data, at any size

from bayesgmm import EMGaussianMixture, build_model
from bayesgmm._logdensity import log_density_for
from bayesgmm.sampling import _compiled_nutpie, _flat_start


def compiled_call(n_rows: int, backend: str):
    """The logp function nutpie calls for the K=3 model on ``n_rows`` rows of the benchmark's
    data, with its start point and data."""
    import jax.numpy as jnp

    X = simulated(n_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        em = EMGaussianMixture(3, random_state=0).fit(X)
    model = build_model(X, 3)
    start = _flat_start(model, em)
    if backend == "kernel":
        density = log_density_for(model)
        data = np.ascontiguousarray(X, dtype=np.float64)
        return (lambda x, X: density(x, X)), start, data
    compiled = _compiled_nutpie(model, em, "jax", None)
    return compiled._make_logp_func(), start, jnp.asarray(model["X"].get_value())


def throughput(logp, start, data, calls: int, threads: int) -> float:
    """Seconds per call, over ``threads`` threads each making ``calls`` calls."""

    def loop():
        for _ in range(calls):
            logp(start + 0.0, X=data)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - t0) / (calls * threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20, 272, 5000])
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    for n_rows in args.rows:
        for backend in ("kernel", "jax"):
            logp, start, data = compiled_call(n_rows, backend)
            for _ in range(20):  # warm up
                logp(start, X=data)
            one = throughput(logp, start, data, args.calls, 1)
            two = throughput(logp, start, data, args.calls, 2)
            print(
                f"N={n_rows:>6} {backend:>6}: {one * 1e3:.3f} ms per call on one thread; two "
                f"threads {two * 1e3:.3f} ms per call, speedup {one / two:.2f} (2.00 = full "
                "overlap)",
                flush=True,
            )


if __name__ == "__main__":
    main()
