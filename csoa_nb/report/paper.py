"""The paper's published numbers (Tables 1-6), always labelled as the paper's.

They live in one data file, `paper_tables.json`, transcribed from Kou et al. (WACV 2021); nothing
in the book types a paper number by hand. Our measured numbers come from `csoa_nb.engine.results`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

TABLES = ("1", "2", "3", "4", "5", "6")


@cache
def _load() -> dict[str, Any]:
    text = resources.files("csoa_nb.report").joinpath("paper_tables.json").read_text()
    return json.loads(text)


def paper_table(number: int | str) -> pd.DataFrame:
    """Table `number` of the paper as a DataFrame; `df.attrs` holds caption and label."""
    key = str(number)
    if key not in TABLES:
        raise ValueError(f"the paper has tables {', '.join(TABLES)}; got {number!r}")
    table = _load()["tables"][key]
    frame = pd.DataFrame(table["rows"], columns=table["columns"]).set_index(table["columns"][0])
    frame.attrs.update(caption=table["caption"], label=table["label"])
    return frame


def paper_label(number: int | str) -> str:
    """E.g. "paper, CUB-200-2011, VGG16"."""
    return paper_table(number).attrs["label"]
