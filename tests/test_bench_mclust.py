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


def test_unknown_names_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--datasets", "crabs", "--no-r"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "XYZ"])
