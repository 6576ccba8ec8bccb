"""nutpie calling the E-step kernel's log density as machine code: no Python, no GIL, per step.

nutpie's ``from_pyfunc`` models call a Python function for every gradient. The kernel itself
releases the GIL (:mod:`bayesgmm._logdensity`), but the Python around it (the call, the
arguments, the tuple returned) holds it, and nutpie runs its chains on threads: with two or more
chains on two cores they queue for the GIL and run slower than one core alone (MASS crabs, K=4,
full covariances, 83 parameters: 27 us a gradient on one core; 57 us with two chains on two
cores and 71 us with four, wall time per gradient). Here nutpie gets the addresses of two C
callbacks compiled by Numba, the way its own Numba backend for PyMC models works: each chain
calls the kernel directly (17 us a gradient on one core, 7.4 us with four chains on two cores),
and the draws are the same numbers as through Python, to rounding.

The callbacks read everything but the point from one ``int64`` header: the sizes, flags and the
addresses of the rows (complete; with frequency weights; or sorted by missingness pattern, each
with its own kernel, as :class:`bayesgmm._logdensity.LogDensity` chooses), the density's
constant arrays and (whitened sampling) the mode and the Laplace factor, all held alive by the
model object nutpie keeps. Their machine code is cached on disk like the kernels'
(:func:`bayesgmm._numba_cache.compile_callback`). A nutpie without these (private) entry points
keeps the Python callback (:func:`bayesgmm.sampling._kernel_compiled`).
"""

from __future__ import annotations

import dataclasses
import functools

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from nutpie.sample import CompiledModel

from . import _numba_cache
from ._kernels import NO_WEIGHTS
from ._logdensity import LogDensity, _logp_and_grad, _weighted_logp_and_grad
from ._logdensity_missing import Rows, _logp_and_grad_rows
from ._precondition import Laplace, _to_theta, _to_z_gradient

__all__ = ["available", "native_model"]

# the header's fields (int64), in order
(
    _N_DIM,
    _WHITENED,
    _X,
    _N_ROWS,
    _N_FEATURES,
    _LOC,
    _SCALE,
    _MEANS_LOC,
    _MEANS_SCALE,
    _SD_TERMS,
    _SD_ROWS,
    _N_SCALES,
    _FLOATS,  # log_jacobian, alpha, lkj_shape, constant, the rows' total weight
    _N_COMPONENTS,
    _DIAGONAL,
    _N_GROUPS,
    _BLOCK,
    _MODE,
    _FACTOR,
    _ROWS,  # which kernel: _COMPLETE, _WEIGHTED or _PATTERNS
    _WEIGHTS,
    _N_WEIGHTS,
    _BOUNDS,
    _N_PATTERNS,
    _ORDER,
    _N_OBSERVED,
    _HEADER_SIZE,
) = range(27)
# the rows: complete and unweighted; complete with frequency weights; sorted by missingness
# pattern (bayesgmm._logdensity_missing.Rows), each its own kernel
_COMPLETE, _WEIGHTED, _PATTERNS = 0, 1, 2

_LOGP_SIGNATURE = types.int64(
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)
_EXPAND_SIGNATURE = types.int64(
    types.uint64,
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)
# nutpie's codes (as its Numba backend returns them): a non-finite gradient or density is a
# divergence of that trajectory, -1 (the wrong size) stops the run, and so does an error in a
# callback (1 in the density's, -2 in the draw's: without the ``try`` a compiled callback that
# raises prints the error and returns 0, so nutpie would take its stale outputs as a result)
_OK, _WRONG_SIZE, _GRADIENT_NOT_FINITE, _DENSITY_NOT_FINITE = 0, -1, 3, 4
_DENSITY_FAILED, _DRAW_FAILED = 1, -2


