"""The report's EM section (the BIC table and figure) and the statement of which covariance
model the Bayesian stage samples against the one EM's BIC chose."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bayesgmm import em_sweep
from bayesgmm._models import MODEL_NAMES, contains, sampled_model_statement
from bayesgmm._report_figures import bic_figure, bic_table
from bayesgmm.datasets import load_faithful

matplotlib.use("Agg")
DIAGONAL = {"EII", "VII", "EEI", "VEI", "EVI", "VVI"}


def test_nesting_of_the_14_models():
    """Celeux & Govaert's hierarchy: VVV contains every model, VVI the diagonal ones, EII is
    in every model, and a common orientation is not a diagonal one."""
    assert all(contains("VVV", m) for m in MODEL_NAMES)
    assert {m for m in MODEL_NAMES if contains("VVI", m)} == DIAGONAL
    assert {m for m in MODEL_NAMES if contains(m, "EII")} == set(MODEL_NAMES)
    assert {m for m in MODEL_NAMES if contains("EEE", m)} == {"EII", "EEI", "EEE"}
    assert not contains("EEE", "VVI") and not contains("VVI", "EEE")
    assert contains("full", "VVE") and contains("diag", "spherical")


@pytest.mark.parametrize(
    ("best", "sampled", "says"),
    [
        ((2, "full"), "full", "VVV with K=2; the Bayesian stage samples VVV (full), the same"),
        ((3, "VVE"), "full", "samples VVV (full), which contains VVE as a special case"),
        ((3, "VEI"), "diag", "samples VVI (diag), which contains VEI"),
        ((4, "EEE"), "diag", "samples VVI (diag), which cannot represent EEE"),
        # the advice names a model the stage can sample (R's milk: "full contains every
        # model" pointed back to full, refused there, not to EEE, BIC's choice)
        ((4, "EEE"), "diag", "EEE itself can be sampled: bayes_covariance_type='EEE'."),
        ((2, "VEV"), "diag", "samples that contains VEV is VVV (bayes_covariance_type='VVV')"),
        ((2, "EVI"), "EII", "samples that contains EVI is VVI (bayes_covariance_type='VVI')"),
        ((2, "VEV"), "VVV", "samples VVV, which contains VEV"),  # not "VVV (VVV)"
    ],
)
def test_statement_names_both_models(best, sampled, says):
    assert says in sampled_model_statement(best, sampled)


@pytest.fixture(scope="module")
def sweep():
    X = load_faithful()
    return em_sweep(X, [1, 2, 3], ("VVV", "EEE", "VII"), reg_covar=0.0, progress=False)


def test_bic_table_is_models_by_k(sweep):
    table = bic_table(sweep.table)
    assert list(table["model"]) == ["VVV", "EEE", "VII"]
    assert list(table.columns[1:]) == ["K=1", "K=2", "K=3"]
    for row in sweep.table.itertuples():
        value = table.set_index("model").loc[row.model_name, f"K={row.n_components}"]
        np.testing.assert_allclose(value, row.bic, rtol=0, atol=0)


def test_bic_figure_marks_and_names_the_best(sweep):
    fig = bic_figure(sweep.table, sweep.best["bic"])
    (ax,) = fig.axes
    k, name = sweep.best["bic"]
    model = sweep.table.set_index(["n_components", "covariance_type"]).loc[(k, name), "model_name"]
    assert [t.get_text() for t in ax.texts] == [f"best: {model}, K={k}"]
    assert len(ax.get_legend().get_texts()) == 3  # a line per model
    plt.close(fig)


def test_the_report_marks_unsound_fits_in_the_bic_table():
    """R's votes.repub: the BIC table's lowest cell (VVE K=4) contradicted "Best BIC: K=2
    (EVE)" with no mark that the fit was left out as unsound."""
    from bayesgmm.report import _marked_bic_table

    table = pd.DataFrame(
        {
            "n_components": [1, 2, 1, 2],
            "model_name": ["EVE", "EVE", "VVE", "VVE"],
            "status": ["ok", "ok", "failed", "collapsed"],
            "bic": [3100.4, 3019.2, np.nan, 22847.6],
        }
    )
    marked = _marked_bic_table(table).set_index("model")
    assert marked.loc["VVE"].tolist() == ["", "22848 †"]
    assert marked.loc["EVE"].tolist() == ["3100", "3019"]
