"""Tests of calibration on fractional ranks: uniformity (chi-square, ECDF band) and coverage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from .._idata import ecdf_band as _simultaneous_band
from .ranks import covered

LEVELS = (0.5, 0.9)
MIN_SIMULATIONS = 5


def chi_square_uniformity(u: np.ndarray, n_bins: int | None = None) -> tuple[float, float, int]:
    """Chi-square test of ``Uniform(0, 1)`` on equal-width bins of ``u``.

    ``n_bins`` defaults to one bin per ten values (at least 2, at most 20), so every bin
    expects at least five values once there are ten or more.

    Parameters
    ----------
    u : array_like of float
        Values in ``[0, 1]``, e.g. the fractional ranks of one quantity.
    n_bins : int, optional

    Returns
    -------
    statistic, p_value : float
    n_bins : int

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import chi_square_uniformity
    >>> u = np.random.default_rng(0).uniform(size=200)
    >>> statistic, p_value, n_bins = chi_square_uniformity(u)
    >>> round(statistic, 2), round(p_value, 3), n_bins
    (12.8, 0.849, 20)
    >>> chi_square_uniformity(u**2)[1] < 1e-10  # skewed towards 0: rejected
    True
    """
    u = np.asarray(u, dtype=float)
    if n_bins is None:
        n_bins = int(np.clip(u.size // 10, 2, 20))
    counts, _ = np.histogram(u, bins=n_bins, range=(0.0, 1.0))
    result = stats.chisquare(counts)
    return float(result.statistic), float(result.pvalue), n_bins


def ecdf_band(n_values: int, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band of the ECDF of ``n_values`` uniform values (Säilynoja et al.).

    Returns the evaluation points (``K = min(n, 100)`` interior points of a regular grid, fixed
    in advance as the band requires) and the band's lower and upper ECDF values there.

    Parameters
    ----------
    n_values : int
        Number of values whose ECDF the band bounds.
    prob : float
        Simultaneous coverage probability of the band.

    Returns
    -------
    eval_points, lower, upper : ndarray of shape (min(n_values, 100) - 1,)

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import ecdf_band
    >>> points, lower, upper = ecdf_band(50, 0.95)
    >>> points.shape, lower.shape, upper.shape
    ((49,), (49,), (49,))
    >>> bool(np.all((lower <= points) & (points <= upper)))  # the uniform CDF lies inside
    True
    """
    n_points = min(n_values, 100)
    eval_points = np.linspace(0.0, 1.0, n_points + 1)[1:-1]
    lower, upper = _simultaneous_band(n_values, eval_points, prob)
    return eval_points, lower, upper


def ecdf_at(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The empirical CDF of ``values`` at ``points``: the fraction of values ``<=`` each."""
    return np.searchsorted(np.sort(values), points, side="right") / np.size(values)


def ecdf_uniformity(u: np.ndarray, prob: float) -> tuple[bool, float]:
    """Whether the ECDF of ``u`` stays inside the simultaneous ``prob`` band of the uniform.

    Parameters
    ----------
    u : array_like of float
        Values in ``[0, 1]``.
    prob : float
        Simultaneous probability of the band (:func:`ecdf_band`).

    Returns
    -------
    inside : bool
    max_abs_difference : float
        The largest ``|ECDF(z) - z|`` over the evaluation points.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import ecdf_uniformity
    >>> u = np.random.default_rng(0).uniform(size=200)
    >>> inside, max_abs_difference = ecdf_uniformity(u, 0.95)
    >>> inside, round(max_abs_difference, 3)
    (True, 0.075)
    >>> ecdf_uniformity(u**2, 0.95)[0]  # skewed towards 0: leaves the band
    False
    """
    u = np.asarray(u, dtype=float)
    eval_points, lower, upper = ecdf_band(u.size, prob)
    ecdf = ecdf_at(u, eval_points)
    inside = bool(np.all((ecdf >= lower) & (ecdf <= upper)))
    return inside, float(np.max(np.abs(ecdf - eval_points)))


def _coverage_test(hits: np.ndarray, level: float, alpha: float) -> dict[str, Any]:
    """Binomial test that ``hits`` (booleans) occur at rate ``level``."""
    n_hits, n = int(np.sum(hits)), int(np.size(hits))
    p_value = float(stats.binomtest(n_hits, n, level).pvalue)
    return {
        "level": level,
        "covered": n_hits,
        "n": n,
        "rate": n_hits / n,
        "p_value": p_value,
        "passed": p_value >= alpha,
    }


def calibration_tests(
    u: np.ndarray, names: Sequence[str], *, alpha: float = 0.05, levels=LEVELS
) -> dict[str, Any]:
    """Uniformity (chi-square, ECDF band) and interval coverage of fractional ranks.

    Parameters
    ----------
    u : ndarray of shape (n_simulations, n_quantities)
        Fractional ranks (:func:`fractional_ranks`).
    names : sequence of str
    alpha : float
        Family-wise level of each family of tests (chi-square, ECDF, coverage), Bonferroni
        over its tests: ``alpha / Q`` per quantity, ``alpha / (Q * len(levels))`` per coverage.
    levels : sequence of float
        Probabilities of the central intervals whose coverage is tested.

    Returns
    -------
    dict
        ``n``, per-quantity ``chi_square``, ``ecdf`` and ``coverage`` results, and ``passed``
        (``None`` when fewer than five simulations leave nothing to test).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import calibration_tests
    >>> u = np.random.default_rng(1).uniform(size=(40, 2))  # 40 simulations, 2 quantities
    >>> tests = calibration_tests(u, ["a", "b"])
    >>> tests["passed"], tests["coverage"]["a"]["0.9"]["rate"]
    (True, 0.95)
    >>> calibration_tests(u[:3], ["a", "b"])["skipped"]
    'fewer than 5 simulations'
    """
    u = np.asarray(u, dtype=float).reshape(-1, len(names))
    out: dict[str, Any] = {"n": int(u.shape[0]), "alpha": alpha}
    if u.shape[0] < MIN_SIMULATIONS:
        return {**out, "skipped": f"fewer than {MIN_SIMULATIONS} simulations", "passed": None}
    per_quantity, per_coverage = alpha / len(names), alpha / (len(names) * len(levels))
    chi2, ecdf, coverage = {}, {}, {}
    for q, name in enumerate(names):
        statistic, p_value, n_bins = chi_square_uniformity(u[:, q])
        chi2[name] = {"statistic": statistic, "p_value": p_value, "n_bins": n_bins}
        chi2[name]["passed"] = p_value >= per_quantity
        inside, deviation = ecdf_uniformity(u[:, q], 1.0 - per_quantity)
        ecdf[name] = {"inside_band": inside, "max_abs_difference": deviation, "passed": inside}
        coverage[name] = {
            f"{level:g}": _coverage_test(covered(u[:, q], level), level, per_coverage)
            for level in levels
        }
    out.update(chi_square=chi2, ecdf=ecdf, coverage=coverage)
    out["uniformity_passed"] = all(r["passed"] for r in (*chi2.values(), *ecdf.values()))
    out["coverage_passed"] = all(c["passed"] for r in coverage.values() for c in r.values())
    out["passed"] = out["uniformity_passed"] and out["coverage_passed"]
    return out
