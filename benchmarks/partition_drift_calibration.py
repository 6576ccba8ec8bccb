"""How far the partition-drift test's level sits above the noise of chains that did not move.

Usage::

    python benchmarks/partition_drift_calibration.py benchmarks/data/iris.csv:3 \\
        path/to/airquality.csv:2 --seeds 1 2

Each ``path.csv:k`` (the CSV's numeric columns) is fitted by the default ``BayesianGMM(k)``
with the follow-ups off (``max_draws=draws``: the first run's chains as drawn), and one JSON
row per fit is printed: the worst R-hat, the number of modes, and for every chain its
partition gap against its level (``ratio``, :func:`bayesgmm.diagnostics.log_likelihood_drift`:
above 1 the chain counts as moved) and its log-likelihood shift against its sd (``shift``,
likewise). Chains of runs in one mode should stay well below 1; the margin is what this
measures (``benchmarks/results/partition_drift_calibration_20261207.txt``).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

from bayesgmm import BayesianGMM
from bayesgmm._idata import get_attr
from bayesgmm.diagnostics import log_likelihood_drift, parameter_diagnostics


def one_fit(path: str, k: int, seed: int) -> dict:
    """The first run of the default fit, follow-ups off, and its chains' drift ratios."""
    X = pd.read_csv(path).select_dtypes("number")
    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BayesianGMM(k, random_seed=seed, progressbar=False)
        fit.set_params(max_draws=fit.draws).fit(X)
    table = log_likelihood_drift(fit.idata_)
    ratio = (table["partition_gap"] / table["partition_level"]).to_numpy()
    shift = (np.abs(table["last"] - table["first"]) / table["sd"]).to_numpy()
    return {
        "data": path.rsplit("/", 1)[-1],
        "k": k,
        "seed": seed,
        "r_hat": round(float(parameter_diagnostics(fit.idata_)["r_hat"].max()), 3),
        "modes": int(get_attr(fit.idata_, "n_modes", default=1)),
        "ratio": np.round(ratio, 3).tolist(),
        "shift": np.round(shift, 2).tolist(),
        "seconds": round(time.time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="path.csv:k")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        path, k = case.rsplit(":", 1)
        for seed in args.seeds:
            rows.append(one_fit(path, int(k), seed))
            print("DRIFT " + json.dumps(rows[-1]), flush=True)
    one_mode = [r for r in rows if r["modes"] == 1]
    ratios = np.concatenate([r["ratio"] for r in one_mode]) if one_mode else np.array([])
    if ratios.size:
        print(
            f"{len(rows)} fits, {len(one_mode)} in one mode: their {ratios.size} chains' "
            f"gap / level at most {np.nanmax(ratios):.2f} (99% below "
            f"{np.nanquantile(ratios, 0.99):.2f}); above 1 a chain counts as moved"
        )


if __name__ == "__main__":
    main()
