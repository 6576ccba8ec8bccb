"""Coverage of central posterior intervals at a fixed, known truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._idata import posterior_draws
from .._progress import tracker_or_bar
from ..alignment import apply_permutations, match_to_reference
from ..priors import GMMPriors
from .fitting import Fitter, FitterLike, SamplerSettings
from .ranks import covered
from .simulation import DEFAULT_STUDY_PRIORS, FIXED_TRUTH, simulate
from .uniformity import MIN_SIMULATIONS, _coverage_test


def relabel_to_truth(
    posterior: xr.Dataset, means: np.ndarray, covariances: np.ndarray
) -> xr.Dataset:
    """The posterior with every draw's components matched to the true components.

    Parameters
    ----------
    posterior : xarray.Dataset
        With ``means (chain, draw, component, feature)`` and ``covariances`` (plus
        ``feature_bis``); every component-indexed variable is relabelled.
    means : ndarray of shape (K, D)
    covariances : ndarray of shape (K, D, D)
        The true components (:func:`bayesgmm.alignment.match_to_reference`'s reference).

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from bayesgmm.validation import relabel_to_truth
    >>> means, covs = np.array([[0.0, 0.0], [5.0, 5.0]]), np.stack([np.eye(2), np.eye(2)])
    >>> dims = ("chain", "draw", "component", "feature")  # one draw, its labels swapped:
    >>> post = xr.Dataset({"means": (dims, means[None, None, ::-1]),
    ...                    "covariances": ((*dims, "feature_bis"), covs[None, None])})
    >>> relabel_to_truth(post, means, covs)["means"].values[0, 0].tolist()
    [[0.0, 0.0], [5.0, 5.0]]
    """
    perm = match_to_reference(
        posterior["means"].transpose("chain", "draw", "component", "feature").values,
        posterior["covariances"].transpose("chain", "draw", "component", ...).values,
        np.asarray(means),
        np.asarray(covariances),
    )
    return apply_permutations(posterior, perm)


def _truth_quantiles(posterior: xr.Dataset, truth: dict[str, np.ndarray]) -> np.ndarray:
    """Posterior quantile of every true weight and mean, ``(K + K * D,)``."""
    weights, means = posterior_draws(posterior, ("weights", "means"))
    values = np.column_stack([weights, means.reshape(means.shape[0], -1)])
    target = np.concatenate([np.ravel(truth["weights"]), np.ravel(truth["means"])])
    return np.mean(values < target[None, :], axis=0)


def _truth_names(n_components: int, n_features: int) -> list[str]:
    weights = [f"weights[{k}]" for k in range(n_components)]
    return weights + [f"means[{k},{j}]" for k in range(n_components) for j in range(n_features)]


def _truth_dataset(
    fitter: FitterLike, truth: dict[str, np.ndarray], n_samples: int, seed: np.random.SeedSequence
) -> dict[str, Any]:
    """Simulate one data set at the truth, fit it, and return the truth's posterior quantiles."""
    data_seed, fit_seed = seed.spawn(2)
    sim = simulate(truth, n_samples, random_seed=data_seed)
    try:
        fit = fitter.fit(sim.X, random_seed=int(fit_seed.generate_state(1)[0]))
    except Exception as err:  # any failure is reported, never dropped
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    relabelled = relabel_to_truth(fit.posterior, truth["means"], truth["covariances"])
    quantiles = _truth_quantiles(relabelled, truth)
    return {"status": "ok", "diagnostics": fit.diagnostics, "quantiles": quantiles.tolist()}


def truth_coverage(
    n_datasets: int = 50,
    *,
    truth: dict[str, Any] | None = None,
    n_samples: int = 100,
    fitter: FitterLike | None = None,
    priors: GMMPriors = DEFAULT_STUDY_PRIORS,
    settings: SamplerSettings | None = None,
    level: float = 0.9,
    alpha: float = 0.05,
    random_seed: int = 0,
    progressbar: bool = True,
    tracker: Any = None,
) -> dict[str, Any]:
    """Coverage of central posterior intervals at fixed, known parameters.

    Every data set is simulated from ``truth`` and fitted; the posterior is relabelled to the
    true components and the central ``level`` interval of every weight and mean is checked
    against the truth. A binomial test per parameter (Bonferroni over parameters) compares the
    coverage rate with ``level``.

    Parameters
    ----------
    n_datasets : int
    truth : dict, optional
        ``weights``, ``means``, ``covariances``; defaults to :data:`FIXED_TRUTH`.
    n_samples : int
    fitter, priors, settings
        As in :func:`run_sbc`.
    level, alpha : float
    random_seed : int
    progressbar : bool
    tracker : optional

    Returns
    -------
    dict
        ``truth``, ``level``, ``datasets`` (per data set: status, diagnostics, the truth's
        posterior quantiles), ``tests`` (per parameter), ``pooled_rate``, ``failed``, ``passed``.

    Examples
    --------
    >>> from bayesgmm.validation import truth_coverage
    >>> coverage = truth_coverage(20, progressbar=False)  # 20 NUTS fits  # doctest: +SKIP
    >>> coverage["pooled_rate"], coverage["passed"]  # doctest: +SKIP
    """
    truth = {k: np.asarray(v, dtype=float) for k, v in (truth or FIXED_TRUTH).items()}
    n_components, n_features = truth["means"].shape
    if fitter is None:
        fitter = Fitter(n_samples, n_features, n_components, priors=priors, settings=settings)
    seeds = np.random.SeedSequence([random_seed, 1]).spawn(n_datasets)
    datasets = []
    with tracker_or_bar(tracker, n_datasets, "coverage", progressbar) as bar:
        for i, seed in enumerate(seeds):
            bar.describe(f"coverage data set {i + 1}/{n_datasets}")
            datasets.append({"index": i, **_truth_dataset(fitter, truth, n_samples, seed)})
            bar.advance()
    return _coverage_summary(datasets, truth, level, alpha)


def _coverage_summary(
    datasets: list[dict[str, Any]], truth: dict[str, np.ndarray], level: float, alpha: float
) -> dict[str, Any]:
    names = _truth_names(*truth["means"].shape)
    quantiles = np.asarray(
        [d["quantiles"] for d in datasets if d["status"] == "ok"], dtype=float
    ).reshape(-1, len(names))
    hits = covered(quantiles, level)
    out: dict[str, Any] = {
        "truth": {k: v.tolist() for k, v in truth.items()},
        "level": level,
        "alpha": alpha,
        "names": names,
        "datasets": datasets,
        "failed": sum(d["status"] != "ok" for d in datasets),
    }
    if hits.shape[0] < MIN_SIMULATIONS:
        return {**out, "skipped": f"fewer than {MIN_SIMULATIONS} data sets", "passed": None}
    tests = {n: _coverage_test(hits[:, j], level, alpha / len(names)) for j, n in enumerate(names)}
    out.update(tests=tests, pooled_rate=float(hits.mean()))
    out["passed"] = all(t["passed"] for t in tests.values())
    return out
