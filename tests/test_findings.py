"""The claims table (csoa_nb.report.findings) on hand-built runs whose differences are known."""

from __future__ import annotations

import pandas as pd
import pytest

from csoa_nb.report import findings


def frame() -> pd.DataFrame:
    # top-1 loc. err per seed: cam 50, 52, 54; confseg 45, 47, 49 (always 5 lower: shown);
    # csoa 52, 50, 55 (diffs +2, -2, +1: mean +0.33, not shown); coaug 60, 61, 62 (opposite)
    rows = []
    values = {"cam": (50, 52, 54), "confseg": (45, 47, 49), "csoa": (52, 50, 55),
              "coaug": (60, 61, 62)}
    for method, errors in values.items():
        for seed, error in enumerate(errors):
            rows.append({"method": method, "regime": "pretrained", "feature_block": 4,
                         "seed": seed, "theta": 0.3, "hash": f"{method}{seed}", "cached": True,
                         "wall_time_s": 60.0, "top1_loc_err": float(error),
                         "top1_cls_err": 10.0})
    return pd.DataFrame(rows)


def test_verdicts_from_the_interval():
    table = findings.claims_table(frame()).set_index(["claim", "compared"])
    confseg = table.loc[("ConfSeg lowers the top-1 loc. error of the base CAM",
                         "ConfSeg − CAM (base)")]
    # six claims have runs on both sides: one family, Holm over six tests
    assert confseg["verdict"] == "reproduced (Holm, 6 tests)" and confseg["kind"] == "reproduced"
    assert confseg["ours (A − B, 95 % CI)"] == "−5.0 [−5.0, −5.0]"
    assert confseg["paper (A − B)"] == "−14.4"  # 39.02 - 53.42, the paper's Table 1
    assert confseg["provenance"].startswith("6 runs (loaded from results/runs; 6 min")
    coaug = table.loc[("CoAug lowers the top-1 loc. error of the base CAM",
                       "CoAug (as written) − CAM (base)")]
    # diffs 10, 9, 8: paired t = 15.6, p = 0.0041; six tests: 6 x 0.0041 = 0.025 < 0.05
    assert coaug["verdict"] == "opposite (Holm, 6 tests)" and coaug["kind"] == "opposite"
    csoa = table.loc[("CSoA lowers the top-1 loc. error of the base CAM",
                      "CSoA (as written) − CAM (base)")]
    assert csoa["verdict"] == "not shown" == csoa["kind"]
    fixed = table.loc[("CoAug lowers the top-1 loc. error of the base CAM (our Eq. 10 fix)",
                       "CoAug+fix (ours) − CAM (base)")]
    assert fixed["verdict"] == "not testable here" and fixed["ours (A − B, 95 % CI)"] == "–"


def test_a_claim_is_stated_with_its_metric_theta_and_numbers():
    table = findings.claims_table(frame())
    said = findings.claim_sentence(table, "CoAug lowers the top-1 loc. error of the base CAM",
                                   "CoAug (as written) − CAM (base)")
    # diffs 10, 9, 8: mean +9.0, half-width t(2) 4.30 x sd 1 / sqrt 3 = 2.48;
    # the paper's 40.78 - 53.42
    assert said == ("opposite (Holm, 6 tests): +9.0 [+6.5, +11.5] points of top-1 loc. error "
                    "at θ = 0.3 (the paper: −12.6)")
    untested = findings.claim_sentence(
        table, "CoAug lowers the top-1 loc. error of the base CAM (our Eq. 10 fix)",
        "CoAug+fix (ours) − CAM (base)")
    assert untested == "not testable here"


def test_verdict_directions():
    diff = findings.difference(pd.Series([1.0, 2.0, 3.0]), pd.Series([5.0, 5.0, 6.0]))
    (lower,) = findings.verdicts([diff], [False])  # the claim: A is lower
    (higher,) = findings.verdicts([diff], [True])
    assert findings.claim_word(lower) == "reproduced" == findings.verdict_kind(lower)
    assert findings.claim_word(higher) == "opposite" == findings.verdict_kind(higher)
    assert findings.claim_word(None) == "not testable here" == findings.verdict_kind(None)


