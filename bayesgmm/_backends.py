"""How the samplers run: nutpie's compiled PyMC models (JAX or Numba) and its background
runs, and PyMC's own NUTS, each from the EM start (see :mod:`bayesgmm.sampling`)."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path

import numpy as np
import pymc as pm

from ._compile_cache import CompileCache
from ._drift import start_all
from ._errors import SamplingInterrupted
from ._idata import get_group, without_warmup
from .em import EMGaussianMixture
from .start import em_initial_point, em_initial_values

__all__ = ["cache_dir"]  # bayesgmm.sampling re-exports it


def _flat_start(model: pm.Model, em: EMGaussianMixture, floor: float = 0.0) -> np.ndarray:
    """The EM start as nutpie's flat vector (value variables in ``model.free_RVs`` order;
    ``floor``: see :func:`bayesgmm.start.em_initial_values`)."""
    point = em_initial_point(model, em, floor=floor)
    return np.concatenate(
        [np.ravel(point[model.rvs_to_values[rv].name]) for rv in model.free_RVs]
    ).astype(np.float64)


def cache_dir() -> Path:
    """Where compiled models persist across processes: ``$BAYESGMM_CACHE_DIR`` or
    ``~/.cache/bayesgmm``."""
    return Path(os.environ.get("BAYESGMM_CACHE_DIR", Path.home() / ".cache" / "bayesgmm"))


def _enable_jax_cache() -> None:
    """Persist JAX's compiled executables (a warm compile takes seconds), unless the user
    already configured a JAX compilation cache."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _compiled_nutpie(
    model: pm.Model, em: EMGaussianMixture, backend: str, cache: CompileCache | None
):
    """nutpie's compiled model with the current data and every chain starting at EM.

    The EM start replaces nutpie's initial-point function (nutpie ignores ``init_mean`` for
    PyMC models and would jitter ``initial_points`` unless ``jitter_rvs=set()``).
    """
    import nutpie

    compiled = cache.get(model, backend) if cache is not None else None
    if compiled is None:
        if backend == "jax":
            _enable_jax_cache()
        # nutpie 0.16 writes default dims of the transformed variables (``weights_simplex__``)
        # into the model's own ``named_vars_to_dims``; compiling the same model again then
        # fails with "Unknown dimension size". Leave the user's model as it was.
        dims = dict(model.named_vars_to_dims)
        try:
            compiled = nutpie.compile_pymc_model(
                model,
                backend=backend,
                gradient_backend="jax" if backend == "jax" else "pytensor",
                initial_points=em_initial_values(model, em),
                jitter_rvs=set(),
                freeze_model=False,
            )
        finally:
            model.named_vars_to_dims.clear()
            model.named_vars_to_dims.update(dims)
        if cache is not None:
            cache.put(model, backend, compiled)
    start = _flat_start(model, em)
    field_name = "initial_point_func" if backend == "numba" else "_make_initial_points"
    data = np.ascontiguousarray(model["X"].get_value(), dtype=np.float64)
    if backend == "jax":  # a NumPy array would be copied to the device at every evaluation
        import jax.numpy as jnp

        data = jnp.asarray(data)
    compiled = compiled.with_data(X=data)
    return dataclasses.replace(compiled, **{field_name: lambda seed: start.copy()})


def _run_nutpie(compiled, *, wait=None, **run):
    """nutpie in the background; Ctrl-C stops it and keeps what it drew (returns
    ``(results, interrupted)``). ``wait(sampler)``, if given, waits for the results in place
    of ``sampler.wait()`` (and may stop the run early). A watched run runs every chain at once
    (nutpie otherwise queues the chains beyond the machine's cores until others finish), so
    that a stop at a draw every chain must reach (:func:`bayesgmm._drift.stop_when_one_left`)
    comes early; the chains share the cores, the total work is the same. A watched run keeps
    its tuning draws for the watcher to judge (``save_warmup``); the watcher drops them when
    it did not stop the run, and Ctrl-C here always does."""
    start = functools.partial(_started_nutpie, compiled, watched=wait is not None, **run)
    trees, interrupted = start_all([start], functools.partial(_waited, wait=wait))
    return trees[0], interrupted


def run_nutpie_together(jobs: list[tuple[object, dict]]) -> tuple[list, bool]:
    """Several nutpie runs at once, each ``(compiled model, run)`` (``draws``, ``tune``,
    ``chains``, ``seed``, ``target_accept``, ``progressbar``): ``(results of each, interrupted)``.

    Run one after another, a run of fewer chains than cores leaves cores idle (gclus body
    girths, K = 3, chains from 3 distinct EM optima as groups of 2, 1 and 1: 20 s, where the
    four chains at once share two cores); each run's draws depend only on its model and seed,
    so running them together changes no draw. Ctrl-C stops them all and keeps what each drew;
    a failure cancels them all (:func:`bayesgmm._drift.start_all`).
    """
    starts = [functools.partial(_started_nutpie, compiled, **run) for compiled, run in jobs]
    return start_all(starts, _waited)


def _started_nutpie(
    compiled, *, draws, tune, chains, seed, target_accept, progressbar, watched=False
):
    """nutpie's background sampler for one run (``watched``: see :func:`_run_nutpie`)."""
    import nutpie

    return nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=chains if watched else None,
        seed=seed,
        target_accept=target_accept,
        progress_bar=progressbar,
        save_warmup=watched,
        blocking=False,
    )


def _waited(samplers: list, wait=None) -> tuple[list, bool]:
    """The results of running ``samplers``, in order (``wait(sampler)`` in place of
    ``sampler.wait()`` when given), and whether Ctrl-C stopped them: then the samplers not yet
    waited for are stopped and their draws so far (tuning dropped) kept."""
    done = []
    try:
        for sampler in samplers:
            done.append(sampler.wait() if wait is None else wait(sampler))
        return done, False
    except KeyboardInterrupt:
        try:
            return done + [without_warmup(s.abort()) for s in samplers[len(done) :]], True
        except Exception:  # nothing left to take (e.g. a second Ctrl-C while collecting)
            raise SamplingInterrupted(
                "sampling was interrupted and its draws could not be recovered"
            ) from None


def _sample_pymc(model, initial, *, draws, tune, chains, seed, target_accept, progressbar):
    """PyMC's NUTS from the EM start (the log-likelihood is added afterwards, as for nutpie).

    Once JAX has run in this process (e.g. an earlier nutpie fit), worker processes start with
    ``forkserver``, because forking a process in which JAX's threads run can deadlock; like
    ``spawn``, that needs scripts to guard their entry point with ``if __name__ ==
    "__main__":``.
    """
    cores = min(chains, os.cpu_count() or 1)
    idata = pm.sample(
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        random_seed=seed,
        nuts_sampler="pymc",  # PyMC 6 would otherwise hand the model to nutpie
        initvals=initial,
        init="adapt_diag",
        target_accept=target_accept,
        progressbar=progressbar,
        compute_convergence_checks=False,
        mp_ctx="forkserver" if cores > 1 and "jax" in sys.modules else None,
        model=model,
    )
    # PyMC keeps the draws of an interrupted run (Ctrl-C) and returns fewer
    return idata, get_group(idata, "posterior").sizes["draw"] < draws
