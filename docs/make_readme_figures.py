"""Regenerate the figures shown in README.md (Old Faithful, K=2, default settings).

python docs/make_readme_figures.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bayesgmm import BayesianGMM, load_faithful
from bayesgmm.plotting import plot_ellipses, plot_membership

OUT = Path(__file__).parent / "figures"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    fit = BayesianGMM(2, random_seed=1, progressbar=False).fit(load_faithful())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    plot_ellipses(fit.idata_, ax=axes[0], random_seed=0)
    plot_membership(fit.idata_, ax=axes[1])
    fig.savefig(OUT / "faithful.png", dpi=90)
    print(fit.diagnostics().to_string(index=False))


if __name__ == "__main__":
    main()
