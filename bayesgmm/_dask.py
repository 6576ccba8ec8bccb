"""EM on a ``dask.array``: validation, standardisation, E-step and prediction, none of which
loads the data into the client's memory.

Every pass maps one function over the row blocks and adds the results pairwise in a tree
(:func:`_tree_sum`), so the same graph runs on the threaded scheduler, on a
``dask.distributed.LocalCluster`` or on a remote cluster (whatever scheduler is active, e.g.
after ``Client(address)``). The per-block functions are those of in-memory data
(:mod:`bayesgmm._kernels`): a block is just an in-memory array. Workers need ``bayesgmm``
installed.

- validation and standardisation: one pass of :class:`~bayesgmm._kernels.ColumnSummary`;
- each E-step: one pass of :func:`~bayesgmm._kernels.e_step` (the additive
  :class:`~bayesgmm._gaussian.MixtureStatistics`);
- prediction: :func:`~bayesgmm._kernels.predict_rows` through ``map_blocks``, lazily.

Dask is an optional dependency (``pip install bayesgmm[dask]``); it is imported only when
a Dask array is passed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _gaussian as g
from . import _kernels as kernels
from ._validation import _check_finite, check_fit_summary, check_lazy_shape

__all__ = ["check_array", "check_fit_array", "e_step", "is_dask_array", "predict_rows", "subsample"]

_SPLIT_EVERY = 8  # partial results added per task in the tree reduction


def is_dask_array(X: Any) -> bool:
    """Whether ``X`` is a ``dask.array.Array`` (without importing Dask if it is not loaded)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


def check_array(estimator: Any, X: Any, *, reset: bool, ensure_min_samples: int = 1) -> Any:
    """Shape, dtype and feature-count checks of a Dask array, without computing it.

    Returns the array as float64 with all features in one chunk, so that every block holds
    whole rows. Values (finiteness) are checked by the passes that read them.
    """
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X is a Dask array with unknown chunk sizes (NaN in its shape): call "
            "X.compute_chunk_sizes() before fitting or predicting."
        )
    check_lazy_shape(
        estimator, X.shape, X.dtype, reset=reset, ensure_min_samples=ensure_min_samples
    )
    return X.astype(np.float64).rechunk({1: -1})


def _tree_sum(parts: Sequence[Any]) -> Any:
    """Add delayed partial results ``_SPLIT_EVERY`` at a time until one is left."""
    import dask

    parts = list(parts)
    while len(parts) > 1:
        parts = [
            dask.delayed(_add_all, pure=True)(*parts[i : i + _SPLIT_EVERY])
            for i in range(0, len(parts), _SPLIT_EVERY)
        ]
    return parts[0]


def _add_all(*parts: Any) -> Any:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _reduce_blocks(X: Any, function: Callable[..., Any], *args: Any) -> Any:
    """``function(block, *args)`` on every row block of ``X``, summed; computed once."""
    import dask

    shared = dask.delayed(args, pure=True)
    parts = [
        dask.delayed(_apply, pure=True)(function, block, shared) for block in X.to_delayed().ravel()
    ]
    return _tree_sum(parts).compute()


def _apply(function: Callable[..., Any], block: np.ndarray, args: tuple) -> Any:
    return function(block, *args)


def check_fit_array(estimator: Any, X: Any, n_components: int) -> tuple[Any, kernels.ColumnSummary]:
    """Validate a Dask array for fitting in one pass; return it and its column summary.

    The summary (counts of NaN and infinite values, range, scale-free moments) gives both the
    checks of in-memory data, with the same messages, and the standardisation.
    """
    X = check_array(estimator, X, reset=True, ensure_min_samples=2)
    summary = _reduce_blocks(X, _block_summary)
    check_fit_summary(
        estimator,
        n_components,
        n_samples=summary.n_samples,
        n_bad_rows=summary.n_bad_rows,
        n_nan=summary.n_nan,
        n_inf=summary.n_inf,
        minimum=summary.minimum,
        maximum=summary.maximum,
    )
    return X, summary


def _block_summary(block: np.ndarray) -> kernels.ColumnSummary:
    return kernels.column_summary(block)


def e_step(
    X: Any, mixture: kernels.Mixture, *, block_rows: int, engine: str
) -> g.MixtureStatistics:
    """E-step statistics of a Dask array: :func:`bayesgmm._kernels.e_step` per block, summed.

    The parameters travel to the workers once per E-step; only the ``O(K x D^2)`` statistics
    come back.
    """
    return _reduce_blocks(X, _block_e_step, mixture, block_rows, engine)


def _block_e_step(
    block: np.ndarray, mixture: kernels.Mixture, block_rows: int, engine: str
) -> g.MixtureStatistics:
    return kernels.e_step(block, mixture, block_rows=block_rows, engine=engine)


def subsample(X: Any, size: int, random_state: np.random.RandomState) -> np.ndarray:
    """At most ``size`` distinct rows of ``X`` drawn at random (in row order), in memory."""
    n_samples = X.shape[0]
    if n_samples <= size:
        return np.asarray(X.compute())
    rows = np.sort(random_state.choice(n_samples, size=size, replace=False))
    return np.asarray(X[rows].compute())


def predict_rows(
    X: Any, mixture: kernels.Mixture, *, block_rows: int, output: str, names: np.ndarray | None
) -> Any:
    """:func:`bayesgmm._kernels.predict_rows` over the blocks of ``X``, as a lazy Dask array.

    Each block is checked for NaN and infinity when it is computed (with the usual message).
    """
    width = kernels.prediction_width(output, mixture.means.shape[0])
    dtype = np.intp if output == "labels" else np.float64
    return X.map_blocks(
        _block_predict,
        mixture,
        block_rows,
        output,
        names,
        dtype=dtype,
        chunks=(X.chunks[0], (width,)) if width else (X.chunks[0],),
        drop_axis=None if width else 1,
        meta=np.empty((0, 0) if width else (0,), dtype=dtype),
    )


def _block_predict(
    block: np.ndarray, mixture: kernels.Mixture, block_rows: int, output: str, names: Any
) -> np.ndarray:
    _check_finite(block, names)
    return kernels.predict_rows(block, mixture, block_rows=block_rows, output=output)
