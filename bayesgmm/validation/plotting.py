"""ECDF-difference plots of fractional ranks with their simultaneous band."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .uniformity import ecdf_at, ecdf_band


def plot_rank_ecdfs(
    u: np.ndarray,
    names: Sequence[str],
    *,
    prob: float,
    u_subset: np.ndarray | None = None,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """ECDF-difference plots of fractional ranks, one panel per quantity, with the band.

    Parameters
    ----------
    u : ndarray of shape (n_simulations, n_quantities)
    names : sequence of str
    prob : float
        Simultaneous probability of the band (the level of :func:`ecdf_uniformity`).
    u_subset : ndarray, optional
        Fractional ranks of a subset (e.g. simulations whose diagnostics passed), drawn as a
        line without its own band.
    axes : array of matplotlib Axes, optional
        At least ``len(names)``; a new figure's grid by default.

    Returns
    -------
    ndarray of matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.validation import plot_rank_ecdfs
    >>> u = np.random.default_rng(0).uniform(size=(50, 2))  # 50 simulations, 2 quantities
    >>> axes = plot_rank_ecdfs(u, ["a", "b"], prob=0.95, u_subset=u[:30])
    >>> [ax.get_title() for ax in axes]
    ['a', 'b']
    >>> axes[0].figure.savefig("rank_ecdfs.png")  # doctest: +SKIP
    """
    if axes is None:
        n_cols = min(4, len(names))
        n_rows = -(-len(names) // n_cols)
        figure = Figure(figsize=(3.2 * n_cols, 2.7 * n_rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(n_rows, n_cols, squeeze=False).ravel())
    eval_points, lower, upper = ecdf_band(u.shape[0], prob)
    for q, (name, ax) in enumerate(zip(names, axes, strict=False)):
        ax.fill_between(
            eval_points,
            lower - eval_points,
            upper - eval_points,
            step="post",
            color="C0",
            alpha=0.2,
            lw=0,
            label=f"{prob:.4g} simultaneous band",
        )
        ax.step(eval_points, ecdf_at(u[:, q], eval_points) - eval_points, where="post", color="C0")
        if u_subset is not None and len(u_subset):
            ecdf = ecdf_at(u_subset[:, q], eval_points)
            ax.step(eval_points, ecdf - eval_points, where="post", color="C1", lw=1)
        ax.axhline(0.0, color="0.5", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("fractional rank")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return axes
