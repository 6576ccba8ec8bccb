"""The default Bayesian path end to end on real data sets, one line of gates per fit (issue 15).

Usage::

    python benchmarks/bayes_real.py DIR/quakes.csv:3 DIR/fgl.csv:3 ... [--seed 1] [--kw JSON]

Each ``CSV:K`` is fitted with ``BayesianGMM(K, random_seed=seed, progressbar=False, **kw)`` on
the CSV's numeric columns (NaN cells are missing values), after one small warm-up fit so that
compiling is not timed. Per fit it prints the wall time end to end (EM, mode search, sampling,
every follow-up), the worst R-hat, the smallest bulk and tail ESS over parameters, the
divergences (``-`` when the kept draws are the independence Metropolis-Hastings step's), which
sampler drew the kept draws, the follow-ups that ran and the first line of each warning. The
issue's bar: R-hat <= 1.01, bulk and tail ESS >= 400, no divergences, under 60 s on this
2-core machine for N <= 1000, D <= 13, K <= 4.

The data sets of ``results/bayes_real_held_20261204.txt`` are R's (MASS and datasets packages,
Debian's ``r-cran-mass``), written to CSV by::

    Rscript -e 'library(MASS); w <- function(d, n) write.csv(d, paste0("DIR/", n, ".csv"),
      row.names = FALSE); w(quakes, "quakes"); w(Pima.tr[, 1:7], "pima"); w(fgl[, 1:9], "fgl");
      w(as.data.frame(state.x77), "statex77"); w(UScereal[, c(2:8, 10)], "cereal");
      w(swiss, "swiss"); w(geyser, "geyser"); w(USArrests, "usarrests"); w(trees, "trees")'

and iris, thyroid and banknote from ``benchmarks/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import pandas as pd

from bayesgmm import BayesianGMM
from bayesgmm._idata import get_attr, get_group
from bayesgmm.diagnostics import parameter_diagnostics


def fit_line(path: str, k: int, seed: int, kw: dict) -> str:
    """One fit of ``path`` at ``K = k``: its gates, sampler, follow-ups and warnings."""
    X = pd.read_csv(path).select_dtypes("number").to_numpy(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        fit = BayesianGMM(k, random_seed=seed, progressbar=False, **kw).fit(X)
        seconds = time.perf_counter() - start
    table = parameter_diagnostics(fit.idata_)
    stats = get_group(fit.idata_, "sample_stats")
    sampler = get_attr(fit.idata_, "draws_sampler") or "nuts"
    diverging = int(stats["diverging"].sum()) if sampler == "nuts" else "-"
    name = os.path.splitext(os.path.basename(path))[0]
    lines = [
        f"{name} {X.shape[0]}x{X.shape[1]} K={k} seed={seed}: {seconds:.1f} s, "
        f"R-hat {table['r_hat'].max():.3f}, ESS bulk {table['ess_bulk'].min():.0f} tail "
        f"{table['ess_tail'].min():.0f}, divergences {diverging}, draws by {sampler}"
    ]
    for step in get_attr(fit.idata_, "follow_up") or []:
        lines.append(f"    follow-up: {str(step)[:160]}")
    for message in sorted({str(w.message).split("\n")[0][:160] for w in caught}):
        lines.append(f"    warning: {message}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="CSV:K")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kw", default="{}", help="BayesianGMM keywords as JSON")
    args = parser.parse_args()
    kw = json.loads(args.kw)
    rng = np.random.default_rng(0)  # a small warm-up fit: compiling is not timed
    warm = np.concatenate([rng.normal(size=(60, 2)), rng.normal(4.0, 1.0, size=(60, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BayesianGMM(2, draws=50, tune=50, random_seed=0, progressbar=False).fit(warm)
    print(f"bayes_real.py --seed {args.seed} --kw '{args.kw}'", flush=True)
    for case in args.cases:
        path, k = case.rsplit(":", 1)
        print(fit_line(path, int(k), args.seed, kw), flush=True)


if __name__ == "__main__":
    main()
