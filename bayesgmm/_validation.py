"""Input checks: one place, one clear message (the problem and a remedy) for every bad input.

Every check here runs before any long work starts.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import validate_data

from ._errors import warn

__all__ = ["check_choice", "check_data", "check_fit_data", "check_sample_weight"]


def check_choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Raise a ValueError listing the valid options if ``value`` is not one of them."""
    if value not in options:
        valid = ", ".join(repr(o) for o in options)
        raise ValueError(f"Unknown {name} {value!r}: choose one of {valid}.")
    return value


def _check_dataframe(X: pd.DataFrame) -> None:
    non_numeric = [
        c
        for c in X.columns
        if not (pd.api.types.is_numeric_dtype(X[c]) and not pd.api.types.is_bool_dtype(X[c]))
    ]
    if not non_numeric:
        return
    texts = numbers_as_text(X[non_numeric])
    separated = separated_numbers(X[[c for c, _, _ in texts]])
    if separated:
        column = repr(str(separated[0][0]))
        raise ValueError(
            f"X has numbers written with thousands separators: {_separated_phrase(separated)}. "
            f"Remove the separators, e.g. X[{column}] = pd.to_numeric(X[{column}].str.replace("
            "',', '')), or read the file with read_csv(..., thousands=','); if the commas are "
            "decimal commas, read it with read_csv(..., decimal=',') instead; marking those "
            "cells missing would discard valid values."
        )
    if texts:
        column = repr(str(texts[0][0]))
        raise ValueError(
            f"X has numbers stored as text: {_texts_phrase(texts)}. Mark those cells missing "
            f"(NaN cells are missing values, which EM handles), e.g. X[{column}] = "
            f"pd.to_numeric(X[{column}], errors='coerce'), or read the file with "
            "read_csv(..., na_values=[...]); select_dtypes('number') would drop the column(s)."
        )
    raise ValueError(
        f"X has non-numeric column(s) {[str(c) for c in non_numeric]}: a Gaussian mixture "
        "needs real-valued features. Drop or encode them, e.g. X.select_dtypes('number')."
    )


def _texts_phrase(texts: list[tuple[Any, int, list[str]]]) -> str:
    return "; ".join(
        f"column {str(c)!r} ({n} cell(s) {tokens[:5] + (['...'] if len(tokens) > 5 else [])} "
        "are not numbers)"
        if n
        else f"column {str(c)!r} (every cell a number, stored as text or objects)"
        for c, n, tokens in texts
    )


def numbers_as_text(frame: pd.DataFrame) -> list[tuple[Any, int, list[str]]]:
    """The columns of ``frame`` whose text is mostly numbers (a CSV whose missing cells are
    written '?', '.' or '-' is read so), each with how many cells are not numbers and which
    (as ``(column, count, tokens)``). A number written with thousands separators ('1,062')
    counts as a number (:func:`separated_numbers` names those)."""
    found = []
    for column in frame.columns:
        text = _text_cells(frame[column])
        if text is None:
            continue
        separated = text.str.fullmatch(_THOUSANDS)
        parsed = pd.to_numeric(text.where(~separated, text.str.replace(",", "")), errors="coerce")
        if parsed.notna().mean() >= 0.5:  # mostly numbers: the rest mark missing cells
            found.append((column, int(parsed.isna().sum()), sorted(set(text[parsed.isna()]))))
    return found


# a number written with thousands separators: '1,062', '-12,345.5' (a CSV quotes such cells)
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")  # ('0,125': a decimal comma)


def separated_numbers(frame: pd.DataFrame) -> list[tuple[Any, int, list[str]]]:
    """The columns of ``frame`` with cells that are numbers written with thousands separators
    ('1,062', which pandas reads as text), each with how many such cells and the first of them
    (as ``(column, count, cells)``).

    Examples
    --------
    >>> separated_numbers(pd.DataFrame({"a": ["1,062", "713", None], "b": ["x", "7,3", "y"]}))
    [('a', 1, ['1,062'])]
    """
    found = []
    for column in frame.columns:
        text = _text_cells(frame[column])
        if text is None:
            continue
        cells = text[text.str.fullmatch(_THOUSANDS)]
        if not cells.empty:
            found.append((column, int(cells.size), list(dict.fromkeys(cells))[:5]))
    return found


def _text_cells(values: pd.Series) -> pd.Series | None:
    """A column's observed cells as stripped text, or None for a boolean or empty column."""
    values = values.dropna()
    if pd.api.types.is_bool_dtype(values) or values.empty:
        return None
    return values.astype(str).str.strip()


