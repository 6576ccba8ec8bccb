"""The M-step of every covariance model: weights, means and constrained covariances.

Every model minimises, over its covariances, the covariance part of the expected complete-data
negative log-likelihood (times two)

    F = sum_k [ n_k log|Sigma_k| + tr(W_k Sigma_k^-1) ],

with ``n_k`` the effective sizes and ``W_k`` the scatter matrices about the new means.
``reg_covar`` is added as ``n_k reg_covar`` to the diagonal of every ``W_k`` before the
update, which for scikit-learn's four families is exactly their ``Sigma_k + reg_covar I``.

Each model reduces to a rule on **diagonal values** ``V_k`` (``(K, D)``, the variances along a
set of axes) for its volume and shape, and an **orientation** giving those axes
(Celeux & Govaert 1995, Sections 3-4):

==============  =================================  =========================================
rule on V_k     closed form or algorithm           models (orientation)
==============  =================================  =========================================
EE              ``sum_k V_k / n``                  EEI (axes), EEV (eigenvectors of each W_k)
VV              ``V_k / n_k``                      VVI (axes), VVE (common, rotations)
EV              ``lambda V_k / |V_k|^(1/D)``,      EVI (axes), EVE (common, rotations)
                ``lambda = sum_k |V_k|^(1/D) / n``
VE              ``lambda_k A``, alternating        VEI (axes), VEV (eigenvectors of each W_k)
                exact updates (C&G 1995, 3.2)
==============  =================================  =========================================

The rest are closed forms: ``EII`` and ``VII`` (traces), ``EEE`` (``sum_k W_k / n``), ``VVV``
(``W_k / n_k``) and ``EVV`` (``lambda W_k / |W_k|^(1/D)``, ``lambda = sum_k |W_k|^(1/D) / n``),
except ``VEE`` (``lambda_k C``): alternating exact updates of ``C`` given the volumes and the
volumes given ``C`` (C&G 1995). Given the eigenvectors of each ``W_k``, ordered by eigenvalue,
the ``EE``/``VE`` rules on the eigenvalues are the exact ``EEV``/``VEV`` M-steps (the pairing
of ordered eigenvalues is optimal by von Neumann's trace inequality).

A common orientation (``EVE``, ``VVE``) has no closed form. Given the values, ``R`` minimises
``sum_k tr(R^T W_k R M_k)`` with ``M_k = diag(1 / V_k)``; it is updated by sweeps of plane
(Jacobi) rotations, each the exact minimiser in its plane, the pairwise scheme of Flury &
Gautschi (1986) that Celeux & Govaert (1995) use for these models, alternated with the exact
update of the values given ``R``. (Browne & McNicholas' (2014) MM steps for the same
subproblem were tried first: they needed 100-500 iterations per M-step where the sweeps need
about ten.) mclust 6 weights the orientation update of ``VVE`` by the unit-determinant shapes
``1 / A_k`` instead of ``1 / (lambda_k A_k)``; its VVE fits are therefore not stationary
points of the VVE likelihood, and ours reach higher likelihoods from the same start.

The subproblem is not convex: a fresh start (a run's first M-step) runs the loop from the
eigenvectors of ``sum_k W_k`` and from the axes (mclust's ``D = I``) and keeps the lower ``F``
(from the former alone, EVE on R's ``swiss``, K=2, ended 2.4 nats below mclust's optimum).

Every iterative M-step starts from the previous EM iteration's solution (:class:`Warm`) and
only takes steps that do not increase ``F`` (exact minimisations over a block of parameters,
a plane rotation being one), so the EM log-likelihood never decreases; it iterates until
``F / (2 N)`` changes by less than ``inner_tol``, or for at most 500 iterations (50 sweeps
for the common orientation: :data:`_ORIENTATION_MAX`). Covariances come back in the model's layout
(:mod:`bayesgmm._models`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import _gaussian as g
from . import _models, _numba_cache
from ._gaussian import MixtureStatistics, SingularCovarianceError

__all__ = ["Warm", "m_step"]

NK_FLOOR = 10.0 * np.finfo(np.float64).eps  # effective size of an empty component
_INNER_MAX = 500  # iterations of an iterative M-step (each never increases F)
# Sweeps of the common-orientation loop (EVE, VVE) in one M-step. Where the rotations barely
# change F (near-equal variances, spikes near the reg_covar floor) the loop crept on for all 500
# sweeps at every EM iteration; each sweep lowers F, the next M-step starts where this one
# stopped, and EM's own test stops it. With 50: EVE + VVE over K = 1..9 (reg_covar = 0)
# 7.3 -> 2.3 s CPU on UCI wine, no cell of 15 data sets below mclust 6.0's; the optima reached,
# refitted with 500, moved by at most 0.008 nats (51 cells, wine, Cars93, UScereal, swiss,
# state.x77).
_ORIENTATION_MAX = 50


@dataclass(frozen=True)
class Warm:
    """Where an iterative M-step starts at the next EM iteration (unit scale).

    Attributes
    ----------
    volumes : ndarray of shape (n_components,), optional
        ``lambda_k`` of VEI, VEV and VEE.
    orientation : ndarray of shape (n_features, n_features), optional
        The common eigenvectors ``R`` of EVE and VVE (columns).
    values : ndarray of shape (n_components, n_features), optional
        Each component's variances along ``orientation`` (EVE, VVE).
    """

    volumes: np.ndarray | None = None
    orientation: np.ndarray | None = None
    values: np.ndarray | None = None


def m_step(
    stats: MixtureStatistics,
    reg_covar: float,
    covariance_type: str,
    warm: Warm | None = None,
    *,
    inner_tol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Warm | None]:
    """Weights, means and covariances maximising the expected log-likelihood.

    Parameters
    ----------
    stats : MixtureStatistics
        From an E-step in the model's layout (full second moments for the "full" and "tied"
        layouts, their diagonals otherwise).
    reg_covar : float or ndarray of shape (n_features,)
        Added to the diagonal of every covariance (as ``n_k reg_covar`` to the diagonal of each
        scatter), one value or one per feature.
    covariance_type : str
        Any of the 14 mclust names or scikit-learn's four.
    warm : Warm, optional
        The previous M-step's solution; None starts the iterative models afresh.
    inner_tol : float
        Iterative models stop when ``F / (2 N)`` changes by less than this.

    Returns
    -------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        In the model's layout.
    warm : Warm or None
        Where the next M-step starts.

    Empty components get a floor of ``10 * eps`` on their effective size, as scikit-learn does,
    so their means stay finite.
    """
    nk = stats.resp_sum + NK_FLOOR
    regularisation = np.asarray(reg_covar, dtype=float)
    if regularisation.ndim == 0:
        regularisation = np.full(stats.shift.shape[1], float(regularisation))
    if stats.second.ndim == 2:
        delta = stats.first / nk[:, None]
        means = stats.shift + delta
        scatter = stats.second - nk[:, None] * (delta**2 - regularisation)
    else:
        means, scatter = _full_scatter(nk, stats.first, stats.second, stats.shift, regularisation)
    rule = _RULES[_models.model_name(covariance_type)]
    tol = inner_tol * 2.0 * nk.sum()  # on F itself
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        covariances, warm = rule(scatter, nk, warm, tol)
    if not np.isfinite(covariances).all():  # shared parameters spread one collapse to all
        raise SingularCovarianceError(g._singular_message(_most_degenerate(scatter, nk)))
    return nk / nk.sum(), means, covariances, warm


def _most_degenerate(scatter: np.ndarray, nk: np.ndarray) -> int:
    """The component whose scatter has the smallest variance in some direction, per point."""
    smallest = scatter if scatter.ndim == 2 else np.linalg.eigvalsh(scatter)
    return int(np.argmin(smallest.min(axis=1) / nk))


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _full_scatter(nk, first, second, shift, regularisation):  # pragma: no cover - compiled
    """New means and ``W_k + n_k diag(reg_covar)`` about them, symmetric, from moments about
    ``shift``: ``W_k = second_k - n_k delta_k delta_k^T`` with ``delta_k = first_k / n_k``."""
    n_components, n_features = first.shape
    means = np.empty_like(first)
    scatter = np.empty_like(second)
    for k in range(n_components):
        delta = first[k] / nk[k]
        means[k] = shift[k] + delta
        for a in range(n_features):
            for b in range(a + 1):
                value = 0.5 * (second[k, a, b] + second[k, b, a]) - nk[k] * delta[a] * delta[b]
                scatter[k, a, b] = value
                scatter[k, b, a] = value
            scatter[k, a, a] += nk[k] * regularisation[a]
    return means, scatter


# --------------------------------------------------------------------------- rules on V_k
# Compiled, so that the iterative M-steps' loops (also compiled) and the closed forms share them.
@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _geometric_mean(values):  # pragma: no cover - compiled
    """``|diag(V_k)|^(1/D)`` per row ``k`` of ``values`` ``(K, D)``, in log space."""
    out = np.empty(values.shape[0])
    for k in range(values.shape[0]):
        out[k] = np.exp(np.log(values[k]).sum() / values.shape[1])
    return out


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _rule_ee(values, nk):  # pragma: no cover - compiled
    """Common volume and shape: ``sum_k V_k / n`` for every component."""
    common = values.sum(axis=0) / nk.sum()
    out = np.empty_like(values)
    for k in range(values.shape[0]):
        out[k] = common
    return out


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _rule_vv(values, nk):  # pragma: no cover - compiled
    """Volume and shape of each component's own: ``V_k / n_k``."""
    return values / nk.reshape((-1, 1))


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _rule_ev(values, nk):  # pragma: no cover - compiled
    """Common volume, own shape: ``lambda V_k / |V_k|^(1/D)``, ``lambda = sum |V_k|^(1/D) / n``."""
    volumes = _geometric_mean(values)
    return (volumes.sum() / nk.sum()) * values / volumes.reshape((-1, 1))


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _rule_ve(values, nk, volumes, tol, max_iter):  # pragma: no cover - compiled
    """Own volume, common shape (C&G 1995): alternate the exact shape and volume updates.

    From ``volumes`` (``lambda_k``): ``A = s / |s|^(1/D)`` with ``s = sum_k V_k / lambda_k``,
    then ``lambda_k = sum_j V_kj / A_j / (n_k D)``; ``F = sum_k n_k D log lambda_k + n D``
    after each volume update. Returns ``lambda_k A`` and the volumes.
    """
    n_features = values.shape[1]
    shape = np.ones(n_features)
    previous = np.inf
    for _ in range(max_iter):
        shape = (values / volumes.reshape((-1, 1))).sum(axis=0)
        shape /= np.exp(np.log(shape).sum() / n_features)
        volumes = (values / shape).sum(axis=1) / (nk * n_features)
        objective = n_features * (nk * np.log(volumes)).sum()
        if not previous - objective > tol:  # converged, or not finite
            break
        previous = objective
    return volumes.reshape((-1, 1)) * shape, volumes