def test_headline_groups_by_verdict():
    groups = findings.headline(findings.claims_table(frame()))
    assert set(groups) == set(findings.VERDICTS)
    assert any(text.startswith("ConfSeg lowers") for text in groups["reproduced"])
    assert sum(map(len, groups.values())) == len(findings.CLAIMS)


@pytest.mark.parametrize("claim", findings.CLAIMS, ids=lambda c: f"{c.a}-{c.b}-{c.metric}")
def test_every_claim_reads_its_paper_numbers(claim):
    a, b = findings._paper_numbers(claim)
    assert 0 < a < 100 and 0 < b < 100


class FakeRun:
    """A two-head run of two 8 x 8 test images whose saved maps and scores are chosen so that
    the y_L-only scores and S_L alone differ from the averaged scores and the union."""

    def __init__(self):
        from csoa_nb.engine.config import RunConfig

        self.config = RunConfig.from_preset("smoke", method="csoa", num_classes=2,
                                       classes_per_batch=2, theta=0.5)

    def eval_maps(self):
        import torch

        cam_last = torch.zeros(2, 8, 8)
        cam_last[:, 2:4, 2:4] = 1.0  # S_L: the top-left quarter of the object
        cam_feature = torch.zeros(2, 8, 8)
        cam_feature[:, 2:6, 2:6] = 1.0  # S_F: the whole object
        return {
            "cam_last": cam_last, "cam_feature": cam_feature,
            # averaged: both right; y_L alone: image 1 wrong
            "probs": torch.tensor([[0.9, 0.1], [0.4, 0.6]]),
            "probs_last": torch.tensor([[0.9, 0.1], [0.6, 0.4]]),
            "labels": torch.tensor([0, 1]),
            "boxes": [torch.tensor([[2.0, 2.0, 6.0, 6.0]])] * 2,
            "masks": None, "image_size": [8, 8],
        }


def test_head_ablation_by_hand():
    row = findings.head_ablation([FakeRun()]).iloc[0]
    assert row["method"] == "csoa"
    assert (row["top1_cls_err"], row["top1_cls_err_last"]) == (0.0, 50.0)
    # the union is the object (IoU 1); S_L alone gives a 2 x 2 box: IoU 4/16 < 0.5
    assert (row["gt_known_loc_err"], row["gt_known_loc_err_last"]) == (0.0, 100.0)


def test_differences_are_described_from_the_numbers():
    shown = findings.difference(pd.Series([1.0, 2.0, 3.0]), pd.Series([5.0, 5.0, 6.0]))
    unclear = findings.difference(pd.Series([1.0, 5.0, 3.0]), pd.Series([2.0, 2.0, 4.0]))
    candidates = {"heads": shown, "lr": unclear}
    frame = findings.differences_frame(candidates, "cls. err")
    assert frame["verdict"].tolist() == ["shown (Holm, 2 tests)", "not shown"]
    assert frame["Δ cls. err (points)"].tolist() == pytest.approx([-10 / 3, 1 / 3])
    text = findings.describe_differences(candidates, "cls. err")
    # diffs -4, -3, -3: mean -3.33, sd 0.577, se 1/3; half-width 4.303 / 3 = 1.434
    # p = 0.0099 alone, 0.020 after Holm over the two changes
    assert "- heads, cls. err: −3.3 points, 95 % CI [−4.8, −1.9]: shown (Holm, 2 tests)." in text
    assert ("largest change of the cls. err that these runs show (Holm over the 2 changes): "
            "**heads** (−3.3") in text
    assert "- lr, cls. err: +0.3 points" in text and "contains 0: not shown." in text


