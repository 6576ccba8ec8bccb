"""Choosing the number of components (and the covariance family).

The EM sweep fits every (K, covariance family) with restarts and tabulates the log-likelihood and
the information criteria; a fit that fails is listed with its error, never raised or dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from ._gaussian import COVARIANCE_TYPES
from ._progress import progress_bar
from ._validation import check_choice
from .em import CollapsedComponentWarning, EMGaussianMixture

__all__ = ["EMSelection", "em_sweep"]

CRITERIA = ("bic", "aic", "icl")


@dataclass
class EMSelection:
    """Result of an EM sweep over K and covariance families.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (``n_components``, ``covariance_type``): ``status`` ("ok", "collapsed",
        "not converged" or "failed"), ``log_likelihood`` (total), ``n_parameters``, ``bic``,
        ``aic``, ``icl`` (scikit-learn's sign: lower is better), ``converged``, ``n_iter`` and
        ``message`` (the error or warning text). Rows that failed carry NaN criteria.
    fits : dict
        The fitted :class:`EMGaussianMixture` per ``(n_components, covariance_type)``.
    best : dict
        Per criterion, the ``(n_components, covariance_type)`` with the lowest value among fits
        whose status is "ok" (or among all fitted rows if none is).
    """

    table: pd.DataFrame
    fits: dict[tuple[int, str], EMGaussianMixture] = field(repr=False)
    best: dict[str, tuple[int, str]]

    def best_fit(self, criterion: str = "bic") -> EMGaussianMixture:
        """The fitted mixture chosen by ``criterion`` ("bic", "aic" or "icl")."""
        check_choice("criterion", criterion, CRITERIA)
        return self.fits[self.best[criterion]]


def _fit_one(X: np.ndarray, k: int, cov_type: str, em_kwargs: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"n_components": k, "covariance_type": cov_type}
    em = EMGaussianMixture(k, covariance_type=cov_type, **em_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("always", CollapsedComponentWarning)
        try:
            em.fit(X)
        except ValueError as err:
            return {**row, "status": "failed", "message": str(err), "_fit": None}
    messages = [str(w.message) for w in caught]
    collapsed = any(issubclass(w.category, CollapsedComponentWarning) for w in caught)
    status = "collapsed" if collapsed else ("ok" if em.converged_ else "not converged")
    n = X.shape[0]
    log_l = float(em.score_samples(X).sum())
    return {
        **row,
        "status": status,
        "log_likelihood": log_l,
        "n_parameters": em.n_parameters(),
        "bic": em.bic(X),
        "aic": em.aic(X),
        "icl": em.icl(X),
        "converged": em.converged_,
        "n_iter": em.n_iter_,
        "message": " ".join(messages),
        "_fit": em,
        "_n": n,
    }


def em_sweep(
    X: Any,
    n_components: Iterable[int] = range(1, 7),
    covariance_types: Iterable[str] = ("full",),
    *,
    n_init: int = 5,
    random_state: int | None = 0,
    progress: bool = True,
    **em_kwargs: Any,
) -> EMSelection:
    """Fit EM with restarts for every (K, covariance family) and tabulate the criteria.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : iterable of int
    covariance_types : iterable of {"full", "tied", "diag", "spherical"}
    n_init : int
        EM restarts per fit.
    random_state : int or None
        Seed shared by every fit (each fit is reproducible on its own).
    progress : bool
        Show a progress bar across the sweep.
    **em_kwargs
        Further :class:`EMGaussianMixture` parameters (``tol``, ``reg_covar``, ...).

    Returns
    -------
    EMSelection

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> sweep = em_sweep(load_faithful(), range(1, 4), progress=False)
    >>> sweep.best["bic"]
    (3, 'full')
    """
    ks = sorted({int(k) for k in n_components})
    if not ks or ks[0] < 1:
        raise ValueError(f"n_components must be positive integers, got {ks}.")
    cov_types = [check_choice("covariance type", c, COVARIANCE_TYPES) for c in covariance_types]
    probe = EMGaussianMixture(ks[0], n_init=n_init, random_state=random_state, **em_kwargs)
    probe._check_parameters()
    rows = []
    grid = [(k, c) for c in cov_types for k in ks]
    with progress_bar(len(grid), "EM sweep", enabled=progress) as bar:
        for k, cov_type in grid:
            bar.describe(f"EM: K={k} {cov_type}")
            rows.append(
                _fit_one(
                    X, k, cov_type, dict(n_init=n_init, random_state=random_state, **em_kwargs)
                )
            )
            bar.advance()
    fits = {(r["n_components"], r["covariance_type"]): r["_fit"] for r in rows if r["_fit"]}
    columns = [
        "n_components",
        "covariance_type",
        "status",
        "log_likelihood",
        "n_parameters",
        "bic",
        "aic",
        "icl",
        "converged",
        "n_iter",
        "message",
    ]
    table = pd.DataFrame(rows).reindex(columns=columns)
    return EMSelection(table=table, fits=fits, best=_best_by_criterion(table))


def _best_by_criterion(table: pd.DataFrame) -> dict[str, tuple[int, str]]:
    usable = table[table["status"] == "ok"]
    if usable.empty:
        usable = table[table["status"] != "failed"]
    if usable.empty:
        raise ValueError(
            "Every EM fit failed; see the messages in the table. Reduce the number of "
            "components or increase reg_covar."
        )
    best = {}
    for criterion in CRITERIA:
        row = usable.loc[usable[criterion].idxmin()]
        best[criterion] = (int(row["n_components"]), str(row["covariance_type"]))
    return best
