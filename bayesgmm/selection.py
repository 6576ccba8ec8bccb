"""Choosing the number of components (and the covariance family).

The EM sweep fits every (K, covariance family) with restarts and tabulates the log-likelihood and
the information criteria; a fit that fails is listed with its error, never raised or dropped.
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from ._dask import is_dask_array
from ._errors import SamplerError, SamplingInterrupted, SamplingWarning, warn
from ._kernels import column_summary
from ._models import (
    BAYES_COVARIANCE_TYPES,
    COVARIANCE_NAMES,
    MODEL_NAMES,
    ONE_FEATURE_MODELS,
    closest_bayes_model,
    contains,
    inestimable,
    model_name,
    n_parameters,
    sampled_model_statement,
    too_few_rows,
)
from ._pointmass import point_masses
from ._progress import progress_bar
from ._restarts import Strategy, sweep_rows
from ._validation import (
    check_choice,
    check_fit_data,
    check_matrix,
    check_sample_weight,
    dependence_warning,
    too_many_components,
)
from .em import CollapsedComponentWarning, EMGaussianMixture

__all__ = [
    "EMSelection",
    "Selection",
    "bayesian_comparison",
    "em_sweep",
    "sampled_model_statement",
    "select_n_components",
]

CRITERIA = ("bic", "aic", "icl")
SWEEP_INITS = ("em-EM", "n_init")


@dataclass
class EMSelection:
    """Result of an EM sweep over K and covariance families.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (``n_components``, ``covariance_type``), with the model's mclust name in
        ``model_name`` (the same for a name and its alias): ``status`` ("ok", "collapsed",
        "not converged" or "failed"), ``log_likelihood`` (total), ``n_parameters``, ``bic``,
        ``aic``, ``icl`` (scikit-learn's sign: lower is better), ``converged``, ``n_iter`` and
        ``message`` (the error or warning text). Rows that failed carry NaN criteria.
    fits : dict
        The fitted :class:`EMGaussianMixture` per ``(n_components, covariance_type)``.
    best : dict
        Per criterion, the ``(n_components, covariance_type)`` with the lowest value among fits
        whose status is "ok" (or among all fitted rows if none is). Values equal to rounding
        (1e-10 relative; one model under several names: at K = 1 every full-covariance model
        is EEE, every diagonal one EEI) go to the fewest parameters, then the smallest K, then
        the first in mclust's order (EII, VII, EEI, ... VVV), not to whichever rounded lowest.

    Examples
    --------
    >>> from bayesgmm import em_sweep, load_faithful
    >>> sweep = em_sweep(load_faithful(), range(1, 4), ("full", "tied"), progress=False)
    >>> sweep.best["bic"], sweep.best_fit("bic").n_components
    ((3, 'tied'), 3)
    """

    table: pd.DataFrame
    fits: dict[tuple[int, str], EMGaussianMixture] = field(repr=False)
    best: dict[str, tuple[int, str]]

    def best_fit(self, criterion: str = "bic") -> EMGaussianMixture:
        """The fitted mixture chosen by ``criterion`` ("bic", "aic" or "icl")."""
        check_choice("criterion", criterion, CRITERIA)
        return self.fits[self.best[criterion]]


def _fit_one(
    X: Any,
    k: int,
    cov_type: str,
    em_kwargs: dict[str, Any],
    starts: Any = None,
    strategy: Any = None,
    sample_weight: Any = None,
    map_runs: Callable = map,
    summary: Any = None,
    row_index: Any = None,
) -> dict[str, Any]:
    name = model_name(cov_type)
    row: dict[str, Any] = {"n_components": k, "covariance_type": cov_type, "model_name": name}
    shape = np.shape(X)
    n, p = (shape[0], n_parameters(name, k, shape[1])) if len(shape) == 2 else (0, 0)
    reason = inestimable(name, k, n, shape[1]) if k <= n else ""
    if reason or k > n:  # (refused before any work)
        remedy = " Use fewer components or a more constrained model."
        message = f"{reason}{remedy}" if reason else too_many_components(n, k)
        return {**row, "status": "failed", "n_parameters": p, "message": message, "_fit": None}
    em = EMGaussianMixture(k, covariance_type=cov_type, **em_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("always", CollapsedComponentWarning)
        try:
            validated = em._fit(
                X,
                sample_weight,
                starts=starts,
                strategy=strategy,
                map_runs=map_runs,
                validated=not is_dask_array(X),  # (em_sweep checked it once for every fit)
                summary=summary,
                row_index=row_index,
            )
        except (ValueError, ArithmeticError) as err:  # singular fits, bad data, LinAlgError
            return {**row, "status": "failed", "message": str(err), "_fit": None}
    messages = [str(w.message) for w in caught]
    collapsed = any(issubclass(w.category, CollapsedComponentWarning) for w in caught)
    status = "collapsed" if collapsed else ("ok" if em.converged_ else "not converged")
    criteria = em._criteria(
        validated, validated=True, sample_weight=sample_weight, labels=starts is not None
    )
    return {
        **row,
        "status": status,
        "log_likelihood": criteria["log_likelihood"],
        "n_parameters": p,
        "bic": criteria["bic"],
        "aic": criteria["aic"],
        "icl": criteria["icl"],
        "converged": em.converged_,
        "n_iter": em.n_iter_,
        "message": " ".join(messages),
        "_fit": em,
        "_labels": criteria.get("labels"),  # predict(X), for the next fits' starts
    }


def _covariance_names(covariance_types: str | Iterable[str], n_features: int) -> list[str]:
    """The requested models: names, aliases or "all" (the 14 models; with one feature the two
    distinct ones, :data:`bayesgmm._models.ONE_FEATURE_MODELS`), checked."""
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    options = (*COVARIANCE_NAMES, "all")
    names = [check_choice("covariance type", c, options) for c in covariance_types]
    every = ONE_FEATURE_MODELS if n_features == 1 else MODEL_NAMES
    return list(dict.fromkeys(m for c in names for m in (every if c == "all" else [c])))


def _check_sweep_data(X: Any, sample_weight: Any) -> tuple[Any, Any]:
    """The checks every fit of the sweep would make of ``X`` and ``sample_weight``, once and
    before any work (bad data is one named error, not a table of identical failures); the data
    the fits take (a Dask array as given) and a DataFrame's feature names, or None."""
    if is_dask_array(X):
        if sample_weight is not None:
            raise ValueError(
                "sample_weight is not supported for a Dask array: compute it into memory, "
                "or sweep without weights."
            )
        return X, None  # checked lazily by each fit
    probe = EMGaussianMixture()
    data = check_fit_data(probe, X, 1, allow_nan=True)
    check_sample_weight(sample_weight, data.shape[0], 1, data, probe)
    names = getattr(probe, "feature_names_in_", None)
    columns = [f"x{j}" for j in range(data.shape[1])] if names is None else names
    said = dependence_warning(data, [str(c) for c in columns])
    if said:
        warn(said, UserWarning)
    return data, names


def _column_summary(X: Any, sample_weight: Any) -> Any:
    """The column summary every fit of complete, unweighted in-memory data standardises by
    (computed once for the sweep), else None (each fit prepares its own)."""
    if is_dask_array(X) or sample_weight is not None or np.isnan(X).any():
        return None
    return column_summary(np.ascontiguousarray(X))  # (the array each fit iterates over)


def _n_threads(n_jobs: int | None) -> int:
    """Threads for ``n_jobs`` by scikit-learn's convention (None: 1; -1: one per core, -2: all
    but one, ...), checked."""
    if n_jobs is None:
        return 1
    if not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be a non-zero integer or None, got {n_jobs!r}: the number of "
            "threads (-1: one per core, None or 1: none)."
        )
    return int(n_jobs) if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))


