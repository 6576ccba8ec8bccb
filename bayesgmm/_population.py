"""em-EM's runs of one fit held in stacked arrays, advanced a stage at a time.

em-EM (:func:`bayesgmm._restarts.em_em`) advances thousands of runs by a few iterations each
across a sweep: one iteration for every start, one more for the reserve, nine for the short
runs, five at a time in the loose stage. One compiled call per run and its packing (arrays
out of the run's parameters, the results back into them) cost several times the iteration
itself at the sizes people sweep. Here the parameters of every run of a fit live in one row
of stacked arrays (:class:`Population`), and :func:`iterate_many` advances any set of rows in
one compiled call, each by :func:`bayesgmm._fastem.iterate`, the iterations of the per-run
path, so every number is bit for bit that path's (``tests/test_population.py``).

A run whose next iteration the compiled loop cannot take (its M-step would fail) leaves the
arrays: its parameters move into the run, and from then on it goes through
:meth:`bayesgmm.em.EMGaussianMixture._advance` like any run (which raises the M-step's error
with its message, or takes the iteration in Python).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from . import _fastem, _mstep, _numba_cache
from ._gaussian import MixtureStatistics

__all__ = ["Population", "Slot", "iterate_many", "start_rows"]

_START_ELEMENTS = 2**21  # starts x components x rows x features of one batch of statistics


# runs to convergence on threads
@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath=False)
def iterate_many(
    X, loc, scale, layout, block_rows, model, regularisation, inner_tol, tol, arrays, which, limits
):  # pragma: no cover - compiled
    """:func:`bayesgmm._fastem.iterate` for each row ``which[j]`` of the stacked ``arrays``
    (weights, means, factors, covariances, volumes, orientation, values, lower bounds), at
    most ``limits[j]`` iterations, the rows updated in place.

    Returns each run's lower bounds after each iteration taken (row ``j``, the first
    ``taken[j]``), ``taken``, whether it converged and whether its next iteration would fail.
    """
    weights, means, factors, covariances, volumes, orientation, values, lower = arrays
    n = which.shape[0]
    width = 0
    for j in range(n):
        width = max(width, limits[j])
    traces = np.empty((n, width))
    taken = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=np.bool_)
    failed = np.zeros(n, dtype=np.bool_)
    for j in range(n):
        i = which[j]
        if limits[j] <= 0:
            continue
        out, warm, trace, converged[j], failed[j] = _fastem.iterate(
            X, loc, scale, layout, block_rows, model, regularisation, inner_tol,
            (weights[i], means[i], factors[i], covariances[i]),
            (volumes[i], orientation[i], values[i]),
            np.array([limits[j], tol, lower[i]]),
        )  # fmt: skip
        taken[j] = trace.shape[0]
        if taken[j] == 0:
            continue
        traces[j, : taken[j]] = trace
        weights[i] = out[0]
        means[i] = out[1]
        factors[i] = out[2]
        covariances[i] = out[3]
        volumes[i] = warm[0]
        orientation[i] = warm[1]
        values[i] = warm[2]
        lower[i] = trace[-1]
    return traces, taken, converged, failed


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _fresh_volumes(nk, first, second, model, regularisation):  # pragma: no cover - compiled
    """The volumes a fresh iterative M-step (VEI, VEE, VEV) starts from, as
    :func:`bayesgmm._mstep._start_volumes` (the VII ones, ``tr(W_k) / (n_k D)``, summed in
    NumPy's order); empty for the other models."""
    n_components, n_features = first.shape
    if model != 3 and model != 7 and model != 12:
        return np.empty(0)
    volumes = np.empty(n_components)
    values = np.empty((n_components, n_features))
    if model == 3:  # VEI: the scatter's diagonal, as the diagonal M-step forms it
        for k in range(n_components):
            for j in range(n_features):
                delta = first[k, j] / nk[k]
                values[k, j] = second[k, j, 0] - nk[k] * (delta * delta - regularisation[j])
    else:
        _, scatter = _mstep._full_scatter(nk, first, second, np.zeros_like(first), regularisation)
        if model == 7:  # VEE: np.trace of each scatter
            for k in range(n_components):
                for j in range(n_features):
                    values[k, j] = scatter[k, j, j]
        else:  # VEV: the eigenvalues of each scatter
            values = _mstep._eigh(scatter)[0]
    for k in range(n_components):
        volumes[k] = _fastem._numpy_sum(values[k]) / (nk[k] * n_features)
    return volumes


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def start_rows(
    resp_sum, first, second, model, regularisation, inner_tol, arrays, rows
):  # pragma: no cover - compiled
    """The first M-step of each start ``s`` (the statistics of its responsibilities about
    zero, ``second`` as ``(S, K, D, D or 1)``) into row ``rows[s]`` of ``arrays`` (as
    :func:`iterate_many`'s), by the compiled M-step of :func:`bayesgmm._fastem.iterate` from a
    fresh start; whether each failed (then its row is meaningless). Not for EVE and VVE, whose
    fresh M-step tries several orientations."""
    weights, means, factors, covariances, volumes, _, _, lower = arrays
    failed = np.zeros(rows.shape[0], dtype=np.bool_)
    empty = np.empty((0, 0))
    for s in range(rows.shape[0]):
        nk = resp_sum[s] + _mstep.NK_FLOOR
        warm = (_fresh_volumes(nk, first[s], second[s], model, regularisation), empty, empty)
        step = _fastem._m_step(
            (0.0, resp_sum[s], first[s], second[s]),
            np.zeros_like(first[s]), model, regularisation, warm, inner_tol,
        )  # fmt: skip
        if step[5]:
            failed[s] = True
            continue
        i = rows[s]
        weights[i] = step[0]
        means[i] = step[1]
        covariances[i] = step[2]
        factors[i] = step[3]
        volumes[i] = step[4][0]
        lower[i] = -np.inf
    return failed


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def start_scatters(resp_sum, first, second, regularisation):  # pragma: no cover - compiled
    """Each start's scatter matrices about its means (``(S, K, D, D)``), as the M-step's."""
    out = np.empty_like(second)
    for s in range(second.shape[0]):
        nk = resp_sum[s] + _mstep.NK_FLOOR
        shift = np.zeros_like(first[s])
        out[s] = _mstep._full_scatter(nk, first[s], second[s], shift, regularisation)[1]
    return out


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _objective(scatter, nk, orientation, values):  # pragma: no cover - compiled
    """:func:`bayesgmm._mstep._orientation_objective`: ``F`` of a common orientation."""
    total = 0.0
    for k in range(scatter.shape[0]):
        rotated = orientation.T @ scatter[k] @ orientation
        for j in range(scatter.shape[1]):
            total += nk[k] * np.log(values[k, j]) + rotated[j, j] / values[k, j]
    return total if np.isfinite(total) else np.inf


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def start_orientation_rows(
    resp_sum, first, second, scatters, vectors, model, regularisation, inner_tol, arrays, rows
):  # pragma: no cover - compiled
    """:func:`start_rows` for EVE and VVE: the fresh M-step of
    :func:`bayesgmm._mstep._common_orientation` from each start's two orientations (the
    eigenvectors ``vectors[s]`` of its summed scatter, and the axes), the lower ``F`` kept."""
    weights, means, factors, covariances, _, orientation, values, lower = arrays
    failed = np.zeros(rows.shape[0], dtype=np.bool_)
    for s in range(rows.shape[0]):
        nk = resp_sum[s] + _mstep.NK_FLOOR
        tol = inner_tol * 2.0 * _fastem._numpy_sum(nk)
        stats = (0.0, resp_sum[s], first[s], second[s])
        shift = np.zeros_like(first[s])
        best = _fastem._m_step(
            stats, shift, model, regularisation, (np.empty(0), vectors[s], np.empty((0, 0))),
            inner_tol,
        )  # fmt: skip
        axes = np.eye(first.shape[2])
        other = _fastem._m_step(
            stats, shift, model, regularisation, (np.empty(0), axes, np.empty((0, 0))), inner_tol
        )
        best_f = _objective(scatters[s], nk, best[4][1], best[4][2])
        if _objective(scatters[s], nk, other[4][1], other[4][2]) < best_f - tol:
            best = other
        if best[5]:
            failed[s] = True
            continue
        i = rows[s]
        weights[i] = best[0]
        means[i] = best[1]
        covariances[i] = best[2]
        factors[i] = best[3]
        orientation[i] = best[4][1]
        values[i] = best[4][2]
        lower[i] = -np.inf
    return failed


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _weighted_rows(resps, X):  # pragma: no cover - compiled
    """``resps[s, n, k] * X[n, d]`` as a C-contiguous ``(S, K, N, D)`` array: the products
    NumPy's broadcast multiplication forms (the same rounded products), without its
    length-``D`` inner loops."""
    n_starts, n_samples, n_components = resps.shape
    n_features = X.shape[1]
    out = np.empty((n_starts, n_components, n_samples, n_features))
    for s in range(n_starts):
        for k in range(n_components):
            for n in range(n_samples):
                r = resps[s, n, k]
                for d in range(n_features):
                    out[s, k, n, d] = r * X[n, d]
    return out


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _resp_sums(resps):  # pragma: no cover - compiled
    """``resps.sum(axis=1)`` of ``(S, N, K)`` responsibilities in NumPy's order (row after
    row: the reduced axis is not the contiguous one; for ``K = 1`` NumPy sums pairwise, but
    those responsibilities are ones, whose sums are exact in any order)."""
    n_starts, n_samples, n_components = resps.shape
    out = np.zeros((n_starts, n_components))
    for s in range(n_starts):
        for n in range(n_samples):
            for k in range(n_components):
                out[s, k] += resps[s, n, k]
    return out


def start_statistics(Xu: np.ndarray, resps: np.ndarray, layout: str) -> tuple:
    """:func:`bayesgmm._gaussian.weighted_statistics` about zero of each of the ``(S, N, K)``
    responsibilities, stacked (the same products and BLAS calls, so the same numbers):
    ``resp_sum`` ``(S, K)``, ``first`` ``(S, K, D)``, ``second`` ``(S, K, D, D)`` (full,
    tied) or ``(S, K, D)`` (each component's vector-matrix product, a one-row ``matmul``)."""
    columns = np.swapaxes(resps, 1, 2)  # (S, K, N)
    resp_sum = _resp_sums(np.ascontiguousarray(resps, dtype=np.float64))
    first = columns @ Xu
    if layout in ("full", "tied"):
        products = _weighted_rows(resps, np.ascontiguousarray(Xu, dtype=np.float64))
        second = np.swapaxes(products, -1, -2) @ Xu
    else:
        second = (columns[:, :, None, :] @ Xu**2)[:, :, 0, :]
    return resp_sum, first, second


class Slot:
    """One run of a :class:`Population`: the attributes of :class:`bayesgmm.em._Run`, its
    parameters in row ``index`` of the population's arrays (or its own, once it left them)."""

    def __init__(self, population: Population, index: int):
        self.population = population
        self.index = index
        self.own = None
        self.lower_bound = -np.inf
        self.trace: list[float] = []
        self.n_iter = 0
        self.converged = False
        self.kind = "init"

    @property
    def params(self) -> Any:
        """The run's :class:`bayesgmm.em._Params` (copies of its rows while in the arrays)."""
        return self.own if self.own is not None else self.population.params(self.index)

    @params.setter
    def params(self, value: Any) -> None:
        self.own = value

    @property
    def covariances(self) -> np.ndarray:
        """The run's covariances in the model's layout, to read (a view while in the arrays)."""
        if self.own is not None:
            return self.own.covariances
        return _fastem._from_blocks(
            self.population.arrays[3][self.index], self.population.small.layout
        )


class Population:
    """The runs of one em-EM fit with the serial compiled loop, rows of stacked arrays.

    Parameters
    ----------
    em : EMGaussianMixture
        The fit (its model, ``tol``, ``max_iter``, ``reg_covar``), in :meth:`_fit`.
    small : bayesgmm._emloop.SmallLoop
        Its lean loop over the data.
    advance : callable
        ``advance(run, n_iter)``, the per-run path, for runs that left the arrays.
    capacity : int
        The most runs (starts) the fit has.
    """

    def __init__(self, em: Any, small: Any, advance: Any, capacity: int):
        self.em, self.small, self.advance = em, small, advance
        self.model = em.model_name_
        self.code = _fastem.MODEL_CODES[self.model]
        k, d = em.n_components, small.n_features
        blocks = {"full": (k, d, d), "tied": (1, d, d), "diag": (k, d, 1), "spherical": (k, 1, 1)}
        block = blocks[small.layout]
        volumes = k if self.model in _fastem._VOLUMES else 0
        orient = (d, d, k, d) if self.model in _fastem._ORIENTATION else (0, 0, 0, 0)
        self.arrays = (
            np.empty((capacity, k)),
            np.empty((capacity, k, d)),
            np.empty((capacity, *block)),
            np.empty((capacity, *block)),
            np.empty((capacity, volumes)),
            np.empty((capacity, *orient[:2])),
            np.empty((capacity, *orient[2:])),
            np.full(capacity, -np.inf),
        )
        self.size = 0
        self.regularisation = np.ascontiguousarray(
            em.reg_covar * em._unit_variances, dtype=np.float64
        )

    def start_many(self, Xu: np.ndarray, resps: list) -> list:
        """Runs from starting responsibilities of the rows ``Xu`` (unit scale), each by one
        M-step as :meth:`bayesgmm.em.EMGaussianMixture._params_from_resp` takes it (the same
        numbers): a run or the start's error for each. The statistics are stacked products,
        the M-steps one compiled call (:func:`start_rows`, :func:`start_orientation_rows`);
        any start the compiled M-step fails takes the Python M-step (which raises its error)."""
        n, d = Xu.shape
        k = self.em.n_components
        batch = max(1, _START_ELEMENTS // max(1, k * n * d))
        out: list = []
        for begin in range(0, len(resps), batch):
            stacked = np.stack(resps[begin : begin + batch])
            stats = start_statistics(Xu, stacked, self.small.layout)
            rows = np.arange(self.size, self.size + stacked.shape[0])
            self.size += stacked.shape[0]
            second = stats[2] if stats[2].ndim == 4 else stats[2][..., None]
            settings = (self.code, self.regularisation, self.em._inner_tol, self.arrays, rows)
            if self.model in _fastem._ORIENTATION:  # (the eigenvectors as NumPy's, stacked)
                scatters = start_scatters(*stats, self.regularisation)
                vectors = np.linalg.eigh(scatters.sum(axis=1))[1]
                failed = start_orientation_rows(*stats, scatters, vectors, *settings)
            else:
                failed = start_rows(*stats[:2], second, *settings)
            for s, row in enumerate(rows):
                out.append(
                    Slot(self, int(row)) if not failed[s] else self._python_start(n, stats, s, row)
                )
        return out

    def _python_start(self, n: int, stats: tuple, s: int, row: int) -> Any:
        """Start ``s`` by the Python M-step into ``row``: its run, or its error."""
        resp_sum, first, second = (a[s] for a in stats)
        zero = np.zeros_like(first)
        try:
            params = self.em._m_step(MixtureStatistics(0.0, n, resp_sum, first, second, zero), None)
        except (ValueError, ArithmeticError) as err:
            return err
        return self.add(params, row)

    def add(self, params: Any, row: int | None = None) -> Slot:
        """A run from parameters (a start's first M-step), in ``row`` (or the next one)."""
        if row is None:
            row = self.size
            self.size += 1
        i = row
        layout = self.small.layout
        volumes, orientation, warm_values = _fastem._warm_arrays(params.warm)
        values = (
            params.weights,
            params.means,
            _fastem._as_blocks(params.precisions_chol, layout),
            _fastem._as_blocks(params.covariances, layout),
            volumes,
            orientation,
            warm_values,
        )
        for array, value in zip(self.arrays, values, strict=False):
            array[i] = value
        self.arrays[-1][i] = -np.inf
        return Slot(self, i)

    def params(self, index: int) -> Any:
        """Row ``index`` as :class:`bayesgmm.em._Params` (copies)."""
        from .em import _Params

        w, m, f, c, v, o, a, _ = (array[index].copy() for array in self.arrays)
        layout = self.small.layout
        return _Params(
            w,
            m,
            _fastem._from_blocks(f, layout),
            _fastem._from_blocks(c, layout),
            _fastem._warm_start(self.model, v, o, a),
        )

    def advance_many(self, runs: list, n_iter: int | None, map_runs: Any = map) -> list:
        """:meth:`bayesgmm.em.EMGaussianMixture._advance` of every run by ``n_iter`` (None: to
        ``max_iter`` in all); the error of each (None if it did not fail), in the runs' order.
        The rows go through :func:`iterate_many` (runs to convergence one call per run through
        ``map_runs``, e.g. on threads), the runs outside the arrays through ``advance``."""
        before = [r.n_iter for r in runs]
        inside = [r for r in runs if r.own is None and not r.converged]
        limits = self._limits([r.n_iter for r in inside], n_iter)
        groups = [np.arange(len(inside))]
        if n_iter is None and map_runs is not map and len(inside) > 1:
            groups = [np.array([j]) for j in range(len(inside))]
        results = list(map_runs(lambda g: self._iterate(inside, g, limits), groups))
        for group, result in zip(groups, results, strict=True):
            taken, converged, failed = (array.tolist() for array in result[1:])
            traces = result[0][:, : max(taken, default=0)].tolist()  # (the rows' used part)
            for row, j in enumerate(group.tolist()):
                run = inside[j]
                if taken[row]:
                    run.trace.extend(traces[row][: taken[row]])
                    run.lower_bound = run.trace[-1]
                    run.n_iter += taken[row]
                    run.converged = converged[row]
                if failed[row]:  # the Python loop takes (or fails) the next iteration
                    run.own = self.params(run.index)
        errors = []
        for run, start in zip(runs, before, strict=True):
            error = None
            if run.own is not None:  # the rest of this call's iterations, by the per-run path
                try:
                    self.advance(run, None if n_iter is None else n_iter - (run.n_iter - start))
                except (ValueError, ArithmeticError) as err:
                    error = err
            errors.append(error)
        return errors

    def _limits(self, done: list[int], n_iter: int | None) -> np.ndarray:
        """Iterations left to runs that have taken ``done`` iterations, by :meth:`_advance`'s
        rule (at most ``n_iter`` more, ``max_iter`` in all)."""
        max_iter = self.em.max_iter
        if n_iter is None:
            return np.array([max(max_iter - d, 0) for d in done], dtype=np.int64)
        return np.array([max(min(max_iter, d + n_iter) - d, 0) for d in done], dtype=np.int64)

    def _iterate(self, inside: list, group: np.ndarray, limits: np.ndarray) -> tuple:
        which = np.array([inside[j].index for j in group], dtype=np.int64).reshape(-1)
        s, em = self.small, self.em
        return iterate_many(
            s.X, s.loc, s.scale, s.code, s.block_rows, self.code, self.regularisation,
            em._inner_tol, em.tol, self.arrays, which, limits[group],
        )  # fmt: skip


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
