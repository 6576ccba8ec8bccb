"""Components of a posterior that sit on a point mass: rows sharing one value of a feature.

A feature with a value many rows share exactly (structural zeros of a ratio, a floor of a
measurement) lets a Gaussian component sit on those rows with a standard deviation along it
bounded only by the prior's floor, and its density there grows as that floor allows: the
likelihood and LOO then favour the component for the tie, not for any cluster (R's
``cluster::plantTraits``, K = 3: a component on the 31 rows with ``longindex = 0``, posterior
standard deviation 0.0003 against EM's 0.156, every draw's log-likelihood 145 nats above EM's
maximum, LOO's choice by 196 nats; ``mlbench::Glass``, K = 2, on ``Ba = 0``: 1,201 nats). EM
reports such a fit as collapsed (its covariance floor holds it); the posterior has no such
floor, so :func:`point_masses` finds them after sampling.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["NARROW", "TIE_SHARE", "point_masses"]

TIE_SHARE = 0.9
"""A component's rows (by posterior membership) of which at least this share have one value."""

NARROW = 0.05
"""...and its posterior median standard deviation along that feature below this fraction of the
feature's standard deviation over all rows."""

_MIN_ROWS = 5  # (fewer rows are a collapse EM's checks name already)


def point_masses(fit: Any, X: Any) -> list[str]:
    """One sentence per component of a :class:`~bayesgmm.BayesianGMM` fitted to ``X`` that
    sits on a point mass (see the module's docstring), in component order; empty when none
    does.

    The components are those of the draws as relabelled to EM (over chains in several modes
    their labels mix, and a component found in one mode alone may be missed).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (several modes: the labels mix; said elsewhere)
        labels = fit.predict(X)
    X = np.asarray(X, dtype=float)
    covariances = fit.idata_.posterior["covariances"].values  # (chain, draw, K, D, D)
    sds = np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
    stds = np.median(sds.reshape(-1, *sds.shape[2:]), axis=0)  # (K, D), the data's units
    spread = np.nanstd(X, axis=0)
    names = [str(n) for n in fit.feature_names_]
    found = []
    for k in range(stds.shape[0]):
        rows = X[labels == k]
        for j in range(X.shape[1]):
            shared = _shared_value(rows[:, j])
            if shared is None or not stds[k, j] < NARROW * spread[j]:
                continue
            value, count, n = shared
            found.append(
                f"component {k} sits on {count} of its {n} rows, which share {names[j]} = "
                f"{value:g} (posterior standard deviation {stds[k, j]:.3g} along it, the "
                f"feature's {spread[j]:.3g})"
            )
    return found


def _shared_value(column: np.ndarray) -> tuple[float, int, int] | None:
    """``(value, count, rows)`` when at least :data:`TIE_SHARE` of the observed cells of
    ``column`` (and :data:`_MIN_ROWS`) have one value, else None."""
    observed = column[~np.isnan(column)]
    if observed.size < _MIN_ROWS:
        return None
    values, counts = np.unique(observed, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < max(_MIN_ROWS, TIE_SHARE * observed.size):
        return None
    return float(values[top]), int(counts[top]), int(observed.size)