# --------------------------------------------------------------------------- the models
def _eii(scatter, nk, warm, tol):
    n_features = scatter.shape[1]
    return np.full(len(nk), scatter.sum() / (nk.sum() * n_features)), None


def _vii(scatter, nk, warm, tol):
    return scatter.sum(axis=1) / (nk * scatter.shape[1]), None


def _eei(scatter, nk, warm, tol):
    return _rule_ee(scatter, nk), None


def _vei(scatter, nk, warm, tol):
    values, volumes = _rule_ve(scatter, nk, _start_volumes(scatter, nk, warm), tol, _INNER_MAX)
    return values, Warm(volumes=volumes)


def _start_volumes(values: np.ndarray, nk: np.ndarray, warm: Warm | None) -> np.ndarray:
    """The previous volumes, or the VII ones (``tr / (n_k D)``) on a fresh start."""
    if warm is not None and warm.volumes is not None:
        return warm.volumes
    traces = values.sum(axis=1) if values.ndim == 2 else np.trace(values, axis1=1, axis2=2)
    return traces / (nk * values.shape[1])


def _evi(scatter, nk, warm, tol):
    return _rule_ev(scatter, nk), None


def _vvi(scatter, nk, warm, tol):
    return _rule_vv(scatter, nk), None


def _eee(scatter, nk, warm, tol):
    return scatter.sum(axis=0) / nk.sum(), None


