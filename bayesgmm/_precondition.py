"""NUTS preconditioned by the posterior's curvature at its mode (a Laplace approximation).

Strongly correlated components make the posterior of their Cholesky factors a narrow, tilted
ridge in the unconstrained space; a diagonal metric then needs tiny steps and long trajectories.
This module moves from the EM start to the nearest posterior mode (MAP under the model's
priors: L-BFGS with the E-step kernel's exact gradient, then Newton steps), takes the Hessian
``H`` of the log posterior there (central differences of the exact gradient), and samples the
whitened parameters ``z`` with ``theta = mode + L z``, ``L L' = (-H)^{-1}``. The whitened
density and its gradient ``L' grad`` are one compiled Numba call that releases the GIL, like
the unwhitened one; nutpie adapts its diagonal metric on ``z`` on top (in ``theta`` that is a
dense metric ``L M L'``), and the draws are mapped back to ``theta`` as they are kept, so the
results are those of the unwhitened model.

A search can find no mode: from an EM estimate on a likelihood singularity (a component whose
covariance collapses along a direction few rows see, e.g. the rows without missing cells
that observe all of its features) it climbs without reaching a stationary point. Such a
search is recognised by its gradient, and :func:`laplace` searches again from ``retry``
(the EM estimate with its covariances' eigenvalues floored, :func:`bayesgmm.start
.em_initial_values`), which lies in the basin of the mode near EM's partition. So does a
search that ends on a narrow ridge (a spike the prior bounds, e.g. at the rounding noise of
tied rows), keeping the higher of the two modes.

A Laplace approximation can be poor: a mode at the edge of the support (a collapsing
component), a Hessian that is not negative definite, or one so ill-conditioned that some
directions are guessed from rounding. :func:`laplace` says which case it met
(:attr:`Laplace.kind`): ``"laplace"`` (the full curvature), ``"diagonal"`` (its diagonal only,
when the full one is indefinite or too ill-conditioned but the diagonal is usable) or
``"none"`` (no usable curvature: sampling falls back to the unpreconditioned path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numba
import numpy as np
from scipy.optimize import minimize

from . import _numba_cache
from ._gaussian import LOG_2PI
from ._kernels import _FASTMATH
from ._logdensity import LogDensity, _logp_and_grad

__all__ = [
    "CAREFUL_TARGET_ACCEPT",
    "DEFAULT_TARGET_ACCEPT",
    "DEFAULT_TUNE",
    "FLOORED",
    "LAPLACE_TUNE",
    "PRECONDITIONS",
    "RETRY_FLOOR",
    "Laplace",
    "default_target_accept",
    "default_tune",
    "find_mode",
    "hessian",
    "laplace",
    "precondition_attrs",
    "precondition_for",
    "whitened_density",
]

PRECONDITIONS = ("laplace", "none")
# tuning steps per chain on whitened parameters (benchmarks/bench_mcmc.py --hard), and else
DEFAULT_TUNE, LAPLACE_TUNE = 1000, 300

# NUTS target acceptance, and the smaller steps taken on a narrow curved ridge (see
# default_target_accept): the Laplace condition number above which the ridge counts as one
DEFAULT_TARGET_ACCEPT, CAREFUL_TARGET_ACCEPT, _RIDGE_CONDITION = 0.8, 0.9, 5e3
# condition number of -H above which its small eigenvalues are rounding: use the diagonal
_MAX_CONDITION = 1e10
# largest |gradient| at a mode, relative to max(1, |log density|): searches that reach one end
# near 1e-12 of it; one that climbs towards a likelihood singularity ends far above (wine with
# 15% missing cells: 0.01-5 after 2000 L-BFGS iterations)
_STATIONARY = 1e-4
# eigenvalue floor (standardised scale) of EM's covariances for the second search (wine with
# missing cells: floors 1e-3, 1e-2 and 1e-1 all lead to the same mode)
RETRY_FLOOR = 1e-2
# how the attrs say a start was floored
FLOORED = f" with its covariances' eigenvalues floored at {RETRY_FLOOR:g}"
# relative finite-difference step of the Hessian (central differences of an exact gradient)
_FD_STEP = 1e-5


@dataclass(frozen=True)
class Laplace:
    """The posterior's mode and a factor of its Laplace covariance, in the unconstrained space.

    Attributes
    ----------
    mode : ndarray of shape (n_dim,)
    factor : ndarray of shape (n_dim, n_dim)
        Lower triangular ``L`` with ``L L'`` the Laplace covariance ``(-H)^{-1}`` (or its
        diagonal version).
    kind : {"laplace", "diagonal", "none"}
        Which curvature ``factor`` holds; ``"none"``: no usable one (``factor`` is the identity
        and ``mode`` the start).
    log_density : float
        Log posterior density at ``mode``.
    condition : float
        Condition number of ``-H`` (``inf`` when it is not positive definite).
    n_gradients : int
        Gradient evaluations spent on the mode and the Hessian.
    retried : bool
        Whether the mode was found from EM's estimate with its covariances' eigenvalues
        floored at :data:`RETRY_FLOOR`: the ``retry`` start of :func:`laplace` (the search
        from the first start reached no usable mode, or a lower one on a narrow ridge), or the
        only start when EM's own could not be sampled from
        (``bayesgmm.sampling._kernel_start``).
    """

    mode: np.ndarray
    factor: np.ndarray
    kind: str
    log_density: float
    condition: float
    n_gradients: int
    retried: bool = False

    @property
    def log_mass(self) -> float:
        """Log posterior mass of the mode's basin under the Laplace approximation,
        ``log_density + 0.5 log det(2 pi Sigma)`` with ``Sigma = L L'`` (its diagonal version
        for ``kind="diagonal"``; NaN for ``"none"``, which has no curvature): a spike's height
        does not make it where the mass is."""
        if self.kind not in ("laplace", "diagonal"):
            return np.nan
        log_det = 2.0 * float(np.sum(np.log(np.abs(np.diag(self.factor)))))
        return float(self.log_density + 0.5 * (self.mode.size * LOG_2PI + log_det))

    def to_theta(self, z: np.ndarray) -> np.ndarray:
        """Unconstrained parameters ``mode + L z`` of whitened ``z`` (..., n_dim)."""
        return self.mode + np.asarray(z) @ self.factor.T

    def to_z(self, theta: np.ndarray) -> np.ndarray:
        """Whitened coordinates of unconstrained ``theta`` (..., n_dim)."""
        return np.linalg.solve(self.factor, (np.asarray(theta) - self.mode).T).T


class _Counted:
    """The density at fixed data, counting gradient evaluations."""

    def __init__(self, density: LogDensity, X: np.ndarray):
        self.density, self.X, self.calls = density, X, 0

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.calls += 1
        return self.density(np.ascontiguousarray(x, dtype=np.float64), self.X)


def _newton_steps(f: _Counted, x: np.ndarray, logp: float, steps: int) -> tuple:
    """``steps`` Newton steps (halved until the density does not fall beyond rounding), while
    ``-H`` is positive definite; returns ``(x, logp, H)`` with ``H`` the Hessian at ``x``.

    Every step is taken, however small the gain: L-BFGS stops where the density is flat to
    about 1e-10, i.e. ``x`` within about 1e-6 of the mode, and such a difference (from data
    that differ by rounding, say) would start otherwise identical chains at different points.
    Newton's quadratic convergence brings ``x`` to the mode to rounding.
    """
    H = hessian(f, x)
    for _ in range(steps):
        _, grad = f(x)
        try:
            step = np.linalg.solve(-H, grad)
            np.linalg.cholesky(-H)
        except np.linalg.LinAlgError:
            break
        for _ in range(20):
            value, _ = f(x + step)
            if np.isfinite(value) and value >= logp - 1e-12 * abs(logp):
                break
            step = step / 2.0
        else:
            break
        x, logp = x + step, max(value, logp)
        H = hessian(f, x)
    return x, logp, H


def find_mode(
    density: LogDensity, X: np.ndarray, start: np.ndarray, *, newton_steps: int = 2
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """The posterior mode nearest ``start`` (L-BFGS, then Newton steps) and the Hessian there.

    Parameters
    ----------
    density : LogDensity
    X : ndarray of shape (n_samples, n_features)
        float64, C-contiguous.
    start : ndarray of shape (n_dim,)
        Unconstrained start (the EM estimate).
    newton_steps : int

    Returns
    -------
    mode : ndarray
    log_density : float
    hessian : ndarray of shape (n_dim, n_dim)
    n_gradients : int
    """
    f = _Counted(density, X)

    def negative(x):
        value, grad = f(x)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(grad)
        return -value, -grad

    result = minimize(
        negative,
        np.asarray(start, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": 1e-6, "ftol": 1e-13, "maxcor": 30},
    )
    x, logp = result.x, -float(result.fun)
    start_logp, _ = f(start)
    if not np.isfinite(logp) or logp < start_logp:
        x, logp = np.asarray(start, dtype=np.float64), float(start_logp)
    x, logp, H = _newton_steps(f, x, logp, newton_steps)
    return x, logp, H, f.calls


def hessian(f, x: np.ndarray) -> np.ndarray:
    """Hessian of the log density at ``x``: central differences of its exact gradient,
    symmetrised. ``f(x)`` returns ``(logp, grad)``."""
    n = x.size
    H = np.empty((n, n))
    for i in range(n):
        h = _FD_STEP * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        H[:, i] = (f(up)[1] - f(down)[1]) / (2.0 * h)
    return 0.5 * (H + H.T)


def _factor(precision: np.ndarray) -> tuple[np.ndarray, str, float]:
    """``L`` with ``L L' = precision^{-1}``, the kind of curvature used and the condition."""
    n = precision.shape[0]
    eigenvalues, vectors = np.linalg.eigh(precision)
    finite = bool(np.all(np.isfinite(eigenvalues)))
    positive = finite and eigenvalues[0] > 0
    condition = float(eigenvalues[-1] / eigenvalues[0]) if positive else np.inf
    if positive and condition <= _MAX_CONDITION:
        covariance = (vectors / eigenvalues) @ vectors.T
        return np.linalg.cholesky(0.5 * (covariance + covariance.T)), "laplace", condition
    diagonal = np.diag(precision)
    if np.all(np.isfinite(diagonal)) and np.all(diagonal > 0):
        return np.diag(1.0 / np.sqrt(diagonal)), "diagonal", condition
    return np.eye(n), "none", condition


