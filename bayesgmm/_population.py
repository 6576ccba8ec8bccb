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

from . import _fastem

__all__ = ["Population", "Slot", "iterate_many"]


@numba.njit(cache=True, error_model="numpy", nogil=True)  # runs to convergence on threads
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

    def add(self, params: Any) -> Slot:
        """A new run from parameters (a start's first M-step), in the next row."""
        i = self.size
        layout = self.small.layout
        volumes, orientation, values = _fastem._warm_arrays(params.warm)
        row = (
            params.weights,
            params.means,
            _fastem._as_blocks(params.precisions_chol, layout),
            _fastem._as_blocks(params.covariances, layout),
            volumes,
            orientation,
            values,
        )
        for array, value in zip(self.arrays, row, strict=False):
            array[i] = value
        self.size += 1
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
        limits = np.array([self._limit(r, n_iter) for r in inside], dtype=np.int64).reshape(-1)
        groups = [np.arange(len(inside))]
        if n_iter is None and map_runs is not map and len(inside) > 1:
            groups = [np.array([j]) for j in range(len(inside))]
        results = list(map_runs(lambda g: self._iterate(inside, g, limits), groups))
        for group, (traces, taken, converged, failed) in zip(groups, results, strict=True):
            for row, j in enumerate(group):
                run = inside[j]
                if taken[row]:
                    run.trace.extend(traces[row, : taken[row]].tolist())
                    run.lower_bound = run.trace[-1]
                    run.n_iter += int(taken[row])
                    run.converged = bool(converged[row])
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

    def _limit(self, run: Slot, n_iter: int | None) -> int:
        """Iterations left to ``run`` by :meth:`_advance`'s rule."""
        max_iter = self.em.max_iter
        stop = max_iter if n_iter is None else min(max_iter, run.n_iter + n_iter)
        return max(stop - run.n_iter, 0)

    def _iterate(self, inside: list, group: np.ndarray, limits: np.ndarray) -> tuple:
        which = np.array([inside[j].index for j in group], dtype=np.int64).reshape(-1)
        s, em = self.small, self.em
        return iterate_many(
            s.X, s.loc, s.scale, s.code, s.block_rows, self.code, self.regularisation,
            em._inner_tol, em.tol, self.arrays, which, limits[group],
        )  # fmt: skip
