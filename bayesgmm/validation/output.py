"""What a validation run leaves behind: ``results.json``, ``rank_ecdfs.png`` and a text summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._idata import json_default
from .plotting import plot_rank_ecdfs
from .sbc import SBCResult
from .uniformity import MIN_SIMULATIONS


def write_outputs(results: dict[str, Any], sbc: SBCResult, out_dir: str | Path) -> None:
    """``results.json`` and ``rank_ecdfs.png`` (bands at the ECDF test's level) in ``out_dir``.

    The figure needs at least five fitted simulations; with fewer, only ``results.json`` is
    written.

    Parameters
    ----------
    results : dict
        JSON-ready results with ``family_alpha`` (the ECDF band's level is
        ``1 - family_alpha / Q``), as :func:`run_validation` assembles them.
    sbc : SBCResult
        The calibration run whose fractional ranks are plotted.
    out_dir : str or Path
        Created if missing.

    Examples
    --------
    >>> from bayesgmm.validation import run_sbc, summarize_sbc, write_outputs
    >>> sbc = run_sbc(20)  # doctest: +SKIP
    >>> results = {"family_alpha": 0.05 / 7, "sbc": summarize_sbc(sbc)}  # doctest: +SKIP
    >>> write_outputs(results, sbc, "validation")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=json_default))
    u = sbc.fractional_ranks()
    if u.shape[0] < MIN_SIMULATIONS:
        return
    prob = 1.0 - results["family_alpha"] / len(sbc.quantities)
    axes = plot_rank_ecdfs(
        u, sbc.quantities, prob=prob, u_subset=sbc.fractional_ranks(diagnostics_passed=True)
    )
    figure = axes[0].figure
    figure.suptitle(
        f"SBC rank ECDF - uniform, {u.shape[0]} simulations (band: simultaneous {prob:.4f}; "
        "orange: diagnostics passed)",
        fontsize=10,
    )
    figure.savefig(out / "rank_ecdfs.png", dpi=90)


def _calibration_lines(title: str, tests: dict[str, Any]) -> list[str]:
    if tests["passed"] is None:
        return [f"{title}: n={tests['n']}, not tested ({tests['skipped']})"]
    lines = [
        f"{title}: n={tests['n']}, {'PASS' if tests['passed'] else 'FAIL'}",
        f"  {'quantity':<22} {'chi2 p':>8} {'ECDF':>5} {'cov50':>6} {'p':>7} {'cov90':>6} {'p':>7}",
    ]
    for name, chi2 in tests["chi_square"].items():
        cov = tests["coverage"][name]
        band = "ok" if tests["ecdf"][name]["inside_band"] else "OUT"
        lines.append(
            f"  {name:<22} {chi2['p_value']:>8.3g} {band:>5} "
            + " ".join(f"{c['rate']:>6.2f} {c['p_value']:>7.3g}" for c in cov.values())
        )
    return lines


def format_summary(results: dict[str, Any]) -> str:
    """A plain-text summary of :func:`run_validation`'s results.

    Parameters
    ----------
    results : dict
        As returned by :func:`run_validation`.

    Returns
    -------
    str
        Counts, per-quantity p-values and coverage rates, and the overall verdict.

    Examples
    --------
    >>> from bayesgmm.validation import format_summary, run_validation
    >>> results = run_validation(20, n_datasets=10, progressbar=False)  # doctest: +SKIP
    >>> print(format_summary(results))  # doctest: +SKIP
    """
    sbc, coverage = results["sbc"], results["coverage"]
    c = sbc["counts"]
    lines = [
        f"Simulation-based calibration: {c['simulations']} simulations, {c['fitted']} fitted, "
        f"{c['failed']} failed {c['failed_indices']}, {c['em_collapsed']} with a collapsed EM "
        "component, "
        f"{c['diagnostics_passed']} passed the sampler diagnostics, {c['with_divergences']} "
        f"with divergences; median draws ranked {c['median_rank_draws']:g}.",
        f"Level: {results['alpha']:g} overall, {results['family_alpha']:.4g} per family of tests "
        "(Bonferroni over quantities within each).",
        *_calibration_lines("All fitted simulations", sbc["all"]),
        *_calibration_lines("Simulations whose diagnostics passed", sbc["diagnostics_passed"]),
    ]
    if coverage["passed"] is None:
        lines.append(f"Coverage at the truth: not tested ({coverage['skipped']})")
    else:
        lines.append(
            f"Coverage at the truth ({coverage['level']:g} intervals, "
            f"{len(coverage['datasets'])} data sets, {coverage['failed']} failed): pooled rate "
            f"{coverage['pooled_rate']:.3f}, {'PASS' if coverage['passed'] else 'FAIL'}"
        )
        for name, test in coverage["tests"].items():
            lines.append(f"  {name:<12} rate {test['rate']:.2f}  p {test['p_value']:.3g}")
    lines.append(f"Overall: {'PASS' if results['passed'] else 'FAIL'} ({results['seconds']} s)")
    return "\n".join(lines)
