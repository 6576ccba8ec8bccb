"""Classic EM for Gaussian mixtures, as a scikit-learn estimator.

The algorithm lives once in :class:`EMGaussianMixture`: restarts, the convergence loop, keeping
the best run, the convergence warning and a last E-step so that ``fit_predict(X)`` equals
``fit(X).predict(X)``. The Gaussian math is in :mod:`bayesgmm._gaussian`.

EM works on standardised data (:mod:`bayesgmm._scaling`); fitted attributes are reported in the
user's units.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _gaussian as g
from ._scaling import AffineScaling
from ._validation import check_choice, check_data, check_fit_data

__all__ = ["CollapsedComponentWarning", "EMGaussianMixture"]

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")
_CHUNK_ELEMENTS = 2**19  # rows x components x features held at once in the E-step


class CollapsedComponentWarning(UserWarning):
    """A fitted component has too few points or a covariance at the ``reg_covar`` floor."""


@dataclass
class _Params:
    """Mixture parameters on the unit scale."""

    weights: np.ndarray
    means: np.ndarray
    precisions_chol: np.ndarray
    covariances: np.ndarray


@dataclass
class _Run:
    params: _Params
    lower_bound: float = -np.inf
    trace: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


class EMGaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by expectation-maximisation.

    Same parameters, fitted attributes and methods as scikit-learn's ``GaussianMixture`` where
    the names agree, plus ICL, the log-likelihood trace and a report of collapsed components.
    EM works on standardised features, so the fit does not depend on the data's units.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Covariance family: one full matrix per component, one shared full matrix, diagonal
        matrices, or one variance per component.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood per sample.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, **as a fraction of each feature's variance**
        (of the mean variance for spherical covariances). scikit-learn adds it in absolute units;
        the two agree on standardised data. The relative form keeps the fit invariant to units.
    max_iter : int, default=100
        Maximum EM iterations per initialisation.
    n_init : int, default=1
        Number of initialisations; the one with the highest log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How initial responsibilities are chosen, as in scikit-learn.
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Initial precisions (inverse covariances) in the shape of ``covariance_type``:
        ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag, ``(K,)`` spherical.
    random_state : int, RandomState instance or None, default=None
        Seed for the initialisation and for :meth:`sample`.
    chunk_size : int or None, default=None
        Rows per block in the E-step; ``None`` picks a block of about 4 MB of working memory.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        In the shape of ``covariance_type``.
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
    collapsed_components_ : ndarray of int
        Components whose effective size is below the minimum of their family (``n_features + 1``
        for full covariances, 1 for tied, 2 otherwise) or whose covariance is at the
        ``reg_covar`` floor. A :class:`CollapsedComponentWarning` names them.
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
        check_choice("covariance_type", self.covariance_type, g.COVARIANCE_TYPES)
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
            shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
            p = _as_float_array(
                "precisions_init", self.precisions_init, shape[self.covariance_type]
            )
            if self.covariance_type in ("full", "tied"):
                if not np.allclose(p, np.swapaxes(p, -1, -2)):
                    raise ValueError("precisions_init must hold symmetric matrices.")
                try:
                    chol = g.precision_cholesky_from_precisions(p, self.covariance_type)
                except g.SingularCovarianceError as err:
                    raise ValueError("precisions_init must be positive definite.") from err
            elif np.any(p <= 0):
                raise ValueError("precisions_init must be strictly positive.")
            else:
                chol = g.precision_cholesky_from_precisions(p, self.covariance_type)
            out["precisions_chol"] = chol
        return out

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> EMGaussianMixture:
        """Fit the mixture by EM (``n_init`` restarts, best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : EMGaussianMixture
        """
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit the mixture and return the most probable component of every sample.

        The labels come from a last E-step with the final parameters, so they equal
        ``fit(X).predict(X)``.
        """
        self._check_parameters()
        X = check_fit_data(self, X, self.n_components)
        initial = self._check_initial_values(X.shape[1])
        scaling = AffineScaling.fit(X, isotropic=self.covariance_type == "spherical")
        Xu = scaling.transform(X)
        random_state = check_random_state(self.random_state)
        best: _Run | None = None
        for _ in range(self.n_init):
            run = self._run_em(Xu, self._initial_params(Xu, random_state, scaling, initial))
            if best is None or run.lower_bound > best.lower_bound:
                best = run
        self._store(best, scaling)
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                f"EM did not converge within max_iter={self.max_iter} iterations "
                f"(tol={self.tol}) in the best of n_init={self.n_init} initialisation(s). "
                "Increase max_iter, raise tol, try more restarts (n_init) or another "
                "init_params, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        log_resp = self._log_resp_unit(Xu)
        self._report_collapse(np.exp(log_resp).sum(axis=0))
        return log_resp.argmax(axis=1)

    def _initial_params(
        self,
        Xu: np.ndarray,
        random_state: np.random.RandomState,
        scaling: AffineScaling,
        initial: dict[str, np.ndarray],
    ) -> _Params:
        n_features = Xu.shape[1]
        weights = means = covariances = None
        if len(initial) < 3:
            resp = self._initial_resp(Xu, random_state)
            stats = g.weighted_statistics(
                Xu, resp, np.zeros((self.n_components, n_features)), self.covariance_type
            )
            weights, means, covariances = g.m_step(stats, self.reg_covar, self.covariance_type)
        if "weights" in initial:
            weights = initial["weights"]
        if "means" in initial:
            means = scaling.means_to_unit(initial["means"])
        if "precisions_chol" in initial:
            chol = scaling.precisions_cholesky_to_unit(
                initial["precisions_chol"], self.covariance_type
            )
            covariances = g.covariances_from_precision_cholesky(chol, self.covariance_type)
        else:
            chol = g.precision_cholesky(covariances, self.covariance_type)
        return _Params(weights, means, chol, covariances)

    def _initial_resp(self, Xu: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
        n_samples, k = Xu.shape[0], self.n_components
        resp = np.zeros((n_samples, k))
        if self.init_params == "kmeans":
            labels = KMeans(n_clusters=k, n_init=1, random_state=random_state).fit(Xu).labels_
            resp[np.arange(n_samples), labels] = 1.0
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n_samples, k))
            resp /= resp.sum(axis=1, keepdims=True)
        elif self.init_params == "random_from_data":
            resp[random_state.choice(n_samples, size=k, replace=False), np.arange(k)] = 1.0
        else:  # k-means++
            _, indices = kmeans_plusplus(Xu, k, random_state=random_state)
            resp[indices, np.arange(k)] = 1.0
        return resp

    def _run_em(self, Xu: np.ndarray, params: _Params) -> _Run:
        run = _Run(params)
        for n_iter in range(1, self.max_iter + 1):
            stats = self._statistics(Xu, run.params)
            previous = run.lower_bound
            run.lower_bound = stats.log_likelihood / stats.n_samples
            run.trace.append(run.lower_bound)
            weights, means, covariances = g.m_step(stats, self.reg_covar, self.covariance_type)
            chol = g.precision_cholesky(covariances, self.covariance_type)
            run.params = _Params(weights, means, chol, covariances)
            run.n_iter = n_iter
            if abs(run.lower_bound - previous) < self.tol:
                run.converged = True
                break
        return run

    def _chunks(self, n_samples: int) -> list[slice]:
        size = self.chunk_size or max(
            256, _CHUNK_ELEMENTS // (self.n_components * self.n_features_in_)
        )
        return [slice(start, start + size) for start in range(0, n_samples, size)]

    def _statistics(self, Xu: np.ndarray, params: _Params) -> g.MixtureStatistics:
        total = None
        for rows in self._chunks(Xu.shape[0]):
            stats = g.e_step_statistics(
                Xu[rows], params.weights, params.means, params.precisions_chol, self.covariance_type
            )
            total = stats if total is None else total + stats
        return total

    def _store(self, run: _Run, scaling: AffineScaling) -> None:
        cov_type = self.covariance_type
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

    def _unit_params(self) -> _Params:
        s = self._scaling
        chol = s.precisions_cholesky_to_unit(self.precisions_cholesky_, self.covariance_type)
        cov = g.covariances_from_precision_cholesky(chol, self.covariance_type)
        return _Params(self.weights_, s.means_to_unit(self.means_), chol, cov)

    def _report_collapse(self, effective_sizes: np.ndarray) -> None:
        d = self.n_features_in_
        minimum = {"full": d + 1, "tied": 1, "diag": 2, "spherical": 2}[self.covariance_type]
        p = self._unit_params()
        floor = 2.0 * self.reg_covar + 1e-12
        if self.covariance_type == "full":
            smallest = np.array([np.linalg.eigvalsh(c)[0] for c in p.covariances])
        elif self.covariance_type == "tied":
            smallest = np.full(self.n_components, np.linalg.eigvalsh(p.covariances)[0])
        elif self.covariance_type == "diag":
            smallest = p.covariances.min(axis=1)
        else:
            smallest = p.covariances
        collapsed = (effective_sizes < minimum) | (smallest <= floor)
        self.collapsed_components_ = np.flatnonzero(collapsed)
        if self.collapsed_components_.size:
            details = "; ".join(
                f"component {k}: effective size {effective_sizes[k]:.3g}"
                + (", covariance at the reg_covar floor" if smallest[k] <= floor else "")
                for k in self.collapsed_components_
            )
            warnings.warn(
                f"Collapsed component(s) {self.collapsed_components_.tolist()} "
                f"(minimum effective size {minimum} for {self.covariance_type!r} covariances): "
                f"{details}. Their estimates are not trustworthy: reduce n_components, "
                "remove duplicate points, or increase reg_covar.",
                CollapsedComponentWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ prediction
    def _log_resp_unit(self, Xu: np.ndarray) -> np.ndarray:
        p = self._unit_params()
        out = np.empty((Xu.shape[0], self.n_components))
        for rows in self._chunks(Xu.shape[0]):
            _, out[rows] = g.log_responsibilities(
                Xu[rows], p.weights, p.means, p.precisions_chol, self.covariance_type
            )
        return out

    def _validated_unit(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._scaling.transform(check_data(self, X, reset=False))

    def score_samples(self, X: Any) -> np.ndarray:
        """Log density of the mixture at every sample, ``(n_samples,)``, in the user's units."""
        Xu = self._validated_unit(X)
        p = self._unit_params()
        out = np.empty(Xu.shape[0])
        for rows in self._chunks(Xu.shape[0]):
            out[rows], _ = g.log_responsibilities(
                Xu[rows], p.weights, p.means, p.precisions_chol, self.covariance_type
            )
        return out - self._scaling.log_jacobian

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities: the posterior probability of each component, ``(n_samples, K)``."""
        return np.exp(self._log_resp_unit(self._validated_unit(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of every sample."""
        return self._log_resp_unit(self._validated_unit(X)).argmax(axis=1)

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
        chol = g.covariance_cholesky(p.precisions_chol, self.covariance_type)
        d = self.n_features_in_
        blocks = []
        for k, count in enumerate(counts):
            z = rng.standard_normal((count, d))
            if self.covariance_type == "full":
                draw = z @ chol[k].T
            elif self.covariance_type == "tied":
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
        return g.n_parameters(self.n_components, self.n_features_in_, self.covariance_type)

    def bic(self, X: Any) -> float:
        """Bayesian information criterion, ``-2 log L + p log n`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X) * n + self.n_parameters() * np.log(n)

    def aic(self, X: Any) -> float:
        """Akaike information criterion, ``-2 log L + 2 p`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X) * n + 2.0 * self.n_parameters()

    def icl(self, X: Any) -> float:
        """Integrated completed likelihood in BIC's sign (lower is better).

        ``bic(X) - 2 sum_i log z_{i, c_i}``: BIC penalised by the entropy of the hard
        classification, so overlapping components cost more than under BIC.
        """
        log_resp = self._log_resp_unit(self._validated_unit(X))
        return self.bic(X) - 2.0 * float(log_resp.max(axis=1).sum())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _as_float_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return array
