"""Label switching undone: every posterior draw relabelled to a reference (the EM components).

A mixture's likelihood is invariant to permuting the components, so chains may visit the same
mode under different labels, which breaks R-hat, ESS and posterior means. Each draw's components
are matched to the reference by solving an assignment problem
(``scipy.optimize.linear_sum_assignment``) on the Kullback-Leibler divergence
``KL(N(mu_j, Sigma_j) || N(mu_ref_k, Sigma_ref_k))``; terms that depend on only one of ``j`` or
``k`` cannot change the optimal assignment, so the cost kept is
``tr(P_k Sigma_j) + (mu_j - mu_ref_k)' P_k (mu_j - mu_ref_k)`` with ``P_k`` the reference
precision.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import linear_sum_assignment

from . import _gaussian as g

__all__ = ["apply_permutations", "label_switching_summary", "match_to_reference"]

_PER_COMPONENT = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)$")


def _assignment_costs(
    means: np.ndarray, covariances: np.ndarray, ref_means: np.ndarray, ref_covariances: np.ndarray
) -> np.ndarray:
    """Costs ``(S, K_draw, K_ref)`` for ``S`` draws."""
    chol = g.precision_cholesky(ref_covariances, "full")
    precisions = chol @ np.swapaxes(chol, -1, -2)
    trace = np.einsum("kab,sjab->sjk", precisions, covariances)
    diff = means[:, :, None, :] - ref_means[None, None, :, :]
    mahalanobis = np.einsum("sjka,kab,sjkb->sjk", diff, precisions, diff)
    return trace + mahalanobis


def match_to_reference(
    means: np.ndarray,
    covariances: np.ndarray,
    ref_means: np.ndarray,
    ref_covariances: np.ndarray,
) -> np.ndarray:
    """Permutation of every draw's components that best matches the reference.

    Parameters
    ----------
    means : ndarray of shape (chain, draw, K, D)
    covariances : ndarray of shape (chain, draw, K, D, D)
    ref_means : ndarray of shape (K, D)
    ref_covariances : ndarray of shape (K, D, D)

    Returns
    -------
    ndarray of int, shape (chain, draw, K)
        ``perm[c, s, k]`` is the draw's component that becomes component ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> ref_means = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> ref_cov = np.stack([np.eye(2), np.eye(2)])
    >>> draws = ref_means[::-1][None, None]            # one draw with the labels swapped
    >>> match_to_reference(draws, ref_cov[None, None], ref_means, ref_cov)
    array([[[1, 0]]])
    """
    n_chain, n_draw, k, d = means.shape
    costs = _assignment_costs(
        means.reshape(-1, k, d), covariances.reshape(-1, k, d, d), ref_means, ref_covariances
    )
    perm = np.empty((costs.shape[0], k), dtype=np.int64)
    for s, cost in enumerate(costs):
        rows, cols = linear_sum_assignment(cost)
        perm[s, cols] = rows
    return perm.reshape(n_chain, n_draw, k)


def _permute_dataarray(da: xr.DataArray, perm: np.ndarray) -> xr.DataArray:
    axis = da.dims.index("component")
    values = np.asarray(da.values)
    moved = np.moveaxis(values, axis, 2)
    index = perm.reshape(perm.shape + (1,) * (moved.ndim - 3))
    permuted = np.take_along_axis(moved, np.broadcast_to(index, moved.shape), axis=2)
    return da.copy(data=np.moveaxis(permuted, 2, axis))


def _per_component_groups(dataset: xr.Dataset, n_components: int) -> list[list[str]]:
    """Groups of variables named ``stem_0 .. stem_{K-1}`` (e.g. ``chol_cov_k``)."""
    stems: dict[str, dict[int, str]] = {}
    for name in dataset.data_vars:
        match = _PER_COMPONENT.match(str(name))
        if match:
            stems.setdefault(match["stem"], {})[int(match["k"])] = str(name)
    return [
        [members[k] for k in range(n_components)]
        for members in stems.values()
        if sorted(members) == list(range(n_components))
    ]


def apply_permutations(dataset: xr.Dataset, perm: np.ndarray) -> xr.Dataset:
    """Relabel every component-indexed variable of a posterior-like Dataset.

    Variables with a ``component`` dimension are reordered along it; families of per-component
    variables (``chol_cov_0``, ``chol_cov_1``, ...) exchange their values accordingly.

    Parameters
    ----------
    dataset : xarray.Dataset
        With ``chain`` and ``draw`` as its first two dims.
    perm : ndarray of int, shape (chain, draw, K)
        ``perm[c, s, k]`` is the draw's component that becomes component ``k``
        (:func:`match_to_reference`).

    Returns
    -------
    xarray.Dataset
        A relabelled copy.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> post = xr.Dataset({"weights": (("chain", "draw", "component"), [[[0.3, 0.7]]])})
    >>> apply_permutations(post, np.array([[[1, 0]]]))["weights"].values
    array([[[0.7, 0.3]]])
    """
    out = dataset.copy()
    for name, da in dataset.data_vars.items():
        if "component" in da.dims:
            out[name] = _permute_dataarray(da, perm)
    for names in _per_component_groups(dataset, perm.shape[2]):
        stacked = np.stack([dataset[n].values for n in names], axis=2)
        index = perm.reshape(perm.shape + (1,) * (stacked.ndim - 3))
        permuted = np.take_along_axis(stacked, np.broadcast_to(index, stacked.shape), axis=2)
        for k, name in enumerate(names):
            out[name] = dataset[name].copy(data=permuted[:, :, k])
    return out


def label_switching_summary(perm: np.ndarray) -> pd.DataFrame:
    """Per chain: draws relabelled (permutation not the identity) and distinct labellings.

    Parameters
    ----------
    perm : ndarray of int, shape (chain, draw, K)
        Permutations from :func:`match_to_reference`.

    Returns
    -------
    pandas.DataFrame
        Columns ``chain``, ``draws``, ``relabelled_draws``, ``fraction_relabelled`` and
        ``distinct_labellings``.

    Examples
    --------
    >>> import numpy as np
    >>> perm = np.array([[[0, 1], [1, 0], [0, 1]]])     # 1 chain, 3 draws, 2 components
    >>> label_switching_summary(perm)[["chain", "relabelled_draws"]].values.tolist()
    [[0, 1]]
    """
    identity = np.arange(perm.shape[2])
    switched = np.any(perm != identity, axis=2)
    rows = []
    for c in range(perm.shape[0]):
        rows.append(
            {
                "chain": c,
                "draws": perm.shape[1],
                "relabelled_draws": int(switched[c].sum()),
                "fraction_relabelled": float(switched[c].mean()),
                "distinct_labellings": len({tuple(p) for p in perm[c]}),
            }
        )
    return pd.DataFrame(rows)
