"""Fault injection: interrupts at each stage, outputs that cannot be written, damaged and shared
compiled-code caches, hostile column names.

Whatever happens, the rule is the same: a correct result or one line that names the problem,
no input ever modified, no half-written output left behind.
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesgmm import BayesianGMM, SamplingWarning, _numba_cache, load_faithful
from bayesgmm._errors import SamplingInterrupted, describe
from bayesgmm._output import OutputPathError, staged
from bayesgmm._render import Section
from bayesgmm._results import keep_finished_draws
from bayesgmm.cli import EXIT_DATA_ERROR, EXIT_INTERRUPTED, main
from bayesgmm.report import _ReportPaths

from .conftest import run_fresh

TINY = ["--draws", "20", "--tune", "20", "--chains", "2", "--quiet"]


@pytest.fixture
def data_csv(tmp_path) -> Path:
    path = tmp_path / "data.csv"
    load_faithful().to_csv(path, index=False)
    return path


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``folder``: contents, inode and modification time."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            out[str(path.relative_to(folder))] = (path.read_bytes(), stat.st_ino, stat.st_mtime_ns)
    return out


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


# ----------------------------------------------------------------------------- interrupts


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _background_sampler() -> type:
    """nutpie's background sampler class (``nutpie.sample`` is also a function's name)."""
    import importlib

    return importlib.import_module("nutpie.sample")._BackgroundSampler


def test_interrupt_during_em_ends_with_one_line_and_writes_nothing(
    data_csv, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("bayesgmm.em.EMGaussianMixture._fit", _interrupt)  # every EM fit
    before = _snapshot(tmp_path)
    code = main(["report", str(data_csv), "--out", str(tmp_path / "r.html"), *TINY])
    assert code == EXIT_INTERRUPTED
    assert "interrupted" in _one_error_line(capsys)
    assert _snapshot(tmp_path) == before


def test_interrupt_while_tuning_says_nothing_was_kept(data_csv, capsys, monkeypatch):
    """Ctrl-C before any draw is finished: nutpie's run is aborted, nothing is returned.
    (Tuning long enough that no chain can finish it before the Ctrl-C lands: with compiled
    callbacks 20 tuning steps and 20 draws of Old Faithful take milliseconds.)"""
    monkeypatch.setattr(_background_sampler(), "wait", _interrupt)
    with pytest.raises(SamplingInterrupted, match="interrupted"):
        BayesianGMM(2, draws=20, tune=100_000, chains=1, progressbar=False).fit(load_faithful())
    code = main(["fit", str(data_csv), "--components", "2", *TINY, "--tune", "100000"])
    assert code == EXIT_INTERRUPTED
    assert "interrupted" in _one_error_line(capsys)


def _interrupt_after_draws(n_draws: int, n_chains: int = 1):
    """A stand-in for nutpie's wait that presses Ctrl-C once ``n_chains`` chains are running
    and every one of them has n_draws (a chain that has not started yet is absent from what
    nutpie's inspect returns)."""

    def wait(self, *, timeout=None):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # ArviZ: few draws so far
                posterior = self.inspect().posterior
            values = posterior[next(iter(posterior.data_vars))].values
            if values.size:
                done = ~np.isnan(values.reshape(*values.shape[:2], -1)).any(axis=2)
                if done.shape[0] >= n_chains and done.sum(axis=1).min() >= n_draws:
                    raise KeyboardInterrupt
            time.sleep(0.05)
        raise AssertionError("the chains never reached the draws asked for")

    return wait


def test_interrupt_while_drawing_keeps_the_finished_draws_marked_partial(monkeypatch):
    monkeypatch.setattr(_background_sampler(), "wait", _interrupt_after_draws(15, n_chains=2))
    fit = BayesianGMM(2, draws=100_000, tune=30, chains=2, random_seed=0, progressbar=False)
    with pytest.warns(SamplingWarning, match=r"interrupted \(Ctrl-C\): kept the first"):
        fit.fit(load_faithful())
    posterior = fit.idata_.posterior
    n, m = posterior.sizes["draw"], posterior.sizes["chain"]
    # Both chains had 15 draws when Ctrl-C was pressed and draw on until the abort lands, so
    # the block kept (the n x m-largest, see test_keep_finished_draws_*) is at least 2 x 15:
    # both chains, or one that ran ahead by more than the other had drawn.
    assert m in (1, 2) and n < 100_000 and n * m >= 2 * 15
    assert "interrupted" in posterior.attrs
    assert not np.isnan(posterior["means"].values).any()
    table = fit.diagnostics().set_index("check")
    assert not table.loc["interrupted", "passed"]
    assert table.loc["interrupted", "threshold"] == 100_000
    fit.predict()  # the partial results are usable


def _padded_run(finished: list[int], n_draws: int = 12) -> xr.DataTree:
    """A nutpie-like tree of an interrupted run: chain c has ``finished[c]`` draws, NaN after."""
    values = np.full((len(finished), n_draws, 2), np.nan)
    for chain, n in enumerate(finished):
        values[chain, :n] = chain + np.arange(n)[:, None] / 100
    dims = ("chain", "draw", "component")
    stats = np.where(np.isnan(values[..., 0]), np.nan, 1.0)
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"weights": (dims, values)}),
            "sample_stats": xr.Dataset({"step_size": (dims[:2], stats)}),
        }
    )


