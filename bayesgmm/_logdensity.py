"""The mixture model's log posterior density and its gradient, from the EM's E-step kernel.

NUTS spends nearly all its time in evaluations of ``log p(theta | X)`` and its gradient on the
unconstrained vector ``theta``. For the models :func:`bayesgmm.build_model` makes, this module
evaluates both in one compiled Numba call that releases the GIL, instead of the PyTensor graph
(compiled to JAX, about 140 small kernels and a fixed cost near 0.2 ms a call).

Nothing about the likelihood is written twice. Its value and the statistics its gradient needs
come from the EM's own E-step kernel (:mod:`bayesgmm._kernels`): with responsibilities
``r_nk``, ``n_k = sum_n r_nk`` and the moments about the means ``f_k = sum_n r_nk (x_n -
mu_k)`` and ``R_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)'``, Fisher's identity gives

- ``d loglik / d log w_k = n_k``,
- ``d loglik / d mu_k = Sigma_k^{-1} f_k``,
- ``d loglik / d L_k = tril(L_k^{-T} (L_k^{-1} R_k L_k^{-T} - n_k I))`` for ``Sigma_k = L_k
  L_k'``.

The priors and the change of variables follow PyMC's definitions on the same unconstrained
vector nutpie samples (value variables in ``model.free_RVs`` order): ``weights`` through
PyMC's simplex transform, ``means_z`` untransformed, each ``chol_cov_k`` (or the shared
``chol_cov``) packed row by row with log diagonals (LKJ correlations and the standard
deviations' prior), or ``stds_z`` on the log scale (:mod:`bayesgmm._unconstrained`). A covariance
shared by every component, or one scale for every feature, is evaluated as every component's
own and its gradient summed back (the chain rule through the broadcast). Like the model, the
density works on standardised rows ``(x - loc) / scale`` (the kernel standardises each block as
it loads it, as in EM) and adds the Jacobian ``-N sum(log scale)``.
The tests check value and gradient against PyMC's compiled ``logp`` and ``dlogp`` of the
model at random points.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import xarray as xr
from scipy.special import gammaln

from . import _numba_cache
from ._families import (
    CONDITIONAL_FLOOR,
    conditional_floor,
    sd_log_density_terms,
    sd_prior_floor,
    sd_prior_scale,
)
from ._fisher import _likelihood_gradients
from ._gaussian import LOG_2PI, _invert_lower_into, std_and_correlation
from ._kernels import _FASTMATH, _KERNEL_BLOCK_ROWS, NO_WEIGHTS, _new_sums, _weighted_block_pass
from ._logdensity_missing import Rows, collapse_duplicates, logp_and_grad_rows
from ._logprior import _add_prior
from ._scaling import AffineScaling
from ._unconstrained import _expand, _reduce, _unpack, _unpack_draws, permute_components
from .model import ModelSpec, model_spec
from .priors import GMMPriors

__all__ = ["LogDensity", "kernel_applies", "log_density_for"]


# --------------------------------------------------------------------------- Numba kernel
@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _likelihood(
    X, weights, loc, scale, log_w, means, chol, log_diag, diagonal, block
):  # pragma: no cover - compiled
    """Log-likelihood of the standardised rows ``(X - loc) / scale``, ``n_k`` and the gradients
    on the means and Cholesky factors, from one pass of the E-step kernel over the rows (in
    blocks; the kernel standardises each block as it loads it). ``weights`` are the rows'
    frequency weights, or the empty ``NO_WEIGHTS`` (the unweighted arithmetic)."""
    n, n_features = X.shape
    n_components = means.shape[0]
    inverse = np.empty_like(chol)  # L^{-1}: the kernel's (transposed) precision factor
    _invert_lower_into(chol, inverse)
    offset = log_w - 0.5 * n_features * LOG_2PI
    for c in range(n_components):
        for i in range(n_features):
            offset[c] -= log_diag[c, i]
    sums = _new_sums(1, n_components, n_features)
    for start in range(0, n, block):
        stop = min(n, start + block)
        _weighted_block_pass(
            X, weights, start, stop, loc, scale, offset, means, inverse, diagonal, 0, sums
        )
    log_lik, resp_sum, first, second = sums
    grad_means = np.empty((n_components, n_features))
    grad_chol = np.zeros((n_components, n_features, n_features))
    _likelihood_gradients(
        inverse, resp_sum[0], first[0], second[0], diagonal, grad_means, grad_chol
    )
    return log_lik[0], resp_sum[0], grad_means, grad_chol


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _logp_and_grad(
    x,
    X,
    loc,
    scale,
    log_jacobian,
    n_components,
    diagonal,
    n_groups,
    n_scales,
    alpha,
    means_loc,
    means_scale,
    sd_terms,
    lkj_shape,
    constant,
    block,
):  # pragma: no cover - compiled
    """Log posterior density (up to nothing: every constant included) and its gradient, for
    complete rows: :func:`_weighted_logp_and_grad` with every row counted once."""
    return _weighted_logp_and_grad(
        x,
        X,
        NO_WEIGHTS,
        X.shape[0],
        loc,
        scale,
        log_jacobian,
        n_components,
        diagonal,
        n_groups,
        n_scales,
        alpha,
        means_loc,
        means_scale,
        sd_terms,
        lkj_shape,
        constant,
        block,
    )


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=False)
def _leapfrog(x, p, grad, factor, factor_t, step, n_steps, X, args):  # pragma: no cover
    """``n_steps`` leapfrog steps of Hamiltonian dynamics in coordinates whitened by ``factor``
    (position ``x`` moves by ``step * factor @ p``, momentum ``p`` by ``step * factor_t @
    grad``, half steps at both ends) over complete rows ``X``: ``(y, p, log density,
    gradient)`` where it ended, or where the log density first stopped being finite. The
    Python loop of :func:`bayesgmm._darting._python_leapfrog` compiled, without fastmath (the
    same bits; a divergent trajectory must see its NaN), and without the GIL."""
    y = x
    p_new = p + 0.5 * step * (factor_t @ grad)
    lp_new, grad_new = -np.inf, grad
    for i in range(n_steps):
        y = y + step * (factor @ p_new)
        lp_new, grad_new = _logp_and_grad(y, X, *args)
        if not np.isfinite(lp_new):
            break
        h = step if i < n_steps - 1 else 0.5 * step
        p_new = p_new + h * (factor_t @ grad_new)
    return y, p_new, lp_new, grad_new


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def _weighted_logp_and_grad(
    x,
    X,
    weights,
    n_weight,
    loc,
    scale,
    log_jacobian,
    n_components,
    diagonal,
    n_groups,
    n_scales,
    alpha,
    means_loc,
    means_scale,
    sd_terms,
    lkj_shape,
    constant,
    block,
):  # pragma: no cover - compiled
    """Log posterior density (up to nothing: every constant included) and its gradient.

    The parameters are on the standardised scale ``(X - loc) / scale``; the data's density
    takes the Jacobian, ``-log_jacobian`` per row. ``n_groups`` and ``n_scales`` say how many
    covariances are free (``K``, or 1 when shared) and how many scales each has (``D``, or 1
    when spherical); ``sd_terms`` ``(4, n_scales)`` are the coefficients of the standard
    deviations' prior (:func:`bayesgmm._families.sd_log_density_terms`) and the conditional
    barrier's ``g^2`` (:func:`bayesgmm._families.conditional_floor`). ``lkj_shape`` is
    ``2 eta - 2 + D``;
    ``constant`` holds the normalising constants. ``weights`` are frequency weights of the
    complete rows ``X`` (``NO_WEIGHTS``: none), ``n_weight`` their total (the rows' number).
    """
    n_features = X.shape[1]
    grad = np.zeros(x.shape[0])
    log_w, means, free, free_log_diag = _unpack(
        x, n_components, n_features, diagonal, n_groups, n_scales
    )
    chol, log_diag = _expand(free, free_log_diag, n_components, n_features)
    log_lik, resp_sum, grad_means, grad_chol = _likelihood(
        X, weights, loc, scale, log_w, means, chol, log_diag, diagonal, block
    )
    grad_free = _reduce(grad_chol, n_groups, n_scales)
    logp = log_lik - n_weight * log_jacobian + constant
    logp = _add_prior(
        logp,
        log_w,
        means,
        free,
        free_log_diag,
        resp_sum,
        grad_means,
        grad_free,
        diagonal,
        alpha,
        means_loc,
        means_scale,
        sd_terms,
        lkj_shape,
        grad,
    )
    return logp, grad


# --------------------------------------------------------------------------- Python side
@functools.lru_cache(maxsize=32)
def _lkj_log_normaliser(eta: float, n: int) -> float:
    """PyMC's normalising constant of the LKJ density (its own function, evaluated in
    Python: no C compilation for one number; a quarter of a second, so kept per (eta, n))."""
    from pymc.distributions.multivariate import _lkj_normalizing_constant

    value = _lkj_normalizing_constant(float(eta), int(n))
    return float(value.eval(mode="FAST_COMPILE")) if hasattr(value, "eval") else float(value)


@dataclass(frozen=True)
class LogDensity:
    """``log p(theta | X)`` and its gradient for one :func:`bayesgmm.build_model` model.

    Call it with nutpie's flat unconstrained vector and the data (in the data's units); it
    returns ``(logp, grad)``.

    Attributes
    ----------
    spec : ModelSpec
        The model's sizes, covariance type, priors and standardisation.
    """

    spec: ModelSpec

    @property
    def n_components(self) -> int:
        return self.spec.n_components

    @property
    def n_features(self) -> int:
        return self.spec.n_features

    @property
    def covariance_type(self) -> str:
        """mclust's name of the model."""
        return self.spec.covariance_type

    @property
    def _shape(self) -> tuple[bool, int, int]:
        """``(diagonal, n_groups, n_scales)`` of the free covariances (see ``_unpack``)."""
        family = self.spec.family
        return (
            family.diagonal,
            family.n_groups(self.n_components),
            family.n_scales(self.n_features),
        )

    @property
    def _sd_prior(self) -> tuple[np.ndarray, float]:
        """The free standard deviations' prior: coefficients ``(4, n_scales)`` and the
        constant of one free covariance (:func:`bayesgmm._families.sd_log_density_terms`, and
        the conditional barrier's ``g^2``, :func:`bayesgmm._families.conditional_floor`)."""
        p, family = self.priors, self.spec.family
        terms, constant = sd_log_density_terms(
            p, sd_prior_scale(p, family), sd_prior_floor(p, family)
        )
        return np.ascontiguousarray(np.vstack([terms, conditional_floor(p, family)])), constant

    @property
    def scaling(self) -> AffineScaling:
        return self.spec.scaling

    @property
    def priors(self) -> GMMPriors:
        """The priors on the standardised scale the model samples on."""
        return self.spec.standardised_priors

    @property
    def bounded_at_ties(self) -> bool:
        """Whether the posterior stays bounded where a component collapses onto tied rows: the
        inverse-gamma prior's ``exp(-c^2 / s^2)`` and the resolution prior's ``exp(-f^2 /
        s^2)`` (where some ``f > 0``) beat the likelihood's ``s^-m`` (the HalfNormal does
        not)."""
        p = self.priors
        return p.sd_prior == "inverse_gamma" or (p.sd_prior == "resolution" and max(p.sd_floor) > 0)

    @property
    def n_dim(self) -> int:
        """Length of the unconstrained vector."""
        k, d = self.n_components, self.n_features
        diagonal, n_groups, e = self._shape
        return (k - 1) + k * d + n_groups * (e if diagonal else e * (e + 1) // 2)

    def permute(self, x: np.ndarray, perm: np.ndarray) -> np.ndarray:
        """Unconstrained points ``(..., n_dim)`` with their components reordered by ``perm``
        ``(..., K)`` (:func:`bayesgmm._unconstrained.permute_components`): the same density."""
        n_groups = self._shape[1]
        return permute_components(x, perm, self.n_components, self.n_features, n_groups)

    def _constant(self) -> float:
        k, d, p = self.n_components, self.n_features, self.priors
        alpha = p.weights_concentration
        means_scale, (diagonal, n_groups, _) = np.asarray(p.means_scale), self._shape
        dirichlet = gammaln(k * alpha) - k * gammaln(alpha) + np.log(k)
        normal = k * np.sum(-0.5 * LOG_2PI - np.log(means_scale))
        scales = n_groups * self._sd_prior[1]
        lkj = 0.0 if diagonal else n_groups * _lkj_log_normaliser(p.lkj_eta, d)
        return float(dirichlet + normal + scales + lkj)

    def __post_init__(self) -> None:
        p = self.priors
        args = (
            np.ascontiguousarray(self.scaling.loc, dtype=np.float64),
            np.ascontiguousarray(self.scaling.scale, dtype=np.float64),
            self.scaling.log_jacobian,
            int(self.n_components),
            *self._shape,
            float(p.weights_concentration),
            np.asarray(p.means_loc, dtype=np.float64),
            np.asarray(p.means_scale, dtype=np.float64),
            self._sd_prior[0],
            2.0 * p.lkj_eta - 2.0 + self.n_features,
            self._constant(),
            _KERNEL_BLOCK_ROWS,
        )
        object.__setattr__(self, "_args", args)

    def __call__(self, x: np.ndarray, X: np.ndarray | Rows) -> tuple[float, np.ndarray]:
        """Value and gradient at ``x`` for data ``X``: complete rows (float64, C-contiguous),
        or rows with missing cells or weights prepared by :meth:`rows`."""
        if isinstance(X, Rows):
            args = self._args
            if X.complete:  # complete rows with weights
                return _weighted_logp_and_grad(x, X.values, X.weights, X.n_weight, *args)
            return logp_and_grad_rows(x, X, args)
        return _logp_and_grad(x, X, *self._args)

    def leapfrog(self, X: np.ndarray | Rows) -> Callable | None:
        """Compiled leapfrog steps over ``X`` (:meth:`rows`' output), for Hamiltonian samplers of
        bayesgmm's own: ``leapfrog(x, p, grad, factor, factor_t, step, n_steps) -> (y, p,
        logp, grad)``, GIL-free; None for rows with missing cells or weights (the caller's
        Python loop then)."""
        if isinstance(X, Rows):
            return None
        return functools.partial(_run_leapfrog, X=X, args=self._args)

    def rows(
        self, X: np.ndarray, sample_weight: np.ndarray | None = None, *, collapse: bool = True
    ) -> np.ndarray | Rows:
        """The data as :meth:`__call__` takes them: complete, unweighted rows as a contiguous
        array (the all-Numba path), else :class:`~bayesgmm._logdensity_missing.Rows` (rows
        with NaN cells, frequency ``sample_weight``; validated beforehand). With ``collapse``,
        exact duplicate rows become one row weighted by their count when there are enough of
        them to make each evaluation faster (the same density, to rounding)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if collapse:
            X, sample_weight = collapse_duplicates(X, sample_weight)
        if sample_weight is None and not np.isnan(X).any():
            return X
        return Rows.prepare(X, sample_weight)

    def posterior(self, draws: np.ndarray, coords: dict) -> xr.Dataset:
        """The mixture's parameters, on the standardised scale, from unconstrained draws
        ``(chain, draw, n_dim)``.

        ``weights``, ``means``, ``covariances`` and ``stds`` (and ``correlations`` for VVV and
        EEE; a shared covariance repeated for every component), dimensioned as the model's
        variables; in the data's units (see :func:`bayesgmm._units.to_data_units`) they are
        the model's deterministics.
        """
        n_chains, n_draws, _ = draws.shape
        k, d = self.n_components, self.n_features
        diagonal = self._shape[0]
        flat = np.ascontiguousarray(draws.reshape(n_chains * n_draws, -1), dtype=np.float64)
        weights, means, chol = _unpack_draws(flat, k, d, *self._shape)
        covariances = chol @ np.swapaxes(chol, -1, -2)
        stds, correlations = std_and_correlation(covariances)

        def shaped(array):
            return array.reshape(n_chains, n_draws, *array.shape[1:])

        head = ("chain", "draw")
        variables = {
            "weights": ((*head, "component"), shaped(weights)),
            "means": ((*head, "component", "feature"), shaped(means)),
            "covariances": ((*head, "component", "feature", "feature_bis"), shaped(covariances)),
            "stds": ((*head, "component", "feature"), shaped(stds)),
        }
        names = {name: list(coords[name]) for name in ("component", "feature", "feature_bis")}
        if not diagonal:
            variables["correlations"] = (
                (*head, "component", "feature", "feature_bis"),
                shaped(correlations),
            )
        names |= {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
        return xr.Dataset(variables, coords=names)


def log_density_for(model) -> LogDensity | None:
    """The fast log density of a model :func:`bayesgmm.build_model` made, else None.

    A model changed after it was built (other free variables, potentials, other observed
    variables) returns None, and sampling falls back to the PyTensor graph.
    """
    spec = _unchanged_spec(model)
    return None if spec is None else LogDensity(spec)


def kernel_applies(model) -> bool:
    """Whether ``model`` is a :func:`bayesgmm.build_model` model, unchanged (a cheap check)."""
    return _unchanged_spec(model) is not None


def _unchanged_spec(model) -> ModelSpec | None:
    spec = model_spec(model)
    if spec is None:
        return None
    expected = ["weights", "means_z", *spec.family.free_names(spec.n_components)]
    floored = np.any(conditional_floor(spec.standardised_priors, spec.family) > 0)
    if (
        [rv.name for rv in model.free_RVs] != expected
        or [rv.name for rv in model.observed_RVs] != ["obs"]
        or [p.name for p in model.potentials] != ([CONDITIONAL_FLOOR] if floored else [])
    ):
        return None
    return spec


def _run_leapfrog(x, p, grad, factor, factor_t, step, n_steps, *, X, args) -> tuple:
    """:func:`_leapfrog` with the data and the density's arguments bound by keyword."""
    return _leapfrog(x, p, grad, factor, factor_t, float(step), int(n_steps), X, args)


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
