"""ConfSeg: the confidence segmentation module of CSoA (paper Sec. 3.1, Eq. 2-7).

The CAM S_L^c of the top classifier W_L (c = ground-truth class) yields a per-image
confidence mask: pixels far from the map's mean are "confident" (object or background),
pixels near the mean are ambiguous (Eq. 2-4). On confident pixels the CAM S_F^c of the
internal classifier W_F is pulled towards S_L^c (Eq. 5); the total ConfSeg loss adds the two
classification losses (Eq. 6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from csoa_nb.core.models import CSoAOutput


def confidence_mask(cam: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 2-4 per ``h x w`` map of ``cam`` (``(..., h, w)``): the soft mask ``|S - mu1|`` and
    the binary ``Mask_hat = [mask > mu2]`` (float 0/1, no gradient), both shaped like ``cam``.

    The raw map is used: an affine normalisation of S scales ``mask`` and ``mu2`` alike by
    ``|a|``, so it would change the soft mask's scale only, never the binary mask.
    """
    if cam.dim() < 2:
        raise ValueError(f"confidence_mask needs maps of shape (..., h, w), got {tuple(cam.shape)}")
    mu1 = cam.mean(dim=(-2, -1), keepdim=True)
    mask = (cam - mu1).abs()
    mu2 = mask.mean(dim=(-2, -1), keepdim=True)
    binary = (mask > mu2).to(cam.dtype).detach()
    return mask, binary


def thresholds_xi(cam: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 7: ``(xi1, xi2) = (mu1 + mu2, mu1 - mu2)``, shaped ``cam.shape[:-2]``; Eq. 3's binary
    mask is ``S > xi1`` or ``S < xi2`` (per-image analogue of SPG's two fixed thresholds)."""
    mu1 = cam.mean(dim=(-2, -1))
    mu2 = (cam - mu1[..., None, None]).abs().mean(dim=(-2, -1))
    return mu1 + mu2, mu1 - mu2


def _check_cams(cam: Tensor, labels: Tensor, what: str) -> None:
    if cam.dim() != 4:
        raise ValueError(f"{what} must be B x C x h x w, got shape {tuple(cam.shape)}")
    if labels.dim() != 1 or labels.shape[0] != cam.shape[0]:
        raise ValueError(
            f"labels must be a vector of {cam.shape[0]} class indices for {what}, "
            f"got shape {tuple(labels.shape)}"
        )


def class_map(cam: Tensor, labels: Tensor) -> Tensor:
    """The map of each image's class: ``cam[m, labels[m]]``, ``B x C x h x w -> B x h x w``."""
    _check_cams(cam, labels, "cam")
    return cam[torch.arange(cam.shape[0], device=cam.device), labels.to(cam.device).long()]


def inner_loss(
    cam_feature: Tensor,
    cam_last: Tensor,
    labels: Tensor,
    detach_teacher: bool = True,
) -> Tensor:
    """Eq. 5, a scalar: ``mean_m sum_ij |S_F^c - S_L^c|_ij Mask_hat_ij / (h * w)``, c image m's
    ground-truth class and ``Mask_hat`` S_L^c's binary mask (Eq. 3).

    Our readings: a mean over pixels where the paper sums (a scale, absorbed by alpha); S_L is
    the teacher, detached unless ``detach_teacher=False`` ("S_F should follow the decisions
    made by S_L"); an S_F of another size (inception_v3, block 3) is resized bilinearly to S_L's.
    """
    _check_cams(cam_feature, labels, "cam_feature")
    _check_cams(cam_last, labels, "cam_last")
    if cam_feature.shape[:2] != cam_last.shape[:2]:
        raise ValueError(
            f"cam_feature {tuple(cam_feature.shape)} and cam_last {tuple(cam_last.shape)} must "
            "have the same batch size and number of classes"
        )
    teacher = class_map(cam_last, labels)
    if detach_teacher:
        teacher = teacher.detach()
    student = class_map(cam_feature, labels)
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(
            student[:, None], size=teacher.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
    _, binary = confidence_mask(teacher.detach())
    per_image = ((student - teacher).abs() * binary).mean(dim=(-2, -1))
    return per_image.mean()


def alpha(epoch: float, epochs: int, ramp_fraction: float = 0.5) -> float:
    """Eq. 6's alpha at (fractional) ``epoch``: 0 to 1 linearly until ``ramp_fraction * epochs``,
    then 1. The paper says only that alpha "increases along the training epoch"; the ramp is
    ours, and a fractional epoch (``epoch + batch / num_batches``) raises it every step."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not 0.0 < ramp_fraction <= 1.0:
        raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction!r}")
    return float(min(max(epoch / (ramp_fraction * epochs), 0.0), 1.0))


def confseg_loss(
    out: CSoAOutput, labels: Tensor, alpha: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 6: ``L_C = CE(y_L) + CE(y_F) + alpha * L_inner`` (L_cls: the unweighted sum of both
    heads' cross entropies; :func:`inner_loss`); a baseline output (no S_F) gives ``CE(y_L)``.
    Returns ``(loss, {"cls_last", "cls_feature", "inner"})``, the terms as live tensors."""
    cls_last = F.cross_entropy(out.logits_last, labels)
    if out.cam_feature is None or out.logits_feature is None:
        zero = cls_last.new_zeros(())
        return cls_last, {"cls_last": cls_last, "cls_feature": zero, "inner": zero}
    cls_feature = F.cross_entropy(out.logits_feature, labels)
    inner = inner_loss(out.cam_feature, out.cam_last, labels)
    loss = cls_last + cls_feature + alpha * inner
    return loss, {"cls_last": cls_last, "cls_feature": cls_feature, "inner": inner}
