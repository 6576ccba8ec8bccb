"""The notebooks run end to end with few draws, and are committed executed.

Each notebook is executed with nbclient into a temporary directory (the committed outputs, from
full runs, are left alone), with this source tree on PYTHONPATH and the small-draws switch that
every notebook's config cell reads: ``BAYESGMM_DRAWS``, ``BAYESGMM_TUNE``, ``BAYESGMM_CHAINS``.
Short runs fail the ESS gates on purpose; the notebooks assert convergence on full runs only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SMALL = {"BAYESGMM_DRAWS": "100", "BAYESGMM_TUNE": "100", "BAYESGMM_CHAINS": "2"}


def test_the_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "em_vs_mcmc.ipynb",
        "missing_values.ipynb",
        "model_selection.ipynb",
        "uncertainty_clustering.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert 20 <= len(cells) <= 30
    code = [c for c in cells if c.cell_type == "code"]
    assert "BAYESGMM_DRAWS" in code[1].source and "SEED" in code[1].source  # one config cell
    assert "importlib.metadata.version" in code[-1].source  # versions printed at the end
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "run top to bottom in one kernel"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert "full run: True" in "".join(o.get("text", "") for o in code[1].outputs)
    assert path.stat().st_size < 2_000_000


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_with_few_draws(path, tmp_path, monkeypatch):
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / path.name)  # kept for inspection when a cell fails
    config = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "100 draws after 100 tuning steps, 2 chains; full run: False" in config
