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
    """Eq. 2-4: the soft confidence mask and its binary version, per map.

    ``cam`` has shape ``(..., h, w)`` (e.g. ``B x h x w`` for S_L^c, or ``B x C x h x w``);
    every ``h x w`` map is treated on its own:

    * ``mu1 = mean_ij S_ij`` and ``Mask_ij = |S_ij - mu1|`` (Eq. 2);
    * ``mu2 = mean_ij Mask_ij`` (Eq. 4);
    * ``Mask_hat_ij = 1 if Mask_ij > mu2 else 0`` (Eq. 3; strict inequality, as printed).

    Normalisation: none, the raw S_L is used. It does not matter for the binary mask: for any
    affine map ``S' = a S + b`` with ``a != 0``, ``mu1' = a mu1 + b`` so
    ``Mask' = |a S + b - (a mu1 + b)| = |a| Mask`` and ``mu2' = |a| mu2``, hence
    ``Mask' > mu2'`` exactly where ``Mask > mu2``: the binary mask is invariant to min-max or
    any other affine normalisation (even a sign flip); only the scale of the soft mask changes.

    Returns ``(mask, binary)``, both shaped like ``cam``; ``binary`` is float 0/1 and carries
    no gradient (it is a threshold). ``mask`` is differentiable w.r.t. ``cam``.
    """
    if cam.dim() < 2:
        raise ValueError(f"confidence_mask needs maps of shape (..., h, w), got {tuple(cam.shape)}")
    mu1 = cam.mean(dim=(-2, -1), keepdim=True)
    mask = (cam - mu1).abs()
    mu2 = mask.mean(dim=(-2, -1), keepdim=True)
    binary = (mask > mu2).to(cam.dtype).detach()
    return mask, binary


def thresholds_xi(cam: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 7: the foreground / background thresholds ``(xi1, xi2) = (mu1 + mu2, mu1 - mu2)``.

    The binary mask of Eq. 3 is exactly ``S > xi1`` (confident foreground) or ``S < xi2``
    (confident background): the per-image analogue of SPG's two fixed thresholds. Shapes are
    ``cam.shape[:-2]``.
    """
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
    """Eq. 5: the inner loss between S_F^c and S_L^c on S_L^c's confident pixels.

    ``L_inner = mean_m ( sum_ij |S_F^c - S_L^c|_ij * Mask_hat_ij ) / (h * w)`` with c the
    ground-truth class of image m and ``Mask_hat`` the binary mask of S_L^c (Eq. 3). Choices:

    * **Mean over pixels.** The paper writes a plain sum over pixels; we divide by ``h * w``
      so the loss does not grow with the map size. This is a constant rescaling absorbed by
      alpha (Eq. 6). Images are averaged over the batch.
    * **S_L is the teacher.** By default S_L is detached: "S_F should follow the decisions
      made by S_L if they are confident enough", so the gradient reaches W_F and the backbone
      through S_F only. ``detach_teacher=False`` lets it flow into S_L as well. The binary
      mask is a threshold and is never differentiated.
    * **Sizes.** The paper gives S_F and S_L the same spatial size (our vgg16 / vgg_slim
      blocks 3-5 do). If they differ (e.g. inception_v3 with ``feature_block=3``), S_F^c is
      resized bilinearly (``align_corners=False``) to S_L's size first.

    Args:
        cam_feature: S_F, ``B x C x h' x w'``.
        cam_last: S_L, ``B x C x h x w``.
        labels: ground-truth classes, shape ``B``.
        detach_teacher: stop the gradient into S_L.

    Returns a scalar tensor.
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
    """Eq. 6's weight alpha of the inner loss at (fractional) ``epoch`` of ``epochs``.

    The paper only says alpha lies in [0, 1] and "increases along the training epoch to avoid
    unstable prediction from S_L at the initial training process". We use a linear ramp from 0
    at the start to 1 at ``ramp_fraction * epochs``, then 1:
    ``alpha = clamp(epoch / (ramp_fraction * epochs), 0, 1)``. ``epoch`` may be fractional
    (``epoch + batch / num_batches``) so alpha grows every step.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not 0.0 < ramp_fraction <= 1.0:
        raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction!r}")
    return float(min(max(epoch / (ramp_fraction * epochs), 0.0), 1.0))


def confseg_loss(
    out: CSoAOutput, labels: Tensor, alpha: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 6: ``L_C = CE(y_L) + CE(y_F) + alpha * L_inner``.

    ``L_cls`` of the paper is "the cross entropy loss for both y_L and y_F with same
    ground-truth categories": we add the two (unweighted) cross entropies. ``L_inner`` is
    :func:`inner_loss` with S_L detached. For a baseline output (``out.cam_feature is None``)
    the loss is ``CE(y_L)`` and the other two terms are zero.

    Returns ``(loss, {"cls_last", "cls_feature", "inner"})``; the terms are the live tensors
    (detaching them for logging is the caller's job).
    """
    cls_last = F.cross_entropy(out.logits_last, labels)
    if out.cam_feature is None or out.logits_feature is None:
        zero = cls_last.new_zeros(())
        return cls_last, {"cls_last": cls_last, "cls_feature": zero, "inner": zero}
    cls_feature = F.cross_entropy(out.logits_feature, labels)
    inner = inner_loss(out.cam_feature, out.cam_last, labels)
    loss = cls_last + cls_feature + alpha * inner
    return loss, {"cls_last": cls_last, "cls_feature": cls_feature, "inner": inner}
