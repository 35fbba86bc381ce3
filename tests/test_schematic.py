"""The schematic of CSoA (`csoa_nb.report.schematic`): every module with its equations, inside
the book's column."""

from __future__ import annotations

import re

from csoa_nb.report.schematic import BOXES, csoa_schematic
from csoa_nb.report.style import COLUMN_WIDTH_IN


def test_the_schematic_names_every_equation_of_the_method_once_in_the_column():
    fig = csoa_schematic()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    cited = set()
    for first, last in re.findall(r"Eq\. (\d+)(?:-(\d+))?", texts):
        cited |= set(range(int(first), int(last or first) + 1))
    for pair in re.findall(r"Eq\. (\d+), (\d+)", texts):
        cited |= {int(n) for n in pair}
    assert cited == set(range(2, 14)) - {6, 7}  # Eq. 6-7: weights and thresholds, no box
    assert fig.get_figwidth() <= COLUMN_WIDTH_IN + 1e-9
    # every box inside the canvas
    assert all(0 <= x and x + w <= 12 and 0 <= y and y + h <= 7
               for x, y, w, h, *_ in BOXES.values())
