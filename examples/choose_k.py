"""How many components? BIC and ICL from EM against LOO from the posterior.

    python examples/choose_k.py [data.csv] [--components 1-5] [--candidates 2] [--out DIR]

Fits EM for every K (default Old Faithful, K = 1..5), samples the best candidates by BIC and
compares them by LOO; prints both tables and the K each criterion chooses, and saves
``criteria.png`` into ``--out`` (default: the current directory). A candidate whose chains did
not converge is listed with the checks it failed and cannot win. Set ``BAYESGMM_DRAWS``,
``BAYESGMM_TUNE`` and ``BAYESGMM_CHAINS`` for a quick run (e.g. 100, 100, 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from bayesgmm import load_faithful
from bayesgmm.plotting import plot_criteria
from bayesgmm.selection import select_n_components


def sampling_settings() -> dict[str, int]:
    defaults = {"draws": 1000, "tune": 1000, "chains": 4}
    return {k: int(os.environ.get(f"BAYESGMM_{k.upper()}", v)) for k, v in defaults.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", help="CSV file (default: Old Faithful)")
    parser.add_argument("--components", default="1-5", help="K range, e.g. 1-5")
    parser.add_argument("--candidates", type=int, default=2, help="Ks sampled for LOO")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="directory for the figure")
    args = parser.parse_args(argv)
    low, _, high = args.components.partition("-")
    ks = range(int(low), int(high or low) + 1)
    X = load_faithful() if args.csv is None else pd.read_csv(args.csv).select_dtypes("number")

    selection = select_n_components(
        X, ks, n_candidates=args.candidates, progress=False, **sampling_settings()
    )
    em_columns = ["n_components", "status", "log_likelihood", "n_parameters", "bic", "icl"]
    print("EM sweep (lower is better):")
    print(selection.em.table[em_columns].round(2).to_string(index=False))
    loo_columns = ["rank", "elpd_loo", "p_loo", "elpd_diff", "dse", "weight"]
    loo_columns += ["converged", "failed_checks", "winner"]
    print("\nLOO of the sampled candidates (higher elpd_loo is better):")
    print(selection.loo[loo_columns].round(2).to_string())
    chosen = selection.chosen
    print(
        f"\nChosen K: BIC {chosen['bic'][0]}, ICL {chosen['icl'][0]}, LOO {chosen['loo']}"
        + ("" if chosen["loo"] is not None else " (no sampled candidate converged)")
    )

    args.out.mkdir(parents=True, exist_ok=True)
    ax = plot_criteria(selection.em.table, criteria=("bic", "icl"))
    ax.figure.savefig(args.out / "criteria.png", dpi=90, bbox_inches="tight")
    print(f"saved {args.out / 'criteria.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
