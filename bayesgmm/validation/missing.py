"""Missing completely at random: are the estimates unbiased, the intervals calibrated, and do they
beat the usual workarounds? (issue 16, validation)

Data sets are simulated from a fixed, well-separated mixture (:data:`MISSING_TRUTH`, ``K = 2``,
``D = 3``); a fraction of the cells is removed completely at random (:func:`mcar_mask`: exactly
``round(rate * N * D)`` cells, uniformly without replacement), and the mixture is estimated by

``complete``
    EM on the data before any cell was removed (the reference no method can beat);
``em``
    EM with the missing cells handled exactly (:class:`bayesgmm.EMGaussianMixture` on the rows
    with NaN);
``drop_rows``
    EM on the rows with nothing missing (the usual workaround, ``--dropna``);
``mean_imputation``
    EM on the rows with every missing cell replaced by its feature's observed mean;
``posterior``
    the posterior mean of :class:`bayesgmm.BayesianGMM` fitted on the rows with NaN, whose
    central 90% intervals are checked for coverage of the truth.

Rows with nothing observed are left out by every method (under MCAR they carry no information
about the mixture; EM leaves them out too). Every estimate is matched to the true components
(:func:`bayesgmm.alignment.match_to_reference`, per posterior draw for the posterior) before
it is compared. Per parameter (weights, means, the lower triangles of the covariances) the
study reports the bias over replicates with its Monte Carlo standard error, and the RMSE;
the posterior's 90% intervals are checked with a binomial test per parameter (Bonferroni over
parameters) and the pooled coverage is shown with its binomial band (coverage is correlated
across the parameters of one data set, so the band is a guide, the per-parameter tests are the
check). A method is "unbiased within Monte Carlo error" when no parameter's ``|bias| / se``
exceeds the Bonferroni-corrected normal quantile; EM's ``O(1/N)`` bias stays below that at the
study's sizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from .._idata import posterior_draws
from ..alignment import match_to_reference
from ..datasets import simulate_mixture
from ..em import EMGaussianMixture
from .fitting import SamplerSettings, sampler_diagnostics
from .uniformity import _coverage_test

MISSING_TRUTH = {
    "weights": [0.4, 0.6],
    "means": [[-2.5, 0.0, 1.0], [2.5, 1.5, -1.0]],
    "covariances": [
        [[1.0, 0.4, 0.2], [0.4, 1.0, 0.3], [0.2, 0.3, 1.0]],
        [[0.8, -0.3, 0.0], [-0.3, 1.2, 0.4], [0.0, 0.4, 0.9]],
    ],
}
"""The mixture of the study: two components 5 standard deviations apart in the first feature."""

METHODS = ("complete", "em", "drop_rows", "mean_imputation")
"""The point estimators of every replicate (``posterior`` is added when it is fitted)."""

_GROUPS = ("weights", "means", "covariances")

EM_OPTIONS = {"n_init": 5, "tol": 1e-6, "max_iter": 1000}

PosteriorFitter = Callable[[np.ndarray, int], Any]
"""``fit(X_with_nan, seed) -> results tree`` with a ``posterior`` group in the data's units."""


def mcar_mask(shape: tuple[int, int], rate: float, rng: np.random.Generator) -> np.ndarray:
    """Cells removed completely at random: exactly ``round(rate * N * D)`` of them.

    Examples
    --------
    >>> import numpy as np
    >>> mask = mcar_mask((100, 4), 0.25, np.random.default_rng(0))
    >>> int(mask.sum()), mask.shape
    (100, (100, 4))
    """
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate!r}.")
    n_cells = shape[0] * shape[1]
    mask = np.zeros(n_cells, dtype=bool)
    mask[rng.choice(n_cells, size=round(rate * n_cells), replace=False)] = True
    return mask.reshape(shape)


def parameter_names(n_components: int, n_features: int) -> list[str]:
    """Names of the entries of :func:`parameter_vector`."""
    lower = [(a, b) for a in range(n_features) for b in range(a + 1)]
    return (
        [f"weights[{k}]" for k in range(n_components)]
        + [f"means[{k},{j}]" for k in range(n_components) for j in range(n_features)]
        + [f"covariances[{k},{a},{b}]" for k in range(n_components) for a, b in lower]
    )


