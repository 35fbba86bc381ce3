"""Eq. 12 on fixed candidate maps (`core.degenerate`): hand-built maps and the two readings."""

from __future__ import annotations

import pytest
import torch
from fixtures_data import square_objects

from csoa_nb.core.degenerate import (
    CANDIDATES,
    best_candidate,
    box_maps,
    candidate_maps,
    score_candidates,
)
from csoa_nb.core.models import EmbeddingNet


def test_box_maps_by_hand():
    # box (1, 0, 3, 2) on a 3 x 4 image: columns 1-2, rows 0-1 (ends exclusive)
    maps = box_maps([torch.tensor([[1.0, 0.0, 3.0, 2.0]])], (3, 4))
    assert maps.tolist() == [[[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]]


def test_candidate_maps_by_hand():
    mask = torch.zeros(1, 5, 5)
    mask[0, 2, 2] = 1
    maps = candidate_maps(mask, [torch.tensor([[2.0, 2.0, 3.0, 3.0]])], dilation=1)
    assert list(maps) == list(CANDIDATES)
    assert maps["dilated mask"][0].sum() == 9 and maps["dilated mask"][0, 1:4, 1:4].eq(1).all()
    assert maps["inverted mask"][0].sum() == 24
    assert maps["S = 0 (all negative)"].max() < 0 < maps["S = 1 everywhere"].min()
    assert torch.equal(maps["ground-truth box"], mask)


def test_the_two_readings_rank_the_candidates_differently():
    images, masks, boxes, labels = square_objects()
    torch.manual_seed(0)
    embed_net = EmbeddingNet("slim", slim_width=4).freeze()
    scores = score_candidates(images, labels, candidate_maps(masks, boxes), embed_net,
                              gammas=(0.0, 1.0), batch_size=8, classes_per_batch=4)
    assert len(scores) == len(CANDIDATES) * 2 * 2
    best = best_candidate(scores)
    # as written, a map that localizes nothing wins at both gammas
    assert best.loc[("paper", 1.0), "candidate"] == "S = 1 everywhere"
    assert best.loc[("paper", 0.0), "candidate"] == "S = 0 (all negative)"
    assert best.loc[("paper", 0.0), "loss"] == pytest.approx(0.0, abs=1e-3)
    # with the fix, the ground truth wins at gamma 1 (the objects are squares: box == mask);
    # binary maps have D_back = 0
    assert best.loc[("below_mean", 1.0), "candidate"] in ("ground-truth mask",
                                                           "ground-truth box")
    fixed = scores[(scores.background == "below_mean") & (scores.gamma == 1.0)]
    binary = fixed[fixed.candidate.isin(["ground-truth mask", "inverted mask",
                                          "ground-truth box", "S = 1 everywhere"])]
    assert binary["d_back"].max() == pytest.approx(0.0, abs=1e-4)


def test_describe_best_counts_the_winners():
    import pandas as pd

    from csoa_nb.core.degenerate import describe_best

    scores = pd.DataFrame([
        {"candidate": "S = 1 everywhere", "background": "paper", "gamma": 1.0, "loss": 0.5},
        {"candidate": "ground-truth mask", "background": "paper", "gamma": 1.0, "loss": 0.9},
        {"candidate": "S = 0 (all negative)", "background": "paper", "gamma": 0.0, "loss": 0.0},
        {"candidate": "ground-truth mask", "background": "paper", "gamma": 0.0, "loss": 0.3},
        {"candidate": "S = 1 everywhere", "background": "below_mean", "gamma": 1.0,
         "loss": 0.7},
        {"candidate": "ground-truth mask", "background": "below_mean", "gamma": 1.0,
         "loss": 0.4},
    ])
    text = describe_best(scores).splitlines()
    assert text[0] == ("- Eq. 10 as written: the lowest loss goes to S = 0 (all negative) at "
                       "gamma 0; S = 1 everywhere at gamma 1. A map that localizes nothing wins "
                       "at 2 of 2 gammas, the ground truth at 0.")
    assert text[1].endswith("wins at 0 of 1 gammas, the ground truth at 1.")
