"""Figures: where the EM point estimate sits inside the posterior.

Every function takes the data first, draws on the axes it is given (or creates a figure when
given none), returns the axes, never calls ``plt.show()`` and never changes rcParams. The EM
estimate is read from the results' ``em`` group, or from a fitted
:class:`~bayesgmm.EMGaussianMixture` passed as ``em``. Components are coloured ``C0, C1, ...``
(the current style's colour cycle) in every figure, so a component keeps its colour throughout.

Parameter-level figures (forest, posterior densities, pair plot) work on one scalar per
parameter entry (``means[1, x0]``), named as ArviZ names them; symmetric duplicates (the upper
triangle of covariance and correlation matrices) and entries constant in every draw (unit
correlation diagonals) are left out. This flattening is also what makes the EM marks on ArviZ's
forest plot exact: every row label is one scalar whose EM value is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse
from scipy import stats

from . import _gaussian as g
from ._idata import Tree, entry_label, get_group, hdi, kde, posterior_with
from ._validation import check_choice
from .alignment import label_switching_summary
from .em import EMGaussianMixture
from .membership import _observed, posterior_membership
from .sampling import em_reference

__all__ = [
    "plot_criteria",
    "plot_ellipses",
    "plot_forest",
    "plot_label_switching",
    "plot_membership",
    "plot_pair_em",
    "plot_posterior_em",
    "plot_trace",
]

FeatureSpec = Sequence[int | str] | None
UNCERTAINTIES = ("entropy", "hdi_width")
_EM_MARK = {"marker": "D", "color": "C3", "markeredgecolor": "black", "markersize": 7}
_EM_TICK = {"marker": "|", "color": "C3", "markersize": 15, "markeredgewidth": 2.5}
_MATRIX_DIMS = ("feature", "feature_bis")


# ----------------------------------------------------------------------------- text


def plain_text(value: Any) -> str:
    r"""``value`` as matplotlib text that is drawn as written.

    matplotlib reads text between two ``$`` as mathtext and fails on what it cannot parse
    (a column named ``$\notacommand$`` stops the figure from being drawn at all); every
    label that comes from the data goes through here, with its ``$`` escaped.

    Examples
    --------
    >>> plain_text("price in $ (2024)")
    'price in \\$ (2024)'
    """
    return str(value).replace("$", r"\$")


# ----------------------------------------------------------------------------- validation


def _check_probability(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}.")


def _posterior(idata: Tree) -> xr.Dataset:
    return posterior_with(idata, ("weights", "means", "covariances"), "the figures")


def _feature_indices(features: FeatureSpec, names: Sequence[Any]) -> list[int]:
    """Positions of ``features`` (indices or names) among ``names``; all of them if None."""
    if features is None:
        return list(range(len(names)))
    labels = [str(n) for n in names]
    out = []
    for f in features:
        if isinstance(f, str):
            if f not in labels:
                raise ValueError(f"Unknown feature {f!r}: the features are {labels}.")
            out.append(labels.index(f))
        elif isinstance(f, int | np.integer) and not isinstance(f, bool) and 0 <= f < len(labels):
            out.append(int(f))
        else:
            raise ValueError(
                f"Feature {f!r} is out of range: give an index in 0..{len(labels) - 1} or a "
                f"name among {labels}."
            )
    if len(set(out)) != len(out) or not out:
        raise ValueError(f"features must name distinct features, got {list(features)}.")
    return out


def _select_features(dataset: xr.Dataset, index: list[int]) -> xr.Dataset:
    """The features at positions ``index`` (on both matrix axes where there are two)."""
    return dataset.isel({dim: index for dim in _MATRIX_DIMS if dim in dataset.dims})


def _pair_of_features(features: FeatureSpec, names: Sequence[Any]) -> list[int]:
    index = _feature_indices(features, names)
    if len(index) != 2:
        raise ValueError(f"features must name exactly two features, got {list(features or [])}.")
    return index


def _var_names(var_names: Sequence[str], posterior: xr.Dataset, em: xr.Dataset) -> list[str]:
    valid = [str(v) for v in posterior.data_vars if v in em.data_vars and "component" in em[v].dims]
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    unknown = [v for v in names if v not in valid]
    if unknown or not names:
        raise ValueError(f"Unknown var_names {unknown or names}: choose from {valid}.")
    return names


def _parameters(
    idata: Tree,
    var_names: Sequence[str],
    features: FeatureSpec,
    em: EMGaussianMixture | None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Posterior and EM Datasets restricted to ``var_names`` and ``features``."""
    posterior = _posterior(idata)
    reference = em_reference(idata, em)
    names = _var_names(var_names, posterior, reference)
    index = _feature_indices(features, posterior["feature"].values)
    return _select_features(posterior[names], index), _select_features(reference[names], index)


# ----------------------------------------------------------------------------- shared pieces


def _component_colors(n_components: int) -> list[str]:
    return [f"C{k}" for k in range(n_components)]


