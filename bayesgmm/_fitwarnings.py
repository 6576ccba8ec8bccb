"""Warnings :class:`bayesgmm.BayesianGMM` gives before sampling, when the data cannot support
the model's posterior: more free parameters than rows, EM's collapse onto tied values, many
rows tied on several features under per-component full covariances, or a deep spike on rows
tied on one feature that EM's optimum keeps away from; and the refusal, before any work, of
more components than the rows' covariances support."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._errors import warn
from ._families import bayes_family
from ._gaussian import full_covariances
from ._models import layout, n_parameters, too_few_rows
from .diagnostics import SamplingWarning
from .priors import feature_ties

__all__ = [
    "TieSpike",
    "joint_ties",
    "refuse_too_few_rows",
    "tie_spike",
    "warn_collapse_on_ties",
    "warn_many_parameters",
]

# rows tied on two features warn (full covariances) from this share of a component's average
# size ``n / K``: MASS fgl (120 of 214 rows share Ba = 0 and Fe = 0) at 1.7 for K = 3, biopsy
# (426 of 699) at 1.2 for K = 2; of 18 other real data sets none above 0.2 at K = 3 (MASS's
# UScereal: 7 of 65 rows, the most; iris: 8 of 150)
JOINT_TIE_SHARE = 0.5

# a spike on rows tied on one feature warns from this depth in nats (:func:`_warn_tie_spike`):
# failures measured at 390-1060, converged fits at most 206 but for one whose chains never
# reached its spike (751)
SPIKE_NATS = 300.0


def warn_many_parameters(
    n_rows: float, n_components: int, n_features: int, covariance_type: str
) -> None:
    """Warn, before sampling, when the mixture has more free parameters than rows.

    Such a posterior is barely identified by the data (e.g. two full 6 x 6 covariances from
    47 rows): NUTS then often fails its diagnostics however long it runs (full covariances on
    R data sets in reports, 2026-12-05: 3 of 15 such fits converged, e.g. MASS's Cars93 with
    its missing cells at K = 2, 271 parameters for 93 rows; USJudgeRatings at K = 2, 181 for
    43, did not). The warning names the smaller covariance models (and their parameter
    counts) that the rows can support.

    Parameters
    ----------
    n_rows : float
        Rows (the sum of the frequency weights, if any).
    n_components, n_features : int
    covariance_type : str
        One of the Bayesian model's covariance types.
    """
    count = n_parameters(covariance_type, n_components, n_features)
    if count <= n_rows:
        return
    smaller = {
        name: n_parameters(name, n_components, n_features)
        for name in ("diag", "tied", "spherical")  # diag keeps each component its own scales
        if name != covariance_type
    }
    fits = [  # (each in full: the command names its option for every one)
        f"covariance_type='{name}' ({p} free parameters)"
        for name, p in smaller.items()
        if p <= min(n_rows, count)
    ]
    listed = ", ".join(fits[:-1]) + " or " + fits[-1] if len(fits) > 1 else "".join(fits)
    remedy = f"{listed}, or " if fits else ""
    fewer = _fewer_components(n_rows, n_components, n_features, covariance_type, smaller)
    warn(
        f"The model (covariance_type={covariance_type!r}, {n_components} component"
        f"{'s' if n_components != 1 else ''}, "
        f"{n_features} features) has {count} free parameters for {n_rows:g} rows: the data "
        f"barely identify its posterior and NUTS often fails to converge. Use {remedy}"
        f"{fewer}.",
        SamplingWarning,
    )


def refuse_too_few_rows(
    n_rows: int, n_components: int, n_features: int, covariance_type: str
) -> None:
    """Raise, before any work, when the rows are fewer than the components' covariances need
    (:func:`bayesgmm._models.too_few_rows`: e.g. ``D + 1`` rows a component for full
    covariances, and always one row a component).

    EM then collapses a component whatever its start, and NUTS crawls through a posterior the
    priors alone shape (carData's Duncan, 45 rows, at K = 45: over 10 minutes; R's longley,
    16 x 7, full covariances at K = 4: over 10 minutes). :func:`bayesgmm.select_n_components`
    leaves such K out of its candidates for the same reason.

    Parameters
    ----------
    n_rows : int
        Rows that carry weight.
    n_components, n_features : int
    covariance_type : str
        One of the Bayesian model's covariance types.
    """
    short = too_few_rows(covariance_type, n_components, n_rows, n_features)
    if not short:
        return
    found = _most_components(
        n_components,
        (covariance_type, "diag", "spherical"),
        lambda name, k: not too_few_rows(name, k, n_rows, n_features),
    )
    fewer = "more rows" if found is None else _at_most(*found, covariance_type)
    raise ValueError(
        f"n_components={n_components} is too many for covariance_type={covariance_type!r}: "
        f"{short}, so every EM fit collapses a component and the posterior is the priors'. "
        f"Use {fewer}."
    )


def _fewer_components(
    n_rows: float, n_components: int, n_features: int, covariance_type: str, smaller: dict
) -> str:
    """The remedy by fewer components: the most this model supports, else the most each
    smaller model supports (no more free parameters than rows), else fewer features."""
    found = _most_components(
        n_components,
        (covariance_type, *smaller),
        lambda name, k: n_parameters(name, k, n_features) <= n_rows,
    )
    if found is None:
        one = n_parameters(covariance_type, 1, n_features)
        return f"fewer features (one {covariance_type!r} component alone has {one})"
    name, k = found
    return _at_most(
        name, k, covariance_type, f" ({n_parameters(name, k, n_features)} free parameters)"
    )


def _most_components(
    n_components: int, names: Sequence[str], supports: Any
) -> tuple[str, int] | None:
    """The first model of ``names`` that ``supports(name, k)`` some ``k < n_components``, and
    the largest such ``k``; None when none does."""
    for name in names:
        supported = [k for k in range(1, n_components) if supports(name, k)]
        if supported:
            return name, supported[-1]
    return None


def _at_most(name: str, k: int, covariance_type: str, count: str = "") -> str:
    """``"at most k components"`` of model ``name`` (named when not ``covariance_type``), a
    single component said plainly as no mixture."""
    model = "" if name == covariance_type else f"covariance_type={name!r} with "
    if k == 1:
        return f"{model}a single component{count}, i.e. no mixture"
    return f"{model}at most {k} components{count}"


def warn_collapse_on_ties(
    X: np.ndarray,
    em: Any,
    names: Sequence[str],
    *,
    priors: Any,
    covariance_type: str,
    sample_weight: np.ndarray | None = None,
) -> None:
    """Warn, before sampling, when EM collapsed a component onto rows that share a value and
    the priors leave that posterior without a bound.

    With tied values (rounded or zero-inflated features) a component on those rows can shrink
    that feature's standard deviation to 0, where the likelihood grows without bound. The
    HalfNormal prior on standard deviations does not prevent it, so the posterior is improper
    and NUTS cannot converge (MASS's ``fgl``: 176 of 214 rows have Ba = 0). The resolution
    and inverse-gamma priors (``GMMPriors.sd_prior``) bound each variance, which is enough
    when the component's rows tie on one feature or the covariance is diagonal; with full
    covariances, rows tied on several features still let a correlation run to +-1 under the
    inverse-gamma, while the resolution prior bounds each variance given the other features
    too (:func:`bayesgmm._families.conditional_floor`). The warning names the feature whose
    spread collapsed, the tied value and its count, and the remedies. With per-component
    full covariances it also warns when many rows share values on two features although EM
    collapsed nothing there (:func:`joint_ties`): the posterior gathers in such spikes all
    the same (MASS fgl, K = 3). Failing those, with per-component spreads (full or diagonal)
    it warns of a deep spike on rows tied on one feature that EM's optimum keeps away from
    (:func:`tie_spike`, e.g. a cap).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The rows EM was fitted on (NaN for missing cells).
    em : EMGaussianMixture
        Fitted; its ``collapsed_components_``, ``covariances_`` and ``predict`` are used.
    names : sequence of str
        Feature names.
    priors : GMMPriors
        The model's priors (``sd_prior``, ``sd_floor`` and ``sd_floor_given_others`` say
        whether variances are bounded).
    covariance_type : str
        The Bayesian model's covariance type.
    sample_weight : ndarray of shape (n_samples,), optional
        Frequency weights (the spike's depth counts a row of weight ``w`` as ``w`` rows).
    """
    found, several = _collapses(X, em, names, priors, covariance_type)
    if found:
        warn(
            _collapse_message([text for _, text in found], priors.sd_prior, several),
            SamplingWarning,
        )
    family = bayes_family(covariance_type, X.shape[1])
    named = {j for j, _ in found}
    if not several and not (family.diagonal or family.shared):
        named.update(_warn_joint_ties(X, names, em.n_components, priors))
    if not (family.shared or family.spherical):
        _warn_tie_spike(X, em, names, priors, sample_weight, sorted(named))


def _collapses(X, em, names, priors, covariance_type) -> tuple[list[tuple[int, str]], bool]:
    """EM's collapsed components the priors leave unbounded (the feature each collapsed along
    and a description), and whether any of them sits on rows tied on several features
    (:func:`warn_collapse_on_ties`)."""
    collapsed = list(getattr(em, "collapsed_components_", []))
    if not collapsed:
        return [], False
    full = full_covariances(em.covariances_, em.model_name_, em.n_components, X.shape[1])
    labels = _em_labels(em, X)
    correlated = not bayes_family(covariance_type, X.shape[1]).diagonal
    found, several = [], False
    for k in collapsed:
        j = int(np.argmin(np.sqrt(np.diagonal(full[k])) / np.nanstd(X, axis=0)))
        values, counts = np.unique(X[~np.isnan(X[:, j]), j], return_counts=True)
        values, counts = values[counts >= 2], counts[counts >= 2]
        tied = _tied_features(X[labels == k])
        jointly = correlated and tied.size >= 2 and not _bounded_given_others(priors, tied)
        if values.size and (not _bounded(priors, j) or jointly):
            at = int(np.argmin(np.abs(values - em.means_[k, j])))  # the nearest tied value
            text = f"component {k} on {names[j]} = {values[at]:g}, a value {counts[at]} rows share"
            found.append((j, text))
            several |= jointly
    return found, several


def joint_ties(X: np.ndarray, min_rows: int) -> tuple[int, tuple[int, int], tuple] | None:
    """The largest set of at least ``min_rows`` rows that share their values on two features.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN for missing cells (a row ties only where both cells are observed).
    min_rows : int
        At least 2.

    Returns
    -------
    (count, (feature, feature), (value, value)) or None
        None when no two features have ``min_rows`` rows on one pair of values.

    Examples
    --------
    >>> X = np.array([[0, 0, 1.5], [0, 0, 2.5], [0, 0, 0.5], [1, 2, 0.5]], dtype=float)
    >>> joint_ties(X, 3)
    (3, (0, 1), (0.0, 0.0))
    >>> joint_ties(X, 4) is None
    True
    """
    candidates = []  # (feature, value, its count, rows holding it), counts >= min_rows
    for j in range(X.shape[1]):
        column = X[:, j]
        values, counts = np.unique(column[~np.isnan(column)], return_counts=True)
        common = counts >= min_rows
        for v, c in zip(values[common].tolist(), counts[common].tolist(), strict=True):
            candidates.append((j, v, c, column == v))
    best = None
    for i, (a, va, count_a, rows_a) in enumerate(candidates):
        for b, vb, count_b, rows_b in candidates[i + 1 :]:
            enough = min_rows if best is None else best[0] + 1
            if b == a or min(count_a, count_b) < enough:  # (no pair can reach it)
                continue
            count = int(np.count_nonzero(rows_a & rows_b))
            if count >= enough:
                best = (count, (a, b), (va, vb))
    return best


def _warn_joint_ties(
    X: np.ndarray, names: Sequence[str], n_components: int, priors: Any
) -> tuple[int, ...]:
    """Warn when many rows share values on two features (:func:`joint_ties`, at least
    :data:`JOINT_TIE_SHARE` of ``n / K`` rows and more rows than features): a full covariance
    of a component on them can run a correlation to +-1 unless the prior bounds each
    variance given the other features (the resolution prior's conditional barrier, where
    both features have a floor), and the posterior concentrates there even when EM's
    optimum does not (MASS fgl, K = 3, with a barrier on each variance alone: NUTS's chains
    went to four such spikes, R-hat 3.05 after 9 min; with ``covariance_type='diag'`` 37 s,
    converged). With the conditional barrier the posterior is bounded but its mass still
    gathers in narrow spikes at the rounding noise (fgl, K = 3: 260 s, three modes, one of
    them converged; MASS Boston, K = 3: 175-267 s, R-hat 1.04-2.8), so the warning stays,
    saying so. Not with one component, which holds every row, not a spike on the tied ones
    (MASS fgl and biopsy warned at K = 1, where the posterior was fine).
    Rows count once whatever their frequency weight. Returns the two features it named (none
    when it did not warn)."""
    if n_components == 1:
        return ()
    found = joint_ties(X, _min_tied_rows(X.shape, n_components))
    if found is None:
        return ()
    count, (a, b), (va, vb) = found
    if _bounded_given_others(priors, np.array([a, b])):
        where = (
            "the resolution prior keeps each variance given the other features above the "
            "rounding noise, so the posterior is bounded, but a component on those rows puts "
            "narrow spikes at that noise"
        )
    else:
        where = (
            "a component on rows tied on several features can run a correlation to +-1, "
            "where the posterior has no bound whatever prior bounds each variance"
        )
    warn(
        f"{count} of {X.shape[0]} rows share {names[a]} = {va:g} and {names[b]} = {vb:g}: with "
        f"full covariances {where}; its mass gathers in such spikes (even where EM's optimum has "
        "none), which NUTS samples slowly and in several modes. Use covariance_type='diag', "
        "add noise of the rounding unit's size to those features, drop or transform them "
        "(e.g. an indicator of the tied value), or use fewer components.",
        SamplingWarning,
    )
    return (a, b)


def _min_tied_rows(shape: tuple[float, int], n_components: int) -> int:
    """The fewest tied rows that speak for a component of their own: :data:`JOINT_TIE_SHARE`
    of a component's average share ``n / K``, and more rows than features."""
    n_rows, n_features = shape
    return max(int(np.ceil(JOINT_TIE_SHARE * n_rows / n_components)), n_features + 1, 2)


