"""The report end to end from the command line, its HTML and Markdown, and CLI errors."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bayesgmm.cli import build_parser, load_data, main, parse_components
from bayesgmm.datasets import simulate_mixture
from bayesgmm.report import SECTIONS, _as_frame


class _Page(HTMLParser):
    """Collects section ids, table captions, images and external references."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.captions: list[str] = []
        self.tables: list[list[list[str]]] = []  # per table, its rows of cell texts
        self._in_caption = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)
        self._in_caption = tag == "caption"
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)
            self._in_caption = False
        if self._cell is not None:
            self._cell.append(data)


def rendered_markdown(markdown: str) -> _Page:
    """The Markdown twin as a Markdown renderer shows it (CommonMark with GFM tables), parsed
    like the HTML page: the two must show the same captions and tables, cell by cell."""
    from markdown_it import MarkdownIt

    page = _Page()
    page.feed(MarkdownIt("commonmark").enable("table").render(markdown))
    return page


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    sim = simulate_mixture(
        90,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [6.0, 2.0]],
        covariances=[np.eye(2), [[1.0, 0.4], [0.4, 1.0]]],
        random_state=11,
    )
    frame = pd.DataFrame(sim.X, columns=["length", "width"])
    frame["label"] = "x"  # a non-numeric column the CLI ignores with a notice
    frame.loc[4, "width"] = np.nan  # a missing cell: EM uses the row, the sampler does not
    path = tmp_path_factory.mktemp("data") / "sim.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report_run(csv_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "sim_report.html"
    with pytest.MonkeyPatch.context() as patch:
        # follow-ups off (max_draws = draws): 2 chains of 100 draws then fail the ESS gate
        # whatever the sampler's luck, and the report must carry the warnings (with the
        # follow-ups, 281 more draws per chain met the gates on numpy 2.5 / nutpie 0.16.11)
        patch.setattr("bayesgmm._followup.BUDGET", 1)
        code = main(_report_argv(csv_file, out))
    return code, out


def _report_argv(csv_file: Path, out: Path) -> list[str]:
    return [
        "report",
        str(csv_file),
        "--components",
        "1-2",
        "--draws",
        "100",
        "--tune",
        "150",
        "--chains",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]


def test_report_exit_code_and_files(report_run):
    code, out = report_run
    assert code == 0
    assert out.is_file() and out.with_suffix(".md").is_file()


def test_html_has_every_section_and_decodable_images(report_run):
    _, out = report_run
    page = _Page()
    page.feed(out.read_text(encoding="utf-8"))
    assert page.sections == [key for key, _ in SECTIONS]
    assert not page.external, "the page must not fetch anything"
    assert len(page.images) >= 6
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.verify()
    assert "Feature summary" in page.captions
    assert any(c.startswith("EM estimates and posterior summaries") for c in page.captions)


def test_markdown_has_the_same_tables(report_run):
    _, out = report_run
    page = _Page()
    page.feed(out.read_text(encoding="utf-8"))
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    bold = re.findall(r"^\*\*(.+)\*\*$", markdown, flags=re.MULTILINE)
    assert len(bold) == len(page.captions)
    for _, title in SECTIONS:
        assert f"## {title}" in markdown
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(figures) == len(page.images)
    for relative in figures:
        Image.open(out.parent / relative).verify()
    rendered = rendered_markdown(markdown)
    assert rendered.tables[0][1][0] == "length"  # the data summary names the columns
    assert len(rendered.tables) == len(page.tables)
    for html_rows, md_rows in zip(page.tables, rendered.tables, strict=True):
        assert md_rows == html_rows  # the same header and values, cell by cell


def test_fit_command_prints_em_posterior_and_diagnostics(csv_file, capsys):
    argv = ["fit", str(csv_file), "--components", "2", "--draws", "60", "--tune", "60"]
    code = main([*argv, "--chains", "2", "--dropna", "--quiet", "--seed", "4"])
    out, err = capsys.readouterr()
    assert code == 0
    for heading in ("EM estimate", "EM against the posterior", "Diagnostics"):
        assert heading in out
    assert "weights[0]" in out and "means[1, width]" in out and "ess_bulk" in out
    assert "SamplingWarning" in err  # 120 draws cannot pass the ESS gate: said, not raised


def test_rows_with_nothing_observed_are_not_said_to_be_described():
    """A row with every cell missing is left out of the fit (a warning says so): the data
    section counts it and does not claim the results describe every row."""
    from bayesgmm.report import _data_section

    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [2.0, np.nan, np.nan, 1.0]})
    text = " ".join(value for kind, value in _data_section(frame).blocks if kind == "text")
    assert "every row with an observed cell (1 have none)" in text
    assert "describe those rows" in text and "describe every row" not in text


def test_the_best_by_criterion_line_says_which_fits_it_leaves_out():
    """carData's Davis read "Best by criterion: BIC: K=1" above a table where the collapsed
    K=2 had the lower BIC: the line names the fits the choice leaves out."""
    from bayesgmm.report import _left_out

    table = pd.DataFrame(
        {
            "n_components": [1, 2, 3],
            "covariance_type": ["full"] * 3,
            "status": ["ok", "collapsed", "failed"],
        }
    )
    assert _left_out(table[table["status"] != "ok"]) == (
        ", among the sound fits (left out whatever their criteria, as below: K=2 full)"
    )
    assert _left_out(table[table["status"] == "failed"]) == ""  # a failed fit has no criteria


def test_a_best_bic_at_the_largest_k_swept_asks_for_a_wider_sweep():
    """UCI's vowel and Boston's housing, swept over K = 1..4: BIC's best was K=4, the edge of
    the sweep, and nothing said that a larger K might be better still."""
    from types import SimpleNamespace

    from bayesgmm.report import _at_the_edge

    table = pd.DataFrame({"n_components": [1, 2, 3, 4]})
    text = _at_the_edge(SimpleNamespace(best={"bic": (4, "full")}, table=table))
    assert "BIC's best K, 4, is the largest swept" in text and "--components 1-8" in text
    assert _at_the_edge(SimpleNamespace(best={"bic": (3, "full")}, table=table)) == ""
    one = pd.DataFrame({"n_components": [1]})  # a sweep of K=1 alone: nothing to say
    assert _at_the_edge(SimpleNamespace(best={"bic": (1, "full")}, table=one)) == ""