def _redundant(da: xr.DataArray, index: dict[str, int]) -> bool:
    """Upper-triangle entries of a matrix, and entries equal in every draw."""
    if all(dim in index for dim in _MATRIX_DIMS) and index["feature_bis"] > index["feature"]:
        return True
    values = da.isel(index).values
    return bool(np.allclose(values, values.flat[0], rtol=1e-12, atol=0.0))


def _flat_parameters(
    posterior: xr.Dataset, reference: xr.Dataset
) -> tuple[xr.Dataset, dict[str, float]]:
    """One ``(chain, draw)`` variable per scalar entry, labelled as ArviZ does, with EM values."""
    draws, em_values = {}, {}
    for name, da in posterior.data_vars.items():
        dims = [d for d in da.dims if d not in ("chain", "draw")]
        for position in np.ndindex(*(da.sizes[d] for d in dims)):
            isel = dict(zip(dims, position, strict=True))
            if _redundant(da, isel):
                continue
            sel = {d: da[d].values[i] for d, i in isel.items()}
            label = entry_label(str(name), sel, isel)
            draws[label] = da.isel(isel).transpose("chain", "draw").drop_vars(dims)
            em_values[label] = float(reference[name].isel(isel))
    if not draws:
        raise ValueError(
            f"Nothing to plot: every entry of {list(posterior.data_vars)} is constant across "
            "draws (e.g. correlations of one feature); choose other var_names."
        )
    return xr.Dataset(draws), em_values


def _flat_selection(
    idata: Tree,
    var_names: Sequence[str],
    features: FeatureSpec,
    em: EMGaussianMixture | None,
    hdi_prob: float,
) -> tuple[xr.Dataset, dict[str, float]]:
    """Checked arguments of the parameter-level figures, flattened to scalar parameters."""
    _check_probability("hdi_prob", hdi_prob)
    return _flat_parameters(*_parameters(idata, var_names, features, em))


def _stacked_draws(posterior: xr.Dataset, n_draws: int, random_seed: Any) -> xr.Dataset:
    """A random sample of ``n_draws`` draws (all of them if fewer), dim ``sample`` first."""
    if not isinstance(n_draws, int | np.integer) or n_draws < 0:
        raise ValueError(f"n_draws must be a non-negative integer, got {n_draws!r}.")
    stacked = posterior[["weights", "means", "covariances"]].stack(sample=("chain", "draw"))
    total = stacked.sizes["sample"]
    rng = np.random.default_rng(random_seed)
    chosen = np.sort(rng.choice(total, size=min(int(n_draws), total), replace=False))
    picked = stacked.isel(sample=chosen).drop_vars(["sample", "chain", "draw"])
    return picked.transpose("sample", "component", ...)


def _em_legend_handle(style: dict[str, Any], label: str = "EM estimate") -> Line2D:
    return Line2D([], [], linestyle="", label=label, **style)


def _data(idata: Tree, X: Any, n_features: int) -> np.ndarray:
    data = _observed(idata, X)
    if data.shape[1] != n_features:
        raise ValueError(
            f"X has {data.shape[1]} features but the posterior has {n_features}: pass all "
            "features (use `features` to choose the two plotted)."
        )
    return data


# ----------------------------------------------------------------------------- forest


def _forest_statistics(flat: xr.Dataset, hdi_prob: float) -> dict[str, np.ndarray]:
    """Per scalar parameter: HDI bounds, quartiles and median of the draws."""
    intervals = hdi(flat, hdi_prob)
    names = list(flat.data_vars)
    quantiles = np.array([np.quantile(flat[n].values, [0.25, 0.5, 0.75]) for n in names])
    bounds = np.array([intervals[n].values for n in names])
    return {
        "low": bounds[:, 0],
        "high": bounds[:, 1],
        "q1": quantiles[:, 0],
        "median": quantiles[:, 1],
        "q3": quantiles[:, 2],
    }


