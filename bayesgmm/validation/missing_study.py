"""The MCAR study as a run: replicates at every rate, their summary, its text and the command line.

``python -m bayesgmm.validation.missing_study`` (``make validate-missing``); see
:mod:`bayesgmm.validation.missing` for what is estimated and checked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._idata import json_default
from .fitting import SamplerSettings
from .missing import (
    METHODS,
    MISSING_TRUTH,
    BayesianFitter,
    PosteriorFitter,
    coverage_summary,
    error_summary,
    parameter_names,
    parameter_vector,
    run_replicate,
)

__all__ = ["format_missing_summary", "main", "run_missing_study", "summarise_rate"]


def _truth(truth: dict[str, Any] | None) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in (truth or MISSING_TRUTH).items()}


def summarise_rate(
    records: list[dict[str, Any]], truth: dict[str, np.ndarray], level: float, alpha: float
) -> dict[str, Any]:
    """Errors of every method and the posterior's coverage over the replicates of one rate."""
    names = parameter_names(*truth["means"].shape)
    target = parameter_vector(truth["weights"], truth["means"], truth["covariances"])
    methods = [m for m in (*METHODS, "posterior") if any(m in r["estimates"] for r in records)]
    out: dict[str, Any] = {
        "replicates": len(records),
        "missing_fraction": float(np.mean([r["missing_fraction"] for r in records])),
        "complete_rows": float(np.mean([r["complete_rows"] for r in records])),
        "rows_left_out": float(np.mean([r["rows_left_out"] for r in records])),
        "methods": {},
    }
    for method in methods:
        est = np.array([r["estimates"][method] for r in records if method in r["estimates"]])
        out["methods"][method] = error_summary(est, target, names, alpha)
    fitted = [r for r in records if "covered" in r]
    out["posterior_failures"] = [r["posterior_error"] for r in records if "posterior_error" in r]
    if fitted:
        hits = np.array([r["covered"] for r in fitted], dtype=bool)
        out["coverage"] = coverage_summary(hits, names, level, alpha)
        out["diagnostics_passed"] = sum(r["diagnostics"]["passed"] for r in fitted)
    out["posterior_fitted"] = len(fitted)
    return out


def _beats(rate: dict[str, Any], method: str) -> bool | None:
    """Whether ``method``'s RMSE is below both workarounds' in every parameter group."""
    summaries = rate["methods"]
    if method not in summaries:
        return None
    own = summaries[method]["rmse_by_group"]
    return all(
        own[g] < summaries[w]["rmse_by_group"][g]
        for w in ("drop_rows", "mean_imputation")
        for g in own
    )


def _gates(rates: dict[str, Any]) -> dict[str, bool | None]:
    gates: dict[str, bool | None] = {}
    for key, rate in rates.items():
        gates[f"em_unbiased@{key}"] = rate["methods"]["em"]["unbiased"]
        gates[f"em_beats_workarounds@{key}"] = _beats(rate, "em")
        if "posterior" in rate["methods"]:
            gates[f"posterior_unbiased@{key}"] = rate["methods"]["posterior"]["unbiased"]
            gates[f"posterior_beats_workarounds@{key}"] = _beats(rate, "posterior")
            gates[f"posterior_coverage@{key}"] = rate["coverage"]["passed"]
    return gates


def _logged(seeds: list[Any], label: str, start: float, log: Any) -> Any:
    """The seeds, with a progress line to ``log`` after each replicate."""
    for i, seed in enumerate(seeds):
        yield seed
        if log is not None:
            elapsed = time.perf_counter() - start
            print(f"{label} replicate {i + 1}/{len(seeds)} ({elapsed:.0f} s)", file=log, flush=True)


def _replicate(
    truth: dict[str, np.ndarray],
    n_samples: int,
    rate: float,
    index: int,
    seed: np.random.SeedSequence,
    posterior: PosteriorFitter | None,
    n_posterior: int | None,
    level: float,
) -> dict[str, Any]:
    fit_posterior = n_posterior is None or index < n_posterior
    record = run_replicate(
        truth, n_samples, rate, seed, posterior, level, fit_posterior=fit_posterior
    )
    return {"index": index, **record}


