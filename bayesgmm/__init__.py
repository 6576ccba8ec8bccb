"""bayesgmm: Gaussian mixtures fitted two ways, EM and NUTS from the EM start, compared honestly.

The path: :class:`EMGaussianMixture` (point estimates) -> :func:`build_model` (PyMC mixture)
-> :func:`sample_posterior` (NUTS, every chain at the EM mode, label switching undone) ->
memberships, comparisons, model selection and reports. :class:`BayesianGMM` runs the common case.
"""

from . import _numba_cache
from ._errors import SamplerError, SamplingInterrupted
from ._numba_cache import CacheWarning
from ._output import OutputPathError
from .bayesian import BayesianGMM
from .compare import compare, compare_mixture
from .datasets import load_faithful, simulate_mixture
from .diagnostics import SamplingWarning, diagnostics
from .em import CollapsedComponentWarning, EMGaussianMixture
from .imputation import posterior_imputation
from .membership import co_clustering, posterior_membership
from .model import build_model
from .priors import GMMPriors
from .report import report
from .sampling import CompileCache, sample_posterior
from .selection import em_sweep, select_n_components

_numba_cache.install()  # before any kernel compiles or loads

__all__ = [
    "BayesianGMM",
    "CacheWarning",
    "CollapsedComponentWarning",
    "CompileCache",
    "EMGaussianMixture",
    "GMMPriors",
    "OutputPathError",
    "SamplerError",
    "SamplingInterrupted",
    "SamplingWarning",
    "build_model",
    "co_clustering",
    "compare",
    "compare_mixture",
    "diagnostics",
    "em_sweep",
    "load_faithful",
    "posterior_imputation",
    "posterior_membership",
    "report",
    "sample_posterior",
    "select_n_components",
    "simulate_mixture",
]
__version__ = "0.1.0"
