"""Rows that are not a plain matrix: frequency weights and missing values (NaN) for EM.

EM's fitting loop sees either the validated ndarray (complete, unweighted data: today's path,
untouched) or a :class:`RowData` prepared here once per fit. Every E-step over a
:class:`RowData` returns the same :class:`~bayesgmm._gaussian.MixtureStatistics` that the
M-steps of all 14 covariance models consume.

Frequency weights (scikit-learn's convention) count how often each row occurs: a row of weight
``w`` contributes ``w`` times its log-likelihood and ``w`` times its responsibilities, so
integer weights give exactly the fit of the repeated rows, and a zero weight removes the row.

Missing values (NaN cells) are handled exactly under missing at random (MAR): a row
contributes the density of its observed entries ``x_O``,
``log sum_k w_k N(x_O | mu_k[O], Sigma_k[O, O])``. Rows are grouped by their pattern of
missing features; complete rows go through the complete-data kernel unchanged, and each
pattern is one pass of the same kernel (:func:`bayesgmm._kernels.e_step`, any engine; on the
serial engine all patterns in one compiled call) over its observed columns under the marginal
mixture (means ``mu_k[O]``, covariances
``Sigma_k[O, O]`` through their Cholesky factors). That pass returns the responsibility-
weighted moments of ``x_O``; the M-step's moments of the full rows follow from them in
``O(K D^3)`` per pattern (Ghahramani & Jordan 1994): the missing entries are replaced by their
conditional expectations ``E[x_M | x_O, k] = mu_M + B_k (x_O - mu_O)``, ``B_k = S_MO S_OO^-1``,
which are linear in ``x_O``, and the conditional covariance ``S_MM - B_k S_OM`` is added,
times the component's responsibility mass, to the scatter. The result is the same
:class:`~bayesgmm._gaussian.MixtureStatistics` as for complete data, so every covariance model
works unchanged, and EM's log-likelihood (of the observed entries) never decreases.

Log-likelihoods follow the complete-data convention: EM works on the unit scale and subtracts
``log_jacobian = sum_j log scale_j`` once per row. A row's observed density carries the
Jacobian of its observed features only, so ``sum_{j in M} log scale_j`` is added to its
unit-scale log density here; after that subtraction it is the density in the user's units.

A row with every feature missing carries no information about the mixture under MAR (its
density is 1 whatever the parameters): fitting leaves it out with a warning that counts such
rows; prediction gives it the mixing weights as responsibilities and log density 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _gaussian as g
from . import _kernels as kernels
from ._errors import warn
from ._missing_kernel import _lift_into, _regressions_into, rows_statistics
from ._scaling import AffineScaling

__all__ = [
    "RowData",
    "criteria_weights",
    "drop_empty_rows",
    "e_step",
    "empty_rows",
    "impute",
    "initial_rows",
    "predict_rows",
    "prepare",
]


@dataclass
class Pattern:
    """Rows that miss the same features.

    Attributes
    ----------
    rows : ndarray of int
        Their positions in the data they were grouped from.
    observed, missing : ndarray of int
        The observed and the missing features.
    values : ndarray of shape (n_rows, n_observed)
        The observed entries, contiguous (user units).
    weight : ndarray of shape (n_rows,) or None
        Their frequency weights.
    """

    rows: np.ndarray
    observed: np.ndarray
    missing: np.ndarray
    values: np.ndarray
    weight: np.ndarray | None


def group_patterns(X: np.ndarray, sample_weight: np.ndarray | None = None) -> list[Pattern]:
    """The rows of ``X`` grouped by missingness pattern; complete rows first (if any)."""
    missing = np.isnan(X)
    if X.shape[1] <= 62:  # one integer code per row: 10x faster than unique rows of booleans
        bits = np.left_shift(np.int64(1), np.arange(X.shape[1], dtype=np.int64))
        codes, inverse = np.unique(missing @ bits, return_inverse=True)
        patterns = (codes[:, None] & bits) > 0
    else:
        patterns, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(patterns)))[:-1]
    groups = []
    for mask, rows in zip(patterns, np.split(order, bounds), strict=True):
        observed, absent = np.flatnonzero(~mask), np.flatnonzero(mask)
        values = np.ascontiguousarray(X[np.ix_(rows, observed)])
        weight = None if sample_weight is None else np.ascontiguousarray(sample_weight[rows])
        groups.append(Pattern(rows, observed, absent, values, weight))
    return groups  # sorted patterns: the complete one (code 0, all False) comes first


@dataclass
class RowData:
    """Rows of a fit that need more than the complete-data path: weights or missing cells.

    Attributes
    ----------
    rows : ndarray of shape (n_rows, n_features)
        The rows EM fits (user units, NaN for missing cells; rows with nothing observed
        left out).
    weight : ndarray of shape (n_rows,) or None
        Their frequency weights (None: unweighted).
    complete : ndarray of shape (n_complete, n_features)
        The rows with every feature observed, contiguous.
    complete_weight : ndarray of shape (n_complete,) or None
    patterns : list of Pattern
        The incomplete rows, by missingness pattern.
    """

    rows: np.ndarray
    weight: np.ndarray | None
    complete: np.ndarray = field(init=False)
    complete_weight: np.ndarray | None = field(init=False)
    patterns: list[Pattern] = field(init=False)

    def __post_init__(self) -> None:
        if not np.isnan(self.rows).any():
            self.complete, self.complete_weight, self.patterns = self.rows, self.weight, []
            return
        groups = group_patterns(self.rows, self.weight)
        if groups[0].missing.size == 0:
            first = groups.pop(0)
            self.complete, self.complete_weight = first.values, first.weight
        else:
            self.complete = np.empty((0, self.rows.shape[1]))
            self.complete_weight = None if self.weight is None else np.empty(0)
        self.patterns = groups

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, features)`` of the data EM sees (for the engine's choice)."""
        return self.rows.shape

    @functools.cached_property
    def packed(self) -> Packed:
        """The rows as :class:`Packed` arrays (computed once)."""
        return Packed.of(self)


