"""NUTS from the EM mode, with the chosen sampler, returning relabelled results (a DataTree).

Every chain starts exactly at the EM estimate, with no jitter. nutpie evaluates the log
density one of three ways: for models :func:`bayesgmm.build_model` makes, by default with the
EM's E-step kernel (:mod:`bayesgmm._logdensity`, handed to nutpie as a Python function whose
Numba core releases the GIL), started through ``make_initial_point_fn``; for any other model
through its own ``compile_pymc_model(initial_points=..., jitter_rvs=set())`` with JAX or Numba
(``pm.sample(nuts_sampler="nutpie")`` silently drops ``initvals``). PyMC's sampler starts
through ``initvals`` with ``init="adapt_diag"`` (the default ``"jitter+adapt_diag"`` moves
chains away from them). BLAS is limited to one thread per process while sampling, which on
small machines is the difference between seconds and minutes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from threadpoolctl import threadpool_limits

from . import _gaussian as g
from ._idata import (
    Tree,
    add_groups,
    get_group,
    has_group,
    posterior_draws,
    replace_group,
    set_attrs,
)
from ._kernels import draw_log_density
from ._logdensity import LogDensity, kernel_applies, log_density_for
from ._validation import check_choice
from .alignment import apply_permutations, label_switching_summary, match_to_reference
from .diagnostics import check_sampling
from .em import EMGaussianMixture
from .priors import GMMPriors
from .start import em_initial_point, em_initial_values

__all__ = [
    "BACKENDS",
    "SAMPLERS",
    "CompileCache",
    "em_dataset",
    "em_reference",
    "resolve_backend",
    "sample_posterior",
]

SAMPLERS = ("nutpie", "pymc")
BACKENDS = ("auto", "kernel", "jax", "numba")


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

    def put(self, model: pm.Model, backend: str, compiled: Any) -> None:
        self._entries.append((model, backend, compiled))
        del self._entries[: max(0, len(self._entries) - self.max_size)]


def _flat_start(model: pm.Model, em: EMGaussianMixture) -> np.ndarray:
    """The EM start as nutpie's flat vector (value variables in ``model.free_RVs`` order)."""
    point = em_initial_point(model, em)
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


def resolve_backend(model: pm.Model, backend: str) -> str:
    """The nutpie backend a run uses: ``"auto"`` is ``"kernel"`` for an unchanged
    :func:`bayesgmm.build_model` model, else ``"jax"``.

    Parameters
    ----------
    model : pymc.Model
    backend : {"auto", "kernel", "jax", "numba"}

    Returns
    -------
    str
        ``"kernel"``, ``"jax"`` or ``"numba"``.

    Raises
    ------
    ValueError
        ``backend="kernel"`` for a model the kernel does not evaluate.

    Examples
    --------
    >>> import pymc as pm
    >>> from bayesgmm import build_model, load_faithful
    >>> model = build_model(load_faithful(), 2)
    >>> resolve_backend(model, "auto")
    'kernel'
    >>> with model:
    ...     _ = pm.Potential("penalty", -model["means"].sum())
    >>> resolve_backend(model, "auto")  # a changed model: the PyMC graph, compiled by JAX
    'jax'
    """
    if backend == "auto":
        return "kernel" if kernel_applies(model) else "jax"
    if backend == "kernel" and not kernel_applies(model):
        raise ValueError(
            "backend='kernel' evaluates only the models bayesgmm.build_model makes, unchanged; "
            "this model differs (its free variables, observed variables or potentials). Use "
            "backend='jax' (or 'auto', which picks it)."
        )
    return backend


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


def _run_nutpie(compiled, *, draws, tune, chains, seed, target_accept, progressbar):
    import nutpie

    return nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        progress_bar=progressbar,
        save_warmup=False,
    )


def _sample_nutpie(model, em, *, backend, cache, **run):
    return _run_nutpie(_compiled_nutpie(model, em, backend, cache), **run)


_UNCONSTRAINED = "unconstrained_point"