def _vvv(scatter, nk, warm, tol):
    return scatter / nk[:, None, None], None


def _evv(scatter, nk, warm, tol):
    covariances, failed = _evv_rule(scatter, nk)
    if failed >= 0:
        raise SingularCovarianceError(g._singular_message(failed))
    return covariances, None


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _evv_rule(scatter, nk):  # pragma: no cover - compiled
    """``lambda C_k`` with ``C_k = W_k / |W_k|^(1/D)`` (C&G 1995): log-determinants by Cholesky;
    the first ``W_k`` that is not positive definite, or -1."""
    n_components, n_features = scatter.shape[0], scatter.shape[1]
    lower = np.empty_like(scatter)
    failed = g._cholesky_into(scatter, lower)
    volumes = np.empty(n_components)  # |W_k|^(1/D)
    for k in range(n_components):
        volumes[k] = np.exp(2.0 * np.log(np.diag(lower[k])).sum() / n_features)
    common = volumes.sum() / nk.sum()
    out = np.empty_like(scatter)
    for k in range(n_components):
        out[k] = common * scatter[k] / volumes[k]
    return out, failed


def _eev(scatter, nk, warm, tol):
    values, vectors = _eigh(scatter)
    return _rotate(vectors, _rule_ee(values, nk)), None


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _eigh(matrices):  # pragma: no cover - compiled
    """Eigenvalues ``(K, D)`` (ascending) and eigenvectors ``(K, D, D)`` of each matrix."""
    values = np.empty(matrices.shape[:2])
    vectors = np.empty_like(matrices)
    for k in range(matrices.shape[0]):
        w, v = np.linalg.eigh(matrices[k])
        values[k] = w
        vectors[k] = v
    return values, vectors


