"""Boxes and their intersection over union (IoU), as every localisation metric scores them.

Boxes are ``(x0, y0, x1, y1)`` pixels with x1/y1 exclusive (``DESIGN.md``), so the area is
``(x1 - x0) * (y1 - y0)``, the formula ``torchvision.ops.box_iou`` uses. IoUs are float64 so
that thresholds such as 0.7 compare exactly. A box counts as correct when its IoU with a
ground-truth box is >= 0.5 (the ILSVRC rule of Russakovsky et al., IJCV 2015, Sec. 4.2 of the
paper); ``csoa_nb.core.loc_errors`` and ``csoa_nb.core.maxboxacc`` apply the thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from csoa_nb.base.checks import as_tensor

__all__ = ["best_iou", "box_iou", "max_iou", "pad_boxes", "pair_iou", "check_boxes",
           "check_box_list"]


# ----------------------------------------------------------------------------- validation
def check_boxes(boxes: object, name: str, *, allow_1d: bool = False) -> Tensor:
    """``boxes`` as a float64 ``N x 4`` tensor; a ValueError names the bad row."""
    t = as_tensor(boxes, name)
    if allow_1d and t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != 4:
        raise ValueError(f"{name} must have shape N x 4 (x0, y0, x1, y1); got {tuple(t.shape)}")
    t = t.double()
    if not torch.isfinite(t).all():
        row = int((~torch.isfinite(t)).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name}[{row}] = {t[row].tolist()} contains NaN/inf")
    inverted = (t[:, 2] < t[:, 0]) | (t[:, 3] < t[:, 1])
    if inverted.any():
        row = int(inverted.nonzero()[0, 0])
        raise ValueError(
            f"{name}[{row}] = {t[row].tolist()} is inverted (x1 < x0 or y1 < y0); boxes must "
            "be (x0, y0, x1, y1) with x1 >= x0, y1 >= y0 (convert CUB x,y,w,h to x,y,x+w,y+h)"
        )
    return t


def check_box_list(gt_boxes: object, n: int, name: str = "gt_boxes") -> list[Tensor]:
    """``n`` ground-truth box sets (a list of ``K_i x 4``, or a ``n x K x 4`` tensor) as a
    list of float64 ``K_i x 4`` tensors."""
    if isinstance(gt_boxes, Tensor) and gt_boxes.ndim == 3:
        gt_boxes = list(gt_boxes)
    if not isinstance(gt_boxes, Sequence) or isinstance(gt_boxes, (str, bytes)):
        raise ValueError(f"{name} must be a list of K x 4 tensors (one per image)")
    if len(gt_boxes) != n:
        raise ValueError(f"{name} has {len(gt_boxes)} entries but there are {n} images")
    return [check_boxes(b, f"{name}[{i}]", allow_1d=True) for i, b in enumerate(gt_boxes)]


# ----------------------------------------------------------------------------- IoU
def pair_iou(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """IoU of boxes paired by broadcasting ``a[..., 4]`` with ``b[..., 4]``; 0 if union is 0.

    Same formula as ``torchvision.ops.box_iou`` (area = (x1 - x0) * (y1 - y0), exclusive
    ends). Works on numpy arrays and torch tensors (float64 recommended)."""
    lib = torch if isinstance(a, Tensor) else np
    iw = (lib.minimum(a[..., 2], b[..., 2]) - lib.maximum(a[..., 0], b[..., 0])).clip(min=0)
    ih = (lib.minimum(a[..., 3], b[..., 3]) - lib.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    safe = lib.where(union > 0, union, lib.ones_like(union))
    return lib.where(union > 0, inter / safe, lib.zeros_like(inter))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU, float64 ``N x M`` in ``[0, 1]``, of boxes ``a`` (``N x 4``) and ``b``
    (``M x 4``), x1/y1 exclusive: ``torchvision.ops.box_iou`` with 0, not NaN, for degenerate pairs.

    Raises:
        ValueError: wrong shape, NaN/inf or an inverted box; the message names the offending row.
    """
    # torchvision on first use: its import costs about 2 s
    from torchvision.ops import box_iou as torchvision_box_iou

    a = check_boxes(a, "a")
    b = check_boxes(b, "b").to(a.device)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=a.device)
    return torch.nan_to_num(torchvision_box_iou(a, b), nan=0.0)


def max_iou(pred: Tensor, gt_boxes: Sequence[Tensor]) -> Tensor:
    """Best IoU (float64 ``N``, on ``pred``'s device) of each predicted box (``pred``: ``N x 4``)
    with any GT box of its image (``gt_boxes``: ``N`` tensors ``K_i x 4``; ``K_i = 0`` gives 0).

    Raises:
        ValueError: bad shapes, NaN/inf, inverted boxes, or ``len(gt_boxes) != N``.
    """
    pred = check_boxes(pred, "pred")
    gts = check_box_list(gt_boxes, pred.shape[0])
    return best_iou(pred.cpu(), pad_boxes(gts)).to(pred.device)


def pad_boxes(gts: Sequence[Tensor]) -> Tensor:
    """Checked box sets (`check_box_list`) as one float64 ``N x K_max x 4`` CPU tensor, padded
    with (0, 0, 0, 0) boxes, whose IoU with any box is 0."""
    k_max = max((g.shape[0] for g in gts), default=0)
    padded = torch.zeros(len(gts), k_max, 4, dtype=torch.float64)
    for i, g in enumerate(gts):
        padded[i, : g.shape[0]] = g.cpu()
    return padded


def best_iou(pred: Tensor, padded: Tensor) -> Tensor:
    """Best IoU of each box of ``pred`` (float64 ``... x N x 4``, checked, e.g. one set of ``N``
    boxes per CAM threshold) with the ``K`` boxes of its image in ``padded`` (`pad_boxes`):
    float64 ``... x N``, 0 where ``K = 0``."""
    if padded.shape[1] == 0:
        return torch.zeros(pred.shape[:-1], dtype=torch.float64)
    return pair_iou(pred[..., None, :], padded).amax(dim=-1)