@dataclass(frozen=True)
class Packed:
    """A :class:`RowData`'s rows as the compiled E-step
    (:func:`bayesgmm._missing_kernel.rows_statistics`) takes them: sorted by pattern.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_features)
        The rows (data units), pattern after pattern (the complete ones first); each row holds
        its observed entries first, in the order of its pattern's ``order`` (the rest of the
        row is unused).
    weights : ndarray of shape (n_rows,)
        Their frequency weights in the same order, or the empty ``NO_WEIGHTS``.
    bounds : ndarray of shape (n_patterns + 1,)
        Pattern ``p`` holds rows ``bounds[p]:bounds[p + 1]``.
    order : ndarray of shape (n_patterns, n_features)
        Each pattern's observed features, then its missing ones.
    n_observed : ndarray of shape (n_patterns,)
    n_weight : float
        The rows' total weight (their number when unweighted).
    """

    values: np.ndarray
    weights: np.ndarray
    bounds: np.ndarray
    order: np.ndarray
    n_observed: np.ndarray
    n_weight: float

    @classmethod
    def of(cls, data: RowData) -> Packed:
        """The rows of ``data``, packed."""
        n_features = data.rows.shape[1]
        everything = np.arange(n_features)
        groups = [(data.complete, everything, data.complete_weight)] * (data.complete.shape[0] > 0)
        for p in data.patterns:
            groups.append((p.values, np.concatenate([p.observed, p.missing]), p.weight))
        values = np.zeros_like(data.rows)
        order = np.array([g[1] for g in groups], dtype=np.int64)
        n_observed = np.array([g[0].shape[1] for g in groups], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum([g[0].shape[0] for g in groups])])
        for p, group in enumerate(groups):
            values[bounds[p] : bounds[p + 1], : n_observed[p]] = group[0]
        if data.weight is None:
            weights, total = kernels.NO_WEIGHTS, float(data.rows.shape[0])
        else:
            weights = np.ascontiguousarray(np.concatenate([g[2] for g in groups]))
            total = float(data.weight.sum())
        return cls(values, weights, bounds.astype(np.int64), order, n_observed, total)


