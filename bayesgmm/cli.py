"""The ``bayesgmm`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .datasets import load_faithful
from .selection import em_sweep


def _demo(args: argparse.Namespace) -> int:
    X = load_faithful()
    sweep = em_sweep(X, range(1, 5), ("full",), random_state=args.seed, progress=True)
    with pd.option_context("display.width", 120, "display.precision", 2):
        print("EM on Old Faithful (272 x 2), full covariances; criteria: lower is better")
        print(sweep.table.drop(columns=["message"]).to_string(index=False))
    k, cov_type = sweep.best["bic"]
    em = sweep.best_fit("bic")
    print(f"\nChosen by BIC: K={k} ({cov_type})")
    with np.printoptions(precision=3, suppress=True):
        print("weights:", em.weights_)
        print("means:\n", em.means_)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayesgmm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="EM model selection on the embedded Old Faithful data.")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
