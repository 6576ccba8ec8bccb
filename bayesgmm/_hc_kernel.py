"""The compiled core of model-based hierarchical agglomeration (see :mod:`bayesgmm._hierarchical`).

Every cluster lives in a *slot*: ``slots[s] = (size n, trace of W, criterion term)``, ``xs[s]``
is ``sqrt(n)`` times its mean (so a merge is one weighted sum) and, for VVV, ``scatter[s]`` its
scatter matrix ``W`` (the sum of outer products of deviations about the mean). The criterion
change of every pair of active slots is kept in a packed lower triangle (pair ``(i, j)``,
``i < j``, at ``j (j - 1) / 2 + i``) with the minimum of every column, so the best pair costs one
pass over the columns. After merging ``i < j`` the union takes slot ``i`` and the last active
slot moves into slot ``j``; only the pairs of slot ``i`` are recomputed, and a column minimum
only when its row was ``i`` or ``j``. This slot order and the tie rule (the *last* smallest pair
in packed order wins) are mclust's (Fortran ``hcvvv``, ``hcvii``, ``hceii``), so exact ties
(duplicated rows) are broken as mclust breaks them.

Criteria (Fraley 1998; ``alpha`` and ``beta`` as mclust's ``hcVVV`` scales them) for a cluster
of ``n`` rows in ``p`` features, with ``c = beta (tr W + alpha) / n``:

``VVV``
    ``n log(det(W / n) + c)``; ``n log c`` while ``n <= max(p, 2)`` or ``det W`` is 0.
``VII``
    ``n log((tr W + alpha) / n)``.
``EII``
    Ward's: a merge costs the increase of ``tr W``.

mclust's storage of VVV clusters (``first_row_only``). ``hcvvv`` keeps each cluster's scatter as
the rows of its triangular factor ``R`` (``R'R = W``) inside the data matrix, but writes the
*first* row of ``R`` into every stored row (the copy loop never advances its source row;
mclust 6.0.0 to 6.1.3). The exact ``R`` is only held in memory for the cluster formed last. So
a merge with any other cluster sees, instead of its ``W``, ``S = sum_k t_k t_k'``, where
``t_k`` is ``R``'s first row ``W[0] / sqrt(W[0, 0])`` with its first ``k`` entries set to zero,
``k < min(n - 1, p)``. With ``first_row_only=True`` the kernel does the same (``scatter[s]``
holds ``S``, ``scatter[-1]`` the exact matrix of the latest cluster) and reproduces mclust's
merges; with ``False`` every merge uses the exact ``W`` (Fraley's criterion as published). The
determinant is small beside ``c`` on mclust's SVD scale, so the two rarely part (on the
benchmark data only in the last three merges of ``wreath``).
"""

from __future__ import annotations

import numba
import numpy as np

from . import _numba_cache

__all__ = ["MODEL_CODES", "agglomerate"]

MODEL_CODES = {"VVV": 0, "VII": 1, "EII": 2}
_VVV, _VII, _EII = 0, 1, 2
_RTHALF = np.sqrt(0.5)
_SIZE, _TRACE, _TERM = 0, 1, 2