def laplace(
    density: LogDensity,
    X: np.ndarray,
    start: np.ndarray,
    *,
    newton_steps: int = 2,
    retry: Callable[[], np.ndarray] | None = None,
) -> Laplace:
    """Mode and Laplace covariance factor of the posterior, from ``start``.

    Parameters
    ----------
    density : LogDensity
    X : ndarray of shape (n_samples, n_features)
        float64, C-contiguous (the model's data).
    start : ndarray of shape (n_dim,)
        Unconstrained start, e.g. the EM estimate.
    newton_steps : int
        Newton steps after L-BFGS (each costs a Hessian: ``2 n_dim`` gradients).
    retry : callable, optional
        Returns a second start, searched from when the search from ``start`` gives no full
        Laplace approximation (``kind != "laplace"``), or one on a narrow ridge (condition
        number above ``5e3``, where the start may sit in a spike the prior bounds: wine with
        missing cells, EM climbing a collapse, reaches a mode 3.6 nats below the floored
        start's, at condition 1.9e5 against 161); its result is kept when it gives one, and
        in the second case when its Laplace mass (:attr:`Laplace.log_mass`) is higher by
        more than rounding (a narrow spike can be higher and hold less mass).

    Returns
    -------
    Laplace
        With ``kind="none"`` (identity factor, ``mode = start``) when no usable mode or
        curvature was found: the search ended where the gradient does not vanish (it ran
        towards a likelihood singularity), or the log density rose by more than ``n_dim``
        from ``start`` (far more than from a typical draw to the mode: the search ran towards
        a collapsing component, where the density grows without bound). The rise is allowed
        when the density is bounded at ties (``density.bounded_at_ties``, the inverse-gamma
        prior on the variances): EM's estimate then often sits on the collapse the prior
        removes (a variance at ``reg_covar``), far below the posterior's mode (MASS's fgl:
        1100 above EM).
    """
    first = _search(density, X, np.asarray(start, dtype=np.float64), newton_steps)
    found = first.kind == "laplace"
    if retry is None or (found and first.condition <= _RIDGE_CONDITION):
        return first
    second = _search(density, X, np.asarray(retry(), dtype=np.float64), newton_steps)
    calls = first.n_gradients + second.n_gradients
    if second.kind != "laplace" or (found and not _more_mass(second, first)):
        return replace(first, n_gradients=calls)  # (the same mode: not retried)
    return replace(second, n_gradients=calls, retried=True)