def _kernel_compiled(model: pm.Model, em: EMGaussianMixture, density: LogDensity):
    """nutpie's model of the E-step kernel's log density, every chain starting at EM.

    nutpie keeps each draw's unconstrained vector (the "expand" function copies it); the
    model's variables are computed from all kept draws at once afterwards, so no graph is
    compiled at all.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    start = _flat_start(model, em)

    def make_logp_fn():
        def logp(x, **shared):
            return density(x, shared["X"])

        return logp

    def make_expand_fn(*seeds_and_chain):
        def expand(x, **shared):
            return {_UNCONSTRAINED: np.array(x, dtype=np.float64)}

        return expand

    return from_pyfunc(
        density.n_dim,
        make_logp_fn,
        make_expand_fn,
        [np.dtype("float64")],
        [(density.n_dim,)],
        [_UNCONSTRAINED],
        shared_data={"X": np.ascontiguousarray(model["X"].get_value(), dtype=np.float64)},
        make_initial_point_fn=lambda seed: start.copy(),
    )


def _sample_kernel(model, em, density: LogDensity, **run):
    """nutpie with the E-step kernel's log density (:mod:`bayesgmm._logdensity`)."""
    idata = _run_nutpie(_kernel_compiled(model, em, density), **run)
    flat = get_group(idata, "posterior")[_UNCONSTRAINED].transpose("chain", "draw", ...).values
    replace_group(idata, "posterior", density.posterior(flat, model.coords))
    return idata


def _sample_pymc(model, initial, *, draws, tune, chains, seed, target_accept, progressbar):
    """PyMC's NUTS from the EM start (the log-likelihood is added afterwards, as for nutpie).

    Once JAX has run in this process (e.g. an earlier nutpie fit), worker processes start with
    ``forkserver``, because forking a process in which JAX's threads run can deadlock; like
    ``spawn``, that needs scripts to guard their entry point with ``if __name__ ==
    "__main__":``.
    """
    cores = min(chains, os.cpu_count() or 1)
    return pm.sample(
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


def em_dataset(em: EMGaussianMixture, coords: dict[str, Any]) -> xr.Dataset:
    """The EM estimate with the posterior's names and dims (the ``em`` group).

    ``covariances`` are expanded to full matrices whatever EM's family, so that
    ``posterior["covariances"] - em["covariances"]`` broadcasts.

    Parameters
    ----------
    em : EMGaussianMixture
        A fitted EM estimate, of any covariance type.
    coords : dict
        Labels of ``component``, ``feature`` and ``feature_bis`` (other keys are ignored).

    Returns
    -------
    xarray.Dataset
        ``weights``, ``means``, ``covariances``, ``stds`` and ``correlations``; EM's
        covariance type, lower bound, iterations and convergence as attributes.

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, load_faithful
    >>> em = EMGaussianMixture(2, random_state=0).fit(load_faithful())
    >>> names = ["eruptions", "waiting"]
    >>> ds = em_dataset(em, {"component": [0, 1], "feature": names, "feature_bis": names})
    >>> ds["covariances"].dims
    ('component', 'feature', 'feature_bis')
    """
    k, d = em.n_components, em.n_features_in_
    cov = g.full_covariances(em.covariances_, em.covariance_type, k, d)
    stds, corr = g.std_and_correlation(cov)
    component, feature = ("component",), ("component", "feature")
    matrix = ("component", "feature", "feature_bis")
    return xr.Dataset(
        {
            "weights": (component, np.asarray(em.weights_)),
            "means": (feature, np.asarray(em.means_)),
            "covariances": (matrix, cov),
            "stds": (feature, stds),
            "correlations": (matrix, corr),
        },
        coords={name: list(coords[name]) for name in ("component", "feature", "feature_bis")},
        attrs={
            "covariance_type": em.covariance_type,
            "lower_bound": float(em.lower_bound_),
            "n_iter": int(em.n_iter_),
            "converged": int(bool(em.converged_)),
        },
    )


def em_reference(idata: Tree, em: EMGaussianMixture | None = None) -> xr.Dataset:
    """The EM estimate as a Dataset named and shaped like the posterior.

    ``em=None`` reads the InferenceData's ``em`` group; a fitted :class:`EMGaussianMixture` is
    converted with :func:`em_dataset` after checking it matches the posterior.

    Parameters
    ----------
    idata : xarray.DataTree
        With a posterior (and an ``em`` group when ``em`` is None).
    em : EMGaussianMixture, optional
        A fitted EM estimate with the posterior's numbers of components and features.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> reference = em_reference(fit.idata_)  # the stored em group  # doctest: +SKIP
    """
    posterior = get_group(idata, "posterior")
    if em is None:
        if not has_group(idata, "em"):
            raise ValueError(
                "No EM estimate: the results have no 'em' group and no em was given. Pass "
                "em=<fitted EMGaussianMixture>, or use the results returned by "
                "bayesgmm.sample_posterior (which store the EM estimate)."
            )
        reference = get_group(idata, "em")
        sizes = (reference.sizes["component"], reference.sizes["feature"])
    elif not hasattr(em, "means_"):
        raise ValueError("em must be a fitted EMGaussianMixture: call em.fit(X) first.")
    else:
        sizes = (em.n_components, em.n_features_in_)
    k, d = posterior.sizes["component"], posterior.sizes["feature"]
    if sizes != (k, d):
        raise ValueError(
            f"The EM estimate has {sizes[0]} components and {sizes[1]} features, but the "
            f"posterior has {k} components and {d} features: pass the EM fit the chains "
            "started from."
        )
    if em is None:
        return reference
    return em_dataset(em, {n: posterior[n].values for n in ("component", "feature", "feature_bis")})


def _drop_warmup_and_internals(idata: Tree, model: pm.Model) -> None:
    """Keep the model's own variables in the posterior (not the sampler's transformed ones)."""
    names = {v.name for v in model.free_RVs + model.deterministics}
    posterior = get_group(idata, "posterior")
    replace_group(idata, "posterior", posterior[[v for v in posterior.data_vars if v in names]])


def _pointwise_log_likelihood(posterior: xr.Dataset, X: np.ndarray) -> xr.DataArray:
    """``log p(x_n | theta_s)`` for every draw and row, with the package's Gaussian math."""
    weights, means, covariances = posterior_draws(posterior, ("weights", "means", "covariances"))
    out = draw_log_density(X, weights, means, covariances)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], X.shape[0])
    return xr.DataArray(out.reshape(shape), dims=("chain", "draw", "obs_id"))


