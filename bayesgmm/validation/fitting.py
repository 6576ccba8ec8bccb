"""The fitter under test: the package's default path (EM, then NUTS from the EM start)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from .._idata import get_group
from ..diagnostics import diagnostics
from ..em import EMGaussianMixture
from ..model import build_model
from ..priors import GMMPriors
from ..sampling import CompileCache, sample_posterior
from .simulation import SBC_PRIORS, _placeholder_data

EM_SETTINGS = {"n_init": 5, "tol": 1e-6, "max_iter": 1000}
"""EM as :class:`bayesgmm.BayesianGMM` runs it (the package's default path)."""


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings of every fit (per chain: ``tune`` warm-up steps, ``draws`` kept)."""

    draws: int = 500
    tune: int = 500
    chains: int = 2
    target_accept: float = 0.8


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

    Returns
    -------
    em : EMGaussianMixture
    info : dict
        ``warnings``: names of the warning classes raised (e.g. ``CollapsedComponentWarning``
        when a component holds too few points, which small simulated data sets can cause).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em = EMGaussianMixture(n_components, **EM_SETTINGS, random_state=random_seed).fit(X)
    return em, {"warnings": sorted({w.category.__name__ for w in caught})}


def sampler_diagnostics(idata: az.InferenceData) -> dict[str, Any]:
    """The worst value of every check of :func:`bayesgmm.diagnostics`, and whether all passed."""
    table = diagnostics(idata).set_index("check")
    value = table["value"]
    return {
        "max_r_hat": float(value["r_hat"]),
        "min_ess_bulk": float(value["ess_bulk"]),
        "min_ess_tail": float(value["ess_tail"]),
        "divergences": int(value["divergences"]),
        "min_bfmi": float(value["bfmi"]),
        "passed": bool(table["passed"].all()),
    }


class Fitter:
    """The package's default path, compiled once: EM, then NUTS from the EM start.

    The PyMC model is built once; every :meth:`fit` swaps the data in with ``pm.set_data`` and
    reuses the compiled nutpie model through one :class:`CompileCache`.

    Parameters
    ----------
    n_samples, n_features, n_components : int
        Shape of every data set and number of components.
    priors : GMMPriors
        The fitter's priors (a deliberately wrong choice here mis-specifies the fitter).
    settings : SamplerSettings
    """

    def __init__(
        self,
        n_samples: int,
        n_features: int,
        n_components: int,
        *,
        priors: GMMPriors = SBC_PRIORS,
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
        """Fit one data set (same shape as the model's data)."""
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
