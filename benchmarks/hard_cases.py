"""The hard posteriors of the MCMC benchmark: strong correlation, near-collinearity, real data.

- ``correlated``: simulated, D = 5, K = 4, N = 200, every component with within-component
  correlation 0.95 (equicorrelated or mixed-sign);
- ``collinear``: simulated, D = 4, K = 3, N = 300, the last column the sum of the others plus
  noise of 2% of its spread (near-singular covariances);
- ``wine``: scikit-learn's wine data (178 x 13, K = 3), shipped with scikit-learn;
- ``crabs``: ``MASS::crabs`` (200 x 5 morphometric measurements, K = 4), read through
  ``Rscript`` when R and MASS are installed;
- ``iris`` (150 x 4, K = 3), ``banknote`` (200 x 6, K = 3) and ``diabetes`` (145 x 3, K = 3):
  the CSVs of benchmarks/data (mclust's copies; only EM's tests use them);
- ``compositional``: simulated, three groups of lognormal amounts of six parts, closed to
  percentages rounded to 0.01 (rows sum to 100: the covariances are singular but for the
  rounding), N = 500, K = 3.

:func:`run_default` runs the default ``BayesianGMM`` end to end on one of them, or on any CSV
given as ``path.csv:K``.

The real data sets are held back from the repository on purpose (benchmarks/data/README.md):
they are read at run time and never written here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

from bayesgmm import build_model, sample_posterior, sampling
from bayesgmm._idata import get_attr, get_group
from bayesgmm._units import scaling_of, standardised
from bayesgmm.datasets import simulate_mixture
from bayesgmm.diagnostics import (
    diagnostics,
    parameter_diagnostics,
    scalar_parameters,
    summarise,
)

__all__ = ["HARD_CASES", "HardRun", "counting_gradients", "hard_case", "posterior_gap", "run_case"]


def correlated(n_rows: int = 200, rho: float = 0.95) -> np.ndarray:
    """Four components in five features, within-component correlation ``rho``."""
    d = 5
    signs = [np.ones(d), np.where(np.arange(d) % 2 == 0, 1.0, -1.0), np.ones(d), -np.ones(d)]
    scales = np.array([[1.0] * d, [1.5, 1.0, 0.8, 1.2, 1.0], [0.7] * d, [2.0, 1.5, 2.0, 2.5, 1.5]])
    covariances = []
    for s, sign in zip(scales, signs, strict=True):
        corr = rho * np.outer(sign, sign) + (1.0 - rho) * np.eye(d)
        covariances.append(np.outer(s, s) * corr)
    means = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [4.0, 1.0, -3.0, 0.0, 3.0],
            [-3.0, 3.0, 1.0, -4.0, 0.0],
            [2.0, -5.0, 4.0, 3.0, -3.0],
        ]
    )
    sim = simulate_mixture(
        n_rows,
        weights=[0.3, 0.25, 0.25, 0.2],
        means=means,
        covariances=covariances,
        random_state=20261202,
    )
    return sim.X


def collinear(n_rows: int = 300, noise: float = 0.02) -> np.ndarray:
    """Three components in three free features plus their sum (noise: ``noise`` of its sd)."""
    sim = simulate_mixture(
        n_rows,
        weights=[0.4, 0.35, 0.25],
        means=[[0.0, 0.0, 0.0], [4.0, -2.0, 1.0], [-3.0, 3.0, 4.0]],
        covariances=[
            np.eye(3),
            [[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]],
            np.diag([0.5, 2.0, 1.0]),
        ],
        random_state=20261203,
    )
    total = sim.X.sum(axis=1)
    rng = np.random.default_rng(20261204)
    column = total + noise * total.std() * rng.standard_normal(n_rows)
    return np.column_stack([sim.X, column])


def wine() -> np.ndarray:
    """scikit-learn's wine recognition data (178 x 13)."""
    from sklearn.datasets import load_wine

    return load_wine().data


def crabs() -> np.ndarray:
    """``MASS::crabs``' five measurements (200 x 5), through ``Rscript``."""
    code = "library(MASS); write.csv(crabs[, 4:8], stdout(), row.names = FALSE)"
    out = subprocess.run(
        ["Rscript", "-e", code], capture_output=True, text=True, check=True, timeout=120
    )
    return pd.read_csv(StringIO(out.stdout)).to_numpy(dtype=float)


def _csv(name: str) -> np.ndarray:
    """A CSV of benchmarks/data."""
    return pd.read_csv(Path(__file__).parent / "data" / f"{name}.csv").to_numpy(dtype=float)


def compositional(n_rows: int = 500) -> np.ndarray:
    """Three groups of lognormal amounts of six parts, closed to percentages (2 decimals)."""
    rng = np.random.default_rng(20261205)
    centres = np.log([[40, 20, 15, 10, 10, 5], [20, 30, 10, 20, 15, 5], [10, 10, 40, 5, 25, 10]])
    groups = rng.choice(3, size=n_rows, p=[0.5, 0.3, 0.2])
    amounts = np.exp(centres[groups] + 0.15 * rng.standard_normal((n_rows, 6)))
    return np.round(100.0 * amounts / amounts.sum(axis=1, keepdims=True), 2)


