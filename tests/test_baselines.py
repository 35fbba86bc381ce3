"""The trivial baselines of Choe et al. (full image, centred Gaussian) scored on a run's test
split: the scores equal shares of the test set's own boxes, computed here by hand."""

from __future__ import annotations

import math

import pytest

from csoa_nb.core.localize import csoa_box
from csoa_nb.engine.baselines import map_size, trivial_maps, trivial_scores
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_datasets

SIDE = 32  # the smoke preset's crop_size: the test images are 32 x 32


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> RunConfig:
    root = tmp_path_factory.mktemp("data")
    return RunConfig.from_preset("smoke", data_root=str(root), results_dirs=())


@pytest.fixture(scope="module")
def gt_boxes(config: RunConfig) -> list[list[tuple[float, float, float, float]]]:
    """The ground-truth boxes of every test image, read from the reader's items."""
    _, test_set = build_datasets(config)
    return [[tuple(float(v) for v in box) for box in test_set[i]["boxes"]]
            for i in range(len(test_set))]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = width * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def share(gt_boxes, box, level: float) -> float:
    """Percent of images whose best ground-truth box has IoU >= level with `box`."""
    hits = [max(iou(box, gt) for gt in boxes) >= level for boxes in gt_boxes]
    return 100.0 * sum(hits) / len(hits)


def test_map_size_is_the_networks() -> None:
    # vgg_slim: stride 4 -> 32 px gives 8 x 8; vgg16 with pools 4-5 dropped: stride 8 -> 28
    assert map_size(RunConfig.from_preset("smoke")) == (8, 8)
    assert map_size(RunConfig.from_preset("paper")) == (28, 28)


def test_full_image_scores_are_the_shares_of_boxes_that_fill_the_image(config, gt_boxes):
    scores = trivial_scores(config, "full_image")
    full = (0.0, 0.0, float(SIDE), float(SIDE))
    shares = {level: share(gt_boxes, full, level / 100) for level in (30, 50, 70)}
    assert 0 < shares[50] < 100  # the check means something on this test set
    assert scores.num_images == len(gt_boxes) == 16
    for level in (30, 50, 70):
        assert scores.gt_known_loc_acc[level] == pytest.approx(shares[level])
        assert scores.max_box_acc[level] == pytest.approx(shares[level])
    assert scores.max_box_acc_v2 == pytest.approx(sum(shares.values()) / 3)
    for theta in scores.thetas:  # the full image at every theta
        assert scores.at(theta).gt_known_loc_err == pytest.approx(100 - shares[50])
    assert scores.theta == config.theta and scores.thetas[0] == config.theta


def test_classification_metrics_are_nan_and_monitors_none(config):
    scores = trivial_scores(config, "center_gaussian", thetas=(0.3,))
    for name in ("top1_loc_err", "top5_loc_err", "top1_cls_err", "top5_cls_err"):
        assert math.isnan(getattr(scores, name))
    assert not math.isnan(scores.gt_known_loc_err)
    assert scores.cam_nonpositive is None and scores.fg_saturated is None
    assert scores.pxap is not None and 0 < scores.pxap < 100


# The centred Gaussian on the smoke preset's 8 x 8 map, sigma = 8 / 4 = 2 cells: separable,
# a_i = exp(-(i + 0.5 - 4)^2 / 8) = 0.2163, 0.4578, 0.7548, 0.9692 (i = 0..3, mirrored).
# Bilinear upsampling x4 (align_corners=False) is separable too: pixel p reads source
# s = (p + 0.5) / 4 - 0.5; the profile's peak is a_3 = 0.9692 (p = 14..17), its floor
# a_0 = 0.2163 (p = 0, 1). After min-max normalisation the map passes theta = 0.5 where
# A(y) A(x) > m + 0.5 (M - m), m = 0.2163^2 = 0.0468, M = 0.9692^2 = 0.9394, i.e. 0.4931; on the
# centre row (A(y) = M^0.5) that is A(x) > 0.5088: p = 7 (s = 1.375: 0.625 a_1 + 0.375 a_2 =
# 0.5692) passes, p = 6 (s = 1.125: 0.875 a_1 + 0.125 a_2 = 0.4950) does not. By symmetry the
# box is columns (and rows) 7..24: (7, 7, 25, 25).
GAUSS_BOX = (7.0, 7.0, 25.0, 25.0)


def test_center_gaussian_box_is_the_hand_computed_centred_box(config, gt_boxes):
    _, test_set = build_datasets(config)
    maps = trivial_maps(config, "center_gaussian", test_set)
    assert maps["cam_last"].shape == (16, 8, 8)
    box = csoa_box(maps["cam_last"][:1], None, 0.5, (SIDE, SIDE))
    assert box.flatten().tolist() == list(GAUSS_BOX)
    scores = trivial_scores(config, "center_gaussian", thetas=(0.5,))
    for level in (30, 50, 70):
        assert scores.gt_known_loc_acc[level] == pytest.approx(
            share(gt_boxes, GAUSS_BOX, level / 100))


def test_sigma_is_passed_and_checked(config):
    _, test_set = build_datasets(config)
    wide = trivial_maps(config, "center_gaussian", test_set, sigma=100.0)["cam_last"][0]
    assert float(wide.min()) > 0.99  # nearly flat
    with pytest.raises(ValueError, match="sigma is a parameter of 'center_gaussian'"):
        trivial_scores(config, "full_image", sigma=2.0)
    with pytest.raises(ValueError, match="sigma must be a number > 0"):
        trivial_scores(config, "center_gaussian", sigma=0.0)
    with pytest.raises(ValueError, match="kind"):
        trivial_scores(config, "random_box")