@dataclass(frozen=True)
class TieSpike:
    """A spike on tied rows (:func:`tie_spike`)."""

    feature: int
    value: float
    count: float
    component: int
    spread: float
    narrowest: float
    gain: float


def tie_spike(
    X: np.ndarray, em: Any, sd_floor: np.ndarray, sample_weight: np.ndarray | None = None
) -> TieSpike | None:
    """The deepest spike the resolution prior leaves on rows that share one value of a
    feature, measured against EM's fit; None when no feature has one.

    For each feature ``j`` with a barrier scale ``f = sd_floor[j] > 0`` whose most common
    value is shared by ``c`` rows, at least :func:`_min_tied_rows`: under the barrier
    ``exp(-f^2 / s^2)`` a component on those rows alone gains most at the spread
    ``s* = f sqrt(2 / c)`` (the rounding noise, :func:`bayesgmm.priors.resolution_floor`).
    Against EM's fit, where each tied row has the spread ``s_k`` of its component ``k``
    along ``j`` given the other features, the spike raises their log-likelihood by about
    ``sum over the tied rows of log(s_k / s*) - c / 2`` nats (the last term the barrier's
    cost at ``s*``). Other features are left out of the account.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN for missing cells.
    em : EMGaussianMixture
        Fitted on ``X`` (``precisions_cholesky_``, ``model_name_``, ``predict``).
    sd_floor : ndarray of shape (n_features,)
        The resolution prior's barrier scales (0: no barrier, the feature is skipped).
    sample_weight : ndarray of shape (n_samples,), optional
        Frequency weights: a row of weight ``w`` counts as ``w`` rows (as in the likelihood
        and in :func:`bayesgmm.priors.resolution_floor`).

    Returns
    -------
    TieSpike or None
        The feature, value and (weighted) count with the largest gain, EM's component holding
        most of those rows and its spread, ``s*`` and the gain.
    """
    n_components, n_features = em.n_components, X.shape[1]
    if n_components == 1:
        return None
    spread = _spread_given_others(em, n_features)
    weight = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    labels = _em_labels(em, X)
    least = _min_tied_rows((float(weight.sum()), n_features), n_components)
    best = None
    for j, (codes, counts, _) in enumerate(feature_ties(X, sample_weight)):
        if sd_floor[j] <= 0 or counts.size == 0 or counts.max() < least:
            continue
        tied = codes == np.argmax(counts)
        value, count = X[tied, j][0], float(counts.max())
        held = np.bincount(labels[tied], weights=weight[tied], minlength=n_components)
        narrowest = sd_floor[j] * np.sqrt(2.0 / count)
        gain = float(held @ np.log(spread[:, j] / narrowest) - count / 2.0)
        if np.isfinite(gain) and (best is None or gain > best.gain):
            k = int(np.argmax(held))
            best = TieSpike(int(j), float(value), count, k, spread[k, j], narrowest, gain)
    return best


