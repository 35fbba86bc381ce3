"""The abstract of page 00 and its forest plot (`csoa_nb.report.abstract`, `charts.forest_plot`):
numbers and words from chapter 15's row-vs-CAM family, never typed."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from csoa_nb.report import abstract, charts, findings


def frame(theta: float = 0.3) -> pd.DataFrame:
    # MaxBoxAccV2 by seed: cam 60, 62, 64; csoa 50, 51, 55 (-10, -11, -9: mean -10, sd 1,
    # sem 1 / sqrt 3, t(0.975, 2) = 4.303: [-12.48, -7.52], p = 0.0033); csoa_fix 61, 62, 67
    # (+1, 0, +3: not shown). Top-1 loc. err: cam 50, 52, 54; csoa +20 on every seed (p = 0);
    # csoa_fix -1, 0, -2 (p = 0.225). PxAP and top-1 cls. err equal everywhere (p = 1).
    # One family of 2 rows x 4 metrics = 8 tests; Holm: 0 x 8 = 0, 0.0033 x 7 = 0.023.
    values = {"cam": ((60, 62, 64), (50, 52, 54)), "csoa": ((50, 51, 55), (70, 72, 74)),
              "csoa_fix": ((61, 62, 67), (49, 52, 52))}
    rows = []
    for method, (boxes, errors) in values.items():
        for seed in range(3):
            rows.append({"method": method, "regime": "pretrained", "feature_block": 4,
                         "seed": seed, "theta": theta, "hash": f"{method}{seed}",
                         "max_box_acc_v2": float(boxes[seed]), "pxap": 70.0,
                         "top1_loc_err": float(errors[seed]), "top1_cls_err": 10.0})
    return pd.DataFrame(rows)


def test_the_abstract_states_each_verdict_with_its_numbers_metric_and_theta():
    text = abstract.abstract_markdown(frame())
    assert "**CSoA (as written) localizes worse than CAM**" in text
    assert "**CSoA+fix (ours) cannot be told apart from CAM**" in text
    assert ("- CSoA (as written) − CAM: MaxBoxAccV2 −10.0 points [−12.5, −7.5], "
            "*worse (Holm, 8 tests)*; top-1 loc. error at θ = 0.3 +20.0 points "
            "[+20.0, +20.0], *worse (Holm, 8 tests)*.") in text
    assert "- CSoA+fix (ours) − CAM: MaxBoxAccV2 +1.3 points [−2.5, +5.1], *not shown*" in text
    assert "Holm-adjusted over the 8 cells" in text
    assert re.search(r"(?<!\w)-\d", text) is None  # a true minus, never a hyphen


def test_the_abstract_and_chapter_15_give_one_number_and_one_word():
    cells = findings.versus_cells(frame(), "pretrained").set_index(["row", "metric"])
    table = findings.versus_base(frame(), "pretrained").set_index("row")
    text = abstract.abstract_markdown(frame())
    cell = cells.loc[("csoa", "max_box_acc_v2")]
    assert table.loc["CSoA (as written)", "MaxBoxAccV2"] == "−10.0 [−12.5, −7.5] " + cell["word"]
    assert f"*{cell['word']}*" in text and cell["word"] == "worse (Holm, 8 tests)"


def test_the_runs_theta_is_one_threshold():
    assert abstract.run_theta(frame(0.2)) == 0.2
    mixed = pd.concat([frame(0.3), frame(0.2).assign(regime="scratch")])
    with pytest.raises(ValueError, match=r"thresholds \[0.2, 0.3\], not one"):
        abstract.run_theta(mixed)


def test_the_forest_plot_has_a_panel_per_metric_and_a_row_per_table_row():
    both = pd.concat([frame(), frame().assign(regime="scratch",
                                              hash=lambda f: "s" + f["hash"])])
    cells = abstract.forest_cells(both)
    assert set(cells["regime"]) == {"pretrained", "scratch"}
    assert set(cells["metric"]) == set(abstract.ABSTRACT_METRICS)
    fig = charts.forest_plot(cells, 0.3)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["CSoA (as written)",
                                                                   "CSoA+fix (ours)"]
    assert "θ = 0.3" in axes[1].get_xlabel()
    # CSoA's MaxBoxAccV2, fine-tuned: a filled marker at -10 (shown after Holm)
    dots = [line for line in axes[0].lines if line.get_marker() == "o"]
    shown = [d for d in dots if d.get_markerfacecolor() != "white"]
    assert [float(d.get_xdata()[0]) for d in shown] == pytest.approx([-10.0, -10.0])


def test_a_chapter_summary_takes_the_same_numbers_and_words():
    said = abstract.takeaway(frame())
    assert said.startswith("Pretrained + fine-tuned, against CAM")
    assert ("CSoA (as written) − CAM: MaxBoxAccV2 −10.0 points [−12.5, −7.5], "
            "*worse (Holm, 8 tests)*;") in said
    assert said.count("*not shown*") == 2
