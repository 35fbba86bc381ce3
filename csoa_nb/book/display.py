"""Tables as the book shows them: a caption, units in the headers, rounded numbers, no 0..n index.

`show_table(frame, caption, name=..., units=..., precision=...)` returns a `BookTable`; end a
notebook cell with it (or pass it to `IPython.display.display`). It carries two renderings:

* ``text/html`` for a live notebook (JupyterLab): a pandas Styler with the caption;
* ``text/markdown`` for the book: a MyST ``{table}`` directive with the caption and the label
  ``name``, which Sphinx numbers ("Table 2.1") and ``{numref}`` refers to. The book's
  ``_config.yml`` renders Markdown outputs as MyST and prefers them to HTML
  (``nb_render_markdown_format: myst``, ``nb_mime_priority_overrides``).

Numbers are rounded to ``precision`` decimals (integers stay integers), missing values print
as "–" (as in `csoa_nb.report.tables`), strings (e.g. "37.7 ± 1.2" from `tables.ours_table`) are
kept.
A default ``RangeIndex`` is dropped; any other index becomes the first column(s).

`display_path(path)` prints a path without the building machine's folders (relative to the
project, or under ``~``), and `printable(text)` does the same to every path in a message (an
error's, say) and wraps it to `LINE_WIDTH` characters, for the chapters' printed output;
`printable_command(command)` breaks a long shell command before its options, with backslash
continuations, so that it still runs when pasted.
"""

from __future__ import annotations

import html
import math
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from csoa_nb.base.paths import display_path, project_root
from csoa_nb.report.stats import MINUS

__all__ = [
    "LINE_WIDTH",
    "MISSING",
    "BookTable",
    "display_path",
    "format_frame",
    "printable",
    "printable_command",
    "show_table",
]
#: Longest line of printed output (tests/test_built_html.py checks the book against it).
LINE_WIDTH = 88

#: How a missing value prints (the paper's dash, as in `csoa_nb.report.tables.MISSING`).
MISSING = "–"
#: A cell that reads as a number (alignment): "12.3", "-4", "37.7 ± 1.2", "45%", "1,024", "–".
_NUMERIC_TEXT = re.compile(
    r"^\s*(?:[-+−]?[\d,]*\.?\d+(?:e[-+]?\d+)?%?(?:\s*±\s*[\d,]*\.?\d+%?)?|–)\s*$"
)
#: Labels Sphinx accepts for ``:name:`` (and ``{numref}``) without surprises.
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (
        isinstance(value, (float, np.floating)) and math.isnan(value)
    )


def _format_cell(value: Any, digits: int | None) -> str:
    if _is_missing(value):
        return MISSING
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return f"{int(value):d}"
    if _is_number(value):
        text = f"{float(value):.{digits}f}" if digits is not None else f"{float(value):g}"
        return MINUS + text[1:] if text.startswith("-") else text  # a true minus sign
    return str(value)


def _per_column(option: Any, columns: list[str], what: str, default: Any) -> dict[str, Any]:
    """A scalar option for every column, or a mapping (checked against the columns) whose
    missing columns get ``default``."""
    if not isinstance(option, Mapping):
        return {c: option for c in columns}
    unknown = [c for c in option if c not in columns]
    if unknown:
        raise ValueError(
            f"{what} names columns {unknown} the table lacks; it has {columns}: "
            f"key {what} by the frame's column names"
        )
    return {c: option.get(c, default) for c in columns}


def _numeric(values: list[Any]) -> bool:
    """Whether a column reads as numbers: numbers (or missing), or strings that look so."""
    if not values:
        return False
    if all(_is_number(v) or _is_missing(v) for v in values):
        return True
    return all(isinstance(v, str) and _NUMERIC_TEXT.match(v) for v in values)


def format_frame(
    frame: pd.DataFrame,
    units: str | Mapping[str, str] | None = None,
    precision: int | None | Mapping[str, int | None] = 1,
    index: bool | None = None,
) -> tuple[pd.DataFrame, list[bool]]:
    """The table as display strings, and which columns are numeric (right-aligned).

    Args:
        frame: the data. Column names must be strings (a column MultiIndex is joined with
            " / ").
        units: a unit for every numeric column (e.g. ``"%"``) or a mapping column -> unit;
            the header becomes ``"name (unit)"``. Units of non-numeric columns are allowed
            (e.g. strings "37.7 ± 1.2" in percent).
        precision: decimals of the float values (an int, None for Python's shortest ``g``
            format, or a mapping column -> decimals; columns it omits get 1). Integers stay
            integers.
        index: keep the index as leading column(s) (True), drop it (False), or drop it only
            when it is the default ``RangeIndex`` 0..n-1 (None). The outer levels of a row
            MultiIndex show their label only where it changes.

    Raises:
        ValueError: a negative precision, or units / precision naming unknown columns.
    """
    data = frame.copy()
    if isinstance(data.columns, pd.MultiIndex):
        data.columns = [" / ".join(str(p) for p in col if str(p)) for col in data.columns]
    data.columns = [str(c) for c in data.columns]
    keep_index = (not isinstance(data.index, pd.RangeIndex)) if index is None else index
    levels = data.index.nlevels if keep_index else 0
    if keep_index:
        names = [str(n) if n is not None else "" for n in data.index.names]
        data = data.reset_index(names=names if len(names) > 1 or names[0] else [""])
    else:
        data = data.reset_index(drop=True)
    columns = list(data.columns)
    digits = _per_column(precision, columns, "precision", default=1)
    for column, places in digits.items():
        if places is not None and (isinstance(places, bool) or not isinstance(places, int)
                                   or places < 0):
            raise ValueError(f"precision of {column!r} must be an integer >= 0 or None, "
                             f"got {places!r}")
    numeric = [_numeric(list(data[c])) for c in columns]
    if isinstance(units, str):  # one unit: the numeric columns only
        unit_of = {c: (units if num else None) for c, num in zip(columns, numeric, strict=True)}
    else:
        unit_of = _per_column(units or {}, columns, "units", default=None)
    shown = pd.DataFrame(
        {c: [_format_cell(v, digits[c]) for v in data[c]] for c in columns}, dtype=object
    )
    # A row MultiIndex reads like pandas' own display: an outer label only where it changes.
    # The masks are computed from the labels before any is blanked.
    labels = shown.iloc[:, :levels].copy()
    for level in range(levels - 1):
        outer = labels.iloc[:, : level + 1]
        repeated = (outer == outer.shift()).all(axis=1)
        shown.iloc[repeated.to_numpy(), level] = ""
    shown.columns = [f"{c} ({unit_of[c]})" if unit_of.get(c) else c for c in columns]
    return shown, numeric


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


