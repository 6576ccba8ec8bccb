"""The fitter under test: the package's default path (EM, then NUTS from the EM start)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pymc as pm
import xarray as xr

from .._idata import get_group
from ..diagnostics import diagnostics
from ..em import EMGaussianMixture
from ..model import build_model
from ..priors import GMMPriors
from ..sampling import CompileCache, sample_posterior
from .simulation import DEFAULT_STUDY_PRIORS, _placeholder_data

EM_SETTINGS = {"n_init": 5, "tol": 1e-6, "max_iter": 1000}
"""EM as :class:`bayesgmm.BayesianGMM` runs it (the package's default path)."""


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings of every fit (per chain: ``tune`` warm-up steps, ``draws`` kept).

    ``tune`` and ``target_accept`` left at ``None`` are chosen per data set by the rules the
    package's default path uses (:func:`bayesgmm.sample_posterior`: a shorter warm-up on
    Laplace-whitened parameters, smaller steps on a narrow ridge), so the validation checks the
    path users run; set them to check a fixed setting instead.

    Examples
    --------
    >>> from bayesgmm.validation import SamplerSettings
    >>> SamplerSettings(draws=200, chains=4)
    SamplerSettings(draws=200, tune=None, chains=4, target_accept=None)
    """

    draws: int = 500
    tune: int | None = None
    chains: int = 2
    target_accept: float | None = None


@dataclass
class PosteriorFit:
    """One fit: the posterior (relabelled to EM), its diagnostics and how EM went.

    Attributes
    ----------
    posterior : xarray.Dataset
        With ``weights``, ``means`` and ``covariances`` over ``(chain, draw, component, ...)``.
    diagnostics : dict
        ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``min_bfmi`` and
        ``passed`` (every gate of :func:`bayesgmm.diagnostics` passed).
    em : dict
        ``warnings``: the warning classes EM raised (see :func:`fit_em`).

    Examples
    --------
    >>> import xarray as xr
    >>> from bayesgmm.validation import PosteriorFit
    >>> fit = PosteriorFit(xr.Dataset(), {"passed": True})  # what Fitter.fit returns
    >>> fit.diagnostics["passed"], fit.em
    (True, {})
    """

    posterior: xr.Dataset
    diagnostics: dict[str, Any]
    em: dict[str, Any] = field(default_factory=dict)


class FitterLike(Protocol):
    """Anything that fits one data set: :class:`Fitter`, or a stub in the tests."""

    def fit(self, X: np.ndarray, *, random_seed: int) -> PosteriorFit: ...


def fit_em(
    X: np.ndarray, n_components: int, *, random_seed: int
) -> tuple[EMGaussianMixture, dict[str, Any]]:
    """EM as the default path runs it, with the warnings it raised recorded.

    Parameters
    ----------
    X : ndarray of shape (N, D)
    n_components : int
    random_seed : int
        EM's ``random_state`` (its settings are :data:`EM_SETTINGS`).

    Returns
    -------
    em : EMGaussianMixture
    info : dict
        ``warnings``: names of the warning classes raised (e.g. ``CollapsedComponentWarning``
        when a component holds too few points, which small simulated data sets can cause).

    Examples
    --------
    >>> from bayesgmm.validation import FIXED_TRUTH, fit_em, simulate
    >>> X = simulate(FIXED_TRUTH, 100, random_seed=0).X
    >>> em, info = fit_em(X, 2, random_seed=0)
    >>> em.means_.round(1).tolist(), info
    ([[2.1, 0.8], [-2.1, -0.3]], {'warnings': []})
    >>> fit_em(X[:6], 3, random_seed=0)[1]  # three components on six rows
    {'warnings': ['CollapsedComponentWarning']}
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em = EMGaussianMixture(n_components, **EM_SETTINGS, random_state=random_seed).fit(X)
    return em, {"warnings": sorted({w.category.__name__ for w in caught})}


