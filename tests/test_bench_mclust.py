"""The mclust side-by-side benchmark runs without R and picks up bayesgmm's models by name."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import benchmark_script


@pytest.fixture(scope="module")
def bench():
    return benchmark_script("bench_mclust")


def test_models_are_found_by_either_name(bench):
    names = bench.bayesgmm_names(list(bench.MCLUST_MODELS))
    assert names["VVV"] in ("VVV", "full") and names["VII"] in ("VII", "spherical")
    assert names["EEE"] in ("EEE", "tied") and names["VVI"] in ("VVI", "diag")
    assert all(
        name in (None, model) for model, name in names.items() if model not in bench.SKLEARN_NAMES
    )


def test_runs_from_the_committed_reference(bench, capsys):
    (summary,) = bench.main(["--datasets", "faithful", "--kmax", "2", "--no-r", "--no-sklearn"])
    out = capsys.readouterr().out
    assert "R mclust not run (--no-r)" in out and "=== faithful" in out
    assert summary["cells_compared_mclust"] >= 8 and summary["hc"]["same"]
    assert np.isnan(summary["seconds_mclust"])  # the reference was timed over K = 1..9
    assert summary["worst_vs_mclust"][0] > -1.0
    assert summary["same_serial"]  # the threaded sweep's table is the one-thread table
    assert "(one thread)" in out and "n_jobs=1" in out


def test_refused_cells_are_told_apart_from_lower_optima(bench):
    """A cell mclust fits and bayesgmm refuses is below mclust (-inf) and counted as refused;
    a lower optimum is below and not refused; a cell neither fits is neither."""
    ours = {"cells": {("VVV", 1): (-10.0, "ok"), ("VVV", 2): (np.nan, "failed [p>=n]")}}
    ours["cells"][("VVV", 3)] = (-9.0, "ok")
    mclust = {("VVV", 1): -10.0, ("VVV", 2): -8.0, ("VVV", 3): -8.5}
    rows = bench.cell_rows(["VVV"], 4, mclust, ours, {}, (40, 2))
    assert [(r["K"]) for r in bench.refused(rows)] == [2]
    assert bench._worst(rows, "ours_minus_mclust")[:3] == (-np.inf, "VVV", 2)
    lower = [r["K"] for r in rows if r["ours_minus_mclust"] < -bench.DEFICIT]
    assert lower == [3]


def test_rows_with_missing_cells_are_left_out_and_counted(bench, tmp_path, capsys):
    """mclust fits complete rows only: both sides compare on those (R's airquality)."""
    path = tmp_path / "holes.csv"
    path.write_text("a,b\n1,2\n3,\n5,6\nNA,1\n7,8\n")
    X = bench.read_complete(path)
    assert X.to_numpy().tolist() == [[1.0, 2.0], [5.0, 6.0], [7.0, 8.0]]
    assert "holes: 2 row(s) with missing cells left out" in capsys.readouterr().out


def test_one_component_models_are_compared_by_mclust_class(bench):
    """mclust names K = 1 by class (XXX: every full-covariance model is then the same)."""
    assert bench._same_model(("XXX", 1), ("EEE", 1)) and bench._same_model(("XXX", 1), ("VVV", 1))
    assert bench._same_model(("XXI", 1), ("VEI", 1)) and bench._same_model(("XII", 1), ("VII", 1))
    assert not bench._same_model(("XXX", 1), ("VVI", 1))
    assert not bench._same_model(("XXI", 1), ("EII", 1))
    assert not bench._same_model(("VVV", 2), ("EEE", 2))
    assert not bench._same_model(("XXX", 1), ("VVV", 2))
    assert bench._same_model(("VEE", 3), ("VEE", 3))


def test_unknown_names_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--datasets", "crabs", "--no-r"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "XYZ"])


def _tied_data(rng):
    """A Gaussian blob and five identical rows inside it: a diag component on the tied rows
    has a likelihood without bound (a spike)."""
    return np.vstack([rng.standard_normal((200, 2)), np.full((5, 2), 0.7)])


def test_a_fit_on_the_way_to_a_spike_is_flagged(bench, rng):
    """Stopped early near the tied rows (two iterations, as a loose tolerance stops it), the fit
    is no spike yet, but EM continued from it collapses onto them."""
    import warnings

    from sklearn.mixture import GaussianMixture

    X = _tied_data(rng)
    gm = GaussianMixture(
        2, covariance_type="diag", max_iter=2, means_init=[[0.0, 0.0], [0.7, 0.7]],
        weights_init=[0.9, 0.1], precisions_init=[[1.0, 1.0], [25.0, 25.0]],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: on purpose
        gm.fit(X)
    assert not bench.sklearn_spike(gm, "VVI", len(X))
    assert bench.continues_to_spike(gm, X, "VVI")
    assert gm.n_iter_ == 2  # the fit itself is left as it was


def test_a_sound_optimum_is_not_flagged(bench, rng):
    from sklearn.mixture import GaussianMixture

    X = np.vstack([rng.standard_normal((150, 2)), rng.standard_normal((150, 2)) + 6.0])
    gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    assert not bench.sklearn_spike(gm, "VVI", len(X))
    assert not bench.continues_to_spike(gm, X, "VVI")
