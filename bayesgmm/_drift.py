"""Chains that leave the posterior mode they were whitened at, and their second run.

NUTS is whitened by the Laplace approximation at the posterior mode found from EM
(:mod:`bayesgmm._precondition`). Where that mode holds little of the posterior (an overfitted
mixture: with a Dirichlet concentration below half a component's parameter count, the posterior
prefers to empty surplus components, Rousseau & Mengersen 2011), chains leave it during tuning
or drawing for a region the curvature at the mode says nothing about: a near-empty component's
parameters spread to their prior, fifty times wider than the metric expects, and NUTS
random-walks there (benchmarks/results/bench_mcmc_drift.txt: MASS crabs, K = 4).

Under the Laplace approximation ``log p`` of a draw is ``log p(mode) - chi2_n / 2`` (mean
``n / 2`` below the mode, sd ``sqrt(n / 2)``, ``n`` the unconstrained dimension).
:func:`left_mode` flags the chains whose mean ``log p`` over the second half of their kept draws
lies more than :data:`LEFT_MODE_SDS` of those sds below that mean. :func:`restart_points` then
gives each chain a new start and metric from its own draws (their mean and covariance, in the
unconstrained space), so a second run tunes and draws where the chain actually went.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from ._idata import Tree, get_group, new_tree, replace_group
from ._precondition import Laplace

__all__ = [
    "LEFT_MODE_SDS",
    "RERUN_TUNE",
    "chain_modes",
    "complete",
    "concat_chains",
    "depth",
    "left_mode",
    "replace_chains",
    "restart_points",
    "run_again_if_left",
    "run_parallel",
]

# chains' mean log p this many sds of chi2_n / 2 below the Laplace mean count as having left
# (benchmarks/results/bench_mcmc_drift.txt: healthy chains within ..., crabs' drifted ones ...)
LEFT_MODE_SDS = 3.0
# tuning steps of the second run, whose metric comes from the chains' own draws
RERUN_TUNE = 300


def depth(logp: np.ndarray, modes: Sequence[float], n_dim: int) -> np.ndarray:
    """How far below the Laplace approximation's typical set each chain sits: the mean
    ``log p`` of the second half of its finished draws minus ``log p(mode) - n_dim / 2``, in sds of
    ``chi2_n / 2`` (about 0 for draws of the approximation itself).

    Parameters
    ----------
    logp : ndarray of shape (n_chains, n_draws)
        The log posterior density of each kept draw (nutpie's ``logp`` statistic).
    modes : sequence of float
        Each chain's log density at the mode it was whitened at.
    n_dim : int
        Length of the unconstrained vector.

    Returns
    -------
    ndarray of shape (n_chains,)

    Examples
    --------
    >>> depth(np.array([[-14.0] * 10, [-34.0] * 10]), [-10.0, -10.0], 8).tolist()
    [0.0, -10.0]
    """
    halves = [_second_half(chain) for chain in np.asarray(logp, dtype=float)]
    means = np.array([half.mean() if half.size else np.nan for half in halves])
    expected = np.asarray(modes, dtype=float) - 0.5 * n_dim
    return (means - expected) / np.sqrt(0.5 * n_dim)


def _second_half(values: np.ndarray) -> np.ndarray:
    """The second half of a chain's finished draws (nutpie pads a chain stopped early with
    NaN after its last draw), along the first axis."""
    finished = values[np.all(np.isfinite(values.reshape(len(values), -1)), axis=1)]
    return finished[len(finished) // 2 :]


def left_mode(logp: np.ndarray, modes: Sequence[float], n_dim: int) -> np.ndarray:
    """Which chains left the Laplace approximation's typical set: :func:`depth` below
    ``-LEFT_MODE_SDS`` (same parameters; a bool per chain).

    Examples
    --------
    >>> logp = np.array([[-15.0] * 10, [-40.0] * 10])
    >>> left_mode(logp, [-10.0, -10.0], 8).tolist()
    [False, True]
    """
    return depth(logp, modes, n_dim) < -LEFT_MODE_SDS


def restart_points(flat: np.ndarray) -> list[Laplace]:
    """Each chain's start and whitening for a second run, from its own kept draws.

    The second half of a chain's finished draws (unconstrained, ``(n_chains, n_draws,
    n_dim)``, NaN after the last draw of a chain stopped early) gives
    the start (their mean) and the factor (the Cholesky factor of their covariance, shrunk
    towards its diagonal by ``n_dim / n_draws`` so that few draws still give a usable one).
    ``kind`` is ``"draws"``.
    """
    out = []
    for chain in np.asarray(flat, dtype=float):
        tail = _second_half(chain)
        n, n_dim = tail.shape
        covariance = np.cov(tail.T) if n > 1 else np.eye(n_dim)
        shrink = min(1.0, n_dim / max(n, 1))
        covariance = (1.0 - shrink) * covariance + shrink * np.diag(np.diag(covariance))
        covariance += 1e-10 * np.eye(n_dim)
        factor = np.linalg.cholesky(covariance)
        condition = float(np.linalg.cond(covariance))
        out.append(Laplace(tail.mean(axis=0), factor, "draws", np.nan, condition, 0))
    return out


def complete(idata: Tree, draws: int) -> bool:
    """Whether every chain holds ``draws`` finished draws (not a run stopped early, nor one
    whose second run Ctrl-C stopped)."""
    logp = get_group(idata, "sample_stats")["logp"].values
    return logp.shape[-1] >= draws and bool(np.all(np.isfinite(logp)))


def chain_modes(idata: Tree, approxes: Sequence[Laplace | None]) -> list[float]:
    """Each chain's log density at the mode it was whitened at (``sample_stats["start"]``
    says which start's; NaN for a start without one, which is never judged)."""
    stats = get_group(idata, "sample_stats")
    starts = stats["start"].values if "start" in stats else np.zeros(stats.sizes["chain"], int)
    return [np.nan if approxes[s] is None else approxes[s].log_density for s in starts]


