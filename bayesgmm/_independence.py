"""Independence Metropolis-Hastings after NUTS, for posteriors whose sub-modes NUTS crosses
rarely (issue 15).

When the NUTS follow-ups (:mod:`bayesgmm._followup`) leave R-hat or the ESS short of their
gates, NUTS is usually crossing between configurations of the mixture (a component that
swaps rows with another, a small component that empties) too rarely. Its draws still show
where the posterior mass lies, so a Gaussian mixture fitted to them in the unconstrained
space is a good *independence proposal* ``q``: each step proposes ``y ~ q`` from anywhere in
the posterior, whatever the current state, and accepts it with probability
``min(1, p(y) q(x) / (p(x) q(y)))``. ``q`` is fixed before the chains start, so each chain is
an exact MCMC kernel for the posterior (the NUTS draws only chose ``q``); one step costs one
log-density evaluation, where a NUTS draw costs 7-30 gradients.

The proposal (:func:`fit_proposal`) is scikit-learn's ``GaussianMixture`` (full covariances)
on the pooled draws of the final NUTS chains (all of them: a configuration a chain visited
only early is still in ``q``), its number of components chosen by BIC (1 to
:data:`MAX_COMPONENTS`, at most one per :data:`DRAWS_PER_COMPONENT` draws per dimension), each
covariance inflated by :data:`INFLATE`, plus a defensive wide component (the draws' mean,
:data:`WIDE_SCALE` times their covariance, weight :data:`WIDE_WEIGHT`) so that ``p / q`` stays
bounded in the tails.

Rounds (:func:`refine`): :data:`ROUND_STEPS` steps per chain, after which ``q`` is refitted
to the NUTS draws and round 1's second halves; then the kept run, as long as round 1's ESS
per step says the gates need (with :data:`ESS_MARGIN`), at most
:data:`MAX_STEPS_FACTOR` times ``max_draws`` steps per chain, thinned to ``draws`` draws per
chain; a kept run that fails the gates is followed by one sized from its own ESS, up to
:data:`MAX_KEPT_RUNS`. Every chain of every round starts at the corresponding NUTS chain's
last draw. The result replaces the NUTS result only when it meets the gates itself (R-hat,
bulk and tail ESS, one mode, no drifting chain); otherwise the NUTS result stays, and the
attrs say the step was tried.

Measured (``benchmarks/results/bench_mcmc_real.txt``, load 3-5): Old Faithful K=3, seed 2,
NUTS with its follow-ups 16.8 s, R-hat 1.064, bulk ESS 51; with this step 15.2 s, R-hat 1.006,
ESS 1446 (3.7 s of it here); MASS geyser K=3, seed 1: 17.7 s, R-hat 1.597 (two modes) ->
22.2 s, R-hat 1.006. Its blind spot: a configuration no NUTS chain visited has no component of
``q`` near it but the wide one, so the chains may never reach it and its mass is lost although
R-hat passes. Fitted on the second halves only, geyser K=3 seed 2 lost a configuration one
chain visited early (the first weight 4.8 Monte Carlo standard errors off); on every draw, it
is covered and the kept run needs 30000 steps (a second kept run). A rare configuration also
makes the ESS optimistic: geyser's first weight differs between seeds by 3.6-4.2 of the
reported standard errors (about 0.005; a 100000-step reference: 0.597).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

from ._followup import _flat, _gates, announce
from ._idata import Tree, get_attr, new_tree
from ._logdensity import log_density_for
from ._progress import progress_bar
from .diagnostics import draws_for_gates, gate_shortfalls, mode_failures
from .model import observed_rows

__all__ = [
    "DRAWS_PER_COMPONENT",
    "ESS_MARGIN",
    "INFLATE",
    "INTERRUPTED",
    "MAX_COMPONENTS",
    "MAX_DIM",
    "MAX_KEPT_RUNS",
    "MAX_STEPS_FACTOR",
    "MIN_ACCEPTANCE",
    "MIN_DRAWS_PER_DIM",
    "ROUND_STEPS",
    "WIDE_SCALE",
    "WIDE_WEIGHT",
    "Chain",
    "Proposal",
    "attempt",
    "blocked_text",
    "draws_blocks",
    "fit_proposal",
    "independence_chain",
    "raw_tree",
    "refine",
    "skip_reason",
]

# the step runs only for posteriors of at most this many unconstrained dimensions (a Gaussian
# mixture proposal fitted to a few thousand draws covers little of a larger space): MASS crabs
# (seed 1) tied K=3 (32 dimensions) and K=4 (38) failed NUTS (R-hat 1.27 and 1.10) and passed
# every gate with this step (acceptance 6-13%, 8-18 s); above 38, the step was kept on no
# posterior tried and accepted under 1% (planets full K=4, 39: 0.7 s; airquality full K=4,
# 59: 8 s; crabs full K=4, 83: 32 s) ...
MAX_DIM = 40
# ... and with at least this many NUTS draws per dimension, all chains pooled
MIN_DRAWS_PER_DIM = 40
# proposal components: chosen by BIC from 1 up to this, at most one per this many draws per dim
MAX_COMPONENTS = 8
DRAWS_PER_COMPONENT = 10
# each fitted covariance times this (a proposal a little wider than the target mixes better)
INFLATE = 1.5
# the defensive component: the draws' mean, this times their covariance, this weight
WIDE_SCALE = 4.0
WIDE_WEIGHT = 0.1
# steps per chain of the first round (it only refits the proposal and measures the ESS)
ROUND_STEPS = 5000
# the kept run has at most this times max_draws steps per chain
MAX_STEPS_FACTOR = 10
# below this acceptance rate (any chain) the proposal misses the posterior: keep NUTS
MIN_ACCEPTANCE = 0.05
# the kept run is sized for this times the ESS the gates ask for: round 1's ESS, from 5000
# steps of a chain that accepts 20% of its proposals, is a noisy guide (Old Faithful K=3:
# round 1 promised 500 at 5000 steps, the kept run of 5000 gave 373)
ESS_MARGIN = 2.0
# each run's second halves join the refit's pool thinned by this
REFIT_THIN = 4
# kept runs at most: a run that fails the gates is followed by one sized from its own ESS per
# step (round 1's 5000 steps can see too few crossings between configurations to size it:
# geyser K=3, seed 2, a kept run of 4000 steps gave R-hat 1.040, ESS 48), at most the cap; a
# run at the cap is followed too, q refitted to its draws (Old Faithful K=3, seed 2, after
# NUTS at R-hat 1.076, ESS 41: the first kept run, 30000 steps, gave ESS 283)
MAX_KEPT_RUNS = 2
# log densities evaluated between progress bar updates
_BLOCK = 500
# a small ridge on the fitted covariances (draws' variances are far larger)
_REG_COVAR = 1e-8
# mixed into the run's seed, so this step's random numbers differ from NUTS's
_SALT = 15


class Proposal:
    """A Gaussian mixture with fixed parameters: batched log density and sampling.

    Parameters
    ----------
    weights : array of shape (n_components,)
        Summing to 1.
    means : array of shape (n_components, n_dim)
    covariances : array of shape (n_components, n_dim, n_dim)
        Positive definite.

    Examples
    --------
    >>> q = Proposal([1.0], [[0.0]], [[[1.0]]])
    >>> round(float(q.log_density(np.zeros((1, 1)))[0]), 4)
    -0.9189
    """

    def __init__(self, weights, means, covariances) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.chols = np.linalg.cholesky(np.asarray(covariances, dtype=np.float64))
        diagonals = np.diagonal(self.chols, axis1=1, axis2=2)
        n_dim = self.means.shape[1]
        self._norms = (
            np.log(self.weights) - np.log(diagonals).sum(axis=1) - 0.5 * n_dim * np.log(2 * np.pi)
        )

    @property
    def n_components(self) -> int:
        return self.weights.size

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Log density at the rows of ``x`` (``(n, n_dim)``): shape ``(n,)``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        terms = np.empty((self.n_components, x.shape[0]))
        for k in range(self.n_components):  # one triangular solve per component, all rows
            z = solve_triangular(self.chols[k], (x - self.means[k]).T, lower=True)
            terms[k] = self._norms[k] - 0.5 * np.einsum("ij,ij->j", z, z)
        return logsumexp(terms, axis=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, shape ``(n, n_dim)``."""
        which = rng.choice(self.n_components, size=n, p=self.weights)
        noise = rng.standard_normal((n, self.means.shape[1]))
        return self.means[which] + np.einsum("nij,nj->ni", self.chols[which], noise)


