"""``BayesianGMM``: the common path (EM, model, NUTS from EM, relabelling) in one object.

Every step stays callable on its own: :class:`~bayesgmm.EMGaussianMixture`,
:func:`~bayesgmm.build_model`, :func:`~bayesgmm.sample_posterior`,
:func:`~bayesgmm.posterior_membership`. ``BayesianGMM`` is a scikit-learn estimator
(``get_params``, ``set_params``, ``clone``); a fitted one pickles, and :meth:`BayesianGMM.save`
and :meth:`BayesianGMM.load` keep it in one netCDF file.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.base import BaseEstimator

from ._errors import from_below, warn
from ._fitwarnings import refuse_too_few_rows, warn_collapse_on_ties, warn_many_parameters
from ._idata import get_attr
from ._missing import drop_empty_rows, empty_rows
from ._persist import read_fit, restore_em, write_fit
from ._units import scaling_of
from ._validation import (
    check_choice,
    check_data,
    check_matrix,
    check_sample_weight,
)
from .compare import compare, compare_mixture
from .diagnostics import SamplingWarning, diagnostics, summarise_in_units
from .em import EMGaussianMixture
from .imputation import posterior_imputation
from .membership import co_clustering, posterior_membership
from .model import BAYES_COVARIANCE_TYPES, build_model, default_priors
from .modes import distinct_optima, mode_posterior, mode_table
from .priors import DEFAULT_SD_PRIOR, SD_PRIORS, GMMPriors
from .sampling import SAMPLERS, CompileCache, sample_posterior

__all__ = ["BayesianGMM"]


def _check_integer(name: str, value: Any, low: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


class BayesianGMM(BaseEstimator):
    """Bayesian Gaussian mixture sampled with NUTS from the EM estimate.

    Parameters
    ----------
    n_components : int
    covariance_type : str
        The covariance model, for EM and the Bayesian mixture alike: ``"full"`` (VVV),
        ``"tied"`` (EEE), ``"diag"`` (VVI), ``"spherical"`` (VII), or mclust's ``"VVV"``,
        ``"EEE"``, ``"VVI"``, ``"EEI"``, ``"VII"``, ``"EII"`` (priors in
        :mod:`bayesgmm._families`).
    priors : GMMPriors, optional
        Defaults to :meth:`GMMPriors.from_data` on the data given to :meth:`fit`, with
        ``sd_prior``.
    sd_prior : {"halfnormal", "inverse_gamma", "resolution"}, optional
        The standard deviations' prior of the default priors (:class:`GMMPriors`); only with
        ``priors=None``. Unset, ``"resolution"`` (:data:`bayesgmm.priors.DEFAULT_SD_PRIOR`):
        the HalfNormal with each variance bounded below at the rounding noise of features with
        tied values (the HalfNormal exactly where no value ties), and with full or tied
        covariances each variance given the other features too, where rows share values on
        two features.
    draws, tune, chains : int
        Draws kept per chain, tuning steps per chain, number of chains; ``tune=None``
        (default) lets :func:`bayesgmm.sample_posterior` choose (300 on whitened parameters,
        else 1000).
    sampler : {"nutpie", "pymc"}
        nutpie (default; faster) or PyMC's own NUTS. Both start every chain at EM.
    target_accept : float, optional
        None (default): 0.8, or 0.9 on an ill-conditioned posterior (see
        :func:`~bayesgmm.sample_posterior`); after divergences the follow-up runs use 0.95,
        then 0.99.
    random_seed : int, optional
        Seeds EM and the sampler.
    em_n_init : int
        EM restarts when :meth:`fit` runs EM itself.
    em_reg_covar : float
        EM's covariance floor (a fraction of each feature's variance) when :meth:`fit` runs EM
        itself; raise it when EM reports a collapsed component.
    max_starts : int
        The chains start round robin from up to this many distinct EM optima within 5 nats
        of the best (:func:`bayesgmm.modes.distinct_optima`, from ``em_n_init`` further
        restarts; an EM fit given to :meth:`fit` stays the first); 1 starts every chain at
        the EM estimate. Chains that end in different modes are reported either way
        (:meth:`modes`).
    progressbar : bool
    compile_cache : CompileCache, optional
        Shared compiled models (see :class:`~bayesgmm.sampling.CompileCache`).
    precondition : {"laplace", "none"}
        Whiten by the curvature at the posterior mode, or not (see
        :func:`~bayesgmm.sample_posterior`).
    max_draws : int, optional
        The most draws per chain follow-up runs may bring the run to, when it falls short of
        the R-hat or ESS gates in one mode, or when its chains ended in several modes not
        each converged (see :func:`~bayesgmm.sample_posterior`); None (default):
        ``4 * draws``; ``max_draws=draws`` turns follow-up runs off.

    Attributes
    ----------
    em_ : EMGaussianMixture
        The best EM optimum, the reference of the results (after :meth:`load`, EM at the
        saved estimate).
    starts_ : list of EMGaussianMixture
        The other distinct EM optima chains started from (empty when there were none; an
        optimum where sampling cannot start is left out, and named in the posterior's
        ``starts_dropped`` attr).
    model_ : pymc.Model
        Built on first access after unpickling or :meth:`load`.
    idata_ : xarray.DataTree
        Relabelled posterior with ``log_likelihood``, ``observed_data`` and ``em`` groups.
    priors_ : GMMPriors
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names; new data given to the
        methods must then have the same columns in the same order.
    feature_names_ : list of str
        The feature coordinate of the results (the columns, or ``x0, x1, ...``).

    Examples
    --------
    >>> from bayesgmm import BayesianGMM
    >>> from bayesgmm.datasets import load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> bgmm.diagnostics()  # doctest: +SKIP
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        covariance_type: str = "full",
        priors: GMMPriors | None = None,
        sd_prior: str | None = None,
        draws: int = 1000,
        tune: int | None = None,
        chains: int = 4,
        sampler: str = "nutpie",
        target_accept: float | None = None,
        random_seed: int | None = None,
        em_n_init: int = 5,
        em_reg_covar: float = 1e-6,
        max_starts: int = 4,
        progressbar: bool = True,
        compile_cache: CompileCache | None = None,
        precondition: str = "laplace",
        max_draws: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.sd_prior = sd_prior
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.sampler = sampler
        self.target_accept = target_accept
        self.random_seed = random_seed
        self.em_n_init = em_n_init
        self.em_reg_covar = em_reg_covar
        self.max_starts = max_starts
        self.progressbar = progressbar
        self.compile_cache = compile_cache
        self.precondition = precondition
        self.max_draws = max_draws

    def _fit_em(
        self, X: np.ndarray, em: EMGaussianMixture | None, sample_weight: np.ndarray | None
    ) -> EMGaussianMixture:
        if em is None:
            return EMGaussianMixture(
                self.n_components,
                covariance_type=self.covariance_type,
                n_init=self.em_n_init,
                reg_covar=self.em_reg_covar,
                tol=1e-6,
                max_iter=1000,
                random_state=self.random_seed,
            ).fit(X, sample_weight=sample_weight)
        if not hasattr(em, "means_"):
            raise ValueError("em must be a fitted EMGaussianMixture: call em.fit(X) first.")
        if em.n_components != self.n_components or em.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"em has {em.n_components} components and {em.n_features_in_} features; "
                f"expected {self.n_components} components and {X.shape[1]} features."
            )
        return em

    def _check_parameters(self) -> None:
        """Every parameter, with a message that names it (before any work)."""
        _check_integer("n_components", self.n_components, 1)
        check_choice("covariance_type", self.covariance_type, BAYES_COVARIANCE_TYPES)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("precondition", self.precondition, ("laplace", "none"))
        if self.sd_prior is not None:
            check_choice("sd_prior", self.sd_prior, SD_PRIORS)
        if self.priors is not None and self.sd_prior is not None:
            raise ValueError(
                f"sd_prior={self.sd_prior!r} sets the default priors; with priors= given, set "
                "it there: GMMPriors.from_data(X, sd_prior=...)."
            )
        if self.priors is not None and not isinstance(self.priors, GMMPriors):
            raise ValueError(
                f"priors must be a GMMPriors or None, got {type(self.priors).__name__}: "
                "e.g. GMMPriors.from_data(X, lkj_eta=4.0)."
            )
        for name, low in (
            ("draws", 1),
            ("tune", 0),
            ("chains", 1),
            ("em_n_init", 1),
            ("max_starts", 1),
        ):
            if name != "tune" or self.tune is not None:
                _check_integer(name, getattr(self, name), low)
        if self.max_draws is not None:
            _check_integer("max_draws", self.max_draws, self.draws)
        if self.random_seed is not None:
            _check_integer("random_seed", self.random_seed, 0)
        reg = self.em_reg_covar
        if not isinstance(reg, numbers.Real) or not 0 <= reg < np.inf:
            raise ValueError(f"em_reg_covar must be a finite number >= 0, got {reg!r}.")
        accept = self.target_accept
        if accept is not None and (not isinstance(accept, numbers.Real) or not 0 < accept < 1):
            raise ValueError(f"target_accept must be a number in (0, 1), got {accept!r}.")
        if self.compile_cache is not None and not isinstance(self.compile_cache, CompileCache):
            raise ValueError("compile_cache must be a bayesgmm.CompileCache or None.")

    def fit(
        self, X: Any, em: EMGaussianMixture | None = None, sample_weight: Any = None
    ) -> BayesianGMM:
        """Run EM (unless a fitted ``em`` is given), build the model and sample from EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN cells are missing values (missing at random): every row is used, through the
            density of its observed entries, in EM and in the posterior alike. Rows with
            every cell missing are left out with a warning; infinity is an error.
        em : EMGaussianMixture, optional
            A fit on the same data (and weights) with ``n_components`` components.
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights: each row's log-likelihood term counts this many times (integer
            weights give the posterior of the repeated rows).

        Returns
        -------
        self : BayesianGMM
        """
        self._check_parameters()
        data, names = check_matrix(
            X, n_components=self.n_components, estimator=self, allow_nan=True
        )
        weight = check_sample_weight(sample_weight, data.shape[0], self.n_components, data, self)
        index = X.index[~empty_rows(data)] if isinstance(X, pd.DataFrame) else None
        data, weight = drop_empty_rows(data, weight)  # one warning, not EM's too
        refuse_too_few_rows(
            data.shape[0] if weight is None else int(np.count_nonzero(weight)),
            self.n_components,
            data.shape[1],
            self.covariance_type,
        )
        frame = pd.DataFrame(data, columns=names, index=index)  # (EM names rows by it)
        self.feature_names_ = names
        self.priors_ = self.priors or default_priors(
            data,
            weight,
            sd_prior=self.sd_prior or DEFAULT_SD_PRIOR,
            n_components=self.n_components,
        )
        n_rows = data.shape[0] if weight is None else float(np.sum(weight))
        warn_many_parameters(n_rows, self.n_components, data.shape[1], self.covariance_type)
        em_data = frame if isinstance(X, pd.DataFrame) else data  # EM knows the columns
        with from_below("EM"):
            self.em_ = self._fit_em(em_data, em, weight)
            self.starts_ = self._other_optima(em_data, keep_em=em is not None, weight=weight)
        warn_collapse_on_ties(
            data,
            self.em_,
            names,
            priors=self.priors_,
            covariance_type=self.covariance_type,
            sample_weight=weight,
        )
        self._model = build_model(
            frame,
            self.n_components,
            priors=self.priors_,
            covariance_type=self.covariance_type,
            sample_weight=weight,
        )
        self.idata_ = sample_posterior(
            self._model,
            self.em_,
            draws=self.draws,
            tune=self.tune,
            chains=self.chains,
            sampler=self.sampler,
            random_seed=self.random_seed,
            target_accept=self.target_accept,
            progressbar=self.progressbar,
            priors=self.priors_,
            compile_cache=self.compile_cache,
            starts=self.starts_,
            precondition=self.precondition,
            max_draws=self.max_draws,
        )
        dropped = {index for index, _ in get_attr(self.idata_, "starts_dropped", default=[])}
        self.starts_ = [s for i, s in enumerate(self.starts_) if i not in dropped]
        return self

    def _other_optima(
        self, data: Any, *, keep_em: bool, weight: np.ndarray | None = None
    ) -> list[EMGaussianMixture]:
        """Distinct EM optima close to the best, other than ``em_`` (see
        :func:`bayesgmm.modes.distinct_optima`); the best becomes ``em_`` unless ``keep_em``
        (an EM fit given to :meth:`fit` stays the reference)."""
        if min(self.max_starts, self.chains) < 2:
            return []
        optima = distinct_optima(
            data,
            self.n_components,
            covariance_type=self.covariance_type,
            n_restarts=self.em_n_init,
            max_optima=min(self.max_starts, self.chains),
            random_state=self.random_seed,
            best=self.em_,
            sample_weight=weight,
            reg_covar=self.em_reg_covar,
            tol=1e-6,
            max_iter=1000,
        )
        if not keep_em:
            self.em_ = optima[0]
        others = [o for o in optima if o is not self.em_]
        return others[: min(self.max_starts, self.chains) - 1]

    def modes(self) -> pd.DataFrame:
        """The modes the chains ended in, with stacking weights (see
        :func:`bayesgmm.modes.mode_table`)."""
        self._check_fitted()
        return mode_table(self.idata_)

    @property
    def model_(self) -> Any:
        """The PyMC model of the fit (rebuilt from the observed data when it was dropped by
        pickling or never loaded)."""
        self._check_fitted()
        if getattr(self, "_model", None) is None:
            observed = self.idata_.observed_data
            weight = observed.get("sample_weight")
            self._model = build_model(
                pd.DataFrame(observed["obs"].values, columns=self.feature_names_),
                self.n_components,
                priors=self.priors_,
                covariance_type=self.covariance_type,
                sample_weight=None if weight is None else weight.values,
            )
        return self._model

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the PyMC model (it holds compiled functions); it is rebuilt on
        first use of :attr:`model_`. The state is a copy: on Python >= 3.11 scikit-learn's
        returns the instance's own ``__dict__``, and popping from it dropped the model of
        the fit being pickled."""
        state = dict(super().__getstate__())
        state.pop("_model", None)
        return state

    def save(self, path: str | os.PathLike) -> None:
        """Save the fit to one netCDF file (replaced whole; see :meth:`load`).

        Examples
        --------
        >>> fit.save("faithful_k2.nc")  # doctest: +SKIP
        >>> BayesianGMM.load("faithful_k2.nc").predict(new_rows)  # doctest: +SKIP
        """
        self._check_fitted()
        write_fit(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BayesianGMM:
        """A fit saved by :meth:`save`, ready to ``predict``, ``membership``, ``compare``,
        ``summary`` and ``diagnostics`` without sampling again (``compile_cache`` is not
        saved)."""
        tree, saved = read_fit(path)
        params = dict(saved["params"])
        if params.get("priors") is not None:
            params["priors"] = GMMPriors.from_json(params["priors"])
        fit = cls(**params)
        fit.idata_ = tree
        fit.priors_ = GMMPriors.from_json(saved["priors"])
        fit.feature_names_ = [str(v) for v in tree.posterior["feature"].values]
        fit.n_features_in_ = len(fit.feature_names_)
        if saved["feature_names_in"] is not None:
            fit.feature_names_in_ = np.asarray(saved["feature_names_in"], dtype=object)
        fit.em_ = restore_em(tree, saved["feature_names_in"])
        fit.starts_ = []  # the other optima are not saved; the modes they led to are
        return fit

    def _check_fitted(self) -> None:
        if not hasattr(self, "idata_"):
            raise ValueError("This BayesianGMM is not fitted yet: call fit(X) first.")

    def diagnostics(self) -> pd.DataFrame:
        """Convergence checks (divergences, R-hat, ESS, E-BFMI) with gates and advice."""
        self._check_fitted()
        return diagnostics(self.idata_)

    def membership(
        self, X: Any = None, *, hdi_prob: float = 0.94, mode: int | None = None
    ) -> xr.Dataset:
        """Posterior membership probabilities with HDIs and entropy (see
        :func:`~bayesgmm.posterior_membership`); defaults to the training data.

        ``mode`` classifies with the draws of one mode (:meth:`modes`). Modes label their
        components each their own way (draws are relabelled within each mode), so over a run
        whose chains ended in several modes the memberships of all draws mix unrelated labels:
        that warns, and names ``mode=``.
        """
        self._check_fitted()
        if mode is None:
            self._warn_if_modes("membership", "membership(mode=m) or predict(mode=m)")
        return posterior_membership(self._mode_tree(mode), self._rows(X), hdi_prob=hdi_prob)

    def predict_proba(
        self,
        X: Any = None,
        *,
        return_interval: bool = False,
        hdi_prob: float = 0.94,
        mode: int | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior mean membership probabilities, ``(n_samples, n_components)``.

        With ``return_interval=True`` also the lower and upper HDI bounds; ``mode`` as in
        :meth:`membership`.
        """
        m = self.membership(X, hdi_prob=hdi_prob, mode=mode)
        if return_interval:
            return m["probability"].values, m["hdi_low"].values, m["hdi_high"].values
        return m["probability"].values

    def predict(self, X: Any = None, *, mode: int | None = None) -> np.ndarray:
        """Most probable component under the posterior mean membership (``mode`` as in
        :meth:`membership`)."""
        return self.predict_proba(X, mode=mode).argmax(axis=1)

    def co_clustering(
        self, X: Any = None, *, max_samples: int = 5000, mode: int | None = None
    ) -> xr.DataArray:
        """Posterior probability that two observations share a component.

        It does not depend on the labels, so over several modes it is each mode's matrix
        weighted by the mode's stacking weight (:meth:`modes`; Yao, Vehtari & Gelman 2022:
        the stacked posterior of chains that do not mix), not by how many chains each mode
        happened to get; where the weights could not be computed, all draws count alike.
        ``mode`` gives one mode's.
        """
        self._check_fitted()
        rows = self._rows(X)
        table = self.modes() if mode is None else None
        if table is None or len(table) == 1 or table["stacking_weight"].isna().any():
            return co_clustering(self._mode_tree(mode), rows, max_samples=max_samples)
        parts = [
            weight * co_clustering(self._mode_tree(m), rows, max_samples=max_samples)
            for m, weight in zip(table["mode"], table["stacking_weight"], strict=True)
        ]
        return sum(parts[1:], parts[0])

    def _mode_tree(self, mode: int | None) -> Any:
        """All draws, or those of one mode."""
        return self.idata_ if mode is None else mode_posterior(self.idata_, mode)

    def _rows(self, X: Any) -> np.ndarray | None:
        """New data checked against the fit, as scikit-learn checks it: the number of
        features, and the column names and their order when fitted on a DataFrame. NaN cells
        are missing values (a row is classified by its observed entries)."""
        return None if X is None else check_data(self, X, reset=False, allow_nan=True)

    def _warn_if_modes(self, what: str, remedy: str) -> None:
        """Say so when a summary over all chains averages over several modes."""
        n_modes = int(self.idata_.posterior.attrs.get("n_modes", 1))
        if n_modes > 1:
            warn(
                f"These draws come from {n_modes} different modes: the {what} averages over "
                f"them. Use {remedy} (modes() lists them).",
                SamplingWarning,
            )

    def compare(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """EM estimates against posterior summaries (see :func:`bayesgmm.compare`)."""
        self._check_fitted()
        self._warn_if_modes("comparison", "bayesgmm.modes.mode_posterior(idata_, m)")
        return compare(None, self.idata_, hdi_prob=hdi_prob)

    def compare_mixture(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Mixture-level EM/posterior agreement (see :func:`bayesgmm.compare_mixture`); its
        label agreement and adjusted Rand index come from the memberships, so over several
        modes they mix each mode's labels, which warns as :meth:`compare` does."""
        self._check_fitted()
        self._warn_if_modes(
            "mixture comparison (its label agreement and ARI, from memberships)",
            "bayesgmm.modes.mode_posterior(idata_, m)",
        )
        return compare_mixture(None, self.idata_, hdi_prob=hdi_prob)

    def summary(self, *, hdi_prob: float = 0.94, mode: int | None = None) -> pd.DataFrame:
        """ArviZ summary of weights, means and covariances (relabelled draws).

        Each covariance matrix contributes its lower triangle (the upper one repeats it), a
        diagonal one (``diag``, ``spherical``, ...) its variances.
        ``mode`` summarises the chains of one mode (:meth:`modes`); without it, a run whose
        chains ended in several modes is summarised over all of them, with a
        :class:`~bayesgmm.SamplingWarning` saying so.
        """
        self._check_fitted()
        tree = self._mode_tree(mode)
        if mode is None:
            self._warn_if_modes("summary", "summary(mode=m) for each mode")
        names = ("weights", "means", "covariances")
        table = summarise_in_units(
            tree.posterior.to_dataset(), names, scaling_of(tree), hdi_prob=hdi_prob
        )
        return table.drop(columns="median")

    def impute(self, X: Any = None, *, prob: float = 0.9, random_seed: Any = None) -> xr.Dataset:
        """Posterior predictive mean, sd and central ``prob`` interval of every missing cell.

        See :func:`bayesgmm.imputation.posterior_imputation` (one row per missing cell; rows
        with nothing missing are absent, and complete data give an empty result).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), optional
            Rows with missing cells as NaN, checked against the fit as in :meth:`predict`;
            defaults to the training data as fitted (rows with nothing observed were left
            out, so ``row`` then counts the fitted rows; pass ``X`` to keep its numbering).
        prob : float
            Probability of the equal-tailed interval.
        random_seed : int or numpy.random.Generator, optional
            Seeds the predictive draws behind the interval.

        Returns
        -------
        xarray.Dataset
            ``mean``, ``sd``, ``low``, ``high`` over ``cell``, with coordinates ``row`` and
            ``feature``; ``.to_dataframe()`` gives the table.

        Examples
        --------
        >>> cells = fit.impute(X_with_nan, prob=0.9, random_seed=0)  # doctest: +SKIP
        >>> cells.to_dataframe().set_index(["row", "feature"])  # doctest: +SKIP
        """
        self._check_fitted()
        rows = None if X is None else check_data(self, X, reset=False, allow_nan=True)
        return posterior_imputation(self.idata_, rows, prob=prob, random_seed=random_seed)