class BookTable:
    """A captioned table (see the module docstring). ``frame``: the display strings;
    ``numeric``: which of its columns are right-aligned."""

    def __init__(self, frame: pd.DataFrame, numeric: list[bool], caption: str,
                 name: str | None) -> None:
        self.frame = frame
        self.numeric = numeric
        self.caption = caption
        self.name = name

    def to_markdown(self) -> str:
        """A MyST ``{table}`` directive: caption, label, a pipe table."""
        header = "| " + " | ".join(_markdown_cell(c) for c in self.frame.columns) + " |"
        rule = "|" + "|".join("---:" if num else ":---" for num in self.numeric) + "|"
        rows = ["| " + " | ".join(_markdown_cell(v) for v in row) + " |"
                for row in self.frame.itertuples(index=False)]
        options = [f":name: {self.name}"] if self.name else []
        return "\n".join([f":::{{table}} {self.caption}", *options, "", header, rule, *rows,
                          ":::"])

    def to_html(self) -> str:
        """The table as HTML (pandas Styler): caption on top, no index, numbers right."""
        styler = self.frame.style.hide(axis="index").set_caption(html.escape(self.caption))
        right = [c for c, num in zip(self.frame.columns, self.numeric, strict=True) if num]
        if right:
            styler = styler.set_properties(subset=right, **{"text-align": "right"})
        return styler.to_html()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"{self.caption}\n{self.frame.to_string(index=False)}"


def show_table(
    frame: pd.DataFrame,
    caption: str,
    *,
    name: str | None = None,
    units: str | Mapping[str, str] | None = None,
    precision: int | None | Mapping[str, int | None] = 1,
    index: bool | None = None,
) -> BookTable:
    """A table for the book: `format_frame` (units, rounding, no bare index) plus a caption
    and, with ``name`` (e.g. ``"tbl-02-errors"``), a label for ``{numref}``.

    Returns a `BookTable`; end the cell with it, or ``display()`` it.

    Raises:
        ValueError: an empty caption, a label with spaces or other odd characters, or a bad
            option of `format_frame`.
    """
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("show_table needs a caption: one sentence that says what the table "
                         "shows, e.g. caption='Errors of plain CAM on the test set.'")
    if name is not None and not _LABEL.match(name):
        raise ValueError(f"table name {name!r} is not a usable label: use letters, digits, "
                         "'-' and '_', starting with a letter, e.g. 'tbl-02-errors'")
    shown, numeric = format_frame(frame, units=units, precision=precision, index=index)
    return BookTable(shown, numeric, " ".join(caption.split()), name)


def printable(text: str, width: int = LINE_WIDTH) -> str:
    """``text`` for the book's printed output: the project root and the home folder in it
    replaced as `display_path` does (``data/...``, ``~/...``), each line wrapped to ``width``
    characters (continuation lines indented by two spaces)."""
    for base, shown in ((project_root(), ""), (Path.home(), "~/")):
        for spelling in {str(base), str(base.resolve())}:
            if spelling not in ("", "/"):
                text = text.replace(spelling.rstrip("/") + "/", shown)
    return "\n".join(
        textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False,
                      break_on_hyphens=False) if len(line) > width else line
        for line in text.splitlines()
    )


def printable_command(command: str, width: int = LINE_WIDTH) -> str:
    """A shell command on lines of at most ``width`` characters where it can: broken before
    an option (``-x``, ``--name``), each line but the last ending in `` \\``, continuation
    lines indented by four spaces. A single option longer than a line stays whole."""
    parts = re.split(r" (?=--?[A-Za-z])", command.strip())
    lines, line = [], parts[0]
    for part in parts[1:]:
        if len(line) + 1 + len(part) + 2 > width:
            lines.append(line + " \\")
            line = "    " + part
        else:
            line += " " + part
    lines.append(line)
    return "\n".join(lines)
