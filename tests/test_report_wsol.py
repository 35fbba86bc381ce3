"""Chapter 14's report layer (csoa_nb.report.wsol) on hand-built scores, frames and maps whose
tables, intervals, verdicts and figures are known (no training)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.patches import Rectangle

from csoa_nb.core.scores import Scores, ThetaErrors
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.posthoc_runs import POSTHOC_FILE
from csoa_nb.engine.protocol import PROTOCOL_FILE, ProtocolScores
from csoa_nb.engine.runs import RunResult, write_json
from csoa_nb.report import wsol
from csoa_nb.report.stats import Difference, verdicts
from csoa_nb.report.views import localize_one

# t quantile of Student's t with 2 degrees of freedom at 97.5 %: 4.302653 (three seeds)
T2 = 4.302653


def scores(box: float, pxap: float | None = 30.0, loc: float = 60.0, cls: float = 20.0,
           gt: float = 40.0, theta: float = 0.3) -> Scores:
    errors = ThetaErrors(top1_loc_err=loc, top5_loc_err=loc, gt_known_loc_err=gt,
                         top1_cls_err=cls, top5_cls_err=cls)
    return Scores(theta, errors, {theta: errors}, {50: 100 - gt}, 16, max_box_acc_v2=box,
                  pxap=pxap)


def protocol(test_box: float, val_box: float, theta: float = 0.25, **kw) -> ProtocolScores:
    return ProtocolScores(theta, scores(val_box, theta=theta), scores(test_box, theta=theta, **kw))


# ----------------------------------------------------------------------------- records
def test_protocol_record_reads_the_test_split():
    record = wsol.protocol_record("has", "scratch", 2, "abc", protocol(55.0, 41.0, theta=0.4,
                                                                       pxap=None, loc=70.0))
    assert record["method"] == "has" and record["family"] == "trained"
    assert record["regime"] == "scratch" and record["seed"] == 2.0 and record["hash"] == "abc"
    assert record["theta"] == 0.4
    assert record["max_box_acc_v2"] == 55.0  # the test split's, not the validation's 41
    assert record["val_max_box_acc_v2"] == 41.0
    assert record["top1_loc_err"] == 70.0 and record["top1_cls_err"] == 20.0
    assert math.isnan(record["pxap"])  # no masks: not computed, NaN
    trivial = wsol.protocol_record("center_gaussian", "pretrained", None, "",
                                   protocol(60.0, 50.0), sigma=3.5)
    assert trivial["family"] == "trivial" and math.isnan(trivial["seed"])
    assert trivial["sigma"] == 3.5
    assert wsol.family("scorecam") == "post-hoc"


def test_protocol_frame_reads_run_folders(tmp_path):
    runs = []
    for method, fields, box in (("cam", {}, 50.0), ("csoa", {"coaug_background": "below_mean"},
                                                     53.0)):
        config = RunConfig.from_preset("smoke", method=method, seed=1, **fields)
        run_dir = tmp_path / config.hash
        run_dir.mkdir()
        write_json(run_dir / PROTOCOL_FILE, protocol(box, box - 10).to_record())
        runs.append(RunResult(config, run_dir, scores(box)))
    posthoc = {"gradcam": protocol(45.0, 40.0), "gradcampp": protocol(47.0, 41.0),
               "scorecam": protocol(49.0, 42.0)}
    write_json(runs[0].run_dir / POSTHOC_FILE, {k: v.to_record() for k, v in posthoc.items()})
    frame = wsol.protocol_frame(runs, trivial=False)
    assert list(frame["method"]) == ["cam", "gradcam", "gradcampp", "scorecam", "csoa_fix"]
    assert list(frame["max_box_acc_v2"]) == [50.0, 45.0, 47.0, 49.0, 53.0]
    assert set(frame["regime"]) == {"pretrained"} and set(frame["seed"]) == {1.0}
    # the post-hoc rows read the CAM run's folder: its hash
    assert set(frame.loc[frame.family == "post-hoc", "hash"]) == {runs[0].config.hash}


# ----------------------------------------------------------------------------- tables
def frame() -> pd.DataFrame:
    """Three seeds per method (MaxBoxAccV2, top-1 loc. err), the centred Gaussian without seeds.

    MaxBoxAccV2 − CAM per seed: HaS +3, +3, +3 (paired: [3, 3], better; unpaired Welch would
    not show it); ADL −1, +1, −2 (not shown); CSoA (as written) −10, −11, −11 (worse).
    """
    values = {  # method: (MaxBoxAccV2 per seed, top-1 loc. err per seed)
        "cam": ((50, 52, 54), (75, 76, 77)),
        "has": ((53, 55, 57), (70, 71, 72)),
        "adl": ((49, 53, 52), (75, 76, 77)),
        "csoa": ((40, 41, 43), (80, 80, 80)),
    }
    rows = []
    for method, (boxes, errors) in values.items():
        for seed, (box, error) in enumerate(zip(boxes, errors, strict=True)):
            rows.append({"method": method, "family": wsol.family(method), "regime": "pretrained",
                         "seed": float(seed), "hash": f"{method}{seed}", "theta": 0.2 + seed / 10,
                         "max_box_acc_v2": float(box), "pxap": 30.0,
                         "top1_loc_err": float(error), "top1_cls_err": 20.0})
    rows.append({"method": "center_gaussian", "family": "trivial", "regime": "pretrained",
                 "seed": math.nan, "hash": "", "theta": 0.29, "max_box_acc_v2": 60.0,
                 "pxap": 66.0, "top1_loc_err": math.nan, "top1_cls_err": math.nan})
    return pd.DataFrame(rows)


def test_spread_cell_is_mean_and_sample_std():
    # mean 52, sample std sqrt(((-2)^2 + 0 + 2^2) / 2) = 2
    assert wsol.spread_cell([50.0, 52.0, 54.0]) == "52.0 ± 2.0"
    assert wsol.spread_cell([47.25]) == "47.2"  # one seed: the number alone
    assert wsol.spread_cell([math.nan, math.nan]) == "–"


def test_summary_table_by_hand():
    table = wsol.summary_table(frame(), "pretrained")
    assert list(table.index) == ["centred Gaussian", "CAM (base)", "HaS", "ADL",
                                 "CSoA (as written)"]  # wsol.ROW_ORDER
    box = "MaxBoxAccV2 (%) ↑"
    loc = "Top-1 loc. err at chosen θ (%) ↓"
    assert list(table.columns) == [box, "PxAP (%) ↑", loc,
                                   "Top-1 cls. err (%) ↓",
                                   "θ chosen on val. (mean)", "seeds"]
    assert table.loc["CAM (base)", box] == "52.0 ± 2.0"
    assert table.loc["CAM (base)", loc] == "76.0 ± 1.0"  # 75, 76, 77
    assert table.loc["CAM (base)", "θ chosen on val. (mean)"] == "0.30"  # (0.2 + 0.3 + 0.4) / 3
    assert table.loc["CAM (base)", "seeds"] == 3
    assert table.loc["centred Gaussian", box] == "60.0"
    assert table.loc["centred Gaussian", loc] == "–"  # no classifier
    assert table.loc["centred Gaussian", "seeds"] is None  # shown as "–"
    with pytest.raises(ValueError, match="no row of regime 'scratch'"):
        wsol.summary_table(frame(), "scratch")


def test_search_frame_and_table():
    entries = [(RunConfig.from_preset("smoke", method="has", has_grid_size=size, seed=seed),
                protocol(0.0, val, theta=theta))
               for size, seed, val, theta in ((8, 0, 40.0, 0.1), (16, 0, 45.5, 0.2),
                                              (16, 1, 44.5, 0.3))]
    grid = wsol.search_frame(entries, {"has": {"has_grid_size": 16}})
    assert list(grid["value"]) == [8, 16, 16] and list(grid["seed"]) == [0, 0, 1]
    assert list(grid["chosen"]) == [False, True, True]
    assert list(grid["val_max_box_acc_v2"]) == [40.0, 45.5, 44.5]
    table = wsol.search_table(grid)
    has = table.loc["HaS: patch side S, px"]
    # the grid of the spec (8, 16, 32, 64): 32 and 64 have no run here
    assert list(has.index) == ["8", "16", "32", "64"]
    assert list(has["chosen"]) == ["", "✓", "", ""]
    cell = "val. MaxBoxAccV2 (%), mean ± std"
    # 16: 45.5 and 44.5, mean 45.0, sample std sqrt(2 * 0.25) = 0.707
    assert list(has[cell]) == ["40.0", "45.0 ± 0.7", "–", "–"]
    assert list(has["θ chosen on val. (mean)"]) == ["0.10", "0.25", "–", "–"]
    assert [name.split(":")[0] for name in table.index.unique(0)] == ["HaS", "ACoL", "ADL",
                                                                     "CutMix"]


def test_search_margins_pair_the_chosen_value_with_the_runner_up_over_seeds():
    scores = {("has", 8): (40.0, 41.0, 42.0), ("has", 16): (45.0, 47.0, 46.0),
              ("has", 32): (44.0, 44.0, 47.0), ("acol", 0.5): (50.0, 51.0, 52.0),
              ("acol", 0.6): (60.0, 61.0, 62.0), ("acol", 0.8): (55.0, 55.5, 56.5)}
    chosen = {"has": 16, "acol": 0.6}
    setting = {"has": "has_grid_size", "acol": "acol_delta"}
    search = pd.DataFrame([
        {"method": method, "setting": setting[method], "value": value, "seed": seed,
         "val_max_box_acc_v2": score, "theta": 0.3, "chosen": chosen[method] == value,
         "hash": f"{method}{value}{seed}"}
        for (method, value), per_seed in scores.items() for seed, score in enumerate(per_seed)])
    margins = wsol.search_margins(search).set_index("method")
    has, acol = margins.loc["has"], margins.loc["acol"]
    # HaS: 16 (mean 46) against 32 (mean 45): 1, 3, -1 by seed; mean 1, sd 2, sem 2 / sqrt 3,
    # t(0.975, 2 df) = 4.303: 1 -/+ 4.968; t = 0.866, p = 0.478
    assert (has["chosen"], has["runner_up"]) == (16, 32)
    assert has["margin"] == pytest.approx(1.0)
    assert has["low"] == pytest.approx(1 - T2 * 2 / math.sqrt(3), abs=1e-4)
    assert has["p"] == pytest.approx(0.4778, abs=1e-4)
    # ACoL: 0.6 against 0.8: 5, 5.5, 5.5; t = 32, p = 0.00098; Holm over two: 0.002
    assert (acol["chosen"], acol["runner_up"]) == (0.6, 0.8)
    assert acol["margin"] == pytest.approx(16 / 3)
    assert acol["word"] == "resolved (Holm, 2 tests)" and has["word"] == "not resolved"
    table = wsol.margin_table(wsol.search_margins(search))
    assert list(table.index) == ["HaS", "ACoL"]
    assert table.loc["HaS", "margin, val. MaxBoxAccV2 (points) [95 % CI]"] == (
        "+1.0 [−4.0, +6.0]")
    assert list(table["choice"]) == ["not resolved", "resolved (Holm, 2 tests)"]


# ----------------------------------------------------------------------------- differences
def test_differences_paired_by_seed_with_verdicts():
    diffs = wsol.differences(frame(), "pretrained").set_index(["method", "metric"])
    has = diffs.loc[("has", "max_box_acc_v2")]
    assert (has["mean"], has["low"], has["high"]) == (3.0, 3.0, 3.0)  # paired: no spread
    assert has["test"] == "paired t" and has["verdict"] == "better"
    # lower is better: HaS's error −5 on every seed is "better"
    assert diffs.loc[("has", "top1_loc_err"), "verdict"] == "better"
    assert diffs.loc[("adl", "max_box_acc_v2"), "verdict"] == "not shown"
    csoa = diffs.loc[("csoa", "max_box_acc_v2")]
    # diffs −10, −11, −11: mean −10.667, sem 1/3, half width 4.303 / 3 = 1.434
    assert csoa["mean"] == pytest.approx(-32 / 3)
    assert csoa["low"] == pytest.approx(-32 / 3 - T2 / 3, abs=1e-5)
    # t = 32, p = 0.00098; Holm over the table's 14 tests: 11 x p = 0.011 (rank 4 of 14)
    assert csoa["verdict"] == "worse" and csoa["tests"] == 14
    assert csoa["p_holm"] == pytest.approx(11 * csoa["p"])
    # the Gaussian, unpaired: 60 − (50, 52, 54) = 10, 8, 6, a one-sample t interval, which
    # excludes 0 (p = 0.020) but not after Holm over the table (0.20): suggested, not shown
    gauss = diffs.loc[("center_gaussian", "max_box_acc_v2")]
    assert gauss["test"] == "one-sample t" and gauss["mean"] == pytest.approx(8.0)
    assert gauss["low"] == pytest.approx(8 - T2 * 2 / math.sqrt(3), abs=1e-5)
    assert gauss["p"] == pytest.approx(0.0202, abs=1e-4)
    assert gauss["verdict"] == "suggested better"
    assert diffs.loc[("center_gaussian", "top1_cls_err"), "verdict"] == "n/a"
    assert "cam" not in diffs.index.get_level_values("method")


def test_differences_against_a_trivial_base():
    diffs = wsol.differences(frame(), "pretrained", base=wsol.GAUSSIAN)
    box = diffs[diffs.metric == "max_box_acc_v2"].set_index("method")
    # HaS − 60 = −7, −5, −3: mean −5, half width 4.968: [−9.97, −0.03], below the Gaussian
    assert box.loc["has", "mean"] == pytest.approx(-5.0)
    assert box.loc["has", "high"] == pytest.approx(-5 + T2 * 2 / math.sqrt(3), abs=1e-5)
    assert box.loc["has", "verdict"] == "suggested worse"  # p = 0.049; 0.056 after Holm
    assert list(box.index) == ["cam", "has", "adl", "csoa"]
    with pytest.raises(ValueError, match="no 'full_image' row"):
        wsol.differences(frame(), "pretrained", base="full_image")


def test_verdict_word_directions():
    shown = Difference(2.0, 1.0, 3.0, 3, True, 0.01)
    unclear = Difference(2.0, -1.0, 3.0, 3, True, 0.3)
    single = Difference(2.0, math.nan, math.nan, 1, True)
    up, down, none, one = (*verdicts([shown], [True]), *verdicts([shown], [False]),
                           *verdicts([unclear], [True]), *verdicts([single], [True]))
    assert wsol.verdict_word(up, 2.0) == "better"  # a higher PxAP
    assert wsol.verdict_word(down, 2.0) == "worse"  # a higher classification error
    assert wsol.verdict_word(none, 2.0) == "not shown"
    assert wsol.verdict_word(one, 2.0) == "one seed"
    assert wsol.verdict_word(up, math.nan) == "n/a"
    (suggested, _) = verdicts([shown, Difference(1.0, 0.5, 1.5, 3, True, 0.04)], [True, True])
    assert suggested.p_adjusted == pytest.approx(0.02)  # 2 x 0.01: still shown
    assert wsol.verdict_word(suggested, 2.0) == "better"
    (_, second) = verdicts([shown, Difference(1.0, 0.5, 1.5, 3, True, 0.03)], [True, True])
    assert wsol.verdict_word(second, 1.0) == "better"  # max(0.02, 1 x 0.03) = 0.03
    (first, _) = verdicts([Difference(1.0, 0.5, 1.5, 3, True, 0.03)] * 2, [True, True])
    assert wsol.verdict_word(first, 1.0) == "suggested better"  # 2 x 0.03 = 0.06


def test_versus_table_text():
    table = wsol.versus_table(wsol.differences(frame(), "pretrained"))
    column = "Δ MaxBoxAccV2 (points)"
    assert table.loc["HaS", column] == "+3.0 [+3.0, +3.0] better (Holm, 14 tests)"
    assert table.loc["CSoA (as written)", column] == "−10.7 [−12.1, −9.2] worse (Holm, 14 tests)"
    assert table.loc["centred Gaussian", column] == (
        "+8.0 [+3.0, +13.0] suggested better (unadjusted p = 0.020)")
    assert table.loc["centred Gaussian", "Δ Top-1 cls. err (points)"] == "–"
    assert table.loc["HaS", "t interval (n)"] == "paired (3)"
    assert table.loc["centred Gaussian", "t interval (n)"] == "one-sample (3)"


def test_verdict_markdown_from_the_numbers():
    data = frame()
    text = wsol.verdict_markdown({"pretrained": wsol.differences(data, "pretrained")},
                                 {"pretrained": wsol.differences(data, "pretrained",
                                                                 base=wsol.GAUSSIAN)},
                                 metrics=("max_box_acc_v2",), ours=("csoa",))
    assert text.splitlines()[0] == "**pretrained + fine-tuned.**"
    assert ("- MaxBoxAccV2: shown better than CAM (base): HaS; shown worse: CSoA (as written) "
            "(Holm over the table's 14 tests); only suggested (unadjusted p < 0.05): none; not "
            "shown different: ADL.") in text
    assert ("- CSoA (as written) − CAM (base): MaxBoxAccV2 −10.7 [−12.1, −9.2] worse (Holm, 14 "
            "tests) (points, 95 % CI).") in text
    # against the Gaussian only CSoA survives Holm over that table's 8 tests (p 0.0022 x 4)
    assert ("- No method is shown above the centred Gaussian on MaxBoxAccV2 (Holm over the "
            "table's 8 tests); shown below it: CSoA (as written).") in text
    # one seed: no verdict, and the sentence says so
    one = data[data.seed.isna() | (data.seed == 0)]
    text = wsol.verdict_markdown({"pretrained": wsol.differences(one, "pretrained")}, {},
                                 metrics=("max_box_acc_v2",), ours=("csoa",))
    assert "- MaxBoxAccV2: one seed per row, so no interval and no verdict" in text
    assert "MaxBoxAccV2 −10.0 (one seed) (points)." in text


def test_headline_sentence_from_the_numbers():
    diffs = wsol.differences(frame(), "pretrained")
    assert wsol.headline(diffs, ours=("csoa",)) == (
        "on MaxBoxAccV2, shown better than CAM (base): HaS; shown worse: CSoA (as written) "
        "(Holm over the table's 14 tests); CSoA (as written) −10.7 [−12.1, −9.2] worse (Holm, "
        "14 tests) (points, unadjusted 95 % CI)")
    # lower is better for an error: the verdicts follow the metric's direction
    assert "shown better than CAM (base): none" in wsol.headline(diffs, "top1_cls_err")


def test_fixed_theta_table_beside_the_protocol():
    data = frame()
    fixed = data[data.family == "trained"].assign(gt_known_loc_err=40.0,
                                                  top1_loc_err=lambda f: f.top1_loc_err + 1)
    table = wsol.fixed_theta_table(fixed, data, 0.3)
    row = table.loc[("pretrained + fine-tuned", "CAM (base)")]
    assert row["Top-1 loc. err at θ = 0.3 (%) ↓"] == "77.0 ± 1.0"
    assert row["Top-1 loc. err at chosen θ (%) ↓"] == "76.0 ± 1.0"
    assert row["GT-known loc. err at θ = 0.3 (%) ↓"] == "40.0 ± 0.0"
    assert row["seeds"] == 3
    provenance = wsol.provenance_table(data)
    assert provenance.iloc[0]["runs (config hashes)"] == "computed from the data"
    assert provenance.loc[("pretrained + fine-tuned", "HaS"), "runs (config hashes)"] == (
        "has0 has1 has2")


# ----------------------------------------------------------------------------- maps
def cams() -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "images": torch.zeros(3, 8, 8, 3, dtype=torch.uint8),
        "labels": torch.tensor([2, 0, 1]),
        "indices": torch.tensor([4, 9, 11]),
        "boxes": [torch.tensor([[1.0, 1.0, 5.0, 6.0]])] * 3,
        "cam_last": torch.rand(3, 3, 4, 4, generator=generator),
        "cam_feature": torch.rand(3, 3, 4, 4, generator=generator),
    }


def test_gt_class_maps_are_the_evaluated_union():
    sample = cams()
    maps = wsol.gt_class_maps(sample, [2, 0])
    assert maps.shape == (2, 8, 8)
    for k, index in enumerate((2, 0)):  # the ground-truth class's union (views.localize_one)
        torch.testing.assert_close(maps[k], localize_one(sample, index, 0.5)["loc_map"])
    one_head = {**sample, "cam_feature": None}
    torch.testing.assert_close(wsol.gt_class_maps(one_head, [1])[0],
                               localize_one(one_head, 1, 0.5)["map_last"])


def test_trivial_sample_maps():
    full = wsol.trivial_sample_maps("full_image", 2, (4, 4), (8, 8))
    assert full.shape == (2, 8, 8) and float(full[0, 4, 4]) == 1.0
    gauss = wsol.trivial_sample_maps("center_gaussian", 1, (4, 4), (8, 8), sigma=1.0)
    # even sides: the four central pixels share the peak; the map is symmetric
    assert float(gauss[0, 3, 3]) == pytest.approx(1.0) and float(gauss[0, 0, 0]) == 0.0
    torch.testing.assert_close(gauss[0], gauss[0].flip(0).flip(1))
    with pytest.raises(ValueError, match="needs its sigma"):
        wsol.trivial_sample_maps("center_gaussian", 1, (4, 4), (8, 8))
    with pytest.raises(ValueError, match="unknown trivial map 'noise'"):
        wsol.trivial_sample_maps("noise", 1, (4, 4), (8, 8))


def test_plot_method_maps_layout():
    sample = cams()
    maps = {"csoa": wsol.gt_class_maps(sample, [0, 1, 2]),
            "full_image": wsol.trivial_sample_maps("full_image", 3, (4, 4), (8, 8)),
            "cam": wsol.gt_class_maps({**sample, "cam_feature": None}, [0, 1, 2])}
    fig = wsol.plot_method_maps(sample, maps, {"csoa": 0.5, "full_image": 0.5,
                                               "cam": math.nan})
    try:
        grid = [ax for ax in fig.axes if ax.get_images()]
        assert len(grid) == 9  # 3 rows x 3 images
        labels = [ax.get_ylabel() for ax in grid[::3]]
        assert labels == ["full-image box", "CAM (base)", "CSoA (as\nwritten)"]  # ROW_ORDER
        assert [ax.get_title() for ax in grid[:3]] == ["#4, class 2", "#9, class 0",
                                                       "#11, class 1"]
        boxes = [sum(isinstance(p, Rectangle) for p in ax.patches) for ax in grid]
        # the ground truth everywhere, the predicted box where theta is a number (not CAM's)
        assert boxes == [2, 2, 2, 1, 1, 1, 2, 2, 2]
        full = [p for p in grid[0].patches if p.get_linestyle() == "--"][0]
        assert full.get_width() == 8 and full.get_height() == 8  # the whole image
    finally:
        plt.close(fig)


def test_plot_accuracy_vs_classification():
    data = pd.concat([frame(), frame().assign(regime="scratch")])
    fig = wsol.plot_accuracy_vs_classification(data)
    try:
        panels = [ax for ax in fig.axes if ax.get_title()]
        assert [ax.get_title() for ax in panels] == ["pretrained + fine-tuned", "from scratch"]
        points = np.concatenate([c.get_offsets() for c in panels[0].collections])
        assert len(points) == 12  # 4 methods x 3 seeds
        lines = [line.get_ydata()[0] for line in panels[0].get_lines()]
        assert lines == [60.0]  # the Gaussian: no classifier, a horizontal line
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend == ["centred Gaussian", "CAM (base)", "HaS", "ADL", "CSoA (as written)"]
    finally:
        plt.close(fig)
