"""CoAug (Eq. 8-12) and the class-balanced sampler: values worked out by hand."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from fixtures_data import square_objects

from csoa_nb.core.models import EmbeddingNet
from csoa_nb.data.sampler import ClassBalancedBatchSampler
from csoa_nb.methods.coaug import (
    background_mask,
    class_map,
    coaug_distances,
    coaug_loss,
    foreground_background,
    foreground_map,
    upsample_nearest,
)

# ------------------------------------------------------------------------------ embeddings
# Four 2-d embeddings, labels [0, 0, 1, 1]. Foregrounds F_m:
#   F0 = (0, 0), F1 = (3, 4), F2 = (6, 8), F3 = (0, 8)
#   D01 = 5, D02 = 10, D03 = 8, D12 = |(3, 4)| = 5, D13 = |(-3, 4)| = 5, D23 = 6     (Eq. 11)
# Backgrounds B_m = F_m + a 3-4-5 offset, so D_cam = [5, 5, 5, 5]                      (Eq. 9)
#   B0 = (3, 4), B1 = (7, 1), B2 = (9, 12), B3 = (-3, 12)
# Mask_B^m = B_m + an axis offset of length 1, 2, 3, 4: D_back = [1, 2, 3, 4]         (Eq. 10)
FG = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [0.0, 8.0]])
BG = torch.tensor([[3.0, 4.0], [7.0, 1.0], [9.0, 12.0], [-3.0, 12.0]])
MASK_BG = torch.tensor([[4.0, 4.0], [7.0, 3.0], [12.0, 12.0], [-3.0, 16.0]])
LABELS = torch.tensor([0, 0, 1, 1])
D_PAIR = torch.tensor(
    [[0.0, 5.0, 10.0, 8.0], [5.0, 0.0, 5.0, 5.0], [10.0, 5.0, 0.0, 6.0], [8.0, 5.0, 6.0, 0.0]]
)

# gamma = delta = 1; every (D_cam_m + D_cam_n) / 2 = 5.
# same-class pairs, (D_back_m + D_back_n + D_mn) / 5:
#   (0, 1): (1 + 2 + 5) / 5 = 8/5;  (2, 3): (3 + 4 + 6) / 5 = 13/5         -> sum 21/5
# different-class pairs, (D_back_m + D_back_n) / (D_mn + 5):
#   (0, 2): 4/15;  (0, 3): 5/13;  (1, 2): 5/10;  (1, 3): 6/10
SAME_SUM = Fraction(21, 5)
DIFF_SUM = Fraction(4, 15) + Fraction(5, 13) + Fraction(1, 2) + Fraction(3, 5)


def test_distances_by_hand():
    d_cam, d_back, d_pair = coaug_distances(FG, BG, MASK_BG)
    torch.testing.assert_close(d_cam, torch.full((4,), 5.0))
    torch.testing.assert_close(d_back, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(d_pair, D_PAIR, atol=1e-5, rtol=0)  # diagonal ~ sqrt(eps)


def test_coaug_loss_sum_by_hand():
    loss, terms = coaug_loss(FG, BG, MASK_BG, LABELS, reduction="sum")
    assert terms["same"].item() == pytest.approx(float(SAME_SUM), rel=1e-5)
    assert terms["diff"].item() == pytest.approx(float(DIFF_SUM), rel=1e-5)
    assert loss.item() == pytest.approx(float(SAME_SUM + DIFF_SUM), rel=1e-5)
    assert terms["d_cam"].item() == pytest.approx(5.0)
    assert terms["d_back"].item() == pytest.approx(2.5)  # (1 + 2 + 3 + 4) / 4


def test_coaug_loss_mean_by_hand():
    # 2 same-class pairs and 4 different-class pairs
    loss, terms = coaug_loss(FG, BG, MASK_BG, LABELS)
    assert terms["same"].item() == pytest.approx(float(SAME_SUM / 2), rel=1e-5)
    assert terms["diff"].item() == pytest.approx(float(DIFF_SUM / 4), rel=1e-5)
    assert loss.item() == pytest.approx(float(SAME_SUM / 2 + DIFF_SUM / 4), rel=1e-5)


def test_coaug_loss_gamma_delta():
    # gamma = 2 doubles the D_back terms, delta = 0 drops D_mn from the diff denominators:
    # same: (2*3 + 5)/5 + (2*7 + 6)/5 = 11/5 + 20/5 = 31/5; diff: 2*(4 + 5 + 5 + 6)/5 = 8
    _, terms = coaug_loss(FG, BG, MASK_BG, LABELS, gamma=2.0, delta=0.0, reduction="sum")
    assert terms["same"].item() == pytest.approx(31 / 5, rel=1e-5)
    assert terms["diff"].item() == pytest.approx(8.0, rel=1e-5)


def test_all_same_class_uses_only_the_same_sum():
    # labels all equal: the six pairs all use (D_back_m + D_back_n + D_mn) / 5:
    # (0,1) 8/5, (0,2) (4+10)/5, (0,3) (5+8)/5, (1,2) (5+5)/5, (1,3) (6+5)/5, (2,3) 13/5
    # = (8 + 14 + 13 + 10 + 11 + 13) / 5 = 69/5
    _, terms = coaug_loss(FG, BG, MASK_BG, torch.zeros(4, dtype=torch.long), reduction="sum")
    assert terms["same"].item() == pytest.approx(69 / 5, rel=1e-5)
    assert terms["diff"].item() == 0.0
    # and all different: the six pairs use (D_back_m + D_back_n) / (D_mn + 5):
    # (0,1) 3/10, (0,2) 4/15, (0,3) 5/13, (1,2) 5/10, (1,3) 6/10, (2,3) 7/11
    _, terms = coaug_loss(FG, BG, MASK_BG, torch.arange(4), reduction="mean")
    expected = (Fraction(3, 10) + Fraction(4, 15) + Fraction(5, 13) + Fraction(1, 2)
                + Fraction(3, 5) + Fraction(7, 11)) / 6
    assert terms["diff"].item() == pytest.approx(float(expected), rel=1e-5)
    assert terms["same"].item() == 0.0


def test_coaug_loss_finite_gradient_for_identical_foregrounds():
    fg = FG.clone()
    fg[1] = fg[0]  # D_01 = 0: the gradient of a plain sqrt would be inf / nan here
    fg.requires_grad_()
    bg = BG.clone().requires_grad_()
    loss, _ = coaug_loss(fg, bg, MASK_BG, LABELS)
    loss.backward()
    assert torch.isfinite(fg.grad).all() and torch.isfinite(bg.grad).all()
    assert fg.grad.abs().sum() > 0


def test_coaug_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        coaug_loss(FG, BG, MASK_BG, LABELS, reduction="max")
    with pytest.raises(ValueError, match="labels"):
        coaug_loss(FG, BG, MASK_BG, LABELS[:3])
    with pytest.raises(ValueError, match="one shape"):
        coaug_distances(FG, BG[:3], MASK_BG)


# ------------------------------------------------------------------------------ Eq. 8 inputs
def test_foreground_map_relu_max_normalised():
    cam = torch.zeros(2, 2, 2, 2)
    cam[0, 1] = torch.tensor([[2.0, -1.0], [1.0, 0.0]])  # relu / max -> [[1, 0], [0.5, 0]]
    cam[1, 0] = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])  # negative everywhere -> all 0
    cam[0, 0] = 50.0  # other channels are ignored
    fg_map = foreground_map(cam, torch.tensor([1, 0]), (2, 2))
    assert fg_map.shape == (2, 1, 2, 2)
    torch.testing.assert_close(fg_map[0, 0], torch.tensor([[1.0, 0.0], [0.5, 0.0]]))
    assert torch.equal(fg_map[1], torch.zeros(1, 2, 2))


def test_foreground_map_not_min_max():
    # min-max would map [[-4, -2], [-2, -2]] to a bright background around a dark pixel;
    # ReLU-max keeps it all background (0): the anti-inversion anchor.
    cam = torch.tensor([[[[-4.0, -2.0], [-2.0, -2.0]]]])
    assert foreground_map(cam, torch.tensor([0]), (4, 4)).abs().max() == 0
    upsampled = foreground_map(torch.tensor([[[[0.0, 4.0], [2.0, 1.0]]]]), torch.tensor([0]),
                               (8, 8))
    assert upsampled.shape == (1, 1, 8, 8)
    assert upsampled.min() >= 0 and upsampled.max() <= 1


def test_foreground_background_by_hand():
    # class map [[2, -1], [1, 0]]: S = [[1, 0], [0.5, 0]] (ReLU-max);
    # Eq. 2-4 on the raw map: mu1 = 0.5, Mask = [[1.5, 1.5], [0.5, 0.5]], mu2 = 1,
    # Mask_hat = [[1, 1], [0, 0]]  ->  (1 - S) * Mask_hat = [[0, 1], [0, 0]]
    cam = torch.tensor([[[[2.0, -1.0], [1.0, 0.0]]]])
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    images = torch.stack([image, 2 * image, -image])[None]  # 1 x 3 x 2 x 2
    fg, bg, mask_bg = foreground_background(images, cam, torch.tensor([0]))
    s = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    torch.testing.assert_close(fg, s * images, atol=1e-5, rtol=0)
    torch.testing.assert_close(bg, (1 - s) * images, atol=1e-5, rtol=0)
    torch.testing.assert_close(mask_bg, torch.tensor([[0.0, 1.0], [0.0, 0.0]]) * images,
                               atol=1e-5, rtol=0)
    # on the image channel 0: fg = [[1, 0], [1.5, 0]], bg = [[0, 2], [1.5, 4]], mask_bg =
    # [[0, 2], [0, 0]]
    torch.testing.assert_close(fg[0, 0], torch.tensor([[1.0, 0.0], [1.5, 0.0]]), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(mask_bg[0, 0], torch.tensor([[0.0, 2.0], [0.0, 0.0]]),
                               atol=1e-5, rtol=0)


def test_foreground_background_upsamples_mask_nearest():
    # a given 2x2 mask [[1, 0], [0, 0]] covers the top-left 2x2 block of a 4x4 image
    cam = torch.zeros(1, 1, 2, 2)  # S = 0: background = the whole image
    images = torch.ones(1, 3, 4, 4)
    binary = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    _, bg, mask_bg = foreground_background(images, cam, torch.tensor([0]), binary)
    assert torch.equal(bg, images)
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 1
    assert torch.equal(mask_bg[0, 0], expected)


@pytest.mark.parametrize("small, size", [((16, 16), (64, 64)), ((14, 7), (224, 224)),
                                         ((3, 5), (9, 20)), ((6, 6), (64, 64))])
def test_upsample_nearest_is_the_library_kernel(small, size):
    # whole multiples take the block path, others (64 / 6) fall back to F.interpolate
    torch.manual_seed(0)
    maps = (torch.rand(4, 1, *small) > 0.5).float()
    expected = F.interpolate(maps, size=size, mode="nearest")
    assert torch.equal(upsample_nearest(maps, size), expected)
    assert torch.equal(upsample_nearest(maps, torch.Size(size)), expected)


def test_coaug_gradient_reaches_cam_last_not_the_mask():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 16, 16)
    cam_last = torch.randn(4, 3, 4, 4).requires_grad_()
    labels = torch.tensor([0, 0, 2, 2])
    binary = (torch.rand(4, 4, 4) > 0.5).float().requires_grad_()
    embed_net = EmbeddingNet("slim", slim_width=2)
    fg, bg, mask_bg = foreground_background(images, cam_last, labels, binary)
    loss, _ = coaug_loss(embed_net(fg), embed_net(bg), embed_net(mask_bg), labels)
    loss.backward()
    label_channels = class_map(cam_last.grad, labels)
    assert label_channels.abs().sum() > 0  # CoAug regulates the CAM (Eq. 8)
    assert cam_last.grad[:, 1].abs().sum() == 0  # class 1 is nobody's label
    assert binary.grad is None  # the mask of Eq. 3 is a constant


def test_foreground_background_rejects_mismatched_batch():
    with pytest.raises(ValueError, match="batch size"):
        foreground_background(torch.zeros(2, 3, 4, 4), torch.zeros(3, 2, 2, 2),
                              torch.tensor([0, 0, 0]))


# ------------------------------------------------------------------------------ sampler
def test_sampler_batches_are_class_balanced():
    labels = [c for c in range(5) for _ in range(10)]  # 5 classes x 10 images
    sampler = ClassBalancedBatchSampler(labels, batch_size=12, classes_per_batch=3, seed=1)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 50 // 12
    for batch in batches:
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 3 and set(counts.values()) == {4}
        assert len(set(batch)) == 12


def test_sampler_without_replacement_when_possible():
    # 3 classes x 8 images, 3 classes per batch x 2 images: 4 batches use every image once
    labels = [c for c in range(3) for _ in range(8)]
    batches = list(ClassBalancedBatchSampler(labels, batch_size=6, classes_per_batch=3))
    assert sorted(i for b in batches for i in b) == list(range(24))


def test_sampler_tops_up_small_class_with_replacement():
    # class 1 has a single image (index 10) but every batch needs 2 of it
    labels = [0] * 10 + [1]
    batches = list(ClassBalancedBatchSampler(labels, batch_size=4, classes_per_batch=2))
    assert len(batches) == 2
    for batch in batches:
        assert batch.count(10) == 2
    class0 = [i for b in batches for i in b if i != 10]
    assert len(class0) == len(set(class0)) == 4  # class 0 still without replacement


def test_sampler_deterministic_per_epoch():
    labels = [c for c in range(6) for _ in range(8)]
    a = ClassBalancedBatchSampler(labels, batch_size=8, classes_per_batch=4, seed=3)
    b = ClassBalancedBatchSampler(labels, batch_size=8, classes_per_batch=4, seed=3)
    assert list(a) == list(b) == list(a)
    epoch0 = list(a)
    a.set_epoch(1)
    assert list(a) != epoch0
    b.set_epoch(1)
    assert list(a) == list(b)
    c = ClassBalancedBatchSampler(labels, batch_size=8, classes_per_batch=4, seed=4)
    assert list(c) != epoch0


@pytest.mark.parametrize(
    "labels, batch_size, classes_per_batch, match",
    [
        ([0, 1, 2] * 10, 10, 3, r"batch_size \(10\).*classes_per_batch \(3\)"),
        ([0, 1, 2] * 10, 8, 4, r"classes_per_batch \(4\).*classes present.*\(3\)"),
        ([0, 1] * 2, 8, 2, "only 4 labels"),
    ],
)
def test_sampler_errors(labels, batch_size, classes_per_batch, match):
    with pytest.raises(ValueError, match=match):
        ClassBalancedBatchSampler(labels, batch_size=batch_size,
                                  classes_per_batch=classes_per_batch)


# ----------------------------------------------------------- Eq. 10's two readings (chapter 04)
def test_background_mask_by_hand():
    # S = [0, 0, 0, 1]: mu1 = 1/4, |S - mu1| = [1/4, 1/4, 1/4, 3/4], mu2 = 3/8 -> Eq. 3 marks only
    # the object (the smaller side) as confident; below the mean = the three background pixels
    cam = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert background_mask(cam, "paper").tolist() == [[[0.0, 0.0], [0.0, 1.0]]]
    assert background_mask(cam, "below_mean").tolist() == [[[1.0, 1.0], [1.0, 0.0]]]
    with pytest.raises(ValueError, match="below_mean"):
        background_mask(cam, "median")


def _score(maps, images, labels, background, embed_net):
    """L_D (Eq. 12, gamma = delta = 1) and mean D_back of fixed maps given at image size."""
    cam = torch.zeros(len(maps), int(labels.max()) + 1, *maps.shape[-2:])
    cam[torch.arange(len(maps)), labels] = maps
    parts = foreground_background(images, cam, labels, background=background)
    fg, bg, mask_bg = embed_net(torch.cat(parts)).chunk(3)
    loss, terms = coaug_loss(fg, bg, mask_bg, labels)
    return float(loss), float(terms["d_back"])


@pytest.fixture(scope="module")
def reading_case():
    torch.manual_seed(0)
    images, masks, _, labels = square_objects(per_class=2)
    candidates = {"ground truth": masks, "S = 1": torch.ones_like(masks),
                  "S = 0 (all negative)": -torch.ones_like(masks), "inverted": 1 - masks}
    return images, labels, candidates, EmbeddingNet("slim", slim_width=4).freeze()


def test_paper_reading_prefers_a_map_that_localizes_nothing(reading_case):
    """The flaw, pinned: with Eq. 3 inside Eq. 10, S = 1 everywhere scores below the
    ground-truth mask (measured: 0.61 vs 4.39); the mask's D_back is large because Eq. 3 marks
    no background of an object smaller than half the image as confident."""
    images, labels, candidates, embed_net = reading_case
    scores = {k: _score(v, images, labels, "paper", embed_net) for k, v in candidates.items()}
    assert scores["S = 1"][0] < scores["ground truth"][0]
    assert scores["S = 1"][1] == pytest.approx(0.0, abs=1e-5)
    assert scores["ground truth"][1] > 1.0


def test_below_mean_reading_prefers_the_ground_truth(reading_case):
    """Our fix: below the mean, the ground-truth mask scores below S = 1, S = 0 and the
    inverted mask (measured: 0.07 vs 0.61, 4.0, 0.80)."""
    images, labels, candidates, embed_net = reading_case
    scores = {k: _score(v, images, labels, "below_mean", embed_net)
              for k, v in candidates.items()}
    best = min(scores, key=lambda k: scores[k][0])
    assert best == "ground truth", scores


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_below_mean_gives_zero_d_back_for_any_binary_map(fraction):
    """For a binary map [S < mu_1] = 1 - S, so (1 - S) Mask_hat I = (1 - S) I and
    D_back = 0, whatever the foreground fraction; Eq. 3's mask gives D_back > 0 below 1/2."""
    torch.manual_seed(1)
    size = 20
    images = torch.randn(4, 3, size, size)
    maps = (torch.rand(4, size, size) < fraction).float()
    labels = torch.tensor([0, 0, 1, 1])
    embed_net = EmbeddingNet("slim", slim_width=4).freeze()
    _, d_back = _score(maps, images, labels, "below_mean", embed_net)
    assert d_back == pytest.approx(0.0, abs=1e-5)
    if fraction < 0.5:
        _, d_back_paper = _score(maps, images, labels, "paper", embed_net)
        assert d_back_paper > 0.1
