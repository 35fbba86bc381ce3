"""The W_E comparison of chapters 04-06 (`csoa_nb.report.embedding`) on runs built by hand:
paired differences, their t intervals and the family's verdicts, computed here from the
numbers put in."""

from __future__ import annotations

import pandas as pd
import pytest
from test_built_html import comparison_numbers

from csoa_nb.report import embedding

CAM = [50.0, 51.0, 52.0, 53.0, 54.0]
#: ImageNet W_E − CAM per seed: mean 10, sample std sqrt(0.5), so the 95 % t interval is
#: 10 ± t(0.975, 4) * sqrt(0.5 / 5) = 10 ± 2.7764 * 0.31623 = [9.12, 10.88].
GAIN = [10.0, 11.0, 9.0, 10.0, 10.0]
#: Our W_E − CAM per seed for CoAug: the ImageNet W_E − ours is GAIN - NOISE (mean 10 as well).
NOISE = [1.0, -1.0, 2.0, -2.0, 0.0]
#: A row of our fix − the same method as written, both with the ImageNet W_E: 3 ± 0.878.
FIX = [3.0, 4.0, 2.0, 3.0, 3.0]


def _run(method: str, w_e: str, seed: int, box: float) -> dict:
    return {"method": method, "embedding": w_e, "regime": "pretrained", "feature_block": 4,
            "seed": seed, "theta": 0.3, "max_box_acc_v2": box, "pxap": 40.0 + seed,
            "top1_loc_err": 60.0 - seed}


def _frames(ours_gain: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    table1 = pd.DataFrame(
        [_run("cam", "slim", s, CAM[s]) for s in range(5)]
        + [_run(row, "slim", s, CAM[s] + ours_gain[s]) for row in embedding.IMAGENET_WE_ROWS
           for s in range(5)]
        + [_run("cam", "slim", s, 0.0) | {"regime": "scratch"} for s in range(5)])
    imagenet = pd.DataFrame([
        _run(row, "efficientnet_lite0", s, CAM[s] + GAIN[s] + (FIX[s] if "fix" in row else 0))
        for row in embedding.IMAGENET_WE_ROWS for s in range(5)])
    return table1, imagenet


def test_differences_are_paired_by_seed_with_their_t_interval_and_family_verdict():
    frame = embedding.embedding_frame(*_frames(NOISE))
    assert len(frame) == 5 + 4 * 5 + 4 * 5  # the from-scratch CAM runs are left out
    comparisons = embedding.embedding_comparisons(frame)
    assert len(comparisons) == 4 * 3 * 2 + 2 * 3  # and fix − as written for the two fix rows
    cam_box = comparisons[("coaug", "max_box_acc_v2", "cam")]
    ours_box = comparisons[("coaug", "max_box_acc_v2", "our_w_e")]
    assert (cam_box.label_a, cam_box.label_b) == ("CoAug (as written), ImageNet W_E", "CAM (base)")
    assert cam_box.difference == pytest.approx(10.0)
    assert (cam_box.diff.low, cam_box.diff.high) == pytest.approx((9.1220, 10.8780), abs=1e-3)
    assert cam_box.verdict == "better (Holm, 30 tests)"
    # ImageNet − ours per seed: GAIN - NOISE = [9, 12, 7, 12, 10], mean 10, std 2.1213: the
    # interval 10 ± 2.7764 * 0.94868 = [7.37, 12.63]
    assert ours_box.label_b == "CoAug (as written), our W_E"
    assert (ours_box.diff.low, ours_box.diff.high) == pytest.approx((7.366, 12.634), abs=1e-3)
    fix = comparisons[("coaug_fix", "max_box_acc_v2", "as_written")]
    assert (fix.label_a, fix.label_b) == ("CoAug+fix (ours), ImageNet W_E",
                                          "CoAug (as written), ImageNet W_E")
    assert (fix.difference, fix.diff.low, fix.diff.high) == pytest.approx((3.0, 2.122, 3.878),
                                                                          abs=1e-3)
    table = embedding.embedding_verdicts(comparisons)
    assert table.iloc[0].to_dict() == {
        "Method": "CoAug (as written)", "Metric": "MaxBoxAccV2",
        "ImageNet W_E − CAM (points)": "+10.0 [+9.1, +10.9] better (Holm, 30 tests)",
        "ImageNet W_E − our W_E (points)": "+10.0 [+7.4, +12.6] better (Holm, 30 tests)",
        "fix − as written, ImageNet W_E (points)": "–"}
    assert table.iloc[6]["fix − as written, ImageNet W_E (points)"] == (
        "+3.0 [+2.1, +3.9] better (Holm, 30 tests)")


def test_the_sentence_words_each_difference_in_the_tables_family():
    # ours = ImageNet − NOISE for the rows as written: ImageNet − ours is NOISE, mean 0
    ours_gain = [g - n for g, n in zip(GAIN, NOISE, strict=True)]
    frame = embedding.embedding_frame(*_frames(ours_gain))
    said = embedding.embedding_takeaway(frame, rows=("csoa",))
    assert said.startswith("With ImageNet (EfficientNet-Lite0) as W_E, MaxBoxAccV2, fine-tuned "
                           "(Holm over the 30 comparisons")
    assert ("CSoA (as written), MaxBoxAccV2: with the ImageNet W_E − CAM: +10.0 points "
            "[+9.1, +10.9], "
            "*better (Holm, 30 tests)*; − the same row with our W_E: +0.0 points") in said
    assert said.endswith("*no difference shown*.")
    listed = embedding.embedding_takeaway(frame, rows=("csoa", "csoa_fix"), as_list=True)
    lead, blank, *items = listed.splitlines()
    assert lead == said.split(": CSoA (as written)")[0] + ":" and blank == ""
    assert [item.split(": with")[0] for item in items] == [
        "- CSoA (as written), MaxBoxAccV2", "- CSoA+fix (ours), MaxBoxAccV2"]
    # not in the form of Table 1's row − CAM comparisons, which the built book's check keys
    # across pages (these have another CAM difference for the same row and metric)
    html = "<ul>" + "".join(f"<li>{item[2:]}</li>" for item in items) + "</ul>"
    assert comparison_numbers(html) == []
    fixed = embedding.embedding_takeaway(frame, rows=("csoa_fix",))
    assert fixed.endswith("; − CSoA (as written), ImageNet W_E: +3.0 points [+2.1, +3.9], "
                          "*better (Holm, 30 tests)*.")


def test_table_has_a_row_per_method_and_w_e_in_table_order():
    frame = embedding.embedding_frame(*_frames(NOISE))
    table = embedding.embedding_table(frame)
    assert list(table.index)[:3] == [
        ("CAM (base)", "ours (pretraining stage)"),
        ("CoAug (as written)", "ours (pretraining stage)"),
        ("CoAug (as written)", "ImageNet (EfficientNet-Lite0)")]
    assert table.loc[("CoAug (as written)", "ImageNet (EfficientNet-Lite0)"),
                     "MaxBoxAccV2"] == "62.0 ± 1.6"


def test_wrong_frames_are_refused():
    table1, imagenet = _frames(NOISE)
    with pytest.raises(ValueError, match="no fine-tuned CAM run"):
        embedding.embedding_frame(table1[table1["method"] != "cam"], imagenet)
    with pytest.raises(ValueError, match="sweep 'imagenet_we'"):
        embedding.embedding_frame(table1, table1)
