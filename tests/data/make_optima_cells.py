"""Reference optima for tests/test_sweep_moves.py, computed once: for each cell (data set,
model, K), R mclust 6.0's ``Mclust(X, G = K, modelNames = model)$loglik`` (its default start,
the hierarchical agglomeration on the scaled SVD, whose tree does not depend on G or the
model, so the number is the cell of ``Mclust(X, G = 1:9)``) and, for scikit-learn's models,
``GaussianMixture(K, n_init=10, random_state=0)`` on float64 data. Cells the sweep missed
before its merge pass (issue 13) and,
wreath EEE K=9, before the largest K had a K + 1 fit to merge from.

    python tests/data/make_optima_cells.py    (from the repository root; needs Rscript, mclust)
"""

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.mixture import GaussianMixture

CELLS = [("wreath", "VII", 8), ("banknote", "VII", 6), ("wreath", "EEE", 9)]
SKLEARN = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}
DATA = Path("benchmarks/data")
R = """suppressMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1]))
fit <- Mclust(X, G = as.integer(args[3]), modelNames = args[2], verbose = FALSE)
cat(sprintf("%.10f %s", fit$loglik, packageVersion("mclust")))
"""


def main() -> None:
    rows = []
    for name, model, k in CELLS:
        path = DATA / f"{name}.csv"
        out = subprocess.run(
            ["Rscript", "-e", R, str(path), model, str(k)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        X = pd.read_csv(path).to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(k, covariance_type=SKLEARN[model], n_init=10, random_state=0)
            sk = float(gm.fit(X).score(X)) * X.shape[0]
        rows.append(
            {
                "dataset": name,
                "model": model,
                "K": k,
                "mclust": float(out[0]),
                "sklearn": sk if np.isfinite(sk) else None,
            }
        )
        version = out[1]
    record = {"mclust_version": version, "sklearn_version": sklearn.__version__, "cells": rows}
    Path("tests/data/optima_cells.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