def test_the_comparison_says_when_components_swap_roles():
    """Old Faithful at K=3 (the demo's chosen model) matched its draws to EM's components 1
    and 2 otherwise than the draw before in 48% of them: its per-component rows describe no
    component, and the comparison section says so; a posterior whose labels hold says nothing."""
    import xarray as xr

    from bayesgmm import EMGaussianMixture
    from bayesgmm.report import _swapped_membership_text, _swapping_text

    from ._fake import idata_around, simulated_data

    X = simulated_data(2, n_samples=60)
    idata = idata_around(EMGaussianMixture(3, random_state=0).fit(X), X, n_draws=200)
    assert _swapping_text(idata) == ""  # (the fake switched labels once: undone, not swapping)
    perm = np.tile(np.arange(3), (2, 200, 1))
    perm[0, ::2] = [0, 2, 1]
    idata.sample_stats["label_permutation"] = xr.DataArray(
        perm, dims=("chain", "draw", "component")
    )
    text = _swapping_text(idata)
    assert "swap roles" in text and "up to 100%" in text and "describes none" in text
    text = _swapped_membership_text(idata)  # (cluster pluton: a tight batch "most uncertain")
    assert "up to 100%" in text and "fit.co_clustering()" in text
    idata.sample_stats["label_permutation"][:] = np.arange(3)
    assert _swapped_membership_text(idata) == ""


def test_report_counts_missing_cells_and_samples_every_row(report_run):
    _, out = report_run
    text = out.with_suffix(".md").read_text(encoding="utf-8")
    # 200 draws cannot pass the ESS gate: the candidates' warnings are in the report
    assert "The sampler warned of K=2: " in text and "ESS" in text.split("warned of K=2")[1]
    assert "90 observations of 2 features" in text
    assert "1 cell(s) are missing (0.6%), in 1 row(s)" in text
    assert "clustering below describe every row" in text and "complete rows" not in text
    # report text is plain (escaped in both renderings): Markdown markup would show literally
    assert "\\*" not in text and "**" not in out.read_text(encoding="utf-8")
    assert re.search(r"\|\s*width\s*\|\s*1\s*\|", text)  # per feature: width misses 1
    assert re.search(r"\|\s*length\s*\|\s*0\s*\|", text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "missing.csv"], "no such file: missing.csv"),
        (["fit", "{words}", "--components", "2"], "no numeric columns"),
        (["fit", "{semicolons}", "--components", "2"], "separated by something other than comma"),
        (["report", "{csv}", "--columns", "length", "height"], r"unknown column\(s\) \['height'\]"),
        (
            ["fit", "{empty}", "--components", "2"],
            r"column\(s\) \['b'\] have no values.*--columns a",
        ),
        (
            ["fit", "{csv}", "--components", "2", "--columns", "length", "label"],
            r"column\(s\) \['label'\] are not numeric: leave them out of --columns",
        ),
        (["fit", "{header}", "--components", "2"], r"header row but no data rows"),
        (["report", "{folder}"], r"is a directory, not a CSV file"),
        (["fit", "{infinite}", "--components", "2"], r"infinite values.*--dropna drops missing"),
        (  # a column of numbers whose missing cells are written '?' is not dropped silently
            ["fit", "{marked}", "--components", "2"],
            r"hold numbers with cells that are not: 'b' \(1 cell\(s\) such as \['\?'\]\).*empty",
        ),
        (  # carData's Freedman with "1,062": valid numbers, not cells to mark missing
            ["fit", "{thousands}", "--components", "2"],
            r"thousands separators: 'b' \(2 cell\(s\) such as \['1,062', '12,345\.5'\]\)\. "
            r"Remove the separators in the CSV \(1062, not 1,062",
        ),
        (  # most cells separated: the column was ignored as text, silently
            ["fit", "{most_thousands}", "--components", "2"],
            r"thousands separators: 'b' \(3 cell\(s\)",
        ),
        (["fit", "{csv}", "--components", "2", "--columns", "length", "length"], "more than once"),
        (["report", "{csv}", "--components", "1-200", "--dropna"], r"K=200 exceeds the 89"),
        (["report", "{csv}", "--components", "5-2"], r"invalid range '5-2'.*2-5"),
        (["report", "{csv}", "--components", "0-3"], r"components must be at least 1"),
        (["report", "{csv}", "--candidates", "-1"], r"--candidates: must be an integer >= 1"),
        (["fit", "{csv}", "--components", "2", "--draws", "0"], r"--draws: must be an integer"),
    ],
)
def test_cli_data_errors_are_one_line(csv_file, tmp_path, capsys, argv, message, monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr("bayesgmm.selection.em_sweep", started)  # every check comes first
    words = tmp_path / "words.csv"
    words.write_text("a,b\nx,y\nz,w\n")
    infinite = tmp_path / "infinite.csv"
    infinite.write_text("a,b\n1,2\ninf,3\n4,1e400\n")
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text("a;b\n1;2\n3;4\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n1,\n2,\n3,\n")
    marked = tmp_path / "marked.csv"
    marked.write_text("a,b\n1,2\n2,?\n3,5\n4,1\n")
    files = {"words": words, "infinite": infinite, "semicolons": semicolons, "empty": empty}
    files["marked"] = marked
    files["thousands"] = tmp_path / "thousands.csv"
    files["thousands"].write_text('a,b\n1,"1,062"\n2,713\n3,"12,345.5"\n4,534\n5,601\n')
    files["most_thousands"] = tmp_path / "most_thousands.csv"
    files["most_thousands"].write_text('a,b\n1,"1,062"\n2,"1,100"\n3,"2,000"\n4,534\n')
    files["header"] = tmp_path / "header.csv"
    files["header"].write_text("a,b\n")
    argv = [a.format(csv=csv_file, folder=tmp_path, **files) for a in argv]
    assert main(argv) in (1, 2)  # 2: argparse's usage errors
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("bayesgmm: error:")
    assert re.search(message, errors[0])


def test_component_lists():
    assert parse_components("1-4") == [1, 2, 3, 4]
    assert parse_components("2") == [2]
    assert parse_components("1,3,5-6") == [1, 3, 5, 6]
    with pytest.raises(Exception, match="invalid component list"):
        parse_components("two")


def test_help_is_complete(capsys):
    parser = build_parser()
    for command, options in {
        "report": [
            "--columns",
            "--components",
            "--covariance-types",
            "--draws",
            "--tune",
            "--chains",
            "--seed",
            "--sampler",
            "--out",
            "--dropna",
            "--candidates",
            "--reg-covar",
        ],
        "fit": [
            "--components",
            "--columns",
            "--draws",
            "--tune",
            "--chains",
            "--seed",
            "--sampler",
            "--dropna",
        ],
    }.items():
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = capsys.readouterr().out
        for option in options:
            assert option in text, f"{command} --help lacks {option}"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None,
    reason="needs headless Chromium: install Debian's package with `apt-get install chromium` "
    "(.ci/run does this before `make test`)",
)
def test_report_renders_in_a_real_browser(report_run, tmp_path):
    _, out = report_run
    shot = tmp_path / "shot.png"
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        out.resolve().as_uri(),
    ]
    subprocess.run(
        command,
        check=True,
        timeout=120,
        capture_output=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] >= 2000
    assert pixels.std() > 20, "the screenshot is blank"
    # figures are rendered: some rows hold many distinct grey levels (anti-aliased plots)
    assert max(len(np.unique(row)) for row in pixels[::20]) > 30


