"""Time from data to a converged posterior: bayesgmm's default path against PyMC recipes.

Side by side in one process, on the same model (``bayesgmm.build_model``) and data:

- **bayesgmm**: EM, then nutpie with every chain at the EM mode, then relabelling; the log
  density and gradient come from the E-step kernel (the default), and, as a second row, from
  the PyMC graph compiled by JAX (``backend="jax"``);
- **(a) standard recipe**: ``pm.sample()`` with its defaults, as users run it: PyMC 6 hands the
  model to nutpie (compiled by Numba), with jittered starts; chains often end in different
  modes;
- **(b) hand-tuned PyMC**, the faster of two recipes that start every chain at EM:
  (b1) PyMC's own NUTS with EM ``initvals``, ``init="adapt_diag"``, one BLAS thread per process
  (the best recipe on PyMC 5), and (b2) ``pm.sample`` handing the model to nutpie with the
  JAX backend (which compiles in seconds), EM ``initvals`` and no jitter.

Each run is split into EM, compile, sampling and relabelling (with the pointwise
log-likelihood), and judged after relabelling to EM: converged means R-hat <= 1.01 and bulk ESS
>= 400 for every weight, mean and covariance entry. Every recipe first runs once untimed so the
timed runs see warm caches; bayesgmm's cold-cache time is measured in a fresh process with empty
cache directories (JAX, PyTensor and Numba) and printed separately.

    python benchmarks/bench_mcmc.py                 # both data sets
    python benchmarks/bench_mcmc.py --data faithful # Old Faithful K=2 only
    python benchmarks/bench_mcmc.py --data --hard correlated collinear wine crabs
    python benchmarks/bench_mcmc.py --data --real wine iris banknote diabetes crabs compositional
    python benchmarks/bench_mcmc.py --data --real DIR/quakes.csv:3 DIR/fgl.csv:3 --seeds 1 2

``--hard`` runs the hard posteriors of ``hard_cases.py`` (strong within-component
correlation, near-collinear features, real data the tests never see) before and after
preconditioning: bayesgmm unwhitened from EM (``precondition="none"``, tune 1000) against the
default path, with gradient evaluations (warm-up included), divergences, R-hat, bulk and tail
ESS, and with ``--reference-draws`` each posterior against a long unwhitened run.
``--real`` runs the default ``BayesianGMM`` end to end on each case (``--seeds`` of them):
time, R-hat, bulk and tail ESS, divergences, the modes reported, and each chain's drift of
its log-likelihood (last quarter minus first quarter of its draws), the follow-ups that ran and
which sampler's draws were kept; besides the named cases it takes any ``path.csv:K``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pymc as pm
from hard_cases import HARD_CASES, report_case, run_default
from threadpoolctl import threadpool_limits

from bayesgmm import (
    BayesianGMM,
    EMGaussianMixture,
    build_model,
    load_faithful,
    simulate_mixture,
)
from bayesgmm._idata import add_groups
from bayesgmm._logdensity import log_density_for
from bayesgmm.diagnostics import parameter_diagnostics
from bayesgmm.sampling import (
    CompileCache,
    _compiled_nutpie,
    _flat_start,
    em_dataset,
    relabel,
    sample_posterior,
)
from bayesgmm.start import em_initial_values

DRAWS, TUNE, CHAINS = 1000, 1000, 4
STANDARD = "(a) pm.sample() defaults (nutpie, Numba)"
TUNED = "(b1) PyMC NUTS: EM initvals, adapt_diag, 1 BLAS"
TUNED_NUTPIE = "(b2) pm.sample -> nutpie/JAX: EM initvals, no jitter"


class OverBudget(Exception):
    """A recipe ran longer than --budget seconds and was stopped."""


def _alarm(signum, frame):
    raise OverBudget


@dataclass
class Timing:
    name: str
    em: float = 0.0
    compile: float = 0.0
    sampling: float = 0.0
    relabel: float = 0.0
    r_hat: float = np.nan
    ess_bulk: float = np.nan
    raw_r_hat: float = np.nan
    stopped: bool = False

    @property
    def total(self) -> float:
        return self.em + self.compile + self.sampling + self.relabel

    @property
    def converged(self) -> bool:
        return not self.stopped and self.r_hat <= 1.01 and self.ess_bulk >= 400


def simulated(n_rows: int) -> np.ndarray:
    """Three components in two features (weights 0.5, 0.3, 0.2); the N=5000 benchmark data."""
    return simulate_mixture(
        n_rows,
        weights=[0.5, 0.3, 0.2],
        means=[[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]],
        covariances=[
            [[1.0, 0.3], [0.3, 1.0]],
            [[0.5, 0.0], [0.0, 1.5]],
            [[1.0, -0.4], [-0.4, 0.8]],
        ],
        random_state=1,
    ).X


def data_sets() -> dict[str, tuple[np.ndarray, int]]:
    return {"faithful": (load_faithful().to_numpy(), 2), "sim5000": (simulated(5000), 3)}


def fit_em(X: np.ndarray, k: int) -> tuple[EMGaussianMixture, float]:
    t0 = time.perf_counter()
    em = EMGaussianMixture(k, n_init=5, tol=1e-6, max_iter=1000, random_state=0).fit(X)
    return em, time.perf_counter() - t0


def judge(timing: Timing, idata, raw_r_hat: float | None = None) -> Timing:
    table = parameter_diagnostics(idata)
    timing.r_hat = float(table["r_hat"].max())
    timing.ess_bulk = float(table["ess_bulk"].min())
    if raw_r_hat is not None:
        timing.raw_r_hat = raw_r_hat
    return timing


OURS = {
    "kernel": "bayesgmm (nutpie, E-step kernel, from EM)",
    "jax": "bayesgmm, backend='jax' (nutpie/JAX graph)",
}


def _prepare(model, em, backend: str, cache: CompileCache) -> None:
    """What a run compiles before sampling: the PyTensor/JAX graph, or loading the kernel."""
    if backend == "jax":
        _compiled_nutpie(model, em, "jax", cache)
        return
    density = log_density_for(model)
    density(_flat_start(model, em), np.ascontiguousarray(model["X"].get_value()))


def run_bayesgmm(
    X: np.ndarray,
    k: int,
    seed: int,
    draws: int = DRAWS,
    tune: int = TUNE,
    backend: str = "kernel",
) -> Timing:
    timing = Timing(OURS[backend])
    em, timing.em = fit_em(X, k)
    model = build_model(X, k)
    cache = CompileCache()
    t0 = time.perf_counter()
    _prepare(model, em, backend, cache)
    timing.compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = sample_posterior(
            model,
            em,
            draws=draws,
            tune=tune,
            chains=CHAINS,
            random_seed=seed,
            progressbar=False,
            backend=backend,
            compile_cache=cache,
            check=False,
        )
    elapsed = time.perf_counter() - t0
    # sample_posterior also relabels and writes the log-likelihood: time that part on its own
    copy = idata.copy()
    t0 = time.perf_counter()
    relabel(copy)
    timing.relabel = time.perf_counter() - t0
    timing.sampling = elapsed - timing.relabel
    return judge(timing, idata)


def _pymc_run(name, X, k, seed, draws, tune, *, em: bool, **sample_kwargs) -> Timing:
    """pm.sample on the same model; compile and sampling are not separable, so both count as
    sampling. Judged after relabelling to EM (fitted for the judgement, not timed, in (a))."""
    timing = Timing(name)
    model = build_model(X, k)
    reference, em_time = fit_em(X, k)
    if em:
        timing.em = em_time
        sample_kwargs["initvals"] = em_initial_values(model, reference)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(
            draws=draws,
            tune=tune,
            random_seed=seed,
            progressbar=False,
            model=model,
            compute_convergence_checks=False,
            **sample_kwargs,
        )
    timing.sampling = time.perf_counter() - t0
    raw = float(parameter_diagnostics(idata)["r_hat"].max())
    t0 = time.perf_counter()
    add_groups(idata, {"em": em_dataset(reference, model.coords)})
    relabel(idata)
    timing.relabel = time.perf_counter() - t0
    return judge(timing, idata, raw_r_hat=raw)


def run_standard(X: np.ndarray, k: int, seed: int, draws: int = DRAWS, tune: int = TUNE) -> Timing:
    return _pymc_run(STANDARD, X, k, seed, draws, tune, em=False)


def run_tuned(X: np.ndarray, k: int, seed: int, draws: int = DRAWS, tune: int = TUNE) -> Timing:
    with threadpool_limits(limits=1, user_api="blas"):
        return _pymc_run(
            TUNED,
            X,
            k,
            seed,
            draws,
            tune,
            em=True,
            nuts_sampler="pymc",
            init="adapt_diag",
            chains=CHAINS,
            cores=2,
            blas_cores=2,
        )


def run_tuned_nutpie(
    X: np.ndarray, k: int, seed: int, draws: int = DRAWS, tune: int = TUNE
) -> Timing:
    """PyMC 6 passes a dict of ``initvals`` to nutpie as its initial point; nutpie jitters it
    unless ``jitter_rvs`` is empty."""
    return _pymc_run(
        TUNED_NUTPIE,
        X,
        k,
        seed,
        draws,
        tune,
        em=True,
        chains=CHAINS,
        backend="jax",
        compile_kwargs={"gradient_backend": "jax", "jitter_rvs": set()},
    )


def cold_bayesgmm(name: str) -> float:
    """bayesgmm's default path in a fresh process with empty caches (seconds, end to end)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {
            **os.environ,
            "BAYESGMM_CACHE_DIR": cache,
            "NUMBA_CACHE_DIR": f"{cache}/numba",
            "PYTENSOR_FLAGS": f"base_compiledir={cache}/pytensor",
        }
        code = (
            "import sys, time; sys.path.insert(0, 'benchmarks'); import bench_mcmc as b; "
            f"X, k = b.data_sets()[{name!r}]; t = b.run_bayesgmm(X, k, 1); "
            "print(t.total)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])


def report(name: str, rows: list[Timing], cold: float | None) -> None:
    ours = rows[0]
    print(f"\n== {name}: {DRAWS} draws + {TUNE} tuning x {CHAINS} chains (warm caches)")
    print(
        f"{'recipe':52} {'EM':>6} {'compile':>8} {'sample':>8} {'relabel':>8} {'total':>8} "
        f"{'ratio':>6}  r_hat  ess_bulk  converged"
    )
    for t in rows:
        raw = "" if np.isnan(t.raw_r_hat) else f" (before relabelling {t.raw_r_hat:.3f})"
        raw += " (stopped: over the time budget)" if t.stopped else ""
        print(
            f"{t.name:52} {t.em:6.1f} {t.compile:8.1f} {t.sampling:8.1f} {t.relabel:8.2f} "
            f"{t.total:8.1f} {t.total / ours.total:6.1f}  {t.r_hat:.3f} {t.ess_bulk:9.0f}  "
            f"{t.converged}{raw}"
        )
    tuned = [t for t in rows if t.name in (TUNED, TUNED_NUTPIE) and t.converged]
    if tuned:
        best = min(tuned, key=lambda t: t.total)
        print(f"(b) = {best.name}: bayesgmm is {best.total / ours.total:.1f}x faster end to end")
    if cold is not None:
        print(f"bayesgmm with cold caches (fresh process, empty cache directories): {cold:.1f} s")
    print(
        "JSON "
        + json.dumps(
            {
                "data": name,
                "cold": cold,
                "rows": [{**t.__dict__, "total": t.total, "converged": t.converged} for t in rows],
            }
        )
    )


def _within_budget(budget: int, run):
    """``run()``, or None when it takes longer than ``budget`` seconds."""
    signal.alarm(budget)
    try:
        return run()
    except OverBudget:
        return None
    finally:
        signal.alarm(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="*", choices=["faithful", "sim5000"], default=["faithful", "sim5000"]
    )
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache run")
    parser.add_argument("--hard", nargs="*", default=[], choices=sorted(HARD_CASES))
    parser.add_argument(
        "--hard-tune", type=int, default=None, help="tuning of the 'after' run (default: its own)"
    )
    parser.add_argument(
        "--reference-draws", type=int, default=0, help="draws per chain of the reference run"
    )
    parser.add_argument(
        "--real", nargs="*", default=[], help=f"{', '.join(sorted(HARD_CASES))} or path.csv:K"
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[1], help="seeds of --real")
    parser.add_argument(
        "--target-accept", type=float, default=None, help="of --real (default: BayesianGMM's)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--budget",
        type=int,
        default=1800,
        help="seconds after which a PyMC recipe is stopped (default 1800)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    for name in args.hard:
        report_case(
            name,
            fit_em,
            seed=args.seed,
            tune=args.hard_tune,
            reference_draws=args.reference_draws,
            guard=functools.partial(_within_budget, args.budget),
        )
    if args.real:  # warm-up: Numba's and PyTensor's caches filled before anything is timed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BayesianGMM(2, draws=20, tune=20, progressbar=False).fit(load_faithful())
    for name in args.real:
        for seed in args.seeds:
            row = run_default(name, seed, args.target_accept)
            print("REAL " + json.dumps(row), flush=True)
    sets = data_sets()
    for name in args.data:
        X, k = sets[name]
        cold = None if args.no_cold else cold_bayesgmm(name)
        run_jax = functools.partial(run_bayesgmm, backend="jax")
        anchors = ((run_standard, STANDARD), (run_tuned, TUNED), (run_tuned_nutpie, TUNED_NUTPIE))
        for run in (run_bayesgmm, run_jax, *(a for a, _ in anchors)):  # warm-up: fill caches
            run(X, k, 0, draws=20, tune=20)
        rows = [run_bayesgmm(X, k, args.seed), run_jax(X, k, args.seed)]
        for run, label in anchors:
            signal.alarm(args.budget)
            try:
                rows.append(run(X, k, args.seed))
            except OverBudget:
                rows.append(Timing(label, sampling=float(args.budget), stopped=True))
            finally:
                signal.alarm(0)
        report(name, rows, cold)


if __name__ == "__main__":
    main()
