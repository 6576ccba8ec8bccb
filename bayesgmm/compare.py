"""EM against the posterior: where the point estimate sits, parameter by parameter.

Every summary comes from ArviZ (its ``summary``: mean, sd, HDI, R-hat, ESS); bayesgmm adds the
EM value, whether it lies in the HDI, and the standardised difference ``z = (EM - mean) / sd``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import rel_entr
from sklearn.metrics import adjusted_rand_score

from . import _gaussian as g
from ._idata import Tree, flat_values, get_group, hdi
from ._kernels import Mixture, default_block_rows
from ._missing import predict_rows
from ._scaling import AffineScaling
from ._units import scaling_of, standardised
from .diagnostics import scalar_parameters, summarise_in_units
from .em import EMGaussianMixture
from .membership import posterior_membership
from .sampling import em_reference

__all__ = ["compare", "compare_mixture"]

COLUMNS = [
    "parameter",
    "em",
    "mean",
    "median",
    "sd",
    "hdi_low",
    "hdi_high",
    "em_in_hdi",
    "z",
    "r_hat",
    "ess_bulk",
]


def _parameter_names(posterior: xr.Dataset) -> tuple[str, ...]:
    names = ["weights", "means", "stds"]
    if "correlations" in posterior:
        names.append("correlations")
    return tuple(names)


def _em_values(reference: xr.Dataset, names: tuple[str, ...]) -> pd.Series:
    """EM values labelled exactly as the summary labels the posterior's entries."""
    return flat_values(scalar_parameters(reference, names))


def compare(em: EMGaussianMixture | None, idata: Tree, *, hdi_prob: float = 0.94) -> pd.DataFrame:
    """EM estimates against posterior summaries, one row per scalar parameter.

    Parameters
    ----------
    em : EMGaussianMixture or None
        The EM fit; ``None`` uses the results' ``em`` group.
    idata : xarray.DataTree
        A relabelled posterior (from :func:`~bayesgmm.sample_posterior`).
    hdi_prob : float

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter`` (ArviZ's label, e.g. ``means[0, waiting]``), ``em``, ``mean``,
        ``median``, ``sd``, ``hdi_low``, ``hdi_high``, ``em_in_hdi``, ``z`` (``(em - mean) /
        sd``), ``r_hat`` and ``ess_bulk``. Parameters are weights, means, standard deviations
        and (full covariances) the correlations below the diagonal.

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> bgmm = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> table = compare(None, bgmm.idata_)  # doctest: +SKIP
    >>> table[~table.em_in_hdi]  # doctest: +SKIP
    """
    posterior = get_group(idata, "posterior")
    reference = em_reference(idata, em)
    names = _parameter_names(posterior)
    summary = summarise_in_units(posterior, names, scaling_of(idata), hdi_prob=hdi_prob)
    table = pd.DataFrame(
        {
            "parameter": summary.index,
            "em": _em_values(reference, names).reindex(summary.index).to_numpy(),
            "mean": summary["mean"].to_numpy(),
            "median": summary["median"].to_numpy(),
            "sd": summary["sd"].to_numpy(),
            "hdi_low": summary["hdi_low"].to_numpy(),
            "hdi_high": summary["hdi_high"].to_numpy(),
            "r_hat": summary["r_hat"].to_numpy(),
            "ess_bulk": summary["ess_bulk"].to_numpy(),
        }
    )
    table["em_in_hdi"] = (table["em"] >= table["hdi_low"]) & (table["em"] <= table["hdi_high"])
    with np.errstate(divide="ignore", invalid="ignore"):
        table["z"] = (table["em"] - table["mean"]) / table["sd"]
    table.attrs["hdi_prob"] = hdi_prob
    return table[COLUMNS].reset_index(drop=True)


def compare_mixture(
    em: EMGaussianMixture | None,
    idata: Tree,
    X: Any = None,
    *,
    hdi_prob: float = 0.94,
) -> pd.DataFrame:
    """Mixture-level agreement of EM and the posterior.

    Rows (``metric``):

    - ``log_likelihood``: EM's total log-likelihood (``em``) against the posterior
      distribution of the total log-likelihood (``mean``, ``sd``, ``hdi_low``, ``hdi_high``);
      ``value`` is the fraction of draws whose log-likelihood is below EM's (EM is a maximum,
      so this is usually close to 1);
    - ``adjusted_rand_index``: between EM's hard labels and the posterior's most probable
      components;
    - ``label_agreement``: the fraction of observations with the same hard label;
    - ``mean_kl_em_to_posterior``: the mean over observations of ``KL(EM responsibilities ||
      posterior mean memberships)``, in nats.

    Parameters
    ----------
    em : EMGaussianMixture or None
        The EM fit; ``None`` uses the ``em`` group (responsibilities are then computed with the
        package's Gaussian math from its parameters).
    idata : xarray.DataTree
    X : array-like, optional
        The data; defaults to the observed data.
    hdi_prob : float

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> fit = BayesianGMM(2, random_seed=1).fit(load_faithful())  # doctest: +SKIP
    >>> compare_mixture(fit.em_, fit.idata_).set_index("metric")["value"]  # doctest: +SKIP
    """
    reference = em_reference(idata, em)
    observed = (
        get_group(idata, "observed_data")["obs"].values if X is None else np.asarray(X, float)
    )
    log_norm, log_resp = _em_log_resp(reference, observed, scaling_of(idata))
    em_resp, em_log_lik = np.exp(log_resp), float(log_norm.sum())
    membership = posterior_membership(idata, observed, hdi_prob=hdi_prob)
    post_resp = membership["probability"].values
    log_lik = get_group(idata, "log_likelihood")["obs"].sum("obs_id")
    interval = hdi(log_lik.to_dataset(name="ll"), hdi_prob)["ll"].values
    em_labels, post_labels = em_resp.argmax(axis=1), post_resp.argmax(axis=1)
    kl = rel_entr(em_resp, np.clip(post_resp, 1e-300, None)).sum(axis=1)
    kl = np.maximum(kl, 0.0)  # (a sum of terms of both signs: -7.6e-292 on robustbase hbk)
    rows = [
        {
            "metric": "log_likelihood",
            "value": float((log_lik < em_log_lik).mean()),
            "em": em_log_lik,
            "mean": float(log_lik.mean()),
            "sd": float(log_lik.std()),
            "hdi_low": float(interval[0]),
            "hdi_high": float(interval[1]),
        },
        {"metric": "adjusted_rand_index", "value": adjusted_rand_score(em_labels, post_labels)},
        {"metric": "label_agreement", "value": float(np.mean(em_labels == post_labels))},
        {"metric": "mean_kl_em_to_posterior", "value": float(kl.mean())},
    ]
    return pd.DataFrame(
        rows, columns=["metric", "value", "em", "mean", "sd", "hdi_low", "hdi_high"]
    )


def _em_log_resp(
    reference: xr.Dataset, X: np.ndarray, scaling: AffineScaling
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log density (in the data's units) and log responsibilities under the EM
    estimate, computed on the standardised scale; a row with missing cells by the density of
    its observed ones (as EM and the posterior see it), one with none observed by the weights.
    """
    unit = standardised(reference, scaling)
    chol = g.precision_cholesky(unit["covariances"].values, "full")
    mixture = Mixture(scaling, unit["weights"].values, unit["means"].values, chol, "full")
    blocks = default_block_rows("serial", *unit["means"].shape)
    log_norm, log_resp = (
        predict_rows(X, mixture, block_rows=blocks, output=output)
        for output in ("log_norm", "log_resp")
    )
    return log_norm - scaling.log_jacobian, log_resp
