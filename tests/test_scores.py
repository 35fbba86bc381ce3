"""The typed scores of a run (`csoa_nb.core.scores.Scores`) and their flat form in `results.json`.

The flat form must stay exactly what the committed runs hold: a run scored now writes the
same keys and values as before, and every committed `results.json` converts to `Scores` and
back unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from csoa_nb.core.scores import THETA_METRICS, Scores, ThetaErrors, split_key
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.evaluate import score_maps

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "results" / "runs").glob("*/results.json"))


def ring_maps() -> dict:
    """One 8 x 8 image: a ring at 0.45 around a core at 1.0; the GT box is the ring's."""
    cam = torch.zeros(1, 8, 8)
    cam[0, 1:7, 1:7] = 0.45  # kept at theta < 0.45: box (1, 1, 7, 7), IoU 1
    cam[0, 2:6, 2:6] = 1.0  # the core alone: box (2, 2, 6, 6), IoU 16 / 36 < 0.5
    return {"cam_last": cam, "cam_feature": None, "probs": torch.tensor([[0.9, 0.1]]),
            "labels": torch.tensor([0]), "boxes": [torch.tensor([[1.0, 1.0, 7.0, 7.0]])],
            "masks": None, "image_size": [8, 8]}


def test_a_scored_case_writes_the_old_flat_form():
    config = RunConfig.from_preset("smoke", method="cam")
    scores = score_maps(ring_maps(), config, thetas=(0.3, 0.5), full=True)
    assert scores.theta == 0.3 and scores.thetas == (0.3, 0.5)
    assert scores.at(0.5) == ThetaErrors(100.0, 100.0, 100.0, 0.0, 0.0)
    assert scores.errors == scores.at(0.3) == ThetaErrors(0.0, 0.0, 0.0, 0.0, 0.0)
    frame = scores.frame()
    assert list(frame.index) == [0.3, 0.5] and list(frame.columns) == list(THETA_METRICS)
    assert list(frame["gt_known_loc_err"]) == [0.0, 100.0]
    record = scores.to_record()
    # the keys of results.json before the scores were typed, by hand
    theta_free = ["top1_loc_err", "top5_loc_err", "gt_known_loc_err", "top1_cls_err",
                  "top5_cls_err"]
    expected = {
        **{k: 0.0 for k in theta_free},
        **{f"{k}@0.3": 0.0 for k in theta_free},
        **{f"{k}@0.5": 100.0 for k in theta_free[:3]},
        "top1_cls_err@0.5": 0.0, "top5_cls_err@0.5": 0.0,
        "gt_known_loc_acc@iou30": 100.0, "gt_known_loc_acc@iou50": 100.0,
        "gt_known_loc_acc@iou70": 100.0,
        "max_box_acc_v2": 100.0, "max_box_acc@30": 100.0, "max_box_acc@50": 100.0,
        "max_box_acc@70": 100.0,
        "best_threshold@30": 0.0, "best_threshold@50": 0.0, "best_threshold@70": 0.0,
        "num_images": 1.0,
        "box_mass_ratio": pytest.approx(64 / 36),  # all the mass in a box of 36 / 64 pixels
        "cam_nonpositive": 28 / 64,  # the pixels outside the ring
        "fg_saturated": 16 / 64,  # the core: S > 0.5
    }
    assert record == expected
    assert all(type(v) is float for v in record.values())
    assert Scores.from_record(json.loads(json.dumps(record)), 0.3) == scores


def test_reading_a_committed_results_json_round_trips():
    assert COMMITTED, "no committed runs under results/runs"
    for path in COMMITTED:
        saved = json.loads(path.read_text())["metrics"]
        theta = json.loads((path.parent / "config.json").read_text())["theta"]
        scores = Scores.from_record(saved, theta)
        again = scores.to_record()
        assert again == saved and list(map(type, again.values())) == [float] * len(again), path
        assert scores.top1_loc_err == saved["top1_loc_err"]
        assert scores.max_box_acc[50] == saved["max_box_acc@50"]
        assert scores.gt_known_loc_acc[70] == saved["gt_known_loc_acc@iou70"]
        assert scores.at(0.2).top1_loc_err == saved["top1_loc_err@0.2"]


def test_the_flat_form_names_theta_and_iou_apart():
    assert split_key("top1_loc_err@0.2") == ("top1_loc_err", 0.2, None)
    assert split_key("gt_known_loc_acc@iou50") == ("gt_known_loc_acc", None, 50)
    assert split_key("max_box_acc@30") == ("max_box_acc", None, 30)
    assert split_key("pxap") == ("pxap", None, None)
    for bad in ("max_box_acc@iou30", "gt_known_loc_acc@50", "pxap@0.2", "top1_loc_err@x",
                "accuracy"):
        with pytest.raises(ValueError, match="is not a metric of a run"):
            split_key(bad)


def test_a_record_that_is_not_one_is_named():
    config = RunConfig.from_preset("smoke", method="cam")
    record = score_maps(ring_maps(), config, thetas=(0.3, 0.5), full=False).to_record()
    with pytest.raises(ValueError, match=r"lack \['top5_loc_err@0.5'\]"):
        Scores.from_record({k: v for k, v in record.items() if k != "top5_loc_err@0.5"}, 0.3)
    with pytest.raises(ValueError, match="'pxap' is 'n/a', not a number"):
        Scores.from_record({**record, "pxap": "n/a"}, 0.3)
    scores = Scores.from_record(record, 0.3)
    assert scores.max_box_acc_v2 is None and scores.max_box_acc == {} and scores.pxap is None
    with pytest.raises(ValueError, match=r"theta 0.4 was not scored \(scored: 0.3, 0.5"):
        scores.at(0.4)
    assert scores.only_thetas((0.5,)).to_record() == {
        k: v for k, v in record.items() if not k.endswith("@0.3")}
