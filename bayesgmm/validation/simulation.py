"""The simulator: the study's fixed priors and truth, prior draws and simulated data sets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pymc.pytensorf import compile as compile_forward

from ..datasets import simulate_mixture
from ..model import build_model
from ..priors import DEFAULT_SD_PRIOR, GMMPriors

SBC_PRIORS = GMMPriors(
    weights_concentration=1.0, lkj_eta=2.0, means_loc=0.0, means_scale=3.0, sd_scale=1.0
)
"""The fixed priors of the calibration study (not data-scaled: the prior must not see the data)."""

SBC_PRIORS_IG = replace(SBC_PRIORS, sd_prior="inverse_gamma")
"""The study's priors with each variance ``~ InvGamma(3/2, 1)`` (``sd_scale`` 1: the variance's
median 0.85, near the HalfNormal(1)'s 0.45 for ``s^2``, with a heavier right tail)."""

SBC_PRIORS_RESOLUTION = replace(
    SBC_PRIORS, sd_prior="resolution", sd_floor=(0.3,), sd_floor_given_others=(0.3,)
)
"""The study's priors with each standard deviation's HalfNormal(1) times the barrier
``exp(-0.3^2 / s^2)`` (:attr:`GMMPriors.sd_floor`), and the full covariances' barrier on each
variance given the other feature of the same scale (:attr:`GMMPriors.sd_floor_given_others`):
fixed, as the prior must not see the data; the floors a feature rounded to steps of about
0.25, 30 rows sharing a value (also with the other feature), would get."""

STUDY_PRIORS = {
    "halfnormal": SBC_PRIORS,
    "inverse_gamma": SBC_PRIORS_IG,
    "resolution": SBC_PRIORS_RESOLUTION,
}
"""The study's priors by ``sd_prior`` (``python -m bayesgmm.validation --sd-prior``)."""

DEFAULT_STUDY_PRIORS = STUDY_PRIORS[DEFAULT_SD_PRIOR]
"""The study's priors with the package's default prior on the standard deviations
(:data:`bayesgmm.priors.DEFAULT_SD_PRIOR`): the default of every function of the study and of
its command line, so that the study validates the prior users get."""

FIXED_TRUTH = {
    "weights": [0.4, 0.6],
    "means": [[-2.0, 0.0], [2.0, 1.0]],
    "covariances": [[[1.0, 0.3], [0.3, 0.8]], [[0.6, -0.2], [-0.2, 0.9]]],
}
"""Parameters of the coverage-at-a-known-truth check: plausible under :data:`SBC_PRIORS`."""


def _placeholder_data(n_samples: int, n_features: int) -> np.ndarray:
    """Data of the right shape to build a model before any data are simulated (fixed, with
    independent columns: build_model refuses columns that repeat one another)."""
    return np.random.default_rng(0).standard_normal((n_samples, n_features))


# Passes of draw_prior's rejection, each of n_draws draws (acceptance 0.77 in the study).
_MAX_PASSES = 100
_DRAW_MODE = "FAST_COMPILE"


def draw_prior(
    priors: GMMPriors,
    n_draws: int,
    *,
    n_components: int = 2,
    n_features: int = 2,
    random_seed: Any = None,
) -> dict[str, np.ndarray]:
    """Parameters drawn from the model's own prior (forward draws of :func:`build_model`'s RVs).

    Where the model has the ``"resolution"`` prior's conditional barrier (a potential, a
    factor <= 1 of the density: :func:`bayesgmm._families.conditional_floor`), the draws are
    thinned by rejection with it, so they follow the model's prior exactly.

    Parameters
    ----------
    priors : GMMPriors
        The priors of the model to draw from (:data:`SBC_PRIORS` in the study).
    n_draws : int
        Number of parameter sets.
    n_components, n_features : int
        ``K`` and ``D`` of the mixture.
    random_seed : int or numpy.random.Generator, optional

    Returns
    -------
    dict
        ``weights (n_draws, K)``, ``means (n_draws, K, D)``, ``covariances (n_draws, K, D, D)``.

    Examples
    --------
    >>> from bayesgmm.validation import SBC_PRIORS, draw_prior
    >>> truths = draw_prior(SBC_PRIORS, 3, random_seed=0)
    >>> {name: values.shape for name, values in truths.items()}
    {'weights': (3, 2), 'means': (3, 2, 2), 'covariances': (3, 2, 2, 2)}
    """
    model = build_model(_placeholder_data(4, n_features), n_components, priors=priors)
    names = ("weights", "means", "covariances")
    graphs = [model[n] for n in names] + [p for p in model.potentials]
    rng = np.random.default_rng(random_seed)
    kept: list[list[np.ndarray]] = [[] for _ in names]
    # compiled once for every pass; PyTensor's Python linker: the CustomDist's draws run in
    # Python whatever the linker, and Numba's object-mode compile of them took ~7 s a call
    draw = compile_forward([], graphs, random_seed=int(rng.integers(2**31)), mode=_DRAW_MODE)
    for _ in range(_MAX_PASSES):
        values = [np.stack(v) for v in zip(*(draw() for _ in range(max(n_draws, 2))), strict=True)]
        accept = np.ones(values[0].shape[0], dtype=bool)
        for log_factor in values[len(names) :]:  # a factor <= 1 of the prior (the conditional
            accept &= np.log(rng.uniform(size=accept.size)) < log_factor  # barrier): rejection
        for store, v in zip(kept, values, strict=False):
            store.append(v[accept])
        if sum(len(v) for v in kept[0]) >= n_draws:
            break
    else:
        raise RuntimeError(
            f"draw_prior: the prior's barrier on each variance given the others accepted "
            f"{sum(len(v) for v in kept[0])} of {_MAX_PASSES * max(n_draws, 2)} draws, fewer than "
            f"{n_draws}: lower priors.sd_floor_given_others (it is far above the sd_scale)."
        )
    return {n: np.concatenate(v)[:n_draws] for n, v in zip(names, kept, strict=True)}


