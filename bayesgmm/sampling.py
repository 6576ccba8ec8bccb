"""NUTS from the EM mode, with the chosen sampler, returning relabelled results (a DataTree).

Every chain starts exactly at the EM estimate, with no jitter, or, given further EM optima
(``starts``), round robin at them (:mod:`bayesgmm.modes`, which also judges afterwards whether
the chains ended in different modes). With the E-step kernel and ``precondition="laplace"``
(the default) a chain starts at the posterior mode found from its EM start, on parameters
whitened by the curvature there (:mod:`bayesgmm._precondition`). nutpie evaluates the log
density one of three ways: for models :func:`bayesgmm.build_model` makes, by default with the
EM's E-step kernel (:mod:`bayesgmm._logdensity`, handed to nutpie as compiled C callbacks,
:mod:`bayesgmm._native`), every chain at the same start; for any other model
through its own ``compile_pymc_model(initial_points=..., jitter_rvs=set())`` with JAX or Numba
(``pm.sample(nuts_sampler="nutpie")`` silently drops ``initvals``). PyMC's sampler starts
through ``initvals`` with ``init="adapt_diag"`` (the default ``"jitter+adapt_diag"`` moves
chains away from them). BLAS is limited to one thread per process while sampling, which on
small machines is the difference between seconds and minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pymc as pm
from threadpoolctl import threadpool_limits

from . import _darting as darting
from . import _drift as drift
from . import _followup as followup
from . import _independence as independence
from . import _native
from . import _precondition as pre
from ._backends import (  # noqa: F401 - _compiled_nutpie, cache_dir: used from here
    _compiled_nutpie,
    _flat_start,
    _run_nutpie,
    _sample_pymc,
    cache_dir,
    run_nutpie_together,
)
from ._compile_cache import CompileCache
from ._errors import SamplerError, SamplingInterrupted, from_below, warn
from ._idata import Tree, get_attr, get_group, replace_group, set_attrs
from ._logdensity import LogDensity, kernel_applies, log_density_for
from ._results import em_dataset, em_reference, finish, keep_finished_draws, relabel, versions
from ._validation import check_choice
from .alignment import label_switching_summary
from .diagnostics import SamplingWarning, check_sampling, judged_once
from .em import EMGaussianMixture
from .model import model_spec, observed_rows
from .modes import _warn_modes, one_after_another, record_modes, sample_groups
from .priors import GMMPriors
from .start import em_initial_values

__all__ = [
    "BACKENDS",
    "SAMPLERS",
    "CompileCache",
    "em_dataset",
    "em_reference",
    "relabel",
    "resolve_backend",
    "sample_posterior",
]

SAMPLERS = ("nutpie", "pymc")
BACKENDS = ("auto", "kernel", "jax", "numba")


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


_UNCONSTRAINED = "unconstrained_point"


def _kernel_compiled(
    model: pm.Model,
    em: EMGaussianMixture,
    density: LogDensity,
    approx: pre.Laplace | None = None,
    native: bool = True,
):
    """nutpie's model of the E-step kernel's log density, every chain starting at EM.

    The density goes to nutpie as compiled callbacks (:mod:`bayesgmm._native`: chains on
    threads need no GIL; the same draws to rounding), or with ``native=False`` as a Python
    function.

    nutpie keeps each draw's unconstrained vector (the "expand" function copies it); the
    model's variables are computed from all kept draws at once afterwards, so no graph is
    compiled at all. With ``approx``, nutpie samples whitened ``z`` from the mode and keeps
    ``theta = mode + L z`` (:mod:`bayesgmm._precondition`).
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    rows = density.rows(*observed_rows(model))
    if approx is None:
        evaluate, to_theta, (start, _) = density, np.array, _kernel_start(density, model, em, rows)
    else:
        evaluate, to_theta = pre.whitened_density(density, approx), approx.to_theta
        start = _nudged(evaluate, np.zeros(density.n_dim), rows)  # the mode (z = 0)
    if native and _native.available():
        return _native.native_model(density, rows, start, approx, _UNCONSTRAINED)

    def make_logp_fn():
        def logp(x, **shared):
            return evaluate(x, shared["X"])

        return logp

    def make_expand_fn(*seeds_and_chain):
        def expand(x, **shared):
            return {_UNCONSTRAINED: np.array(to_theta(x), dtype=np.float64)}

        return expand

    return from_pyfunc(
        density.n_dim,
        make_logp_fn,
        make_expand_fn,
        [np.dtype("float64")],
        [(density.n_dim,)],
        [_UNCONSTRAINED],
        shared_data={"X": rows},
        make_initial_point_fn=lambda seed: start.copy(),
    )


