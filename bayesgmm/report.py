"""One self-contained HTML page (and a Markdown twin) that says how many components, and why.

Sections: data summary; EM information criteria (table and curve); LOO comparison; the chosen
model; EM against the posterior (table and figures); diagnostics; uncertainty-aware clustering
with the most uncertain observations; reproducibility. Figures are embedded as PNG data URIs,
so the page fetches nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import plotting
from ._idata import get_attr
from ._validation import check_matrix
from .alignment import label_switching_summary
from .bayesian import BayesianGMM
from .compare import compare
from .datasets import load_faithful
from .membership import posterior_membership
from .selection import Selection, select_n_components

__all__ = ["Report", "report"]

SECTIONS = (
    ("data", "Data"),
    ("em", "EM: information criteria"),
    ("loo", "Bayesian comparison (LOO)"),
    ("chosen", "Chosen model"),
    ("comparison", "EM against the posterior"),
    ("diagnostics", "Diagnostics"),
    ("clustering", "Uncertainty-aware clustering"),
    ("reproducibility", "Reproducibility"),
)


@dataclass
class _Section:
    key: str
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, value: str) -> None:
        self.blocks.append(("text", value))

    def table(self, frame: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(("table", (frame, caption)))

    def figure(self, fig: plt.Figure, caption: str) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append(("figure", (buffer.getvalue(), caption)))


@dataclass
class Report:
    """What :func:`report` wrote and computed.

    Attributes
    ----------
    html_path, markdown_path : pathlib.Path
    selection : Selection
    chosen : BayesianGMM
        The model the report presents.

    Examples
    --------
    >>> from bayesgmm import report
    >>> result = report(out="out/faithful.html", n_components=range(1, 5))  # doctest: +SKIP
    >>> result.chosen.diagnostics()  # doctest: +SKIP
    """

    html_path: Path
    markdown_path: Path
    selection: Selection
    chosen: BayesianGMM


def _format(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    return out


def _data_section(X: pd.DataFrame) -> _Section:
    section = _Section("data", "Data")
    section.text(f"{X.shape[0]} observations of {X.shape[1]} features.")
    summary = X.describe().T[["mean", "std", "min", "50%", "max"]].rename(columns={"50%": "median"})
    section.table(summary.reset_index(names="feature"), "Feature summary")
    return section


def _em_section(selection: Selection) -> _Section:
    section = _Section("em", "EM: information criteria")
    table = selection.em.table.drop(columns=["message"])
    section.table(table, "EM fits (lower BIC, AIC and ICL are better; scikit-learn's sign)")
    best = ", ".join(f"{c.upper()}: K={k} ({f})" for c, (k, f) in selection.em.best.items())
    section.text(f"Best by criterion: {best}.")
    failed = selection.em.table[selection.em.table["status"] != "ok"]
    for row in failed.itertuples():
        section.text(f"K={row.n_components} {row.covariance_type}: {row.status}. {row.message}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plotting.plot_criteria(selection.em.table, ax=ax)
    section.figure(fig, "Information criteria against K")
    return section


def _loo_section(selection: Selection) -> _Section:
    section = _Section("loo", "Bayesian comparison (LOO)")
    if selection.loo is None:
        section.text("Not run (bayesian=False).")
        return section
    columns = [
        "rank",
        "elpd_loo",
        "p_loo",
        "elpd_diff",
        "se",
        "dse",
        "weight",
        "pareto_k_above_0.7",
        "max_r_hat",
        "min_ess_bulk",
        "divergences",
        "converged",
        "failed_checks",
        "winner",
    ]
    section.table(selection.loo[columns].reset_index(), "LOO comparison (ArviZ, stacking weights)")
    unconverged = selection.loo.index[~selection.loo["converged"]].tolist()
    if unconverged:
        section.text(
            f"Not converged, so not eligible as winner: {', '.join(unconverged)}. Their elpd is "
            "shown for completeness only."
        )
    return section


def _chosen_section(selection: Selection, chosen_label: str, reason: str) -> _Section:
    section = _Section("chosen", "Chosen model")
    section.text(f"{chosen_label}: {reason}")
    fit = selection.fits[chosen_label]
    section.table(fit.compare_mixture(), "Mixture-level agreement of EM and the posterior")
    return section


def _comparison_section(fit: BayesianGMM, hdi_prob: float) -> _Section:
    section = _Section("comparison", "EM against the posterior")
    table = compare(fit.em_, fit.idata_, hdi_prob=hdi_prob)
    section.table(table, f"EM estimates and posterior summaries ({hdi_prob:.0%} HDI)")
    outside = table.loc[~table["em_in_hdi"], "parameter"].tolist()
    section.text(
        "EM lies inside every HDI." if not outside else f"EM outside the HDI: {', '.join(outside)}."
    )
    n_features = fit.idata_.posterior.sizes["feature"]
    ranked = _separating_features(fit.idata_.em)
    forest = sorted(ranked[:_FOREST_FEATURES])
    section.figure(
        _forest_figure(fit.idata_, hdi_prob, forest),
        "Posterior HDIs with the EM estimates marked, one panel per parameter and feature"
        + _which(forest, n_features),
    )
    ax = plotting.plot_ellipses(fit.idata_, features=sorted(ranked[:2]), random_seed=0)
    caption = "EM covariance ellipses (solid) over posterior draws (faint)"
    section.figure(_figure_of(ax), caption + _which(ranked[:2], n_features))
    if n_features >= 2:
        shown = _pair_features(ranked, fit.idata_.posterior.sizes["component"])
        axes = plotting.plot_pair_em(fit.idata_, features=shown, hdi_prob=hdi_prob)
        section.figure(
            _figure_of(axes),
            "Pair plot of the component means, EM as reference" + _which(shown, n_features),
        )
    return section


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

    The weights; the correlations among the shown features on a full-width row (their labels
    name two features each); then the means and standard deviations of each shown feature side
    by side, titled with the feature so their labels stay short.
    """
    posterior = idata.posterior
    features = [posterior["feature"].values[j] for j in shown]
    n_components = posterior.sizes["component"]
    rows: list[list[tuple[str, Any]]] = [[("weights", None)]]
    heights = [0.4 * n_components + 0.9]
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
                ax.set_title(str(feature), fontsize="medium")
            elif name == "correlations":
                _number_long_features(ax, [str(f) for f in features])
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