def _em_labels(em: Any, X: np.ndarray) -> np.ndarray:
    """EM's labels of the rows of ``X`` (as a frame with its columns, if EM was fitted on
    one: scikit-learn warns otherwise)."""
    named = hasattr(em, "feature_names_in_")
    return np.asarray(em.predict(pd.DataFrame(X, columns=em.feature_names_in_) if named else X))


def _spread_given_others(em: Any, n_features: int) -> np.ndarray:
    """Each component's standard deviation along each feature given the other features,
    ``(K, D)``: ``1 / sqrt((Sigma^-1)_jj)``, from EM's precision Cholesky factors, which stay
    finite where the covariances under- or overflow (features at a scale of 1e-200)."""
    factor = np.asarray(em.precisions_cholesky_, dtype=float)
    kind = layout(em.model_name_)
    if kind in ("full", "tied"):  # inv(Sigma) = U U^T: (Sigma^-1)_jj is row j's squared norm
        big = np.abs(factor).max(axis=-1, keepdims=True)
        norm = big[..., 0] * np.linalg.norm(factor / big, axis=-1)
    else:  # 1 / sqrt(variance), per feature (diag) or per component (spherical)
        norm = np.abs(factor)
    if kind == "spherical":
        norm = norm[:, None]
    return np.broadcast_to(1.0 / norm, (em.n_components, n_features))