def _decode_kernel_draws(idata: Tree, density: LogDensity, coords: dict) -> None:
    """The standardised parameters of the kept unconstrained draws, as the posterior."""
    flat = get_group(idata, "posterior")[_UNCONSTRAINED].transpose("chain", "draw", ...).values
    replace_group(idata, "posterior", density.posterior(flat, coords))


# the step off EM's estimate along a coordinate of exactly zero slope (unconstrained units; a
# posterior standard deviation is ~1e-2 or more)
_NUDGE = 1e-6


def _start_problem(density: LogDensity, start: np.ndarray, rows: np.ndarray) -> str:
    """Why nutpie cannot start at ``start`` ("" when it can)."""
    logp, grad = density(start, rows)
    if not (np.isfinite(logp) and np.all(np.isfinite(grad))):
        return "not finite"
    return "" if np.all(grad != 0) else "flat in some direction"


def _usable_point(
    density: LogDensity, model: pm.Model, em: EMGaussianMixture, rows, nudge: bool = True
) -> tuple:
    """EM's estimate, or its floored twin when nutpie cannot use it, or (``nudge``) the
    estimate a step off where its slope is exactly zero (:func:`_nudged`; only for an
    estimate that is :func:`_healthy`): ``(start, floored, problem)``, ``problem`` empty when
    one of them can be used (:func:`_kernel_start`)."""
    start = _flat_start(model, em)
    problem = _start_problem(density, start, rows)
    if not problem:
        return start, False, ""
    floored = _flat_start(model, em, pre.RETRY_FLOOR)
    if not _start_problem(density, floored, rows):
        return floored, True, ""
    if nudge and problem.startswith("flat") and _healthy(em):
        nudged = _nudged(density, start, rows)
        if not _start_problem(density, nudged, rows):
            return nudged, False, ""
    return start, False, problem


def _healthy(em: EMGaussianMixture) -> bool:
    """Whether EM's estimate is one a zero slope can only be a coincidence of: no component
    collapsed (e.g. onto an outlying row: there the slope says the estimate is degenerate)
    and no two components the same (copies of one: a saddle EM cannot leave)."""
    means = np.asarray(em.means_)
    distinct = len({m.tobytes() for m in means}) == len(means)
    return distinct and not len(getattr(em, "collapsed_components_", []))