@pytest.mark.parametrize(("sampler", "shown"), [("nutpie", False), ("pymc", True)])
def test_cli_hides_the_blas_warning_only_when_it_does_not_apply(sampler, shown):
    """pip PyTensor's "no BLAS" warning concerns its C backend, which only sampler="pymc" uses."""
    import argparse
    import warnings

    from bayesgmm.cli import _ignore_blas_warning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ignore_blas_warning(argparse.Namespace(sampler=sampler))
        warnings.warn("PyTensor could not link to a BLAS installation.", UserWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert ("PyTensor could not link to a BLAS installation." in messages) == shown
    assert "something else" in messages


def test_pair_plot_features_keep_the_grid_readable():
    from bayesgmm.report import _pair_features

    assert _pair_features([1, 0], 2) == [0, 1]
    ranked = [7, 3, 12, 0, 1, 2, 4, 5, 6, 8, 9, 10, 11]
    assert _pair_features(ranked, 2) == [0, 3, 7, 12]  # 8 means, in the data's order
    assert _pair_features(ranked, 3) == [3, 7, 12]  # 9 means
    assert _pair_features(ranked, 6) == [3, 7]  # never fewer than two features


def test_separating_features_rank_by_between_over_within_variance():
    """Components apart along features 2 and 0 (most along 2), not along 1 and 3."""
    import xarray as xr

    from bayesgmm.report import _separating_features

    means = np.array([[0.0, 5.0, 0.0, 1.0], [3.0, 5.0, 10.0, 1.0]])
    covariances = np.stack([np.diag([1.0, 1.0, 4.0, 1.0])] * 2)
    em = xr.Dataset(
        {
            "weights": ("component", [0.5, 0.5]),
            "means": (("component", "feature"), means),
            "covariances": (("component", "feature", "feature_bis"), covariances),
        }
    )
    # Fisher ratios: 2.25, 0, 6.25, 0 -> 2, 0, then the ties in the data's order
    assert _separating_features(em) == [2, 0, 1, 3]


def test_forest_figure_keeps_its_layout_with_long_feature_names():
    """Feature names of 40 characters and three components: every panel keeps a plot area
    (matplotlib warns "constrained_layout not applied" when one collapses)."""
    import matplotlib.pyplot as plt

    from bayesgmm import BayesianGMM, simulate_mixture
    from bayesgmm.report import _forest_figure

    sim = simulate_mixture(
        150,
        weights=[0.4, 0.3, 0.3],
        means=[[0.0, 0.0, 0.0], [5.0, 0.0, 5.0], [0.0, 5.0, 5.0]],
        covariances=[np.eye(3)] * 3,
        random_state=2,
    )
    names = [f"a_rather_long_measurement_name_number_{i}" for i in range(3)]
    X = pd.DataFrame(sim.X, columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BayesianGMM(3, random_seed=0, draws=30, tune=30, chains=1, progressbar=False)
        fit.fit(X)
    fig = _forest_figure(fit.idata_, 0.94, [0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format="png", dpi=40)
    plotted = [ax for ax in fig.axes if ax.get_yticklabels()]
    assert len(plotted) == 2 + 2 * 3  # weights, correlations, means and stds per feature
    assert all(ax.get_position().width > 0.05 for ax in plotted)
    assert {ax.get_title() for ax in plotted} >= set(names)
    plt.close(fig)


def test_a_row_identifier_column_is_noted_and_kept(tmp_path, capsys):
    """HSAUR3::Forbes2000's rank (1..2000, one per row) was clustered as a feature and drove
    the figures, with no word: a column of distinct consecutive integers is named, with the
    --columns that leaves it out, and still modelled (the user may mean it)."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "rank": rng.permutation(30),  # 0..29 in any order
            "sales": np.round(rng.lognormal(size=30), 2),
            "staff count": rng.poisson(20, size=30),
        }
    )
    frame.loc[4, "sales"] = np.nan
    data = tmp_path / "ranked.csv"
    frame.to_csv(data, index=False)
    loaded = load_data(str(data), None, dropna=False)
    err = capsys.readouterr().err
    assert "column(s) 'rank' (0 to 29) look like row identifiers" in err
    assert "leave them out with --columns sales 'staff count'" in err
    assert list(loaded.columns) == ["rank", "sales", "staff count"]
    load_data(str(data), ["rank", "sales"], dropna=True)  # chosen by name: not judged
    assert "row identifiers" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "flagged"),
    [
        (np.arange(1, 2001), True),  # Forbes2000's rank
        (np.random.default_rng(0).permutation(50) + 1001.0, True),  # ids from 1001, shuffled
        (np.r_[np.arange(1, 20), np.nan], True),  # a missing id
        (np.random.default_rng(1).poisson(30, size=200), False),  # counts: ties
        (np.random.default_rng(2).choice(1000, size=50, replace=False), False),  # gaps
        (10 * np.arange(40), False),  # a grid by design (depths every 10 m)
        (np.arange(40) + 0.5, False),  # not integers
        (np.arange(1, 9), False),  # too few rows to tell
        (np.r_[np.arange(1, 20), 7], False),  # one value twice
    ],
    ids=["ranks", "shuffled_offset", "missing", "counts", "gaps", "grid", "halves", "few", "tie"],
)
def test_identifier_columns_are_runs_of_distinct_consecutive_integers(values, flagged):
    from bayesgmm._validation import identifier_columns

    assert identifier_columns(pd.DataFrame({"c": values})) == (["c"] if flagged else [])


def test_empty_cells_are_kept_unless_dropna(tmp_path, capsys):
    data = tmp_path / "gaps.csv"
    data.write_text("a,b\n1,2\n,3\n4,\n5,6\n")
    frame = load_data(str(data), None, dropna=False)
    assert frame.shape == (4, 2) and int(frame.isna().sum().sum()) == 2
    assert "2 missing cell(s) in 2 row(s), column(s) ['a', 'b']" in capsys.readouterr().err
    assert load_data(str(data), None, dropna=True).shape == (2, 2)
    # rows keep the file's data row numbers, from 1 as the command counts them, after
    # --dropna too (cluster's plantTraits: the report's "observation 83" was data row 124)
    assert frame.index.tolist() == [1, 2, 3, 4] and frame.index.name == "data row"
    assert load_data(str(data), None, dropna=True).index.tolist() == [1, 4]
    assert _as_frame(load_data(str(data), None, dropna=True), None).index.tolist() == [1, 4]


def test_the_data_section_says_where_the_data_came_from_and_what_dropna_left_out(tmp_path):
    """mlbench Ozone with --dropna: 163 of 366 rows left out, and the report said only
    "203 observations"."""
    from bayesgmm.cli import source_text
    from bayesgmm.report import _data_section

    data = tmp_path / "gaps.csv"
    data.write_text("a,b\n1,2\n,3\n4,\n5,6\n")
    kept = load_data(str(data), None, dropna=True)
    text = source_text(str(data), kept)
    assert text == (
        f"Read from {data}; 2 of its 4 rows (50%) were left out for missing values in "
        "column(s) ['a', 'b'] (--dropna): the results describe the rest."
    )
    assert source_text(str(data), load_data(str(data), None, dropna=False)) == f"Read from {data}."
    assert source_text(None, load_data(None, None, dropna=False)).startswith("The embedded Old")
    texts = [v for kind, v in _data_section(_as_frame(kept, None), text).blocks if kind == "text"]
    assert texts[:2] == [text, "2 observations of 2 features."]


def _two_groups(shift: float, seed: int) -> pd.DataFrame:
    """40 rows of two unit-covariance groups in columns a and b, ``shift`` apart along a."""
    sim = simulate_mixture(
        40,
        weights=[0.5, 0.5],
        means=[[0.0, 0.0], [shift, 1.0]],
        covariances=[np.eye(2)] * 2,
        random_state=seed,
    )
    return pd.DataFrame(sim.X, columns=["a", "b"])


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_clustering_table_rows_are_the_observations_they_name():
    """A row with every cell empty is left out of the fit; the table of uncertain rows still
    shows each observation's own values and membership (they were shifted by one row)."""
    from bayesgmm import BayesianGMM
    from bayesgmm.report import _clustering_section

    frame = _two_groups(3.0, seed=2)
    frame.loc[3] = np.nan
    with pytest.warns(UserWarning, match="1 row\\(s\\) of X have every feature missing"):
        fit = BayesianGMM(2, draws=20, tune=20, chains=1, random_seed=0, progressbar=False).fit(
            frame
        )
    table, _ = _clustering_section(fit, frame, 0.94).blocks[-1][1]
    entropy = fit.membership(frame)["entropy"].values
    for _, row in table.iterrows():
        i = int(row["observation"])
        assert i != 3
        np.testing.assert_array_equal(row[["a", "b"]].to_numpy(float), frame.loc[i].to_numpy())
        assert row["entropy"] == pytest.approx(entropy[i], rel=1e-12)


def test_one_component_has_no_clustering_table():
    """mtcars at K=1: the report listed "the ten most uncertain observations", all with
    entropy 0 and probability 1; it says there is no clustering instead."""
    from types import SimpleNamespace

    from bayesgmm.report import _clustering_section

    section = _clustering_section(SimpleNamespace(n_components=1), pd.DataFrame(), 0.94)
    assert section.blocks == [
        ("text", "One component: every row belongs to it, with certainty; no clustering.")
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_uncertain_rows_of_a_report_with_missing_cells_are_their_own(tmp_path):
    """Every row with an observed cell is sampled, so the table of uncertain rows must read
    the data with its incomplete rows: each shown row's entropy is that observation's own.
    (The report read the complete rows only: 42 rows of R's airquality miss a cell, and the
    table's positions ran past them, an IndexError; with fewer, shifted rows' entropies.)"""
    from bayesgmm import report

    frame = _two_groups(2.5, seed=5)
    frame.loc[[0, 2, 5, 9, 11, 17], "b"] = np.nan  # 6 of 40 rows incomplete
    result = report(
        frame,
        out=tmp_path / "r.html",
        n_components=[2],
        draws=40,
        tune=40,
        chains=1,
        random_seed=1,
        progress=False,
    )
    tables = rendered_markdown(result.markdown_path.read_text(encoding="utf-8")).tables
    (table,) = [t for t in tables if "entropy" in t[0]]
    header, rows = table[0], table[1:]
    entropy = result.chosen.membership(frame)["entropy"].values
    assert len(rows) == 10
    for row in rows:
        i = int(row[header.index("observation")])
        assert float(row[header.index("entropy")]) == pytest.approx(entropy[i], abs=1e-4)


def test_cli_says_each_warning_when_it_arises_and_once(capsys):
    """The command held every warning until the run ended (a 2-minute run said nothing of
    its too-many-parameters warning before sampling; one stopped by a signal never said it),
    and said a repeated one twice."""
    import argparse
    import warnings

    from bayesgmm import SamplingWarning
    from bayesgmm.cli import _warnings_as_notes

    said = []
    with _warnings_as_notes(argparse.Namespace(sampler="nutpie")):
        for text in ("131 parameters for 38 rows", "131 parameters for 38 rows", "another"):
            # (one line: bayesgmm's warnings point at the command's one call into it)
            warnings.warn(text, SamplingWarning, stacklevel=1)
            said.append(capsys.readouterr().err)  # before the block (the sampling) ends
    assert said == [
        "bayesgmm: SamplingWarning: 131 parameters for 38 rows\n",
        "",
        "bayesgmm: SamplingWarning: another\n",
    ]


def test_without_a_converged_posterior_nor_the_bic_choice_the_best_sampled_by_bic_is_shown():
    """mtcars, diagonal covariances: BIC chose K=1 (the only sound fit), K=1 could not be
    sampled, and the report showed "K=4: fallback: the first sampled candidate", a fit whose
    EM had collapsed every component. The sampled candidate that ranks best by BIC, sound EM
    fits first, is shown, and the reason says why the BIC choice is not."""
    from types import SimpleNamespace

    from bayesgmm.report import _choose
    from bayesgmm.selection import Selection

    table = pd.DataFrame(
        {
            "n_components": [1, 2, 3, 4, 2],
            "covariance_type": ["diag"] * 4 + ["spherical"],
            "model_name": ["VVI"] * 4 + ["VII"],
            "bic": [100.0, 90.0, 105.0, 80.0, 10.0],  # BIC's choice: K=1, the best sound fit
            "status": ["ok", "collapsed", "ok", "collapsed", "ok"],
        }
    )
    diag = SimpleNamespace(covariance_type="diag")  # the sampled model: its rows rank K
    selection = Selection(
        em=SimpleNamespace(table=table),
        fits={"K=4": diag, "K=2": diag, "K=3": diag},
        chosen={"bic": (1, "diag"), "loo": None},
        failed={"K=1": "the posterior density there is flat in some direction"},
    )
    label, reason = _choose(selection)
    assert label == "K=3"  # sound, though the collapsed K=4 and K=2 have lower BICs
    assert "the BIC choice, K=1, has no posterior (the posterior density there is flat" in reason
    selection.fits = {"K=4": diag, "K=2": diag}  # only collapsed ones: the lower BIC
    assert _choose(selection)[0] == "K=4"


def _loo_selection(rows: dict, n_rows: int = 50):
    """A Selection whose LOO table holds ``rows`` (label -> column values) and whose fits
    are stand-ins with ``n_components``, full covariances of two features and a pointwise
    log-likelihood of ``n_rows`` rows."""
    from types import SimpleNamespace

    import xarray as xr

    from bayesgmm.selection import Selection

    obs = xr.DataArray(np.zeros((2, 5, n_rows)), dims=("chain", "draw", "obs_id"))
    fits = {
        label: SimpleNamespace(
            n_components=int(label[2:]),
            covariance_type="full",
            idata_=SimpleNamespace(
                log_likelihood={"obs": obs}, posterior=SimpleNamespace(sizes={"feature": 2})
            ),
        )
        for label in rows
    }
    loo = pd.DataFrame.from_dict(rows, orient="index")
    return Selection(em=None, loo=loo, fits=fits)


def test_a_winner_within_two_standard_errors_of_a_simpler_candidate_is_said_to_be_so():
    """R's swiss: K=3 won LOO by 0.56 (standard error 1.73) over K=2; USArrests: K=2 over
    K=1 by 4.9 (5.95). The chosen-model section says that LOO does not tell them apart and
    that the simpler one predicts about as well; a clear lead, a larger rival or an
    unconverged one says nothing."""
    from bayesgmm.report import _close_text

    base = {"converged": True, "winner": False, "pareto_k_above_0.7": 0}
    rows = {
        "K=3": {**base, "elpd_diff": 0.0, "dse": 0.0, "winner": True},
        "K=2": {**base, "elpd_diff": 0.56, "dse": 1.73},
        "K=1": {**base, "elpd_diff": 30.0, "dse": 6.0},
        "K=4": {**base, "elpd_diff": 0.2, "dse": 1.0},  # more components: not "simpler"
    }
    text = _close_text(_loo_selection(rows))
    assert text == (
        "K=3 leads K=2 by 0.6 (standard error 1.7): less than two standard errors, so LOO "
        "does not tell them apart, and the simpler K=2 predicts about as well."
    )
    rows["K=2"]["elpd_diff"] = -0.56  # ArviZ 1's sign: the same lead, the same words
    assert _close_text(_loo_selection(rows)) == text
    for lead in (4.0, -4.0):  # more than two standard errors: a real lead
        rows["K=2"]["elpd_diff"] = lead
        assert _close_text(_loo_selection(rows)) == ""
    rows["K=2"].update(elpd_diff=-0.5, converged=False)  # not converged: no rival
    assert _close_text(_loo_selection(rows)) == ""


def test_rows_with_high_pareto_k_are_named_with_what_they_mean():
    """Boston's housing, K=4: 23 rows above 0.7 in the LOO table, and nothing said so."""
    from bayesgmm.report import _pareto_text

    base = {"converged": True, "winner": False, "elpd_diff": 0.0, "dse": 0.0}
    rows = {"K=4": {**base, "pareto_k_above_0.7": 23}, "K=3": {**base, "pareto_k_above_0.7": 0}}
    text = _pareto_text(_loo_selection(rows, n_rows=506))
    assert text.startswith("Rows with Pareto k above 0.7: K=4 23 of 506. PSIS-LOO is unreliable")
    assert "K=3" not in text
    rows["K=4"]["pareto_k_above_0.7"] = 0
    assert _pareto_text(_loo_selection(rows)) == ""


def test_a_lone_sampled_candidate_is_explained():
    """R's swiss (47 x 6) swept with full covariances: every K > 1 failed in EM (more free
    parameters than rows), so K=1 alone was sampled and the LOO section showed a one-row
    table without a word on why."""
    from bayesgmm.report import _loo_section

    base = {"converged": True, "winner": True, "elpd_diff": 0.0, "dse": 0.0}
    rows = {"K=1": {**base, "pareto_k_above_0.7": 0}}
    selection = _loo_selection(rows)
    selection.loo = selection.loo.assign(
        rank=0, elpd_loo=-1.0, p_loo=1.0, se=1.0, weight=1.0, max_r_hat=1.0,
        min_ess_bulk=900.0, divergences=0, failed_checks="",
    )  # fmt: skip
    texts = [v for kind, v in _loo_section(selection).blocks if kind == "text"]
    assert any(t.startswith("Only K=1 was sampled, so LOO compares nothing") for t in texts)
    selection.failed = {"K=2": "The VVV model with K=2 has 55 free parameters for 47 rows"}
    texts = [v for kind, v in _loo_section(selection).blocks if kind == "text"]
    assert not any(t.startswith("Only K=1") for t in texts)  # the failure says why itself


def test_tables_show_criteria_to_the_unit_and_missing_cells_blank():
    """Boston's report showed a BIC of 22,651 as 2.265e+04 (two models 3 apart looked equal)
    and "nan" in the converged column of every fit EM refused."""
    from bayesgmm._render import _format

    frame = pd.DataFrame(
        {
            "bic": [22651.27, 2264.8, 0.000123, np.nan],
            "converged": [True, False, np.nan, None],
            "status": ["ok", "ok", "failed", "failed"],
        }
    )
    out = _format(frame)
    assert out["bic"].tolist() == ["22651", "2265", "0.000123", ""]
    assert out["converged"].tolist() == [True, False, "", ""]


def test_a_warning_reads_as_one_paragraph_of_sentences():
    """A sampler warning is a head and one indented line per failed check; in the report's
    paragraph each check ends a sentence (robustbase's Davis: "... slow try   ess_bulk = ...")."""
    from bayesgmm.report import _paragraph

    message = "Failed; care.\n  divergences = 3 (gate 0): raise it\n  r_hat = 1.02: longer"
    assert _paragraph(message) == (
        "Failed; care. divergences = 3 (gate 0): raise it. r_hat = 1.02: longer."
    )


def test_a_candidate_on_a_point_mass_is_named_and_not_called_unconverged():
    """mlbench's Glass, K=2: a component on the 138 rows with Ba = 0 won LOO by 1,201 nats,
    reported as converged and best. Such a candidate is named with where it sits, the winner
    is said to be the best without one, and when every converged candidate has one the
    fallback does not claim that none converged."""
    from types import SimpleNamespace

    from bayesgmm.report import _choose, _point_masses

    said = "component 0 sits on 138 of its 138 rows, which share Ba = 0"
    rows = {
        "K=2": {"converged": True, "winner": False, "point_mass": said},
        "K=1": {"converged": True, "winner": True, "point_mass": ""},
    }
    selection = _loo_selection(rows)
    assert _point_masses(selection) == {"K=2": said}
    selection.chosen = {"bic": (2, "full"), "loo": 1}
    assert _choose(selection) == (
        "K=1",
        "the best LOO (expected log predictive density) among converged posteriors without a "
        "point mass.",
    )
    rows["K=1"].update(converged=False, winner=False)
    selection = _loo_selection(rows)
    columns = ["n_components", "model_name", "status", "bic"]
    selection.em = SimpleNamespace(table=pd.DataFrame(columns=columns))
    selection.chosen = {"bic": (2, "full"), "loo": None}
    label, reason = _choose(selection)
    assert label == "K=2"
    assert reason.startswith("every converged candidate posterior has a component on a point")


def test_a_chosen_posterior_started_from_a_collapsed_em_fit_says_so():
    """MASS biopsy: every K >= 2 EM fit collapsed, and K=5 was chosen without a word of it."""
    from types import SimpleNamespace

    from bayesgmm.report import _collapsed_start_text

    fit = SimpleNamespace(em_=SimpleNamespace(collapsed_components_=np.array([1, 3])))
    assert _collapsed_start_text(fit).startswith(
        "Its chains started from an EM fit that collapsed component(s) [1, 3]"
    )
    fit.em_.collapsed_components_ = np.array([], dtype=int)
    assert _collapsed_start_text(fit) == ""


def test_certain_memberships_and_independence_draws_are_said_in_words():
    """robustbase hbk: the ten "most uncertain" rows had entropy 1e-24; starsCYG's draws came
    from independence Metropolis-Hastings and only the reproducibility table said so."""
    import json

    import xarray as xr

    from bayesgmm.report import _certain_text, _own_sampler_text

    certain = xr.Dataset({"entropy": ("obs_id", [1e-24, 3e-9])})
    assert _certain_text(certain).startswith("Every observation belongs to its component")
    assert _certain_text(certain.assign(entropy=("obs_id", [0.2, 3e-9]))) == ""
    record = {"kept": True, "reason": "divergences after NUTS; independence MH: gates met"}
    attrs = {"draws_sampler": "independence_mh", "independence_mh": json.dumps(record)}
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(attrs=attrs)})
    assert _own_sampler_text(tree) == (
        "These draws come from independence Metropolis-Hastings, not NUTS: divergences after "
        "NUTS; independence MH: gates met. They have no trajectories, so no divergences or "
        "E-BFMI to check."
    )
    assert _own_sampler_text(xr.DataTree.from_dict({"posterior": xr.Dataset()})) == ""


def test_a_p_loo_above_the_free_parameters_is_named():
    """mlbench's Ionosphere, K=1: p_loo 1,130 for 560 parameters and no word of it (the loo
    glossary: p_loo above the parameters marks a badly misspecified model)."""
    from types import SimpleNamespace

    from bayesgmm.report import _p_loo_text

    clean = {"pareto_k_above_0.7": 0}
    rows = {"K=1": {"p_loo": 12.0, **clean}, "K=2": {"p_loo": 18.0, **clean}}
    selection = _loo_selection(rows, n_rows=60)  # full covariances of 3 features:
    for fit in selection.fits.values():  # K=1 9 parameters, K=2 19
        fit.idata_.posterior = SimpleNamespace(sizes={"feature": 3})
    text = _p_loo_text(selection)
    assert text.startswith(
        "p_loo above the free parameters: K=1 12 for 9. The loo package's glossary reads this "
        "as a sign that the model is likely misspecified"
    )
    assert "no reliable guide" not in text  # (the report then chooses by that elpd)
    selection.loo.loc["K=1", "p_loo"] = 8.0
    assert _p_loo_text(selection) == ""


def test_a_lone_candidate_is_not_called_the_best_and_the_model_to_compare_k_is_named():
    """R's votes.repub, MASS UScrime, carData Soils: full covariances cannot be fitted at
    K > 1 on their rows, so K=1 alone was sampled and the report's verdict read "K=1: the
    best LOO ... among converged posteriors" while every model's BIC preferred K=2."""
    from bayesgmm.report import _choose

    rows = {"K=1": {"converged": True, "winner": True}}
    selection = _loo_selection(rows)
    selection.chosen = {"loo": 1, "bic": (2, "EVE")}
    selection.em = SimpleNamespace(
        table=pd.DataFrame(
            {
                "n_components": [1, 2, 2, 3, 2, 3],
                "model_name": ["VVV", "EVE", "EEE", "VVI", "VVV", "VVV"],
                "status": ["ok", "ok", "ok", "ok", "failed", "ok"],
                "bic": [1102.0, 1055.0, 1088.0, 1072.0, np.nan, 1000.0],
            }
        )
    )
    label, reason = _choose(selection)
    assert label == "K=1"
    assert reason.startswith("the only candidate sampled, so no comparison chose it.")
    assert "EM's BIC prefers K=2 (EVE)" in reason
    assert "VVI has the best BIC among them, at K=3" in reason  # (not VVV: sampled already)
    assert "bayes_covariance_type='VVI'" in reason
    selection.chosen = {"loo": 1, "bic": (1, "VVV")}
    assert _choose(selection)[1] == "the only candidate sampled, so no comparison chose it."


def test_without_a_converged_posterior_the_one_closest_to_converging_is_shown():
    """HSAUR3 household shares (three parts): K=2 failed only one divergence, K=3 seven
    checks (R-hat 1.13, bulk ESS 21, ...), and the fallback by BIC (2.3 apart) showed K=3
    with its label-mixed per-component tables. The candidate that failed strictly fewer
    convergence checks is shown (the labels check, not one of them, aside); on a tie, BIC's."""
    from bayesgmm.report import _choose

    rows = {
        "K=2": {"converged": False, "winner": False, "failed_checks": "divergences"},
        "K=3": {
            "converged": False,
            "winner": False,
            "failed_checks": "divergences, r_hat, ess_bulk, ess_tail, bfmi, left_mode, labels",
        },
    }
    selection = _loo_selection(rows)
    selection.chosen = {"bic": (3, "full"), "loo": None}
    label, reason = _choose(selection)
    assert label == "K=2"
    assert reason == (
        "no candidate posterior converged; K=2 came closest (it failed fewer checks than any "
        "other: divergences), so it is shown (treat with care)."
    )
    rows["K=2"]["failed_checks"] = "divergences, labels"  # (labels: not a convergence check)
    selection = _loo_selection(rows)
    selection.chosen = {"bic": (3, "full"), "loo": None}
    assert "than any other: divergences), so" in _choose(selection)[1]
    rows["K=3"]["failed_checks"] = "r_hat, labels"  # one each: a tie, so BIC's choice
    selection = _loo_selection(rows)
    selection.chosen = {"bic": (3, "full"), "loo": None}
    assert _choose(selection) == (
        "K=3",
        "no candidate posterior converged, so the BIC choice is shown (treat with care).",
    )


def test_the_commands_report_names_its_options_for_the_python_parameters():
    """The command's report advised "Use covariance_type='diag'", "raise target_accept",
    "increase reg_covar": parameters of the Python API the command spells otherwise (R's
    votes.repub, MASS UScrime, carData Soils)."""
    from bayesgmm._render import Section
    from bayesgmm.cli import command_terms
    from bayesgmm.report import _in_terms

    section = Section("x", "X")
    section.text("Use covariance_type='diag', or raise target_accept (e.g. 0.95).")
    advice = pd.DataFrame({"check": ["r_hat"], "value": [1.2], "advice": ["increase reg_covar"]})
    section.table(advice, "Sampled with bayes_covariance_type='EEE'")
    out = _in_terms(section, command_terms)
    assert out.blocks[0][1] == (
        "Use --bayes-covariance-type diag, or raise --target-accept (e.g. 0.95)."
    )
    frame, caption = out.blocks[1][1]
    assert frame["advice"].tolist() == ["increase --reg-covar"] and frame["value"].tolist() == [1.2]
    assert caption == "Sampled with --bayes-covariance-type EEE"
    assert _in_terms(section, None) is section
    assert section.blocks[0][1].startswith("Use covariance_type='diag'")  # (the API's own)


def test_correlations_pulled_towards_zero_by_the_lkj_prior_are_explained():
    """MASS UScrime (47 x 16), K=1: EM's correlation of Po1 and Po2 (0.994) and 40 parameters
    outside their HDIs with no word why: the LKJ marginal narrows as D grows."""
    from types import SimpleNamespace

    from bayesgmm.report import _correlation_prior_text

    table = pd.DataFrame(
        {
            "parameter": ["correlations[0, b, a]", "correlations[0, c, a]", "stds[0, a]"],
            "em": [0.9936, 0.2, 29.4],
            "mean": [0.976, 0.1, 23.9],
            "em_in_hdi": [False, False, False],
        }
    )
    import json

    import xarray as xr

    posterior = xr.Dataset(
        coords={"feature": np.arange(16)}, attrs={"priors": json.dumps({"lkj_eta": 2.0})}
    )
    obs = xr.Dataset({"obs": (("chain", "draw", "obs_id"), np.zeros((2, 5, 47)))})
    tree = xr.DataTree.from_dict({"posterior": posterior, "log_likelihood": obs})
    fit = SimpleNamespace(idata_=tree)
    text = _correlation_prior_text(table, fit)
    assert text.startswith("EM's strongest correlations lie outside their HDIs, pulled towards")
    assert "(1, e.g. correlations[0, b, a]: EM 0.994, posterior mean 0.976)" in text
    assert "Beta(9, 9)" in text and "deviation of 0.23" in text and "still gives 0.24" in text
    table.loc[0, "em_in_hdi"] = True
    assert _correlation_prior_text(table, fit) == ""


def test_data_warnings_are_in_the_data_section_and_given_once():
    """HSAUR3 household shares (closed to 100, rounded): the compositional warning reached
    the terminal only, and twice (the report's data check and the sweep's)."""
    from bayesgmm.report import _as_frame, _checked_frame, _data_section, _said_once

    rng = np.random.default_rng(0)
    parts = rng.dirichlet([4.0, 3.0, 2.0], size=60) * 100
    frame = pd.DataFrame(np.round(parts, 1), columns=["a", "b", "c"])
    with pytest.warns(UserWarning, match="compositional") as caught:
        checked, said = _checked_frame(frame, None)
    assert len(said) == 1 and "compositional" in said[0]
    assert [str(w.message) for w in caught if "compositional" in str(w.message)] == said
    texts = [v for kind, v in _data_section(checked, None, said).blocks if kind == "text"]
    assert f"Data check: {said[0]}" in texts
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        with _said_once(said):
            _as_frame(frame, None)
    assert not [w for w in again if "compositional" in str(w.message)]
    with warnings.catch_warnings(record=True) as filtered:  # the user's filters still apply
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="compositional")
        assert _checked_frame(frame, None)[1] == said
    assert not [w for w in filtered if "compositional" in str(w.message)]


def test_the_commands_report_keeps_the_data_and_settings_in_their_own_words(report_run):
    """The command's terms apply to the advice, not to the data's words (a file named
    reg_covar.csv read "--reg-covar.csv") nor to the reproducibility tables, which record the
    Python settings."""
    _, out = report_run
    text = out.with_suffix(".md").read_text(encoding="utf-8")
    data = text.split("## Data")[1].split("\n## ")[0]
    assert "Read from " in data
    settings = text.split("**Report settings**")[1].split("**Sampler**")[0]
    assert "| n_components |" in settings and "--components" not in settings
    assert "target_accept" in settings and "--target-accept" not in settings


def test_the_report_says_when_the_own_hmc_had_no_darts():
    import json

    import xarray as xr

    from bayesgmm.report import _own_sampler_text

    record = {"kept": True, "switch_rows": [], "reason": "1 divergences after NUTS"}
    tree = lambda r: xr.DataTree.from_dict(  # noqa: E731
        {
            "posterior": xr.Dataset(
                attrs={"draws_sampler": "darting_hmc", "darting_hmc": json.dumps(r)}
            )
        }
    )
    assert _own_sampler_text(tree(record)).startswith(
        "These draws come from bayesgmm's own Hamiltonian Monte Carlo (no row switched rarely: "
        "no darts), not NUTS: 1 divergences after NUTS."
    )
    assert _own_sampler_text(tree({**record, "switch_rows": [112]})).startswith(
        "These draws come from Hamiltonian Monte Carlo with darting moves"
    )


def test_the_reproducibility_table_lists_a_darting_run_before_the_follow_ups():
    """A darting run before NUTS's follow-ups that was not kept is still a run that happened."""
    import json
    from types import SimpleNamespace

    import xarray as xr

    from bayesgmm._render import render_markdown
    from bayesgmm.report import _reproducibility_section

    record = {"kept": False, "reason": "R-hat 1.040, ESS 54 after NUTS; darting HMC: R-hat 1.4"}
    attrs = {
        "darting_hmc_before_follow_ups": json.dumps(record),
        "follow_up": json.dumps(["R-hat 1.040, ESS 54: 3000 more draws per chain"]),
        "priors": json.dumps({"alpha": 1.0}),
        "versions": json.dumps({"bayesgmm": "0"}),
    }
    fit = SimpleNamespace(idata_=xr.DataTree.from_dict({"posterior": xr.Dataset(attrs=attrs)}))
    text, _ = render_markdown("t", [_reproducibility_section(fit, {})], "figures")
    assert "darting_hmc_before_follow_ups" in text and "darting HMC: R-hat 1.4" in text
    assert text.index("darting_hmc_before_follow_ups") < text.index("| follow_up")
