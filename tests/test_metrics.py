"""Tests of the metrics: csoa_nb.core.boxes, loc_errors, maxboxacc, pxap, ten_crop and metrics.
Expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from csoa_nb.core.boxes import best_iou, box_iou, max_iou, pad_boxes
from csoa_nb.core.loc_errors import localization_errors
from csoa_nb.core.localize import binarize, largest_component_box
from csoa_nb.core.maxboxacc import MaxBoxAccV2, max_box_acc
from csoa_nb.core.metrics import LocalizationEvaluator
from csoa_nb.core.pxap import PxAP, pxap
from csoa_nb.core.ten_crop import ten_crop_logits

T = torch.tensor


# ----------------------------------------------------------------------------- IoU
def test_box_iou_hand_values():
    a = T([[0.0, 0.0, 4.0, 4.0]])
    b = T([[2.0, 2.0, 5.0, 5.0], [0, 0, 4, 4], [4, 0, 6, 4], [10, 10, 12, 12]])
    iou = box_iou(a, b)
    assert iou.shape == (1, 4) and iou.dtype == torch.float64
    # (2,2,5,5): inter 2*2 = 4, union 16 + 9 - 4 = 21 ; identical -> 1 ;
    # (4,0,6,4) only touches x = 4 (exclusive ends): inter 0 ; far away -> 0
    assert iou[0].tolist() == pytest.approx([4 / 21, 1.0, 0.0, 0.0])


def test_box_iou_empty_boxes_never_nan():
    empty = T([[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 8.0]])  # zero area, zero width
    iou = box_iou(empty, torch.cat([empty, T([[0.0, 0.0, 4.0, 4.0]])]))
    assert not torch.isnan(iou).any()
    assert torch.equal(iou, torch.zeros(2, 3, dtype=torch.float64))
    assert box_iou(torch.zeros(0, 4), T([[0.0, 0, 1, 1]])).shape == (0, 1)


def test_box_iou_errors():
    with pytest.raises(ValueError, match=r"a\[0\].*NaN"):
        box_iou(T([[0.0, float("nan"), 1, 1]]), T([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"b\[1\].*inverted"):
        box_iou(T([[0.0, 0, 1, 1]]), T([[0.0, 0, 1, 1], [5.0, 0, 2, 3]]))
    with pytest.raises(ValueError, match="N x 4"):
        box_iou(T([0.0, 0, 1, 1]), T([[0.0, 0, 1, 1]]))


def test_max_iou_per_image():
    pred = T([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    gts = [
        T([[2.0, 2.0, 5.0, 5.0], [0.0, 0.0, 4.0, 2.0]]),  # 4/21 and 8/16 = 0.5 -> 0.5
        T([0.0, 0.0, 2.0, 4.0]),  # a single 1-D box: inter 4, union 8 -> 0.5
        torch.zeros(0, 4),  # no GT -> 0
    ]
    assert max_iou(pred, gts).tolist() == pytest.approx([0.5, 0.5, 0.0])
    # agrees with box_iou
    assert max_iou(pred[:1], gts[:1]).item() == box_iou(pred[:1], gts[0]).max().item()
    with pytest.raises(ValueError, match="2 entries but there are 3"):
        max_iou(pred, gts[:2])
    with pytest.raises(ValueError, match=r"gt_boxes\[0\].*inverted"):
        max_iou(pred[:1], [T([[3.0, 0, 1, 1]])])


def test_best_iou_scores_every_thresholds_boxes_at_once():
    # two thresholds' boxes for the images of test_max_iou_per_image: row k is what max_iou
    # gives for the k-th set (the second set: 9/16, 4/8, no GT; exact in float64)
    gts = [T([[2.0, 2.0, 5.0, 5.0], [0.0, 0.0, 4.0, 2.0]]), T([[0.0, 0.0, 2.0, 4.0]]),
           torch.zeros(0, 4)]
    first = T([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    second = T([[1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 1.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
    padded = pad_boxes(gts)
    assert padded.shape == (3, 2, 4) and padded[1, 1].abs().sum() == 0  # padded with 0 boxes
    both = best_iou(torch.stack([first, second]), padded)
    assert both.tolist() == [[0.5, 0.5, 0.0], [9 / 16, 0.5, 0.0]]
    assert torch.equal(both[1], max_iou(second, gts))
    assert best_iou(first, pad_boxes([torch.zeros(0, 4)] * 3)).tolist() == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- paper errors
def five_samples():
    labels = T([0, 1, 2, 3, 4])
    logits = torch.zeros(5, 6)
    logits[0] = T([9.0, 1, 2, 3, 4, 5])  # top-1 = 0 (correct)
    logits[1] = T([1.0, 5, 9, 0, 0, 0])  # top-1 = 2, label 1 ranked 2nd -> top-5 only
    logits[2] = T([0.0, 0, 9, 0, 0, 0])  # top-1 = 2 (correct)
    logits[3] = T([6.0, 5, 4, 0, 3, 2])  # label 3 ranked last of 6 -> not even top-5
    logits[4] = T([0.0, 1, 2, 3, 9, 4])  # top-1 = 4 (correct)
    iou = T([0.8, 0.6, 0.3, 0.9, 0.5])  # 0.5 counts (>=)
    return logits, labels, iou


def test_localization_errors_hand_computed():
    logits, labels, iou = five_samples()
    errs = localization_errors(logits, labels, iou)
    # top-1 correct {0,2,4} 3/5 ; top-5 correct {0,1,2,4} 4/5 ; IoU>=0.5 {0,1,3,4} 4/5
    # top-1 & loc {0,4} 2/5 ; top-5 & loc {0,1,4} 3/5
    assert errs == pytest.approx(
        {
            "top1_loc_err": 60.0,
            "top5_loc_err": 40.0,
            "gt_known_loc_err": 20.0,
            "top1_cls_err": 40.0,
            "top5_cls_err": 20.0,
        }
    )
    strict = localization_errors(logits, labels, iou, iou_threshold=0.7)
    # IoU>=0.7 {0,3} ; top-1 & loc {0} ; top-5 & loc {0}
    assert strict["gt_known_loc_err"] == pytest.approx(60.0)
    assert strict["top1_loc_err"] == pytest.approx(80.0)
    assert strict["top5_loc_err"] == pytest.approx(80.0)


def test_localization_errors_few_classes_and_probabilities():
    logits = T([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    labels = T([2, 0])
    errs = localization_errors(logits, labels, T([1.0, 0.0]))
    # C = 3 -> k = min(5, 3) = 3: top-5 always right ; top-1 right only for row 1
    assert errs["top5_cls_err"] == 0.0 and errs["top1_cls_err"] == 50.0
    assert errs["top5_loc_err"] == 50.0 and errs["top1_loc_err"] == 100.0


def test_localization_errors_validation():
    logits, labels, iou = five_samples()
    with pytest.raises(ValueError, match="labels must be in"):
        localization_errors(logits, T([0, 1, 2, 3, 6]), iou)
    with pytest.raises(ValueError, match="iou must"):
        localization_errors(logits, labels, T([0.8, 0.6, 0.3, 0.9, 1.5]))
    with pytest.raises(ValueError, match="iou must have shape"):
        localization_errors(logits, labels, iou[:3])
    with pytest.raises(ValueError, match="logits contains NaN"):
        localization_errors(torch.full((5, 6), float("nan")), labels, iou)
    with pytest.raises(ValueError, match="iou_threshold"):
        localization_errors(logits, labels, iou, iou_threshold=0.0)


# ----------------------------------------------------------------------------- MaxBoxAccV2
def box_map(h, w, box, value=1.0):
    m = torch.zeros(h, w)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    return m


def test_maxboxacc_perfect_and_zero_maps():
    gt = [T([[4.0, 6.0, 20.0, 15.0]])]
    res = max_box_acc(box_map(24, 32, (4, 6, 20, 15))[None], gt)
    assert res["max_box_acc_v2"] == 100.0
    assert res["max_box_acc"] == {30: 100.0, 50: 100.0, 70: 100.0}
    assert res["best_threshold"][50] == 0.0
    assert res["box_acc_curve"].shape == (3, 100)  # default thresholds arange(0, 1, 0.01)
    assert (res["box_acc_curve"] == 100.0).all()
    zero = max_box_acc(torch.zeros(1, 24, 32), gt)
    assert zero["max_box_acc_v2"] == 0.0


def nested_map():
    m = box_map(16, 16, (4, 4, 12, 12), 0.5)  # ring 8x8 = 64 px at 0.5
    m[6:10, 6:10] = 1.0  # core 4x4 = 16 px at 1.0
    return m


def test_maxboxacc_hand_computed_thresholds():
    maps = nested_map()[None].repeat(3, 1, 1)
    gts = [T([[4.0, 4, 12, 12]]), T([[6.0, 6, 10, 10]]), T([[5.0, 5, 11, 11]])]
    metric = MaxBoxAccV2(cam_thresholds=[0.0, 0.25, 0.5, 0.75])
    metric.accumulate(maps, gts)
    res = metric.compute()
    # thr 0, 0.25: region = 8x8 box (4,4,12,12); thr 0.5, 0.75 (strict >): core (6,6,10,10)
    # A gt 8x8: IoU [1, 1, 16/64, 16/64]; B gt core: [16/64, 16/64, 1, 1]
    # C gt 6x6 (36 px): [36/64 = .5625, .5625, 16/36 = .444, .444]
    # correct counts  @30: A 1100 B 0011 C 1111 -> [2, 2, 2, 2]
    #                 @50: A 1100 B 0011 C 1100 -> [2, 2, 1, 1]
    #                 @70: A 1100 B 0011 C 0000 -> [1, 1, 1, 1]
    curve = res["box_acc_curve"]
    assert curve[0] == pytest.approx([200 / 3] * 4)
    assert curve[1] == pytest.approx([200 / 3, 200 / 3, 100 / 3, 100 / 3])
    assert curve[2] == pytest.approx([100 / 3] * 4)
    assert res["max_box_acc"][50] == pytest.approx(200 / 3)
    assert res["best_threshold"][50] == 0.0
    assert res["max_box_acc_v2"] == pytest.approx((200 / 3 + 200 / 3 + 100 / 3) / 3)  # 500/9


def test_maxboxacc_multi_contour_vs_largest():
    m = box_map(20, 20, (1, 1, 4, 4))  # small blob, 9 px
    m[8:18, 8:18] = 1.0  # big blob, 100 px
    gt = [T([[1.0, 1, 4, 4]])]  # GT is the small object
    multi = max_box_acc(m[None], gt, cam_thresholds=[0.5])
    single = max_box_acc(m[None], gt, cam_thresholds=[0.5], multi_contour=False)
    assert multi["max_box_acc_v2"] == 100.0  # some region's box matches exactly
    assert single["max_box_acc_v2"] == 0.0  # largest region (big blob) has IoU 0


def test_maxboxacc_batches_and_validation():
    gen = torch.Generator().manual_seed(1)
    maps = torch.rand(6, 12, 12, generator=gen)
    gts = [T([[2.0, 2, 9, 10]]) for _ in range(6)]
    whole = max_box_acc(maps, gts)
    parts = MaxBoxAccV2()
    parts.accumulate(maps[:2], gts[:2])
    parts.accumulate(maps[2:], gts[2:])
    assert np.array_equal(parts.compute()["box_acc_curve"], whole["box_acc_curve"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        max_box_acc(maps * 2, gts)
    with pytest.raises(ValueError, match="before any accumulate"):
        MaxBoxAccV2().compute()
    with pytest.raises(ValueError, match="iou_thresholds"):
        MaxBoxAccV2(iou_thresholds=(0, 50))
    with pytest.raises(ValueError, match="cam_thresholds"):
        MaxBoxAccV2(cam_thresholds=[0.5, 1.2])


# ----------------------------------------------------------------------------- PxAP
def reference_pxap(scores: np.ndarray, positive: np.ndarray, n: int = 1000) -> float:
    """Literal wsolevaluation MaskEvaluator formula (edges arange(0,1,1/n) + [1, 2, 3])."""
    edges = np.append(np.arange(n) / n, [1.0, 2.0, 3.0])
    pos_hist, _ = np.histogram(scores[positive], bins=edges)
    neg_hist, _ = np.histogram(scores[~positive], bins=edges)
    tp = pos_hist[::-1].cumsum()
    fp = neg_hist[::-1].cumsum()
    fn = pos_hist.sum() - tp
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 100 * (precision[1:] * np.diff(recall))[nonzero[1:]].sum()


def test_pxap_perfect_map():
    mask = box_map(10, 12, (2, 3, 7, 9))
    assert pxap(mask[None], mask[None]) == pytest.approx(100.0)


def test_pxap_hand_computed_2x2():
    scores = T([[[0.9, 0.6], [0.3, 0.1]]])
    mask = T([[[1, 0], [1, 0]]])
    # descending: t<=0.9: TP1 FP0 P=1 R=.5 ; t<=0.6: TP1 FP1 P=.5, R step 0 ;
    # t<=0.3: TP2 FP1 P=2/3, R step .5 ; t<=0.1: R step 0.
    # AP = 1 * .5 + 2/3 * .5 = 5/6
    res_metric = PxAP()
    res_metric.accumulate(scores, mask[:, None])  # B x 1 x H x W masks accepted
    res = res_metric.compute()
    assert res["pxap"] == pytest.approx(500 / 6)
    assert res["recall"][-1] == 1.0 and res["precision"][-1] == 0.5  # threshold 0: all
    assert res["pxap"] == pytest.approx(
        reference_pxap(scores.double().numpy().ravel(), mask.bool().numpy().ravel())
    )


def test_pxap_random_map_is_positive_fraction_and_matches_reference():
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 50, 50, generator=gen)
    mask = torch.rand(4, 50, 50, generator=gen) < 0.3
    fraction = mask.double().mean().item()
    metric = PxAP()
    metric.accumulate(scores[:1], mask[:1])
    metric.accumulate(scores[1:], mask[1:])
    value = metric.compute()["pxap"]
    assert value == pytest.approx(100 * fraction, abs=2.0)  # random ranking: AP ~ prevalence
    ref = reference_pxap(scores.double().numpy().ravel(), mask.numpy().ravel())
    assert value == pytest.approx(ref, abs=1e-9)


def test_pxap_validation():
    with pytest.raises(ValueError, match="only 0 and 1"):
        pxap(torch.rand(1, 4, 4), torch.full((1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="foreground pixel"):
        pxap(torch.rand(1, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        pxap(torch.rand(1, 4, 4), torch.zeros(1, 4, 5))


# ----------------------------------------------------------------------------- 10-crop
def mean_model(x: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(1, 2, 3))
    return torch.stack([m, torch.zeros_like(m)], dim=1)  # logits (mean, 0)


def test_ten_crop_logits_averages_softmax():
    # 4x4 image whose value is the column index 0..3; crops of 2x2
    img = torch.arange(4.0).repeat(3, 4, 1)[None]  # 1 x 3 x 4 x 4
    probs = ten_crop_logits(mean_model, img, 2)
    # crop means: corners left 0.5 (x2), right 2.5 (x2), centre 1.5;
    # flipped image (cols 3,2,1,0): left 2.5 (x2), right 0.5 (x2), centre 1.5
    # softmax([m, 0])[0] = sigmoid(m)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = (4 * sig(0.5) + 4 * sig(2.5) + 2 * sig(1.5)) / 10
    assert probs.shape == (1, 2)
    assert probs[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0])
    assert probs[0, 0].item() != pytest.approx(sig(1.5))  # not softmax of mean logits


def test_ten_crop_logits_batch_and_errors():
    imgs = torch.randn(3, 3, 10, 12)
    probs = ten_crop_logits(lambda x: x.flatten(1)[:, :5], imgs, 8)
    assert probs.shape == (3, 5)
    assert torch.allclose(probs.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="crop_size"):
        ten_crop_logits(mean_model, imgs, 11)
    with pytest.raises(ValueError, match="model must return"):
        ten_crop_logits(lambda x: x.mean(), imgs, 8)


# ----------------------------------------------------------------------------- evaluator
def evaluation_batch(seed: int, n: int = 6, size: int = 20):
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    maps, gts = [], []
    for _ in range(n):
        cy, cx = (torch.rand(2, generator=gen) * 10 + 5).tolist()
        sigma = float(torch.rand(1, generator=gen)) * 3 + 2
        m = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        maps.append(m / m.max())
        gts.append(T([[cx - 4, cy - 4, cx + 4, cy + 4]]).clamp(0, size))
    logits = torch.randn(n, 7, generator=gen)
    labels = torch.randint(0, 7, (n,), generator=gen)
    masks = torch.stack(maps) > 0.4
    return logits, labels, torch.stack(maps), gts, masks


def test_evaluator_two_batches_equal_one_and_match_direct():
    b1, b2 = evaluation_batch(0), evaluation_batch(1)
    thetas = [0.2, 0.3, 0.5]
    split = LocalizationEvaluator(thetas)
    split.accumulate(*b1)
    split.accumulate(*b2)
    joint = LocalizationEvaluator(thetas)
    both = [torch.cat([b1[i], b2[i]]) for i in (0, 1, 2, 4)]
    joint.accumulate(both[0], both[1], both[2], b1[3] + b2[3], both[3])
    scores = split.compute()
    assert scores == joint.compute()
    assert scores.num_images == 12 and scores.theta == 0.2 and scores.thetas == (0.2, 0.3, 0.5)

    logits, labels, maps, masks = both
    gts = b1[3] + b2[3]
    for theta in thetas:
        iou = max_iou(largest_component_box(binarize(maps, theta)), gts)
        direct = localization_errors(logits, labels, iou)
        assert scores.at(theta).to_dict() == pytest.approx(direct)
        if theta == thetas[0]:
            assert scores.errors.to_dict() == pytest.approx(direct)
    iou0 = max_iou(largest_component_box(binarize(maps, 0.2)), gts)
    acc = scores.gt_known_loc_acc
    assert acc[50] == pytest.approx(100 * (iou0 >= 0.5).double().mean())
    assert acc[70] == pytest.approx(100 * (iou0 >= 0.7).double().mean())
    mba = max_box_acc(maps, gts)
    assert scores.max_box_acc_v2 == pytest.approx(mba["max_box_acc_v2"])
    assert scores.max_box_acc == pytest.approx(mba["max_box_acc"])
    assert scores.best_threshold == pytest.approx(mba["best_threshold"])
    assert scores.pxap == pytest.approx(pxap(maps, masks))


def test_evaluator_consistent_with_single_contour_maxboxacc():
    logits, labels, maps, gts, _ = evaluation_batch(2)
    ev = LocalizationEvaluator(0.3, with_maxboxacc=False)
    ev.accumulate(logits, labels, maps, gts)
    res = ev.compute()
    assert res.max_box_acc_v2 is None and res.pxap is None and res.max_box_acc == {}
    # one CAM threshold, largest region only == GT-known accuracy of Eq. 13 at theta 0.3
    single = max_box_acc(maps, gts, cam_thresholds=[0.3], multi_contour=False)
    assert res.gt_known_loc_acc[50] == pytest.approx(single["max_box_acc"][50])
    assert res.gt_known_loc_err == pytest.approx(100 - single["max_box_acc"][50])


def test_evaluator_validation():
    logits, labels, maps, gts, masks = evaluation_batch(3)
    with pytest.raises(ValueError, match="distinct"):
        LocalizationEvaluator([0.2, 0.2])
    with pytest.raises(ValueError, match="theta"):
        LocalizationEvaluator([0.2, 1.3])
    ev = LocalizationEvaluator(0.2)
    with pytest.raises(ValueError, match="before any accumulate"):
        ev.compute()
    ev.accumulate(logits, labels, maps, gts, masks)
    with pytest.raises(ValueError, match="every batch or for none"):
        ev.accumulate(logits, labels, maps, gts)
    with pytest.raises(ValueError, match="loc_maps has 5 maps"):
        ev.accumulate(logits, labels, maps[:5], gts[:5], masks[:5])


def test_image_hits_reuses_a_repeated_maps_regions_and_only_that_maps():
    # maps A, A, B (B's blob elsewhere) and one GT box per image: the second image reuses A's
    # regions, the third must not (its box sits on B's blob, which A does not cover)
    a = torch.zeros(8, 8)
    a[1:4, 1:4] = 1.0
    b = torch.zeros(8, 8)
    b[5:8, 5:8] = 1.0
    maps = torch.stack([a, a, b])
    gts = [T([[1.0, 1.0, 4.0, 4.0]]), T([[5.0, 5.0, 8.0, 8.0]]), T([[5.0, 5.0, 8.0, 8.0]])]
    metric = MaxBoxAccV2(iou_thresholds=(50,))
    hits = metric.image_hits(maps, gts)
    for i in range(3):
        alone = metric.best_ious(maps[i].numpy(), gts[i].double().numpy())
        assert np.array_equal(hits[i, 0], alone >= 0.5)
    # A's box on the first GT, nothing on the second image's, B's box on the third's
    assert hits[:, 0].any(axis=1).tolist() == [True, False, True]
