"""Execute the notebooks top to bottom in place, with full runs (as they are committed).

    .venv/bin/python tools/execute_notebooks.py                 # every notebook
    .venv/bin/python tools/execute_notebooks.py em_vs_mcmc      # one of them

Each runs in a fresh kernel with ``notebooks/`` as its working directory; a failing cell
stops that notebook and leaves the committed file unchanged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    nbformat.write(nb, path)
    print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s")


def main(names: list[str]) -> None:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    chosen = [p for p in paths if not names or p.stem in names]
    if names and len(chosen) != len(names):
        raise SystemExit(f"unknown notebook(s); choose from {[p.stem for p in paths]}")
    for path in chosen:
        execute(path)


if __name__ == "__main__":
    main(sys.argv[1:])