@numba.njit(cache=True, error_model="numpy", inline="always", fastmath=False)
def _pair(i, j):  # pragma: no cover - compiled
    """Position of the pair ``(i, j)``, ``i < j``, in the packed triangle."""
    return j * (j - 1) // 2 + i


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _log_det(w, n, chol):  # pragma: no cover - compiled
    """``log det(W / n)`` by Cholesky; ``-inf`` when ``W`` is not numerically positive definite."""
    p = w.shape[0]
    total = 0.0
    for j in range(p):
        s = w[j, j]
        for k in range(j):
            s -= chol[j, k] * chol[j, k]
        if s <= 0.0:
            return -np.inf
        root = np.sqrt(s)
        chol[j, j] = root
        total += np.log(s)
        for i in range(j + 1, p):
            t = w[i, j]
            for k in range(j):
                t -= chol[i, k] * chol[j, k]
            chol[i, j] = t / root
    return total - p * np.log(n)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _vvv_term(n, trace, w, alpha, beta, chol):  # pragma: no cover - compiled
    """The VVV term of a cluster of ``n > max(p, 2)`` rows (mclust's ``vvvtij``)."""
    c = beta * (trace + alpha) / n
    if trace == 0.0:
        return n * np.log(c)
    detlog = _log_det(w, n, chol)
    if detlog == -np.inf:
        return n * np.log(c)
    if detlog <= 0.0:
        return n * np.log(np.exp(detlog) + c)
    return n * (np.log(1.0 + np.exp(-detlog) * c) + detlog)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _candidate(
    model, a, b, latest, slots, xs, scatter, alpha, beta, v, w, chol, keep_w
):  # pragma: no cover - compiled
    """Cost of merging slots ``a`` and ``b``, the union's trace and term (and its W in ``w``).

    ``w`` is formed when the VVV determinant is needed or ``keep_w`` asks for it.
    """
    na, nb = slots[a, _SIZE], slots[b, _SIZE]
    nab = na + nb
    p = xs.shape[1]
    if na == 1.0 and nb == 1.0:
        for k in range(p):
            v[k] = (xs[a, k] - xs[b, k]) * _RTHALF
    else:
        ca, cb = np.sqrt(nb / nab), np.sqrt(na / nab)
        for k in range(p):
            v[k] = ca * xs[a, k] - cb * xs[b, k]
    vv = 0.0
    for k in range(p):
        vv += v[k] * v[k]
    if model == _EII:
        return vv, vv, vv
    trace = slots[a, _TRACE] + slots[b, _TRACE] + vv
    small = nab <= max(p, 2)
    if model == _VII:
        term = nab * np.log((trace + alpha) / nab)
    elif small and not keep_w:
        term = nab * np.log(beta * (trace + alpha) / nab)
    else:
        current = scatter.shape[0] - 1  # the exact matrix of the latest merged slot
        sa = current if a == latest else a
        sb = current if b == latest else b
        for i in range(p):
            for k in range(p):
                w[i, k] = scatter[sa, i, k] + scatter[sb, i, k] + v[i] * v[k]
        if small:
            term = nab * np.log(beta * (trace + alpha) / nab)
        else:
            term = _vvv_term(nab, trace, w, alpha, beta, chol)
    return term - (slots[a, _TERM] + slots[b, _TERM]), trace, term


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _stored_scatter(m, n, first_row_only, out):  # pragma: no cover - compiled
    """The scatter matrix of a cluster as later merges see it (see the module docstring)."""
    p = m.shape[0]
    rows = min(n - 1, p)
    if not first_row_only or rows <= 1 or m[0, 0] <= 0.0:
        out[:] = m
        return
    root = np.sqrt(m[0, 0])
    for a in range(p):
        for b in range(p):
            out[a, b] = (m[0, a] / root) * (m[0, b] / root) * min(min(a, b) + 1, rows)


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _column_minimum(d, j, colmin, colarg):  # pragma: no cover - compiled
    """Smallest entry of column ``j`` (rows ``< j``), the last one on ties."""
    best, arg = np.inf, 0
    for i in range(j):
        value = d[_pair(i, j)]
        if value <= best:
            best, arg = value, i
    colmin[j], colarg[j] = best, arg


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _best_column(colmin, n_active):  # pragma: no cover - compiled
    """The column holding the smallest merge cost, the last one on ties."""
    best, arg = colmin[1], 1
    for j in range(2, n_active):
        if colmin[j] <= best:
            best, arg = colmin[j], j
    return arg


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _merge_slots(
    model, i, j, latest, slots, xs, scatter, alpha, beta, work, first_row_only
):  # pragma: no cover - compiled
    """Slot ``i`` becomes the union of slots ``i`` and ``j``."""
    v, w, chol = work
    _, trace, term = _candidate(
        model, i, j, latest, slots, xs, scatter, alpha, beta, v, w, chol, model == _VVV
    )
    ni, nj = slots[i, _SIZE], slots[j, _SIZE]
    nij = ni + nj
    si, sj = np.sqrt(ni / nij), np.sqrt(nj / nij)
    for k in range(xs.shape[1]):
        xs[i, k] = si * xs[i, k] + sj * xs[j, k]
    slots[i, _SIZE], slots[i, _TRACE], slots[i, _TERM] = nij, trace, term
    if model == _VVV:
        scatter[-1] = w
        _stored_scatter(w, int(nij), first_row_only, scatter[i])


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _move_slot(source, target, slots, xs, scatter, d):  # pragma: no cover - compiled
    """Slot ``source`` (the last active one) moves into slot ``target < source``."""
    slots[target] = slots[source]
    xs[target] = xs[source]
    if scatter.shape[0] > 2:  # VVV keeps every slot's scatter matrix
        scatter[target] = scatter[source]
    for k in range(target):
        d[_pair(k, target)] = d[_pair(k, source)]
    for k in range(target + 1, source):
        d[_pair(target, k)] = d[_pair(k, source)]


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _refresh(
    model, i, j, n_active, slots, xs, scatter, d, colmin, colarg, alpha, beta, work
):  # pragma: no cover - compiled
    """New costs for the pairs of the merged slot ``i``; column minima after slot ``j`` moved."""
    v, w, chol = work
    for k in range(n_active):
        if k != i:
            a, b = min(i, k), max(i, k)
            d[_pair(a, b)] = _candidate(
                model, a, b, i, slots, xs, scatter, alpha, beta, v, w, chol, False
            )[0]
    for k in range(1, n_active):
        if k == i or k == j or colarg[k] == i or colarg[k] == j:
            _column_minimum(d, k, colmin, colarg)
            continue
        for r in (i, j):
            if r < k:
                value = d[_pair(r, k)]
                if value < colmin[k] or (value == colmin[k] and r > colarg[k]):
                    colmin[k], colarg[k] = value, r


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def _initial_costs(model, slots, xs, scatter, alpha, beta, work):  # pragma: no cover - compiled
    """The cost of merging every pair of singletons, and the column minima."""
    n = xs.shape[0]
    v, w, chol = work
    d = np.empty(n * (n - 1) // 2)
    colmin = np.full(n, np.inf)
    colarg = np.zeros(n, dtype=np.int64)
    for j in range(1, n):
        for i in range(j):
            d[_pair(i, j)] = _candidate(
                model, i, j, -1, slots, xs, scatter, alpha, beta, v, w, chol, False
            )[0]
        _column_minimum(d, j, colmin, colarg)
    return d, colmin, colarg


@numba.njit(cache=True, error_model="numpy", fastmath=False)
def agglomerate(z, model, alpha, beta, first_row_only):  # pragma: no cover - compiled
    """Merge the rows of ``z`` down to one cluster; return the ``n - 1`` merges.

    Parameters
    ----------
    z : ndarray of shape (n, p)
        The (transformed) data, ``n >= 2``.
    model : int
        A value of :data:`MODEL_CODES`.
    alpha, beta : float
        The regularisation of the VVV criterion (``alpha`` also of VII), already scaled.
    first_row_only : bool
        Store VVV clusters as mclust does (see the module docstring).

    Returns
    -------
    merges : ndarray of shape (n - 1, 2)
        Merge ``m`` joins the clusters labelled ``merges[m, 0] < merges[m, 1]``; a cluster's
        label is its smallest row index, so the merged cluster keeps ``merges[m, 0]``.
    """
    n, p = z.shape
    slots = np.zeros((n, 3))
    slots[:, _SIZE] = 1.0
    if model != _EII:
        slots[:, _TERM] = np.log(alpha * beta) if model == _VVV else np.log(alpha)
    xs = z.copy()
    scatter = np.zeros((n + 1 if model == _VVV else 2, p, p))
    work = (np.empty(p), np.empty((p, p)), np.zeros((p, p)))
    d, colmin, colarg = _initial_costs(model, slots, xs, scatter, alpha, beta, work)
    labels = np.arange(n)
    merges = np.empty((n - 1, 2), dtype=np.int64)
    latest = -1
    for step in range(n - 1):
        n_active = n - step
        j = _best_column(colmin, n_active) if n_active > 2 else 1
        i = colarg[j]
        merges[step, 0], merges[step, 1] = min(labels[i], labels[j]), max(labels[i], labels[j])
        _merge_slots(model, i, j, latest, slots, xs, scatter, alpha, beta, work, first_row_only)
        labels[i], latest = merges[step, 0], i
        if j != n_active - 1:
            _move_slot(n_active - 1, j, slots, xs, scatter, d)
            labels[j] = labels[n_active - 1]
        n_active -= 1
        _refresh(model, i, j, n_active, slots, xs, scatter, d, colmin, colarg, alpha, beta, work)
    return merges


_numba_cache.install_module(__name__)  # before any of this module's kernels compiles or loads