def plot_forest(
    idata: Tree,
    *,
    var_names: Sequence[str] = ("weights", "means", "stds"),
    features: FeatureSpec = None,
    hdi_prob: float = 0.94,
    em: EMGaussianMixture | None = None,
    ax: Axes | None = None,
    em_marker: str = "|",
    legend: bool = True,
) -> Axes:
    """Forest plot of the posterior with the EM estimate marked on every row.

    Each scalar parameter is one row, labelled as ArviZ labels it (``weights[0]``,
    ``means[1, x0]``, ...): its HDI (thin line), quartiles (thick line) and median (open
    circle), computed with ArviZ, and the EM value of that entry.

    Parameters
    ----------
    idata : xarray.DataTree
        Relabelled posterior (from :func:`bayesgmm.sample_posterior`).
    var_names : sequence of str
        Parameters to show, e.g. ``weights``, ``means``, ``stds``, ``covariances``,
        ``correlations``.
    features : sequence of int or str, optional
        Features to show (indices or names); all by default.
    hdi_prob : float
        Probability mass of the highest-density intervals.
    em : EMGaussianMixture, optional
        The EM fit; defaults to the ``em`` group of ``idata``.
    ax : matplotlib.axes.Axes, optional
    em_marker : str
        Matplotlib marker of the EM estimates (default: a red tick across the interval).
    legend : bool
        Draw the legend above the axes (turn off for all but one panel of a grid).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> from bayesgmm.plotting import plot_forest
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> ax = plot_forest(bgmm.idata_, var_names=["weights", "means"])  # doctest: +SKIP
    """
    flat, em_values = _flat_selection(idata, var_names, features, em, hdi_prob)
    labels = list(flat.data_vars)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 1.2 + 0.32 * len(labels)), layout="constrained")
    rows = np.arange(len(labels), dtype=float)[::-1]  # the first parameter on top
    summary = _forest_statistics(flat, hdi_prob)
    ax.hlines(rows, summary["low"], summary["high"], color="C0", linewidth=1.5)
    ax.hlines(rows, summary["q1"], summary["q3"], color="C0", linewidth=4)
    ax.plot(summary["median"], rows, "o", color="C0", markerfacecolor="white", markersize=5)
    style = {**_EM_TICK, "marker": em_marker}
    ax.plot([em_values[label] for label in labels], rows, linestyle="", zorder=5, **style)
    ax.set_yticks(rows, [plain_text(label) for label in labels])
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    interval = Line2D(
        [], [], color="C0", linewidth=2, label=f"posterior: median, quartiles, {hdi_prob:.0%} HDI"
    )
    if legend:
        ax.legend(
            handles=[interval, _em_legend_handle(style)],
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncols=2,
            frameon=False,
        )
    return ax


# ----------------------------------------------------------------------------- densities


def _grid(n_panels: int, n_cols: int, panel: tuple[float, float]) -> np.ndarray:
    """A new figure's axes for ``n_panels`` panels (unused ones hidden)."""
    n_cols = min(n_cols, n_panels)
    n_rows = -(-n_panels // n_cols)
    _, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(panel[0] * n_cols, panel[1] * n_rows),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    return axes


def _density_panel(
    ax: Axes, draws: np.ndarray, em_value: float, interval: np.ndarray, hdi_prob: float
) -> None:
    """One parameter's posterior density, its HDI, and the EM value with the mass either side."""
    grid, density = kde(draws)
    ax.plot(grid, density, color="C0")
    ax.hlines(0.0, *interval, color="k", linewidth=4, zorder=3)
    axis_units = ax.get_xaxis_transform()
    ax.text(
        np.mean(interval),
        0.08,
        f"{hdi_prob:.0%} HDI",
        ha="center",
        va="bottom",
        fontsize=8,
        transform=axis_units,
    )
    below = float(np.mean(draws < em_value))
    ax.axvline(em_value, color="C3", linewidth=1.5)
    ax.text(
        em_value,
        0.92,
        f"{below:.1%} < EM < {1 - below:.1%}",
        ha="center",
        va="top",
        color="C3",
        fontsize=8,
        transform=axis_units,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7},
    )
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)


def plot_posterior_em(
    idata: Tree,
    *,
    var_names: Sequence[str] = ("weights", "means", "stds"),
    features: FeatureSpec = None,
    hdi_prob: float = 0.94,
    em: EMGaussianMixture | None = None,
    axes: Any = None,
) -> np.ndarray:
    """Posterior densities with the EM value as a reference line.

    Each panel shows one scalar parameter's density (ArviZ's KDE), its HDI, and the EM value
    with the posterior mass below and above it.

    Parameters
    ----------
    idata : xarray.DataTree
    var_names : sequence of str
    features : sequence of int or str, optional
        Features to show (indices or names); all by default.
    hdi_prob : float
    em : EMGaussianMixture, optional
        The EM fit; defaults to the ``em`` group of ``idata``.
    axes : ndarray of matplotlib.axes.Axes, optional
        At least one per scalar parameter shown.

    Returns
    -------
    ndarray of matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm.plotting import plot_posterior_em
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> axes = plot_posterior_em(bgmm.idata_, var_names=["weights"])  # doctest: +SKIP
    """
    flat, em_values = _flat_selection(idata, var_names, features, em, hdi_prob)
    labels = list(flat.data_vars)
    axes = _grid(len(labels), 3, (3.6, 2.6)) if axes is None else np.asarray(axes)
    if axes.size < len(labels):
        raise ValueError(f"axes has {axes.size} panels but {len(labels)} parameters are shown.")
    intervals = hdi(flat, hdi_prob)
    for ax, label in zip(axes.ravel(), labels, strict=False):
        draws = flat[label].values.ravel()
        _density_panel(ax, draws, em_values[label], intervals[label].values, hdi_prob)
        ax.set_title(plain_text(label), fontsize=9)
    return axes