def run_parallel(runs: Sequence[Callable[[], object]]) -> list:
    """Start every sampler (``run()`` returns nutpie's background sampler) and wait for all;
    Ctrl-C or a failure cancels the ones still running."""
    samplers = []
    try:
        for run in runs:
            samplers.append(run())
        return [sampler.wait() for sampler in samplers]
    except BaseException:
        for sampler in samplers:
            sampler.cancel()
        raise


def concat_chains(trees: list[Tree]) -> Tree:
    """Groups with a ``chain`` dim concatenated along it (chains renumbered), the others from
    the first tree."""
    groups = {}
    for name, node in trees[0].children.items():
        first = node.to_dataset()
        if "chain" not in first.dims:
            groups[name] = first
            continue
        parts = [t[name].to_dataset() for t in trees if name in t.children]
        joined = xr.concat(parts, dim="chain", join="outer", combine_attrs="override")
        groups[name] = joined.assign_coords(chain=np.arange(joined.sizes["chain"]))
    return new_tree(groups)


def replace_chains(idata: Tree, new: dict[int, Tree]) -> Tree:
    """``idata`` with chain ``c`` replaced by the one-chain results ``new[c]`` (the chains'
    ``sample_stats["start"]`` kept)."""
    stats = get_group(idata, "sample_stats")
    start = stats["start"].values if "start" in stats else None
    n_chains = stats.sizes["chain"]
    parts = [new.get(c) or idata.isel(chain=[c], missing_dims="ignore") for c in range(n_chains)]
    for c, part in enumerate(parts):
        if "start" in part["sample_stats"]:
            parts[c] = part.copy()
            parts[c]["sample_stats"] = part["sample_stats"].to_dataset().drop_vars("start")
    out = concat_chains(parts)
    if start is not None:
        joined = get_group(out, "sample_stats").copy()
        joined["start"] = ("chain", start)
        replace_group(out, "sample_stats", joined)
    return out


def run_again_if_left(
    idata: Tree,
    approxes: Sequence[Laplace | None],
    compile_one: Callable[[Laplace], object],
    run: dict,
) -> tuple[Tree, dict]:
    """When a chain left the mode it was whitened at, run every chain again from its own draws.

    Every chain, the ones that stayed too, starts again at the mean of the second half of its
    own finished draws, whitened by their covariance (:func:`restart_points`), with the same
    :data:`RERUN_TUNE` tuning steps (at most ``run["tune"]``) and ``run["draws"]`` draws: all
    kept chains are tuned alike, so R-hat and ESS compare like with like.

    Parameters
    ----------
    idata : xarray.DataTree
        nutpie's results of the E-step kernel's model (``posterior["unconstrained_point"]``,
        ``sample_stats["logp"]``; a chain stopped early is padded with NaN).
    approxes : sequence of Laplace or None
        The approximation of each start (``sample_stats["start"]`` indexes it).
    compile_one : callable
        nutpie's compiled model whitened by a :class:`Laplace` (its ``mode`` the start).
    run : dict
        ``draws``, ``tune``, ``target_accept``, ``seed`` and ``progressbar`` of the first run.

    Returns
    -------
    (results, attrs)
        The results (the first run's when no chain left, or when Ctrl-C stopped the second
        run: then possibly short, for the caller to mark as partial) and the attrs that say
        what happened when the chains ran again (else empty): ``left_mode_depth``, each
        chain's :func:`depth` in the first run, and ``left_mode_rerun_tune``.
    """
    import nutpie

    flat = get_group(idata, "posterior")["unconstrained_point"]
    flat = flat.transpose("chain", "draw", ...).values
    logp = get_group(idata, "sample_stats")["logp"].transpose("chain", "draw").values
    chain_depth = depth(logp, chain_modes(idata, approxes), flat.shape[2])
    if not np.any(chain_depth < -LEFT_MODE_SDS):
        return idata, {}
    tune = min(int(run["tune"]), RERUN_TUNE)
    options = {"draws": run["draws"], "tune": tune, "target_accept": run["target_accept"]}

    def start(chain: int, point: Laplace) -> Callable[[], object]:
        return lambda: nutpie.sample(
            compile_one(point),
            chains=1,
            seed=(int(run["seed"]) + 104729 * (chain + 1)) % 2**31,
            progress_bar=run["progressbar"],
            save_warmup=False,
            blocking=False,
            **options,
        )

    # every chain, so that all are tuned alike
    runs = [start(c, point) for c, point in enumerate(restart_points(flat))]
    try:
        again = run_parallel(runs)
    except KeyboardInterrupt:  # keep the first run's finished draws
        return idata, {}
    attrs = {
        "left_mode_depth": np.round(chain_depth, 2).tolist(),
        "left_mode_rerun_tune": tune,
    }
    return replace_chains(idata, dict(enumerate(again))), attrs