def parameter_vector(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """Weights, means and the covariances' lower triangles of one or many (leading dims)
    mixtures, as one vector per mixture ``(..., P)``."""
    rows, cols = np.tril_indices(means.shape[-1])
    lead = weights.shape[:-1]
    return np.concatenate(
        [
            weights,
            means.reshape(*lead, -1),
            covariances[..., rows, cols].reshape(*lead, -1),
        ],
        axis=-1,
    )


def matched_to_truth(
    weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, truth: dict[str, np.ndarray]
) -> np.ndarray:
    """:func:`parameter_vector` of mixtures ``(S, K, ...)`` with every one's components matched
    to the true ones, ``(S, P)``."""
    perm = match_to_reference(means[None], covariances[None], truth["means"], truth["covariances"])[
        0
    ]  # (S, K)
    weights = np.take_along_axis(weights, perm, axis=1)
    means = np.take_along_axis(means, perm[:, :, None], axis=1)
    covariances = np.take_along_axis(covariances, perm[:, :, None, None], axis=1)
    return parameter_vector(weights, means, covariances)


def mean_imputed(X: np.ndarray) -> np.ndarray:
    """``X`` with each missing cell replaced by its feature's observed mean."""
    return np.where(np.isnan(X), np.nanmean(X, axis=0), X)


def _em_vector(X: np.ndarray, truth: dict[str, np.ndarray], seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapsed components at 40% missing are counted below
        em = EMGaussianMixture(len(truth["weights"]), random_state=seed, **EM_OPTIONS).fit(X)
    return matched_to_truth(em.weights_[None], em.means_[None], em.covariances_[None], truth)[0]


def point_estimates(
    X: np.ndarray, Xm: np.ndarray, truth: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """Every method's estimate (:data:`METHODS`), matched to the truth, ``{method: (P,)}``."""
    complete_rows = ~np.isnan(Xm).any(axis=1)
    return {
        "complete": _em_vector(X, truth, seed),
        "em": _em_vector(Xm, truth, seed),
        "drop_rows": _em_vector(Xm[complete_rows], truth, seed),
        "mean_imputation": _em_vector(mean_imputed(Xm), truth, seed),
    }


def posterior_estimate(
    tree: Any, truth: dict[str, np.ndarray], level: float
) -> tuple[np.ndarray, np.ndarray]:
    """The posterior mean of every parameter and whether its central ``level`` interval
    covers the truth, each ``(P,)``, from draws matched to the truth one by one."""
    posterior = tree["posterior"].to_dataset() if hasattr(tree, "children") else tree
    draws = posterior_draws(posterior, ("weights", "means", "covariances"))
    values = matched_to_truth(*draws, truth)
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], axis=0)
    target = parameter_vector(truth["weights"], truth["means"], truth["covariances"])
    return values.mean(axis=0), (low <= target) & (target <= high)


class BayesianFitter:
    """The posterior under test: :class:`bayesgmm.BayesianGMM` on the rows with NaN.

    Parameters
    ----------
    n_components : int
    settings : SamplerSettings
        Draws, tuning steps and chains (small: the study runs many fits).
    """

    def __init__(self, n_components: int, settings: SamplerSettings) -> None:
        self.n_components = n_components
        self.settings = settings

    def __call__(self, X: np.ndarray, seed: int) -> Any:
        from ..bayesian import BayesianGMM  # the validation package is imported by bayesgmm

        s = self.settings
        fit = BayesianGMM(
            self.n_components,
            draws=s.draws,
            tune=s.tune,
            chains=s.chains,
            target_accept=s.target_accept,
            random_seed=seed,
            max_starts=1,
            progressbar=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fit.fit(X).idata_


def run_replicate(
    truth: dict[str, np.ndarray],
    n_samples: int,
    rate: float,
    seed: np.random.SeedSequence,
    posterior: PosteriorFitter | None = None,
    level: float = 0.9,
    *,
    fit_posterior: bool = True,
) -> dict[str, Any]:
    """Simulate one data set, remove cells, fit every method (the posterior when given and
    ``fit_posterior``); JSON-ready."""
    data_seed, mask_seed, fit_seed = seed.spawn(3)
    X = simulate_mixture(n_samples, random_state=np.random.default_rng(data_seed), **truth).X
    Xm = np.where(mcar_mask(X.shape, rate, np.random.default_rng(mask_seed)), np.nan, X)
    kept = ~np.isnan(Xm).all(axis=1)
    X, Xm = X[kept], Xm[kept]  # rows with nothing observed carry no information
    seed_int = int(fit_seed.generate_state(1)[0] % 2**31)
    out: dict[str, Any] = {
        "rate": rate,
        "missing_fraction": float(np.isnan(Xm).mean()),  # of the rows kept
        "complete_rows": int((~np.isnan(Xm).any(axis=1)).sum()),
        "rows_left_out": int((~kept).sum()),
        "estimates": {m: v.tolist() for m, v in point_estimates(X, Xm, truth, seed_int).items()},
    }
    if posterior is None or not fit_posterior:
        return out
    try:
        tree = posterior(Xm, seed_int)
    except Exception as err:  # every failure is reported, never dropped
        out["posterior_error"] = f"{type(err).__name__}: {err}"
        return out
    mean, hits = posterior_estimate(tree, truth, level)
    out["estimates"]["posterior"] = mean.tolist()
    out["covered"] = hits.tolist()
    out["diagnostics"] = sampler_diagnostics(tree)
    return out


def error_summary(
    estimates: np.ndarray, target: np.ndarray, names: Sequence[str], alpha: float
) -> dict[str, Any]:
    """Bias (with its Monte Carlo standard error) and RMSE per parameter over replicates.

    Parameters
    ----------
    estimates : ndarray of shape (R, P)
    target : ndarray of shape (P,)
    names : sequence of str
    alpha : float
        Level of the unbiasedness check (Student's t with ``R - 1`` degrees of freedom),
        Bonferroni over the ``P`` parameters.

    Returns
    -------
    dict
        ``bias``, ``se``, ``rmse`` (lists over parameters), ``rmse_by_group`` (root mean
        square over the weights, means and covariances), ``max_abs_z`` and ``unbiased``.

    Examples
    --------
    >>> import numpy as np
    >>> est = np.array([[1.0, 2.0], [3.0, 2.0]])
    >>> s = error_summary(est, np.array([2.0, 2.0]), ["a", "b"], 0.05)
    >>> s["bias"], s["se"], s["rmse"]
    ([0.0, 0.0], [1.0, 0.0], [1.0, 0.0])
    """
    error = estimates - target
    n = error.shape[0]
    bias = error.mean(axis=0)
    se = error.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(bias.shape, np.nan)
    rmse = np.sqrt(np.mean(error**2, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(bias) / se, np.where(bias == 0, 0.0, np.inf))
    critical = float(stats.t.ppf(1 - alpha / (2 * len(names)), max(n - 1, 1)))
    members = {g: [i for i, n in enumerate(names) if n.startswith(g)] for g in _GROUPS}
    groups = {g: float(np.sqrt(np.mean(rmse[i] ** 2))) for g, i in members.items() if i}
    return {
        "n": n,
        "bias": bias.tolist(),
        "se": se.tolist(),
        "rmse": rmse.tolist(),
        "rmse_by_group": groups,
        "max_abs_z": float(np.max(z)),
        "critical_z": critical,
        "unbiased": bool(np.max(z) <= critical),
    }


def coverage_summary(
    hits: np.ndarray, names: Sequence[str], level: float, alpha: float
) -> dict[str, Any]:
    """Coverage of the posterior's intervals: binomial test per parameter (Bonferroni) and
    the pooled rate with its 95% binomial band (as if the hits were independent).

    Examples
    --------
    >>> import numpy as np
    >>> hits = np.ones((20, 2), dtype=bool)
    >>> hits[:2, 0] = False
    >>> s = coverage_summary(hits, ["a", "b"], 0.9, 0.05)
    >>> s["pooled_rate"], s["tests"]["a"]["rate"], s["passed"]
    (0.95, 0.9, True)
    """
    n_hits = hits.size
    half = 1.96 * np.sqrt(level * (1 - level) / n_hits)
    tests = {n: _coverage_test(hits[:, j], level, alpha / len(names)) for j, n in enumerate(names)}
    return {
        "level": level,
        "pooled_rate": float(hits.mean()),
        "pooled_band": [level - half, level + half],
        "tests": tests,
        "passed": all(t["passed"] for t in tests.values()),
    }