def _diagnostics_section(fit: BayesianGMM) -> _Section:
    section = _Section("diagnostics", "Diagnostics")
    section.table(fit.diagnostics(), "Convergence checks (after relabelling)")
    switches = label_switching_summary(fit.idata_.sample_stats["label_permutation"].values)
    section.table(switches, "Label switching undone (draws relabelled to the EM components)")
    axes = plotting.plot_trace(fit.idata_)
    section.figure(_figure_of(axes), "Trace after relabelling")
    return section


def _clustering_section(fit: BayesianGMM, X: pd.DataFrame, hdi_prob: float) -> _Section:
    section = _Section("clustering", "Uncertainty-aware clustering")
    ax = plotting.plot_membership(fit.idata_, hdi_prob=hdi_prob)
    section.figure(_figure_of(ax), "Most probable component; uncertain points stand out")
    membership = posterior_membership(fit.idata_, hdi_prob=hdi_prob)
    order = np.argsort(-membership["entropy"].values)[:10]
    rows = X.iloc[order].reset_index(names="observation")
    rows["entropy"] = membership["entropy"].values[order]
    probability = membership["probability"].values[order]
    for k in range(probability.shape[1]):
        low = membership["hdi_low"].values[order, k]
        high = membership["hdi_high"].values[order, k]
        rows[f"p(component {k})"] = [
            f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
            for p, lo, hi in zip(probability[:, k], low, high, strict=True)
        ]
    section.table(rows, "The ten most uncertain observations (mean membership [HDI])")
    return section


def _reproducibility_section(fit: BayesianGMM, settings: dict[str, Any]) -> _Section:
    section = _Section("reproducibility", "Reproducibility")
    attrs = {
        key: get_attr(fit.idata_, key)
        for key in ("sampler", "backend", "random_seed", "draws", "tune", "chains", "start")
    }
    section.table(
        pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]}),
        "Report settings",
    )
    section.table(
        pd.DataFrame({"setting": list(attrs), "value": [str(v) for v in attrs.values()]}), "Sampler"
    )
    priors = get_attr(fit.idata_, "priors")
    section.table(
        pd.DataFrame({"prior": list(priors), "value": [str(v) for v in priors.values()]}), "Priors"
    )
    versions = get_attr(fit.idata_, "versions")
    section.table(
        pd.DataFrame({"package": list(versions), "version": list(versions.values())}), "Versions"
    )
    return section


def _figure_of(axes: Any) -> plt.Figure:
    first = np.ravel(np.asarray(axes, dtype=object))[0]
    return first.figure