def _warn_tie_spike(
    X: np.ndarray,
    em: Any,
    names: Sequence[str],
    priors: Any,
    sample_weight: Any,
    named: Sequence[int],
) -> None:
    """Warn when the resolution prior leaves a spike on rows tied on one feature that is at
    least :data:`SPIKE_NATS` deeper than EM's fit (:func:`tie_spike`).

    EM keeps away from a component collapsed onto tied rows, but the posterior does not: a
    chain that finds the spike stays there, the others may never reach it, and the run then
    ends in several modes. mlbench's Ozone (inversion base height 5000 on 101 of 366 rows, a
    cap): 626 nats at K = 2; NUTS had 757 divergences and two modes, 600 nats of log-likelihood
    apart, in 115 s, where with those cells missing it converged in 16 s (at K = 3, 620 nats,
    one run converged and another split the same way). Other fits that failed on tied rows
    reach 391 (MASS fgl at K = 3) and 1062 (MASS Boston without chas at K = 3: black 396.9, a
    cap, on 121 rows); fits that converged at most 206 (MASS geyser at K = 3, duration 4 on
    53 of 299 rows; biopsy 195, Pima with missing cells 149, UScereal, milk, olive oil and
    iris under 100), but for one whose chains did not reach its spike: Boston without chas at
    K = 2, 751 on indus = 18.1 (132 rows), converged in 7 s at seed 1 (and is warned of rows
    tied on zn and ptratio as well). Features a warning above named (``named``) are left out.
    Only the resolution prior (the default) is measured: under the HalfNormal any such spike
    is unbounded, and under the inverse-gamma its depth is not computed here.
    """
    if priors.sd_prior != "resolution":
        return
    floors = np.broadcast_to(np.asarray(priors.sd_floor, dtype=float), X.shape[1]).copy()
    floors[list(named)] = 0.0  # a warning above named these features' rows already
    spike = tie_spike(X, em, floors, sample_weight)
    if spike is None or spike.gain < SPIKE_NATS:
        return
    name = names[spike.feature]
    rows = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    warn(
        f"{spike.count:g} of {rows:g} rows share {name} = {spike.value:g}: a component on "
        f"those rows alone could narrow {name} there from a spread of about {spike.spread:.3g} "
        f"(EM's component {spike.component}, given the other features) to the rounding noise "
        f"the resolution prior allows ({spike.narrowest:.3g}), about {spike.gain:.0f} nats more "
        "log-likelihood. The posterior gathers in that spike although EM's optimum does not: "
        "chains that reach it stay and the others may never do, so the run may end in several "
        f"modes and fail its diagnostics. If {spike.value:g} is a limit of measurement (a cap, "
        "a detection limit, censored values), mark those cells missing (NaN): the model "
        "integrates them out as missing at random, no longer knowing that they lie at or "
        "beyond the limit, which biases that feature's estimates towards the observed side; "
        "otherwise drop the feature or replace it by an indicator of the value.",
        SamplingWarning,
    )


