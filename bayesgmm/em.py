"""Classic EM for Gaussian mixtures, as a scikit-learn estimator.

The algorithm lives once in :class:`EMGaussianMixture`: restarts, the convergence loop, keeping
the best run, the convergence warning and a last E-step so that ``fit_predict(X)`` equals
``fit(X).predict(X)``. The Gaussian math is in :mod:`bayesgmm._gaussian`.

EM works on standardised data (:mod:`bayesgmm._scaling`); fitted attributes are reported in the
user's units. The standardisation is applied block by block inside the E-step
(:mod:`bayesgmm._kernels`), so no standardised copy of the data is made, and the E-step's
memory does not grow with the number of rows. A ``dask.array`` is fitted where it lives: its
blocks' sufficient statistics are reduced by Dask (:mod:`bayesgmm._dask`).
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from . import _dask, _emloop, _fastem, _missing, _population, _restarts
from . import _gaussian as g
from . import _kernels as kernels
from . import _models as models
from ._errors import warn
from ._mstep import Warm, m_step
from ._scaling import AffineScaling
from ._validation import (
    _check_n_samples,
    check_choice,
    check_data,
    check_fit_data,
    check_sample_weight,
)

__all__ = ["CollapsedComponentWarning", "EMGaussianMixture"]

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
# Work per E-step, n_samples x n_components x n_features**2, below which the kernel stays on one
# thread (waking threads costs more than it saves). Fits always run the Numba kernel: it is
# compiled once and cached on disk (loading it costs ~25 ms per process), and even for tiny
# problems it is several times faster than the NumPy engine, which stays as the reference.
_SERIAL_BELOW = 2**24
_DASK_INIT_ROWS = 50_000  # rows of a Dask array that data-driven initialisation looks at


def _engine(n_samples: int, n_components: int, n_features: int) -> str:
    """The E-step engine (see :mod:`bayesgmm._kernels`) for a problem of this size."""
    work = n_samples * n_components * n_features**2
    return "serial" if work < _SERIAL_BELOW else "parallel"


class CollapsedComponentWarning(UserWarning):
    """A fitted component has too few points or a covariance at the ``reg_covar`` floor.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> X = np.vstack([np.random.default_rng(0).normal(size=(50, 2)), [[9.0, 9.0]] * 5])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     em = EMGaussianMixture(2, random_state=0).fit(X)
    >>> em.collapsed_components_.size, caught[-1].category.__name__
    (1, 'CollapsedComponentWarning')
    """


@dataclass
class _Params:
    """Mixture parameters on the unit scale, and where the next iterative M-step starts."""

    weights: np.ndarray
    means: np.ndarray
    precisions_chol: np.ndarray
    covariances: np.ndarray
    warm: Warm | None = None


@dataclass
class _Run:
    params: _Params
    lower_bound: float = -np.inf
    trace: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    kind: str = "init"

    @property
    def covariances(self) -> np.ndarray:
        """Its covariances on the unit scale (as :class:`bayesgmm._population.Slot`'s)."""
        return self.params.covariances


class EMGaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by expectation-maximisation.

    Same parameters, fitted attributes and methods as scikit-learn's ``GaussianMixture`` where
    the names agree, plus the 14 covariance models of mclust, ICL, the log-likelihood trace and
    a report of collapsed components. EM works on standardised features, so the fit does not
    depend on the data's units where the model does not (see ``covariance_type``).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : str, default="full"
        One of the 14 models of Celeux & Govaert (1995) by its mclust name, ``"EII"``,
        ``"VII"``, ``"EEI"``, ``"VEI"``, ``"EVI"``, ``"VVI"``, ``"EEE"``, ``"VEE"``, ``"EVE"``,
        ``"VVE"``, ``"EEV"``, ``"VEV"``, ``"EVV"``, ``"VVV"``: ``Sigma_k = lambda_k D_k A_k
        D_k^T`` with the volume ``lambda_k``, shape ``A_k`` and orientation ``D_k`` Equal
        across components, Variable, or the Identity (letters in that order). scikit-learn's
        names are aliases: ``"spherical"`` (VII), ``"diag"`` (VVI), ``"tied"`` (EEE) and
        ``"full"`` (VVV). The models whose fit depends on the units of the features, EII, VII,
        EVE, VVE, EEV and VEV, are fitted after one common rescaling of all features, so they
        equal mclust's fits in the user's units; every other model is invariant to the units of
        each feature and is fitted on standardised features. The iterative M-steps (VEI, VEV,
        VEE, EVE, VVE) follow Celeux & Govaert (1995) and Flury & Gautschi (1986); see
        :mod:`bayesgmm._mstep`.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood per sample.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, **as a fraction of each feature's variance**.
        scikit-learn adds it in absolute units; the two agree on standardised data. The
        relative form keeps the fit invariant to units. It enters as ``n_k reg_covar
        diag(var)`` added to each component's scatter matrix before the M-step: scikit-learn's
        rule for its four families (for spherical covariances, a fraction of the mean
        variance), and for the constrained models a regularisation that keeps their
        constraints.
    max_iter : int, default=100
        Maximum EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the highest log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How initial responsibilities are chosen, as in scikit-learn.
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Initial precisions (inverse covariances) in the shape of the model's covariances (see
        ``covariances_``). EM starts from the responsibilities they give; they need not satisfy
        the model's constraints (the first M-step imposes them).
    random_state : int, RandomState instance or None, default=None
        Seed for the initialisation and for :meth:`sample`.
    chunk_size : int or None, default=None
        Rows per block in the E-step and in prediction. The E-step's extra memory is
        ``O(chunk_size x K + K x D^2)`` with the fused Numba kernel; prediction holds
        ``O(chunk_size x K x D)``. ``None`` picks 512 rows for the kernel and about 4 MB of
        working memory for prediction. Results do not depend on it beyond rounding.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        ``(K,)`` for EII and VII (one variance per component), ``(K, D)`` for the diagonal
        models EEI, VEI, EVI and VVI, ``(D, D)`` for EEE, and ``(K, D, D)`` for VEE, EVE, VVE,
        EEV, VEV, EVV and VVV: the shapes of scikit-learn's spherical, diag, tied and full.
    precisions_ : ndarray
        Inverse covariances, same shape as ``covariances_``.
    precisions_cholesky_ : ndarray
        Cholesky factors of the precisions (upper triangular for full and tied).
    converged_ : bool
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Mean log-likelihood per sample of the best initialisation at its last iteration.
    log_likelihood_trace_ : ndarray of shape (n_iter_,)
        Mean log-likelihood at every iteration of the best initialisation.
    model_name_ : str
        The fitted model's mclust name (``"VVV"`` for ``covariance_type="full"``).
    collapsed_components_ : ndarray of int
        Components whose effective size is below the minimum of their model (``n_features + 1``
        for VVV and EVV, 1 for EII, EEI and EEE, 2 otherwise) or whose covariance the
        ``reg_covar`` floor holds up in some direction (at the floor, or rescaled from it by
        the model's constraints: rows that share one value of a feature). A
        :class:`CollapsedComponentWarning` names them.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.

    Notes
    -----
    Information criteria use scikit-learn's sign: **lower is better**.
    ``bic = -2 log L + p log n``, ``aic = -2 log L + 2 p`` and
    ``icl = bic - 2 sum_i log z_{i, c_i}`` (Biernacki et al. 2000), with ``z`` the
    responsibilities and ``c_i`` the most probable component. R's mclust reports the negatives
    (``2 log L - p log n``, higher is better); the numbers agree up to sign.

    At scale: each E-step is one pass over the rows by a fused Numba kernel
    (:mod:`bayesgmm._kernels`), on Numba's threads when the problem is large, with BLAS held
    to one thread during such fits.
    Its extra memory is ``O(chunk_size x K + K x D^2)``; no standardised copy of ``X`` is made.
    A ``dask.array`` is fitted and predicted where it lives (see :meth:`fit`).

    Missing values (NaN) are handled exactly in :meth:`fit`, :meth:`predict`,
    :meth:`predict_proba`, :meth:`score_samples` and :meth:`score` (the density of each row's
    observed entries), and :meth:`impute` fills them with their conditional means; rows can
    carry frequency weights (``fit(X, sample_weight=...)``). Neither for Dask arrays.

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture
    >>> from bayesgmm.datasets import load_faithful
    >>> em = EMGaussianMixture(2, random_state=0).fit(load_faithful())
    >>> em.weights_.round(2)
    array([0.36, 0.64])
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        chunk_size: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.chunk_size = chunk_size

    # ------------------------------------------------------------------ checks
    def _check_parameters(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")

        def real(name: str, *, positive: bool) -> None:
            value = getattr(self, name)
            ok = isinstance(value, numbers.Real) and np.isfinite(value)
            ok = ok and (value > 0 if positive else value >= 0)
            if not ok:
                kind = "> 0" if positive else ">= 0"
                raise ValueError(f"{name} must be a finite number {kind}, got {value!r}.")

        integer("n_components", 1)
        integer("max_iter", 0)
        integer("n_init", 1)
        real("tol", positive=False)
        real("reg_covar", positive=False)
        models.check_model(self.covariance_type)
        check_choice("init_params", self.init_params, INIT_PARAMS)
        if self.chunk_size is not None:
            integer("chunk_size", 1)

    def _check_initial_values(self, n_features: int) -> dict[str, np.ndarray]:
        """Validate ``weights_init``, ``means_init`` and ``precisions_init`` (user units)."""
        k, d = self.n_components, n_features
        out: dict[str, np.ndarray] = {}
        if self.weights_init is not None:
            w = _as_float_array("weights_init", self.weights_init, (k,))
            if np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise ValueError(
                    "weights_init must be non-negative and sum to 1, got "
                    f"min {w.min():.3g} and sum {w.sum():.6g}. Normalise it: w / w.sum()."
                )
            out["weights"] = w
        if self.means_init is not None:
            out["means"] = _as_float_array("means_init", self.means_init, (k, d))
        if self.precisions_init is not None:
            layout = models.layout(self.covariance_type)
            shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
            p = _as_float_array("precisions_init", self.precisions_init, shape[layout])
            if layout in ("full", "tied"):
                if not np.allclose(p, np.swapaxes(p, -1, -2)):
                    raise ValueError("precisions_init must hold symmetric matrices.")
                try:
                    chol = g.precision_cholesky_from_precisions(p, layout)
                except g.SingularCovarianceError as err:
                    raise ValueError("precisions_init must be positive definite.") from err
            elif np.any(p <= 0):
                raise ValueError("precisions_init must be strictly positive.")
            else:
                chol = g.precision_cholesky_from_precisions(p, layout)
            out["precisions_chol"] = chol
        return out

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> EMGaussianMixture:
        """Fit the mixture by EM (``n_init`` restarts, best kept).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            NaN cells are missing values, handled exactly under missing at random
            (:mod:`bayesgmm._missing`): each row contributes the density of its observed
            entries, and the M-step completes the rest by their conditional expectations
            (Ghahramani & Jordan 1994). A row with nothing observed is left out with a
            warning; a feature with nothing observed is an error. Data-driven initialisation
            starts from a copy with each missing cell set to its feature's observed mean.
            Infinity is an error. A Dask array (without missing values) is validated,
            standardised and fitted without being loaded: every E-step reduces its blocks'
            sufficient statistics with Dask, so the fit runs on whatever scheduler is active
            (e.g. a ``dask.distributed.Client``). Data-driven initialisation
            (``init_params``) then uses a random subsample of at most 50,000 rows held in
            memory; pass ``weights_init``, ``means_init`` and ``precisions_init`` to skip it.
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights (scikit-learn's convention): non-negative, finite, positive on at
            least ``n_components`` rows. A row of weight ``w`` counts ``w`` times everywhere
            (E-step, standardisation, initialisation), so integer weights give the fit of the
            repeated rows, and a zero weight removes the row. Not for Dask arrays.

        Returns
        -------
        self : EMGaussianMixture
        """
        self._fit(X, sample_weight, row_index=getattr(X, "index", None))
        return self

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit the mixture and return the most probable component of every sample.

        The labels come from a last pass with the final parameters, so they equal
        ``fit(X).predict(X)``; for a Dask array they are a lazy Dask array.
        """
        fitted = self._fit(X, sample_weight, row_index=getattr(X, "index", None))
        return self._predict_rows(fitted, "labels")

    def _fit(
        self,
        X: Any,
        sample_weight: Any = None,
        *,
        starts: list[tuple[str, np.ndarray]] | None = None,
        strategy: _restarts.Strategy | None = None,
        map_runs: Any = map,
        validated: bool = False,
        summary: Any = None,
        row_index: Any = None,
    ) -> Any:
        """Validate, standardise and run EM; return the validated data (ndarray or Dask).

        ``starts`` (from :func:`bayesgmm._restarts.partition_pool`): starting responsibilities
        of the rows of ``X``, spent by em-EM (:func:`bayesgmm._restarts.em_em`, as ``strategy``
        says, its runs of a stage through ``map_runs``) instead of ``n_init`` initialisations
        by ``init_params``. ``validated``: ``X`` is an ndarray that passed
        :func:`bayesgmm._validation.check_fit_data` already (an em_sweep's data, checked once);
        ``summary``: its :func:`bayesgmm._kernels.column_summary` when it is complete and
        unweighted (em_sweep's, computed once). ``row_index``: the user's row labels (a
        DataFrame's index), which the collapse warning names rows by.
        """
        self._check_parameters()
        X, data, summary = self._fit_data(X, sample_weight, validated, summary)
        initial = self._check_initial_values(X.shape[1])
        self.model_name_ = models.model_name(self.covariance_type)
        scaling = summary.scaling(isotropic=not models.per_feature_scaling(self.model_name_))
        # Each feature's variance on the unit scale (ones after per-feature standardisation):
        # reg_covar is a fraction of it, and collapse is judged against it.
        self._unit_variances = (summary.scaling(isotropic=False).scale / scaling.scale) ** 2
        best: _Run | None = None
        small = self._small_loop(data, scaling)  # (only reads: n_init's runs, the last E-step)
        with self._blas_limit(data):
            if starts is not None and self.max_iter > 0:  # no iteration: nothing to rank by
                strategy = strategy or _restarts.Strategy()
                best = self._em_em(data, scaling, starts, strategy, map_runs)
            random_state = check_random_state(self.random_state) if best is None else None
            for _ in range(self.n_init if best is None else 0):
                params = self._initial_params(data, random_state, scaling, initial)
                run = self._run_em(data, scaling, params, small)
                if best is None or run.lower_bound > best.lower_bound:
                    best = run
            self._store(best, scaling)
            unit = self._unit_params()
            final = self._final_statistics(data, scaling, unit, small)
        if not best.converged and self.max_iter > 0:
            warn(
                f"EM did not converge within max_iter={self.max_iter} iterations "
                f"(tol={self.tol}) in the best of n_init={self.n_init} initialisation(s). "
                "Increase max_iter, raise tol, try more restarts (n_init) or another "
                "init_params, or check for degenerate data.",
                ConvergenceWarning,
            )
        self._report_collapse(final, unit, X, row_index)
        return X

    def _final_statistics(self, X: Any, scaling: AffineScaling, params: _Params, small: Any) -> Any:
        """The E-step of the stored fit (its effective sizes): by the lean loop ``small``
        (:meth:`_small_loop`) where it applies (the same numbers as :meth:`_statistics`,
        without its per-call set-up)."""
        if small is None:
            return self._statistics(X, scaling, params)
        return small.statistics(params.weights, params.means, params.precisions_chol)

    def _fit_data(self, X: Any, sample_weight: Any, validated: bool, summary: Any) -> tuple:
        """The validated data, what EM iterates over, and its column summary (see
        :meth:`_fit`)."""
        if _dask.is_dask_array(X):
            if sample_weight is not None:
                raise ValueError(
                    "sample_weight is not supported for a Dask array: compute it into memory, "
                    "or fit without weights."
                )
            X, summary = _dask.check_fit_array(self, X, self.n_components)
            return X, X, summary
        if validated:  # (only the number of components is new to this fit)
            self.n_features_in_ = X.shape[1]
            _check_n_samples(X.shape[0], self.n_components)
        else:
            X = check_fit_data(self, X, self.n_components, allow_nan=True)
        X = np.ascontiguousarray(X)
        weights = check_sample_weight(sample_weight, X.shape[0], self.n_components, X, self)
        if summary is None or weights is not None:
            return X, *_missing.prepare(X, weights, self.n_components)
        return X, X, summary  # (what prepare returns for complete, unweighted data)

    def _blas_limit(self, X: Any) -> contextlib.AbstractContextManager:
        """One BLAS thread while the kernel runs on several threads (Dask or large problems).

        The kernel uses no BLAS, and the M-step's tiny LAPACK calls are several times slower
        when an idle multi-threaded BLAS competes with the kernel's threads for the cores.
        Setting the limit costs about half a millisecond, so small fits go without.
        """
        if _dask.is_dask_array(X) or _engine(X.shape[0], self.n_components, X.shape[1]) != "serial":
            return threadpool_limits(limits=1, user_api="blas")
        return contextlib.nullcontext()

    def _initial_params(
        self,
        X: Any,
        random_state: np.random.RandomState,
        scaling: AffineScaling,
        initial: dict[str, np.ndarray],
    ) -> _Params:
        if len(initial) == 3:
            params = _Params(None, None, None, None)
        else:
            if _dask.is_dask_array(X):
                X = _dask.subsample(X, _DASK_INIT_ROWS, random_state)
            X, weight = _missing.initial_rows(X)
            Xu = scaling.transform(X)
            resp = self._initial_resp(Xu, random_state, weight)
            params = self._params_from_resp(Xu, resp, weight)
        if "weights" in initial:
            params.weights = initial["weights"]
        if "means" in initial:
            params.means = scaling.means_to_unit(initial["means"])
        if "precisions_chol" in initial:
            params.precisions_chol = scaling.precisions_cholesky_to_unit(
                initial["precisions_chol"], self._layout
            )
            params.covariances = g.covariances_from_precision_cholesky(
                params.precisions_chol, self._layout
            )
            params.warm = None  # the next M-step starts afresh
        return params

    def _params_from_resp(
        self, Xu: np.ndarray, resp: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> _Params:
        """Starting parameters from initial responsibilities (or a hard partition): one M-step.

        Every initialisation goes through here: ``Xu`` is on the unit scale, ``resp`` has shape
        ``(n_samples, n_components)`` (one-hot rows for a partition); rows count by their
        frequency weights ``sample_weight``, if any.
        """
        shift = np.zeros((self.n_components, Xu.shape[1]))
        stats = g.weighted_statistics(Xu, resp, shift, self._layout, sample_weight)
        return self._m_step(stats, None)

    def _m_step(
        self,
        stats: g.MixtureStatistics,
        warm: Warm | None,
        small: _emloop.SmallLoop | None = None,
    ) -> _Params:
        """The model's M-step, its precision factors, and where the next M-step starts."""
        weights, means, covariances, warm = m_step(
            stats,
            self.reg_covar * self._unit_variances,
            self.model_name_,
            warm,
            inner_tol=self._inner_tol,
        )
        if small is None:
            chol = g.precision_cholesky(covariances, self._layout)
        else:
            chol = small.precision_cholesky(covariances)
        return _Params(weights, means, chol, covariances, warm)

    @property
    def _layout(self) -> str:
        """How the fitted model stores covariances ("full", "tied", "diag" or "spherical")."""
        return models.layout(self.model_name_)

    @property
    def _inner_tol(self) -> float:
        """Tolerance of iterative M-steps (on ``F / (2N)``): far below ``tol``, above rounding."""
        return min(max(1e-3 * self.tol, 1e-13), 1e-7)

    def _initial_resp(
        self,
        Xu: np.ndarray,
        random_state: np.random.RandomState,
        sample_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """Initial responsibilities; frequency weights go to (weighted) k-means and k-means++,
        and make ``random_from_data`` draw rows in proportion to them."""
        n_samples, k = Xu.shape[0], self.n_components
        w = sample_weight
        resp = np.zeros((n_samples, k))
        if self.init_params == "kmeans":
            kmeans = KMeans(n_clusters=k, n_init=1, random_state=random_state)
            labels = kmeans.fit(Xu, sample_weight=w).labels_
            resp[np.arange(n_samples), labels] = 1.0
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n_samples, k))
            resp /= resp.sum(axis=1, keepdims=True)
        elif self.init_params == "random_from_data":
            p = None if w is None else w / w.sum()
            resp[random_state.choice(n_samples, size=k, replace=False, p=p), np.arange(k)] = 1.0
        else:  # k-means++
            _, indices = kmeans_plusplus(Xu, k, random_state=random_state, sample_weight=w)
            resp[indices, np.arange(k)] = 1.0
        return resp

    def _run_em(self, X: Any, scaling: AffineScaling, params: _Params, small: Any = False) -> _Run:
        run = _Run(params)
        self._advance(X, scaling, run, None, small)
        return run

    def _advance(
        self, X: Any, scaling: AffineScaling, run: _Run, n_iter: int | None, small: Any = False
    ) -> None:
        """At most ``n_iter`` more EM iterations of ``run`` (None: up to ``max_iter`` in all);
        ``small``: :meth:`_small_loop` of ``X`` and ``scaling`` if the caller has it."""
        stop = self.max_iter if n_iter is None else min(self.max_iter, run.n_iter + n_iter)
        small = self._small_loop(X, scaling) if small is False else small
        if small is not None:  # compiled iterations, for the models that have them
            _fastem.advance(small, run, stop - run.n_iter, self)
        while run.n_iter < stop and not run.converged:
            p = run.params
            if small is None:
                stats = self._statistics(X, scaling, p)
            else:
                stats = small.statistics(p.weights, p.means, p.precisions_chol)
            previous = run.lower_bound
            run.lower_bound = stats.log_likelihood / stats.n_samples
            run.trace.append(run.lower_bound)
            run.params = self._m_step(stats, p.warm, small)
            run.n_iter += 1
            if abs(run.lower_bound - previous) < self.tol:
                run.converged = True

    def _small_loop(self, X: Any, scaling: AffineScaling) -> _emloop.SmallLoop | None:
        """The lean loop of :mod:`bayesgmm._emloop` where it applies (an ndarray small enough
        for the serial kernel), else None (the general path, :meth:`_statistics`)."""
        if (
            _dask.is_dask_array(X)
            or isinstance(X, _missing.RowData)
            or _engine(*X.shape[:1], self.n_components, X.shape[1]) != "serial"
        ):
            return None
        return _emloop.SmallLoop(X, scaling, self._layout, self._block_rows("serial"))

    def _em_em(
        self,
        data: Any,
        scaling: AffineScaling,
        starts: list,
        strategy: _restarts.Strategy,
        map_runs: Any = map,
    ) -> _Run:
        """em-EM from the given starting responsibilities (see :mod:`bayesgmm._restarts`);
        ``data`` as :meth:`_fit` iterates over it (rows weighted, if they are). ``map_runs``
        (e.g. a thread pool's ``map``) advances the runs of a stage where the fit takes the
        serial compiled loop; elsewhere (Dask, missing cells, Numba's parallel kernels, which
        must not be entered from several threads at once) they go one after the other."""
        rows, weight = _missing.initial_rows(data)
        Xu = scaling.transform(rows)
        small = self._small_loop(data, scaling)  # once for all the runs (it only reads)

        def advance(run: Any, n_iter: int | None) -> None:
            self._advance(data, scaling, run, n_iter, small)

        def start(resp: np.ndarray) -> Any:
            return _Run(self._params_from_resp(Xu, resp, weight))

        def sound(run: Any) -> bool:  # no variance the reg_covar floor holds up (see em_em)
            covariances = run.covariances
            if not self._at_floor(covariances, 100.0).any():  # the usual case: one check
                return True  # (nothing within 100 times the floor, so nothing within twice it)
            if self._at_floor(covariances).any():
                return False
            stats = self._final_statistics(data, scaling, run.params, small)
            return not self._held_by_floor(stats, covariances).any()

        many = start_many = None
        if small is not None and self.model_name_ in _fastem.MODEL_CODES:
            population = _population.Population(self, small, advance, len(starts))
            many = population.advance_many

            def start_many(resps: list) -> list:  # (the runs' rows in the population's arrays)
                return population.start_many(Xu, resps)

        best = _restarts.em_em(
            start,
            advance,
            starts,
            strategy,
            map_runs if small is not None else map,
            many,
            start_many,
            sound=sound if self.reg_covar > 0 else None,  # without, such runs fail as singular
        )
        if isinstance(best, _Run):
            return best
        return _Run(
            best.params, best.lower_bound, best.trace, best.n_iter, best.converged, best.kind
        )

    def _block_rows(self, engine: str) -> int:
        """Rows per E-step block: ``chunk_size``, or the engine's default."""
        return self.chunk_size or kernels.default_block_rows(
            engine, self.n_components, self.n_features_in_
        )

    def _statistics(self, X: Any, scaling: AffineScaling, params: _Params) -> g.MixtureStatistics:
        """One E-step over all rows of ``X`` (user units): the next M-step's statistics."""
        mixture = self._mixture(scaling, params)
        if isinstance(X, _missing.RowData):
            engine = _engine(X.shape[0], self.n_components, X.shape[1])
            return _missing.e_step(X, mixture, block_rows=self._block_rows(engine), engine=engine)
        if _dask.is_dask_array(X):
            # Dask runs blocks in parallel, so each block's kernel stays on its own thread.
            engine = _engine(max(X.chunks[0]), self.n_components, X.shape[1])
            engine = "serial" if engine == "parallel" else engine
            return _dask.e_step(X, mixture, block_rows=self._block_rows(engine), engine=engine)
        engine = _engine(X.shape[0], self.n_components, X.shape[1])
        return kernels.e_step(X, mixture, block_rows=self._block_rows(engine), engine=engine)

    def _mixture(self, scaling: AffineScaling, params: _Params) -> kernels.Mixture:
        return kernels.Mixture(
            scaling, params.weights, params.means, params.precisions_chol, self._layout
        )

    def _store(self, run: _Run, scaling: AffineScaling) -> None:
        cov_type = self._layout
        p = run.params
        self._scaling = scaling
        self.weights_ = p.weights
        self.means_ = scaling.means_from_unit(p.means)
        self.covariances_ = scaling.covariances_from_unit(p.covariances, cov_type)
        self.precisions_cholesky_ = scaling.precisions_cholesky_from_unit(
            p.precisions_chol, cov_type
        )
        u = self.precisions_cholesky_
        with np.errstate(over="ignore", under="ignore"):
            self.precisions_ = u @ np.swapaxes(u, -1, -2) if cov_type in ("full", "tied") else u**2
        self.converged_ = run.converged
        self.n_iter_ = run.n_iter
        self.lower_bound_ = run.lower_bound - scaling.log_jacobian
        self.log_likelihood_trace_ = np.asarray(run.trace) - scaling.log_jacobian

    def _unit_mixture(self) -> kernels.Mixture:
        """The fitted mixture on the unit scale: what predictions evaluate (no covariances,
        which cost a triangular inverse per component and which they do not read)."""
        s = self._scaling
        chol = s.precisions_cholesky_to_unit(self.precisions_cholesky_, self._layout)
        return kernels.Mixture(s, self.weights_, s.means_to_unit(self.means_), chol, self._layout)

    def _unit_params(self) -> _Params:
        m = self._unit_mixture()
        cov = g.covariances_from_precision_cholesky(m.precisions_chol, self._layout)
        return _Params(m.weights, m.means, m.precisions_chol, cov)

    def _at_floor(self, covariances: np.ndarray, times: float = 2.0) -> np.ndarray:
        """Per component: a variance in some direction at most ``times`` the ``reg_covar``
        floor, in units of the features' variances (``covariances`` on the unit scale, in the
        model's layout)."""
        blocks = _fastem._as_blocks(covariances, self._layout)
        floor = times * self.reg_covar + 1e-12
        reached = g.floor_reached(blocks, self._unit_variances, floor)
        if reached.shape[0] == self.n_components:  # (em-EM asks thousands of times a sweep)
            return reached
        return np.repeat(reached, self.n_components)  # tied: one block for all components

    def _held_by_floor(self, stats: g.MixtureStatistics, covariances: np.ndarray) -> np.ndarray:
        """Per component: a variance in some direction that the ``reg_covar`` floor holds up.

        The floor adds ``reg_covar`` (in units of the features' variances) to each scatter
        before the model's M-step, whose constraints then rescale it: a component of EVI whose
        rows share one value of a feature has that variance at ``reg_covar`` times its shared
        volume over the geometric mean of its other variances (test scores on rating scales,
        carData's Baumann: 2.8-3.7 times the floor, so :meth:`_at_floor`'s ``2 reg_covar``
        missed it, and that spike won the sweep's BIC). So the M-step is
        taken again on the same statistics with a floor 100 times lower: where a component's
        smallest variance (in the features' units) falls by half or more, what held it up was
        the floor (no data of its own: ``raw < reg_covar``, the rule :meth:`_at_floor` applies
        to the unconstrained models). Only components already within 100 times the floor are
        looked at (``stats`` is an E-step of the fit or run whose ``covariances`` these are,
        in the model's layout, on the unit scale; both M-steps are taken from it, so that a
        run still moving compares like with like).
        """
        near = self._at_floor(covariances, 100.0)
        if not near.any():
            return near
        smallest = []
        for floor in (self.reg_covar, self.reg_covar / 100.0):
            try:
                variances = floor * self._unit_variances
                step = m_step(stats, variances, self.model_name_, inner_tol=self._inner_tol)[2]
            except g.SingularCovarianceError:  # no data of its own in some direction
                return near
            smallest.append(_smallest_relative_variance(step, self._layout, self._unit_variances))
        held = near & (smallest[1] <= 0.5 * smallest[0])
        return held if held.shape[0] == self.n_components else np.repeat(held, self.n_components)

    def _report_collapse(
        self, final: g.MixtureStatistics, p: _Params, X: Any, row_index: Any = None
    ) -> None:
        """Warn of collapsed components; ``final`` is the fit's E-step, ``p``
        :meth:`_unit_params`, ``X`` the fitted rows (those of a component on too few rows are
        named: carData's Davis, one row's weight and height swapped, collapsed every K >= 2
        onto it and four others, and the warning said nothing of which rows), by their labels
        in ``row_index`` when it is given (:func:`_row_names`)."""
        effective_sizes = final.resp_sum
        minimum = models.min_effective_size(self.model_name_, self.n_features_in_)
        at_floor = self._at_floor(p.covariances) | self._held_by_floor(final, p.covariances)
        collapsed = (effective_sizes < minimum) | at_floor
        self.collapsed_components_ = np.flatnonzero(collapsed)
        if self.collapsed_components_.size:
            few = [k for k in self.collapsed_components_ if effective_sizes[k] < minimum]
            rows = self._rows_of(X, few)
            details = "; ".join(
                f"component {k}: effective size {_size_text(effective_sizes[k], minimum)}"
                + (", covariance at the reg_covar floor" if at_floor[k] else "")
                + (f", mostly {_row_names(rows[k], row_index)}" if k in rows else "")
                for k in self.collapsed_components_
            )
            warn(
                f"Collapsed component(s) {self.collapsed_components_.tolist()} of the "
                f"K={self.n_components} {self.model_name_} fit (minimum effective size "
                f"{minimum} for that model): "
                f"{details}. Their estimates are not trustworthy. A component collapses "
                "onto rows that share a value of some feature (a binary, count or rounded "
                "feature: drop, jitter or transform it), onto duplicated rows, or onto an "
                "outlying row or a few (check the rows named), or where the rows are few for "
                "the model's parameters: reduce n_components, use a simpler covariance_type, "
                "address those features or rows, or increase reg_covar.",
                CollapsedComponentWarning,
            )

    def _rows_of(self, X: Any, components: list[int], most: int = 5) -> dict[int, list[int]]:
        """The rows (positions) each of ``components`` holds with responsibility above 1/2,
        the most responsible first, at most ``most``; none for a Dask array."""
        if not components or _dask.is_dask_array(X):
            return {}
        resp = np.asarray(self._predict_rows(X, "resp"))  # (X is validated: no name check)
        held = {}
        for k in components:
            order = np.argsort(-resp[:, k], kind="stable")[:most]
            held[k] = [int(i) for i in order if resp[i, k] > 0.5]
        return {k: rows for k, rows in held.items() if rows}

    # ------------------------------------------------------------------ prediction
    def _validated(self, X: Any) -> Any:
        """``X`` checked against the fit: a float ndarray, or a Dask array (checked lazily)."""
        check_is_fitted(self)
        if _dask.is_dask_array(X):
            return _dask.check_array(self, X, reset=False)
        return check_data(self, X, reset=False, allow_nan=True)

    def _predict_rows(self, X: Any, output: str) -> Any:
        """Row-wise ``output`` of :func:`bayesgmm._kernels.predict_rows`, chunked or lazy."""
        mixture = self._unit_mixture()
        block_rows = self._block_rows("numpy")
        if _dask.is_dask_array(X):
            names = getattr(self, "feature_names_in_", None)
            return _dask.predict_rows(X, mixture, block_rows=block_rows, output=output, names=names)
        return _missing.predict_rows(X, mixture, block_rows=block_rows, output=output)

    def score_samples(self, X: Any) -> Any:
        """Log density of the mixture at every sample, ``(n_samples,)``, in the user's units.

        Computed in chunks of rows; lazily (a Dask array) when ``X`` is a Dask array.
        """
        return self._predict_rows(self._validated(X), "log_norm") - self._scaling.log_jacobian

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X: Any) -> Any:
        """Responsibilities: the posterior probability of each component, ``(n_samples, K)``.

        Computed in chunks of rows; lazily (a Dask array) when ``X`` is a Dask array.
        """
        return self._predict_rows(self._validated(X), "resp")

    def predict(self, X: Any) -> Any:
        """Most probable component of every sample (lazily for a Dask array)."""
        return self._predict_rows(self._validated(X), "labels")

    def impute(self, X: Any) -> np.ndarray:
        """``X`` with its missing (NaN) cells replaced by their conditional means.

        A missing cell gets ``sum_k p(k | x_O) E[x_M | x_O, k]``: each component's conditional
        mean given the row's observed entries, mixed by the responsibilities of those entries.
        Observed cells are returned unchanged; a row with nothing observed gets the mixture's
        mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        X = self._validated(X)
        if _dask.is_dask_array(X):
            raise ValueError("impute needs data in memory: compute the Dask array first.")
        mixture = self._unit_mixture()
        return _missing.impute(X, mixture, block_rows=self._block_rows("numpy"))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of every sample, sorted by component.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        rng = check_random_state(self.random_state)
        p = self._unit_params()
        counts = rng.multinomial(n_samples, p.weights)
        chol = g.covariance_cholesky(p.precisions_chol, self._layout)
        d = self.n_features_in_
        blocks = []
        for k, count in enumerate(counts):
            z = rng.standard_normal((count, d))
            if self._layout == "full":
                draw = z @ chol[k].T
            elif self._layout == "tied":
                draw = z @ chol.T
            else:
                draw = z * chol[k]
            blocks.append(p.means[k] + draw)
        labels = np.repeat(np.arange(self.n_components), counts)
        return self._scaling.inverse_transform(np.vstack(blocks)), labels

    # ------------------------------------------------------------------ criteria
    def n_parameters(self) -> int:
        """Number of free parameters of the fitted mixture."""
        check_is_fitted(self)
        return models.n_parameters(self.model_name_, self.n_components, self.n_features_in_)

    def bic(self, X: Any) -> float:
        """Bayesian information criterion, ``-2 log L + p log n`` (lower is better)."""
        return self._criteria(X)["bic"]

    def aic(self, X: Any) -> float:
        """Akaike information criterion, ``-2 log L + 2 p`` (lower is better)."""
        return self._criteria(X)["aic"]

    def icl(self, X: Any) -> float:
        """Integrated completed likelihood in BIC's sign (lower is better).

        ``bic(X) - 2 sum_i log z_{i, c_i}``: BIC penalised by the entropy of the hard
        classification, so overlapping components cost more than under BIC.
        """
        return self._criteria(X)["icl"]

    def _criteria(
        self, X: Any, *, validated: bool = False, sample_weight: Any = None, labels: bool = False
    ) -> dict[str, Any]:
        """Total log-likelihood (user units), BIC, AIC and ICL, from one pass over ``X``.

        ``validated=True`` skips the checks of ``X`` (the array :meth:`_fit` returned). With
        frequency weights, sums over rows are weighted and ``n`` is the weights' sum.
        ``labels=True`` (an ndarray ``X``): also ``predict(X)`` from the same pass, as
        ``"labels"``.
        """
        X = X if validated else self._validated(X)
        scores = self._predict_rows(X, "criteria" if labels else "scores")
        found = {"labels": scores[:, 2].astype(np.intp)} if labels else {}
        scores = scores[:, :2]
        weight = None
        if not _dask.is_dask_array(X):
            weight = check_sample_weight(sample_weight, X.shape[0], 1)
            weight = _missing.criteria_weights(X, weight)
        if weight is None:
            totals = np.asarray(scores.sum(axis=0))  # computes a Dask array
            n = scores.shape[0]
        else:
            totals, n = weight @ scores, float(weight.sum())
        log_l = float(totals[0]) - n * self._scaling.log_jacobian
        p = models.n_parameters(self.model_name_, self.n_components, self.n_features_in_)
        bic = -2.0 * log_l + p * np.log(n)
        return {
            "log_likelihood": log_l,
            "bic": bic,
            "aic": -2.0 * log_l + 2.0 * p,
            "icl": bic - 2.0 * float(totals[1]),
            **found,
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values, handled exactly (_missing)
        return tags


def _as_float_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return array


def _row_names(positions: list[int], row_index: Any) -> str:
    """Rows named by their labels in ``row_index`` (a DataFrame's index; its name, e.g. the
    command's "data row", in brackets), or as positions from 0 without one or with
    the default index (carData UN with ``--dropna``: positions in the rows kept, "rows [53,
    3, 32, 0, 70]", were read as the file's rows 60, 5, 37, 1 and 81)."""
    default = isinstance(row_index, pd.RangeIndex) and row_index.start == 0 and row_index.step == 1
    if row_index is None or default or len(row_index) <= max(positions, default=0):
        return f"rows {positions} (positions from 0)"
    labels = [v if isinstance(v, int | str) else str(v) for v in row_index[positions].tolist()]
    return f"rows {labels} ({row_index.name or 'the index'})"


def _size_text(size: float, minimum: int) -> str:
    """An effective size to three significant digits, with as many more as it takes not to
    read as the minimum it falls short of (6.99999997 is not "7 (minimum 7)")."""
    text = f"{size:.3g}"
    return f"{size:.10g}" if size < minimum <= float(text) else text


def _smallest_relative_variance(
    covariances: np.ndarray, layout: str, variances: np.ndarray
) -> np.ndarray:
    """Per block of ``covariances`` (in ``layout``): its smallest variance in any direction, in
    units of the features' ``variances`` (their mean for a spherical block), as
    :func:`bayesgmm._gaussian.floor_reached` measures it."""
    blocks = _fastem._as_blocks(covariances, layout)
    if blocks.shape[2] == 1:
        scale = variances.mean() if blocks.shape[1] == 1 else variances
        return (blocks[:, :, 0] / scale).min(axis=1)
    root = np.sqrt(variances)
    return np.linalg.eigvalsh(blocks / root[:, None] / root[None, :]).min(axis=1)