@pytest.mark.parametrize(
    ("finished", "kept_chains", "kept_draws"),
    [
        ([5, 5, 5, 5], [0, 1, 2, 3], 5),
        ([10, 4, 4, 4], [0, 1, 2, 3], 4),  # 16 > 10
        ([12, 4, 3, 0], [0], 12),  # 12 > 3 x 3 > 2 x 4
        ([3, 7, 6, 0], [1, 2], 6),  # 2 x 6 > 3 x 3 > 7
        ([0, 9, 0, 9], [1, 3], 9),  # a chain not yet started is dropped
        ([0, 0], [], 0),
    ],
)
def test_keep_finished_draws_keeps_the_largest_block_of_chains_by_draws(
    finished, kept_chains, kept_draws
):
    run = _padded_run(finished)
    expected = run.posterior["weights"].values[kept_chains, :kept_draws]
    assert keep_finished_draws(run) == (kept_draws, len(kept_chains))
    if kept_draws:
        np.testing.assert_array_equal(run.posterior["weights"].values, expected)
        assert dict(run.posterior.sizes) == {**run.sample_stats.sizes, "component": 2}
        assert not np.isnan(run.sample_stats["step_size"].values).any()
        assert list(run.posterior["chain"].values) == list(range(len(kept_chains)))


