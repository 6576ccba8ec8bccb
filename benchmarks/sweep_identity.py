"""Whether two trees' em_sweeps are bit for bit the same: tables, fits and predictions.

A change meant to leave every number as it was (a cheaper fixed cost, a refactoring) is checked
by dumping a whole sweep per data set in each tree and comparing the dumps:

    cd TREE_A && python benchmarks/sweep_identity.py dump /tmp/a.pkl
    cd TREE_B && python benchmarks/sweep_identity.py dump /tmp/b.pkl
    python benchmarks/sweep_identity.py compare /tmp/a.pkl /tmp/b.pkl

The dump holds the table of ``em_sweep(X, K = 1..9, all 14 models, reg_covar=0,
random_state=0)`` and, for every fit, its parameters, lower bound, likelihood trace, collapsed
components, iterations, convergence, ``predict(X)`` and ``predict_proba(X)``. The tree is the
current directory (put first on ``sys.path``). Run a tree against itself in a second process
first: main's sweeps are reproducible across processes (checked 2026-12-03), so any difference
is the change's.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
DATASETS = "diabetes,iris,thyroid,faithful"
ATTRIBUTES = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_cholesky_",
    "lower_bound_",
    "log_likelihood_trace_",
    "collapsed_components_",
    "n_iter_",
    "converged_",
)


def dump(path: Path, names: list[str], data: Path) -> None:
    """Every sweep's table and fits (see the module docstring) into ``path``."""
    sys.path.insert(0, os.getcwd())
    import bayesgmm
    from bayesgmm import em_sweep

    out = {"tree": bayesgmm.__file__}
    for name in names:
        X = pd.read_csv(data / f"{name}.csv")
        sweep = em_sweep(X, range(1, 10), ["all"], reg_covar=0.0, random_state=0, progress=False)
        fits = {
            key: [np.asarray(getattr(fit, a)) for a in ATTRIBUTES]
            + [fit.predict(X), fit.predict_proba(X)]
            for key, fit in sweep.fits.items()
        }
        out[name] = (sweep.table, fits, sweep.best)
    path.write_bytes(pickle.dumps(out))
    print("dumped", out["tree"], "->", path)


def compare(first: Path, second: Path) -> bool:
    """Print, per data set, the table columns and fit arrays that differ; True if none."""
    a, b = (pickle.loads(p.read_bytes()) for p in (first, second))
    print(a["tree"], "vs", b["tree"])
    same = True
    for name in [k for k in a if k != "tree"]:
        (table_a, fits_a, best_a), (table_b, fits_b, best_b) = a[name], b[name]
        columns = [
            (c, int((table_a[c].astype(str) != table_b[c].astype(str)).sum()))
            for c in table_a.columns
        ]
        columns = [(c, n) for c, n in columns if n]
        arrays = sum(
            not np.array_equal(u, v)
            for key in fits_a
            for u, v in zip(fits_a[key], fits_b.get(key, [None] * len(fits_a[key])), strict=True)
        )
        keys = set(fits_a) == set(fits_b)
        same = same and not columns and not arrays and keys and best_a == best_b
        print(
            f"{name}: table columns differing {columns or 'none'}, fit arrays differing "
            f"{arrays}, same fitted cells {keys}, same best {best_a == best_b}"
        )
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--datasets", default=DATASETS)
    d.add_argument("--data", type=Path, default=DATA)
    c = sub.add_parser("compare")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.out, args.datasets.split(","), args.data)
    else:
        sys.exit(0 if compare(args.first, args.second) else 1)


if __name__ == "__main__":
    main()
