"""The default BayesianGMM on posteriors whose chains leave EM's mode (issue 15, "drift").

Usage::

    python benchmarks/bench_mcmc_drift.py crabs:4 crabs:3 crabs:2 iris:3 iris:4 banknote:3 \\
        --seeds 1

Each ``name:k`` runs :func:`hard_cases.run_default` (data from :data:`hard_cases.HARD_CASES`,
``k`` components) end to end and prints one JSON row with the load average beside it: seconds,
worst R-hat and smallest bulk/tail ESS over every parameter, divergences, the modes found,
each chain's log-likelihood drift, and which chains had left the mode they were whitened at
(``chains_left_mode``; then every chain ran again from its own draws, :mod:`bayesgmm._drift`).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

from hard_cases import HARD_CASES, run_default

from bayesgmm import BayesianGMM, load_faithful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="name:k, name one of " + ", ".join(HARD_CASES))
    parser.add_argument("--seeds", type=int, nargs="*", default=[1])
    args = parser.parse_args()
    with warnings.catch_warnings():  # warm-up: Numba's caches filled before anything is timed
        warnings.simplefilter("ignore")
        BayesianGMM(2, draws=20, tune=20, progressbar=False).fit(load_faithful())
    for case in args.cases:
        name, k = case.split(":")
        for seed in args.seeds:
            row = run_default(name, seed, k=int(k))
            row["load"] = [round(v, 2) for v in os.getloadavg()]
            print("DRIFT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