def test_interrupted_fit_command_prints_the_partial_summaries(data_csv, capsys, monkeypatch):
    monkeypatch.setattr(_background_sampler(), "wait", _interrupt_after_draws(10))
    code = main(
        [
            "fit",
            str(data_csv),
            "--components",
            "2",
            "--draws",
            "100000",
            "--tune",
            "20",
            "--chains",
            "2",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == EXIT_INTERRUPTED
    assert "Diagnostics" in captured.out and "interrupted" in captured.out
    assert captured.err.splitlines()[-1].endswith("the summaries above are partial")


def test_interrupted_candidate_stops_the_report(data_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_background_sampler(), "wait", _interrupt_after_draws(5))
    out = tmp_path / "r.html"
    code = main(["report", str(data_csv), "--out", str(out), "--components", "1-2", *TINY])
    assert code == EXIT_INTERRUPTED
    assert "interrupted while sampling K=" in _one_error_line(capsys)
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_interrupt_while_writing_leaves_the_old_report_and_no_temporary_file(tmp_path):
    paths = _ReportPaths.beside(tmp_path / "r.html")
    section = Section("data", "Data")
    section.text("first")
    paths.write("first", [section], inputs=())
    before = _snapshot(tmp_path)

    second = Section("data", "Data")
    second.text("second")
    import bayesgmm._output as output

    original = output.Stage.write_bytes
    calls = []

    def write_then_stop(self, target, data):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(self, target, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(output.Stage, "write_bytes", write_then_stop)
        with pytest.raises(KeyboardInterrupt):
            paths.write("second", [second], inputs=())
    assert _snapshot(tmp_path) == before  # same bytes, same inodes, no leftovers


def test_a_replaced_output_is_a_new_file(tmp_path):
    """A hard link of an old report keeps the old text (no in-place rewrite)."""
    target, link = tmp_path / "r.txt", tmp_path / "link.txt"
    target.write_text("old")
    os.link(target, link)
    with staged() as stage:
        stage.write_bytes(target, b"new")
    assert target.read_text() == "new" and link.read_text() == "old"


# ----------------------------------------------------------------------------- outputs


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any fitting starts: output problems must be found before."""

    def started(*args, **kwargs):
        raise AssertionError("work started before the output paths were checked")

    import importlib

    monkeypatch.setattr(importlib.import_module("bayesgmm.report"), "select_n_components", started)


def _bad_outputs(tmp_path: Path, data_csv: Path) -> dict[str, tuple[str, str]]:
    link = tmp_path / "hardlink.html"
    os.link(data_csv, link)
    symlink = tmp_path / "symlink.html"
    symlink.symlink_to(data_csv)
    (tmp_path / "folder").mkdir()
    return {
        "input": (str(data_csv), "is the input file"),
        "hard link of the input": (str(link), "is the input file"),
        "symbolic link to the input": (str(symlink), "is the input file"),
        "markdown name": (str(tmp_path / "r.md"), "would both be"),
        "directory": (str(tmp_path / "folder"), "is a directory"),
        "under a file": (str(data_csv / "r.html"), "is a file, not a folder"),
        "read-only file system": ("/proc/bayesgmm-test/r.html", "not writable"),
        "not an HTML name": (str(tmp_path / "r.pdf"), "does not end in .html"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "input",
        "hard link of the input",
        "symbolic link to the input",
        "markdown name",
        "directory",
        "under a file",
        "read-only file system",
        "not an HTML name",
    ],
)
def test_bad_output_paths_are_refused_before_any_work(case, data_csv, tmp_path, capsys, no_work):
    out, message = _bad_outputs(tmp_path, data_csv)[case]
    before = _snapshot(tmp_path)
    code = main(["report", str(data_csv), "--out", out, *TINY])
    assert code == EXIT_DATA_ERROR
    line = _one_error_line(capsys)
    assert line.startswith("bayesgmm: error:") and message in line
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="root writes into read-only folders; the "
    "read-only file system case covers the same branch",
)
def test_unwritable_folder_is_refused(data_csv, tmp_path, capsys, no_work):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["report", str(data_csv), "--out", str(folder / "r.html"), *TINY]) == 1
        assert "not writable" in _one_error_line(capsys)
    finally:
        folder.chmod(0o700)


def test_figure_folder_that_is_a_file_is_refused(data_csv, tmp_path, no_work):
    (tmp_path / "r_figures").write_text("not a folder")
    with pytest.raises(OutputPathError, match="not a folder"):
        from bayesgmm import report

        report(load_faithful(), out=tmp_path / "r.html")


# ----------------------------------------------------------------------------- caches

_KERNEL_SCRIPT = textwrap.dedent(
    """
    import warnings
    import numpy as np
    from bayesgmm._unconstrained import _log_weights
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        print(repr(_log_weights(np.array([0.5, -1.0])).tolist()))
    print("warnings:", [str(w.category.__name__) for w in caught])
    """
)


def _run_kernel(cache: Path) -> subprocess.CompletedProcess:
    return run_fresh(_KERNEL_SCRIPT, cache)


def _entries(cache: Path, suffix: str) -> list[Path]:
    return sorted(cache.rglob(f"_unconstrained._log_weights-*{suffix}"))


def test_damaged_cache_entries_are_rebuilt_with_a_warning(tmp_path):
    cache = tmp_path / "numba"
    first = _run_kernel(cache)
    assert first.returncode == 0, first.stderr
    expected = first.stdout.splitlines()[0]
    (data,) = _entries(cache, ".nbc")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # damaged, still unpickles
    data.write_bytes(bytes(raw))
    damaged = _run_kernel(cache)
    assert damaged.returncode == 0, damaged.stderr
    assert damaged.stdout.splitlines() == [expected, "warnings: ['CacheWarning']"]
    (index,) = _entries(cache, ".nbi")
    index.write_bytes(index.read_bytes()[:20])  # truncated
    truncated = _run_kernel(cache)
    assert truncated.stdout.splitlines() == [expected, "warnings: ['CacheWarning']"]
    clean = _run_kernel(cache)
    assert clean.stdout.splitlines() == [expected, "warnings: []"]


def test_two_processes_compiling_into_one_cache(tmp_path):
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _KERNEL_SCRIPT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][0].endswith("warnings: []\n")  # neither read a half-written entry
    assert _run_kernel(cache).stdout == outputs[0][0]  # and what they left loads cleanly


_COMPILES_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from numba.core import event
    from bayesgmm._unconstrained import _log_weights
    with event.install_recorder("numba:compile") as recorder:
        _log_weights(np.array([0.5, -1.0]))
    print(sum(ev.is_start for _, ev in recorder.buffer))
    """
)


def test_kernel_modules_lists_every_module_with_cached_kernels():
    package = Path(_numba_cache.__file__).parent
    cached = {
        path.stem
        for path in package.rglob("*.py")
        if "cache=True" in path.read_text() or "\nCALLBACKS = " in path.read_text()
    }
    assert cached - {"_numba_cache"} == set(_numba_cache.KERNEL_MODULES)


def _own_kernels():
    """``(module name, name, dispatcher)`` of every kernel each kernel module defines."""
    from numba.core.registry import CPUDispatcher

    for name in _numba_cache.KERNEL_MODULES:
        module = importlib.import_module(f"bayesgmm.{name}")
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                yield name, attr, value


def test_every_kernel_module_installs_its_checked_cache_on_import():
    # no package-wide install any more: each kernel module's last line installs its own
    # kernels' cache (a module without it would read and write Numba's unchecked files)
    from numba.core.caching import FunctionCache

    unchecked = [
        f"{name}.{attr}"
        for name, attr, kernel in _own_kernels()
        if isinstance(kernel._cache, FunctionCache)
        and not isinstance(kernel._cache, _numba_cache._CheckedCache)
    ]
    assert unchecked == []


def test_every_kernel_states_its_fastmath_flags():
    # Numba compiles a function without its own fastmath option with its first caller's
    # flags (numba.core.cpu: inherit_if_not_set) and keeps that code for every later caller
    # and in the cache: _gaussian's Cholesky kernels, called from the exact M-step and from
    # the reassociating log density, would then depend on which ran first in a process.
    unset = [
        f"{name}.{attr}"
        for name, attr, kernel in _own_kernels()
        if "fastmath" not in kernel.targetoptions
    ]
    assert unset == []


_LINKED_IR = """
define double @{caller}(double %x) {{
  %y = call double @{callee}(double %x)
  ret double %y
}}
define linkonce_odr double @{callee}(double %x) {{
  %y = fmul double %x, %x
  ret double %y
}}
"""


@pytest.mark.parametrize(
    ("caller", "linkage"),
    [("_ZN8bayesgmm8_kernels6callerE", "internal"), ("_ZN5other7kernels6callerE", "linkonce_odr")],
)
def test_only_bayesgmm_libraries_keep_their_linked_copies_to_themselves(caller, linkage):
    import llvmlite.binding as llvm
    from numba.core import codegen

    callee = "_ZN8bayesgmm9_gaussian6calleeE"
    module = llvm.parse_assembly(_LINKED_IR.format(caller=caller, callee=callee))
    library = type("Library", (), {"_final_module": module})()
    _numba_cache._own_copies(library)
    assert module.get_function(callee).linkage == llvm.Linkage[linkage]
    assert module.get_function(caller).linkage == llvm.Linkage.external
    optimise = codegen.CPUCodeLibrary._optimize_final_module
    assert optimise.bayesgmm_own_copies  # installed on import, and only once:
    _numba_cache.install()
    assert codegen.CPUCodeLibrary._optimize_final_module is optimise


_DENSITY_SCRIPT = textwrap.dedent(
    """
    import hashlib
    import numpy as np
    from bayesgmm import build_model
    from bayesgmm._logdensity import log_density_for
    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)))
    density = log_density_for(build_model(X, 3))
    digest = hashlib.sha256()
    for _ in range(5):
        value, grad = density(rng.normal(scale=0.3, size=density.n_dim), X)
        digest.update(np.float64(value).tobytes() + grad.tobytes())
    print(digest.hexdigest())
    """
)


@pytest.mark.slow  # a cold compile of the log density: ~45 s
def test_compiled_and_cached_kernels_give_the_same_bits(tmp_path):
    # Numba's weak linked copies made a process that compiled the kernels call other machine
    # code than one that loaded them (measured before the fix: another hash, other draws from
    # the same seed on the first run after an install).
    def digest() -> str:
        run = run_fresh(_DENSITY_SCRIPT, tmp_path / "numba", timeout=600)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()[-1]

    assert digest() == digest()


@pytest.mark.slow  # three fresh processes importing bayesgmm: ~30 s of CPU
def test_a_change_in_another_kernel_module_recompiles_the_callers(tmp_path):
    # _unconstrained's kernels compile in _kernels' constants and kernels, but Numba stamps an
    # entry with its own file only: an edit of _kernels.py must still make the entry stale.
    package = tmp_path / "site" / "bayesgmm"
    shutil.copytree(
        Path(_numba_cache.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )

    def compiles() -> int:
        run = run_fresh(
            _COMPILES_SCRIPT,
            tmp_path / "numba",
            cwd=tmp_path,  # not the checkout, whose bayesgmm would come first on sys.path
            PYTHONPATH=str(package.parent),
        )
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    first = compiles()  # the kernel and the kernels it calls
    assert first > 0
    assert compiles() == 0  # all loaded from the cache
    with open(package / "_kernels.py", "a") as handle:
        handle.write("\n# an edit\n")
    assert compiles() == first


@pytest.mark.slow
def test_cache_command_clears_bayesgmm_entries_only(tmp_path, capsys):
    cache = tmp_path / "numba"
    assert _run_kernel(cache).returncode == 0
    other = next(cache.iterdir()) / "someone_else.nbi"
    other.write_text("not ours")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "BAYESGMM_CACHE_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "bayesgmm.cli", "cache", "--clear"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert not _entries(cache, ".nbc") and not _entries(cache, ".nbi")
    assert other.exists()


def test_errors_from_below_are_one_line_with_a_remedy():
    nutpie_failure = RuntimeError(
        "All initialization points failed\n\nCaused by:\n    Logp function returned error: "
        "PyError(PyErr { type: <class 'numpy.linalg.LinAlgError'>, value: "
        "LinAlgError('Matrix is not positive definite'), traceback: None })\n\nStack backtrace:"
    )
    message = describe(nutpie_failure)
    assert "\n" not in message and "Matrix is not positive definite" in message
    assert "--columns" in message
    panic = type("PanicException", (BaseException,), {})("called unwrap on None\nbacktrace")
    assert "--sampler pymc" in describe(panic)
    assert describe(ValueError("something of ours")) is None


# ----------------------------------------------------------------------------- names

HOSTILE = [
    "$\\notacommand$",
    "a|b\nc<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
]


def test_hostile_column_names_in_a_one_component_report(tmp_path):
    """Mathtext, pipes, newlines and HTML in column names: the figures draw, the HTML and
    the rendered Markdown show the names as text and the same tables; K=1 is reported."""
    from bayesgmm import report
    from tests.test_report import _Page, rendered_markdown

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(80, 3)) @ np.diag([1.0, 3.0, 0.5]), columns=HOSTILE)
    out = tmp_path / "hostile.html"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        result = report(
            frame, out=out, n_components=[1], draws=30, tune=30, chains=2, progress=False
        )
    assert result.chosen.n_components == 1
    page_text = out.read_text(encoding="utf-8")
    assert "<script>" not in page_text and "<img src=x" not in page_text
    page = _Page()
    page.feed(page_text)
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    rendered = rendered_markdown(markdown)
    assert not rendered.images or all(not s.startswith("x") for s in rendered.images)
    assert "<script>" not in markdown and "<img" not in markdown.replace("![", "")
    assert rendered.tables == page.tables  # the same tables, cell by cell
    assert any(HOSTILE[0] in cell for row in page.tables[0] for cell in row)


def test_forest_figure_of_one_component_has_no_weights_panel():
    import matplotlib.pyplot as plt

    from bayesgmm.report import _forest_figure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BayesianGMM(1, draws=20, tune=20, chains=2, random_seed=0, progressbar=False)
        fit.fit(load_faithful())
    fig = _forest_figure(fit.idata_, 0.94, [0, 1])
    fig.savefig(io.BytesIO(), format="png", dpi=30)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert labels and not any(label.startswith("weights") for label in labels)
    plt.close(fig)


def test_a_first_run_is_said_before_its_kernels_compile(tmp_path, monkeypatch, capsys):
    """UScereal's first report took 122 s (71 of them EM's compiles) without a word on why,
    its later runs 11 s: the command says so when no kernel has compiled code on disk yet
    (not with --quiet, nor once one has)."""
    from argparse import Namespace

    from bayesgmm import cli

    monkeypatch.setattr(_numba_cache, "cache_folders", lambda *modules: [tmp_path])
    assert _numba_cache.is_cold()
    cli._say_if_cold(Namespace(quiet=False))
    assert "bayesgmm: first run here: bayesgmm compiles its kernels" in capsys.readouterr().err
    cli._say_if_cold(Namespace(quiet=True))
    assert capsys.readouterr().err == ""
    (tmp_path / "_kernels.block-12.py312.checked.0123456789abcdef.nbc").write_bytes(b"")
    assert not _numba_cache.is_cold()
    cli._say_if_cold(Namespace(quiet=False))
    assert capsys.readouterr().err == ""