def _more_mass(new: Laplace, old: Laplace) -> bool:
    """Whether ``new`` (a full Laplace approximation, as ``old``) holds more mass than
    ``old`` by more than rounding."""
    return new.log_mass > old.log_mass + 1e-6 * max(1e3, abs(old.log_mass))


def _search(density: LogDensity, X: np.ndarray, start: np.ndarray, newton_steps: int) -> Laplace:
    """:func:`laplace` from one start."""
    mode, logp, H, calls = find_mode(density, X, start, newton_steps=newton_steps)
    factor, kind, condition = _factor(-H)
    gradient = density(mode, X)[1]
    stationary = np.max(np.abs(gradient)) <= _STATIONARY * max(1.0, abs(logp))
    rise = logp - float(density(start, X)[0])
    if not stationary or (rise > start.size and not getattr(density, "bounded_at_ties", False)):
        factor, kind = np.eye(start.size), "none"
    if kind == "none":
        mode = start
    else:
        mode, factor = _quantised(mode, 40), _quantised(factor, 24)
    logp = float(density(mode, X)[0])
    return Laplace(mode, factor, kind, logp, condition, calls + 1)


def _quantised(values: np.ndarray, bits: int) -> np.ndarray:
    """``values`` rounded to a grid of ``2**-bits`` times their largest magnitude (a power
    of two, so the grid's points are exact).

    The finite-difference Hessian turns rounding in the data (1e-16) into differences near
    1e-12 in the factor, which NUTS trajectories amplify: the same data at another scale
    would give other chains. Rounded, the two give the same numbers (almost always), and the
    approximation loses nothing that matters to a metric.
    """
    top = float(np.max(np.abs(values)))
    if not np.isfinite(top) or top == 0.0:
        return values
    step = 2.0 ** (int(np.ceil(np.log2(top))) - bits)
    return np.round(values / step) * step


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _to_theta(z, mode, factor):  # pragma: no cover - compiled
    """``mode + L z`` (``L`` lower triangular: half the work of a dense factor)."""
    x = mode.copy()
    for i in range(z.shape[0]):
        acc = 0.0
        for j in range(i + 1):
            acc += factor[i, j] * z[j]
        x[i] += acc
    return x


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _to_z_gradient(factor, grad):  # pragma: no cover - compiled
    """The gradient on whitened ``z`` of one on ``theta = mode + L z``: ``L' grad``."""
    n = grad.shape[0]
    out = np.zeros(n)
    for i in range(n):
        for j in range(i + 1):
            out[j] += factor[i, j] * grad[i]
    return out


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _whitened_logp_and_grad(z, mode, factor, X, args):  # pragma: no cover - compiled
    """Log density at ``mode + L z`` and its gradient on ``z``, ``L' grad`` (``L`` lower
    triangular: half the work of a dense factor)."""
    logp, grad = _logp_and_grad(_to_theta(z, mode, factor), X, *args)
    return logp, _to_z_gradient(factor, grad)