def _vev(scatter, nk, warm, tol):
    values, vectors = _eigh(scatter)
    values, volumes = _rule_ve(values, nk, _start_volumes(values, nk, warm), tol, _INNER_MAX)
    return _rotate(vectors, values), Warm(volumes=volumes)


def _vee(scatter, nk, warm, tol):
    common, volumes, failed = _vee_loop(
        scatter, nk, _start_volumes(scatter, nk, warm), tol, _INNER_MAX
    )
    if failed:
        raise SingularCovarianceError(g._singular_message(None))
    return volumes[:, None, None] * common, Warm(volumes=volumes)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _vee_loop(scatter, nk, volumes, tol, max_iter):  # pragma: no cover - compiled
    """``lambda_k C`` (C&G 1995): ``C`` given the volumes, then the volumes given ``C``.

    ``C = S / |S|^(1/D)`` with ``S = sum_k W_k / lambda_k``, and
    ``lambda_k = tr(W_k C^-1) / (n_k D)``: with ``S = L L^T``, ``tr(W_k S^-1)`` is the sum of
    the elementwise product of ``L^-1 W_k`` and ``L^-1``. Returns ``C``, the volumes (the
    exact update given that ``C``) and whether ``S`` was singular.
    """
    n_components, n_features = scatter.shape[0], scatter.shape[1]
    common = np.zeros((1, n_features, n_features))
    lower = np.empty_like(common)
    inverse = np.empty_like(common)
    root_det = 1.0
    previous = np.inf
    for _ in range(max_iter):
        common[0] = 0.0
        for k in range(n_components):
            common[0] += scatter[k] / volumes[k]
        if g._cholesky_into(common, lower) >= 0:
            return common[0], volumes, True
        g._invert_lower_into(lower, inverse)
        root_det = np.exp(2.0 * np.log(np.diag(lower[0])).sum() / n_features)  # |S|^(1/D)
        volumes = np.empty(n_components)
        for k in range(n_components):
            volumes[k] = root_det * (inverse[0] @ scatter[k] * inverse[0]).sum()
        volumes /= nk * n_features
        objective = n_features * (nk * np.log(volumes)).sum()
        if not previous - objective > tol:
            break
        previous = objective
    return common[0] / root_det, volumes, False


def _common_orientation(
    scatter: np.ndarray, nk: np.ndarray, warm: Warm | None, tol: float, equal_volume: bool
) -> tuple[np.ndarray, Warm]:
    """``R diag(V_k) R^T``, common orthogonal ``R`` (EVE, VVE): :func:`_orientation_loop` from
    the previous solution, or from each :func:`_fresh_orientations`, keeping the lowest ``F``."""
    fresh = warm is None or warm.orientation is None
    starts = _fresh_orientations(scatter) if fresh else [(warm.orientation.copy(), warm.values)]
    best = None
    for orientation, values in starts:
        values = _orientation_loop(
            scatter, nk, orientation, values, equal_volume, tol, _ORIENTATION_MAX
        )
        objective = _orientation_objective(scatter, nk, orientation, values) if fresh else 0.0
        if best is None or objective < best[0] - tol:
            best = (objective, orientation, values)
    _, orientation, values = best
    return _rotate(orientation[None], values), Warm(orientation=orientation, values=values)


