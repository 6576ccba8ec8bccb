"""bayesgmm's EM sweep side by side with R's mclust and scikit-learn, on the benchmark CSVs.

For every data set in ``benchmarks/data`` (or ``--data DIR``; ``<name>.csv``; ``*_labels.csv``
are labels), one after the other, it runs

- R mclust: ``Mclust(X, G = 1:kmax)`` with its defaults (all 14 models), through ``Rscript
  benchmarks/mclust_reference.R``; when bayesgmm has fewer models, also a like-for-like
  ``Mclust(..., modelNames = <bayesgmm's models>)`` for the time. Without R (or with
  ``--no-r``) the mclust columns come from the committed reference numbers in
  ``tests/data/mclust`` (their times were measured when they were computed);
- bayesgmm: one ``em_sweep`` over every model it accepts and K = 1..kmax, with the sweep's
  defaults (em-EM restarts, :mod:`bayesgmm._restarts`) unless ``--n-init``, ``--tol`` or
  ``--max-iter`` say otherwise, and ``reg_covar=0`` like mclust (``--reg-covar``); timed
  twice, with ``n_jobs=-1`` (em-EM's runs to convergence on a thread per core) and with
  ``n_jobs=1`` (one thread, like mclust; the default), both ratios printed (the two tables
  are equal).
  A model is taken by mclust's name when ``EMGaussianMixture`` accepts it, else by
  scikit-learn's name for the four that have one (VII = spherical, VVI = diag, EEE = tied,
  VVV = full), else it is "not available";
- scikit-learn: ``GaussianMixture(n_init=10)`` for its four models and the same K.

and prints, per data set, per model and K: the log-likelihoods of each, ours - mclust,
ours - scikit-learn and ours - the reference (the better of the two that is not degenerate:
a scikit-learn optimum with a component at its ``reg_covar`` floor or too small for its model,
and any fit of a model with as many free parameters as observations, are flagged and left
out), the best-BIC model of each, and the wall time of each whole sweep with the ratio
ours / mclust; then a summary over the data sets (worst deficits, the number of (model, K)
cells more than 0.1 nats below each reference, whether the best model agrees or ours has a
better BIC, time ratio) and the load average at the start and the end.
bayesgmm's BIC is ``-2 log L + p log n`` (lower is better); mclust's is its negative.

Timings are indicative: they are wall times on whatever machine runs this, and the machine
these numbers were first taken on has 2 cores shared with other work. mclust runs just before
bayesgmm on each data set, so both times of a ratio see about the same load. mclust runs on one
thread; the Python sweeps run with one OpenMP/BLAS thread too (``--threads``, as ``make`` sets
``OMP_NUM_THREADS=1``): on a loaded 2-core machine, scikit-learn's multi-threaded k-means (which
``em_sweep`` once initialised with) made the same sweep 15x slower.

    python benchmarks/bench_mclust.py                          # every data set
    python benchmarks/bench_mclust.py --datasets faithful,iris --kmax 6 --no-sklearn
    python benchmarks/bench_mclust.py --json out/bench_mclust.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from bayesgmm import em_sweep
from bayesgmm._hierarchical import cut_tree, hierarchical_partitions, merge_tree, transform
from bayesgmm._models import inestimable, min_effective_size
from bayesgmm.selection import _n_threads

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
REFERENCE = ROOT / "tests" / "data" / "mclust"
R_SCRIPT = ROOT / "benchmarks" / "mclust_reference.R"
MCLUST_MODELS = (
    *("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE"),
    *("VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"),
)
SKLEARN_NAMES = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}
DEFICIT = 0.1  # nats: a cell counts as below a reference when more than this below it


# ----------------------------------------------------------------------------- data and models
def dataset_names(selected: str | None, data: Path = DATA) -> list[str]:
    """The benchmark data sets, or the comma-separated ``selected`` ones (checked)."""
    available = sorted(p.stem for p in data.glob("*.csv") if not p.stem.endswith("_labels"))
    if not selected:
        return available
    names = [name.strip() for name in selected.split(",") if name.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"Unknown data set(s) {unknown}; choose from {available}.")
    return names


def bayesgmm_names(models: list[str]) -> dict[str, str | None]:
    """For each mclust model, the covariance_type bayesgmm accepts for it (None: not available)."""
    tiny = np.random.default_rng(0).normal(size=(12, 2))
    out: dict[str, str | None] = {}
    for model in models:
        out[model] = None
        for name in (model, SKLEARN_NAMES.get(model)):
            if name is None:
                continue
            try:
                em_sweep(tiny, [1], [name], n_init=1, progress=False)
            except ValueError:
                continue
            out[model] = name
            break
    return out


# ----------------------------------------------------------------------------- R mclust
def r_problem() -> str | None:
    """Why R's mclust cannot run here, or None when it can."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    check = subprocess.run(
        ["Rscript", "-e", "suppressPackageStartupMessages(library(mclust))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if check.returncode == 0 else "R package mclust not installed"


def run_mclust(
    names: list[str], kmax: int, models: list[str] | None = None, data: Path = DATA
) -> dict[str, dict]:
    """Run ``mclust_reference.R`` on the data sets; return its JSON per data set.

    With all models it also times mclust's ``hc`` (and records its partitions); restricted to
    ``models`` it runs ``Mclust`` only.
    """
    with tempfile.TemporaryDirectory() as out:
        command = [
            "Rscript",
            str(R_SCRIPT),
            f"--data={data}",
            f"--out={out}",
            f"--gmax={kmax}",
            f"--datasets={','.join(names)}",
        ]
        if models:
            command += [f"--models={','.join(models)}", "--no-hc"]
        subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        return {name: json.loads((Path(out) / f"{name}.json").read_text()) for name in names}


def reference_mclust(names: list[str], kmax: int) -> dict[str, dict]:
    """The committed reference numbers (K <= kmax), for data sets that have them."""
    out = {}
    for name in names:
        path = REFERENCE / f"{name}.json"
        if path.exists():
            ref = json.loads(path.read_text())
            ref["table"] = [row for row in ref["table"] if row["G"] <= kmax]
            if max(ref["G"]) != kmax:  # its time is that of G = 1..9
                ref["seconds"] = np.nan
            out[name] = ref
    return out


def mclust_cells(result: dict) -> dict[tuple[str, int], float]:
    """mclust's log-likelihood per (model, K); NaN where mclust could not fit."""
    return {
        (row["model"], row["G"]): np.nan if row["loglik"] is None else float(row["loglik"])
        for row in result["table"]
    }


# ----------------------------------------------------------------------------- Python sweeps
def run_bayesgmm(X: pd.DataFrame, names: dict[str, str | None], kmax: int, em_kwargs: dict) -> dict:
    """One em_sweep over every available model and K = 1..kmax, timed as a whole: with
    ``n_jobs=-1`` (threads) and with ``n_jobs=1`` (one thread, like mclust; em_sweep's
    default); ``same_serial`` says whether the two tables are equal."""
    types = {name: model for model, name in names.items() if name is not None}
    seconds, tables = {}, {}
    for n_jobs in (-1, 1):
        start, cpu = time.perf_counter(), time.process_time()
        sweep = em_sweep(
            X, range(1, kmax + 1), list(types), progress=False, n_jobs=n_jobs, **em_kwargs
        )
        seconds[n_jobs] = time.perf_counter() - start
        cpu = time.process_time() - cpu
        tables[n_jobs] = sweep.table
    table = sweep.table
    same = tables[-1].equals(tables[1])
    cells = {
        (types[row.covariance_type], int(row.n_components)): (float(row.log_likelihood), row.status)
        for row in table.itertuples()
    }
    k, name = sweep.best["bic"]
    bic = float(table[(table.n_components == k) & (table.covariance_type == name)].bic.iloc[0])
    return {
        "cells": cells,
        "best": (types[name], k, bic),
        "seconds": seconds[-1],
        "seconds_serial": seconds[1],
        "cpu_serial": cpu,  # (process CPU time of the one-thread sweep)
        "same_serial": same,
    }


def run_hc(X: pd.DataFrame, hc: dict | None, kmax: int) -> dict | None:
    """Our agglomeration (VVV, scaled SVD) on the rows mclust's ``hc`` used: time and parity."""
    if hc is None:
        return None
    rows = np.asarray(hc["rows"])
    ks = range(1, kmax + 1)
    start = time.perf_counter()
    ours = cut_tree(merge_tree(transform(X.to_numpy(dtype=float)[rows])), ks)
    seconds = time.perf_counter() - start
    theirs = np.asarray(hc["criteria"]["VVV"]["partitions"]).T[:, :kmax]
    aris = [adjusted_rand_score(ours[:, c], theirs[:, c]) for c in range(ours.shape[1])]
    return {
        "rows": len(rows),
        "seconds": seconds,
        "seconds_mclust": hc["criteria"]["VVV"]["seconds"],
        "min_ari": min(aris),
        "same": bool(np.array_equal(ours, theirs)),
    }


def run_sklearn(X: pd.DataFrame, models: list[str], kmax: int, n_init: int) -> dict:
    """scikit-learn's GaussianMixture for its models and K = 1..kmax, timed as a whole.

    ``spikes``: the cells whose optimum is degenerate, or on the way to a degenerate one (see
    :func:`sklearn_spike` and :func:`continues_to_spike`; checked after the timing).
    """
    cells: dict[tuple[str, int], float] = {}
    fitted: dict[tuple[str, int], GaussianMixture] = {}
    start = time.perf_counter()
    for model in (m for m in models if m in SKLEARN_NAMES):
        for k in range(1, kmax + 1):
            gm = GaussianMixture(k, covariance_type=SKLEARN_NAMES[model], n_init=n_init)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cells[model, k] = float(gm.set_params(random_state=0).fit(X).score(X)) * len(X)
            except ValueError:
                cells[model, k] = np.nan
                continue
            fitted[model, k] = gm
    seconds = time.perf_counter() - start
    spikes = {
        (model, k)
        for (model, k), gm in fitted.items()
        if sklearn_spike(gm, model, len(X)) or continues_to_spike(gm, X, model)
    }
    return {"cells": cells, "spikes": spikes, "seconds": seconds}


def sklearn_spike(gm: GaussianMixture, model: str, n: int) -> bool:
    """Whether a fitted GaussianMixture is degenerate: a component with fewer points than its
    model needs for a non-singular covariance, or a variance at scikit-learn's ``reg_covar``
    floor (a spike on a few tied points, whose likelihood grows without bound as the floor
    shrinks; mclust, without a floor, has no such optimum)."""
    cov = gm.covariances_
    smallest = cov.min() if cov.ndim < 3 and model != "EEE" else np.linalg.eigvalsh(cov).min()
    few = (gm.weights_ * n).min() < min_effective_size(model, gm.means_.shape[1]) - 1e-3
    return bool(few or smallest <= 2.0 * gm.reg_covar)


def continues_to_spike(gm: GaussianMixture, X, model: str, max_iter: int = 5000) -> bool:
    """Whether EM continued from a fit (a copy, warm-started, tolerance 1e-8) ends degenerate
    (:func:`sklearn_spike`) or fails on a singular covariance: the fit was a point on the way to
    a spike where scikit-learn's 1e-3 tolerance stopped it, not an optimum to compare with.
    MASS fgl's nine oxides, diag K=2: scikit-learn's best of ten stopped at -1887.5 after 5
    iterations; continued, EM climbs to -699.3 with a variance at the 1e-6 floor (mclust: no
    fit, singular)."""
    more = copy.deepcopy(gm).set_params(warm_start=True, n_init=1, tol=1e-8, max_iter=max_iter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            more.fit(X)
    except ValueError:  # an ill-defined (singular) covariance on the way
        return True
    return sklearn_spike(more, model, len(X))


# ----------------------------------------------------------------------------- comparison
def cell_rows(
    models: list[str], kmax: int, mclust: dict, ours: dict, sk: dict, shape: tuple[int, int]
) -> list[dict]:
    """One row per (model, K) that bayesgmm can fit: the three log-likelihoods and differences.

    ``reference`` is the best of mclust and scikit-learn that is not degenerate: a
    scikit-learn spike (``sk["spikes"]``), and any fit of a model the rows cannot estimate
    (``few rows``, :func:`bayesgmm._models.inestimable`: fewer rows than the components'
    covariances need, or as many free parameters as rows for a model whose components turn
    their own axes; mclust's numbers are spikes there and scikit-learn's are set by its
    ``reg_covar``; bayesgmm reports the cell as failed) are shown, flagged in ``note``, and
    left out of it.
    """
    rows = []
    for model in models:
        for k in range(1, kmax + 1):
            if (model, k) not in ours["cells"]:
                continue
            loglik, status = ours["cells"][model, k]
            ref = mclust.get((model, k), np.nan)
            skl = sk.get("cells", {}).get((model, k), np.nan)
            notes = []
            estimable = not inestimable(model, k, shape[0], shape[1])
            if not estimable and not (np.isnan(ref) and np.isnan(skl)):
                notes.append("few rows")
            if (model, k) in sk.get("spikes", ()):
                notes.append("sklearn spike")
            usable = [ref] * estimable + [skl] * (estimable and "sklearn spike" not in notes)
            best = max((v for v in usable if not np.isnan(v)), default=np.nan)
            rows.append(
                {
                    "model": model,
                    "K": k,
                    "mclust": ref,
                    "bayesgmm": loglik,
                    "ours_minus_mclust": loglik - ref,
                    "sklearn": skl,
                    "ours_minus_sklearn": loglik - skl,
                    "reference": best,
                    "ours_minus_reference": loglik - best,
                    "status": status,
                    "note": ", ".join(notes),
                }
            )
    return rows


# mclust names its one-component models by their class (X: one feature; XII spherical, XXI
# diagonal, XXX ellipsoidal): at K = 1 the 14 models are these three
_ONE_COMPONENT = {"EII": "XII", "VII": "XII"} | dict.fromkeys(("EEI", "VEI", "EVI", "VVI"), "XXI")


def _same_model(mclust_best: tuple[str, int], ours: tuple[str, int]) -> bool:
    """Whether mclust's best ``(model, G)`` is our best ``(model, K)`` (at K = 1 by class)."""
    (theirs, g), (name, k) = mclust_best, ours
    if g != k:
        return False
    if k == 1 and theirs.startswith("X"):
        return theirs in ("X", _ONE_COMPONENT.get(name, "XXX"))
    return theirs == name


def _worst(rows: list[dict], column: str) -> tuple[float, str, int]:
    """The most negative difference in ``column`` (NaN where nothing compares), with its cell.

    A cell where the reference fitted and ours did not (NaN log-likelihood) counts as -inf.
    """
    reference = column.removeprefix("ours_minus_")
    worst = (np.nan, "", 0)
    for row in rows:
        if np.isnan(row[reference]):
            continue
        value = -np.inf if np.isnan(row["bayesgmm"]) else row[column]
        if np.isnan(worst[0]) or value < worst[0]:
            worst = (value, row["model"], row["K"])
    return worst


def refused(rows: list[dict]) -> list[dict]:
    """The cells mclust fitted and bayesgmm did not (refused, e.g. more free parameters than
    rows, or failed): counted apart from its lower optima in the summary."""
    return [r for r in rows if not np.isnan(r["mclust"]) and np.isnan(r["bayesgmm"])]


def summarise(name: str, X: pd.DataFrame, rows: list[dict], runs: dict) -> dict:
    """The summary line of one data set."""
    mclust, ours = runs["mclust"], runs["bayesgmm"]
    below = [
        r for r in rows if not np.isnan(r["mclust"]) and not r["ours_minus_mclust"] >= -DEFICIT
    ]
    below_sk = [
        r for r in rows if not np.isnan(r["sklearn"]) and not r["ours_minus_sklearn"] >= -DEFICIT
    ]
    below_ref = [
        r
        for r in rows
        if not np.isnan(r["reference"]) and not r["ours_minus_reference"] >= -DEFICIT
    ]
    best_m = (mclust["best"]["model"], mclust["best"]["G"]) if mclust else None
    mclust_seconds = mclust["seconds"] if mclust else np.nan
    mclust_cpu = mclust.get("cpu_seconds", np.nan) if mclust else np.nan  # (not in references)
    # mclust's BIC is 2 log L - p log n (higher is better), ours its negative
    better = bool(mclust) and -ours["best"][2] > mclust["best"]["bic"] + 1e-6
    return {
        "dataset": name,
        "n": len(X),
        "d": X.shape[1],
        "worst_vs_mclust": _worst(rows, "ours_minus_mclust"),
        "cells_below_mclust": len(below),
        "cells_compared_mclust": sum(not np.isnan(r["mclust"]) for r in rows),
        "cells_refused_mclust": len(refused(rows)),
        "worst_vs_sklearn": _worst(rows, "ours_minus_sklearn"),
        "cells_below_sklearn": len(below_sk),
        "worst_vs_reference": _worst(rows, "ours_minus_reference"),
        "cells_below_reference": len(below_ref),
        "cells_compared_reference": sum(not np.isnan(r["reference"]) for r in rows),
        "cells_degenerate_reference": sum(bool(r["note"]) for r in rows),
        "better_bic": better,
        "best_mclust": best_m,
        "best_mclust_bic": mclust["best"]["bic"] if mclust else np.nan,
        "best_bayesgmm": ours["best"][:2],
        "best_bayesgmm_bic": ours["best"][2],
        "same_best": best_m is not None and _same_model(best_m, tuple(ours["best"][:2])),
        "seconds_mclust": mclust_seconds,
        "seconds_mclust_same_models": runs.get("mclust_same_models", np.nan),
        "seconds_bayesgmm": ours["seconds"],
        "seconds_sklearn": runs["sklearn"]["seconds"] if runs["sklearn"] else np.nan,
        "ratio": ours["seconds"] / mclust_seconds,
        "seconds_bayesgmm_serial": ours["seconds_serial"],
        "ratio_serial": ours["seconds_serial"] / mclust_seconds,
        "same_serial": ours["same_serial"],
        "cpu_mclust": mclust_cpu,
        "cpu_bayesgmm_serial": ours["cpu_serial"],
        "ratio_cpu": ours["cpu_serial"] / mclust_cpu,
        "ratio_same_models": ours["seconds"] / runs.get("mclust_same_models", np.nan),
        "mclust_source": runs["mclust_source"],
        "hc": runs["hc"],
    }


# ----------------------------------------------------------------------------- printing
def _fmt(value: float, width: int = 10, digits: int = 2) -> str:
    return f"{'-':>{width}}" if np.isnan(value) else f"{value:>{width}.{digits}f}"


def print_dataset(summary: dict, rows: list[dict], names: dict[str, str | None]) -> None:
    s = summary
    print(f"\n=== {s['dataset']}  (N = {s['n']}, D = {s['d']}) ===")
    header = f"{'model':<6}{'K':>3}{'mclust':>11}{'bayesgmm':>11}{'ours-mcl':>10}"
    print(header + f"{'sklearn':>11}{'ours-skl':>10}{'ours-ref':>10}  status")
    for r in rows:
        print(
            f"{r['model']:<6}{r['K']:>3} {_fmt(r['mclust'])} {_fmt(r['bayesgmm'])}"
            f"{_fmt(r['ours_minus_mclust'])} {_fmt(r['sklearn'])}{_fmt(r['ours_minus_sklearn'])}"
            f"{_fmt(r['ours_minus_reference'])}  {r['status']}"
            + (f" [{r['note']}]" if r["note"] else "")
        )
    missing = [model for model, name in names.items() if name is None]
    if missing:
        print(f"not available in bayesgmm: {', '.join(missing)}")
    best_m = "-" if s["best_mclust"] is None else "{},{}".format(*s["best_mclust"])
    print(
        f"best BIC: mclust {best_m} (BIC {s['best_mclust_bic']:.2f}, higher is better); "
        "bayesgmm {},{} (BIC {:.2f}, lower is better); same model: {}{}".format(
            *s["best_bayesgmm"],
            s["best_bayesgmm_bic"],
            "yes" if s["same_best"] else "no",
            " (ours a better BIC)" if s["better_bic"] and not s["same_best"] else "",
        )
    )
    n_ours = sum(name is not None for name in names.values())
    print(
        f"sweep time: mclust {s['seconds_mclust']:.2f} s (14 models, {s['mclust_source']}), "
        f"mclust on bayesgmm's {n_ours} models {_fmt(s['seconds_mclust_same_models'], 0)} s, "
        f"bayesgmm {s['seconds_bayesgmm']:.2f} s ({n_ours} models, n_jobs=-1: "
        f"{_n_threads(-1)} threads) and {s['seconds_bayesgmm_serial']:.2f} s (n_jobs=1; same "
        f"table: {'yes' if s['same_serial'] else 'NO'}), ratio ours/mclust {s['ratio']:.2f} "
        f"(threads), {s['ratio_serial']:.2f} (one thread); scikit-learn "
        f"{_fmt(s['seconds_sklearn'], 0)} s"
    )
    print(
        f"sweep CPU time (user + system, less moved by the load): mclust "
        f"{_fmt(s['cpu_mclust'], 0)} s, bayesgmm {s['cpu_bayesgmm_serial']:.2f} s (n_jobs=1), "
        f"ratio {_fmt(s['ratio_cpu'], 0)}"
    )
    if s["hc"]:
        h = s["hc"]
        print(
            f"hierarchical initialisation (VVV, scaled SVD, {h['rows']} rows): mclust hc "
            f"{h['seconds_mclust']:.3f} s, ours {h['seconds']:.3f} s, ratio "
            f"{h['seconds'] / max(h['seconds_mclust'], 1e-3):.2f}; partitions K = 1..kmax "
            f"equal to mclust's: {'yes' if h['same'] else 'no'} (smallest ARI {h['min_ari']:.3f})"
        )


def _worst_text(worst: tuple[float, str, int]) -> str:
    return "-" if np.isnan(worst[0]) else "{:.2f} ({},{})".format(*worst)


def print_summary(summaries: list[dict]) -> None:
    print("\n=== summary (log-likelihoods in nats; times in seconds, indicative) ===")
    print(
        f"{'data set':<13}{'N':>6}{'D':>3} {'worst vs mclust':>20} {'<mcl-0.1':>11}"
        f" {'worst vs sklearn':>20} {'<skl-0.1':>9} {'worst vs ref':>20} {'<ref-0.1':>9}"
        f"{'degen':>6}  {'best mclust':<12}{'best ours':<11}{'same/better':<12}"
        f"{'t mclust':>9}{'t ours':>8}{'ratio':>7}{'t 1thr':>8}{'ratio1':>7}{'rCPU':>7}"
        f"{'hc ratio':>9} hc same"
    )
    for s in summaries:
        best_m = "-" if s["best_mclust"] is None else "{},{}".format(*s["best_mclust"])
        best_o = "{},{}".format(*s["best_bayesgmm"])
        agree = "same" if s["same_best"] else ("better" if s["better_bic"] else "NO")
        cells = f"{s['cells_below_mclust']}/{s['cells_compared_mclust']}"
        cells = f"{cells} r{s['cells_refused_mclust']}" if s["cells_refused_mclust"] else cells
        cells_ref = f"{s['cells_below_reference']}/{s['cells_compared_reference']}"
        h = s["hc"]
        hc = (
            f"{h['seconds'] / max(h['seconds_mclust'], 1e-3):>9.2f} {'yes' if h['same'] else 'no'}"
            if h
            else f"{'-':>9} -"
        )
        print(
            f"{s['dataset']:<13}{s['n']:>6}{s['d']:>3} {_worst_text(s['worst_vs_mclust']):>20}"
            f" {cells:>11} {_worst_text(s['worst_vs_sklearn']):>20} {s['cells_below_sklearn']:>9}"
            f" {_worst_text(s['worst_vs_reference']):>20} {cells_ref:>9}"
            f"{s['cells_degenerate_reference']:>6}  {best_m:<12}{best_o:<11}{agree:<12}"
            f"{_fmt(s['seconds_mclust'], 9)}{_fmt(s['seconds_bayesgmm'], 8)}"
            f"{_fmt(s['ratio'], 7)}{_fmt(s['seconds_bayesgmm_serial'], 8)}"
            f"{_fmt(s['ratio_serial'], 7)}{_fmt(s['ratio_cpu'], 7)}{hc}"
        )
    print(
        "worst: the most negative ours - reference over (model, K) both fitted (-inf: only the "
        "reference fitted); <mcl-0.1: cells more than 0.1 nats below mclust / cells compared "
        "(rN: N of them cells mclust fitted and bayesgmm refused or failed, e.g. more free "
        "parameters than rows; the rest are lower optima); "
        "<skl-0.1 likewise for scikit-learn; ref: the best of the two that is not degenerate "
        "(degen: cells where one is left out, a scikit-learn spike at its reg_covar floor, or a "
        "model the rows cannot estimate, few rows). same/better: "
        "the same best-BIC model as mclust, or a better BIC. Times: whole sweeps (bayesgmm: "
        "14 models x K), "
        "indicative only (a shared 2-core machine; see the load above); t ours, ratio: ours "
        "with n_jobs=-1 (threads) / mclust (one thread); t 1thr, ratio1: ours with n_jobs=1 "
        "(one thread, em_sweep's default, same table) / mclust; rCPU: the same ratio in CPU "
        "time (our process's, R's user + system; wall times stretch with the load); hc "
        "ratio: our hierarchical initialisation / mclust's hc on the same rows, hc same: "
        "equal partitions for every K."
    )


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", help="comma-separated names (default: all in benchmarks/data)"
    )
    parser.add_argument("--models", help="comma-separated mclust model names (default: all 14)")
    parser.add_argument("--kmax", type=int, default=9, help="largest K (default 9)")
    parser.add_argument("--no-r", action="store_true", help="use the committed mclust numbers")
    parser.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn")
    parser.add_argument("--sklearn-n-init", type=int, default=10)
    parser.add_argument("--n-init", type=int, help="bayesgmm restarts (default: em_sweep's)")
    parser.add_argument("--tol", type=float, help="bayesgmm tol (default: EM's)")
    parser.add_argument("--max-iter", type=int, help="bayesgmm max_iter (default: EM's)")
    parser.add_argument(
        "--reg-covar",
        type=float,
        default=0.0,
        help="bayesgmm reg_covar (default 0: mclust's Mclust has no regularisation)",
    )
    parser.add_argument("--data", type=Path, default=DATA, help="directory of the CSVs")
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenMP/BLAS threads (0: libraries' default)"
    )
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else list(MCLUST_MODELS)
    unknown = sorted(set(models) - set(MCLUST_MODELS))
    if unknown or args.kmax < 1:
        parser.error(f"unknown model(s) {unknown}" if unknown else "--kmax must be >= 1")
    args.models = [m for m in MCLUST_MODELS if m in models]
    return args


def mclust_runs(args: argparse.Namespace, names: list[str], ours: list[str]) -> tuple:
    """mclust's results per data set, like-for-like times, and where the numbers came from."""
    problem = "--no-r" if args.no_r else r_problem()
    if problem:
        print(f"R mclust not run ({problem}): mclust numbers from {REFERENCE.relative_to(ROOT)}")
        return reference_mclust(names, args.kmax), {}, "reference"
    print(f"running R mclust on {len(names)} data set(s) ...", flush=True)
    results = run_mclust(names, args.kmax, data=args.data)
    same = {}
    if ours and len(ours) < len(MCLUST_MODELS):
        subset = run_mclust(names, args.kmax, ours, data=args.data)
        same = {name: subset[name]["seconds"] for name in names}
    return results, same, "run now"


def python_runs(args: argparse.Namespace, X: pd.DataFrame, available: dict, em_kwargs: dict):
    """bayesgmm's sweep and scikit-learn's, each timed as a whole."""
    return {
        "bayesgmm": run_bayesgmm(X, available, args.kmax, em_kwargs),
        "sklearn": None
        if args.no_sklearn
        else run_sklearn(X, args.models, args.kmax, args.sklearn_n_init),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    names = dataset_names(args.datasets, args.data)
    available = bayesgmm_names(args.models)
    ours = [m for m, name in available.items() if name is not None]
    em_kwargs = {
        key: value
        for key, value in (("n_init", args.n_init), ("tol", args.tol), ("max_iter", args.max_iter))
        if value is not None
    }
    em_kwargs["reg_covar"] = args.reg_covar
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}; bayesgmm {em_kwargs}")
    # load (or compile) the Numba kernels of every model, as mclust_reference.R warms mclust up:
    # the first data set's whole sweep, untimed (random data reach no collapsing start, whose
    # Python M-step loads ~0.2 s of further kernels inside the first timed sweep)
    warm = np.random.default_rng(0).normal(size=(300, 3))
    em_sweep(warm, [1, 2, 3], ["all"], progress=False)
    first = read_complete(args.data / f"{names[0]}.csv", quiet=True)
    em_sweep(first, range(1, args.kmax + 1), ["all"], progress=False, **em_kwargs)
    hierarchical_partitions(warm, [2])
    summaries, records = [], []
    for name in names:
        # mclust just before ours, data set by data set: on a shared machine whose load
        # drifts, the two times of a ratio are then taken under about the same load
        mclust, same_models, source = mclust_runs(args, [name], ours)
        X = read_complete(args.data / f"{name}.csv")
        with threadpool_limits(limits=args.threads or None):
            runs = python_runs(args, X, available, em_kwargs)
        runs.update(
            mclust=mclust.get(name),
            mclust_same_models=same_models.get(name, np.nan),
            mclust_source=source,
            hc=run_hc(X, (mclust.get(name) or {}).get("hc"), args.kmax),
        )
        reference = mclust_cells(runs["mclust"]) if runs["mclust"] else {}
        rows = cell_rows(
            args.models, args.kmax, reference, runs["bayesgmm"], runs["sklearn"] or {}, X.shape
        )
        summary = summarise(name, X, rows, runs)
        print_dataset(summary, rows, available)
        summaries.append(summary)
        records.append({"summary": summary, "cells": rows})
    print_summary(summaries)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1, default=_json_default) + "\n")
    return summaries


def read_complete(path: Path, quiet: bool = False) -> pd.DataFrame:
    """The CSV's complete rows as float64 (mclust_reference.R fits the same rows: mclust's
    EM has no missing cells), saying how many rows with a missing cell were left out.

    float64: scikit-learn 1.9's score() truncates the log-density of integer input.
    """
    X = pd.read_csv(path).astype(float)
    complete = X.dropna().reset_index(drop=True)
    if len(complete) < len(X) and not quiet:
        print(f"{path.stem}: {len(X) - len(complete)} row(s) with missing cells left out")
    return complete


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    main()