# name -> (loader, number of components)
HARD_CASES = {
    "correlated": (correlated, 4),
    "collinear": (collinear, 3),
    "wine": (wine, 3),
    "crabs": (crabs, 4),
    "iris": (functools.partial(_csv, "iris"), 3),
    "banknote": (functools.partial(_csv, "banknote"), 3),
    "diabetes": (functools.partial(_csv, "diabetes"), 3),
    "compositional": (compositional, 3),
}


def hard_case(name: str) -> tuple[np.ndarray, int]:
    """The data and number of components of one hard case: a name of :data:`HARD_CASES`, or
    ``path.csv:K`` (the CSV's numeric columns, empty cells missing), e.g. a data set of R's
    written out at run time (``benchmarks/results/bayes_real_held_20261204.txt``)."""
    if name in HARD_CASES:
        loader, k = HARD_CASES[name]
        return loader(), k
    path, _, k = name.rpartition(":")
    if not (path.endswith(".csv") and k.isdigit()):
        raise ValueError(f"{name!r}: not one of {sorted(HARD_CASES)} nor path.csv:K")
    return pd.read_csv(path).select_dtypes("number").to_numpy(dtype=float), int(k)


# --------------------------------------------------------------------------- measuring
@dataclass
class HardRun:
    """One sampling run of a hard case: cost and convergence."""

    name: str
    seconds: float = np.nan
    gradients: int = 0
    draw_steps: int = 0
    divergences: int = 0
    r_hat: float = np.nan
    ess_bulk: float = np.nan
    ess_tail: float = np.nan
    precondition: str = ""
    stopped: bool = False
    posterior: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def converged(self) -> bool:
        return (
            not self.stopped
            and self.r_hat <= 1.01
            and min(self.ess_bulk, self.ess_tail) >= 400
            and self.divergences == 0
        )


@contextlib.contextmanager
def counting_gradients() -> Iterator[itertools.count]:
    """Count every log-density evaluation nutpie asks of the kernel path (warm-up included).

    Wraps the compiled model's logp function; nutpie calls it once per gradient. The compiled
    callbacks (:mod:`bayesgmm._native`) cannot be counted, so a counted run goes through the
    Python callback: the same draws (to rounding), the same gradients, but its times are the
    Python callback's (several times slower with chains on two cores; ``bench_callbacks.py``).
    """
    counter = itertools.count()
    original = sampling._kernel_compiled

    def counted(*args, **kwargs):
        compiled = original(*args, **kwargs, native=False)
        make = compiled._make_logp_func

        def make_counted():
            logp = make()

            def counted_logp(x, **shared):
                next(counter)
                return logp(x, **shared)

            return counted_logp

        return dataclasses.replace(compiled, _make_logp_func=make_counted)

    sampling._kernel_compiled = counted
    try:
        yield counter
    finally:
        sampling._kernel_compiled = original


def _posterior_summary(idata) -> pd.DataFrame:
    """Mean and its Monte Carlo error of every weight, mean and covariance entry (relabelled,
    standardised scale)."""
    posterior = standardised(get_group(idata, "posterior"), scaling_of(idata))
    names = ("weights", "means", "covariances")
    return summarise(scalar_parameters(posterior, names), kind="all")[["mean", "mcse_mean"]]


def run_case(X, k, em, *, precondition, seed, draws=1000, tune=1000, chains=4) -> HardRun:
    """``sample_posterior`` from EM (kernel backend), measured."""
    run = HardRun(f"precondition={precondition!r}")
    model = build_model(X, k)
    with counting_gradients() as counter, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        idata = sample_posterior(
            model,
            em,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            progressbar=False,
            check=False,
            precondition=precondition,
        )
        run.seconds = time.perf_counter() - t0
    attrs = idata.posterior.attrs
    run.gradients = next(counter) + int(attrs.get("precondition_gradients", 0))
    stats = idata.sample_stats
    run.draw_steps = int(stats["n_steps"].sum())
    run.divergences = int(stats["diverging"].sum())
    table = parameter_diagnostics(idata)
    run.r_hat = float(table["r_hat"].max())
    run.ess_bulk = float(table["ess_bulk"].min())
    run.ess_tail = float(table["ess_tail"].min())
    run.precondition = str(attrs["precondition"])
    run.name += f", tune={attrs['tune']}"
    run.posterior = _posterior_summary(idata)
    return run


def posterior_gap(run: HardRun, reference: HardRun) -> tuple[float, int]:
    """Largest ``|mean - reference mean| / (combined Monte Carlo error)`` over the entries,
    and how many exceed 4 (a few are expected by chance among hundreds only rarely)."""
    a, b = run.posterior, reference.posterior.loc[run.posterior.index]
    z = (a["mean"] - b["mean"]).abs() / np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    return float(z.max()), int((z > 4).sum())