def prepare(
    X: np.ndarray, sample_weight: np.ndarray | None, n_components: int
) -> tuple[np.ndarray | RowData, kernels.ColumnSummary]:
    """What EM iterates over, and the column summary its standardisation comes from.

    Complete, unweighted data come back unchanged with :func:`bayesgmm._kernels.column_summary`
    (today's path, bit for bit); otherwise a :class:`RowData` and :func:`observed_summary`.
    Rows with every feature missing are left out with a warning counting them (see the module
    docstring for why).
    """
    nan = np.isnan(X)
    if sample_weight is None and not nan.any():
        return X, kernels.column_summary(X)
    X, sample_weight = drop_empty_rows(X, sample_weight)
    kept = X.shape[0] if sample_weight is None else np.count_nonzero(sample_weight)
    if kept < n_components:
        raise ValueError(
            f"Only {kept} row(s) with an observed value (and a positive weight) are left, fewer "
            f"than n_components = {n_components}. Reduce n_components or supply more data."
        )
    return RowData(X, sample_weight), observed_summary(X, sample_weight)


def empty_rows(X: np.ndarray) -> np.ndarray:
    """Which rows of ``X`` have every feature missing (NaN)."""
    return np.isnan(X).all(axis=1)


def drop_empty_rows(
    X: np.ndarray, sample_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` and its weights without the rows that have every feature missing
    (:func:`empty_rows`), with a warning that counts them."""
    empty = empty_rows(X)
    if not empty.any():
        return X, sample_weight
    warn(
        f"{int(empty.sum())} row(s) of X have every feature missing (NaN) and are left out "
        "of the fit: with nothing observed they carry no information about the mixture.",
        UserWarning,
    )
    return X[~empty], None if sample_weight is None else sample_weight[~empty]


def observed_summary(X: np.ndarray, sample_weight: np.ndarray | None) -> kernels.ColumnSummary:
    """The :class:`~bayesgmm._kernels.ColumnSummary` of the observed cells, rows counted by weight.

    Each feature's moments are over the rows that observe it; with integer weights they equal
    those of the repeated rows (to rounding), so the standardisation, and with it
    ``reg_covar``'s scale, is the repeated rows' one. ``n_samples`` is an array here (the
    weighted count of each feature's observed cells); only the fields that
    :meth:`~bayesgmm._kernels.ColumnSummary.scaling` reads are meaningful.
    """
    observed = ~np.isnan(X)
    w = observed if sample_weight is None else observed * sample_weight[:, None]
    with np.errstate(invalid="ignore"):
        magnitude = np.nanmax(np.abs(X), axis=0)
    reduced = np.where(observed, X / np.where(magnitude > 0, magnitude, 1.0), 0.0)
    total = np.sum(w, axis=0, dtype=np.float64)
    mean = np.sum(w * reduced, axis=0) / total
    m2 = np.sum(w * np.where(observed, reduced - mean, 0.0) ** 2, axis=0)
    zeros = np.zeros(X.shape[1], dtype=np.intp)
    return kernels.ColumnSummary(
        total, 0, zeros, zeros, np.nanmin(X, axis=0), np.nanmax(X, axis=0), magnitude, mean, m2
    )


def initial_rows(X: np.ndarray | RowData) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows (user units) and their weights for the data-driven initialisation.

    Missing cells are filled with their feature's (weighted) observed mean: a start only,
    which EM then improves with the exact treatment of the missing cells.
    """
    if not isinstance(X, RowData):
        return X, None
    if not X.patterns:
        return X.rows, X.weight
    summary = observed_summary(X.rows, X.weight)
    means = summary.mean * np.where(summary.magnitude > 0, summary.magnitude, 1.0)
    return np.where(np.isnan(X.rows), means, X.rows), X.weight


def criteria_weights(X: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray | None:
    """Each row's weight in the information criteria (None: every row counts once).

    Rows with nothing observed count zero (they are not observations of the mixture).
    """
    empty = np.isnan(X).all(axis=1)
    if not empty.any():
        return sample_weight
    weight = np.ones(X.shape[0]) if sample_weight is None else sample_weight.copy()
    weight[empty] = 0.0
    return weight


# --------------------------------------------------------------------------- E-step
def _unit_covariances(mixture: kernels.Mixture) -> np.ndarray:
    """``(K, D, D)`` covariances (full, tied) or ``(K, D)`` variances (diag, spherical)."""
    layout = mixture.covariance_type
    n_components, n_features = mixture.means.shape
    cov = g.covariances_from_precision_cholesky(mixture.precisions_chol, layout)
    if layout in ("full", "tied"):
        return g.full_covariances(cov, layout, n_components, n_features)
    return np.broadcast_to(np.reshape(cov, (n_components, -1)), (n_components, n_features))


def _marginal(mixture: kernels.Mixture, cov: np.ndarray, observed: np.ndarray) -> kernels.Mixture:
    """The mixture of the observed features: means ``mu[O]``, covariances ``Sigma[O, O]``."""
    scaling = AffineScaling(mixture.scaling.loc[observed], mixture.scaling.scale[observed])
    means = np.ascontiguousarray(mixture.means[:, observed])
    if cov.ndim == 2:
        chol = 1.0 / np.sqrt(cov[:, observed])
        return kernels.Mixture(scaling, mixture.weights, means, chol, "diag")
    sub = cov[np.ix_(np.arange(cov.shape[0]), observed, observed)]
    return kernels.Mixture(
        scaling, mixture.weights, means, g.precision_cholesky(sub, "full"), "full"
    )


def _regressions(
    cov: np.ndarray, observed: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``B_k = S_MO S_OO^-1`` ``(K, m, o)`` and the conditional covariances ``(K, m, m)``
    (:func:`bayesgmm._missing_kernel._regressions_into`)."""
    cov = np.ascontiguousarray(cov, dtype=np.float64)
    lower, failed = g._cholesky(cov[:, observed][:, :, observed])
    if failed >= 0:
        raise np.linalg.LinAlgError("A marginal covariance is not positive definite.")
    inverse = g._invert_lower(lower)
    n = cov.shape[0]
    coef = np.empty((n, missing.size, observed.size))
    conditional = np.empty((n, missing.size, missing.size))
    _regressions_into(cov, observed, missing, inverse, coef, conditional)
    return coef, conditional


def _completed(
    part: g.MixtureStatistics, cov: np.ndarray, means: np.ndarray, pattern: Pattern
) -> g.MixtureStatistics:
    """The full-row statistics of a pattern from the moments of its observed entries
    (:func:`bayesgmm._missing_kernel._lift_into`, the compiled form the log density runs)."""
    obs, miss = pattern.observed, pattern.missing
    n_components, n_features = means.shape
    diagonal = cov.ndim == 2  # variances: x_M's conditional mean is mu_M, its variance S_MM
    full = cov[:, :, None] * np.eye(n_features) if diagonal else cov
    second_o = part.second[:, :, None] * np.eye(obs.size) if diagonal else part.second
    coef, conditional = _regressions(full, obs, miss)
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, n_features, n_features))
    _lift_into(
        np.ascontiguousarray(part.first, dtype=np.float64),
        np.ascontiguousarray(second_o, dtype=np.float64),
        np.ascontiguousarray(part.resp_sum, dtype=np.float64),
        coef, conditional, obs, miss, first, second,
    )  # fmt: skip
    if diagonal:
        second = np.ascontiguousarray(np.diagonal(second, axis1=1, axis2=2))
    return g.MixtureStatistics(
        part.log_likelihood, part.n_samples, part.resp_sum, first, second, means
    )


def e_step(
    data: RowData,
    mixture: kernels.Mixture,
    *,
    block_rows: int,
    engine: str,
    cov: np.ndarray | None = None,
) -> g.MixtureStatistics:
    """E-step statistics of prepared rows (weights, missing cells): one kernel pass per pattern.

    Complete rows go through :func:`bayesgmm._kernels.e_step` as they are; every pattern's
    observed entries go through it under the marginal mixture, and :func:`_completed` turns
    their moments into those of the full rows (see the module docstring). ``cov`` are the
    mixture's unit-scale covariances in :func:`_unit_covariances`' shape, when already at hand.
    The serial engine runs every pattern in one compiled call (:func:`_serial_e_step`).
    """
    if engine == "serial":
        return _serial_e_step(data, mixture, block_rows)
    total = None
    if data.complete.shape[0]:
        total = kernels.e_step(
            data.complete,
            mixture,
            block_rows=block_rows,
            engine=engine,
            sample_weight=data.complete_weight,
        )
    if cov is None and data.patterns:
        cov = _unit_covariances(mixture)
    log_scale = np.log(mixture.scaling.scale)
    for pattern in data.patterns:
        part = kernels.e_step(
            pattern.values,
            _marginal(mixture, cov, pattern.observed),
            block_rows=block_rows,
            engine=engine,
            sample_weight=pattern.weight,
        )
        stats = _completed(part, cov, mixture.means, pattern)
        stats.log_likelihood += part.n_samples * float(log_scale[pattern.missing].sum())
        total = stats if total is None else total + stats
    return total


def _serial_e_step(data: RowData, mixture: kernels.Mixture, block_rows: int) -> g.MixtureStatistics:
    """:func:`e_step`'s statistics by :func:`bayesgmm._missing_kernel.rows_statistics`: the
    same kernel pass and lifting per pattern in one compiled call, not a Python loop over the
    patterns (whose overhead was most of a small fit's time: R's airquality, 153 x 4 with 44
    missing cells, 0.9 ms an E-step)."""
    packed = data.packed
    inverse = mixture.lower_factors()  # L^-1 of every unit-scale covariance
    diagonal = mixture.covariance_type in ("diag", "spherical")
    with np.errstate(divide="ignore"):  # an empty component's weight: log 0 = -inf, as the kernel's
        log_w = np.log(kernels._contiguous(mixture.weights))
    ok, sums = rows_statistics(
        packed.values, packed.weights, packed.bounds, packed.order, packed.n_observed,
        kernels._contiguous(mixture.scaling.loc), kernels._contiguous(mixture.scaling.scale),
        log_w, kernels._contiguous(mixture.means),
        g._invert_lower(inverse), inverse, diagonal, int(block_rows),
    )  # fmt: skip
    if not ok:
        raise g.SingularCovarianceError(
            "A component's covariance of the features some rows observe is not positive "
            "definite in floats."
        )
    log_lik, resp_sum, first, second = sums
    n_samples = data.rows.shape[0] if data.weight is None else packed.n_weight
    if diagonal:
        second = np.ascontiguousarray(np.diagonal(second, axis1=1, axis2=2))
    return g.MixtureStatistics(float(log_lik[0]), n_samples, resp_sum, first, second, mixture.means)


# --------------------------------------------------------------------------- prediction
def predict_rows(
    X: np.ndarray, mixture: kernels.Mixture, *, block_rows: int, output: str
) -> np.ndarray:
    """:func:`bayesgmm._kernels.predict_rows` for rows that may have missing cells.

    Rows without NaN take the complete-data path; each missingness pattern is predicted under
    its marginal mixture, its log densities carrying the unit-scale convention of the module
    docstring. A row with nothing observed gets the mixing weights as responsibilities.
    """
    nan = np.isnan(X)
    if not nan.any():
        return kernels.predict_rows(X, mixture, block_rows=block_rows, output=output)
    n_components = mixture.means.shape[0]
    width = kernels.prediction_width(output, n_components)
    shape = (X.shape[0], width) if width else (X.shape[0],)
    out = np.empty(shape, dtype=np.intp if output == "labels" else np.float64)
    cov = _unit_covariances(mixture)
    log_scale = np.log(mixture.scaling.scale)
    for pattern in group_patterns(X):
        if pattern.observed.size == 0:
            out[pattern.rows] = _prior_rows(mixture, output, log_scale.sum())
            continue
        sub = mixture if pattern.missing.size == 0 else _marginal(mixture, cov, pattern.observed)
        part = kernels.predict_rows(pattern.values, sub, block_rows=block_rows, output=output)
        if output in ("log_norm", "scores", "criteria"):
            shift = float(log_scale[pattern.missing].sum())
            part[..., slice(None) if output == "log_norm" else 0] += shift
        out[pattern.rows] = part
    return out


def _prior_rows(mixture: kernels.Mixture, output: str, log_jacobian: float) -> Any:
    """The prediction for a row with nothing observed: the mixing weights."""
    with np.errstate(divide="ignore"):
        log_w = np.log(mixture.weights)
    return {
        "log_norm": log_jacobian,
        "labels": int(np.argmax(log_w)),
        "resp": mixture.weights,
        "log_resp": log_w,
        "scores": np.array([log_jacobian, log_w.max()]),
        "criteria": np.array([log_jacobian, log_w.max(), np.argmax(log_w)]),
    }[output]


def impute(X: np.ndarray, mixture: kernels.Mixture, *, block_rows: int) -> np.ndarray:
    """``X`` with every missing cell replaced by its conditional mean given the row's observed
    entries, ``sum_k p(k | x_O) E[x_M | x_O, k]`` (user units)."""
    out = X.copy()
    if not np.isnan(X).any():
        return out
    cov = _unit_covariances(mixture)
    s = mixture.scaling
    for pattern in group_patterns(X):
        obs, miss = pattern.observed, pattern.missing
        if miss.size == 0:
            continue
        if obs.size == 0:
            unit = np.broadcast_to(mixture.weights @ mixture.means, (pattern.rows.size, miss.size))
        else:
            sub = _marginal(mixture, cov, obs)
            resp = kernels.predict_rows(pattern.values, sub, block_rows=block_rows, output="resp")
            unit = np.einsum("nk,nkm->nm", resp, _conditional_means(mixture, cov, pattern))
        out[np.ix_(pattern.rows, miss)] = unit * s.scale[miss] + s.loc[miss]
    return out


def _conditional_means(mixture: kernels.Mixture, cov: np.ndarray, pattern: Pattern) -> np.ndarray:
    """``E[x_M | x_O, k]`` on the unit scale for every row and component, ``(n, K, m)``."""
    obs, miss = pattern.observed, pattern.missing
    mu = mixture.means
    if cov.ndim == 2:
        return np.broadcast_to(mu[:, miss], (pattern.values.shape[0], *mu[:, miss].shape))
    coef, _ = _regressions(cov, obs, miss)
    xu = (pattern.values - mixture.scaling.loc[obs]) / mixture.scaling.scale[obs]
    return conditional_means(mu, coef, xu, obs, miss)


def conditional_means(
    means: np.ndarray, coef: np.ndarray, xu: np.ndarray, observed: np.ndarray, missing: np.ndarray
) -> np.ndarray:
    """``E[x_M | x_O, k] = mu_M + B_k (x_O - mu_O)`` for rows ``xu`` ``(n, o)`` and the
    components ``means`` ``(K, D)`` with regressions ``coef`` ``(K, m, o)`` (one scale for all):
    ``(n, K, m)``."""
    resid = xu[:, None, :] - means[None, :, observed]  # (n, K, o)
    return means[None, :, missing] + np.einsum("kmo,nko->nkm", coef, resid)