def _separated_phrase(separated: list[tuple[Any, int, list[str]]]) -> str:
    return "; ".join(
        f"column {str(c)!r} ({n} cell(s) such as {cells[:3]})" for c, n, cells in separated
    )


# fewer observed values than this are too few to tell a row identifier from a measurement
# (five counts may well be 2, 3, 4, 5, 6)
_MIN_IDENTIFIER_ROWS = 10


def identifier_columns(frame: pd.DataFrame) -> list[Any]:
    """The numeric columns of ``frame`` that look like row identifiers: their observed values
    are distinct integers forming a run of consecutive integers (1..N, 0..N-1, 1001..1000+N),
    in any order, over at least ten rows.

    HSAUR3::Forbes2000's ``rank`` (1..2000, one per row) is such a column; modelled as a
    feature it drove the clustering. Integers spaced more widely (depths every 10 m, doses,
    years every fourth) are not flagged: a grid chosen by design is often a real variable.

    Examples
    --------
    >>> n = np.arange(12)
    >>> identifier_columns(pd.DataFrame({"id": 12 - n, "x": n % 5, "grid": 10.0 * n}))
    ['id']
    """
    found = []
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(
            frame[column]
        ):
            continue
        values = frame[column].dropna().to_numpy(dtype=float)
        if values.size >= _MIN_IDENTIFIER_ROWS and _is_consecutive_run(values):
            found.append(column)
    return found


def _is_consecutive_run(values: np.ndarray) -> bool:
    """Whether ``values`` are distinct integers with no gap between the smallest and largest."""
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        return False
    return np.unique(values).size == values.size == values.max() - values.min() + 1


def _feature_label(j: int, names: np.ndarray | None) -> str:
    return f"{j} ({names[j]!r})" if names is not None else str(j)


def _check_finite(X: np.ndarray, names: np.ndarray | None, *, allow_nan: bool = False) -> None:
    finite = np.isfinite(X)
    if finite.all():
        return
    bad = np.isinf(X) if allow_nan else ~finite
    if allow_nan and not bad.any():
        return
    bad_rows, bad_cols = np.nonzero(bad)
    kind = "NaN" if np.isnan(X[bad_rows, bad_cols]).any() else "infinity"
    message = _non_finite_message(kind, np.unique(bad_rows).size, np.unique(bad_cols), names)
    if allow_nan:
        message += " (NaN cells are missing values, which EM handles.)"
    raise ValueError(message)


def _non_finite_message(kind: str, n_rows: int, columns: np.ndarray, names: Any) -> str:
    features = ", ".join(_feature_label(int(j), names) for j in columns[:5])
    return (
        f"Input X contains {kind} (or other non-finite values, NaN or inf) in "
        f"{n_rows} row(s), feature(s) {features}. " + _non_finite_remedy(kind)
    )


def _non_finite_remedy(kind: str) -> str:
    if kind == "infinity":
        return "Correct or drop those rows before fitting."
    return (
        "EMGaussianMixture and BayesianGMM.fit take rows with missing cells exactly; here drop "
        "those rows (filling them in first, e.g. with EMGaussianMixture.impute, would make "
        "posterior intervals too narrow)."
    )


