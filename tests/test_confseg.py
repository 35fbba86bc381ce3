"""ConfSeg (Eq. 2-7): values worked out by hand in the comments."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from csoa_nb.core.models import CSoAOutput
from csoa_nb.methods.confseg import (
    alpha,
    class_map,
    confidence_mask,
    confseg_loss,
    inner_loss,
    thresholds_xi,
)

# A 4x4 CAM: one confident background pixel (-4) and three object pixels (4, 8, 8).
CAM = torch.tensor(
    [
        [-4.0, 0.0, 0.0, 0.0],
        [0.0, 4.0, 8.0, 0.0],
        [0.0, 8.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
)
# mu1 = (-4 + 4 + 8 + 8) / 16 = 16 / 16 = 1                                     (Eq. 2)
# Mask = |S - 1|: -4 -> 5, the twelve 0s -> 1, 4 -> 3, 8 -> 7
MASK = torch.tensor(
    [
        [5.0, 1.0, 1.0, 1.0],
        [1.0, 3.0, 7.0, 1.0],
        [1.0, 7.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
    ]
)
# mu2 = (5 + 12 * 1 + 3 + 7 + 7) / 16 = 34 / 16 = 2.125                          (Eq. 4)
# Mask > 2.125 at 5, 3, 7, 7; the twelve 1s are ambiguous                        (Eq. 3)
BINARY = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
)


def test_confidence_mask_by_hand():
    mask, binary = confidence_mask(CAM)
    assert torch.equal(mask, MASK)
    assert torch.equal(binary, BINARY)
    assert binary.dtype == CAM.dtype


def test_confidence_mask_each_map_on_its_own():
    # B x C x h x w = 1 x 2 x 4 x 4: channel 1 is constant, so Mask = 0 = mu2 and the strict
    # ">" of Eq. 3 marks nothing; channel 0 must still give the hand-computed mask.
    cams = torch.stack([CAM, torch.full((4, 4), 3.0)])[None]
    mask, binary = confidence_mask(cams)
    assert mask.shape == binary.shape == (1, 2, 4, 4)
    assert torch.equal(binary[0, 0], BINARY)
    assert torch.equal(mask[0, 1], torch.zeros(4, 4))
    assert torch.equal(binary[0, 1], torch.zeros(4, 4))


@pytest.mark.parametrize("a, b", [(0.5, 3.0), (10.0, -7.0), (-2.0, 1.0), (-0.25, 0.0)])
def test_binary_mask_invariant_to_affine_maps(a, b):
    # |aS + b - (a mu1 + b)| = |a| |S - mu1| and mu2 scales by |a| too.
    mask, binary = confidence_mask(a * CAM + b)
    assert torch.equal(binary, BINARY)
    torch.testing.assert_close(mask, abs(a) * MASK)


def test_min_max_normalisation_keeps_binary_mask():
    normalised = (CAM - CAM.min()) / (CAM.max() - CAM.min())
    assert torch.equal(confidence_mask(normalised)[1], BINARY)


def test_thresholds_xi_eq7():
    # xi1 = mu1 + mu2 = 1 + 2.125 = 3.125, xi2 = mu1 - mu2 = 1 - 2.125 = -1.125
    xi1, xi2 = thresholds_xi(CAM)
    assert xi1.item() == pytest.approx(3.125)
    assert xi2.item() == pytest.approx(-1.125)
    # Eq. 3's mask is "S > xi1 (foreground) or S < xi2 (background)"
    assert torch.equal(((CAM > xi1) | (CAM < xi2)).float(), BINARY)


def test_confidence_mask_rejects_vectors():
    with pytest.raises(ValueError, match="h, w"):
        confidence_mask(torch.zeros(4))


# ------------------------------------------------------------------------------ inner loss
# Two images, two classes, 2x2 maps; labels = [1, 0]. The other channel is junk (100).
#
# image 0, class 1: S_L = [[4, 0], [0, 0]]: mu1 = 1, Mask = [[3, 1], [1, 1]], mu2 = 6/4 = 1.5,
#   binary = [[1, 0], [0, 0]]; S_F = [[1, 5], [2, 3]]: |S_F - S_L| * binary = 3 at (0, 0)
#   -> 3 / (2*2) = 0.75
# image 1, class 0: S_L = [[3, 0], [0, -3]]: mu1 = 0, Mask = [[3, 0], [0, 3]], mu2 = 1.5,
#   binary = [[1, 0], [0, 1]]; S_F = [[1, 7], [7, -1]]: |S_F - S_L| = [[2, 7], [7, 2]]
#   -> (2 + 2) / 4 = 1
# L_inner = (0.75 + 1) / 2 = 0.875
LABELS = torch.tensor([1, 0])


def _cams() -> tuple[torch.Tensor, torch.Tensor]:
    cam_last = torch.full((2, 2, 2, 2), 100.0)
    cam_last[0, 1] = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    cam_last[1, 0] = torch.tensor([[3.0, 0.0], [0.0, -3.0]])
    cam_feature = torch.full((2, 2, 2, 2), -100.0)
    cam_feature[0, 1] = torch.tensor([[1.0, 5.0], [2.0, 3.0]])
    cam_feature[1, 0] = torch.tensor([[1.0, 7.0], [7.0, -1.0]])
    return cam_feature.requires_grad_(), cam_last.requires_grad_()


def test_class_map_picks_label_channel():
    _, cam_last = _cams()
    picked = class_map(cam_last, LABELS)
    assert torch.equal(picked[0], cam_last[0, 1]) and torch.equal(picked[1], cam_last[1, 0])


def test_inner_loss_value_by_hand():
    cam_feature, cam_last = _cams()
    assert inner_loss(cam_feature, cam_last, LABELS).item() == pytest.approx(0.875)


def test_inner_loss_gradient_only_on_confident_pixels_of_s_f():
    cam_feature, cam_last = _cams()
    inner_loss(cam_feature, cam_last, LABELS).backward()
    # d/dS_F of |S_F - S_L| * binary / (h*w) / B = sign(S_F - S_L) * binary / 8
    expected = torch.zeros(2, 2, 2, 2)
    expected[0, 1, 0, 0] = -1 / 8  # sign(1 - 4)
    expected[1, 0, 0, 0] = -1 / 8  # sign(1 - 3)
    expected[1, 0, 1, 1] = 1 / 8  # sign(-1 - (-3))
    torch.testing.assert_close(cam_feature.grad, expected)
    assert cam_last.grad is None  # the teacher S_L is detached


def test_inner_loss_without_detached_teacher_reaches_s_l():
    cam_feature, cam_last = _cams()
    inner_loss(cam_feature, cam_last, LABELS, detach_teacher=False).backward()
    # d/dS_L |S_F - S_L| = -sign(S_F - S_L): the opposite of the S_F gradient
    expected = torch.zeros(2, 2, 2, 2)
    expected[0, 1, 0, 0] = 1 / 8
    expected[1, 0, 0, 0] = 1 / 8
    expected[1, 0, 1, 1] = -1 / 8
    torch.testing.assert_close(cam_last.grad, expected)


def test_inner_loss_resizes_s_f_to_s_l():
    # a 1x1 S_F = 1 upsamples to a constant 2x2 map of 1s.
    # image 0: |1 - 4| at (0, 0) = 3 -> 3/4; image 1: |1 - 3| + |1 - (-3)| = 6 -> 6/4
    # L = (0.75 + 1.5) / 2 = 1.125
    _, cam_last = _cams()
    cam_feature = torch.ones(2, 2, 1, 1)
    assert inner_loss(cam_feature, cam_last, LABELS).item() == pytest.approx(1.125)


def test_inner_loss_rejects_bad_shapes():
    cam_feature, cam_last = _cams()
    with pytest.raises(ValueError, match="labels"):
        inner_loss(cam_feature, cam_last, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="same batch size"):
        inner_loss(cam_feature[:, :1], cam_last, torch.tensor([0, 0]))


# ------------------------------------------------------------------------------ alpha
def test_alpha_ramp():
    assert alpha(0, 10) == 0.0
    assert alpha(2.5, 10) == pytest.approx(0.5)  # a quarter of training, ramp over half
    assert alpha(5, 10) == 1.0
    assert alpha(9.9, 10) == 1.0
    assert alpha(1, 10, ramp_fraction=1.0) == pytest.approx(0.1)
    assert alpha(-3, 10) == 0.0  # clamps below
    assert alpha(50, 10) == 1.0  # and above


@pytest.mark.parametrize(
    "epochs, ramp", [(0, 0.5), (-1, 0.5), (10, 0.0), (10, 1.5), (10, -0.2)]
)
def test_alpha_rejects_bad_arguments(epochs, ramp):
    with pytest.raises(ValueError):
        alpha(1, epochs, ramp_fraction=ramp)


# ------------------------------------------------------------------------------ Eq. 6
def _output(baseline: bool = False) -> CSoAOutput:
    cam_feature, cam_last = _cams()
    cam_last = cam_last.detach() / 10  # keep the logits small
    cam_feature = cam_feature.detach() / 10
    if baseline:
        return CSoAOutput(cam_last.mean((2, 3)), None, cam_last, None)
    return CSoAOutput(cam_last.mean((2, 3)), cam_feature.mean((2, 3)), cam_last, cam_feature)


def test_confseg_loss_is_ce_plus_ce_plus_alpha_inner():
    out = _output()
    loss, terms = confseg_loss(out, LABELS, alpha=0.3)
    ce_last = F.cross_entropy(out.logits_last, LABELS)
    ce_feature = F.cross_entropy(out.logits_feature, LABELS)
    # maps divided by 10 -> the inner loss is 0.875 / 10 (Eq. 5 is 1-homogeneous)
    expected = ce_last + ce_feature + 0.3 * 0.0875
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["cls_last"].item() == pytest.approx(ce_last.item())
    assert terms["cls_feature"].item() == pytest.approx(ce_feature.item())
    assert terms["inner"].item() == pytest.approx(0.0875)
    assert set(terms) == {"cls_last", "cls_feature", "inner"}


def test_confseg_loss_baseline_is_plain_ce():
    out = _output(baseline=True)
    loss, terms = confseg_loss(out, LABELS, alpha=1.0)
    assert loss.item() == pytest.approx(F.cross_entropy(out.logits_last, LABELS).item())
    assert terms["cls_feature"].item() == 0.0 and terms["inner"].item() == 0.0
