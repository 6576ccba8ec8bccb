"""Input checks: one place, one clear message (the problem and a remedy) for every bad input.

Every check here runs before any long work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import validate_data

__all__ = ["check_choice", "check_data", "check_fit_data"]


def check_choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Raise a ValueError listing the valid options if ``value`` is not one of them."""
    if value not in options:
        valid = ", ".join(repr(o) for o in options)
        raise ValueError(f"Unknown {name} {value!r}: choose one of {valid}.")
    return value


def _check_dataframe(X: pd.DataFrame) -> None:
    non_numeric = [
        str(c)
        for c in X.columns
        if not (pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c]))
    ]
    if non_numeric:
        raise ValueError(
            f"X has non-numeric column(s) {non_numeric}: a Gaussian mixture needs real-valued "
            "features. Drop or encode them, e.g. X.select_dtypes('number')."
        )


def _feature_label(j: int, names: np.ndarray | None) -> str:
    return f"{j} ({names[j]!r})" if names is not None else str(j)


def _check_finite(X: np.ndarray, names: np.ndarray | None) -> None:
    finite = np.isfinite(X)
    if finite.all():
        return
    bad_rows, bad_cols = np.nonzero(~finite)
    kind = "NaN" if np.isnan(X[bad_rows, bad_cols]).any() else "infinity"
    features = ", ".join(_feature_label(int(j), names) for j in np.unique(bad_cols)[:5])
    raise ValueError(
        f"Input X contains {kind} (or other non-finite values, NaN or inf) in "
        f"{np.unique(bad_rows).size} row(s), feature(s) {features}. Drop those rows or impute "
        "the missing values before fitting."
    )


def check_data(estimator: Any, X: Any, *, reset: bool, ensure_min_samples: int = 1) -> np.ndarray:
    """Validate ``X`` for ``estimator`` and return it as a float64 2-D array.

    ``reset=True`` (fitting) records ``n_features_in_`` and ``feature_names_in_``; ``reset=False``
    (predicting) checks ``X`` against them.
    """
    if isinstance(X, pd.DataFrame):
        _check_dataframe(X)
    if hasattr(X, "ndim") and getattr(X, "ndim", 2) == 1:
        raise ValueError(
            "Expected a 2-D array of shape (n_samples, n_features), got a 1-D array. Reshape "
            "your data with X.reshape(-1, 1) if it has one feature, or X.reshape(1, -1) if it "
            "is one sample."
        )
    X = validate_data(
        estimator,
        X,
        reset=reset,
        dtype=np.float64,
        ensure_all_finite=False,
        ensure_min_samples=ensure_min_samples,
    )
    _check_finite(X, getattr(estimator, "feature_names_in_", None))
    return X


def check_fit_data(estimator: Any, X: Any, n_components: int) -> np.ndarray:
    """Validate data for fitting a ``n_components`` mixture."""
    X = check_data(estimator, X, reset=True, ensure_min_samples=2)
    n_samples = X.shape[0]
    if n_samples < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {n_samples}: a mixture needs at least one sample per component. "
            "Reduce n_components or supply more data."
        )
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0)
    if constant.size:
        names = getattr(estimator, "feature_names_in_", None)
        labels = ", ".join(_feature_label(int(j), names) for j in constant)
        raise ValueError(
            f"Feature(s) {labels} of X are constant (zero variance): a Gaussian component "
            "cannot have zero spread. Drop the constant column(s) before fitting."
        )
    return X