def test_versus_base_by_hand():
    """Paired differences over three seeds (t quantile 4.303 for 2 degrees of freedom): the fix
    row's MaxBoxAccV2 differs from CAM's by 1, 2, 3 (mean 2, sd 1: CI 2 ± 2.48, not shown) and
    its error by -3, -4, -5 (mean -4: CI [-6.5, -1.5], p = 0.020, better because lower is
    better, but 3 x 0.020 = 0.061 after Holm over the table's 4 tests: suggested); the
    as-written row's MaxBoxAccV2 by -10, -11, -12 (worse, p = 0.0011, 0.0045 after Holm). Other
    regimes and blocks are ignored."""
    rows = []
    for seed in range(3):
        base = {"regime": "scratch", "feature_block": 4, "seed": seed}
        rows += [
            {**base, "method": "cam", "max_box_acc_v2": 50.0 + seed, "top1_loc_err": 40.0},
            {**base, "method": "coaug_fix", "max_box_acc_v2": 51.0 + 2 * seed,
             "top1_loc_err": 37.0 - seed},
            {**base, "method": "coaug", "max_box_acc_v2": 40.0, "top1_loc_err": 40.0},
            {**base, "regime": "pretrained", "method": "coaug", "max_box_acc_v2": 99.0,
             "top1_loc_err": 0.0},
            {**base, "feature_block": 5, "method": "coaug", "max_box_acc_v2": 99.0,
             "top1_loc_err": 0.0},
        ]
    frame = pd.DataFrame(rows)
    table = findings.versus_base(frame, "scratch", metrics=("max_box_acc_v2", "top1_loc_err"))
    by_row = table.set_index("row")
    assert list(by_row.index) == ["CoAug (as written)", "CoAug+fix (ours)"]
    assert by_row.loc["CoAug+fix (ours)", "MaxBoxAccV2"] == "+2.0 [−0.5, +4.5] not shown"
    assert by_row.loc["CoAug+fix (ours)", "Top-1 loc. err"] == (
        "−4.0 [−6.5, −1.5] suggested better (unadjusted p = 0.020)")
    assert by_row.loc["CoAug (as written)", "MaxBoxAccV2"].endswith(" worse (Holm, 4 tests)")
    assert by_row.loc["CoAug (as written)", "MaxBoxAccV2"].startswith("−11.0 ")
    assert by_row["seeds"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="no 'cam' run in regime 'pretrained'"):
        findings.versus_base(frame[frame.method != "cam"], "pretrained")


def test_a_claim_that_does_not_survive_holm_is_suggested():
    """p = 0.03 alone reproduces a claim; beside a second test (p = 0.04) Holm gives 0.06 and
    0.06: neither is reproduced, both are suggested, with their direction and unadjusted p."""
    a = findings.Difference(-2.0, -3.0, -1.0, 5, True, 0.03)
    b = findings.Difference(1.0, 0.5, 1.5, 5, True, 0.04)
    (alone,) = findings.verdicts([a], [False])
    assert findings.claim_word(alone) == "reproduced"
    first, second = findings.verdicts([a, b], [False, False])
    assert findings.claim_word(first) == (
        "suggested (the paper's direction; unadjusted p = 0.030)")
    assert findings.claim_word(second) == (
        "suggested (the opposite direction; unadjusted p = 0.040)")
    assert findings.verdict_kind(first) == "suggested" == findings.verdict_kind(second)


def test_box_hits_give_a_committed_runs_max_box_acc_v2():
    """The per-image hits that the bootstrap re-weights average to the run's own MaxBoxAccV2."""
    from pathlib import Path

    from csoa_nb.engine.evaluate import box_hits
    from csoa_nb.engine.runs import load_run
    from csoa_nb.report.stats import box_acc_v2

    runs = Path(__file__).resolve().parents[1] / "results" / "runs"
    run = load_run(next(p.parent for p in sorted(runs.glob("*/results.json"))))
    hits = box_hits(run.eval_maps())
    assert hits.shape == (run.scores.num_images, 3, 100) and hits.dtype == bool
    assert box_acc_v2(hits.mean(0)) == pytest.approx(run.scores.max_box_acc_v2, abs=1e-9)


def test_a_change_suggested_before_the_adjustment_is_named():
    # diffs 5, 6, 9: mean 6.67, sd 2.08, t = 5.55 on 2 df, p = 0.031 alone; Holm over the five
    # changes (the other four with p = 1): 0.155, not shown, but suggested
    moved = findings.difference(pd.Series([15.0, 16.0, 19.0]), pd.Series([10.0, 10.0, 10.0]))
    flat = findings.difference(pd.Series([1.0, 2.0, 3.0]), pd.Series([1.0, 2.0, 3.0]))
    text = findings.describe_differences(
        {"head lr": moved, "a": flat, "b": flat, "c": flat, "d": flat}, "cls. err")
    assert ("- No change of the cls. err is shown once adjusted for the 5 changes tested "
            "together (Holm); only suggested, before the adjustment: **head lr** (+6.7 "
            "points).") in text