def fit_proposal(
    draws: np.ndarray, seed: int, *, components: int | None = None, inflate: float = INFLATE
) -> Proposal:
    """The proposal for posterior ``draws`` (``(n, n_dim)``, unconstrained).

    A full-covariance Gaussian mixture fitted by scikit-learn (``random_state=seed``), with
    ``components`` components or, by default, as many as BIC prefers (1 to
    :data:`MAX_COMPONENTS`, at most one per :data:`DRAWS_PER_COMPONENT` draws per dimension);
    each covariance times ``inflate``; and a wide component (the draws' mean, :data:`WIDE_SCALE`
    times their covariance) of weight :data:`WIDE_WEIGHT`.
    """
    n, n_dim = draws.shape
    if components is None:
        most = max(1, min(MAX_COMPONENTS, n // (DRAWS_PER_COMPONENT * n_dim)))
        fits = [_mixture(draws, k, seed) for k in range(1, most + 1)]
        fitted = min(fits, key=lambda f: f.bic(draws))
    else:
        fitted = _mixture(draws, components, seed)
    wide = WIDE_SCALE * np.atleast_2d(np.cov(draws.T))
    return Proposal(
        np.append((1 - WIDE_WEIGHT) * fitted.weights_, WIDE_WEIGHT),
        np.vstack([fitted.means_, draws.mean(axis=0)]),
        np.concatenate([inflate * fitted.covariances_, wide[None]]),
    )


def _mixture(draws: np.ndarray, k: int, seed: int) -> GaussianMixture:
    mixture = GaussianMixture(k, covariance_type="full", random_state=seed, reg_covar=_REG_COVAR)
    return mixture.fit(draws)


@dataclass
class Chain:
    """One chain of a sampler of bayesgmm's own: ``draws`` ``(steps, n_dim)``, ``accepted``
    and ``logp`` ``(steps,)`` (whether each step's proposal was accepted; the log density of
    each draw); for Hamiltonian steps (:mod:`bayesgmm._darting`) also ``diverging`` and
    ``energy`` ``(steps,)``."""

    draws: np.ndarray
    accepted: np.ndarray
    logp: np.ndarray
    diverging: np.ndarray | None = None
    energy: np.ndarray | None = None

    @property
    def acceptance(self) -> float:
        return float(self.accepted.mean())


def independence_chain(
    log_p: Callable[[np.ndarray], float],
    proposal: Proposal,
    start: np.ndarray,
    steps: int,
    rng: np.random.Generator,
    advance: Callable[[int], None] | None = None,
) -> Chain:
    """``steps`` independence Metropolis-Hastings steps from ``start``.

    All candidates are drawn first (``proposal`` is fixed), their log densities evaluated one
    per step (``advance(n)`` is called after every ``n`` evaluations, for a progress bar), then
    each step accepts its candidate with probability ``min(1, p(y) q(x) / (p(x) q(y)))``.

    Parameters
    ----------
    log_p : callable
        The target's log density (up to a constant) at one point; ``-inf`` or NaN rejects.
    proposal : Proposal
    start : array of shape (n_dim,)
    steps : int
    rng : numpy.random.Generator
    advance : callable, optional

    Returns
    -------
    Chain
    """
    candidates = proposal.sample(rng, steps)
    log_p_y = np.empty(steps)
    for i, y in enumerate(candidates):
        log_p_y[i] = log_p(y)
        if advance is not None and (i + 1) % _BLOCK == 0:
            advance(_BLOCK)
    if advance is not None:
        advance(steps % _BLOCK)
    log_ratio = log_p_y - proposal.log_density(candidates)
    start_p = log_p(start)
    current = start_p - proposal.log_density(start[None])[0]
    index = np.full(steps, -1)
    accepted = np.zeros(steps, dtype=bool)
    for i, threshold in enumerate(np.log(rng.uniform(size=steps))):
        accepted[i] = threshold < log_ratio[i] - current
        if accepted[i]:
            current = log_ratio[i]
        index[i] = i if accepted[i] else (index[i - 1] if i else -1)
    kept = index >= 0
    draws = np.where(kept[:, None], candidates[np.maximum(index, 0)], start)
    return Chain(draws, accepted, np.where(kept, log_p_y[np.maximum(index, 0)], start_p))


def raw_tree(chains: list[Chain], thin: int = 1) -> Tree:
    """nutpie-like raw results of independence chains (every ``thin``-th step, the last
    included): ``posterior["unconstrained_point"]`` ``(chain, draw, dim)`` and
    ``sample_stats`` ``accepted`` and ``logp`` (as :func:`bayesgmm._followup._flat` reads),
    and ``diverging``, all False for independence steps (they follow no trajectory, so none
    diverges; a Hamiltonian chain's own, and its ``energy``, when it has them), so that code
    written for NUTS results (ArviZ's trace plots, a user's
    ``sample_stats["diverging"].sum()``) reads the kept draws alike."""
    picked = slice(thin - 1, None, thin)
    theta = np.stack([c.draws[picked] for c in chains])
    coords = {"chain": np.arange(theta.shape[0]), "draw": np.arange(theta.shape[1])}
    posterior = xr.Dataset({"unconstrained_point": (("chain", "draw", "dim"), theta)}, coords)
    accepted = np.stack([c.accepted[picked] for c in chains])
    diverging = np.zeros_like(accepted, dtype=bool)
    if chains[0].diverging is not None:
        diverging = np.stack([c.diverging[picked] for c in chains])
    stats = {
        "accepted": (("chain", "draw"), accepted),
        "logp": (("chain", "draw"), np.stack([c.logp[picked] for c in chains])),
        "diverging": (("chain", "draw"), diverging),
    }
    if chains[0].energy is not None:
        stats["energy"] = (("chain", "draw"), np.stack([c.energy[picked] for c in chains]))
    sample_stats = xr.Dataset(stats, coords)
    return new_tree({"posterior": posterior, "sample_stats": sample_stats})


def skip_reason(idata: Tree, raw: Tree, run: dict, max_draws: int) -> tuple[str, str]:
    """Whether the step runs after the NUTS follow-ups: ``(failing, blocked)``.

    ``failing`` names the R-hat and ESS gates the results fail ("" when there is nothing to
    do: the gates are met, or only divergences fail, or the chains are in several modes that
    each converge apart from divergences, or ``max_draws == draws``: follow-ups off).
    ``blocked`` says why the step does not run although gates fail ("" when it runs): more
    than :data:`MAX_DIM` dimensions, one chain, fewer than :data:`MIN_DRAWS_PER_DIM` draws
    per dimension, all chains pooled.

    Parameters
    ----------
    idata : xarray.DataTree
        The finished results (modes recorded).
    raw : xarray.DataTree
        Their raw unconstrained draws.
    run : dict
        With ``draws``, the draws per chain asked for.
    max_draws : int

    Returns
    -------
    (str, str)
    """
    if max_draws <= run["draws"]:
        return "", ""
    failing = ", ".join(gate_shortfalls(_gates(idata)))
    table = get_attr(idata, "modes") or []
    if table and not any(f for row in table for f in mode_failures(row) if "diverg" not in f):
        return "", ""  # several modes, each converged: reported as such, not mixed
    n_dim = _flat(raw).shape[2]
    blocked = {
        f"{n_dim} dimensions (above {MAX_DIM})": n_dim > MAX_DIM,
        **draws_blocks(raw, MIN_DRAWS_PER_DIM),
    }
    return failing, blocked_text(blocked)


def draws_blocks(raw: Tree, per_dim: int) -> dict[str, bool]:
    """What a sampler fitted to the NUTS draws needs of them, as ``{reason: blocked}``: two
    chains or more, and ``per_dim`` draws per dimension, all chains pooled."""
    chains, n_draws, n_dim = _flat(raw).shape
    pooled = chains * n_draws
    return {
        "one chain": chains < 2,
        f"{pooled} NUTS draws for {n_dim} dimensions (fewer than {per_dim} per dimension)": (
            pooled < per_dim * n_dim
        ),
    }


def blocked_text(blocked: dict[str, bool]) -> str:
    """The reasons that hold, joined ("" when none does)."""
    return ", ".join(name for name, hit in blocked.items() if hit)


def refine(
    raw: Tree,
    finished: tuple,
    results: Callable[[Tree], tuple],
    model,
    run: dict,
    max_draws: int,
) -> tuple[Tree, object, dict]:
    """Independence Metropolis-Hastings after the NUTS follow-ups, when :func:`skip_reason`
    lets it run; the result replaces NUTS's only when it meets the gates itself.

    Parameters
    ----------
    raw : xarray.DataTree
        The final NUTS chains' raw results (unconstrained draws), as
        :func:`bayesgmm._followup.follow_up` returns them.
    finished : tuple
        ``results(raw)``: the finished results and their label switching summary.
    results : callable
        Raw results to ``(finished results, label switching summary)`` (modes recorded).
    model : pymc.Model
        The :func:`bayesgmm.build_model` model (its E-step kernel log density).
    run : dict
        The first run's ``draws``, ``seed`` and ``progressbar``.
    max_draws : int
        ``max_draws == draws`` turns the step off; the kept run has at most
        :data:`MAX_STEPS_FACTOR` times as many steps per chain.

    Returns
    -------
    (results, label switching summary, attrs)
        ``attrs``: ``independence_mh`` when the step ran or was blocked (steps per chain of
        each round, thin, proposal components, acceptance per chain, seconds, kept, reason,
        and, when kept, ``nuts_modes``: how many modes the NUTS chains ended in, if several),
        and ``draws_sampler="independence_mh"`` when its result was kept. Ctrl-C during the
        step keeps the NUTS result.
    """
    failing, blocked = skip_reason(finished[0], raw, run, max_draws)
    if not failing:
        return *finished, {}
    record = {"kept": False, "reason": f"{failing} after NUTS; not run: {blocked}"}
    if blocked:
        return *finished, {"independence_mh": record}
    imh = attempt(
        lambda: _rounds(raw, results, model, run, max_draws, record),
        record,
        failing,
        "independence MH",
    )
    if imh is None:
        return *finished, {"independence_mh": record}
    table = get_attr(finished[0], "modes") or []
    if table:  # kept draws that cross between NUTS's modes show one mode: say there were more
        record["nuts_modes"] = len(table)
    return *imh, {"independence_mh": record, "draws_sampler": "independence_mh"}


# the reason a step records when Ctrl-C stopped it
INTERRUPTED = "interrupted (Ctrl-C): kept the NUTS result"


def attempt(step: Callable[[], tuple | None], record: dict, failing: str, name: str):
    """Run a sampler after NUTS and record it: ``step()`` gives its finished results and their
    verdict ``(passed, text, gates)``, or None when it gave up (``record["reason"]`` says why).

    Fills ``record``'s ``seconds``, ``kept`` and ``reason`` (prefixed with the gates NUTS
    failed, ``failing``); Ctrl-C during the step keeps the NUTS result. Returns the finished
    results when they met the gates, else None.
    """
    started = time.perf_counter()
    try:
        out = step()
    except KeyboardInterrupt:
        out, record["reason"] = None, INTERRUPTED
    record["seconds"] = round(time.perf_counter() - started, 1)
    if out is not None:
        out, (passed, text, _) = out
        record["kept"] = passed
        record["reason"] = f"{name}: {text}" + ("" if passed else "; kept NUTS")
    record["reason"] = f"{failing} after NUTS; {record['reason']}"
    return out if record.get("kept") else None


def _rounds(raw, results, model, run, max_draws, record) -> tuple | None:
    """Round 1, then kept runs (:func:`refine`), each sized from the previous run's ESS per
    step (at most the cap) with ``q`` refitted to the draws so far, until one meets the gates
    or :data:`MAX_KEPT_RUNS` have run: the last one's finished results and their
    :func:`_verdict`, or None when a round's acceptance is below :data:`MIN_ACCEPTANCE`
    (``record`` says)."""
    density = log_density_for(model)
    rows = density.rows(*observed_rows(model))
    log_p = lambda x: density(x, rows)[0]  # noqa: E731
    flat, draws = _flat(raw), int(run["draws"])
    starts, pool = flat[:, -1], flat.reshape(-1, flat.shape[2])  # every draw after warm-up
    seeds = np.random.SeedSequence([int(run["seed"]), _SALT]).generate_state(1 + MAX_KEPT_RUNS)
    cap = MAX_STEPS_FACTOR * max_draws // draws * draws
    steps = min(ROUND_STEPS, cap)
    announce(run, f"independence Metropolis-Hastings, round 1: {steps} steps per chain")
    chains = _round(log_p, pool, starts, steps, seeds[0], run, record)
    if chains is None:
        return None
    verdict = _verdict(results(raw_tree(chains, max(1, steps // draws)))[0])
    for seed in seeds[1:]:
        wanted = draws_for_gates(steps, verdict[2]["ess"], ESS_MARGIN)
        thin = int(np.clip(np.ceil(wanted / draws), 1, cap // draws))
        seen = np.stack([c.draws[len(c.draws) // 2 :: REFIT_THIN] for c in chains])
        pool = np.concatenate([pool, seen.reshape(-1, pool.shape[1])])
        steps = thin * draws
        announce(run, f"independence Metropolis-Hastings: {steps} steps per chain, thin {thin}")
        chains = _round(log_p, pool, starts, steps, seed, run, record)
        if chains is None:
            return None
        record["thin"] = thin
        finished = results(raw_tree(chains, thin))
        verdict = _verdict(finished[0])
        if verdict[0]:
            break
    return finished, verdict


def _round(log_p, pool, starts, steps, seed, run, record) -> list[Chain] | None:
    """Independence chains from ``starts`` with a proposal fitted to ``pool``; None when
    their acceptance is too low. Appends what ran to ``record``."""
    proposal = fit_proposal(pool, int(seed))
    rng = np.random.default_rng(seed)
    with progress_bar(
        len(starts) * steps, "independence MH", enabled=bool(run.get("progressbar"))
    ) as bar:
        chains = [independence_chain(log_p, proposal, s, steps, rng, bar.advance) for s in starts]
    acceptance = [round(c.acceptance, 3) for c in chains]
    record.setdefault("steps_per_chain", []).append(steps)
    record.setdefault("components", []).append(proposal.n_components - 1)
    record["acceptance"] = acceptance
    if min(acceptance) < MIN_ACCEPTANCE:
        record["reason"] = f"acceptance {min(acceptance):.3f} below {MIN_ACCEPTANCE}: kept NUTS"
        return None
    return chains


def _verdict(idata: Tree) -> tuple[bool, str, dict]:
    """Whether independence chains' results meet the gates (R-hat, bulk and tail ESS, one
    mode, no drifting chain), their numbers as text, and the gates' values."""
    gates = _gates(idata)
    short = gate_shortfalls(gates)
    if gates["n_modes"] > 1:
        short.append(f"{gates['n_modes']} modes")
    if gates["drifted"]:
        short.append("a chain drifted")
    text = f"R-hat {gates['r_hat']:.3f}, ESS {gates['ess']:.0f}"
    return not short, text + (f" (fails: {', '.join(short)})" if short else ""), gates
