"""The report's composite figures, and which features they show when there are many."""

from __future__ import annotations

import textwrap
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from . import plotting
from .plotting import plain_text


def _separating_features(em: Any) -> list[int]:
    """Features ordered from the most to the least separated by the EM components.

    The separation of feature ``j`` is the weighted variance of the component means over the
    weighted mean of the component variances (between over within, Fisher's ratio); ties keep
    the features' order.

    Parameters
    ----------
    em : xarray.Dataset
        The ``em`` group of a fit: ``weights``, ``means`` and ``covariances``.

    Returns
    -------
    list of int
    """
    weights = np.asarray(em["weights"].values, dtype=float)
    means = np.asarray(em["means"].values, dtype=float)
    variances = np.diagonal(np.asarray(em["covariances"].values), axis1=1, axis2=2)
    centre = weights @ means
    between = weights @ (means - centre) ** 2
    within = weights @ variances
    return [int(j) for j in np.argsort(-(between / within), kind="stable")]


def _pair_features(ranked: list[int], n_components: int, max_means: int = 9) -> list[int]:
    """The most separating features whose means (one per component and feature) fit a
    readable grid, in the data's order."""
    return sorted(ranked[: max(2, max_means // n_components)])


def _which(shown: list[int], n_features: int) -> str:
    if len(shown) == n_features:
        return ""
    return f" ({len(shown)} of {n_features} features: the most separated by the EM components)"


_FOREST_FEATURES = 4  # features with their own means and stds panels


def _panel_features(name: str, feature: Any, shown: list[Any]) -> list[Any] | None:
    """A means or stds panel shows one feature; the correlations panel the pairs of the shown
    features; the weights panel has none."""
    if feature is not None:
        return [feature]
    return shown if name == "correlations" else None


def _forest_figure(idata: Any, hdi_prob: float, shown: list[int]) -> plt.Figure:
    """Forest plots on separate panels, so parameters on different scales stay readable.

    The weights (unless there is one component, whose weight is 1 in every draw); the
    correlations among the shown features on a full-width row (their labels name two features
    each); then the means and standard deviations of each shown feature side by side, titled
    with the feature so their labels stay short.
    """
    posterior = idata.posterior
    features = [posterior["feature"].values[j] for j in shown]
    n_components = posterior.sizes["component"]
    rows: list[list[tuple[str, Any]]] = []
    heights: list[float] = []
    if n_components > 1:
        rows.append([("weights", None)])
        heights.append(0.4 * n_components + 0.9)
    if "correlations" in posterior and len(features) > 1:
        rows.append([("correlations", None)])
        heights.append(0.4 * n_components * len(features) * (len(features) - 1) / 2 + 0.9)
    rows += [[("means", f), ("stds", f)] for f in features]
    heights += [0.4 * n_components + 1.1] * len(features)
    mosaic = [  # panel keys "row.column"; one-panel rows span both columns
        [f"{r}.0", f"{r}.1"] if len(row) == 2 else [f"{r}.0", f"{r}.0"]
        for r, row in enumerate(rows)
    ]
    fig = plt.figure(figsize=(11, sum(heights) + 0.4), layout="constrained")
    axes = fig.subplot_mosaic(mosaic, height_ratios=heights)
    for r, row in enumerate(rows):
        for c, (name, feature) in enumerate(row):
            ax = axes[f"{r}.{c}"]
            plotting.plot_forest(
                idata,
                var_names=(name,),
                features=_panel_features(name, feature, features),
                hdi_prob=hdi_prob,
                ax=ax,
                legend=r == 0,
            )
            if feature is not None:  # "means[0, waiting]" -> "means[0]", titled "waiting"
                labels = [t.get_text().split(",")[0] + "]" for t in ax.get_yticklabels()]
                ax.set_yticks(ax.get_yticks(), labels)
                ax.set_title(plain_text(feature), fontsize="medium")
            elif name == "correlations":
                _number_long_features(ax, [plain_text(f) for f in features])
    # one legend for the figure, above the grid: over one panel it could be wider than the
    # panel and collapse the layout
    first = axes["0.0"].get_legend()
    fig.legend(handles=first.legend_handles, loc="outside upper left", ncols=2, frameon=False)
    first.remove()
    return fig


def _number_long_features(ax: Any, names: list[str], max_label: int = 48) -> None:
    """Correlation labels name two features; when that makes them longer than ``max_label``
    characters (they would squeeze the panel to nothing), number the features instead and
    give the numbers in the title."""
    labels = [t.get_text() for t in ax.get_yticklabels()]
    if max(map(len, labels), default=0) <= max_label:
        return
    short = labels
    for i, name in sorted(enumerate(names), key=lambda item: -len(item[1])):
        short = [label.replace(f", {name}", f", #{i}") for label in short]
    ax.set_yticks(ax.get_yticks(), short)
    key = "; ".join(f"#{i} {name}" for i, name in enumerate(names))
    ax.set_title(textwrap.fill(key, 120), fontsize="small", loc="left")


def _figure_of(axes: Any) -> plt.Figure:
    first = np.ravel(np.asarray(axes, dtype=object))[0]
    return first.figure


def bic_table(table: Any) -> Any:
    """The EM sweep's BIC as a models x K table (mclust's layout), failed fits blank."""
    fitted = table[table["status"] != "failed"]
    pivot = fitted.pivot_table(index="model_name", columns="n_components", values="bic")
    order = [m for m in dict.fromkeys(table["model_name"]) if m in pivot.index]
    pivot = pivot.loc[order]
    pivot.columns = [f"K={k}" for k in pivot.columns]
    return pivot.reset_index(names="model")


def bic_figure(table: Any, best: tuple[int, str]) -> plt.Figure:
    """BIC against K, a line per covariance model (each model's best a star), and the sweep's
    best fit ringed and named."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotting.plot_criteria(table, criteria=("bic",), ax=ax)
    k, name = best
    row = table[(table["n_components"] == k) & (table["covariance_type"] == name)].iloc[0]
    ax.plot(k, row["bic"], "o", ms=20, mfc="none", mec="black", mew=1.5)
    ax.annotate(
        f"best: {row['model_name']}, K={k}",
        (k, row["bic"]),
        xytext=(8, 12),
        textcoords="offset points",
        fontsize="small",
    )
    ax.set_title("EM: BIC against K (lower is better; stars: each model's best)")
    return fig
