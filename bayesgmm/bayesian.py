"""``BayesianGMM``: the common path (EM, model, NUTS from EM, relabelling) in one object.

Every step stays callable on its own: :class:`~bayesgmm.EMGaussianMixture`,
:func:`~bayesgmm.build_model`, :func:`~bayesgmm.sample_posterior`,
:func:`~bayesgmm.posterior_membership`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ._validation import check_choice, check_matrix
from .compare import compare, compare_mixture
from .diagnostics import diagnostics, scalar_parameters, summarise
from .em import EMGaussianMixture
from .membership import co_clustering, posterior_membership
from .model import BAYES_COVARIANCE_TYPES, build_model
from .priors import GMMPriors
from .sampling import SAMPLERS, CompileCache, sample_posterior

__all__ = ["BayesianGMM"]


class BayesianGMM:
    """Bayesian Gaussian mixture sampled with NUTS from the EM estimate.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag"}
    priors : GMMPriors, optional
        Defaults to :meth:`GMMPriors.from_data` on the data given to :meth:`fit`.
    draws, tune, chains : int
        Draws kept per chain, tuning steps per chain, number of chains.
    sampler : {"nutpie", "pymc"}
        nutpie (default; faster) or PyMC's own NUTS. Both start every chain at EM.
    target_accept : float
    random_seed : int, optional
        Seeds EM and the sampler.
    em_n_init : int
        EM restarts when :meth:`fit` runs EM itself.
    progressbar : bool
    compile_cache : CompileCache, optional
        Shared compiled models (see :class:`~bayesgmm.sampling.CompileCache`).

    Attributes
    ----------
    em_ : EMGaussianMixture
        The EM fit every chain started from.
    model_ : pymc.Model
    idata_ : xarray.DataTree
        Relabelled posterior with ``log_likelihood``, ``observed_data`` and ``em`` groups.
    priors_ : GMMPriors
    feature_names_ : list of str

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
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        sampler: str = "nutpie",
        target_accept: float = 0.8,
        random_seed: int | None = None,
        em_n_init: int = 5,
        progressbar: bool = True,
        compile_cache: CompileCache | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.sampler = sampler
        self.target_accept = target_accept
        self.random_seed = random_seed
        self.em_n_init = em_n_init
        self.progressbar = progressbar
        self.compile_cache = compile_cache

    def _fit_em(self, X: np.ndarray, em: EMGaussianMixture | None) -> EMGaussianMixture:
        if em is None:
            return EMGaussianMixture(
                self.n_components,
                covariance_type=self.covariance_type,
                n_init=self.em_n_init,
                tol=1e-6,
                max_iter=1000,
                random_state=self.random_seed,
            ).fit(X)
        if not hasattr(em, "means_"):
            raise ValueError("em must be a fitted EMGaussianMixture: call em.fit(X) first.")
        if em.n_components != self.n_components or em.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"em has {em.n_components} components and {em.n_features_in_} features; "
                f"expected {self.n_components} components and {X.shape[1]} features."
            )
        return em

    def fit(self, X: Any, em: EMGaussianMixture | None = None) -> BayesianGMM:
        """Run EM (unless a fitted ``em`` is given), build the model and sample from EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        em : EMGaussianMixture, optional
            A fit on the same data with ``n_components`` components.

        Returns
        -------
        self : BayesianGMM
        """
        check_choice("covariance_type", self.covariance_type, BAYES_COVARIANCE_TYPES)
        check_choice("sampler", self.sampler, SAMPLERS)
        data, names = check_matrix(X, n_components=self.n_components)
        frame = pd.DataFrame(data, columns=names)
        self.feature_names_ = names
        self.priors_ = self.priors or GMMPriors.from_data(data)
        self.em_ = self._fit_em(frame if isinstance(X, pd.DataFrame) else data, em)
        self.model_ = build_model(
            frame, self.n_components, priors=self.priors_, covariance_type=self.covariance_type
        )
        self.idata_ = sample_posterior(
            self.model_,
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
        )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "idata_"):
            raise ValueError("This BayesianGMM is not fitted yet: call fit(X) first.")

    def diagnostics(self) -> pd.DataFrame:
        """Convergence checks (divergences, R-hat, ESS, E-BFMI) with gates and advice."""
        self._check_fitted()
        return diagnostics(self.idata_)

    def membership(self, X: Any = None, *, hdi_prob: float = 0.94) -> xr.Dataset:
        """Posterior membership probabilities with HDIs and entropy (see
        :func:`~bayesgmm.posterior_membership`); defaults to the training data."""
        self._check_fitted()
        return posterior_membership(self.idata_, self._rows(X), hdi_prob=hdi_prob)

    def predict_proba(
        self, X: Any = None, *, return_interval: bool = False, hdi_prob: float = 0.94
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior mean membership probabilities, ``(n_samples, n_components)``.

        With ``return_interval=True`` also the lower and upper HDI bounds.
        """
        m = self.membership(X, hdi_prob=hdi_prob)
        if return_interval:
            return m["probability"].values, m["hdi_low"].values, m["hdi_high"].values
        return m["probability"].values

    def predict(self, X: Any = None) -> np.ndarray:
        """Most probable component under the posterior mean membership."""
        return self.predict_proba(X).argmax(axis=1)

    def co_clustering(self, X: Any = None, *, max_samples: int = 5000) -> xr.DataArray:
        """Posterior probability that two observations share a component."""
        self._check_fitted()
        return co_clustering(self.idata_, self._rows(X), max_samples=max_samples)

    def _rows(self, X: Any) -> np.ndarray | None:
        if X is None:
            return None
        data = np.asarray(X, dtype=float)
        if data.ndim != 2 or data.shape[1] != len(self.feature_names_):
            raise ValueError(
                f"X must have shape (n_samples, {len(self.feature_names_)}), got {data.shape}."
            )
        if not np.all(np.isfinite(data)):
            raise ValueError("X contains NaN or infinity: drop or impute those rows.")
        return data

    def __repr__(self) -> str:
        return (
            f"BayesianGMM(n_components={self.n_components}, covariance_type="
            f"{self.covariance_type!r}, sampler={self.sampler!r}, draws={self.draws}, "
            f"tune={self.tune}, chains={self.chains})"
        )

    def compare(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """EM estimates against posterior summaries (see :func:`bayesgmm.compare`)."""
        self._check_fitted()
        return compare(self.em_, self.idata_, hdi_prob=hdi_prob)

    def compare_mixture(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Mixture-level EM/posterior agreement (see :func:`bayesgmm.compare_mixture`)."""
        self._check_fitted()
        return compare_mixture(self.em_, self.idata_, hdi_prob=hdi_prob)

    def summary(self, *, hdi_prob: float = 0.94) -> pd.DataFrame:
        """ArviZ summary of weights, means and covariances (relabelled draws).

        Each covariance matrix contributes its lower triangle (the upper one repeats it).
        """
        self._check_fitted()
        names = ("weights", "means", "covariances")
        parameters = scalar_parameters(self.idata_.posterior, names)
        return summarise(parameters, hdi_prob=hdi_prob)