def sampler_diagnostics(idata: xr.DataTree) -> dict[str, Any]:
    """The worst value of every check of :func:`bayesgmm.diagnostics`, and whether all passed.

    Parameters
    ----------
    idata : xarray.DataTree
        With a ``posterior`` (any of ``weights``, ``means``, ``covariances``) and
        ``sample_stats`` (``diverging``; ``energy`` for E-BFMI, NaN without it).

    Returns
    -------
    dict
        ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``min_bfmi`` and
        ``passed``. ``divergences`` is None (and ``min_bfmi`` NaN) when the kept draws are
        independence Metropolis-Hastings draws (:mod:`bayesgmm._independence`): no
        trajectories to diverge, no energy.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> from bayesgmm.validation import sampler_diagnostics
    >>> weights = np.random.default_rng(0).dirichlet([50, 50], size=(2, 1000))  # iid draws
    >>> idata = az.from_dict({"posterior": {"weights": weights},
    ...                       "sample_stats": {"diverging": np.zeros((2, 1000), bool)}})
    >>> checks = sampler_diagnostics(idata)
    >>> checks["divergences"], checks["passed"]
    (0, True)
    """
    table = diagnostics(idata).set_index("check")
    value = table["value"]
    divergences = value["divergences"]  # NaN: draws without trajectories
    return {
        "max_r_hat": float(value["r_hat"]),
        "min_ess_bulk": float(value["ess_bulk"]),
        "min_ess_tail": float(value["ess_tail"]),
        "divergences": int(divergences) if np.isfinite(divergences) else None,
        "min_bfmi": float(value["bfmi"]),
        "passed": bool(table["passed"].all()),
    }


class Fitter:
    """The package's default path, built once: EM, then NUTS from the EM start.

    The PyMC model is built once; every :meth:`fit` swaps the data in with ``pm.set_data``
    (a compiled nutpie model, on the backends that compile one, is reused through one
    :class:`CompileCache`).

    Parameters
    ----------
    n_samples, n_features, n_components : int
        Shape of every data set and number of components.
    priors : GMMPriors
        The fitter's priors (:data:`DEFAULT_STUDY_PRIORS` by default; a deliberately wrong
        choice here mis-specifies the fitter).
    settings : SamplerSettings, optional
        Defaults to ``SamplerSettings()``.

    Examples
    --------
    >>> from bayesgmm.validation import FIXED_TRUTH, Fitter, SamplerSettings, simulate
    >>> fitter = Fitter(100, 2, 2, settings=SamplerSettings(draws=300))  # builds the model
    >>> sim = simulate(FIXED_TRUTH, 100, random_seed=0)
    >>> fit = fitter.fit(sim.X, random_seed=1)  # EM, then NUTS  # doctest: +SKIP
    >>> fit.diagnostics["passed"], fit.em["warnings"]  # doctest: +SKIP
    """

    def __init__(
        self,
        n_samples: int,
        n_features: int,
        n_components: int,
        *,
        priors: GMMPriors = DEFAULT_STUDY_PRIORS,
        settings: SamplerSettings | None = None,
    ) -> None:
        self.n_components = n_components
        self.priors = priors
        self.settings = settings or SamplerSettings()
        self.model = build_model(
            _placeholder_data(n_samples, n_features), n_components, priors=priors
        )
        self.cache = CompileCache()

    def fit(self, X: np.ndarray, *, random_seed: int) -> PosteriorFit:
        """Fit one data set (same shape as the model's data) from its EM start.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        random_seed : int
            Seeds EM and NUTS.

        Returns
        -------
        PosteriorFit
        """
        em, em_info = fit_em(X, self.n_components, random_seed=random_seed)
        pm.set_data({"X": X}, model=self.model, coords={"obs_id": np.arange(X.shape[0])})
        idata = sample_posterior(
            self.model,
            em,
            **asdict(self.settings),
            random_seed=random_seed,
            progressbar=False,
            priors=self.priors,
            compile_cache=self.cache,
            check=False,
        )
        return PosteriorFit(get_group(idata, "posterior"), sampler_diagnostics(idata), em_info)