def report_case(
    name: str, fit_em, *, seed: int, tune: int | None, reference_draws: int, guard
) -> None:
    """Before (unwhitened, tune 1000) and after (the default path) on one hard case, printed,
    with the posterior compared to a long unwhitened reference run when ``reference_draws``.

    ``guard(function)`` runs one sampling run under the time budget (None when stopped).
    """
    X, k = hard_case(name)
    em, em_seconds = fit_em(X, k)
    print(f"\n== {name}: N={X.shape[0]}, D={X.shape[1]}, K={k}; EM {em_seconds:.1f} s")
    runs = {
        "before": guard(lambda: run_case(X, k, em, precondition="none", seed=seed)),
        "after": guard(lambda: run_case(X, k, em, precondition="laplace", seed=seed, tune=tune)),
    }
    reference = None
    if reference_draws:
        reference = guard(
            lambda: run_case(X, k, em, precondition="none", seed=seed + 1, draws=reference_draws)
        )
    print(
        f"{'run':8} {'total s':>8} {'gradients':>10} {'ratio':>6} {'draw steps':>10} "
        f"{'div':>4} {'r_hat':>6} {'bulk':>6} {'tail':>6} conv  vs reference (max z, #z>4)"
    )
    before = runs["before"]
    for label, run in runs.items():
        if run is None:
            print(f"{label:8} stopped: over the time budget")
            continue
        ratio = before.gradients / run.gradients if before is not None else np.nan
        gap = "" if reference is None else "{:.1f}, {}".format(*posterior_gap(run, reference))
        print(
            f"{label:8} {em_seconds + run.seconds:8.1f} {run.gradients:10d} {ratio:6.1f} "
            f"{run.draw_steps:10d} {run.divergences:4d} {run.r_hat:6.3f} {run.ess_bulk:6.0f} "
            f"{run.ess_tail:6.0f} {'yes' if run.converged else 'NO':4}  {gap}  "
            f"[{run.name}; used {run.precondition}]"
        )
    if reference is not None:
        print(
            f"reference: precondition='none', {reference_draws} draws x 4 chains, "
            f"r_hat {reference.r_hat:.3f}, bulk ESS {reference.ess_bulk:.0f}"
        )


# --------------------------------------------------------------------------- end to end
def _drift(idata) -> np.ndarray:
    """Each chain's mean total log-likelihood in its last quarter minus its first quarter
    (nats): far from 0, the chain moved to another region while its draws were kept."""
    totals = get_group(idata, "log_likelihood")["obs"].sum("obs_id")
    values = totals.transpose("chain", "draw").values
    quarter = max(values.shape[1] // 4, 1)
    return values[:, -quarter:].mean(axis=1) - values[:, :quarter].mean(axis=1)


def _divergences(idata) -> int | None:
    """The divergences of the kept draws (None for independence Metropolis-Hastings draws,
    which have no trajectories: the diagnostics' row is NaN there)."""
    table = diagnostics(idata).set_index("check")
    value = float(table.loc["divergences", "value"])
    return None if np.isnan(value) else int(value)


def run_default(
    name: str, seed: int, target_accept: float | None = None, k: int | None = None
) -> dict:
    """The default ``BayesianGMM`` end to end (EM restarts, Laplace, NUTS, relabelling) on
    one case: time, convergence over all chains, and the modes it reports (``target_accept``:
    the default's, or the one given, e.g. 0.8 as before it depended on the conditioning;
    ``k``: the case's number of components, or the one given)."""
    from bayesgmm import BayesianGMM
    from bayesgmm.modes import mode_table

    X, case_k = hard_case(name)
    k = case_k if k is None else k
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        fit = BayesianGMM(k, random_seed=seed, target_accept=target_accept, progressbar=False)
        fit.fit(X)
        seconds = time.perf_counter() - t0
    table = parameter_diagnostics(fit.idata_)
    attrs = fit.idata_.posterior.attrs
    modes = mode_table(fit.idata_)
    return {
        "data": name,
        "shape": list(X.shape),
        "k": k,
        "seed": seed,
        "seconds": round(seconds, 1),
        "r_hat": round(float(table["r_hat"].max()), 3),
        "ess_bulk": round(float(table["ess_bulk"].min())),
        "ess_tail": round(float(table["ess_tail"].min())),
        "divergences": _divergences(fit.idata_),
        "draws_sampler": get_attr(fit.idata_, "draws_sampler") or "nuts",
        "follow_up": get_attr(fit.idata_, "follow_up") or [],
        "starts": 1 + len(fit.starts_),
        "precondition": str(attrs["precondition"]),
        "condition": float(attrs.get("precondition_condition", np.nan)),
        "target_accept": float(attrs["target_accept"]),
        "modes": modes.round(3).to_dict(orient="records"),
        "drift": np.round(_drift(fit.idata_), 1).tolist(),
        "left_mode_depth": attrs.get("left_mode_depth", "[]"),
        "warnings": sorted({str(w.message).split("\n")[0][:160] for w in caught}),
    }