def whitened_density(density: LogDensity, approx: Laplace):
    """``(z, X) -> (logp, grad_z)``: the log density of ``theta = mode + L z`` (the same
    values as ``density`` at ``theta``; the constant Jacobian ``log |L|`` is left out)."""
    mode = np.ascontiguousarray(approx.mode, dtype=np.float64)
    factor = np.ascontiguousarray(approx.factor, dtype=np.float64)
    args = density._args

    def logp(z: np.ndarray, X: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.asarray(z, dtype=np.float64)
        if not isinstance(X, np.ndarray):  # rows with missing cells or weights
            value, grad = density(_to_theta(z, mode, factor), X)
            return value, _to_z_gradient(factor, grad)
        return _whitened_logp_and_grad(z, mode, factor, X, args)

    return logp


def precondition_for(
    density: LogDensity,
    X: np.ndarray,
    start: np.ndarray,
    precondition: str,
    retry: Callable[[], np.ndarray] | None = None,
) -> Laplace | None:
    """The Laplace approximation to whiten with, from ``start`` (or ``retry``, see
    :func:`laplace`); None for ``precondition="none"`` or when no usable curvature was found."""
    if precondition == "none":
        return None
    approx = laplace(density, X, start, retry=retry)
    return None if approx.kind == "none" else approx


def default_tune(approx: Laplace | None) -> int:
    """Tuning steps per chain when none are given: fewer on parameters whitened by the full
    Laplace approximation (the metric needs little adapting), else 1000."""
    return LAPLACE_TUNE if approx is not None and approx.kind == "laplace" else DEFAULT_TUNE


def default_target_accept(approx: Laplace | None) -> float:
    """NUTS target acceptance when none is given: 0.8, or 0.9 when the full Laplace
    covariance has a condition number above 5e3.

    Such a condition comes from a near-singular component covariance (a feature almost a
    linear combination of the others, benchmarks/hard_cases.py ``collinear``). The posterior
    is then a narrow ridge whose direction moves with the log-diagonals of the Cholesky
    factors (a near-determined column of the factor is a product of the others), so it bends
    by more than its width, the more so the narrower it is; whitening by the curvature at the
    mode straightens it only there. NUTS adapts its step to the typical curvature and
    diverges where the ridge bends most, in the tails (hard_cases.py ``collinear`` with noise
    of 5%, 2% and 1%: condition 1.8e3, no divergences in 12 seeds at 0.8; 1.1e4, divergences
    in 3 of 20 seeds at 0.8 and none at 0.9; 4.5e4, in 8 of 12 at 0.8 and none at 0.9).
    Smaller steps cost about 1.6 times the gradients, which well-conditioned posteriors
    (condition 1.2e3 for within-component correlation 0.95: no divergences) do not need.
    """
    ridge = approx is not None and approx.kind == "laplace" and approx.condition > _RIDGE_CONDITION
    return CAREFUL_TARGET_ACCEPT if ridge else DEFAULT_TARGET_ACCEPT


def precondition_attrs(approx: Laplace | None) -> dict:
    """Provenance of a run: what it was whitened with, and where chains started."""
    if approx is None:
        return {"precondition": "none"}
    return {
        "precondition": approx.kind,
        "precondition_condition": approx.condition,
        "precondition_gradients": approx.n_gradients,
        "start": "posterior mode found from the EM estimate"
        + (FLOORED if approx.retried else "")
        + " (L-BFGS, Newton), no jitter",
    }


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