def check_data(
    estimator: Any, X: Any, *, reset: bool, ensure_min_samples: int = 1, allow_nan: bool = False
) -> np.ndarray:
    """Validate ``X`` for ``estimator`` and return it as a float64 2-D array.

    ``reset=True`` (fitting) records ``n_features_in_`` and ``feature_names_in_``; ``reset=False``
    (predicting) checks ``X`` against them. ``allow_nan`` lets NaN (missing values) through;
    infinity is always an error.
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
    _check_finite(X, getattr(estimator, "feature_names_in_", None), allow_nan=allow_nan)
    return X


def check_fit_data(
    estimator: Any, X: Any, n_components: int, *, allow_nan: bool = False
) -> np.ndarray:
    """Validate data for fitting a ``n_components`` mixture.

    With ``allow_nan`` (missing values), a feature with no observed value is an error naming
    it, and a feature is constant when its observed values are.
    """
    X = check_data(estimator, X, reset=True, ensure_min_samples=2, allow_nan=allow_nan)
    _check_n_samples(X.shape[0], n_components)
    if allow_nan and np.isnan(X).any():
        _check_observed(estimator, np.isnan(X).all(axis=0))
        _reject_features(
            estimator,
            _one_observed_value(X),
            "have one value in all their observed cells (observed once, or always the same): "
            "a Gaussian component cannot have zero spread. Drop the column(s) before fitting.",
        )
    else:
        _check_constant(estimator, np.ptp(X, axis=0) == 0)
    return X


def _check_observed(estimator: Any, never_observed: np.ndarray) -> None:
    _reject_features(
        estimator,
        never_observed,
        "are missing (NaN) in every row: nothing can be estimated about them. Drop the "
        "column(s) before fitting.",
    )


def check_sample_weight(
    sample_weight: Any,
    n_samples: int,
    n_components: int,
    X: np.ndarray | None = None,
    estimator: Any = None,
) -> np.ndarray | None:
    """Frequency weights as a float array of shape ``(n_samples,)``, or None.

    Weights count how often each row occurs (scikit-learn's convention): they must be finite,
    non-negative, and positive on at least ``n_components`` rows. Given the validated ``X``
    (NaN cells missing), every feature must also be observed, and not constant, in the rows
    of positive weight: a zero weight removes a row, so a feature observed only in such rows
    is missing everywhere (``estimator`` names the features).
    """
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numbers, got dtype {w.dtype}.")
    w = w.astype(np.float64)
    if w.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per row of X, got {w.shape}."
        )
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity: give every row a finite weight.")
    if (w < 0).any():
        raise ValueError(
            f"sample_weight has {int(np.sum(w < 0))} negative value(s): weights count how often "
            "a row occurs, so they must be >= 0."
        )
    if not w.any():
        raise ValueError(
            "sample_weight is zero for every row: at least one row needs a positive weight."
        )
    if np.count_nonzero(w) < n_components:
        raise ValueError(
            f"sample_weight is positive on {np.count_nonzero(w)} row(s), fewer than "
            f"n_components = {n_components}: a mixture needs at least one weighted row per "
            "component. Reduce n_components or give more rows a positive weight."
        )
    if X is not None and not w.all():
        _check_weighted_features(estimator, X[w > 0])
    return w


def _one_observed_value(X: np.ndarray) -> np.ndarray:
    """Per feature: whether its observed (non-NaN) cells hold one value (callers reject
    features with no observed cell first)."""
    with np.errstate(invalid="ignore"):
        return np.nanmax(X, axis=0) == np.nanmin(X, axis=0)


def _check_weighted_features(estimator: Any, kept: np.ndarray) -> None:
    """The checks of :func:`check_fit_data` on the rows of positive weight."""
    remedy = " (only rows of weight zero have them; give those rows a positive weight)"
    never = np.isnan(kept).all(axis=0)
    _reject_features(
        estimator,
        never,
        "are missing (NaN) in every row of positive weight: nothing can be estimated about "
        "them. Drop the column(s) before fitting" + remedy + ".",
    )
    _reject_features(
        estimator,
        _one_observed_value(kept),
        "are constant (zero variance) in the rows of positive weight: a Gaussian component "
        "cannot have zero spread. Drop the constant column(s) before fitting.",
    )


def too_many_components(n_samples: int, n_components: int) -> str:
    """Why ``n_components`` exceed the rows ("" when they do not)."""
    if n_samples >= n_components:
        return ""
    return (
        f"Expected n_samples >= n_components but got n_components = {n_components}, "
        f"n_samples = {n_samples}: a mixture needs at least one sample per component. "
        "Reduce n_components or supply more data."
    )


def _check_n_samples(n_samples: int, n_components: int) -> None:
    if n_samples < n_components:
        raise ValueError(too_many_components(n_samples, n_components))


def _check_constant(estimator: Any, is_constant: np.ndarray) -> None:
    _reject_features(
        estimator,
        is_constant,
        "are constant (zero variance): a Gaussian component cannot have zero spread. Drop "
        "the constant column(s) before fitting.",
    )


def _reject_features(estimator: Any, flags: np.ndarray, problem: str) -> None:
    """Raise ``Feature(s) <names> of X <problem>`` if any feature is flagged."""
    bad = np.flatnonzero(flags)
    if bad.size:
        names = getattr(estimator, "feature_names_in_", None)
        labels = ", ".join(_feature_label(int(j), names) for j in bad)
        raise ValueError(f"Feature(s) {labels} of X {problem}")


def check_lazy_shape(
    estimator: Any, shape: tuple[int, ...], dtype: Any, *, reset: bool, ensure_min_samples: int = 1
) -> None:
    """The checks of :func:`check_data` that need no values, for data not in memory (Dask).

    Dimensions, sample count and feature count (recorded when ``reset``, compared otherwise)
    are checked on a zero-filled stand-in of the same shape (at most ``ensure_min_samples``
    rows) and dtype, so the messages are those of in-memory data.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(
            f"X has dtype {dtype}: a Gaussian mixture needs real-valued features. Convert the "
            "array to numbers (X.astype(float)) or drop the non-numeric columns."
        )
    stand_in = np.zeros((min(shape[0], ensure_min_samples), *shape[1:]), dtype=dtype)
    check_data(estimator, stand_in, reset=reset, ensure_min_samples=ensure_min_samples)


def check_fit_summary(
    estimator: Any,
    n_components: int,
    *,
    n_samples: int,
    n_bad_rows: int,
    n_nan: np.ndarray,
    n_inf: np.ndarray,
    minimum: np.ndarray,
    maximum: np.ndarray,
) -> None:
    """The value checks of :func:`check_fit_data` from per-feature counts and ranges.

    For data not in memory (a Dask array), whose counts of NaN and infinite values, rows with
    either, minimum and maximum come from one pass. Raises the same messages.
    """
    _check_n_samples(n_samples, n_components)
    bad = np.flatnonzero(np.asarray(n_nan) + np.asarray(n_inf))
    if bad.size:
        kind = "NaN" if np.sum(n_nan) else "infinity"
        names = getattr(estimator, "feature_names_in_", None)
        raise ValueError(_non_finite_message(kind, n_bad_rows, bad, names))
    _check_constant(estimator, np.asarray(maximum) == np.asarray(minimum))


class _Holder:
    """A bare object for scikit-learn's ``validate_data`` outside an estimator; its class is
    named after the caller, which scikit-learn's messages name."""

    def __sklearn_tags__(self):
        from sklearn.base import BaseEstimator

        return BaseEstimator().__sklearn_tags__()


def _holder(caller: str) -> _Holder:
    return type(caller, (_Holder,), {})()


def check_matrix(
    X: Any,
    *,
    n_components: int | None = None,
    caller: str = "bayesgmm",
    estimator: Any = None,
    allow_nan: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Validate data for the Bayesian mixture; return the float array and feature names.

    Feature names are the DataFrame's columns, or ``x0, x1, ...`` for arrays. Raises the same
    errors as fitting EM (NaN/inf, shapes, non-numeric or constant columns, too few samples),
    naming ``caller`` (or ``estimator``, on which ``n_features_in_`` and
    ``feature_names_in_`` are recorded), and :func:`check_independent_columns`'s.
    ``allow_nan`` lets missing values through (as EM takes them); the columns' independence is
    then checked on the complete rows.
    """
    holder = estimator if estimator is not None else _holder(caller)
    array = check_fit_data(holder, X, n_components or 1, allow_nan=allow_nan)
    names = getattr(holder, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(array.shape[1])]
    names = [str(n) for n in names]
    check_independent_columns(_complete_rows(array), names)
    return array, names


# smallest eigenvalue of the standardised columns' correlation matrix, relative to the
# largest, below which one column is a linear function of others: to rounding (an error), and
# nearly (a warning). Closed percentages rounded to 0.01 (benchmarks/hard_cases.py
# compositional): 3e-8, and the default path did not mix; near-collinear columns that sample
# well (hard_cases.py collinear: 4.5e-5), MASS::fgl's oxide percentages (rows sum to 98-101:
# 7.7e-4), wine (0.02) stay above 1e-6.
_DEPENDENT, _NEARLY_DEPENDENT = 1e-10, 1e-6


def _correlation_spectrum(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the standardised columns' correlation
    matrix: one decomposition serves both thresholds of :func:`_dependent_columns`."""
    from ._scaling import AffineScaling

    z = AffineScaling.fit(X).transform(X)
    return np.linalg.eigh(z.T @ z / X.shape[0])


def _dependent_columns(
    spectrum: tuple[np.ndarray, np.ndarray], threshold: float = _DEPENDENT
) -> list[int] | None:
    """Columns with a linear dependence among them to ``threshold``, or None.

    From the correlation spectrum (:func:`_correlation_spectrum`): an eigenvalue below
    ``threshold`` times the largest (``1e-10``: one column is a linear function of others to
    ten digits).
    """
    values, vectors = spectrum
    if values[0] > threshold * values[-1]:
        return None
    null = np.abs(vectors[:, 0])
    return [int(j) for j in np.flatnonzero(null > 1e-6 * null.max())]


def _closure(X: np.ndarray, involved: list[int]) -> str | None:
    """How the rows are closed, when the dependence is a constant sum of the ``involved``
    (non-negative) columns, else None."""
    parts = X[:, involved]
    sums = parts.sum(axis=1)
    if np.any(parts < 0) or np.std(sums) > 1e-3 * abs(np.mean(sums)):
        return None
    return f"compositional data: the rows' parts sum to a constant ({np.mean(sums):.6g})"


# a closure to rounding: the rows' sums vary within the parts' rounding and, so that coarse
# codes (0/1 columns, whose sums always do) are not called compositional, their standard
# deviation is below this fraction of the parts' pooled one (sqrt of the summed variances).
# HSAUR3::household in percent to 0.1: 0.002; shares rounded to 0.01: 0.02; independent
# columns: 1. Loadings of the smallest eigenvector below this fraction of the largest are
# outside the candidate subset of parts.
_CLOSED_SPREAD, _PART_LOADING = 0.1, 1e-2


def _rounded_closure(
    X: np.ndarray, names: list[str], spectrum: tuple[np.ndarray, np.ndarray]
) -> str | None:
    """How the rows are closed to rounding, when all the columns or those of the correlation
    spectrum's smallest direction sum to a constant up to the data's rounding, else None.

    Judged whatever the spectrum's eigenvalue ratio: percentages rounded to 0.1
    (HSAUR3::household, ratio 1.37e-6) stay above the near-dependence threshold.
    """
    loadings = np.abs(spectrum[1][:, 0])
    candidates = [list(range(X.shape[1]))]
    subset = [int(j) for j in np.flatnonzero(loadings >= _PART_LOADING * loadings.max())]
    if len(subset) < X.shape[1]:
        candidates.append(subset)
    for involved in candidates:
        if len(involved) > 1 and _closed_to_rounding(X[:, involved]):
            sums = X[:, involved].sum(axis=1)
            parts = "" if len(involved) == X.shape[1] else f" {[names[j] for j in involved]}"
            return (
                f"compositional data: the rows' parts{parts} sum to a constant "
                f"({np.median(sums):.6g}) to rounding"
            )
    return None


def _closed_to_rounding(parts: np.ndarray) -> bool:
    """Whether the non-negative ``parts`` sum to one constant up to their rounding.

    A part rounded to a step ``h`` (its smallest gap between distinct values) is off by at
    most ``h / 2``, so sums of rounded parts closed to a constant span at most the steps'
    total. The sums must also vary far less than the parts (:data:`_CLOSED_SPREAD`): positive
    measurements whose sums vary a little are not closed.
    """
    if np.any(parts < 0):
        return False
    sums = parts.sum(axis=1)
    steps = sum(value_step(column) for column in parts.T)
    spread = np.sqrt(np.sum(np.var(parts, axis=0)))
    return bool(np.ptp(sums) <= steps * (1 + 1e-6) and np.std(sums) < _CLOSED_SPREAD * spread)


def value_step(values: np.ndarray) -> float:
    """A column's rounding step, estimated as its smallest gap between distinct values (0
    with one value): the rounding the closure check allows, and the resolution of
    :func:`bayesgmm.priors.resolution_floor`. NaN cells are ignored.

    >>> value_step(np.array([1.0, 1.5, 1.0, 2.5, np.nan]))
    0.5
    """
    values = np.unique(values[~np.isnan(values)])
    return float(np.min(np.diff(values))) if values.size > 1 else 0.0


_LOG_RATIO = (
    "Drop one part, or analyse log-ratios: from bayesgmm.transforms import ilr; "
    "ilr(X) (or alr; zeros must be replaced first)"
)


def check_independent_columns(X: np.ndarray, names: list[str]) -> None:
    """Raise a ValueError if a column is a linear function of others.

    Then every covariance of the model is singular: sampling would run for its whole budget
    and return nonsense (or fail). A duplicated column (also one rescaled or shifted) is named
    with the column it repeats; any other dependence with the columns involved. The data are
    standardised first, so the check does not depend on the columns' units.

    Examples
    --------
    >>> X = np.array([[1.0, 2.0, 5.0], [2.0, 4.0, 3.0], [4.0, 8.0, 4.0], [3.0, 6.0, 1.0]])
    >>> try:
    ...     check_independent_columns(X, ["a", "b", "c"])
    ... except ValueError as err:
    ...     print(str(err)[:43])
    column 'b' repeats column 'a' (up to units)
    """
    found, near = _dependence(X, names)
    if found is not None:
        problem, remedy = found
        raise ValueError(
            f"{problem}, so every covariance of the mixture would be singular. {remedy}"
        )
    if near:  # the posterior is then a thin ridge NUTS mixes on slowly
        warn(near, UserWarning)


def _dependence(X: np.ndarray, names: list[str]) -> tuple[tuple[str, str] | None, str]:
    """``(exact, near)``: :func:`_exact_dependence`'s ``(problem, remedy)`` when a column is
    a linear function of others (else None), and otherwise the warning when one nearly is
    (:func:`_near_dependence`; else ""), from one correlation spectrum of the complete rows
    ``X``. Neither with no more rows than columns: EM's own checks speak about that."""
    if X.shape[0] <= X.shape[1]:
        return None, ""
    spectrum = _correlation_spectrum(X)
    exact = _exact_dependence(X, names, spectrum)
    if exact is not None:
        return exact, ""
    found = _near_dependence(X, names, spectrum)
    if found is None:
        return None, ""
    problem, remedy = found
    return None, (
        f"{problem}: the components' covariances are nearly singular and sampling may mix "
        f"slowly. {remedy}."
    )


def _complete_rows(X: Any) -> np.ndarray:
    array = np.asarray(X, dtype=float)
    return array[~np.isnan(array).any(axis=1)]


def _exact_dependence(
    X: np.ndarray, names: list[str], spectrum: tuple[np.ndarray, np.ndarray]
) -> tuple[str, str] | None:
    """``(problem, remedy)`` when a column is a linear function of others to rounding (a
    duplicate, a closed composition, any other combination), else None."""
    involved = _dependent_columns(spectrum)
    if involved is None:
        return None
    drop = names[involved[-1]]
    closure = _closure(X, involved)
    if closure is not None:
        return closure, f"{_LOG_RATIO}."
    if len(involved) == 2:
        problem = f"column {drop!r} repeats column {names[involved[0]]!r} (up to units)"
    else:
        columns = [names[j] for j in involved]
        problem = f"columns {columns} are linearly dependent (one is a combination of the others)"
    keep = " ".join(shlex.quote(n) for n in names if n != drop)
    return problem, (
        f"Drop {drop!r}: X.drop(columns=[{drop!r}]) in Python, --columns {keep} with the "
        "bayesgmm command."
    )


def dependence_warning(X: np.ndarray, names: list[str]) -> str:
    """What an EM sweep should say when its data's columns are linearly dependent ("" when
    they are not), judged on the complete rows: every model with a full covariance is then
    singular at every K, where the diagonal ones are not."""
    found, _ = _dependence(_complete_rows(X), names)
    if found is None:
        return ""
    problem, remedy = found
    return (
        f"{problem}: every model with a full covariance (EEE, VEE, EVE, VVE, EEV, VEV, EVV, "
        f"VVV) is singular at every K, and its rows in the table show it as collapsed; the "
        f"diagonal models are not. {remedy}"
    )


def near_dependence_warning(X: Any, names: list[str]) -> str:
    """The warning :func:`check_matrix` gives when a column is nearly a linear function of
    others ("" when none), judged as it judges it, on the complete rows: for a report that
    shows it (the warning itself goes through Python's warnings, and the user's filters)."""
    return _dependence(_complete_rows(X), names)[1]


def _near_dependence(
    X: np.ndarray, names: list[str], spectrum: tuple[np.ndarray, np.ndarray]
) -> tuple[str, str] | None:
    """``(problem, remedy)`` for a composition closed to the data's rounding, whatever the
    eigenvalue ratio (:func:`_rounded_closure`), or for any dependence below
    :data:`_NEARLY_DEPENDENT`; else None."""
    closure = _rounded_closure(X, names, spectrum)
    if closure is not None:
        return closure, _LOG_RATIO
    involved = _dependent_columns(spectrum, _NEARLY_DEPENDENT)
    if involved is None:
        return None
    closure = _closure(X, involved)
    if closure is not None:
        return f"{closure} to rounding", _LOG_RATIO
    columns = [names[j] for j in involved]
    return (
        f"columns {columns} are nearly linearly dependent",
        f"Drop one of them (e.g. {names[involved[-1]]!r}) if it adds nothing",
    )
