"""Why a sweep cell misses the optimum bar: every start of its em-EM, and candidate starts the
pool does not have, each run to convergence on its own.

For each listed cell (``MODEL:K``) of a data set, ``em_sweep`` (14 models, K = 1..K+1,
``--strategy`` as in ``optima_search``, ``--seed``) is run once; the sweep's own result for the
cell is printed with the reference (mclust and scikit-learn separately, from
``optima_search``'s cache; the sweep goes to K + 1, so with the merge pass its result can be
above a sweep's to K), then the starts that reach the reference (``--verbose``: all):

- every start em-EM had for the cell in the sweep's first pass (kind; log-likelihood after 1
  and 11 iterations and at convergence, each start on its own): if one reaches the reference,
  em-EM's selection of the runs it continues is at fault;
- candidate starts it did not have: scikit-learn's best ``GaussianMixture(n_init=10)`` fit's
  MAP partition, mclust's hierarchical agglomeration with other criteria (VII, EII) and on
  other transforms (STD), every other model's fit at K, the same model's K + 1 fit with two
  clusters merged (every pair), and its K - 1 fit split (every cluster).

    python benchmarks/optima_cells.py wreath VII:8,EEE:5 --seed 0
"""

from __future__ import annotations

import argparse
import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_mclust import DATA, SKLEARN_NAMES
from em_em_screening import MODELS
from optima_search import parse_strategy
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from bayesgmm import em as em_module
from bayesgmm import em_sweep
from bayesgmm._hierarchical import cut_tree, merge_tree, transform
from bayesgmm._missing import prepare
from bayesgmm._restarts import canonical, one_hot, split_starts


def converge(X: np.ndarray, model: str, k: int, resp: np.ndarray) -> tuple[float, float, float]:
    """Log-likelihood after 1 and 11 iterations and at convergence from ``resp`` (-inf: the
    run failed)."""
    em = em_module.EMGaussianMixture(
        k, covariance_type=model, reg_covar=0.0, tol=1e-5, max_iter=1000
    )
    em.model_name_ = model
    em.n_features_in_ = X.shape[1]
    data, summary = prepare(X, None, k)
    scaling = summary.scaling(isotropic=not em_module.models.per_feature_scaling(model))
    em._unit_variances = (summary.scaling(isotropic=False).scale / scaling.scale) ** 2
    Xu = scaling.transform(X)
    out = []
    try:
        run = em_module._Run(em._params_from_resp(Xu, resp))
        for step in (1, 10, None):
            em._advance(data, scaling, run, step)
            out.append((run.lower_bound - scaling.log_jacobian) * X.shape[0])
    except (ValueError, ArithmeticError):
        out += [-np.inf] * (3 - len(out))
    return tuple(out)


def candidates(X: np.ndarray, model: str, k: int, fits: dict) -> list[tuple[str, np.ndarray]]:
    """Starting partitions em-EM's pool lacks (see the module's docstring)."""
    found = []
    if model in SKLEARN_NAMES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(
                k, covariance_type=SKLEARN_NAMES[model], n_init=10, random_state=0
            ).fit(X)
        found.append(("sklearn-best", gm.predict(X)))
    for hc_model, use in (("VII", "SVD"), ("EII", "SVD"), ("VVV", "STD"), ("EII", "STD")):
        try:
            found.append(
                (
                    f"hc-{hc_model}-{use}",
                    cut_tree(merge_tree(transform(X, use), model=hc_model), [k])[:, 0],
                )
            )
        except (ValueError, ArithmeticError):
            pass
    for (j, other), fit in fits.items():
        if j == k and other != model:
            found.append((f"from-{other}", fit.predict(X)))
    if (k + 1, model) in fits:
        labels = canonical(fits[k + 1, model].predict(X))
        for a, b in itertools.combinations(range(labels.max() + 1), 2):
            found.append((f"merge{a}{b}", canonical(np.where(labels == b, a, labels))))
    if (k - 1, model) in fits:
        standard = (X - X.mean(axis=0)) / X.std(axis=0)
        for i, s in enumerate(split_starts(fits[k - 1, model].predict(X), standard, k)):
            found.append((f"split{i}", s))
    return [(kind, l) for kind, l in found if np.unique(l).size == k]


def report(
    X: np.ndarray,
    model: str,
    k: int,
    ours: float,
    refs: dict,
    seen: dict,
    fits: dict,
    verbose: bool,
) -> None:
    """Print the cell's result, and every start that reaches the reference (all: ``verbose``)."""
    ref = max(refs["mclust"].get((model, k)) or -np.inf, refs["sklearn"].get((model, k)) or -np.inf)
    kind, starts = seen[model, k]
    print(
        f"== {model} K={k}: ours {ours:.2f} (from {kind}), mclust "
        f"{refs['mclust'].get((model, k))}, sklearn {refs['sklearn'].get((model, k))}"
    )
    rows = [(f"pool:{kind}", resp) for kind, resp in starts]
    rows += [(c, one_hot(l, k, X.shape[0])) for c, l in candidates(X, model, k, fits)]
    results = [(name, converge(X, model, k, resp)) for name, resp in rows]
    first = sorted((r[1][0] for r in results), reverse=True)
    for name, (one, eleven, final) in results:
        if verbose or final >= ref - 0.1:
            mark = "REACHES" if final >= ref - 0.1 else ""
            print(
                f"  {name:<16} 1 it {one:10.2f} (rank {first.index(one) + 1:>2})  "
                f"11 its {eleven:10.2f}  final {final:10.2f}  {final - ref:+8.2f} {mark}"
            )
    pool = max(r[1][2] for r in results if r[0].startswith("pool:"))
    print(f"  best pool start to convergence: {pool - ref:+.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("cells", help="MODEL:K,...")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=Path(".cache") / "optima_refs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="default", help="as optima_search's")
    parser.add_argument("--verbose", action="store_true", help="every start, not only winners")
    args = parser.parse_args()
    cells = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cells.split(",")]
    X = pd.read_csv(args.data / f"{args.dataset}.csv").astype(float).to_numpy()
    record = json.loads((args.cache / f"{args.dataset}.json").read_text())
    refs = {s: {(m, k): v for m, k, v in record[s]} for s in ("mclust", "sklearn")}
    seen: dict = {}
    original = em_module.EMGaussianMixture._em_em

    def recording(self, data, scaling, starts, strategy, map_runs=map):
        cell = (self.model_name_, self.n_components)
        first = cell in cells and cell not in seen  # the forward pass's em-EM
        if first:  # (recorded before it runs: every start may fail)
            seen[cell] = ("failed", list(starts))
        best = original(self, data, scaling, starts, strategy, map_runs)
        if first:
            seen[cell] = (best.kind, list(starts))
        return best

    em_module.EMGaussianMixture._em_em = recording
    with threadpool_limits(1):
        sweep = em_sweep(
            X,
            range(1, max(k for _, k in cells) + 2),
            MODELS,
            reg_covar=0.0,
            progress=False,
            random_state=args.seed,
            strategy=parse_strategy(args.strategy)[1],
        )
        em_module.EMGaussianMixture._em_em = original
        table = sweep.table.set_index(["model_name", "n_components"])
        for model, k in cells:
            report(
                X,
                model,
                k,
                table.loc[(model, k), "log_likelihood"],
                refs,
                seen,
                sweep.fits,
                args.verbose,
            )


if __name__ == "__main__":
    main()