def _fresh_orientations(scatter: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fresh starts of the orientation loop: the eigenvectors of ``sum_k W_k`` and the axes
    (``D = I``, mclust's start), with no values."""
    starts = [np.linalg.eigh(scatter.sum(axis=0))[1], np.eye(scatter.shape[1])]
    return [(np.ascontiguousarray(start), np.empty((0, 0))) for start in starts]


def _orientation_objective(scatter, nk, orientation, values) -> float:
    """``F = sum_k [n_k sum_j log V_kj + sum_j (R^T W_k R)_jj / V_kj]``; inf if not finite."""
    projected = np.einsum("ak,iab,bk->ik", orientation, scatter, orientation)
    objective = float((nk * np.log(values).sum(axis=1)).sum() + (projected / values).sum())
    return objective if np.isfinite(objective) else np.inf


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _orientation_loop(
    scatter, nk, orientation, values, equal_volume, tol, max_iter
):  # pragma: no cover - compiled
    """Alternate a sweep of plane rotations of ``R`` (the values held fixed) with the exact
    update of the values given ``R`` (``EV`` or ``VV`` rule on ``diag(R^T W_k R)``).

    ``orientation`` (``R``) is updated in place; empty ``values`` start from the rule at ``R``.
    Returns the values.
    """
    rotated = np.empty_like(scatter)
    for k in range(scatter.shape[0]):
        rotated[k] = orientation.T @ scatter[k] @ orientation  # R^T W_k R
    projected = np.empty((scatter.shape[0], scatter.shape[1]))
    if values.size == 0:
        for j in range(scatter.shape[1]):
            projected[:, j] = rotated[:, j, j]
        values = _rule_ev(projected, nk) if equal_volume else _rule_vv(projected, nk)
    previous = np.inf
    for _ in range(max_iter):
        _rotation_sweep(rotated, 1.0 / values, orientation)
        for j in range(scatter.shape[1]):
            projected[:, j] = rotated[:, j, j]
        values = _rule_ev(projected, nk) if equal_volume else _rule_vv(projected, nk)
        objective = (nk * np.log(values).sum(axis=1)).sum() + (projected / values).sum()
        if not previous - objective > tol:
            break
        previous = objective
    return values


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _rotation_sweep(rotated, inverse, orientation):  # pragma: no cover - compiled
    """One sweep of plane rotations lowering ``sum_k tr(R^T W_k R M_k)``, ``M_k = diag(1/V_k)``.

    For each pair of columns ``(i, j)`` of ``R`` the rotation by ``theta`` changes the sum by
    ``a cos(2 theta) + b sin(2 theta)`` (up to a constant), with
    ``a = sum_k (M_ki - M_kj) (A_kii - A_kjj) / 2`` and ``b = sum_k (M_ki - M_kj) A_kij``,
    ``A_k = R^T W_k R``: minimised exactly at ``2 theta = atan2(-b, -a)``. This is the pairwise
    scheme of Flury & Gautschi (1986) for common principal components. ``rotated`` (``A_k``)
    and ``orientation`` (``R``) are updated in place.
    """
    n_components, n_features = inverse.shape
    for i in range(n_features - 1):
        for j in range(i + 1, n_features):
            a = 0.0
            b = 0.0
            for k in range(n_components):
                weight = inverse[k, i] - inverse[k, j]
                a += 0.5 * weight * (rotated[k, i, i] - rotated[k, j, j])
                b += weight * rotated[k, i, j]
            if b == 0.0 and a <= 0.0:
                continue
            theta = 0.5 * np.arctan2(-b, -a)
            c = np.cos(theta)
            s = np.sin(theta)
            for r in range(n_features):
                first = orientation[r, i]
                orientation[r, i] = c * first + s * orientation[r, j]
                orientation[r, j] = c * orientation[r, j] - s * first
            for k in range(n_components):
                for r in range(n_features):
                    first = rotated[k, r, i]
                    rotated[k, r, i] = c * first + s * rotated[k, r, j]
                    rotated[k, r, j] = c * rotated[k, r, j] - s * first
                for r in range(n_features):
                    first = rotated[k, i, r]
                    rotated[k, i, r] = c * first + s * rotated[k, j, r]
                    rotated[k, j, r] = c * rotated[k, j, r] - s * first


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _rotate(vectors, values):  # pragma: no cover - compiled
    """``R_k diag(V_k) R_k^T`` for every component (``vectors`` ``(K, D, D)`` or ``(1, D, D)``),
    symmetric by construction."""
    n_components, n_features = values.shape
    out = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        vector = vectors[k if vectors.shape[0] > 1 else 0]
        for a in range(n_features):
            for b in range(a + 1):
                total = 0.0
                for j in range(n_features):
                    total += vector[a, j] * values[k, j] * vector[b, j]
                out[k, a, b] = total
                out[k, b, a] = total
    return out


_RULES = {
    "EII": _eii,
    "VII": _vii,
    "EEI": _eei,
    "VEI": _vei,
    "EVI": _evi,
    "VVI": _vvi,
    "EEE": _eee,
    "VEE": _vee,
    "EVE": lambda scatter, nk, warm, tol: _common_orientation(scatter, nk, warm, tol, True),
    "VVE": lambda scatter, nk, warm, tol: _common_orientation(scatter, nk, warm, tol, False),
    "EEV": _eev,
    "VEV": _vev,
    "EVV": _evv,
    "VVV": _vvv,
}

_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