@contextmanager
def _thread_map(n_threads: int) -> Iterator[Callable]:
    """``map_runs`` for em-EM: the builtin ``map``, or one on a pool of ``n_threads`` threads
    (results in the order of the runs), for as long as the context lasts."""
    if n_threads == 1:
        yield map
        return
    with ThreadPoolExecutor(n_threads, thread_name_prefix="bayesgmm-sweep") as pool:

        def map_runs(function: Callable, runs: Iterable) -> list:
            runs = list(runs)
            return list(map(function, runs) if len(runs) < 2 else pool.map(function, runs))

        yield map_runs


def em_sweep(
    X: Any,
    n_components: Iterable[int] = range(1, 7),
    covariance_types: str | Iterable[str] = ("full",),
    *,
    n_init: int = 5,
    random_state: int | None = 0,
    progress: bool = True,
    tol: float = 1e-5,
    max_iter: int = 1000,
    init: str = "em-EM",
    strategy: Strategy | None = None,
    sample_weight: Any = None,
    n_jobs: int | None = None,
    **kwargs: Any,
) -> EMSelection:
    """Fit EM with restarts for every (K, covariance model) and tabulate the criteria.

    Like mclust's ``mclustBIC``: a model that cannot be fitted at some K (a singular
    covariance, fewer rows than its K components' covariances need, bad data; see
    :func:`bayesgmm._models.inestimable`) is a row with status "failed" and the reason in
    ``message``; it never stops the sweep. More free parameters than rows is such a bar only
    for the four models whose components each turn axes of their own (EEV, VEV, EVV, VVV).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : iterable of int
    covariance_types : str or iterable of str
        mclust model names (``"EII"`` ... ``"VVV"``), scikit-learn's aliases (``"full"``,
        ``"tied"``, ``"diag"``, ``"spherical"``), or ``"all"`` for the 14 models. With one
        feature the 14 are two, equal or variable variances (mclust's E and V): ``"all"``
        then fits EII and VII only (a name asked for by itself is fitted as asked).
    n_init : int
        EM restarts per fit with ``init="n_init"``.
    random_state : int or None
        Seed of the starts (the shared pool, or each fit's own restarts).
    progress : bool
        Show a progress bar across the sweep.
    tol, max_iter : float, int
        EM's convergence threshold (change of the mean log-likelihood per sample) and
        iteration cap. Tighter than :class:`EMGaussianMixture`'s (scikit-learn's) ``1e-3`` and
        100: the table compares log-likelihoods across models, and from mclust's own starting
        partitions ``tol=1e-3`` stopped fits up to hundreds of nats short of the optimum
        (the median shortfall 0.1-1 nats); ``1e-5`` is about mclust's relative ``1e-5``.
    init : {"em-EM", "n_init"}
        "em-EM" (default): one pool of starting partitions shared by every model and K
        (mclust's hierarchical agglomeration cut at every K, k-means from several seeds,
        random responsibilities) plus, for each model at K > 1, its K - 1 fit with a cluster
        split; short EM runs from all of them and the best continued to convergence
        (Biernacki, Celeux & Govaert 2003; see :mod:`bayesgmm._restarts`). "n_init": every
        fit on its own, ``n_init`` initialisations by ``init_params`` (a Dask array is always
        fitted so). With missing cells, the pool is built on the rows with each missing cell
        set to its feature's observed mean; the fits from it treat the cells as missing.
    strategy : bayesgmm._restarts.Strategy, optional
        The em-EM settings (how many starts of each kind, short-run length, runs continued).
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights of the rows (see :meth:`EMGaussianMixture.fit`); the criteria then
        count ``n`` as their sum.
    n_jobs : int or None, default=None
        Threads that run em-EM's runs to convergence at the same time (the compiled EM
        iterations release Python's GIL), by scikit-learn's convention: None or 1 none
        (everything on the calling thread), -1 one per core, -2 all but one. The table is the
        same for every value: each run's numbers do not depend on the thread that computes
        it, and the runs are ranked in their own order. At most those runs overlap (about a
        third of a small sweep's time), and on a machine whose cores are all busy the threads
        cost more than they save (``benchmarks/results/README.md``), hence the default. Runs
        go one after the other where EM does not take the serial compiled loop (Dask arrays,
        missing cells, large data whose E-step already uses Numba's threads) and with
        ``init="n_init"``.
    **kwargs
        Further :class:`EMGaussianMixture` parameters (``reg_covar``, ``init_params``, ...).

    Returns
    -------
    EMSelection

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> sweep = em_sweep(load_faithful(), range(1, 4), progress=False)
    >>> sweep.best["bic"]
    (2, 'full')
    """
    ks = sorted({int(k) for k in n_components})
    if not ks or ks[0] < 1:
        raise ValueError(f"n_components must be positive integers, got {ks}.")
    check_choice("init", init, SWEEP_INITS)
    if "covariance_type" in kwargs:  # EMGaussianMixture's name for what the sweep varies
        raise TypeError(
            f"em_sweep sweeps covariance models: pass covariance_types="
            f"{kwargs['covariance_type']!r} (a name, a list of names or 'all'), not "
            "covariance_type."
        )
    em_kwargs = dict(n_init=n_init, random_state=random_state, tol=tol, max_iter=max_iter)
    em_kwargs |= kwargs
    EMGaussianMixture(ks[0], **em_kwargs)._check_parameters()
    n_threads = _n_threads(n_jobs)
    data, names = _check_sweep_data(X, sample_weight)
    cov_types = _covariance_names(covariance_types, data.shape[1])
    strategy = (strategy or Strategy()) if init == "em-EM" else None
    with _thread_map(n_threads if strategy is not None else 1) as map_runs:
        summary = _column_summary(data, sample_weight)
        index = getattr(X, "index", None)  # (the collapse warning names rows by it)
        fit_one = partial(_fit_one, map_runs=map_runs, summary=summary, row_index=index)
        rows = sweep_rows(
            fit_one, data, ks, cov_types, em_kwargs, strategy, progress, sample_weight
        )
    fits = {(r["n_components"], r["covariance_type"]): r["_fit"] for r in rows if r["_fit"]}
    for fit in fits.values() if names is not None else ():  # as if fitted on the DataFrame
        fit.feature_names_in_ = names  # (validating it in every fit cost 1/3 of a small sweep)
    columns = [
        "n_components",
        "covariance_type",
        "model_name",
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


def _sample_candidates(
    selection: Selection, X: Any, ks: list[int], settings: dict[str, Any], progress: bool
) -> None:
    """Fit the Bayesian mixture for every candidate K into ``selection.fits`` (or, when the
    sampler cannot run at a K, its reason into ``selection.failed``); Ctrl-C stops them all."""
    from .bayesian import BayesianGMM  # the Bayesian stage is optional and heavy

    with progress_bar(len(ks), "Bayesian candidates", enabled=progress) as bar:
        for k in ks:
            bar.describe(f"NUTS: K={k} {settings['covariance_type']}")
            # the sweep's fit of the same model, whether named "full" or "VVV"
            name = model_name(settings["covariance_type"])
            em = next(
                (f for (j, c), f in selection.em.fits.items() if j == k and model_name(c) == name),
                None,
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit = _candidate(selection, k, X, em, BayesianGMM(k, **settings))
            said = _sampling_messages(caught)
            if said:
                selection.warnings[f"K={k}"] = said
            bar.advance()
            if fit is None:  # said outside the block that records the candidates' warnings
                warn(
                    f"K={k} could not be sampled: {selection.failed[f'K={k}']}",
                    SamplingWarning,
                )
                continue
            if fit.idata_.posterior.attrs.get("interrupted"):
                raise SamplingInterrupted(f"interrupted while sampling K={k}")
            selection.fits[f"K={k}"] = fit


def _sampling_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The messages of the caught SamplingWarnings, each once; every other warning is given
    again, once per message and place, to the filters outside."""
    messages, others = [], {}
    for w in caught:
        if issubclass(w.category, SamplingWarning):
            messages.append(str(w.message))
        else:
            others.setdefault((w.category, str(w.message), w.filename, w.lineno), w)
    for w in others.values():
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return list(dict.fromkeys(messages))


def _candidate(selection: Selection, k: int, X: Any, em: Any, estimator: Any) -> Any:
    """One candidate's fit, or None (the reason kept in ``selection.failed``) when the
    sampler cannot run at that K: the other candidates still can."""
    try:
        return estimator.fit(X, em=em)
    except SamplerError as err:
        selection.failed[f"K={k}"] = str(err)
        return None


def _check_components(n_components: Iterable[int], n_samples: int) -> list[int]:
    """The K values as sorted distinct integers, each between 1 and the number of rows."""
    values = list(n_components)
    bad = [k for k in values if not isinstance(k, int | np.integer) or isinstance(k, bool)]
    if bad or not values:
        raise ValueError(f"n_components must be positive integers, got {values[:10]!r}.")
    ks = sorted({int(k) for k in values})
    if ks[0] < 1:
        raise ValueError(f"n_components must be positive integers, got {ks[0]}.")
    if ks[-1] > n_samples:
        raise ValueError(
            f"K={ks[-1]} exceeds the {n_samples} observations: a mixture needs at least one "
            f"observation per component. Ask for at most {n_samples} components (e.g. "
            f"--components 1-{min(n_samples, 6)})."
        )
    return ks


def _failure_reasons(table: pd.DataFrame, most: int = 3) -> str:
    """The distinct messages of failed cells, most frequent first, each with its cells."""
    counts = table["message"].fillna("").value_counts()
    said = [
        f"{reason or 'no message'} ({count} of {len(table)} fits)"
        for reason, count in counts.head(most).items()
    ]
    if len(counts) > most:
        said.append(f"and {len(counts) - most} other reason(s)")
    return " | ".join(said)


def _best_by_criterion(table: pd.DataFrame) -> dict[str, tuple[int, str]]:
    usable = table[table["status"] == "ok"]
    if usable.empty:
        usable = table[table["status"] != "failed"]
    if usable.empty:  # no table reaches the caller: the error carries the reasons
        raise ValueError(f"Every EM fit failed: {_failure_reasons(table)}")
    return {criterion: _best_row(usable, criterion) for criterion in CRITERIA}


# criteria within this (relative) of the lowest are ties: the same model fitted under several
# names differs in the last digits (~1e-13 relative at K = 1, R's mammals, judges, painters)
_TIE = 1e-10


def _best_row(usable: pd.DataFrame, criterion: str) -> tuple[int, str]:
    """The ``(n_components, covariance_type)`` of the lowest ``criterion``; ties (to
    rounding) to the fewest parameters, the smallest K, the first model in mclust's order."""
    values = usable[criterion].to_numpy(dtype=float)
    lowest = np.nanmin(values)
    tied = usable[values <= lowest + _TIE * max(1.0, abs(lowest))]
    order = tied["model_name"].map(MODEL_NAMES.index)
    key = pd.DataFrame({"p": tied["n_parameters"], "k": tied["n_components"], "m": order})
    row = tied.loc[key.sort_values(["p", "k", "m"], kind="stable").index[0]]
    return int(row["n_components"]), str(row["covariance_type"])


def candidate_components(table: pd.DataFrame, n_candidates: int = 3) -> list[int]:
    """The ``n_candidates`` distinct K with the lowest BIC (at least two when possible), in
    increasing order, as :func:`ranked_components` ranks them."""
    return sorted(ranked_components(table)[: max(2, n_candidates)])


def ranked_components(table: pd.DataFrame) -> list[int]:
    """Every distinct K of an EM sweep's table, by its lowest BIC.

    Fits whose EM collapsed a component or did not converge come after every healthy fit,
    whatever their BIC (as in the best-by-criterion choice): sampling from a collapsed EM start
    rarely converges. Failed fits are never ranked.
    """
    usable = table[table["status"] != "failed"]
    usable = usable.assign(_unhealthy=usable["status"] != "ok")  # (an empty one stays empty)
    usable = usable.sort_values(["_unhealthy", "bic"], kind="stable")
    return list(dict.fromkeys(int(k) for k in usable["n_components"]))


def _with_sampled(covariance_types: str | Iterable[str], sampled: str | None, X: Any) -> list[str]:
    """The models to sweep: the requested ones, and the sampled model when they lack it (its
    own BIC ranks the candidates: :func:`_sampleable_candidates`). With one feature every
    model is one of two, so nothing is added."""
    names = _covariance_names(covariance_types, np.shape(X)[1])
    swept = {model_name(c) for c in names}
    if sampled is None or np.shape(X)[1] == 1 or model_name(sampled) in swept:
        return names
    return [*names, sampled]


def _unfitted_advice(table: pd.DataFrame, best: tuple[int, str], sampled: str) -> str:
    """A caveat to :func:`sampled_model_statement`'s advice when the model it advises (the
    closest sampled model containing BIC's choice) has rows in the sweep and failed at every
    K > 1 there ("" otherwise): cluster's votes.repub (50 rows, 10 features), BIC's EVE K=2
    sampled with diagonal covariances, was advised VVV, which more parameters than rows keep
    from every K > 1."""
    k, chosen = best[0], model_name(best[1])
    closest = closest_bayes_model(chosen)
    if k == 1 or contains(model_name(sampled), chosen) or closest == model_name(sampled):
        return ""  # (no advice given)
    rows = table[(table["model_name"] == closest) & (table["n_components"] > 1)]
    if rows.empty or (rows["status"] != "failed").any():
        return ""
    return (
        f" But {closest} could not be fitted at any K > 1 on these rows (the EM table says "
        "why), so neither can its posterior be sampled there."
    )


def ranking_rows(table: pd.DataFrame, covariance_type: str) -> pd.DataFrame:
    """The rows of an EM sweep's table that rank the K of a sampled ``covariance_type``: its
    own rows when one of them was fitted, else every row."""
    own = table["model_name"] == model_name(covariance_type)
    return table[own] if (own & (table["status"] != "failed")).any() else table


def _sampleable_candidates(
    selection: Selection, n_candidates: int, covariance_type: str, shape: tuple[int, ...]
) -> list[int]:
    """The candidate K (:func:`candidate_components`) at which the sampled model has the rows
    its components' covariances need (:func:`bayesgmm._models.too_few_rows`) and, for the
    models whose components turn axes of their own, fewer free parameters than rows (the bar
    :func:`em_sweep` sets, :func:`bayesgmm._models.inestimable`): a posterior without them is
    all but a prior's, and NUTS crawls through it (R's longley, 16 x 7: full covariances at
    K = 4 ran over 10 minutes; robustbase's toxicity, 38 x 10: full at K = 2, 131 free
    parameters, over 8; UScereal, 65 x 8: full at K = 4, 179, was sampled as the second
    candidate of a diagonal sweep). A K left out for that, which would have been a candidate,
    is in ``selection.failed`` with the reason. K is ranked by the sampled model's own rows of
    the sweep when it has them (R's milk, all 14 models swept, diagonal covariances sampled:
    K = 4 and 5, the best K of EEE and EVE, were sampled while VVI's BIC was lowest at K = 6),
    else (none, or every one failed) by every row."""
    table = ranking_rows(selection.em.table, covariance_type)
    short = {
        k: too_few_rows(covariance_type, k, shape[0], shape[1])
        or inestimable(covariance_type, k, shape[0], shape[1]).rstrip(".")
        for k in sorted(set(table["n_components"].astype(int)))
    }
    ks = candidate_components(table[[not short[k] for k in table["n_components"]]], n_candidates)
    example = " (e.g. 'diag')" if model_name(covariance_type) in ("VVV", "EEE") else ""
    for k in candidate_components(table, n_candidates):
        if short[k]:
            selection.failed[f"K={k}"] = (
                f"{short[k]}. Sample a more constrained bayes_covariance_type{example} or "
                "fewer components."
            )
    return ks


def _count(value: float) -> float:
    """A count from the diagnostics table, NaN where it does not apply (no divergences for
    independence Metropolis-Hastings draws: :mod:`bayesgmm._independence`); a blank cell."""
    return int(value) if np.isfinite(value) else np.nan


def _loo_row(name: str, idata: Any, diagnostics_table: pd.DataFrame) -> dict[str, Any]:
    from ._idata import loo  # ArviZ: loaded by the Bayesian half only
    from .diagnostics import NOT_CONVERGENCE

    pareto_k = np.asarray(loo(idata).pareto_k)
    checks = diagnostics_table.set_index("check")
    failed = [c for c in checks.index if not checks.loc[c, "passed"]]
    return {
        "model": name,
        "pareto_k_above_0.7": int(np.sum(pareto_k > 0.7)),
        "pareto_k_above_1": int(np.sum(pareto_k > 1.0)),
        "max_r_hat": float(checks.loc["r_hat", "value"]),
        "min_ess_bulk": float(checks.loc["ess_bulk", "value"]),
        "divergences": _count(checks.loc["divergences", "value"]),
        "converged": not [c for c in failed if c not in NOT_CONVERGENCE],  # (LOO: label-free)
        "failed_checks": ", ".join(failed),
    }


def bayesian_comparison(fits: dict[str, Any], X: Any = None) -> pd.DataFrame:
    """LOO comparison (ArviZ's ``compare``, stacking weights) with each model's diagnostics.

    Parameters
    ----------
    fits : dict of str to BayesianGMM
        Fitted models keyed by a label such as ``"K=2"``.
    X : array-like, optional
        The data the models were fitted to: with it, a model with a component on a point
        mass (:func:`bayesgmm._pointmass.point_masses`: rows sharing one value of a feature,
        where the density grows as the prior's floor allows and LOO rewards the tie) is not
        eligible as winner, and ``point_mass`` says where.

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison columns (rank, elpd_loo, p_loo, elpd_diff, weight, se, dse,
        p_worse, diag_diff, diag_elpd) plus Pareto-k counts, the worst R-hat and ESS,
        divergences, ``converged`` (every check of :func:`bayesgmm.diagnostics` passed but
        ``labels``, which does not bear on LOO),
        ``failed_checks``, ``point_mass`` (empty without ``X``) and ``winner`` (the best
        ranked model among the converged ones without a point mass; none if there is none).

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> X = load_faithful()
    >>> fits = {f"K={k}": BayesianGMM(k).fit(X) for k in (2, 3)}  # doctest: +SKIP
    >>> bayesian_comparison(fits)[["elpd_loo", "converged", "winner"]]  # doctest: +SKIP
    """
    from ._idata import compare  # ArviZ: loaded by the Bayesian half only

    table = compare({name: fit.idata_ for name, fit in fits.items()})
    extra = pd.DataFrame(
        [_loo_row(name, fit.idata_, fit.diagnostics()) for name, fit in fits.items()]
    ).set_index("model")
    table = table.join(extra)
    masses = {
        name: "; ".join(point_masses(fit, X)) if X is not None else "" for name, fit in fits.items()
    }
    table["point_mass"] = pd.Series(masses)
    table["winner"] = False
    eligible = table[table["converged"] & (table["point_mass"] == "")]
    if not eligible.empty:
        table.loc[eligible["rank"].idxmin(), "winner"] = True
    table.index.name = "model"
    return table


@dataclass
class Selection:
    """How many components: the EM sweep and, for the candidate Ks, the LOO comparison.

    Attributes
    ----------
    em : EMSelection
        Every (K, covariance family) fitted by EM, with BIC/AIC/ICL.
    loo : pandas.DataFrame or None
        :func:`bayesian_comparison` of the candidates (None when ``bayesian=False``).
    fits : dict of str to BayesianGMM
        The sampled candidates, keyed ``"K=k"``.
    chosen : dict
        ``{"bic": (K, family), "icl": ..., "aic": ..., "loo": K or None}``.
    failed : dict of str to str
        Candidates that could not be sampled (``"K=k"``) and why.
    sampled : str
        Which covariance model the Bayesian stage samples, against the one EM's BIC chose
        (:func:`sampled_model_statement`); empty when ``bayesian=False``.
    warnings : dict of str to list of str
        What the sampler warned of for each candidate (``"K=k"``: its SamplingWarning
        messages, each once: a model with more free parameters than rows, failed diagnostics
        and what to try, ...). Kept here, not printed (``loo`` shows every candidate's
        diagnostics); the report lists them.

    Examples
    --------
    >>> from bayesgmm import load_faithful, select_n_components
    >>> sel = select_n_components(load_faithful(), range(1, 5))  # doctest: +SKIP
    >>> sel.loo[["elpd_loo", "weight", "converged", "winner"]]  # doctest: +SKIP
    >>> sel.chosen  # doctest: +SKIP
    """

    em: EMSelection
    loo: pd.DataFrame | None = None
    fits: dict[str, Any] = field(default_factory=dict, repr=False)
    chosen: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    sampled: str = ""
    warnings: dict[str, list[str]] = field(default_factory=dict)


def select_n_components(
    X: Any,
    n_components: Iterable[int] = range(1, 7),
    covariance_types: str | Iterable[str] = ("full",),
    *,
    bayesian: bool = True,
    n_candidates: int = 2,
    bayes_covariance_type: str = "full",
    draws: int = 1000,
    tune: int | None = None,
    chains: int = 4,
    sampler: str = "nutpie",
    random_seed: int | None = 0,
    target_accept: float | None = None,
    n_init: int = 5,
    progress: bool = True,
    priors: Any = None,
    compile_cache: Any = None,
    em_options: dict[str, Any] | None = None,
) -> Selection:
    """Choose the number of components by BIC/AIC/ICL (EM) and by LOO (the posterior).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN cells are missing values (missing at random): the EM sweep and the Bayesian
        candidates alike use every row through the density of its observed cells, each
        candidate starting from the sweep's EM fit.
    n_components : iterable of int
        K values for the EM sweep.
    covariance_types : iterable of str
        EM covariance models to sweep, as in :func:`em_sweep` (names, aliases or ``"all"``).
    bayesian : bool
        Also sample the candidate Ks and compare them by LOO.
    n_candidates : int
        How many of the best distinct K by BIC to sample (at least two).
    bayes_covariance_type : str
        Covariance model of the Bayesian candidates, one of
        :data:`bayesgmm.model.BAYES_COVARIANCE_TYPES` (``"full"``, ``"tied"``, ``"diag"``,
        ``"spherical"``, ``"VVV"``, ``"EEE"``, ``"VVI"``, ``"EEI"``, ``"VII"``, ``"EII"``).
        The sweep fits it too when ``covariance_types`` lacks it: its own BIC ranks the
        candidate K.
    draws, tune, chains, sampler, random_seed, target_accept, priors, compile_cache
        Passed to :class:`~bayesgmm.BayesianGMM`.
    n_init : int
        EM restarts where EM is not the sweep's em-EM: the Bayesian stage's own EM fits, and
        the sweep with ``em_options={"init": "n_init"}``.
    progress : bool
        Show which K and which stage runs.
    em_options : dict, optional
        Further :class:`~bayesgmm.EMGaussianMixture` parameters for the sweep, e.g.
        ``{"tol": 1e-8, "max_iter": 2000}`` to reach the optimum to more digits.

    Returns
    -------
    Selection

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> sel = select_n_components(load_faithful(), range(1, 4), bayesian=False, progress=False)
    >>> sel.chosen["bic"]
    (2, 'full')
    """
    from .bayesian import BayesianGMM  # the Bayesian stage is optional and heavy

    check_choice("bayes_covariance_type", bayes_covariance_type, BAYES_COVARIANCE_TYPES)
    n_components = _check_components(n_components, np.shape(X)[0])
    if not isinstance(n_candidates, int | np.integer) or n_candidates < 1:
        raise ValueError(f"n_candidates must be an integer >= 1, got {n_candidates!r}.")
    if bayesian:  # every sampling argument and what the sampler asks of the data, before EM
        BayesianGMM(
            2, draws=draws, tune=tune, chains=chains, sampler=sampler, random_seed=random_seed,
            target_accept=target_accept,
        )._check_parameters()  # fmt: skip
        check_matrix(X, caller="select_n_components", allow_nan=True)
    sweep = em_sweep(
        X,
        n_components,
        _with_sampled(covariance_types, bayes_covariance_type if bayesian else None, X),
        n_init=n_init,
        random_state=random_seed,
        progress=progress,
        **(em_options or {}),
    )
    selection = Selection(em=sweep, chosen=dict(sweep.best))
    if not bayesian:
        return selection
    ks = _sampleable_candidates(selection, n_candidates, bayes_covariance_type, np.shape(X))
    selection.sampled = sampled_model_statement(sweep.best["bic"], bayes_covariance_type)
    selection.sampled += _unfitted_advice(sweep.table, sweep.best["bic"], bayes_covariance_type)
    settings = dict(
        covariance_type=bayes_covariance_type,
        priors=priors,
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        random_seed=random_seed,
        target_accept=target_accept,
        progressbar=False,
        compile_cache=compile_cache,
        em_n_init=n_init,
        em_reg_covar=(em_options or {}).get("reg_covar", 1e-6),
    )
    _sample_candidates(selection, X, ks, settings, progress)
    if not selection.fits:
        raise SamplerError(
            "no candidate could be sampled: "
            + "; ".join(f"{label}: {why}" for label, why in selection.failed.items())
        )
    selection.loo = bayesian_comparison(selection.fits, X)
    winners = selection.loo.index[selection.loo["winner"]]
    selection.chosen["loo"] = int(winners[0].split("=")[1]) if len(winners) else None
    return selection