def _tied_features(rows: np.ndarray) -> np.ndarray:
    """The features that take one value on every (observed cell of these) rows, if > 1 row."""
    if rows.shape[0] < 2:
        return np.array([], dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.flatnonzero(np.nanmax(rows, axis=0) == np.nanmin(rows, axis=0))


def _bounded(priors: Any, feature: int) -> bool:
    """Whether the prior bounds a standard deviation along ``feature`` away from 0."""
    if priors.sd_prior == "inverse_gamma":
        return True
    return priors.sd_prior == "resolution" and priors.sd_floor[feature] > 0


def _bounded_given_others(priors: Any, features: np.ndarray) -> bool:
    """Whether, with correlations, the prior bounds the variance of each of ``features``
    given the other features away from 0: the resolution prior's conditional barrier
    (:func:`bayesgmm._families.conditional_floor`) where each has a floor; the inverse-gamma
    bounds only each variance, so a correlation can still run to +-1."""
    floors = np.asarray(priors.sd_floor_given_others)  # (one value: every feature's)
    floors = floors[features] if floors.size > 1 else np.repeat(floors, len(features))
    return priors.sd_prior == "resolution" and bool(np.all(floors > 0))


def _collapse_message(found: list[str], sd_prior: str, several: bool) -> str:
    """The warning's text: why the posterior has no bound there, and what to do."""
    if sd_prior == "halfnormal" or not several:
        why = (
            "a component's standard deviation can shrink to 0 on rows that share a value, "
            "where the posterior has no bound under HalfNormal priors, so NUTS will not "
            "converge. Add noise of the rounding unit's size to the feature, drop or transform "
            "it, use fewer components, or bound each variance below with "
            "sd_prior='resolution' (the default: at the rounding noise, also given the other "
            "features) or 'inverse_gamma' (mclust's prior; with a full or tied covariance, rows "
            "tied on several features still let a correlation run to +-1 under it, so pair it "
            "with covariance_type='diag')."
        )
    else:
        why = (
            f"the {sd_prior!r} prior bounds each variance, but the component's rows share "
            "values on several features, where a correlation can run to +-1 and the posterior "
            "has no bound, so NUTS will not converge. Use the default priors "
            "(GMMPriors.from_data(X): sd_prior='resolution' with sd_floor_given_others from the "
            "data bounds each variance given the other features), covariance_type='diag', add "
            "noise of the rounding unit's size to those features, drop or transform them, or "
            "use fewer components."
        )
    return f"EM collapsed a component onto tied values ({'; '.join(found)}): {why}"
