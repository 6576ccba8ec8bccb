"""The report's two renderings, HTML and Markdown, from one list of sections.

Text that comes from the data (column names, titles) is escaped the same way in both: in HTML
with entities; in Markdown with the same entities for ``<``, ``>`` and ``&`` (so a renderer
never sees a tag), backslashes before the characters Markdown would read as markup (``|`` in
tables, ``*``, ``_``, ``[``, ``$``, ...), and line breaks folded into spaces (a newline would end
a table row), which is also how HTML displays them.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["Section", "markdown_text", "render_html", "render_markdown"]


@dataclass
class Section:
    """One section of the report: a key (its HTML id), a title and its blocks in order."""

    key: str
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, value: str) -> None:
        self.blocks.append(("text", value))

    def table(self, frame: pd.DataFrame, caption: str = "") -> None:
        self.blocks.append(("table", (frame, caption)))

    def figure(self, fig: plt.Figure, caption: str) -> None:
        """Keep the figure as PNG bytes and close it."""
        buffer = io.BytesIO()
        try:
            fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
        self.blocks.append(("figure", (buffer.getvalue(), caption)))


def _one_line(value: Any) -> Any:
    return " ".join(value.splitlines()) if isinstance(value, str) else value


def _format(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 4 significant digits, but every digit before the point from 10,000 on (a
    BIC of 22,651 is not 2.265e+04: criteria differ by units); missing values blank; line
    breaks in text (a column's name, say) folded into spaces, so both renderings show a table
    cell on one line the same way."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(_number)
        elif not pd.api.types.is_numeric_dtype(out[column]):  # (e.g. True/False with NaN)
            out[column] = out[column].map(lambda v: "" if _blank(v) else _one_line(v))
    return out.rename(columns=_one_line)


def _number(value: float) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"


def _blank(value: Any) -> bool:
    """A missing cell: None or a float NaN (a refused fit's "converged")."""
    return value is None or (isinstance(value, float) and np.isnan(value))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #335;padding-bottom:.2em}h2{margin-top:2em;color:#335}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#eef}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}
nav ol{columns:2}
"""


def _html_block(kind: str, value: Any) -> str:
    if kind == "text":
        return f"<p>{html.escape(value)}</p>"
    if kind == "table":
        return _html_table(*value)
    png, caption = value
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _html_table(frame: pd.DataFrame, caption: str) -> str:
    body = _format(frame).to_html(index=False, escape=True, border=0)
    head, rest = body.split(">", 1)
    return f"{head}><caption>{html.escape(caption)}</caption>{rest}"


def render_html(title: str, sections: list[Section]) -> str:
    """The page: a contents list and every section; figures inline as PNG data URIs."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav><ol>",
        *[f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>' for s in sections],
        "</ol></nav>",
    ]
    for section in sections:
        parts.append(f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>')
        parts += [_html_block(kind, value) for kind, value in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


_MARKUP = re.compile(r"([\\`*\[\]|~$]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_LINE_START = re.compile(r"^(\s*)(\d*)([#>+=.)-])")


def markdown_text(value: Any, *, line_start: bool = True) -> str:
    """``value`` as Markdown text that renders as exactly that text, on one line.

    ``line_start``: the text starts a line, where ``#``, ``>``, ``-``, ``1.`` ... would start
    a heading, a quote or a list (not in a table cell).

    Examples
    --------
    >>> markdown_text("a|b <script>")
    'a\\\\|b &lt;script&gt;'
    >>> markdown_text("# not a heading\\nmeans[0, $x$]")
    '\\\\# not a heading means\\\\[0, \\\\$x\\\\$\\\\]'
    """
    text = html.escape(str(value), quote=False)
    text = " ".join(text.splitlines())
    text = _MARKUP.sub(r"\\\1", text)
    if not line_start:
        return text
    # a block marker at the start (heading, quote, list item): escape its punctuation
    return _LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)}\\{m.group(3)}", text)


def _markdown_table(frame: pd.DataFrame) -> str:
    frame = _format(frame)
    header = "| " + " | ".join(markdown_text(c, line_start=False) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join(markdown_text(v, line_start=False) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def render_markdown(
    title: str, sections: list[Section], figure_folder: str
) -> tuple[str, list[tuple[str, bytes]]]:
    """The Markdown twin, and its figures as ``(file name, PNG bytes)`` to be written in
    ``figure_folder`` (a folder beside the Markdown file, linked relatively)."""
    lines, figures = [f"# {markdown_text(title)}", ""], []
    for section in sections:
        lines += [f"## {markdown_text(section.title)}", ""]
        for kind, value in section.blocks:
            if kind == "text":
                lines += [markdown_text(value), ""]
            elif kind == "table":
                frame, caption = value
                lines += [f"**{markdown_text(caption)}**", "", _markdown_table(frame), ""]
            else:
                png, caption = value
                name = f"figure_{len(figures) + 1:02d}.png"
                figures.append((name, png))
                link = f"{quote(figure_folder)}/{name}"
                lines += [f"![{markdown_text(caption)}]({link})", ""]
    return "\n".join(lines), figures