def _pair_panel(ax: Axes, x: np.ndarray, y: np.ndarray, kind: str, hdi_prob: float) -> None:
    """Draws of two parameters: points, hexagonal bins, or the HDI region of a 2-D KDE."""
    if kind == "scatter":
        ax.scatter(x, y, s=4, alpha=0.3, color="C0", linewidths=0)
    elif kind == "hexbin":
        ax.hexbin(x, y, gridsize=25, cmap="Blues", mincnt=1)
    else:
        density = stats.gaussian_kde(np.vstack([x, y]))
        xx, yy = np.meshgrid(np.linspace(x.min(), x.max(), 60), np.linspace(y.min(), y.max(), 60))
        zz = density(np.vstack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
        level = np.quantile(density(np.vstack([x, y])), 1.0 - hdi_prob)
        ax.contourf(xx, yy, zz, levels=[level, zz.max()], colors=["C0"], alpha=0.3)
        ax.contour(xx, yy, zz, levels=[level], colors=["C0"])


def plot_pair_em(
    idata: Tree,
    *,
    var_names: Sequence[str] = ("means",),
    features: FeatureSpec = None,
    hdi_prob: float = 0.94,
    kind: str = "scatter",
    em: EMGaussianMixture | None = None,
    axes: Any = None,
) -> np.ndarray:
    """Pair plot of posterior draws with the EM estimate marked in every panel.

    Parameters
    ----------
    idata : xarray.DataTree
    var_names : sequence of str
    features : sequence of int or str, optional
        Features to show (indices or names); all by default. With many features, choose a few:
        the grid has one row and column per scalar parameter.
    hdi_prob : float
        With ``kind="kde"``, the HDI region drawn.
    kind : {"scatter", "kde", "hexbin"}
    em : EMGaussianMixture, optional
        The EM fit; defaults to the ``em`` group of ``idata``.
    axes : ndarray of matplotlib.axes.Axes, optional
        A square grid with one row and column fewer than the scalar parameters shown.

    Returns
    -------
    ndarray of matplotlib.axes.Axes
        Shape ``(n - 1, n - 1)`` for ``n`` parameters: panel ``[i, j]`` (``j <= i``) plots
        parameter ``i + 1`` against parameter ``j``; panels above the diagonal are hidden.

    Examples
    --------
    >>> from bayesgmm.plotting import plot_pair_em
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> axes = plot_pair_em(bgmm.idata_, var_names=["means"], features=[0, 1])  # doctest: +SKIP
    """
    check_choice("kind", kind, ("scatter", "kde", "hexbin"))
    flat, em_values = _flat_selection(idata, var_names, features, em, hdi_prob)
    labels = list(flat.data_vars)
    if len(labels) < 2:
        raise ValueError(
            f"A pair plot needs at least two parameters; {labels} was selected: "
            "add var_names or features."
        )
    n = len(labels) - 1
    if axes is None:
        side = min(2.4 * n + 1.0, 16.0)
        _, axes = plt.subplots(n, n, figsize=(side, side), squeeze=False, layout="constrained")
    axes = np.asarray(axes).reshape(n, n)
    for row, col in np.ndindex(n, n):
        ax = axes[row, col]
        if col > row:
            ax.set_visible(False)
            continue
        x_name, y_name = labels[col], labels[row + 1]
        _pair_panel(ax, flat[x_name].values.ravel(), flat[y_name].values.ravel(), kind, hdi_prob)
        ax.plot([em_values[x_name]], [em_values[y_name]], linestyle="", zorder=5, **_EM_MARK)
        ax.set_xlabel(plain_text(x_name) if row == n - 1 else "")
        ax.set_ylabel(plain_text(y_name) if col == 0 else "")
    axes[0, 0].figure.legend(handles=[_em_legend_handle(_EM_MARK)], loc="upper right")
    return axes


# ----------------------------------------------------------------------------- trace

_CHAIN_STYLES = ("-", ":", "-.", (0, (1, 3)))


def _trace_rows(posterior: xr.Dataset) -> list[tuple[str, dict[str, Any]]]:
    """One row per variable, or per feature for variables indexed by feature only (so one
    panel never mixes features on different scales)."""
    rows = []
    for name, da in posterior.data_vars.items():
        if "feature" in da.dims and "feature_bis" not in da.dims:
            rows += [(str(name), {"feature": [f]}) for f in da["feature"].values]
        else:
            rows.append((str(name), {d: da[d].values for d in _MATRIX_DIMS if d in da.dims}))
    return rows


def _trace_row(row: np.ndarray, selected: xr.DataArray, em_values: xr.DataArray) -> None:
    """Densities (per chain) and traces of every entry of ``selected``, in its component's
    colour, with the EM values as dashed lines."""
    entries = [d for d in selected.dims if d not in ("chain", "draw")]
    values = selected.transpose("chain", "draw", *entries).values
    values = values.reshape(values.shape[0], values.shape[1], -1)
    shape = [selected.sizes[d] for d in entries]
    component = np.ravel(np.indices(shape)[entries.index("component")])
    reference = em_values.transpose(*entries).values.ravel()
    steps = np.arange(values.shape[1])
    for e, k in enumerate(component):
        for c in range(values.shape[0]):
            style = {"color": f"C{k}", "linestyle": _CHAIN_STYLES[c % len(_CHAIN_STYLES)]}
            if np.ptp(values[c, :, e]) > 0:
                row[0].plot(*kde(values[c, :, e]), linewidth=1, **style)
            row[1].plot(steps, values[c, :, e], linewidth=0.6, alpha=0.8, **style)
        row[0].axvline(reference[e], color=f"C{k}", linestyle="--", linewidth=1.5)
        row[1].axhline(reference[e], color=f"C{k}", linestyle="--", linewidth=1.5)
    row[0].set_yticks([])
    row[1].set_xlabel("draw")


def plot_trace(
    idata: Tree,
    *,
    var_names: Sequence[str] = ("weights", "means"),
    features: FeatureSpec = None,
    em: EMGaussianMixture | None = None,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """Trace plot of the relabelled draws with the EM values as lines.

    One row per parameter, or per parameter and feature when it is indexed by feature
    (``means[:, waiting]``); the entries of a row are coloured by component, chains by line
    style. The EM value is a dashed vertical line on the density panel and a dashed horizontal
    line on the trace panel, in the component's colour.

    Parameters
    ----------
    idata : xarray.DataTree
    var_names : sequence of str
    features : sequence of int or str, optional
        Features to show (indices or names); all by default.
    em : EMGaussianMixture, optional
        The EM fit; defaults to the ``em`` group of ``idata``.
    axes : ndarray of matplotlib.axes.Axes, optional
        Shape ``(n_rows, 2)``: density and trace panel of every row.

    Returns
    -------
    ndarray of matplotlib.axes.Axes of shape (n_rows, 2)

    Examples
    --------
    >>> from bayesgmm.plotting import plot_trace
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> axes = plot_trace(bgmm.idata_, var_names=["weights"])  # doctest: +SKIP
    """
    posterior, reference = _parameters(idata, var_names, features, em)
    rows = _trace_rows(posterior)
    if axes is None:
        _, axes = plt.subplots(
            len(rows), 2, figsize=(12, 2.4 * len(rows)), squeeze=False, layout="constrained"
        )
    axes = np.asarray(axes).reshape(len(rows), 2)
    for row, (name, coords) in zip(axes, rows, strict=True):
        _trace_row(row, posterior[name].sel(coords), reference[name].sel(coords))
        one_feature = "feature" in coords and len(coords) == 1
        title = f"{name}[:, {coords['feature'][0]}]" if one_feature else name
        for ax in row:
            ax.set_title(plain_text(title), fontsize=9)
    n_components = posterior.sizes["component"]
    handles = [Line2D([], [], color=f"C{k}", label=f"component {k}") for k in range(n_components)]
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="EM estimate"))
    axes[0, 1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return axes


# ----------------------------------------------------------------------------- ellipses


def _ellipse(mean: np.ndarray, covariance: np.ndarray, radius: float, **kwargs: Any) -> Ellipse:
    """The ellipse ``(x - mean)' inv(covariance) (x - mean) = radius**2`` of a 2-D Gaussian."""
    variances, vectors = np.linalg.eigh(covariance)
    width, height = 2.0 * radius * np.sqrt(variances[::-1])
    angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
    return Ellipse(tuple(mean), width, height, angle=angle, fill=False, **kwargs)


def _draw_ellipses(
    ax: Axes, means: np.ndarray, covariances: np.ndarray, radius: float, **kwargs: Any
) -> None:
    """One ellipse per component, in the component colours, for ``(K, 2)`` and ``(K, 2, 2)``."""
    for k, color in enumerate(_component_colors(means.shape[0])):
        ax.add_patch(_ellipse(means[k], covariances[k], radius, edgecolor=color, **kwargs))


def _mixture_legend(ax: Axes, n_components: int, n_draws: int) -> None:
    handles = [
        Line2D([], [], color=c, linewidth=2, label=f"component {k}")
        for k, c in enumerate(_component_colors(n_components))
    ]
    handles += [
        Line2D([], [], color="0.2", linewidth=2, label="EM estimate"),
        Line2D([], [], color="0.2", linewidth=1, alpha=0.3, label=f"{n_draws} posterior draws"),
    ]
    ax.legend(handles=handles, loc="best", fontsize="small")


def _plot_ellipses_2d(
    ax: Axes, data: np.ndarray, em: xr.Dataset, draws: xr.Dataset, index: list[int], level: float
) -> None:
    """Data and ellipses projected on the features ``index`` (marginal covariances)."""
    em, draws = _select_features(em, index), _select_features(draws, index)
    radius = float(np.sqrt(stats.chi2.ppf(level, df=2)))
    ax.scatter(data[:, index[0]], data[:, index[1]], s=8, color="0.55", alpha=0.6, zorder=1)
    _draw_ellipses(ax, em["means"].values, em["covariances"].values, radius, linewidth=2.2)
    means, covariances = draws["means"].values, draws["covariances"].values
    for s in range(means.shape[0]):
        _draw_ellipses(ax, means[s], covariances[s], radius, alpha=0.12)
    ax.set_xlabel(plain_text(em["feature"].values[0]))
    ax.set_ylabel(plain_text(em["feature"].values[1]))
    ax.set_title(f"{level:.0%} ellipses of each component: EM and posterior draws")


def _component_densities(
    grid: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray
) -> np.ndarray:
    """Weighted component densities ``w_k N(x; mu_k, Sigma_k)`` on a 1-D grid, ``(G, K)``."""
    chol = g.batched_precision_cholesky(covariances)
    log_prob = g.log_gaussian_prob(grid[:, None], means, chol, "full")
    return np.exp(log_prob + np.log(weights))


def _plot_densities_1d(ax: Axes, data: np.ndarray, em: xr.Dataset, draws: xr.Dataset) -> None:
    x = data[:, 0]
    pad = 0.1 * np.ptp(x)
    grid = np.linspace(x.min() - pad, x.max() + pad, 400)
    colors = _component_colors(em.sizes["component"])
    ax.hist(x, bins="auto", density=True, color="0.85", edgecolor="0.7", zorder=0)
    for s in range(draws.sizes["sample"]):
        draw = draws.isel(sample=s)
        dens = _component_densities(
            grid, draw["weights"].values, draw["means"].values, draw["covariances"].values
        )
        for k, color in enumerate(colors):
            ax.plot(grid, dens[:, k], color=color, alpha=0.12, linewidth=1)
    dens = _component_densities(
        grid, em["weights"].values, em["means"].values, em["covariances"].values
    )
    for k, color in enumerate(colors):
        ax.plot(grid, dens[:, k], color=color, linewidth=2.2)
    ax.plot(grid, dens.sum(axis=1), color="black", linestyle=":", linewidth=1.5)
    ax.set_xlabel(plain_text(em["feature"].values[0]))
    ax.set_ylabel("density")
    ax.set_title("Weighted component densities: EM and posterior draws (dotted: EM mixture)")


def plot_ellipses(
    idata: Tree,
    X: Any = None,
    *,
    features: FeatureSpec = (0, 1),
    n_draws: int = 50,
    level: float = 0.9,
    em: EMGaussianMixture | None = None,
    random_seed: Any = 0,
    ax: Axes | None = None,
) -> Axes:
    """The data with EM covariance ellipses and a random sample of posterior ellipses.

    EM ellipses are solid, one colour per component; ``n_draws`` posterior draws are drawn
    faintly in the same colours, so the spread of the faint ellipses around the solid one is
    the posterior uncertainty of that component. With more than two features the data and
    ellipses are projected on the two chosen features (marginal 2-D covariances). With one
    feature the figure shows a histogram of the data with the weighted component densities of
    EM (solid) and of the posterior draws (faint) instead.

    Parameters
    ----------
    idata : xarray.DataTree
    X : array-like of shape (n_samples, n_features), optional
        Data to show; defaults to the observed data.
    features : sequence of two ints or names
        The two features plotted (ignored with one feature).
    n_draws : int
        Posterior draws shown (all of them if there are fewer).
    level : float
        Probability mass inside each ellipse (of each component's Gaussian).
    em : EMGaussianMixture, optional
        The EM fit; defaults to the ``em`` group of ``idata``.
    random_seed : int, optional
        Seed of the choice of posterior draws.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm.plotting import plot_ellipses
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> ax = plot_ellipses(bgmm.idata_, n_draws=30)  # doctest: +SKIP
    """
    _check_probability("level", level)
    posterior = _posterior(idata)
    reference = em_reference(idata, em)
    data = _data(idata, X, posterior.sizes["feature"])
    draws = _stacked_draws(posterior, n_draws, random_seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5.5))
    if data.shape[1] == 1:
        _plot_densities_1d(ax, data, reference, draws)
    else:
        index = _pair_of_features(features, posterior["feature"].values)
        _plot_ellipses_2d(ax, data, reference, draws, index, level)
    _mixture_legend(ax, posterior.sizes["component"], draws.sizes["sample"])
    return ax


