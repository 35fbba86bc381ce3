"""csoa_nb.book.display: captioned tables with units, rounding and no bare 0..n index."""

import math
from pathlib import Path

import pandas as pd
import pytest

from csoa_nb.base.paths import project_root
from csoa_nb.book.display import (
    MISSING,
    display_path,
    format_frame,
    printable,
    printable_command,
    show_table,
)


def errors() -> pd.DataFrame:
    return pd.DataFrame({
        "method": ["CAM", "CSoA"],
        "top-1 loc. err": [53.4249, 37.65],  # 53.4, 37.6 (37.65 is 37.6499...)
        "runs": [3, 2],
        "spread": ["37.7 ± 1.2", "41 ± 3"],
    })


def test_units_rounding_and_no_range_index():
    shown, numeric = format_frame(errors(), units={"top-1 loc. err": "%"})
    assert list(shown.columns) == ["method", "top-1 loc. err (%)", "runs", "spread"]
    assert shown.values.tolist() == [["CAM", "53.4", "3", "37.7 ± 1.2"],
                                     ["CSoA", "37.6", "2", "41 ± 3"]]
    assert numeric == [False, True, True, True]  # "mean ± std" strings align as numbers


def test_one_unit_applies_to_the_numeric_columns_only():
    shown, _ = format_frame(errors(), units="%", precision=2)
    assert list(shown.columns) == ["method", "top-1 loc. err (%)", "runs (%)", "spread (%)"]
    assert shown["top-1 loc. err (%)"].tolist() == ["53.42", "37.65"]


def test_precision_per_column_missing_values_and_shortest_format():
    frame = pd.DataFrame({"a": [0.12345, math.nan], "b": [2.5, 1e-4]})
    shown, numeric = format_frame(frame, precision={"a": 3, "b": None})
    assert shown["a"].tolist() == ["0.123", MISSING]
    assert shown["b"].tolist() == ["2.5", "0.0001"]  # None: Python's shortest repr ("g")
    assert numeric == [True, True]


def test_named_index_becomes_the_first_column():
    shown, numeric = format_frame(errors().set_index("method"))
    assert list(shown.columns) == ["method", "top-1 loc. err", "runs", "spread"]
    assert shown["method"].tolist() == ["CAM", "CSoA"]
    assert numeric[0] is False
    unnamed = pd.DataFrame({"x": [1.0]}, index=["row"])
    assert format_frame(unnamed)[0].values.tolist() == [["row", "1.0"]]
    assert list(format_frame(unnamed, index=False)[0].columns) == ["x"]


def test_multiindex_columns_and_rows():
    frame = pd.DataFrame(
        [[1.0, 2.0]],
        index=pd.MultiIndex.from_tuples([("pretrained", "CSoA")], names=["regime", "method"]),
        columns=pd.MultiIndex.from_tuples([("paper", "Top-1"), ("ours", "Top-1")]),
    )
    shown, _ = format_frame(frame)
    assert list(shown.columns) == ["regime", "method", "paper / Top-1", "ours / Top-1"]
    assert shown.values.tolist() == [["pretrained", "CSoA", "1.0", "2.0"]]


def test_outer_row_labels_show_where_they_change():
    index = pd.MultiIndex.from_tuples(
        [("paper", "CAM"), ("paper", "CSoA"), ("ours", "CAM"), ("ours", "CSoA")],
        names=["source", "method"])
    shown, _ = format_frame(pd.DataFrame({"err": [1.0, 2.0, 3.0, 4.0]}, index=index))
    assert shown["source"].tolist() == ["paper", "", "ours", ""]
    assert shown["method"].tolist() == ["CAM", "CSoA", "CAM", "CSoA"]  # innermost: every row


def test_three_level_row_labels_blank_each_repeat():
    index = pd.MultiIndex.from_tuples(
        [("HaS", "grid", "8"), ("HaS", "grid", "16"), ("HaS", "grid", "32"),
         ("ACoL", "delta", "0.5"), ("ACoL", "delta", "0.8")],
        names=["method", "setting", "value"])
    shown, _ = format_frame(pd.DataFrame({"acc": [1.0, 2.0, 3.0, 4.0, 5.0]}, index=index))
    assert shown["method"].tolist() == ["HaS", "", "", "ACoL", ""]
    # the middle level shows only where it or an outer label changes
    assert shown["setting"].tolist() == ["grid", "", "", "delta", ""]
    assert shown["value"].tolist() == ["8", "16", "32", "0.5", "0.8"]


def test_markdown_is_a_myst_table_directive_with_caption_and_label():
    table = show_table(errors()[["method", "top-1 loc. err"]], "Errors of  the\n two methods.",
                       name="tbl-test", units={"top-1 loc. err": "%"})
    assert table._repr_markdown_() == "\n".join([
        ":::{table} Errors of the two methods.",
        ":name: tbl-test",
        "",
        "| method | top-1 loc. err (%) |",
        "|:---|---:|",
        "| CAM | 53.4 |",
        "| CSoA | 37.6 |",
        ":::",
    ])


def test_markdown_escapes_pipes():
    table = show_table(pd.DataFrame({"a|b": ["x|y"]}), "Pipes.")
    assert "| a\\|b |" in table.to_markdown()
    assert "| x\\|y |" in table.to_markdown()
    assert ":name:" not in table.to_markdown()


def test_html_has_the_caption_and_no_index():
    html = show_table(errors(), "Errors <of> CAM.").to_html()
    assert "<caption>Errors &lt;of&gt; CAM.</caption>" in html
    assert "row_heading" not in html  # the 0..n index is hidden
    assert "text-align: right" in html


@pytest.mark.parametrize("kwargs, message", [
    ({"caption": " "}, "needs a caption"),
    ({"caption": "c", "name": "two words"}, "not a usable label"),
    ({"caption": "c", "units": {"nope": "%"}}, "names columns \\['nope'\\]"),
    ({"caption": "c", "precision": -1}, "integer >= 0"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        show_table(errors(), **kwargs)


def test_display_path_hides_the_machine_folders(monkeypatch, tmp_path):
    root = project_root()
    assert display_path(root / "data" / "synthetic-ab12") == "data/synthetic-ab12"
    assert display_path("runs/x") == "runs/x"  # relative paths mean the project root
    home = tmp_path / "home"
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    assert display_path(home / ".cache" / "torch" / "hub") == "~/.cache/torch/hub"
    assert display_path("/opt/elsewhere/x.pth") == "/opt/elsewhere/x.pth"


def test_printable_hides_paths_and_wraps(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    root = project_root()
    message = f"{root}/data/CUB_200_2011/images.txt not found; weights in {home}/.cache/x.pth"
    assert printable(message) == (
        "data/CUB_200_2011/images.txt not found; weights in ~/.cache/x.pth"
    )
    long = " ".join(["word"] * 30)  # 149 characters
    wrapped = printable(long, width=40).splitlines()
    assert max(len(line) for line in wrapped) <= 40
    assert wrapped[1].startswith("  word")
    assert printable("short\nlines") == "short\nlines"


def test_printable_command_breaks_before_options():
    command = ("python -m csoa_nb.engine.train --preset paper --method csoa "
               "--set data_root=/data/CUB_200_2011")
    assert printable_command(command, width=48) == "\n".join([
        "python -m csoa_nb.engine.train --preset paper \\",  # 46 characters and " \\"
        "    --method csoa \\",
        "    --set data_root=/data/CUB_200_2011",
    ])
    assert printable_command("ls -l", width=40) == "ls -l"