@intrinsic
def _address(typingctx, value):  # pragma: no cover - compiled
    """The integer ``value`` as a pointer, for :func:`numba.carray`."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(value), codegen


@numba.njit(inline="always", fastmath=False)
def _floats(header, field, shape):  # pragma: no cover - compiled
    return numba.carray(_address(header[field]), shape, np.float64)


@numba.njit(inline="always", fastmath=False)
def _ints(header, field, shape):  # pragma: no cover - compiled
    return numba.carray(_address(header[field]), shape, np.int64)


@numba.njit(inline="always", fastmath=False)
def _density_args(header):  # pragma: no cover - compiled
    """The density's constant arguments (``LogDensity._args``) from the header."""
    n_features = header[_N_FEATURES]
    floats = _floats(header, _FLOATS, (5,))
    return (
        _floats(header, _LOC, (n_features,)),
        _floats(header, _SCALE, (n_features,)),
        floats[0],
        header[_N_COMPONENTS],
        header[_DIAGONAL] != 0,
        header[_N_GROUPS],
        header[_N_SCALES],
        floats[1],
        _floats(header, _MEANS_LOC, (n_features,)),
        _floats(header, _MEANS_SCALE, (n_features,)),
        _floats(header, _SD_TERMS, (header[_SD_ROWS], header[_N_SCALES])),
        floats[2],
        floats[3],
        header[_BLOCK],
    )


def _logp_callback(n_dim, point, gradient, logp, data):  # pragma: no cover - compiled
    """nutpie's log density callback: value and gradient at ``point`` (whitened ``z`` or
    ``theta``, as the header says), by the kernel of the header's kind of rows."""
    header = numba.carray(data, (_HEADER_SIZE,), np.int64)
    if n_dim != header[_N_DIM]:
        return _WRONG_SIZE
    size = header[_N_DIM]  # int64 (n_dim is unsigned: mixed with signed, numba makes floats)
    try:
        x = numba.carray(point, (size,))
        whitened = header[_WHITENED] != 0
        m = size if whitened else 0
        mode, factor = _floats(header, _MODE, (m,)), _floats(header, _FACTOR, (m, m))
        theta = _to_theta(x, mode, factor) if whitened else x
        value, grad = _rows_logp_and_grad(theta, header)
        if whitened:
            grad = _to_z_gradient(factor, grad)
        numba.carray(logp, (1,))[0] = value
        numba.carray(gradient, (size,))[:] = grad
    except Exception:  # any failure is nutpie's error code, not a result
        return _DENSITY_FAILED
    if not np.all(np.isfinite(grad)):
        return _GRADIENT_NOT_FINITE
    if not np.isfinite(value):
        return _DENSITY_NOT_FINITE
    return _OK


@numba.njit(inline="always", fastmath=False)
def _rows_logp_and_grad(theta, header):  # pragma: no cover - compiled
    """The log density at ``theta`` and its gradient, by the kernel the rows take (as
    :meth:`bayesgmm._logdensity.LogDensity.__call__` chooses it)."""
    X = _floats(header, _X, (header[_N_ROWS], header[_N_FEATURES]))
    args = _density_args(header)
    if header[_ROWS] == _COMPLETE:
        return _logp_and_grad(theta, X, *args)
    weights = _floats(header, _WEIGHTS, (header[_N_WEIGHTS],))
    n_weight = _floats(header, _FLOATS, (5,))[4]
    if header[_ROWS] == _WEIGHTED:
        return _weighted_logp_and_grad(theta, X, weights, n_weight, *args)
    n_patterns = header[_N_PATTERNS]
    bounds = _ints(header, _BOUNDS, (n_patterns + 1,))
    order = _ints(header, _ORDER, (n_patterns, header[_N_FEATURES]))
    n_observed = _ints(header, _N_OBSERVED, (n_patterns,))
    return _logp_and_grad_rows(theta, X, weights, n_weight, bounds, order, n_observed, *args)


def _expand_callback(n_dim, n_expanded, point, out, data):  # pragma: no cover - compiled
    """nutpie's draw callback: the unconstrained ``theta`` of ``point`` (``mode + L z`` when
    whitened; ``L`` lower triangular, as :meth:`Laplace.to_theta`)."""
    header = numba.carray(data, (_HEADER_SIZE,), np.int64)
    if n_dim != header[_N_DIM] or n_expanded != n_dim:
        return _WRONG_SIZE
    size = header[_N_DIM]
    try:
        x = numba.carray(point, (size,))
        theta = numba.carray(out, (size,))
        if header[_WHITENED] == 0:
            theta[:] = x
        else:
            mode = _floats(header, _MODE, (size,))
            theta[:] = _to_theta(x, mode, _floats(header, _FACTOR, (size, size)))
    except Exception:  # as in the density's callback
        return _DRAW_FAILED
    return _OK


