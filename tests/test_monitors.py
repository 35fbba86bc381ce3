"""Collapse monitors (csoa_nb.core.monitors) and the epoch-log warnings that name the collapse."""

from __future__ import annotations

import pytest
import torch

from csoa_nb.core.monitors import collapse_stats, diagnose_collapse
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.train_log import collapse_lines


def test_collapse_stats_by_hand():
    # map 1: [-1, 0; 2, 4] -> 2 of 4 pixels <= 0; S = relu / max = [0, 0; 0.5, 1]: 1 pixel > 0.5
    # map 2: all -1 -> 4 of 4 <= 0, S = 0 everywhere
    cams = torch.tensor([[[-1.0, 0.0], [2.0, 4.0]], [[-1.0, -1.0], [-1.0, -1.0]]])
    stats = collapse_stats(cams)
    assert stats["cam_nonpositive"] == pytest.approx(6 / 8)
    assert stats["fg_saturated"] == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="N x h x w"):
        collapse_stats(cams[0])


def test_each_collapse_is_named():
    assert diagnose_collapse({"cam_nonpositive": 0.2, "fg_saturated": 0.2,
                              "box_mass_ratio": 1.8}) == []
    (negative,) = diagnose_collapse({"cam_nonpositive": 0.99, "fg_saturated": 0.0,
                                     "box_mass_ratio": 0.9})
    assert negative.startswith("all-negative map: 99.0 % of raw CAM pixels")
    (saturated,) = diagnose_collapse({"cam_nonpositive": 0.0, "fg_saturated": 0.8,
                                      "box_mass_ratio": 1.0})
    assert saturated.startswith("saturated map: S > 0.5 on 80.0 %")
    (inverted,) = diagnose_collapse({"cam_nonpositive": 0.1, "fg_saturated": 0.1,
                                     "box_mass_ratio": 0.8})
    assert inverted.startswith("inverted map") and "0.80 < 1" in inverted


def test_warning_lines_only_for_coaug_methods():
    record = {"epoch": 3, "val_cam_nonpositive": 1.0, "val_fg_saturated": 0.0,
              "val_box_mass_ratio": 0.5}
    coaug = RunConfig.from_preset("smoke", method="coaug")
    (line,) = collapse_lines(coaug, record)
    assert line.startswith(f"[{coaug.hash}] WARNING coaug epoch 3: all-negative map")
    assert all(len(row) <= 88 for row in line.splitlines()) and "\n" in line
    assert collapse_lines(RunConfig.from_preset("smoke", method="cam"), record) == []
