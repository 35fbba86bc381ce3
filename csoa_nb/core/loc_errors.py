"""The paper's localisation errors: Top-1 / Top-5 / GT-known loc. and classification errors.

Paper protocol (Kou et al., WACV 2021, Sec. 4.2): a box (Eq. 13 at one threshold ``theta``,
``csoa_nb.core.localize``) is correct when its IoU with a ground-truth box is >= 0.5 (the
ILSVRC rule of Russakovsky et al., IJCV 2015); the Top-1 / Top-5 / GT-known localisation errors
and the Top-1 / Top-5 classification errors are reported in percent. Classification scores are
the softmax scores averaged over 10 crops (``csoa_nb.core.ten_crop``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from csoa_nb.base.checks import as_tensor

__all__ = [
    "LOC_ERROR_KEYS",
    "localization_errors",
    "topk_correct",
    "check_iou_threshold",
    "errors_from_flags",
]

#: The five errors of Sec. 4.2, in the order of ``csoa_nb.core.scores.THETA_METRICS``.
LOC_ERROR_KEYS = (
    "top1_loc_err",
    "top5_loc_err",
    "gt_known_loc_err",
    "top1_cls_err",
    "top5_cls_err",
)


def topk_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Validated top-1 / top-5 correctness flags (bool, N each)."""
    logits = as_tensor(logits, "logits")
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape N x C (C >= 1); got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        logits = logits.double()
    if not torch.isfinite(logits).all():
        raise ValueError("logits contains NaN/inf values; check the model output")
    labels = as_tensor(labels, "labels")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({logits.shape[0]},) to match logits; "
            f"got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices; got dtype {labels.dtype}")
    labels = labels.long().to(logits.device)
    c = logits.shape[1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be in [0, {c - 1}] (C = {c} classes)")
    top1 = logits.argmax(dim=1) == labels
    k = min(5, c)
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return top1.cpu(), top5.cpu()


def _check_iou_vector(iou: object, n: int, name: str = "iou") -> Tensor:
    t = as_tensor(iou, name)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},); got {tuple(t.shape)}")
    t = t.double().cpu()
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"{name} must contain IoUs in [0, 1] (no NaN)")
    return t


def check_iou_threshold(iou_threshold: object) -> float:
    """The IoU a correct box needs, a number in ``(0, 1]`` (0.5 in the paper)."""
    if isinstance(iou_threshold, bool) or not isinstance(
        iou_threshold, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"iou_threshold must be a number in (0, 1]; got {iou_threshold!r}")
    value = float(iou_threshold)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1] (0.5 in the paper); got {value!r}")
    return value


def errors_from_flags(
    top1: Tensor, top5: Tensor, iou: Tensor, iou_threshold: float
) -> dict[str, float]:
    """The five errors (percent) from per-image top-1 / top-5 flags and box IoUs."""
    if top1.numel() == 0:
        raise ValueError("no samples: localization errors need at least one image")
    loc = iou >= iou_threshold

    def err(flags: Tensor) -> float:
        return 100.0 * (1.0 - flags.double().mean().item())

    return {
        "top1_loc_err": err(top1 & loc),
        "top5_loc_err": err(top5 & loc),
        "gt_known_loc_err": err(loc),
        "top1_cls_err": err(top1),
        "top5_cls_err": err(top5),
    }


def localization_errors(
    logits: Tensor, labels: Tensor, iou: Tensor, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Top-1 / top-5 / GT-known (Table 6) localisation and top-1 / top-5 classification errors in
    percent (Sec. 4.2); localised: ``iou >= iou_threshold`` (0.5, the ILSVRC rule). ``iou`` (``N``)
    is the GT-class box's: ILSVRC scores the predicted class's box, with the same numbers, since a
    wrong class is an error whatever its box. Only the ranking of ``logits`` (``N x C``) is used.

    Raises:
        ValueError: bad shapes, labels out of range, NaN, IoU outside ``[0, 1]``, ``N = 0``.
    """
    thr = check_iou_threshold(iou_threshold)
    top1, top5 = topk_correct(logits, labels)
    iou = _check_iou_vector(iou, top1.shape[0])
    return errors_from_flags(top1, top5, iou, thr)