#: the callbacks compiled as C functions, with their cache (see :mod:`bayesgmm._numba_cache`)
CALLBACKS = ((_logp_callback, _LOGP_SIGNATURE), (_expand_callback, _EXPAND_SIGNATURE))


@functools.cache
def _compiled() -> tuple:
    """The two callbacks' C functions (compiled, or loaded from disk, once a process)."""
    return tuple(_numba_cache.compile_callback(fn, signature) for fn, signature in CALLBACKS)


@functools.cache
def available() -> bool:
    """Whether this nutpie has the entry points for compiled callbacks (those its Numba
    backend for PyMC models uses: ``LogpFunc``, ``ExpandFunc``, ``PyMcModel``)."""
    from nutpie import _lib

    names = ("LogpFunc", "ExpandFunc", "PyMcModel", "PyVariable")
    return all(hasattr(_lib, name) for name in names) and hasattr(_lib.PySampler, "from_pymc")


def _header(density: LogDensity, rows: np.ndarray | Rows, approx: Laplace | None) -> tuple:
    """The callbacks' header and the arrays its addresses point into (to keep alive)."""
    (loc, scale, log_jacobian, n_components, diagonal, n_groups, n_scales, alpha) = density._args[
        :8
    ]
    means_loc, means_scale, sd_terms, lkj_shape, constant, block = density._args[8:]
    kind, X, weights, n_weight, bounds, order, n_observed = _row_arrays(rows)
    kept = []

    def address(values, dtype=np.float64) -> int:
        array = np.ascontiguousarray(values, dtype=dtype)
        kept.append(array)
        return array.ctypes.data

    header = np.zeros(_HEADER_SIZE, dtype=np.int64)
    header[_N_DIM], header[_WHITENED], header[_ROWS] = density.n_dim, approx is not None, kind
    header[_X], (header[_N_ROWS], header[_N_FEATURES]) = address(X), X.shape
    header[_LOC], header[_SCALE] = address(loc), address(scale)
    header[_MEANS_LOC], header[_MEANS_SCALE] = address(means_loc), address(means_scale)
    header[_SD_TERMS], (header[_SD_ROWS], header[_N_SCALES]) = address(sd_terms), sd_terms.shape
    header[_FLOATS] = address([log_jacobian, alpha, lkj_shape, constant, n_weight])
    header[_N_COMPONENTS], header[_DIAGONAL] = n_components, diagonal
    header[_N_GROUPS], header[_BLOCK] = n_groups, block
    header[_WEIGHTS], header[_N_WEIGHTS] = address(weights), len(weights)
    header[_BOUNDS], header[_N_PATTERNS] = address(bounds, np.int64), len(n_observed)
    header[_ORDER], header[_N_OBSERVED] = address(order, np.int64), address(n_observed, np.int64)
    whitened = approx is not None
    header[_MODE] = address(approx.mode if whitened else np.empty(0))
    header[_FACTOR] = address(approx.factor if whitened else np.empty((0, 0)))
    _check_shapes(density, header, kept, n_scales)
    return header, tuple(kept)


def _row_arrays(rows: np.ndarray | Rows) -> tuple:
    """``(kind, values, weights, n_weight, bounds, order, n_observed)`` of the rows as
    :meth:`bayesgmm._logdensity.LogDensity.rows` gives them (complete rows: one pattern)."""
    if isinstance(rows, Rows):
        kind = _WEIGHTED if rows.complete else _PATTERNS
        arrays = (rows.values, rows.weights, rows.n_weight, rows.bounds, rows.order)
        return (kind, *arrays, rows.n_observed)
    n, d = rows.shape
    everything = np.arange(d)[None, :]
    return _COMPLETE, rows, NO_WEIGHTS, float(n), np.array([0, n]), everything, np.array([d])