def _complete_groups(idata: Tree, model: pm.Model) -> None:
    """Pointwise log-likelihood (for LOO) and observed data, the same on every sampler path."""
    X = np.asarray(model["X"].get_value())
    coords = {name: list(model.coords[name]) for name in ("obs_id", "feature")}
    posterior = get_group(idata, "posterior")
    if {"weights", "means", "covariances"} <= set(posterior.data_vars):
        log_lik = _pointwise_log_likelihood(posterior, X).assign_coords(obs_id=coords["obs_id"])
        replace_group(idata, "log_likelihood", xr.Dataset({"obs": log_lik}))
    elif not has_group(idata, "log_likelihood"):  # a user's own model: let PyMC compute it
        pm.compute_log_likelihood(
            idata, model=model, var_names=["obs"], extend_inferencedata=True, progressbar=False
        )
    observed = xr.Dataset({"obs": (("obs_id", "feature"), X)}, coords=coords)
    replace_group(idata, "observed_data", observed)


def relabel(idata: Tree) -> np.ndarray:
    """Relabel the posterior in place to the ``em`` group's components; return permutations.

    The permutations are also stored as ``sample_stats["label_permutation"]``
    (chain, draw, component).
    """
    posterior = get_group(idata, "posterior")
    em = get_group(idata, "em")
    perm = match_to_reference(
        posterior["means"].transpose("chain", "draw", "component", "feature").values,
        posterior["covariances"].transpose("chain", "draw", "component", ...).values,
        em["means"].values,
        em["covariances"].values,
    )
    replace_group(idata, "posterior", apply_permutations(posterior, perm))
    stats = get_group(idata, "sample_stats").copy()
    stats["label_permutation"] = (("chain", "draw", "component"), perm)
    replace_group(idata, "sample_stats", stats)
    return perm


def _versions() -> dict[str, str]:
    names = (
        "bayesgmm",
        "pymc",
        "pytensor",
        "arviz",
        "nutpie",
        "jax",
        "numba",
        "numpy",
        "scipy",
        "scikit-learn",
    )
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _check_arguments(
    sampler: str, backend: str, draws: int, tune: int, chains: int, target_accept: float
) -> None:
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("backend", backend, BACKENDS)
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}.")


