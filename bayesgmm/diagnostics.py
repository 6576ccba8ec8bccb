"""bayesgmm's own convergence checks, run after relabelling, with advice when they fail.

PyMC and nutpie log their warnings rather than raising them; bayesgmm computes the standard
checks itself (Vehtari et al. 2021 for rank-normalised R-hat and ESS; Betancourt 2016 for
E-BFMI) and warns with :class:`SamplingWarning`. Results are returned either way.
"""

from __future__ import annotations

import logging
import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from ._idata import get_group

__all__ = ["GATES", "SamplingWarning", "check_sampling", "diagnostics", "parameter_diagnostics"]

GATES = {"r_hat": 1.01, "ess_bulk": 400.0, "ess_tail": 400.0, "bfmi": 0.3, "divergences": 0}
PARAMETERS = ("weights", "means", "covariances")

_ADVICE = {
    "divergences": "raise target_accept (e.g. 0.95); persistent divergences often mean too "
    "many components for the data (try fewer)",
    "r_hat": "chains disagree: tune and draw longer, or use fewer components (an empty or "
    "duplicated component makes the posterior multimodal)",
    "ess_bulk": "increase draws (or tune longer); a low ESS with many components suggests "
    "fewer components",
    "ess_tail": "increase draws so the tails (and HDIs) are estimated reliably",
    "bfmi": "the momentum resampling explores energy poorly: tune longer, or use fewer components",
}


class SamplingWarning(UserWarning):
    """A convergence check failed; the message says which and what to try."""


def scalar_parameters(posterior: xr.Dataset, var_names: tuple[str, ...]) -> xr.Dataset:
    """The named variables with entries duplicated by symmetry or fixed by definition masked.

    ``covariances`` keep their lower triangle (diagonal included); ``correlations`` keep their
    strictly lower triangle (the diagonal is 1). Masked entries are NaN and are dropped from
    summaries by :func:`quiet_summary`.
    """
    missing = [v for v in var_names if v not in posterior]
    if missing:
        raise ValueError(f"The posterior has no variable(s) {missing}.")
    out = posterior[list(var_names)]
    for name, offset in (("covariances", 0), ("correlations", -1)):
        if name in out:
            d = out[name].sizes["feature"]
            mask = xr.DataArray(
                np.tril(np.ones((d, d), dtype=bool), offset), dims=("feature", "feature_bis")
            )
            out[name] = out[name].where(mask)
    return out


def quiet_summary(dataset: xr.Dataset, **kwargs) -> pd.DataFrame:
    """``az.summary`` of a Dataset from :func:`scalar_parameters`, masked entries dropped."""
    # ArviZ 0.23 logs through ``arviz._log``, a Logger made outside the logging registry:
    # ``logging.getLogger("arviz")`` is another object and silences nothing.
    arviz_log = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = arviz_log.level
    arviz_log.setLevel(logging.ERROR)  # masked entries are NaN on purpose
    try:
        table = az.summary(dataset, round_to="none", **kwargs)
    finally:
        arviz_log.setLevel(level)
    first = table.columns[0]
    return table.dropna(subset=[first])


def parameter_diagnostics(idata: az.InferenceData) -> pd.DataFrame:
    """R-hat, bulk and tail ESS for every scalar of weights, means and covariances.

    Computed by ArviZ (``az.summary(kind="diagnostics")``); entries that are constant across
    all draws (e.g. zero off-diagonal covariances of a diagonal model) are left out.
    """
    posterior = get_group(idata, "posterior")
    names = tuple(v for v in PARAMETERS if v in posterior)
    table = quiet_summary(scalar_parameters(posterior, names), kind="diagnostics")
    return table.dropna(subset=["r_hat"])


def _check_rows(idata: az.InferenceData) -> list[dict]:
    stats = get_group(idata, "sample_stats")
    params = parameter_diagnostics(idata)
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    bfmi = az.bfmi(idata) if "energy" in stats else np.array([np.nan])
    rows = [
        ("divergences", float(divergences), GATES["divergences"], divergences == 0, ""),
        (
            "r_hat",
            params["r_hat"].max(),
            GATES["r_hat"],
            params["r_hat"].max() <= GATES["r_hat"],
            params["r_hat"].idxmax(),
        ),
    ]
    for ess in ("ess_bulk", "ess_tail"):
        worst = params[ess].idxmin()
        rows.append((ess, params[ess].min(), GATES[ess], params[ess].min() >= GATES[ess], worst))
    worst_chain = int(np.nanargmin(bfmi))
    rows.append(
        (
            "bfmi",
            float(np.nanmin(bfmi)),
            GATES["bfmi"],
            bool(np.nanmin(bfmi) >= GATES["bfmi"]),
            f"chain {worst_chain}",
        )
    )
    return [
        {"check": c, "value": v, "threshold": t, "passed": bool(p), "worst": w}
        for c, v, t, p, w in rows
    ]


def diagnostics(idata: az.InferenceData) -> pd.DataFrame:
    """One row per convergence check.

    Columns: ``check`` (divergences, r_hat, ess_bulk, ess_tail, bfmi), ``value`` (the count,
    the worst R-hat or ESS over parameters, the lowest E-BFMI over chains), ``threshold``,
    ``passed``, ``worst`` (the parameter or chain responsible) and ``advice``.
    """
    table = pd.DataFrame(_check_rows(idata))
    table["advice"] = [
        "" if passed else _ADVICE[check]
        for check, passed in zip(table["check"], table["passed"], strict=True)
    ]
    return table


def check_sampling(idata: az.InferenceData, *, stacklevel: int = 2) -> pd.DataFrame:
    """Run :func:`diagnostics` and warn with :class:`SamplingWarning` if any check fails."""
    table = diagnostics(idata)
    failed = table[~table["passed"]]
    if not failed.empty:
        lines = [
            f"{r.check} = {r.value:.4g} (gate {r.threshold:g}; worst: {r.worst}): {r.advice}"
            for r in failed.itertuples()
        ]
        warnings.warn(
            "Sampling diagnostics failed; the results are returned but treat them with care.\n  "
            + "\n  ".join(lines),
            SamplingWarning,
            stacklevel=stacklevel,
        )
    return table