def run_missing_study(
    n_replicates: int = 20,
    *,
    rates: Sequence[float] = (0.1, 0.25, 0.4),
    n_samples: int = 250,
    truth: dict[str, Any] | None = None,
    posterior: PosteriorFitter | None = None,
    n_posterior: int | None = None,
    level: float = 0.9,
    alpha: float = 0.05,
    random_seed: int = 0,
    log: Any = None,
) -> dict[str, Any]:
    """Replicates at every rate of missing cells, summarised and gated.

    Parameters
    ----------
    n_replicates : int
        Data sets per rate.
    rates : sequence of float
        Fractions of cells removed completely at random.
    n_samples : int
        Rows per data set.
    truth : dict, optional
        ``weights``, ``means``, ``covariances``; defaults to :data:`MISSING_TRUTH`.
    posterior : callable, optional
        ``fit(X_with_nan, seed) -> results tree``, e.g. :class:`BayesianFitter`; None fits
        the point estimators only.
    n_posterior : int, optional
        Fit the posterior on the first ``n_posterior`` replicates of every rate only (it
        costs far more than EM); all of them by default.
    level, alpha : float
        Interval probability; overall level of each family of tests.
    random_seed : int
    log : file-like, optional
        Progress lines go there (one per replicate).

    Returns
    -------
    dict
        JSON-ready: ``settings``, ``names``, ``rates`` (per rate: see :func:`summarise_rate`),
        ``replicates`` (every record), ``gates`` and ``passed``.

    Examples
    --------
    >>> from bayesgmm.validation.missing_study import run_missing_study
    >>> out = run_missing_study(3, rates=(0.2,), n_samples=120)  # EM only, a few seconds
    >>> sorted(out["rates"]["0.2"]["methods"])
    ['complete', 'drop_rows', 'em', 'mean_imputation']
    """
    truth_arrays = _truth(truth)
    start = time.perf_counter()
    records: dict[str, list[dict[str, Any]]] = {}
    for rate in rates:
        seeds = np.random.SeedSequence([random_seed, round(rate * 1000)]).spawn(n_replicates)
        records[f"{rate:g}"] = [
            _replicate(truth_arrays, n_samples, rate, i, seed, posterior, n_posterior, level)
            for i, seed in enumerate(_logged(seeds, f"rate {rate:g}", start, log))
        ]
    rates_out = {k: summarise_rate(v, truth_arrays, level, alpha) for k, v in records.items()}
    gates = _gates(rates_out)
    return {
        "settings": {
            "n_replicates": n_replicates,
            "n_samples": n_samples,
            "n_posterior": n_replicates if n_posterior is None else min(n_posterior, n_replicates),
            "level": level,
            "alpha": alpha,
            "random_seed": random_seed,
            "rates": list(rates),
        },
        "truth": {k: v.tolist() for k, v in truth_arrays.items()},
        "names": parameter_names(*truth_arrays["means"].shape),
        "rates": rates_out,
        "gates": gates,
        "passed": all(v is not False for v in gates.values()),
        "seconds": time.perf_counter() - start,
        "replicates": records,
    }