@dataclass(frozen=True)
class Simulation:
    """One simulated data set, the parameters behind it and a held-out point.

    Made by :func:`simulate`: ``X (N, D)`` is drawn from the mixture ``weights (K,)``,
    ``means (K, D)``, ``covariances (K, D, D)``; ``held_out (D,)`` from it too, or from
    independent parameters (what simulation-based calibration needs: see :func:`simulate`).

    Examples
    --------
    >>> from bayesgmm.validation import FIXED_TRUTH, simulate
    >>> sim = simulate(FIXED_TRUTH, 100, random_seed=0)
    >>> sim.X.shape, sim.held_out.shape, sim.weights.tolist()
    ((100, 2), (2,), [0.4, 0.6])
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    X: np.ndarray
    held_out: np.ndarray


def simulate(
    parameters: dict[str, np.ndarray],
    n_samples: int,
    *,
    random_seed: Any,
    held_out_from: dict[str, np.ndarray] | None = None,
) -> Simulation:
    """``n_samples`` rows drawn from the mixture ``parameters``, and one held-out row.

    The held-out row comes from ``held_out_from`` when given, else from ``parameters``.
    Simulation-based calibration needs the first: the log predictive density of a point drawn
    from the truth ranks high among posterior draws even when the posterior is exact (the
    point carries information about the truth that the posterior was not given: with the exact
    posterior of a Gaussian mean, 11 parameters and 100 rows, 17.5% of such ranks fall in the
    top tenth), so its rank would fail an exact fitter.

    Parameters
    ----------
    parameters : dict
        ``weights (K,)``, ``means (K, D)`` and ``covariances (K, D, D)``: one truth, e.g.
        :data:`FIXED_TRUTH` or one draw of :func:`draw_prior`.
    n_samples : int
        Rows of the data set (the held-out row is drawn in addition).
    random_seed : int, numpy.random.SeedSequence or None
        Seeds :func:`numpy.random.default_rng`.
    held_out_from : dict, optional
        Parameters of the held-out row's mixture (same keys), drawn independently of
        ``parameters``, e.g. another draw of :func:`draw_prior`. The data set ``X`` is the same
        with or without them.

    Returns
    -------
    Simulation

    Examples
    --------
    >>> from bayesgmm.validation import FIXED_TRUTH, simulate
    >>> sim = simulate(FIXED_TRUTH, 50, random_seed=0)
    >>> sim.X.shape, sim.held_out.shape
    ((50, 2), (2,))
    >>> bool((simulate(FIXED_TRUTH, 50, random_seed=0).X == sim.X).all())  # reproducible
    True
    """
    rng = np.random.default_rng(random_seed)
    sim = simulate_mixture(n_samples + 1, **_mixture(parameters), random_state=rng)
    held_out = sim.X[-1]
    if held_out_from is not None:
        held_out = simulate_mixture(1, **_mixture(held_out_from), random_state=rng).X[0]
    return Simulation(sim.weights, sim.means, sim.covariances, sim.X[:-1], held_out)


def _mixture(parameters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: parameters[name] for name in ("weights", "means", "covariances")}