def _check_shapes(density: LogDensity, header: np.ndarray, kept: list, n_scales: int) -> None:
    """The arrays have the shapes the header gives the callbacks (which cannot check them:
    a wrong one would be read past its end)."""
    d, n_dim = density.n_features, density.n_dim
    n_patterns, whitened = header[_N_PATTERNS], n_dim * (header[_WHITENED] != 0)
    expected = [(header[_N_ROWS], d), (d,), (d,), (d,), (d,), (header[_SD_ROWS], n_scales), (5,)]
    expected += [(header[_N_WEIGHTS],), (n_patterns + 1,), (n_patterns, d), (n_patterns,)]
    expected += [(whitened,), (whitened, whitened)]
    shapes = [array.shape for array in kept]
    if shapes != [tuple(int(n) for n in shape) for shape in expected]:
        raise ValueError(f"the density's arrays have shapes {shapes}, expected {expected}")
    n_rows, weights, bounds, order, n_observed = header[_N_ROWS], *kept[7:11]
    indices_fit = (
        len(weights) in (0, n_rows)
        and bounds[0] == 0
        and bounds[-1] == n_rows
        and np.all(np.diff(bounds) >= 0)
        and np.all((order >= 0) & (order < d))
        and np.all((n_observed >= 1) & (n_observed <= d))
    )
    if not indices_fit:
        raise ValueError("the rows' weights, pattern bounds or feature order do not fit the rows")


@dataclasses.dataclass(frozen=True, eq=False)
class KernelModel(CompiledModel):
    """nutpie's compiled model of the callbacks for one header (see :func:`native_model`):
    the header, the arrays it points into and the callbacks' machine code, held alive by
    nutpie as long as it samples (it keeps the model)."""

    size: int
    name: str
    header: np.ndarray
    kept: tuple
    start: np.ndarray
    callbacks: tuple

    @property
    def n_dim(self) -> int:
        return self.size

    @property
    def shapes(self) -> dict:
        return {self.name: (self.size,)}

    @property
    def coords(self) -> dict:
        return {}

    def _make_sampler(self, settings, init_mean, cores, progress_type, *callbacks_and_store):
        from nutpie import _lib

        model = self._make_model(init_mean)
        return _lib.PySampler.from_pymc(settings, cores, model, progress_type, *callbacks_and_store)

    def _make_model(self, init_mean=None):
        from nutpie import _lib

        logp, expand = self.callbacks
        address = self.header.ctypes.data
        sizes: dict = {}  # nutpie names the draw's dimension in it
        variables = _lib.PyVariable.new_variables(
            [self.name], ["float64"], [(self.size,)], sizes, {}
        )
        return _lib.PyMcModel(
            _lib.LogpFunc(logp.address, address, self),
            _lib.ExpandFunc(self.size, self.size, expand.address, address, self),
            variables,
            self.size,
            sizes,
            {},
            self._make_initial_points,
            None,
        )

    def _make_initial_points(self, seed: int) -> np.ndarray:
        """Every chain's start, whatever its seed (the name nutpie's Python models use)."""
        return self.start.copy()


def native_model(
    density: LogDensity, X: np.ndarray | Rows, start: np.ndarray, approx: Laplace | None, name: str
) -> KernelModel:
    """nutpie's model of ``density`` on the rows ``X`` through the compiled callbacks.

    Parameters
    ----------
    density : LogDensity
    X : ndarray of shape (n_rows, n_features) or Rows
        The rows as ``density.rows`` gives them: complete ones (float64, C-contiguous), or
        rows with missing cells or frequency weights.
    start : ndarray of shape (n_dim,)
        Where every chain starts (in the sampled coordinates: ``z`` when whitened).
    approx : Laplace or None
        Sample ``z`` with ``theta = mode + L z`` (:mod:`bayesgmm._precondition`), or ``theta``.
    name : str
        The variable nutpie keeps each draw's ``theta`` as.

    Returns
    -------
    KernelModel
        What ``nutpie.sample`` takes.
    """
    header, kept = _header(density, X, approx)
    return KernelModel(
        dims={},
        size=density.n_dim,
        name=name,
        header=header,
        kept=kept,
        start=np.array(start),
        callbacks=_compiled(),  # compiled (or loaded) now, not in nutpie's first chain
    )


_numba_cache.install_module(__name__)  # its helpers compile into the callbacks only
