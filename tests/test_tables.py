"""The table chapters' tables, sentences and figures, on a hand-built frame of fake runs.

Every number below is chosen so that the means and sample stds (ddof 1) can be checked by hand.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from csoa_nb import methods
from csoa_nb.core.scores import Scores, ThetaErrors
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.runs import RunResult
from csoa_nb.report import charts, prose, tables, vocabulary

# method, regime, seed, top1_loc, top5_loc, top1_cls, top5_cls, maxboxacc_v2, pxap, gt_known
RUNS = [
    ("cam", "pretrained", 0, 50, 40, 10, 1, 60, 30, 45),
    ("cam", "pretrained", 1, 52, 40, 20, 2, 62, 31, 46),
    ("cam", "pretrained", 2, 54, 40, 30, 3, 64, 32, 47),
    ("confseg", "pretrained", 0, 45, 35, 10, 1, 65, 40, 40),
    ("confseg", "pretrained", 1, 50, 35, 10, 1, 66, 41, 41),
    ("confseg", "pretrained", 2, 55, 35, 10, 1, 67, 42, 42),
    ("csoa", "pretrained", 0, 40, 30, 9, 1, 70, 29, 35),
    ("csoa", "pretrained", 1, 41, 31, 10, 1, 71, 30, 36),
    ("csoa", "pretrained", 2, 42, 32, 11, 1, 72, 31, 37),
    ("cam", "scratch", 0, 80, 70, 20, 5, 30, 20, 75),
]
METRICS = ("top1_loc_err", "top5_loc_err", "top1_cls_err", "top5_cls_err", "max_box_acc_v2",
           "pxap", "gt_known_loc_err")


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = []
    for method, regime, seed, *values in RUNS:
        rows.append({"method": method, "regime": regime, "feature_block": 4, "seed": seed,
                     "hash": f"{method}{regime}{seed}", "wall_time_s": 10.0 + seed,
                     **dict(zip(METRICS, map(float, values), strict=True))})
    # csoa with W_F after blocks 3 and 5 (Table 2), pretrained, one seed each
    for block, top1 in ((3, 60.0), (5, 70.0)):
        rows.append({**rows[6], "feature_block": block, "hash": f"b{block}", "top1_loc_err": top1})
    return pd.DataFrame(rows)


@pytest.fixture
def table1_frame(frame) -> pd.DataFrame:
    return frame[frame.feature_block == 4]


def test_ours_table1_means_stds_strings_and_labels(table1_frame):
    table = tables.ours_table1(table1_frame, "pretrained")
    assert list(table.index) == ["CAM (base)", "ConfSeg", "CSoA (as written)"]  # Table 1
    assert table.index.name == "Method"
    assert list(table.columns) == ["Top-1 loc. err", "Top-5 loc. err", "Top-1 cls. err",
                                   "Top-5 cls. err", "MaxBoxAccV2"]
    # cam: (50 + 52 + 54) / 3 = 52, std sqrt((4 + 0 + 4) / 2) = 2
    assert table.loc["CAM (base)", "Top-1 loc. err"] == "52.0 ± 2.0"
    # cam top-1 cls: 10, 20, 30 -> 20 ± 10
    assert table.loc["CAM (base)", "Top-1 cls. err"] == "20.0 ± 10.0"
    # confseg: 45, 50, 55 -> 50 ± 5; top-5 constant -> std 0
    assert table.loc["ConfSeg", "Top-1 loc. err"] == "50.0 ± 5.0"
    assert table.loc["ConfSeg", "Top-5 loc. err"] == "35.0 ± 0.0"
    mean, std = tables.numeric(table), tables.numeric(table, "std")
    assert mean.loc["CSoA (as written)", "MaxBoxAccV2"] == pytest.approx(71.0)
    assert std.loc["CSoA (as written)", "Top-1 loc. err"] == pytest.approx(1.0)
    assert list(table.attrs["seeds"]) == [3, 3, 3]


def test_single_seed_rows_show_the_mean_only(table1_frame):
    table = tables.ours_table1(table1_frame, "scratch")
    assert table.loc["CAM (base)", "Top-1 loc. err"] == "80.0"
    assert tables.numeric(table, "std").loc["CAM (base)", "Top-1 loc. err"] == 0.0


def test_rows_by_regime_and_method(table1_frame):
    table = tables.ours_table(table1_frame, ["gt_known_loc_err"], rows=["regime", "method"])
    assert list(table.index) == [("pretrained + fine-tuned", "CAM (base)"),
                                 ("pretrained + fine-tuned", "ConfSeg"),
                                 ("pretrained + fine-tuned", "CSoA (as written)"),
                                 ("from scratch", "CAM (base)")]
    assert table.iloc[2, 0] == "36.0 ± 1.0"


def test_mixed_settings_in_one_row_are_refused(frame):
    with pytest.raises(ValueError, match="repeat a seed"):
        tables.ours_table1(frame, "pretrained")  # csoa block 3/4/5 share seed 0


def test_filters_and_metrics_are_checked(frame):
    with pytest.raises(ValueError, match="no run matches"):
        tables.ours_table(frame, regime="imagenet")
    with pytest.raises(ValueError, match="not columns"):
        tables.ours_table(frame, ["top1_loc_err@0.7"], regime="pretrained", feature_block=4)


def test_table2_rows_are_named_like_the_paper(frame):
    table = tables.ours_table2(frame[frame.regime == "pretrained"])
    assert list(table.index) == ["CSoA-3-5", "CSoA-4-5", "CSoA-5-5"]
    assert list(table["Top-1 loc. err"]) == ["60.0", "41.0 ± 1.0", "70.0"]


def test_labels():
    assert vocabulary.ours_label(RunConfig.from_preset("cpu"), 3) == (
        "ours, preset cpu, synthetic benchmark, vgg_slim, 3 seeds")
    assert vocabulary.ours_label(RunConfig.from_preset("paper", device="cpu"), [0], "scratch") == (
        "ours, preset paper, CUB-200-2011, VGG16, 1 seed (seed 0), from scratch")
    assert vocabulary.seed_list([4, 0, 1, 2, 6]) == "seeds 0-2, 4, 6"
    # a runs frame: the seed counts of the regime's rows (5 for CAM, 3 for the ablation; the
    # scratch rows' 2 do not count for "pretrained")
    runs = pd.DataFrame(
        [{"regime": "pretrained", "method": "cam", "seed": s} for s in range(5)]
        + [{"regime": "pretrained", "method": "twohead", "seed": s} for s in range(3)]
        + [{"regime": "scratch", "method": "cam", "seed": s} for s in range(2)]
    )
    cpu = RunConfig.from_preset("cpu")
    assert vocabulary.ours_label(cpu, runs, "pretrained").endswith(", 3-5 seeds, pretrained + "
                                                                   "fine-tuned")
    assert vocabulary.ours_label(cpu, runs, "scratch").endswith(
        ", 2 seeds (seeds 0-1), from scratch")
    assert vocabulary.paper_row_map(1)["VGGnet-CSoA"] == "CSoA (as written)"
    assert vocabulary.column_label("top1_loc_err@0.2") == "Top-1 loc. err (θ 0.2)"
    assert vocabulary.higher_is_better("pxap")
    assert not vocabulary.higher_is_better("top1_loc_err@0.2")


def _paper() -> pd.DataFrame:
    paper = pd.DataFrame(
        {"Top-1 loc. err": [47.48, 53.42, 37.69], "Top-5 loc. err": [38.04, None, 26.49]},
        index=pd.Index(["VGGnet-DANet", "VGGnet-base", "VGGnet-CSoA"], name="Method"),
    )
    paper.attrs["label"] = "paper, test"
    return paper


def test_side_by_side_aligned(table1_frame):
    ours = tables.ours_table1(table1_frame, "pretrained", metrics=["top1_loc_err"])
    out = tables.side_by_side(_paper(), ours, "ours, test", row_map=vocabulary.paper_row_map(1))
    assert out.columns.names == ["source", None]
    assert list(out.columns) == [("paper, test", "paper row"),
                                 ("paper, test", "Top-1 loc. err"),
                                 ("paper, test", "Top-5 loc. err"),
                                 ("ours, test", "Top-1 loc. err")]
    # paper order first (DANet has no counterpart), then our rows the paper lacks
    assert list(out.index) == ["VGGnet-DANet", "CAM (base)", "CSoA (as written)", "ConfSeg"]
    assert out.loc["CAM (base)", ("paper, test", "paper row")] == "VGGnet-base"
    assert out.loc["CAM (base)", ("paper, test", "Top-1 loc. err")] == "53.42"
    assert out.loc["CAM (base)", ("paper, test", "Top-5 loc. err")] == vocabulary.MISSING
    assert out.loc["CSoA (as written)", ("ours, test", "Top-1 loc. err")] == "41.0 ± 1.0"
    assert out.loc["VGGnet-DANet", ("ours, test", "Top-1 loc. err")] == ""
    assert out.loc["ConfSeg", ("paper, test", "Top-1 loc. err")] == ""


def test_side_by_side_stacked(table1_frame):
    ours = tables.ours_table1(table1_frame, "pretrained", metrics=["top1_loc_err"])
    out = tables.side_by_side(_paper(), ours, "ours, test", stacked=True)
    assert out.index.names == ["source", "Method"]
    assert out.loc[("paper, test", "VGGnet-CSoA"), "Top-1 loc. err"] == "37.69"
    assert out.loc[("ours, test", "ConfSeg"), "Top-1 loc. err"] == "50.0 ± 5.0"
    assert out.loc[("ours, test", "ConfSeg"), "Top-5 loc. err"] == ""


def test_ranking_table_and_summary(table1_frame):
    ranks = tables.ranking_table(table1_frame, ["top1_loc_err", "max_box_acc_v2", "pxap"],
                                 regime="pretrained")
    # top-1 loc err (lower better): csoa 41, confseg 50, cam 52
    assert ranks["Top-1 loc. err"].to_dict() == {"CAM (base)": 3, "ConfSeg": 2,
                                                  "CSoA (as written)": 1}
    # MaxBoxAccV2 (higher better): csoa 71, confseg 66, cam 62: same order
    assert ranks["MaxBoxAccV2"].to_dict() == {"CAM (base)": 3, "ConfSeg": 2,
                                                  "CSoA (as written)": 1}
    # PxAP (higher better): confseg 41, cam 31, csoa 30
    assert ranks["PxAP"].to_dict() == {"CAM (base)": 2, "ConfSeg": 1,
                                           "CSoA (as written)": 3}
    text = prose.ranking_summary(ranks)
    assert text.startswith(
        "By Top-1 loc. err, best first: CSoA (as written), ConfSeg, CAM (base).")
    assert "By MaxBoxAccV2 the ranking is the same." in text
    assert ("By PxAP the ranking changes: CAM (base) 3 → 2; ConfSeg 2 → 1; "
            "CSoA (as written) 1 → 3.") in text


def test_ties_share_the_better_rank():
    frame = pd.DataFrame({"method": ["cam", "csoa", "confseg"], "seed": [0, 0, 0],
                          "top1_loc_err": [50.0, 50.0, 60.0]})
    ranks = tables.ranking_table(frame, ["top1_loc_err"])
    assert ranks["Top-1 loc. err"].to_dict() == {"CAM (base)": 1, "ConfSeg": 3,
                                                  "CSoA (as written)": 1}


def test_compare_with_a_confidence_interval(table1_frame):
    # csoa - cam per seed: 40-50, 41-52, 42-54 = -10, -11, -12: mean -11, sd 1; 95 % CI
    # -11 -+ t(0.975, 2) / sqrt(3) = -11 -+ 2.484 = [-13.48, -8.52], excludes 0
    text = prose.compare(table1_frame, "csoa", "cam", "top1_loc_err", regime="pretrained")
    assert text == (
        "The top-1 loc. error of CSoA (as written) is lower (better) than that of CAM (base) by "
        "11.00 points (CSoA (as written) 41.00 ± 1.00, CAM (base) 52.00 ± 2.00): the difference "
        "is shown, its 95 % CI is [−13.48, −8.52] points (paired t over 3 seeds).")
    # confseg - cam: -5, -2, +1: mean -2, sd 3; CI -2 -+ 4.303 * 3 / sqrt(3) = [-9.45, +5.45]
    result = prose.compare_runs(table1_frame, "confseg", "cam", "top1_loc_err",
                                 regime="pretrained")
    assert result.difference == pytest.approx(-2.0)
    assert (result.diff.low, result.diff.high) == pytest.approx((-9.4524, 5.4524), abs=1e-4)
    assert result.a_is_better and result.shown is False and result.verdict == (
        "no difference shown")
    assert not result.a_better_shown
    assert "do not show a difference, its 95 % CI [−9.45, +5.45] points (paired t over 3 seeds) " \
        "contains 0." in str(result)
    # higher is better for MaxBoxAccV2: cam 62 vs csoa 71 is lower and worse
    text = prose.compare(table1_frame, "cam", "csoa", "max_box_acc_v2", regime="pretrained")
    assert text.startswith(
        "The MaxBoxAccV2 of CAM (base) is lower (worse) than that of CSoA (as written) by 9.00 "
        "points")


def test_compare_with_one_seed_makes_no_claim(table1_frame):
    one = table1_frame[table1_frame.seed == 0]
    result = prose.compare_runs(one, "csoa", "cam", "top1_loc_err", regime="pretrained")
    assert result.shown is None and not result.a_better_shown
    assert "(CSoA (as written) 40.00, CAM (base) 50.00): a single seed" in str(result)


def test_table1_findings(table1_frame):
    text = prose.table1_findings(table1_frame, "pretrained")
    assert text.splitlines()[0] == (
        "- Best first by top-1 loc. error: CSoA (as written) 41.0, ConfSeg 50.0, CAM (base) 52.0.")
    # of the steps only CSoA − ConfSeg has both rows here: 41, 40, 42 against 45, 50, 55
    # (-4, -10, -13: mean -9.0); a family of one; no row against CAM (chapter 15 has those)
    assert text.splitlines()[1].startswith(
        "- The top-1 loc. error of CSoA (as written) is lower (better) than that of ConfSeg by "
        "9.0 points")
    assert len(text.splitlines()) == 2 and "CAM (base) by" not in text
    one = prose.table1_findings(table1_frame[table1_frame.seed == 0], "pretrained")
    assert "a single seed, so there is no confidence interval" in one


class FakeRun(RunResult):
    """A run whose saved maps are one 8 x 8 image, built so that theta decides the box."""

    def eval_maps(self):
        cam = torch.zeros(1, 8, 8)
        cam[0, 1:7, 1:7] = 0.45  # a ring kept at theta < 0.45
        cam[0, 2:6, 2:6] = 1.0  # the core, kept at every theta
        return {"cam_last": cam, "cam_feature": None, "probs": torch.tensor([[0.9, 0.1]]),
                "labels": torch.tensor([0]), "boxes": [torch.tensor([[1.0, 1.0, 7.0, 7.0]])],
                "masks": None, "image_size": [8, 8]}


def test_theta_frame_reads_saved_thetas_and_computes_the_others():
    config = RunConfig.from_preset("smoke", method="cam")
    saved = ThetaErrors(12.5, 12.5, 12.5, 12.5, 12.5)
    scores = Scores(theta=0.3, errors=saved, by_theta={0.3: saved}, gt_known_loc_acc={},
                    num_images=1)
    run = FakeRun(config=config, run_dir=Path("unused"), scores=scores)
    out = tables.theta_frame([run], thetas=(0.3, 0.4, 0.5))
    assert list(out.theta) == [0.3, 0.4, 0.5]
    assert out.loc[0, "top1_loc_err"] == 12.5  # read, not recomputed
    # theta 0.4: the ring is kept, box (1, 1, 7, 7) = GT box, IoU 1 -> no error
    assert out.loc[1, "gt_known_loc_err"] == 0.0
    # theta 0.5: the core only, box (2, 2, 6, 6): IoU 16 / 36 = 0.44 < 0.5 -> error
    assert out.loc[2, "gt_known_loc_err"] == 100.0
    assert out.loc[2, "top1_loc_err"] == 100.0
    assert set(out.columns) >= {"method", "regime", "seed", "theta", "hash"}
    table = tables.theta_table(out, method="cam", regime="pretrained", theta=(0.4, 0.5))
    assert list(table.index) == [0.4, 0.5] and table.index.name == "Theta"
    assert list(table["Top-1 loc. err"]) == ["0.0", "100.0"]
    best = tables.best_theta(out)
    assert best.loc[("pretrained + fine-tuned", "CAM (base)"), "best theta"] == 0.4
    with pytest.raises(ValueError, match="theta must lie"):
        tables.theta_frame([run], thetas=(1.5,))


def _check_figure(fig) -> None:
    """A figure that renders, in the house style: no wider than the text column, no text
    smaller than `style.MIN_FONT_PT` (the "small" legends and titles are lifted)."""
    from matplotlib.text import Text

    from csoa_nb.report import style
    assert isinstance(fig, Figure)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.tell() > 0
    assert fig.get_size_inches()[0] <= style.COLUMN_WIDTH_IN + 1e-9
    sizes = [text.get_fontsize() for text in fig.findobj(Text) if text.get_text()]
    assert sizes and min(sizes) >= style.MIN_FONT_PT


def test_figures(frame, table1_frame):
    _check_figure(charts.plot_methods(table1_frame, ["top1_loc_err", "max_box_acc_v2"]))
    _check_figure(charts.plot_methods(frame, "top1_loc_err", rows="feature_block", hue=None,
                                      method="csoa"))
    ours = tables.ours_table1(table1_frame, "pretrained")
    _check_figure(charts.plot_paper_vs_ours(_paper(), ours, "Top-5 loc. err",
                                            ours_label="ours, test", highlight=["VGGnet-CSoA"]))
    _check_figure(charts.plot_paper_vs_ours(_paper(), None, "Top-1 loc. err"))
    ranks = tables.ranking_table(table1_frame, ["top1_loc_err", "pxap"], regime="pretrained")
    _check_figure(charts.plot_ranks(ranks))
    thetas = pd.DataFrame({"method": ["cam"] * 4, "regime": ["pretrained"] * 4,
                           "seed": [0, 1, 0, 1], "theta": [0.2, 0.2, 0.3, 0.3],
                           "top1_loc_err": [50.0, 52.0, 40.0, 44.0]})
    paper3 = pd.DataFrame({"Top-1 loc. err": [39.13, 37.69]},
                          index=pd.Index([0.2, 0.3], name="Theta"))
    _check_figure(charts.plot_theta(thetas, paper=paper3, marked=0.3))


def test_column_width_is_the_house_styles():
    from csoa_nb.report import style
    assert charts.COLUMN_WIDTH_IN == style.COLUMN_WIDTH_IN


def test_plot_methods_stacks_panels_that_do_not_fit_side_by_side(table1_frame):
    # 3 methods need 0.75 * 3 + 1 = 3.25 in a panel: two fit the 6.9 in column side by side.
    fig = charts.plot_methods(table1_frame, ["top1_loc_err", "max_box_acc_v2"])
    first, second = (ax.get_position() for ax in fig.axes)
    assert first.y0 == pytest.approx(second.y0) and first.x1 < second.x0
    # 7 methods need 6.25 in: one panel a row, sharing the x axis, labels on the last only.
    many = pd.concat([table1_frame.assign(method=key) for key in methods.TABLE1_ROWS])
    many = many.drop_duplicates(["method", "regime", "seed"])
    fig = charts.plot_methods(many, ["top1_loc_err", "max_box_acc_v2"])
    top, bottom = fig.axes
    assert top.get_position().y0 > bottom.get_position().y1
    assert not any(label.get_visible() for label in top.get_xticklabels())
    assert [t.get_text() for t in bottom.get_xticklabels()][-1] == "CSoA+fix\n(ours)"


def test_plot_methods_colours_methods_by_method(frame):
    csoa = frame[frame.method == "csoa"]
    two = pd.concat([csoa, csoa.assign(method="csoa_fix", hash=csoa.hash + "fix")])
    fig = charts.plot_methods(two, "top1_loc_err", rows="feature_block", hue="method")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    colours = {label: handle.lines[0].get_color()
               for handle, label in zip(handles, labels, strict=True)}
    assert colours == {"CSoA (as written)": methods.ROWS["csoa"].color,
                       "CSoA+fix (ours)": methods.ROWS["csoa_fix"].color}


def test_settings_table():
    table = tables.settings_table(RunConfig.from_preset("paper", device="cpu"))
    assert table.loc["batch_size", "value"] == "48"
    assert "48" in table.loc["batch_size", "Sec. 4.1"]


def test_formatted_keeps_the_papers_precision_and_dashes():
    paper = pd.DataFrame({"Top-1 cls. err": [35.0, None], "Top-1 loc. err": [58.94, 53.36]},
                         index=["GoogLeNet-GAP", "GoogLeNet-SPG"])
    out = tables.formatted(paper)
    assert out.loc["GoogLeNet-GAP", "Top-1 cls. err"] == "35.0"
    assert out.loc["GoogLeNet-SPG", "Top-1 cls. err"] == vocabulary.MISSING
    assert tables.formatted(paper, 2).loc["GoogLeNet-GAP", "Top-1 cls. err"] == "35.00"


def test_cli_command_rebuilds_the_same_config():
    import shlex

    from csoa_nb.engine.train_cli import config_from_args, parse_args

    config = RunConfig.from_preset("paper", method="confseg", dataset="ilsvrc", data_root="/data",
                              seed=2)
    line = tables.cli_command(config)
    assert line.startswith(
        "python -m csoa_nb.engine.train --preset paper --method confseg --seed 2"
    )
    assert "--set dataset=ilsvrc" in line and "--set num_classes=1000" in line
    rebuilt = config_from_args(parse_args(shlex.split(line)[3:]))
    assert rebuilt == config


def test_formatted_reprints_each_column_at_its_precision():
    paper = pd.DataFrame({"GT-known loc. err": [45.01, 33.8]},
                         index=["AlexNet-GAP", "CSoA (as written)"])
    assert list(tables.formatted(paper)["GT-known loc. err"]) == ["45.01", "33.80"]


def test_a_family_in_one_sentence(table1_frame):
    # CSoA − CAM: 41, 40, 42 against 50, 52, 54 (-9, -12, -12: mean -11, shown); ConfSeg − CAM:
    # 45, 50, 55 against 50, 52, 54 (-5, -2, +1: not shown); Holm over the two
    family = prose.compare_all(table1_frame, [("csoa", "cam"), ("confseg", "cam")],
                               "top1_loc_err", regime="pretrained")
    said = prose.family_summary(family)
    assert said.startswith("Of these 2 comparisons (Holm over them), 1 is shown: "
                           "CSoA (as written) − CAM (base), top-1 loc. error: −11.0 points [")
    assert said.endswith("better (Holm, 2 tests).") and "ConfSeg" not in said
    one = prose.compare_all(table1_frame[table1_frame.seed == 0], [("csoa", "cam")],
                            "top1_loc_err", regime="pretrained")
    assert prose.family_summary(one) == "This comparison has one seed: no interval, no verdict."


def test_the_papers_theta_panel_does_not_blow_up_a_point_and_a_half():
    thetas = pd.DataFrame({"method": ["cam"] * 4, "regime": ["pretrained"] * 4,
                           "seed": [0, 1, 0, 1], "theta": [0.2, 0.2, 0.3, 0.3],
                           "top1_loc_err": [50.0, 52.0, 40.0, 44.0]})
    paper3 = pd.DataFrame({"Top-1 loc. err": [39.13, 37.69, 38.82]},
                          index=pd.Index([0.2, 0.3, 0.4], name="Theta"))
    fig = charts.plot_theta(thetas, paper=paper3, marked=0.3)
    low, high = fig.axes[0].get_ylim()
    assert high - low == pytest.approx(charts.PAPER_SPAN)  # 1.44 points in 10 of axis
    assert [t.get_text() for t in fig.axes[0].texts] == ["39.13", "37.69", "38.82"]
