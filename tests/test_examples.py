"""The example scripts run end to end with few draws and print what they promise.

Each runs in a subprocess, as a user would run it, importing this source tree; the
``BAYESGMM_DRAWS``/``TUNE``/``CHAINS`` switch keeps the whole module near a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayesgmm import load_faithful

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"BAYESGMM_DRAWS": "100", "BAYESGMM_TUNE": "100", "BAYESGMM_CHAINS": "2"}


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **SMALL, "PYTHONPATH": path, "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.timeout(600)
def test_quickstart(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path).stdout
    for expected in ("r_hat", "ess_bulk", "means[0, waiting]", "em_in_hdi"):
        assert expected in out
    assert list(tmp_path.iterdir()) == []  # writes nothing


@pytest.mark.timeout(600)
def test_em_vs_posterior_csv(tmp_path):
    csv = tmp_path / "geyser.csv"
    load_faithful().assign(site="Old Faithful").to_csv(csv, index=False)  # text is skipped
    figures = tmp_path / "figures"
    out = run_example("em_vs_posterior_csv.py", str(csv), "--out", str(figures), cwd=tmp_path)
    assert "272 rows, features ['eruptions', 'waiting']" in out.stdout
    for expected in ("EM against the posterior", "stds[1, waiting]", "adjusted_rand_index"):
        assert expected in out.stdout
    assert {p.name for p in figures.iterdir()} == {"ellipses.png", "forest.png"}


@pytest.mark.timeout(600)
def test_choose_k(tmp_path):
    out = run_example("choose_k.py", "--components", "1-3", cwd=tmp_path).stdout
    assert "EM sweep" in out and "elpd_loo" in out and "failed_checks" in out
    assert "Chosen K: BIC 2, ICL 2, LOO" in out
    assert (tmp_path / "criteria.png").is_file()