def _choose(selection: Selection) -> tuple[str, str]:
    winner = selection.chosen.get("loo")
    if winner is not None:
        return (
            f"K={winner}",
            "the best LOO (expected log predictive density) among converged posteriors.",
        )
    k_bic = selection.chosen["bic"][0]
    label = f"K={k_bic}"
    if label in selection.fits:
        return (
            label,
            "no candidate posterior converged, so the BIC choice is shown (treat with care).",
        )
    return next(iter(selection.fits)), "fallback: the first sampled candidate."


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #335;padding-bottom:.2em}h2{margin-top:2em;color:#335}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#eef}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}
nav ol{columns:2}
"""


def _html_block(kind: str, value: Any) -> str:
    if kind == "text":
        return f"<p>{html.escape(value)}</p>"
    if kind == "table":
        return _html_table(*value)
    png, caption = value
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    body = _format(frame).to_html(index=False, escape=True, border=0)
    head, rest = body.split(">", 1)
    return f"{head}><caption>{html.escape(caption)}</caption>{rest}"


def render_html(title: str, sections: list[_Section]) -> str:
    """The page: a contents list and every section; figures inline as PNG data URIs."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav><ol>",
        *[f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections],
        "</ol></nav>",
    ]
    for section in sections:
        parts.append(f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>')
        parts += [_html_block(kind, value) for kind, value in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown_table(frame: pd.DataFrame) -> str:
    frame = _format(frame)
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def render_markdown(title: str, sections: list[_Section], figure_dir: Path) -> str:
    """The Markdown twin; figures are written as PNG files in ``figure_dir``."""
    figure_dir.mkdir(parents=True, exist_ok=True)
    lines, n_figure = [f"# {title}", ""], 0
    for section in sections:
        lines += [f"## {section.title}", ""]
        for kind, value in section.blocks:
            if kind == "text":
                lines += [value, ""]
            elif kind == "table":
                frame, caption = value
                lines += [f"**{caption}**", "", _markdown_table(frame), ""]
            else:
                png, caption = value
                n_figure += 1
                path = figure_dir / f"figure_{n_figure:02d}.png"
                path.write_bytes(png)
                lines += [f"![{caption}]({figure_dir.name}/{path.name})", ""]
    return "\n".join(lines)


def _as_frame(X: Any, columns: list[str] | None) -> pd.DataFrame:
    if X is None:
        X = load_faithful()
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    if columns:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise ValueError(
                f"Unknown column(s) {unknown}; the data has {[str(c) for c in frame.columns]}."
            )
        frame = frame[columns]
    data, names = check_matrix(frame)
    return pd.DataFrame(data, columns=names)


def report(
    X: Any = None,
    *,
    out: str | Path = "report.html",
    columns: list[str] | None = None,
    n_components: Any = range(1, 7),
    covariance_types: tuple[str, ...] = ("full",),
    n_candidates: int = 2,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    sampler: str = "nutpie",
    random_seed: int = 0,
    hdi_prob: float = 0.94,
    title: str | None = None,
    progress: bool = True,
    em_options: dict[str, Any] | None = None,
) -> Report:
    """Model selection, the chosen mixture and EM against its posterior, as one HTML page.

    Parameters
    ----------
    X : array-like or DataFrame, optional
        The data; Old Faithful when omitted.
    out : str or Path
        The HTML file; the Markdown twin goes beside it (``.md``) with its figures in
        ``<stem>_figures/``.
    columns : list of str, optional
        Columns of a DataFrame to model.
    n_components, covariance_types, n_candidates, draws, tune, chains, sampler, random_seed
        See :func:`~bayesgmm.selection.select_n_components`.
    em_options : dict, optional
        Further EM parameters for the sweep (e.g. ``{"tol": 1e-8}``); recorded in the
        reproducibility section.
    hdi_prob : float
    title : str, optional
    progress : bool

    Returns
    -------
    Report

    Examples
    --------
    >>> from bayesgmm import report
    >>> result = report(out="faithful.html", n_components=range(1, 5))  # doctest: +SKIP
    """
    frame = _as_frame(X, columns)
    out = Path(out)
    settings = {
        "n_components": list(n_components),
        "covariance_types": list(covariance_types),
        "n_candidates": n_candidates,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "sampler": sampler,
        "random_seed": random_seed,
        "hdi_prob": hdi_prob,
        "em_options": dict(em_options or {}),
    }
    selection = select_n_components(
        frame,
        settings["n_components"],
        covariance_types,
        n_candidates=n_candidates,
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        random_seed=random_seed,
        progress=progress,
        em_options=em_options,
    )
    label, reason = _choose(selection)
    fit = selection.fits[label]
    sections = [
        _data_section(frame),
        _em_section(selection),
        _loo_section(selection),
        _chosen_section(selection, label, reason),
        _comparison_section(fit, hdi_prob),
        _diagnostics_section(fit),
        _clustering_section(fit, frame, hdi_prob),
        _reproducibility_section(fit, settings),
    ]
    title = title or f"bayesgmm report: {frame.shape[0]} x {frame.shape[1]} data, chosen {label}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(title, sections), encoding="utf-8")
    markdown_path = out.with_suffix(".md")
    markdown_path.write_text(
        render_markdown(title, sections, out.parent / f"{out.stem}_figures"), encoding="utf-8"
    )
    return Report(out, markdown_path, selection, fit)