def _nudged(density: Callable, start: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``start`` moved by :data:`_NUDGE` along each coordinate where the slope of
    ``density`` (``(x, rows) -> (logp, grad)``) is exactly zero, which nutpie cannot start at.

    At a stationary point the slope is zero up to rounding, and can be exactly zero by
    coincidence: with one component, EM's estimate is the data's mean, where the means'
    prior is centred too, and a standardised column whose values sum to exactly zero has an
    exactly zero slope along its mean there, and at the posterior mode, which no optimiser
    moves along it (R's swiss, a diagonal covariance: 'Education'); components that split
    the rows exactly evenly (well separated, so every responsibility is 0 or 1) have exactly
    equal weights, where the symmetric Dirichlet prior is flat along them too (SBC's
    simulation 42 at seed 2: 50 and 50 rows). A step far below the posterior's scale gives
    it a slope."""
    _, grad = density(start, rows)
    return start + _NUDGE * (np.asarray(grad) == 0)


def _kernel_start(
    density: LogDensity, model: pm.Model, em: EMGaussianMixture, rows: np.ndarray
) -> tuple:
    """Where the chains (and the mode search) start: the EM estimate, or the EM estimate with
    its covariances' eigenvalues floored at :data:`bayesgmm._precondition.RETRY_FLOOR` when
    nutpie could not use EM's; returns ``(start, floored)``.

    nutpie needs a finite density with a non-zero slope in every direction where chains
    start. EM's estimate can lack it on a likelihood singularity: every component collapsed
    onto one value of a discrete feature (a 0/1 column splits the rows, each component's
    variance along it at ``reg_covar``, its correlations exactly 0 with an exactly zero
    slope), where no healthy component lends a covariance (:func:`bayesgmm.start
    .em_initial_values`). The floored estimate keeps EM's partition and lies off the
    singularity; a slope exactly zero by coincidence takes a step (:func:`_nudged`). When
    none can be used, say why now, rather than after nutpie's "All
    initialization points failed". ``rows``: the model's rows as ``density`` takes them.
    """
    start, floored, problem = _usable_point(density, model, em, rows)
    if not problem:
        return start, floored
    X, _ = observed_rows(model)
    z = np.abs(np.nan_to_num(density.scaling.transform(X)))
    row, column = np.unravel_index(np.argmax(z), z.shape)
    collapsed = np.asarray(getattr(em, "collapsed_components_", []), dtype=int).tolist()
    raise SamplerError(
        f"Sampling cannot start at the EM estimate: the posterior density there is {problem}"
        + (f"; EM's component(s) {collapsed} hold too few rows" if collapsed else "")
        + f" (row {row} lies {z[row, column]:.3g} standard deviations from the mean of "
        f"feature {model.coords['feature'][column]!r}). Remove or correct outlying rows, or "
        "use fewer components."
    )


def _check_arguments(
    sampler, backend, draws, tune, chains, target_accept, precondition, max_draws=None
) -> None:
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("backend", backend, BACKENDS)
    check_choice("precondition", precondition, pre.PRECONDITIONS)
    checked = (("draws", draws, 1), ("tune", 0 if tune is None else tune, 0), ("chains", chains, 1))
    for name, value, low in checked:
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if target_accept is not None and not 0 < target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}.")
    if max_draws is not None and (not isinstance(max_draws, int | np.integer) or max_draws < draws):
        raise ValueError(
            f"max_draws must be None or an integer >= draws ({draws}), got {max_draws!r} "
            "(max_draws=draws turns follow-up runs off)."
        )


@judged_once  # the run's results are judged up to four times
def sample_posterior(
    model: pm.Model,
    em: EMGaussianMixture,
    *,
    draws: int = 1000,
    tune: int | None = None,
    chains: int = 4,
    sampler: str = "nutpie",
    random_seed: int | None = None,
    target_accept: float | None = None,
    progressbar: bool = True,
    priors: GMMPriors | None = None,
    backend: str = "auto",
    compile_cache: CompileCache | None = None,
    check: bool = True,
    starts: list[EMGaussianMixture] | None = None,
    precondition: str = "laplace",
    max_draws: int | None = None,
) -> Tree:
    """Sample the mixture with NUTS, every chain starting at the EM estimate (or at one of
    several EM optima, ``starts``; or at the posterior mode found from it, see
    ``precondition``).

    Parameters
    ----------
    model : pymc.Model
        From :func:`bayesgmm.build_model` (or a model with the same variable names).
    em : EMGaussianMixture
        Fitted on the model's data with the model's number of components.
    draws, tune, chains : int
        Draws kept per chain, tuning steps per chain, number of chains. ``tune=None``
        (default): 300 on parameters whitened by the full Laplace approximation, else 1000.
    sampler : {"nutpie", "pymc"}
    random_seed : int, optional
        Without one, a seed is drawn from the operating system's entropy and recorded in the
        attrs, so the run can be repeated.
    target_accept : float, optional
        NUTS target acceptance rate; raise it (e.g. 0.95) if there are divergences. None
        (default): 0.8, or 0.9 when the Laplace covariance is ill-conditioned (a
        near-singular component covariance makes the posterior a narrow, curved ridge; see
        :func:`bayesgmm._precondition.default_target_accept`). A run with divergences below
        0.95 is followed up at 0.95, and at 0.99 when those still diverge (see
        ``max_draws``).
    progressbar : bool
    priors : GMMPriors, optional
        Recorded in the attrs. Defaults to the priors :func:`bayesgmm.build_model` built the
        model with.
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
        Run the convergence checks and warn (:class:`SamplingWarning`) if any fails, or if
        the chains ended in different modes (:func:`bayesgmm.modes.record_modes`).
    starts : list of EMGaussianMixture, optional
        Further EM optima (e.g. :func:`bayesgmm.modes.distinct_optima` without the first):
        the chains start round robin at ``em`` and these, each group with its own seed
        (``sample_stats["start"]``). Whatever the starts, the chains' modes are judged after
        sampling (``sample_stats["mode"]``, :func:`bayesgmm.modes.mode_table`).
    precondition : {"laplace", "none"}
        With ``backend="kernel"``: ``"laplace"`` (default) starts at the posterior mode found
        from EM and samples parameters whitened by the curvature there (its diagonal, or
        nothing, when unusable; :mod:`bayesgmm._precondition`); with several ``starts``, each
        group of chains at its own mode with its own curvature. If chains leave the mode's
        typical set (the posterior's mass lies elsewhere, e.g. near-empty components), the
        run stops and every chain runs again alike from the draws of the chain that left,
        whitened by their covariance, when that region holds clearly more mass (5 nats), else
        each chain in its own region (from its own draws when a chain left only late in a
        finished run) (:mod:`bayesgmm._drift`; ``posterior.attrs["left_mode_depth"]`` and a
        ``left_mode`` check record it, which fails only when the other checks do).
        ``"none"`` samples unwhitened
        from EM. Same parameters either way; the attrs say which (for the first start).
        Other backends ignore it.
    max_draws : int, optional
        The most draws per chain follow-up runs may bring the run to (``backend="kernel"``,
        :mod:`bayesgmm._followup`): when the chains are in one mode without divergences but
        R-hat is mildly above 1.01 or the bulk or tail ESS below 400, every chain continues
        from its last draw, sized from the ESS per draw so far; when they ended in several
        modes not each converged, or a chain moved to another region while drawing (its
        log-likelihood or its partition of the rows), new chains start where the chains
        ended, and where a moved chain began (at least 2 per group, at most ``2 * chains`` a
        rerun, of ``draws`` draws each, replacing the run before; their draws, not their
        tuning steps, count against ``(max_draws - draws) * chains``); so do chains that had
        divergences, at ``target_accept`` 0.95 (:func:`bayesgmm._followup.divergent_rerun`).
        Chains in one mode run again once more when one of them moved again (from where
        they ended) or diverged again (at 0.99). A mode that then
        still fails its own gates gets 2 new chains of its own, within the same draws
        (:func:`bayesgmm._followup.converge_modes`, ``posterior.attrs["mode_reruns"]``).
        ``posterior.attrs["follow_up"]`` records what ran and why. When the chains are in
        one mode and still fail R-hat or the ESS because some rows change component only a
        few times per thousand draws, Hamiltonian Monte Carlo with a dart per such row (a
        Metropolis jump between the draws' means with the row in one component and in the
        other) follows (:mod:`bayesgmm._darting`, at most ``max_draws`` iterations per chain),
        as it does, without darts when no row switches rarely, when divergent transitions
        are left after the raised targets; its draws replace NUTS's only when they meet the
        gates
        (``posterior.attrs["darting_hmc"]``, and ``draws_sampler="darting_hmc"``). It runs
        right after the first run instead, before any follow-up, when such rows are seen
        there and the extension would need more draws than ``max_draws`` leaves, by the
        first run's ESS per draw (:func:`bayesgmm._darting.before_follow_ups`; the follow-ups
        run as above when it does not meet the gates). When R-hat
        or the ESS still fail after these (not divergences alone, nor several modes each
        converged),
        with at most 40 dimensions, 2 or more chains and 40 NUTS draws per dimension,
        independence Metropolis-Hastings from a Gaussian mixture fitted to the NUTS draws
        follows (:mod:`bayesgmm._independence`, at most ``10 * max_draws`` steps per chain,
        thinned to ``draws``); its draws replace NUTS's only when they meet the gates
        (``posterior.attrs["independence_mh"]``, and ``draws_sampler="independence_mh"``;
        ``sample_stats`` then holds ``accepted``, ``logp`` and ``diverging``, all False).
        None (default): ``4 * draws`` (:data:`bayesgmm._followup.BUDGET`); ``max_draws=draws`` turns
        follow-ups off.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (``weights``, ``means``, ``covariances``, ``stds`` and, for full
        covariances, ``correlations``, in the data's units, relabelled to EM's components),
        ``sample_stats`` (with ``label_permutation``), ``log_likelihood``, ``observed_data``
        and ``em``; provenance in ``posterior.attrs`` (with the standardisation the model
        sampled on, ``data_loc`` and ``data_scale``).

    Raises
    ------
    ValueError
        Bad arguments, a model not made by :func:`bayesgmm.build_model`, or an EM fit that
        does not match it.
    SamplerError
        A start nutpie cannot use (checked before sampling, naming the row that causes it), or
        a failure of the sampler; the message says why and what to try.
    SamplingInterrupted
        Ctrl-C before any draw was finished. Later, the draws finished so far are returned,
        marked as partial (``posterior.attrs["interrupted"]``), with a :class:`SamplingWarning`.

    Examples
    --------
    >>> from bayesgmm import EMGaussianMixture, build_model, load_faithful, sample_posterior
    >>> X = load_faithful()
    >>> em = EMGaussianMixture(2, random_state=0).fit(X)
    >>> idata = sample_posterior(build_model(X, 2), em, random_seed=1)  # doctest: +SKIP
    >>> idata.posterior["means"] - idata.em["means"]  # same dims: broadcasts  # doctest: +SKIP
    """
    _check_arguments(sampler, backend, draws, tune, chains, target_accept, precondition, max_draws)
    spec = model_spec(model)
    if spec is None:
        raise ValueError(
            "sample_posterior samples the models bayesgmm.build_model makes (variables or "
            "potentials may be added to them): build the model with build_model."
        )
    if sampler == "nutpie":
        backend = resolve_backend(model, backend)
    for start in [em, *(starts or [])]:  # checks every start against the model before work
        em_initial_values(model, start)
    if random_seed is None:
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    run = dict(
        draws=draws,
        tune=tune,
        chains=chains,
        seed=int(np.random.SeedSequence(random_seed).generate_state(1)[0] >> 1),
        target_accept=target_accept,
        progressbar=progressbar,
    )
    kernel = sampler == "nutpie" and backend == "kernel"
    limits = threadpool_limits(limits=1, user_api="blas")
    with limits, from_below("sampling"), _quiet_arviz(), _responsive_gil():
        every, approxes, dropped = _usable_starts(model, em, starts or [], precondition, kernel)
        starts = every[1:]
        run["tune"] = tune = max(map(pre.default_tune, approxes)) if tune is None else tune
        if target_accept is None:
            target_accept = max(map(pre.default_target_accept, approxes))
        run["target_accept"] = target_accept
        options = (model, sampler, backend, compile_cache)
        if starts:
            approx_of = {id(s): a for s, a in zip(every, approxes, strict=True)}
            sample_all = functools.partial(_sample_groups, options, approx_of)
            idata, interrupted = sample_groups(sample_all, every, run)
        else:
            idata, interrupted = _sample(*options, em, run, approxes[0], watch=True)
        restarted = {}
        if kernel:  # nutpie's model whitened by a Laplace (or draws'), for the runs below
            compile_one = functools.partial(_kernel_compiled, model, em, log_density_for(model))
        if kernel and not interrupted and any(a is not None for a in approxes):
            idata, restarted = drift.run_again_if_left(idata, approxes, compile_one, run)
            interrupted = not drift.complete(idata, draws)  # Ctrl-C in a second run
        kept = keep_finished_draws(idata) if interrupted else (draws, chains)
        if kept[0] == 0:
            raise SamplingInterrupted(
                "sampling was interrupted before any draw was finished (still tuning): "
                "nothing to keep"
            )
        results = functools.partial(_results, model=model, em=em, kernel=kernel)
        raw, (idata, switched) = idata, results(idata)
        if kernel and not interrupted:
            budget = max_draws or followup.BUDGET * draws
            early, darted = darting.before_follow_ups(
                raw, (idata, switched), results, model, run, budget
            )
            restarted.update(darted)
            if early:
                idata, switched = early
            else:
                raw, idata, switched, followed = followup.follow_up(
                    raw, (idata, switched), results, compile_one, run, budget
                )
                restarted.update(followed)
                idata, switched, darted = darting.refine(
                    raw, (idata, switched), results, model, run, budget
                )
                restarted.update(darted)
            idata, switched, refined = independence.refine(
                raw, (idata, switched), results, model, run, budget
            )
            restarted.update(refined)
        unwhitened_floored = kernel and approxes[0] is None and _floored_start(model, em)
        table = get_attr(idata, "modes")
        if check and table:
            _warn_modes(pd.DataFrame(table))
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
            **pre.precondition_attrs(approxes[0]),
            "start": _start_description(len(every), approxes[0], unwhitened_floored),
            **({"starts_dropped": dropped} if dropped else {}),
            **(restarted or {}),
            "relabelled_draws_per_chain": switched["relabelled_draws"].tolist(),
            "priors": (priors or spec.priors).to_json(),
            "versions": versions(),
        },
    )
    if interrupted:
        _mark_partial(idata, kept, draws, chains)
    if check:
        check_sampling(idata)
    return idata


# CPython's GIL switch interval while sampling (its default is 5 ms; see :func:`_responsive_gil`).
_SAMPLING_SWITCH_INTERVAL = 1e-4


@contextlib.contextmanager
def _responsive_gil(interval: float = _SAMPLING_SWITCH_INTERVAL) -> Iterator[None]:
    """CPython's thread switch interval at ``interval`` seconds inside, restored after.

    With the Python callback (``_kernel_compiled(..., native=False)``, or a nutpie without the
    entry points :mod:`bayesgmm._native` uses; the compiled callbacks take no GIL) nutpie's
    chains call bayesgmm's log density from Rust threads: a few microseconds of
    Python around a GIL-free Numba kernel, so every gradient takes the GIL back. While the main
    thread runs Python of its own (the left-mode watcher's look every 2 s, the progress bar), a
    chain waiting for the GIL waits up to the switch interval for it: at CPython's
    5 ms, about one gradient per chain per 5 ms instead of one per 10-50 us. At 0.1 ms the main
    thread hands the GIL over within that. Measured with the same draws either way (load 3-4,
    A/B twice): MASS crabs K=3, seed 2, 92.3 and 83.7 s at 5 ms against 77.7 and 76.5 s;
    scikit-learn's diabetes K=3, seed 1, 20.2 and 18.4 s against 17.6 and 14.8 s. A profile
    of the crabs run (py-spy) had the chains' threads waiting for the GIL longer than they
    computed, and the main thread converting traces for a tenth of the run (since then the
    watcher reads one column, :func:`bayesgmm._drift.running_logp`).

    The interval is process-wide (``sys.setswitchinterval``); it is restored on exit, also
    after an error or Ctrl-C.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, previous))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def _quiet_arviz() -> Iterator[None]:
    """ArviZ guesses that dims are misnamed when there are fewer draws than chains (a run
    interrupted early); bayesgmm names them, so the guess is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found chain dimension to be longer")
        yield


def _results(raw: Tree, *, model: pm.Model, em: EMGaussianMixture, kernel: bool) -> tuple:
    """Finished results of a copy of the sampler's raw output, with the chains' modes
    recorded (no warning yet): ``(results, label switching summary)``."""
    idata = raw.copy(deep=True)
    if kernel:
        _decode_kernel_draws(idata, log_density_for(model), model.coords)
    scaling = model_spec(model).scaling
    switched = label_switching_summary(finish(idata, model, em, scaling, is_standardised=kernel))
    record_modes(idata, warn=False)
    return idata, switched


def _sample(model, sampler, backend, cache, em, run, approx=None, watch=False) -> tuple[Tree, bool]:
    """Run the chosen sampler from the EM start (or the mode ``approx``): (raw results,
    interrupted). ``watch``: stop as soon as a chain leaves the mode
    (:func:`bayesgmm._drift.stop_when_one_left`; one start only, so that the chains that left
    speak for the whole run)."""
    if sampler == "pymc":
        return _sample_pymc(model, em_initial_values(model, em), **run)
    wait = None
    if watch and approx is not None and backend == "kernel":
        wait = functools.partial(
            drift.stop_when_one_left,
            log_density=approx.log_density,
            n_dim=log_density_for(model).n_dim,
        )
    return _run_nutpie(_nutpie_model(model, backend, cache, em, approx), wait=wait, **run)


def _sample_groups(options: tuple, approx_of: dict, groups: list) -> tuple[list[Tree], bool]:
    """The chains of each group ``(start, run)`` (:func:`bayesgmm.modes.sample_groups`):
    nutpie's runs all at once (:func:`bayesgmm._backends.run_nutpie_together`), PyMC's one
    after another. ``approx_of``: each start's Laplace approximation, by ``id``."""
    model, sampler, backend, cache = options
    if sampler == "pymc":
        return one_after_another(
            lambda start, group: _sample(*options, start, group, approx_of[id(start)])
        )(groups)
    return run_nutpie_together(
        [(_nutpie_model(model, backend, cache, s, approx_of[id(s)]), g) for s, g in groups]
    )


def _nutpie_model(model, backend, cache, em, approx=None):
    """nutpie's compiled model from the EM start: the E-step kernel's, whitened by ``approx``
    (its mode the start) for the ``kernel`` backend, else PyMC's model compiled."""
    if backend == "kernel":
        return _kernel_compiled(model, em, log_density_for(model), approx)
    return _compiled_nutpie(model, em, backend, cache)


def _floored_start(model: pm.Model, em: EMGaussianMixture) -> bool:
    """Whether unwhitened chains started at the floored EM estimate (:func:`_kernel_start`)."""
    density = log_density_for(model)
    return _kernel_start(density, model, em, density.rows(*observed_rows(model)))[1]


def _start_description(n_starts: int, approx: pre.Laplace | None, floored: bool = False) -> str:
    """Where the chains started, for the attrs (``floored``: see :func:`_kernel_start`)."""
    plain = f"EM estimate{pre.FLOORED if floored else ''}, no jitter"
    one = pre.precondition_attrs(approx).get("start", plain)
    return one if n_starts == 1 else f"{n_starts} distinct EM optima, round robin; each: {one}"


def _usable_starts(model, em, starts: list, precondition: str, kernel: bool) -> tuple:
    """The starts chains can use, their Laplace approximations, and what was dropped.

    EM's estimate must be usable (:func:`_kernel_start` raises, saying why, when it is not);
    another optimum where sampling cannot start (a density flat in some direction there) is
    dropped rather than stopping the run, not moved off its flat direction: its chains start
    at the usable ones (MASS michelson, K = 2: one of the other optima was the one-component
    fit as two identical halves, where the weights' slope is exactly 0: a saddle, not a
    mode). ``dropped``: the dropped starts' positions in ``starts`` and the reason, as
    ``[[index, reason], ...]``.
    """
    if not kernel:
        return [em, *starts], [None] * (1 + len(starts)), []
    every, approxes, dropped = [em], [_kernel_laplace(model, em, precondition)], []
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    for index, start in enumerate(starts):
        problem = _usable_point(density, model, start, rows, nudge=False)[2]
        if problem:
            dropped.append([index, f"the posterior density there is {problem}"])
            continue
        every.append(start)
        approxes.append(_kernel_laplace(model, start, precondition))
    return every, approxes, dropped


def _kernel_laplace(model, em, precondition: str) -> pre.Laplace | None:
    """Check the EM start, then the Laplace approximation NUTS is whitened with (or None)."""
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    start, floored = _kernel_start(density, model, em, rows)
    floor = pre.RETRY_FLOOR
    retry = None if floored else lambda: _flat_start(model, em, floor)
    approx = pre.precondition_for(density, rows, start, precondition, retry)
    return dataclasses.replace(approx, retried=True) if approx is not None and floored else approx


def _mark_partial(idata: Tree, kept: tuple[int, int], draws: int, chains: int) -> None:
    """Record and announce what an interrupted run kept (the results are returned)."""
    n, m = kept
    note = f"interrupted (Ctrl-C): kept the first {n} of {draws} draws in {m} of {chains} chains"
    set_attrs(idata, {"interrupted": note, "draws_kept": n, "chains_kept": m})
    warn(
        f"Sampling was {note}. The results are partial: the diagnostics say how far to trust "
        "them; run again to completion for final results.",
        SamplingWarning,
    )