# ----------------------------------------------------------------------------- membership


def _uncertainty(membership: xr.Dataset, uncertainty: str) -> tuple[np.ndarray, float, str]:
    """Uncertainty per row, its largest possible value and an axis label."""
    values = membership[uncertainty].values
    if uncertainty == "entropy":
        n_components = membership.sizes["component"]
        return values, float(np.log(n_components)) if n_components > 1 else 1.0, "entropy (nats)"
    hdi_prob = membership.attrs.get("hdi_prob")
    label = f"{hdi_prob:.0%} HDI width" if hdi_prob is not None else "HDI width"
    return values, 1.0, label


def _highlight(ax: Axes, x: np.ndarray, y: np.ndarray, u: np.ndarray, n: int) -> None:
    if n <= 0:
        return
    top = np.argsort(u)[::-1][:n]
    ax.scatter(
        x[top],
        y[top],
        s=160,
        facecolors="none",
        edgecolors="black",
        linewidths=1.4,
        label=f"{len(top)} most uncertain",
        zorder=4,
    )


def _membership_legend(ax: Axes, n_components: int, sizes: list[tuple[float, float, str]]) -> None:
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=f"component {k}")
        for k, c in enumerate(_component_colors(n_components))
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=np.sqrt(s),
            color="0.6",
            markeredgecolor="black",
            markeredgewidth=w,
            label=text,
        )
        for s, w, text in sizes
    ]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="best", fontsize="small")