def _rate_lines(key: str, rate: dict[str, Any], n_samples: int) -> list[str]:
    lines = [
        f"Rate {key}: {100 * rate['missing_fraction']:.1f}% of cells missing, "
        f"{rate['complete_rows']:.1f} of {n_samples} rows complete and "
        f"{rate['rows_left_out']:.1f} with nothing observed (left out) on average, "
        f"{rate['replicates']} replicates",
        f"  {'method':<16} {'RMSE w':>8} {'RMSE mu':>8} {'RMSE cov':>9} "
        f"{'max|bias|/se':>13}  unbiased",
    ]
    for method, s in rate["methods"].items():
        g = s["rmse_by_group"]
        lines.append(
            f"  {method:<16} {g['weights']:8.4f} {g['means']:8.4f} {g['covariances']:9.4f} "
            f"{s['max_abs_z']:13.2f}  {'yes' if s['unbiased'] else 'NO'}"
            f" (critical {s['critical_z']:.2f})"
        )
    if "coverage" in rate:
        c = rate["coverage"]
        low_p = min(t["p_value"] for t in c["tests"].values())
        lines.append(
            f"  posterior {c['level']:.0%} intervals: pooled coverage {c['pooled_rate']:.3f} "
            f"(binomial band {c['pooled_band'][0]:.3f}-{c['pooled_band'][1]:.3f}); "
            f"per-parameter binomial tests {'PASS' if c['passed'] else 'FAIL'} "
            f"(smallest p {low_p:.3g}); diagnostics passed in "
            f"{rate['diagnostics_passed']} of {rate['posterior_fitted']} fits"
        )
    if rate.get("posterior_failures"):
        lines.append(f"  posterior failures: {rate['posterior_failures']}")
    return lines


def format_missing_summary(results: dict[str, Any]) -> str:
    """The study as text: per rate, every method's RMSE by parameter group and bias check,
    the posterior's coverage, then the gates."""
    s = results["settings"]
    lines = [
        f"MCAR study: {s['n_replicates']} replicates per rate, N = {s['n_samples']}, truth "
        f"K = {len(results['truth']['weights'])}, D = {len(results['truth']['means'][0])} "
        f"(bayesgmm.validation.missing.MISSING_TRUTH unless given); level {s['level']}, "
        f"alpha {s['alpha']} per family (Bonferroni over {len(results['names'])} parameters); "
        f"{results['seconds']:.0f} s.",
        "RMSE by group: root mean square over the group's parameters of each parameter's RMSE "
        "over replicates; max|bias|/se: the largest bias in Monte Carlo standard errors.",
    ]
    for key, rate in results["rates"].items():
        lines += _rate_lines(key, rate, s["n_samples"])
    if "command" in results:
        lines.append(f"Command: {results['command']}")
    failed = [k for k, v in results["gates"].items() if v is False]
    lines.append(
        f"Gates failed: {failed or 'none'}; overall {'PASS' if results['passed'] else 'FAIL'}"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bayesgmm.validation.missing_study",
        description="Cells removed completely at random: bias, RMSE and coverage of EM with "
        "missing cells and the posterior against dropping rows and mean imputation.",
    )
    parser.add_argument("--replicates", type=int, default=20, help="data sets per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.25, 0.4])
    parser.add_argument("--n-samples", type=int, default=250)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--no-posterior", action="store_true", help="point estimators only")
    parser.add_argument(
        "--posterior-replicates", type=int, default=None, help="posterior fits per rate"
    )
    parser.add_argument(
        "--keep-estimates",
        action="store_true",
        help="keep every replicate's estimates in missing_results.json (large)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("validation"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study, write ``missing_results.json`` and ``missing_summary.txt`` in ``--out``,
    print the summary; 0 if every gate passed, 1 if not.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (``sys.argv[1:]`` by default); ``--help`` lists them.

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    From a shell (``make validate-missing`` runs the committed configuration)::

        python -m bayesgmm.validation.missing_study --replicates 5 --no-posterior
    """
    args = _parser().parse_args(argv)
    posterior = None
    if not args.no_posterior:
        settings = SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains)
        posterior = BayesianFitter(len(MISSING_TRUTH["weights"]), settings)
    results = run_missing_study(
        args.replicates,
        rates=args.rates,
        n_samples=args.n_samples,
        posterior=posterior,
        n_posterior=args.posterior_replicates,
        random_seed=args.seed,
        log=sys.stderr,
    )
    results["command"] = "python -m bayesgmm.validation.missing_study " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    text = format_missing_summary(results)
    if not args.keep_estimates:  # the summaries stay; the seed regenerates the rest
        for records in results["replicates"].values():
            for record in records:
                record.pop("estimates")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "missing_results.json").write_text(
        json.dumps(results, indent=1, default=json_default)
    )
    (args.out / "missing_summary.txt").write_text(text + "\n")
    print(text)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
