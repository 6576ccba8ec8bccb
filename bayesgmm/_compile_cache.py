"""Compiled nutpie models kept for reuse with new data of the same shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pymc as pm

__all__ = ["CompileCache"]


@dataclass
class CompileCache:
    """Compiled nutpie models kept for reuse with new data (``backend="jax"`` or ``"numba"``;
    the default kernel backend compiles nothing per model and ignores the cache).

    Compiling dominates small fits on those backends. A model whose data were replaced with
    ``pm.set_data`` (same shapes) needs no recompilation: nutpie swaps the data and the EM
    start into the compiled model. Pass one ``CompileCache`` to many :func:`sample_posterior`
    calls with the same ``pm.Model`` object (simulation studies, bootstrap refits).

    Parameters
    ----------
    max_size : int
        Compiled models kept (least recently used dropped first).

    Examples
    --------
    >>> import pymc as pm
    >>> from bayesgmm import CompileCache, EMGaussianMixture, build_model, sample_posterior
    >>> cache = CompileCache()
    >>> model = build_model(X_first, 2)  # doctest: +SKIP
    >>> for X in datasets:  # same shape: compiled once  # doctest: +SKIP
    ...     with model:
    ...         pm.set_data({"X": X})
    ...     em = EMGaussianMixture(2).fit(X)
    ...     idata = sample_posterior(model, em, compile_cache=cache)
    """

    max_size: int = 4
    _entries: list = field(default_factory=list, repr=False)

    def get(self, model: pm.Model, backend: str):
        for i, (cached_model, cached_backend, compiled) in enumerate(self._entries):
            if cached_model is model and cached_backend == backend:
                self._entries.append(self._entries.pop(i))
                return compiled
        return None

    def __deepcopy__(self, memo: dict) -> CompileCache:
        """A cache is shared, never copied (scikit-learn's ``clone`` deep-copies parameters:
        the clone of a BayesianGMM uses the same cache)."""
        return self

    def put(self, model: pm.Model, backend: str, compiled: Any) -> None:
        self._entries.append((model, backend, compiled))
        del self._entries[: max(0, len(self._entries) - self.max_size)]