def _marker_size(scaled: np.ndarray | float) -> tuple[Any, Any]:
    """Marker area and edge width for an uncertainty scaled to [0, 1]."""
    return 10 + 110 * scaled, 0.2 + 1.2 * scaled


def _plot_membership_2d(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    colors: np.ndarray,
    scaled: np.ndarray,
    label: str,
    u_max: float,
) -> list[tuple[float, float, str]]:
    """Scatter with size by uncertainty (most uncertain on top); returns legend sizes."""
    scaled = np.clip(scaled, 0.0, 1.0)
    sizes, widths = _marker_size(scaled)
    order = np.argsort(scaled, kind="stable")
    ax.scatter(
        x[order],
        y[order],
        s=sizes[order],
        c=colors[order],
        edgecolors="black",
        linewidths=widths[order],
        alpha=0.85,
        zorder=2,
    )
    return [(*_marker_size(f), f"{label} {f * u_max:.2f}") for f in (0.0, 0.5, 1.0)]


def plot_membership(
    idata: Tree,
    X: Any = None,
    *,
    features: FeatureSpec = (0, 1),
    hdi_prob: float = 0.94,
    uncertainty: str = "entropy",
    highlight: int = 10,
    membership: xr.Dataset | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Uncertainty-aware clustering: most probable component and how sure the posterior is.

    Points are coloured by their most probable component (posterior mean membership); marker
    size and edge width grow with the membership uncertainty, so borderline points stand out,
    and the ``highlight`` most uncertain points are circled. With one feature the figure is the
    feature against the uncertainty; with more than two the points are projected on the two
    chosen features.

    Parameters
    ----------
    idata : xarray.DataTree
    X : array-like of shape (n_samples, n_features), optional
        Rows to show; defaults to the observed data.
    features : sequence of two ints or names
        The two features plotted (ignored with one feature).
    hdi_prob : float
        Probability mass of the membership HDIs (for ``uncertainty="hdi_width"``).
    uncertainty : {"entropy", "hdi_width"}
        Entropy of the mean membership (0 to log K nats), or the widest membership HDI.
    highlight : int
        Number of most uncertain points to circle (0 for none).
    membership : xarray.Dataset, optional
        A precomputed :func:`bayesgmm.posterior_membership` of the same rows.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm.plotting import plot_membership
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> ax = plot_membership(bgmm.idata_, uncertainty="hdi_width")  # doctest: +SKIP
    """
    _check_probability("hdi_prob", hdi_prob)
    check_choice("uncertainty", uncertainty, UNCERTAINTIES)
    posterior = _posterior(idata)
    names = posterior["feature"].values
    data = _data(idata, X, len(names))
    index = [0] if len(names) == 1 else _pair_of_features(features, names)
    if membership is None:
        membership = posterior_membership(idata, data, hdi_prob=hdi_prob)
    if membership.sizes["obs_id"] != data.shape[0]:
        raise ValueError(
            f"membership has {membership.sizes['obs_id']} rows but X has {data.shape[0]}."
        )
    u, u_max, label = _uncertainty(membership, uncertainty)
    labels = membership["most_probable"].values
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5.5))
    colors = np.array(_component_colors(membership.sizes["component"]))[labels]
    x, y = (data[:, 0], u) if len(names) == 1 else (data[:, index[0]], data[:, index[1]])
    shown = np.isfinite(x) & np.isfinite(y)  # a row missing a plotted cell has no place here
    x, y, colors, u = x[shown], y[shown], colors[shown], u[shown]
    if len(names) == 1:
        sizes = []
        ax.scatter(x, y, s=18, c=colors, zorder=2)
    else:
        sizes = _plot_membership_2d(ax, x, y, colors, u / u_max, label, u_max)
    _highlight(ax, x, y, u, highlight)
    _label_membership_axes(ax, names, index, u_max, label, hidden=int((~shown).sum()))
    _membership_legend(ax, membership.sizes["component"], sizes)
    return ax


def _label_membership_axes(
    ax: Axes, names: np.ndarray, index: list[int], u_max: float, label: str, hidden: int = 0
) -> None:
    one_feature = len(index) == 1
    ax.set_xlabel(plain_text(names[index[0]]))
    if one_feature:
        ax.set_ylabel(f"membership {label}")
        ax.axhline(u_max, color="0.5", linestyle=":", linewidth=1, label="largest possible")
        ax.set_ylim(-0.03 * u_max, 1.08 * u_max)
    else:
        ax.set_ylabel(plain_text(names[index[1]]))
    # two lines: one line is wider than a half-width panel
    encoding = "\nmarker size: " if not one_feature else " and "
    missing = f"\n({hidden} rows missing a plotted cell not shown)" if hidden else ""
    ax.set_title(f"Most probable component{encoding}membership {label}{missing}")


# ----------------------------------------------------------------------------- label switching


def plot_label_switching(idata: Tree, *, ax: Axes | None = None) -> Axes:
    """Fraction of draws per chain whose labels were permuted to match EM.

    Parameters
    ----------
    idata : xarray.DataTree
        With ``sample_stats["label_permutation"]`` (written by
        :func:`bayesgmm.sample_posterior`).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm.plotting import plot_label_switching
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> ax = plot_label_switching(bgmm.idata_)  # doctest: +SKIP
    """
    stats_ = get_group(idata, "sample_stats")
    if "label_permutation" not in stats_:
        raise ValueError(
            "sample_stats has no 'label_permutation': relabel the posterior first "
            "(bayesgmm.sample_posterior does)."
        )
    perm = stats_["label_permutation"].transpose("chain", "draw", "component").values
    summary = label_switching_summary(perm)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    bars = ax.bar(summary["chain"], summary["fraction_relabelled"], color="C0")
    ax.bar_label(bars, labels=[f"{n}" for n in summary["relabelled_draws"]], padding=2)
    ax.set_xticks(summary["chain"])
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("chain")
    ax.set_ylabel("fraction of draws relabelled")
    ax.set_title("Label switching undone (bar labels: relabelled draws)")
    return ax


def plot_criteria(
    table: Any,
    *,
    criteria: Sequence[str] = ("bic", "icl", "aic"),
    ax: Axes | None = None,
) -> Axes:
    """Information criteria of an EM sweep against K, the best of each criterion marked.

    Parameters
    ----------
    table : pandas.DataFrame
        ``EMSelection.table`` (columns ``n_components``, ``covariance_type``, ``status`` and
        the criteria). Failed fits are skipped; collapsed or unconverged fits are drawn
        hollow, and the star marks each model's best among the others, as
        ``EMSelection.best`` chooses (among all when every fit of the model is hollow).
    criteria : sequence of {"bic", "icl", "aic"}
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bayesgmm.selection import em_sweep
    >>> from bayesgmm.datasets import load_faithful
    >>> ax = plot_criteria(em_sweep(load_faithful(), range(1, 4), progress=False).table)
    """
    for criterion in criteria:
        check_choice("criterion", criterion, ("bic", "icl", "aic"))
    missing = {"n_components", "covariance_type", "status", *criteria} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}: pass EMSelection.table.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    rows = table[table["status"] != "failed"]
    styles = {"bic": "-", "icl": "--", "aic": ":"}
    families = rows.groupby("covariance_type", sort=False)
    # the default cycle has ten colours: mclust's 14 models take tab20's (none repeated)
    colors = (
        [f"C{i}" for i in range(10)] if families.ngroups <= 10 else plt.get_cmap("tab20").colors
    )
    for i, (family, group) in enumerate(families):
        group = group.sort_values("n_components")
        name = group["model_name"].iloc[0] if "model_name" in group else family  # mclust's
        for criterion in criteria:
            ax.plot(
                group["n_components"],
                group[criterion],
                styles[criterion],
                color=colors[i],
                label=f"{criterion.upper()} ({name})",
            )
            ok = group["status"] == "ok"
            ax.plot(group.loc[ok, "n_components"], group.loc[ok, criterion], "o", color=colors[i])
            ax.plot(
                group.loc[~ok, "n_components"],
                group.loc[~ok, criterion],
                "o",
                mfc="white",
                color=colors[i],
            )
            healthy = group[ok] if ok.any() else group  # healthy first, as EMSelection.best
            best = healthy.loc[healthy[criterion].idxmin()]
            ax.plot(
                best["n_components"],
                best[criterion],
                "*",
                ms=14,
                color=colors[i],
                markeredgecolor="black",
            )
    ax.set_xlabel("number of components K")
    ax.set_ylabel("criterion (lower is better)")
    ax.set_xticks(sorted(rows["n_components"].unique()))
    ax.legend(fontsize="small", ncols=2)
    ax.set_title("EM information criteria (stars: best; hollow: collapsed or not converged)")
    return ax
