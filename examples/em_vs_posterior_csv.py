"""EM against the posterior on the numeric columns of a CSV file.

    python examples/em_vs_posterior_csv.py [data.csv] [--components K] [--out DIR]

Without a CSV, Old Faithful is written to a temporary CSV first, so the example shows the whole
path from a file. Prints the EM estimate, the parameter-by-parameter comparison and the
mixture-level agreement; saves ``ellipses.png`` and ``forest.png`` into ``--out`` (default: the
current directory). Set ``BAYESGMM_DRAWS``, ``BAYESGMM_TUNE`` and ``BAYESGMM_CHAINS`` for a quick
run (e.g. 100, 100, 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bayesgmm import BayesianGMM, EMGaussianMixture, load_faithful
from bayesgmm.plotting import plot_ellipses, plot_forest


def sampling_settings() -> dict[str, int]:
    defaults = {"draws": 1000, "tune": 1000, "chains": 4}
    return {k: int(os.environ.get(f"BAYESGMM_{k.upper()}", v)) for k, v in defaults.items()}


def read_numeric(path: str | Path) -> pd.DataFrame:
    """The numeric columns of a CSV file, rows with missing values dropped."""
    return pd.read_csv(path).select_dtypes("number").dropna()


def forest_figure(idata) -> plt.Figure:
    """EM ticks on posterior intervals, one panel per parameter and feature: parameters on
    different scales (a mean of 80, a standard deviation of 6) make one forest unreadable."""
    features = list(idata.posterior["feature"].values)
    panels = [("weights", None)] + ([("correlations", None)] if len(features) > 1 else [])
    panels += [(name, feature) for feature in features for name in ("means", "stds")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.5 * len(panels)), layout="constrained")
    for i, (ax, (name, feature)) in enumerate(zip(axes, panels, strict=True)):
        features_shown = None if feature is None else [feature]
        plot_forest(idata, var_names=[name], features=features_shown, ax=ax, legend=i == 0)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", help="CSV file (default: Old Faithful)")
    parser.add_argument("--components", type=int, default=2, help="number of components")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="directory for figures")
    args = parser.parse_args(argv)

    if args.csv is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "faithful.csv"
            load_faithful().to_csv(path, index=False)
            print("No CSV given: wrote Old Faithful to a temporary CSV and read it back")
            X = read_numeric(path)
    else:
        X = read_numeric(args.csv)
    print(f"{len(X)} rows, features {list(X.columns)}\n")

    em = EMGaussianMixture(args.components, n_init=5, random_state=0).fit(X)
    print("EM weights:", em.weights_.round(3), f"(converged in {em.n_iter_} iterations)\n")
    bgmm = BayesianGMM(
        args.components, random_seed=0, progressbar=sys.stderr.isatty(), **sampling_settings()
    ).fit(X, em=em)

    print(bgmm.diagnostics()[["check", "value", "threshold", "passed"]].to_string(index=False))
    print("\nEM against the posterior (94% HDI):")
    print(bgmm.compare().round(3).to_string(index=False))
    print("\nMixture-level agreement:")
    print(bgmm.compare_mixture().round(4).to_string(index=False))

    args.out.mkdir(parents=True, exist_ok=True)
    figures = {
        "ellipses.png": plot_ellipses(bgmm.idata_, n_draws=40).figure,
        "forest.png": forest_figure(bgmm.idata_),
    }
    for name, fig in figures.items():
        fig.savefig(args.out / name, dpi=90, bbox_inches="tight")
        print(f"saved {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