def sample_posterior(
    model: pm.Model,
    em: EMGaussianMixture,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: str = "nutpie",
    random_seed: int | None = None,
    target_accept: float = 0.8,
    progressbar: bool = True,
    priors: GMMPriors | None = None,
    backend: str = "auto",
    compile_cache: CompileCache | None = None,
    check: bool = True,
) -> Tree:
    """Sample the mixture with NUTS, every chain starting at the EM estimate.

    Parameters
    ----------
    model : pymc.Model
        From :func:`bayesgmm.build_model` (or a model with the same variable names).
    em : EMGaussianMixture
        Fitted on the model's data with the model's number of components.
    draws, tune, chains : int
        Draws kept per chain, tuning steps per chain, number of chains.
    sampler : {"nutpie", "pymc"}
    random_seed : int, optional
        Without one, a seed is drawn from the operating system's entropy and recorded in the
        attrs, so the run can be repeated.
    target_accept : float
        NUTS target acceptance rate; raise it (e.g. 0.95) if there are divergences.
    progressbar : bool
    priors : GMMPriors, optional
        Recorded in the attrs. Defaults to the priors :func:`bayesgmm.build_model` built the
        model with; a model built otherwise records "not recorded" unless they are given.
    backend : {"auto", "kernel", "jax", "numba"}
        How nutpie evaluates the log density and its gradient. ``"kernel"``: one compiled
        Numba call built on the EM's E-step kernel (:mod:`bayesgmm._logdensity`), for models
        :func:`bayesgmm.build_model` makes (about 20 us a call for Old Faithful against about
        0.3 ms for the JAX graph, and the GIL is released, so chains run in parallel).
        ``"jax"``: the PyMC graph compiled by JAX (any model; compiled executables persist in
        :func:`cache_dir`). ``"numba"``: the graph compiled by Numba (slow to compile: 48 s
        warm here). ``"auto"`` (default) is ``"kernel"`` when the model allows it, else
        ``"jax"``.
    compile_cache : CompileCache, optional
        Reuse compiled nutpie models across calls with models of the same structure.
    check : bool
        Run the convergence checks and warn (:class:`SamplingWarning`) if any fails.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (relabelled to EM's components), ``sample_stats`` (with
        ``label_permutation``), ``log_likelihood``, ``observed_data`` and ``em``; provenance in
        ``posterior.attrs``.

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, build_model, load_faithful, sample_posterior
    >>> X = load_faithful()
    >>> em = EMGaussianMixture(2, random_state=0).fit(X)
    >>> idata = sample_posterior(build_model(X, 2), em, random_seed=1)  # doctest: +SKIP
    >>> idata.posterior["means"] - idata.em["means"]  # same dims: broadcasts  # doctest: +SKIP
    """
    _check_arguments(sampler, backend, draws, tune, chains, target_accept)
    if sampler == "nutpie":
        backend = resolve_backend(model, backend)
    initial = em_initial_values(model, em)  # checks EM against the model before any compile
    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    spec = getattr(model, "_bayesgmm_spec", None)  # (K, D, covariance type, priors)
    priors = priors if priors is not None else (spec[-1] if spec is not None else None)
    seed = int(np.random.SeedSequence(random_seed).generate_state(1)[0] >> 1)
    kwargs = dict(
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        progressbar=progressbar,
    )
    with threadpool_limits(limits=1, user_api="blas"):
        if sampler == "nutpie" and backend == "kernel":
            idata = _sample_kernel(model, em, log_density_for(model), **kwargs)
        elif sampler == "nutpie":
            idata = _sample_nutpie(model, em, backend=backend, cache=compile_cache, **kwargs)
        else:
            idata = _sample_pymc(model, initial, **kwargs)
        _drop_warmup_and_internals(idata, model)
        _complete_groups(idata, model)
    add_groups(idata, {"em": em_dataset(em, model.coords)})
    switched = label_switching_summary(relabel(idata))
    set_attrs(
        idata,
        {
            "sampler": sampler,
            "backend": backend if sampler == "nutpie" else "pymc-c",
            "random_seed": int(random_seed),
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "target_accept": target_accept,
            "start": "EM estimate, no jitter",
            "relabelled_draws_per_chain": switched["relabelled_draws"].tolist(),
            "priors": priors.to_json() if priors is not None else "not recorded",
            "versions": _versions(),
        },
    )
    if check:
        check_sampling(idata, stacklevel=3)
    return idata
