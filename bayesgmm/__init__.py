"""bayesgmm: Gaussian mixtures fitted two ways, EM and NUTS from the EM start, compared honestly.

The path: :class:`EMGaussianMixture` (point estimates) -> :func:`build_model` (PyMC mixture)
-> :func:`sample_posterior` (NUTS, every chain at the EM mode, label switching undone) ->
memberships, comparisons, model selection and reports. :class:`BayesianGMM` runs the common case.
"""

import sys
import types
from typing import TYPE_CHECKING

# Public names and the module each lives in. They load on first use (PEP 562), so that
# ``from bayesgmm import em_sweep`` does not pay for ArviZ and matplotlib (about half of
# importing everything: 3.5 s against 7 here, 2026-12).
_HOMES = {
    "SamplerError": "_errors",
    "SamplingInterrupted": "_errors",
    "CacheWarning": "_numba_cache",
    "OutputPathError": "_output",
    "BayesianGMM": "bayesian",
    "compare": "compare",
    "compare_mixture": "compare",
    "load_faithful": "datasets",
    "simulate_mixture": "datasets",
    "SamplingWarning": "_errors",
    "diagnostics": "diagnostics",
    "CollapsedComponentWarning": "em",
    "EMGaussianMixture": "em",
    "posterior_imputation": "imputation",
    "co_clustering": "membership",
    "posterior_membership": "membership",
    "build_model": "model",
    "GMMPriors": "priors",
    "report": "report",
    "CompileCache": "sampling",
    "sample_posterior": "sampling",
    "em_sweep": "selection",
    "select_n_components": "selection",
}

if TYPE_CHECKING:  # what static tools see; at run time the names load lazily
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


def __getattr__(name: str) -> object:
    """Load a public name's module on first use (``bayesgmm.BayesianGMM`` imports PyMC)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bayesgmm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package module, keeping ``compare``, ``diagnostics`` and ``report`` the functions.

    Importing a submodule binds it on its package under its own name; three public functions
    share their module's name, and with lazy loading the submodule may be imported (by another
    module) before the function is first asked for. Those bindings are skipped, so
    ``bayesgmm.report`` is the function however the modules were loaded, as when the package
    imported everything eagerly.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name) == name:
            return  # the submodule stays in sys.modules; the name stays the function's
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
