"""Evaluation of CSoA: the paper's localisation errors and two threshold-free metrics.

(Over 500 lines: the paper's errors, MaxBoxAccV2, PxAP, 10-crop scores and the evaluator
that accumulates them batch by batch share their input checks and IoU code; about half is the
validation and documentation of each metric's exact protocol.)

Paper protocol (Kou et al., WACV 2021, Sec. 4.1-4.2): classification scores are the softmax
scores averaged over 10 crops (``ten_crop_logits``, after Zhou et al., CVPR 2016); a box is
correct when its IoU with a ground-truth box is >= 0.5 (the ILSVRC rule of Russakovsky et al.,
IJCV 2015); Top-1 / Top-5 / GT-known localisation errors and Top-1 / Top-5 classification
errors are reported in percent (``localization_errors``). Boxes come from Eq. 13 at one
threshold ``theta`` (``csoa_nb.core.localize``).

Beyond the paper (Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020, reference code ``clovaai/wsolevaluation``):

* ``MaxBoxAccV2``: GT-known box accuracy maximised over CAM thresholds, averaged over the IoU
  thresholds 30/50/70 %, with all connected regions' boxes as candidates (multi-contour).
* ``PxAP``: pixel-wise average precision of the score map against a foreground mask.

Boxes are ``(x0, y0, x1, y1)`` pixels with x1/y1 exclusive (``DESIGN.md``); IoUs are float64
so that thresholds such as 0.7 compare exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import Tensor
from torchvision.ops import box_iou as _tv_box_iou

from csoa_nb.base.checks import as_tensor, check_map, check_theta
from csoa_nb.core.localize import (
    binarize,
    largest_component_box,
    largest_per_slice,
    slice_components,
)
from csoa_nb.core.scores import Scores, ThetaErrors

__all__ = [
    "DEFAULT_CAM_THRESHOLDS",
    "DEFAULT_IOU_THRESHOLDS",
    "box_iou",
    "max_iou",
    "localization_errors",
    "MaxBoxAccV2",
    "max_box_acc",
    "PxAP",
    "pxap",
    "ten_crop_logits",
    "LocalizationEvaluator",
]

#: CAM thresholds of MaxBoxAccV2: ``np.arange(0, 1, 0.01)`` (100 values), the default
#: ``--cam_curve_interval 0.01`` of wsolevaluation's ``evaluation.py`` CLI (its training
#: ``config.py`` uses 0.001; pass ``cam_thresholds=np.arange(0, 1, 0.001)`` for that).
DEFAULT_CAM_THRESHOLDS = np.arange(0, 1, 0.01)
#: IoU thresholds (percent) of MaxBoxAccV2, Choe et al. CVPR 2020.
DEFAULT_IOU_THRESHOLDS = (30, 50, 70)
LOC_ERROR_KEYS = (
    "top1_loc_err",
    "top5_loc_err",
    "gt_known_loc_err",
    "top1_cls_err",
    "top5_cls_err",
)


# ----------------------------------------------------------------------------- validation
def _check_boxes(boxes: object, name: str, *, allow_1d: bool = False) -> Tensor:
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


def _check_box_list(gt_boxes: object, n: int, name: str = "gt_boxes") -> list[Tensor]:
    if isinstance(gt_boxes, Tensor) and gt_boxes.ndim == 3:
        gt_boxes = list(gt_boxes)
    if not isinstance(gt_boxes, Sequence) or isinstance(gt_boxes, (str, bytes)):
        raise ValueError(f"{name} must be a list of K x 4 tensors (one per image)")
    if len(gt_boxes) != n:
        raise ValueError(f"{name} has {len(gt_boxes)} entries but there are {n} images")
    return [_check_boxes(b, f"{name}[{i}]", allow_1d=True) for i, b in enumerate(gt_boxes)]


def _check_unit_maps(loc_maps: object, name: str = "loc_maps") -> Tensor:
    t = check_map(loc_maps, name, ndim=3)
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"{name} must be normalised to [0, 1] (use csoa_nb.core.localize.fuse_cams or "
            f"normalize_cam); got min {float(t.min()):.4g}, max {float(t.max()):.4g}"
        )
    return t


def _check_masks(gt_masks: object, shape: torch.Size, name: str = "gt_masks") -> Tensor:
    t = as_tensor(gt_masks, name)
    if t.ndim == 4 and t.shape[1] == 1:  # B x 1 x H x W as collated by collate_wsol
        t = t[:, 0]
    if t.shape != shape:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (B x H x W, like loc_maps); "
            f"got {tuple(t.shape)}"
        )
    if not ((t == 0) | (t == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1 (background / foreground)")
    return t.bool()


def _pair_iou(a: np.ndarray | Tensor, b: np.ndarray | Tensor):
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


# ----------------------------------------------------------------------------- IoU
def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of two sets of boxes (``torchvision.ops.box_iou``, NaN-free).

    Args:
        a: tensor ``N x 4``, ``b``: tensor ``M x 4``; boxes ``(x0, y0, x1, y1)`` in pixels,
            x1/y1 exclusive, so the area is ``(x1 - x0) * (y1 - y0)`` -- the formula torchvision
            uses. Degenerate boxes (zero width or height, e.g. the empty box ``(0, 0, 0, 0)``)
            are allowed.

    Returns:
        float64 tensor ``N x M`` in ``[0, 1]``. A pair whose union has zero area (two
        degenerate boxes) gets IoU 0, never NaN.

    Raises:
        ValueError: wrong shape, NaN/inf, or an inverted box (``x1 < x0`` or ``y1 < y0``); the
            message names the offending row.
    """
    a = _check_boxes(a, "a")
    b = _check_boxes(b, "b").to(a.device)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=a.device)
    return torch.nan_to_num(_tv_box_iou(a, b), nan=0.0)


def max_iou(pred: Tensor, gt_boxes: Sequence[Tensor]) -> Tensor:
    """Best IoU of each predicted box with any ground-truth box of its own image.

    Args:
        pred: tensor ``N x 4``, one predicted box per image (``x0, y0, x1, y1``, exclusive).
        gt_boxes: list of ``N`` tensors ``K_i x 4`` (or ``4``), the GT boxes of image ``i``.
            ``K_i = 0`` is allowed and gives IoU 0.

    Returns:
        float64 tensor ``N`` in ``[0, 1]`` (on ``pred``'s device).

    Raises:
        ValueError: bad shapes, NaN/inf, inverted boxes, or ``len(gt_boxes) != N``.
    """
    pred = _check_boxes(pred, "pred")
    gts = _check_box_list(gt_boxes, pred.shape[0])
    n = pred.shape[0]
    k_max = max((g.shape[0] for g in gts), default=0)
    if n == 0 or k_max == 0:
        return torch.zeros(n, dtype=torch.float64, device=pred.device)
    padded = torch.zeros(n, k_max, 4, dtype=torch.float64)  # (0,0,0,0) pads: IoU 0
    for i, g in enumerate(gts):
        padded[i, : g.shape[0]] = g.cpu()
    iou = _pair_iou(pred.cpu()[:, None, :], padded)
    return iou.amax(dim=1).to(pred.device)


# ----------------------------------------------------------------------------- paper errors
def _topk_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
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


def _check_iou_threshold(iou_threshold: object) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(
        iou_threshold, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"iou_threshold must be a number in (0, 1]; got {iou_threshold!r}")
    value = float(iou_threshold)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1] (0.5 in the paper); got {value!r}")
    return value


def _errors_from_flags(
    top1: Tensor, top5: Tensor, iou: Tensor, iou_threshold: float
) -> dict[str, float]:
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
    """Top-1 / Top-5 / GT-known localisation errors and classification errors (Sec. 4.2).

    An image is localised correctly when ``iou >= iou_threshold`` (0.5, the ILSVRC rule of
    Russakovsky et al., IJCV 2015, that the paper follows). In percent:

    * ``top1_loc_err``: not (top-1 class correct and localised);
    * ``top5_loc_err``: not (GT class among the top ``k = min(5, C)`` and localised);
    * ``gt_known_loc_err``: not localised (class assumed known, Table 6);
    * ``top1_cls_err`` / ``top5_cls_err``: the classification errors.

    ``iou`` is the IoU of the box computed from the map of the **ground-truth** class. The
    ILSVRC protocol instead scores the box of the predicted class(es), but both give the same
    numbers: an image only counts as correct if the predicted class equals the GT class, and in
    that case the predicted class's box *is* the GT class's box; when the prediction is wrong
    the image is an error whatever its box. (For top-5 the box of the one correct guess among
    the five is the GT-class box.) So one box per image suffices.

    Args:
        logits: float tensor ``N x C`` of logits or probabilities (only the ranking is used).
        labels: int tensor ``N`` of GT classes in ``[0, C)``.
        iou: float tensor ``N`` in ``[0, 1]`` (e.g. ``max_iou(boxes, gt_boxes)``).
        iou_threshold: in ``(0, 1]``.

    Returns:
        dict with the five keys above, floats in ``[0, 100]``.

    Raises:
        ValueError: bad shapes, labels out of range, NaN, IoU outside ``[0, 1]``, ``N = 0``.
    """
    thr = _check_iou_threshold(iou_threshold)
    top1, top5 = _topk_correct(logits, labels)
    iou = _check_iou_vector(iou, top1.shape[0])
    return _errors_from_flags(top1, top5, iou, thr)


# ----------------------------------------------------------------------------- MaxBoxAccV2
def _check_cam_thresholds(cam_thresholds: object) -> np.ndarray:
    thr = np.asarray(
        DEFAULT_CAM_THRESHOLDS if cam_thresholds is None else cam_thresholds, dtype=np.float64
    )
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError("cam_thresholds must be a non-empty 1-D sequence of numbers in [0, 1)")
    if np.isnan(thr).any() or (thr < 0).any() or (thr >= 1).any():
        raise ValueError(f"cam_thresholds must lie in [0, 1); got min {thr.min()} max {thr.max()}")
    return thr


class MaxBoxAccV2:
    """MaxBoxAccV2 of Choe et al., "Evaluating Weakly Supervised Object Localization Methods
    Right", CVPR 2020 (definition of ``BoxEvaluator`` in ``clovaai/wsolevaluation``).

    For every score map and every CAM threshold ``tau`` the map is binarised at
    ``map > tau * max(map)`` (Eq. 13 with ``theta = tau``); each 8-connected region gives a
    candidate box (``multi_contour=True``) or only the largest region does; the map is correct
    at ``(tau, delta)`` if the best IoU over (candidate boxes x GT boxes) is ``>= delta / 100``.
    ``BoxAcc(tau, delta)`` is the percentage of correct maps; ``MaxBoxAcc(delta)`` its maximum
    over ``tau``; MaxBoxAccV2 the mean of ``MaxBoxAcc`` over ``delta in {30, 50, 70}``. The
    optimal threshold is chosen per IoU level, as in the reference code.

    Deliberate differences from the reference code (which uses OpenCV): thresholds act on the
    float map, not on a ``uint8`` copy; regions are 8-connected components (found by OpenCV's
    border following, as there), hole contours are not extra candidates, and "largest" means
    most pixels rather than largest polygon area; boxes keep the exclusive x1/y1 of
    ``DESIGN.md`` for both prediction and GT (the reference clips x1 to ``W - 1`` and adds 1 to
    widths in its IoU); an empty map gives the box ``(0, 0, 0, 0)`` with IoU 0.

    Usage: ``acc = MaxBoxAccV2(); acc.accumulate(maps, boxes)`` per batch, then
    ``acc.compute()``. Memory is ``O(len(iou_thresholds) * len(cam_thresholds))``.

    Args:
        cam_thresholds: 1-D thresholds in ``[0, 1)``; default ``np.arange(0, 1, 0.01)``.
        iou_thresholds: IoU levels in percent, in ``(0, 100]``; default ``(30, 50, 70)``.
        multi_contour: all regions' boxes are candidates (V2) or only the largest region's.
    """

    def __init__(
        self,
        cam_thresholds: Sequence[float] | np.ndarray | None = None,
        iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
        multi_contour: bool = True,
    ) -> None:
        self.cam_thresholds = _check_cam_thresholds(cam_thresholds)
        ious = np.asarray(iou_thresholds, dtype=np.float64)
        if ious.ndim != 1 or ious.size == 0 or np.isnan(ious).any():
            raise ValueError("iou_thresholds must be a non-empty sequence of percentages")
        if (ious <= 0).any() or (ious > 100).any():
            raise ValueError(f"iou_thresholds are percentages in (0, 100]; got {list(ious)}")
        if len(set(ious.tolist())) != ious.size:
            raise ValueError(f"iou_thresholds must be distinct; got {list(iou_thresholds)}")
        self.iou_thresholds = tuple(iou_thresholds)
        self._iou_fractions = ious / 100.0
        self.multi_contour = bool(multi_contour)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated maps."""
        self.num_correct = np.zeros(
            (len(self.iou_thresholds), self.cam_thresholds.size), dtype=np.int64
        )
        self.count = 0

    def best_ious(self, loc_map: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Best IoU at every CAM threshold for one map.

        Args:
            loc_map: float array ``H x W`` in ``[0, 1]``.
            gt: float64 array ``K x 4`` of GT boxes (exclusive ends).

        Returns:
            float64 array ``len(cam_thresholds)``; 0 where no region passes the threshold.
        """
        n_thr = self.cam_thresholds.size
        best = np.zeros(n_thr, dtype=np.float64)
        if gt.shape[0] == 0:
            return best
        binary = loc_map[None] > (self.cam_thresholds * loc_map.max())[:, None, None]
        boxes, slice_index, area = slice_components(binary)
        if boxes.shape[0] == 0:
            return best
        if self.multi_contour:
            comp_iou = _pair_iou(boxes[:, None, :].astype(np.float64), gt[None]).max(axis=1)
            np.maximum.at(best, slice_index, comp_iou)
        else:
            pick = largest_per_slice(slice_index, area, n_thr)
            has = pick >= 0
            chosen = boxes[pick[has]].astype(np.float64)
            best[has] = _pair_iou(chosen[:, None, :], gt[None]).max(axis=1)
        return best

    def image_hits(self, loc_maps: Tensor, gt_boxes: Sequence[Tensor]) -> np.ndarray:
        """Whether each map is correct at each (IoU level, CAM threshold): bool ``B x
        len(iou_thresholds) x len(cam_thresholds)``; their mean over images is the BoxAcc curve
        (`accumulate` adds them up), so a bootstrap over images can re-weight them.

        Args and errors as `accumulate`.
        """
        maps = _check_unit_maps(loc_maps)
        gts = _check_box_list(gt_boxes, maps.shape[0])
        arr = maps.detach().cpu().numpy()
        hits = np.zeros((arr.shape[0], len(self.iou_thresholds), self.cam_thresholds.size),
                        dtype=bool)
        for i in range(arr.shape[0]):
            best = self.best_ious(arr[i], gts[i].cpu().numpy())
            hits[i] = best[None, :] >= self._iou_fractions[:, None]
        return hits

    def accumulate(self, loc_maps: Tensor, gt_boxes: Sequence[Tensor]) -> None:
        """Add a batch.

        Args:
            loc_maps: float tensor ``B x H x W`` in ``[0, 1]`` (normalised score maps, e.g.
                ``fuse_cams`` of the GT class), in the pixel frame of the boxes.
            gt_boxes: list of ``B`` tensors ``K_i x 4`` (``x0, y0, x1, y1``, exclusive).

        Raises:
            ValueError: maps not ``B x H x W``, outside ``[0, 1]``, NaN; bad boxes.
        """
        hits = self.image_hits(loc_maps, gt_boxes)
        self.num_correct += hits.sum(axis=0)
        self.count += hits.shape[0]

    def compute(self) -> dict:
        """Final metrics.

        Returns:
            dict with ``max_box_acc_v2`` (mean over IoU levels, percent), ``max_box_acc`` and
            ``best_threshold`` (dicts: IoU level ``D`` as given, e.g. 50 -> value),
            ``box_acc_curve``
            (float64 array ``len(iou_thresholds) x len(cam_thresholds)``, percent),
            ``cam_thresholds``, ``iou_thresholds`` and ``num_images``.

        Raises:
            ValueError: nothing was accumulated.
        """
        if self.count == 0:
            raise ValueError("MaxBoxAccV2.compute() called before any accumulate()")
        curve = 100.0 * self.num_correct / self.count
        out: dict = {
            "max_box_acc_v2": float(curve.max(axis=1).mean()),
            "max_box_acc": {d: float(curve[j].max()) for j, d in enumerate(self.iou_thresholds)},
            "best_threshold": {
                d: float(self.cam_thresholds[curve[j].argmax()])
                for j, d in enumerate(self.iou_thresholds)
            },
        }
        out.update(
            box_acc_curve=curve,
            cam_thresholds=self.cam_thresholds.copy(),
            iou_thresholds=self.iou_thresholds,
            num_images=self.count,
        )
        return out


def max_box_acc(loc_maps: Tensor, gt_boxes: Sequence[Tensor], **kw) -> dict:
    """One-shot ``MaxBoxAccV2(**kw)`` over one batch (Choe et al., CVPR 2020).

    Args:
        loc_maps: float tensor ``B x H x W`` in ``[0, 1]``.
        gt_boxes: list of ``B`` tensors ``K_i x 4`` (exclusive ends).
        **kw: ``cam_thresholds``, ``iou_thresholds``, ``multi_contour``.

    Returns:
        the dict of ``MaxBoxAccV2.compute``.
    """
    metric = MaxBoxAccV2(**kw)
    metric.accumulate(loc_maps, gt_boxes)
    return metric.compute()


# ----------------------------------------------------------------------------- PxAP
class PxAP:
    """Pixel average precision (PxAP) of Choe et al., "Evaluating Weakly Supervised Object
    Localization Methods Right", CVPR 2020 (``MaskEvaluator`` of ``clovaai/wsolevaluation``).

    Every pixel of every map is a detection with its score; foreground pixels of the mask are
    positives. Scores are counted in ``num_bins`` bins ``[k/n, (k+1)/n)`` plus one bin for
    exactly 1.0, separately for positive and negative pixels, so memory is ``O(num_bins)``.
    With thresholds ``t`` = ``1, (n-1)/n, ..., 1/n, 0`` in decreasing order,
    ``TP(t)``/``FP(t)`` = positives/negatives with score ``>= t``,
    ``P(t) = TP / (TP + FP)``, ``R(t) = TP / #positives`` and

        PxAP = 100 * sum_t P(t) * (R(t) - R(t_prev)),   R(before the first t) = 0,

    skipping thresholds with ``TP + FP = 0``: precision at each threshold times the recall
    step, exactly the formula of the reference code (its extra empty ``[2, 3)`` bin is the
    ``R = 0`` start). Unlike the reference (OpenImages), masks carry no "ignore" label.

    Args:
        num_bins: score resolution (the reference uses 1000 = ``1 / cam_curve_interval``).
    """

    def __init__(self, num_bins: int = 1000) -> None:
        if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)):
            raise ValueError(f"num_bins must be a positive int; got {num_bins!r}")
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1; got {num_bins}")
        self.num_bins = int(num_bins)
        # left bin edges k / n plus the bin [1, 1] for a score of exactly 1.
        self._edges = np.append(np.arange(self.num_bins) / self.num_bins, 1.0)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated pixels."""
        self.pos_hist = np.zeros(self.num_bins + 1, dtype=np.int64)
        self.neg_hist = np.zeros(self.num_bins + 1, dtype=np.int64)

    def accumulate(self, loc_maps: Tensor, gt_masks: Tensor) -> None:
        """Add a batch.

        Args:
            loc_maps: float tensor ``B x H x W`` with scores in ``[0, 1]``.
            gt_masks: tensor ``B x H x W`` (or ``B x 1 x H x W``) with values in ``{0, 1}``
                (1 = foreground), aligned with ``loc_maps``.

        Raises:
            ValueError: wrong shapes, values out of range, NaN.
        """
        maps = _check_unit_maps(loc_maps)
        masks = _check_masks(gt_masks, maps.shape)
        scores = maps.detach().cpu().double().numpy().ravel()
        positive = masks.cpu().numpy().ravel()
        bins = np.searchsorted(self._edges, scores, side="right") - 1
        size = self.num_bins + 1
        self.pos_hist += np.bincount(bins[positive], minlength=size)
        self.neg_hist += np.bincount(bins[~positive], minlength=size)

    def compute(self) -> dict:
        """Final metric.

        Returns:
            dict with ``pxap`` (percent), ``thresholds`` (decreasing, ``num_bins + 1``),
            ``precision`` (NaN where no pixel reaches the threshold) and ``recall`` arrays.

        Raises:
            ValueError: no positive (foreground) pixel was accumulated.
        """
        n_pos = int(self.pos_hist.sum())
        if n_pos == 0:
            raise ValueError("PxAP needs at least one foreground pixel in gt_masks")
        tp = np.cumsum(self.pos_hist[::-1]).astype(np.float64)
        fp = np.cumsum(self.neg_hist[::-1]).astype(np.float64)
        predicted = tp + fp
        precision = np.full_like(tp, np.nan)
        np.divide(tp, predicted, out=precision, where=predicted > 0)
        recall = tp / n_pos
        step = np.diff(recall, prepend=0.0)
        ap = float(np.sum(np.where(predicted > 0, precision, 0.0) * step))
        return {
            "pxap": 100.0 * ap,
            "thresholds": self._edges[::-1].copy(),
            "precision": precision,
            "recall": recall,
        }


def pxap(loc_maps: Tensor, masks: Tensor, num_bins: int = 1000) -> float:
    """One-shot PxAP (percent) of one batch; see ``PxAP`` (Choe et al., CVPR 2020).

    Args:
        loc_maps: float tensor ``B x H x W`` in ``[0, 1]``.
        masks: tensor ``B x H x W`` (or ``B x 1 x H x W``) in ``{0, 1}``.
        num_bins: score resolution.
    """
    metric = PxAP(num_bins)
    metric.accumulate(loc_maps, masks)
    return metric.compute()["pxap"]


# ----------------------------------------------------------------------------- 10-crop
def ten_crop_logits(model: Callable[[Tensor], Tensor], images: Tensor, crop_size: int) -> Tensor:
    """10-crop classification scores of Sec. 4.1 (following Zhou et al., CVPR 2016).

    The four corner crops and the centre crop of ``crop_size x crop_size`` and the same five
    crops of the horizontally flipped image (``torchvision.transforms.functional.ten_crop``)
    are classified; the **softmax probabilities** of the 10 crops are averaged. Despite the
    name the result is therefore averaged softmax scores, not logits, because the paper
    "averages the scores from the softmax layer with 10 crops". Ranking-based metrics
    (``localization_errors``) accept them like logits.

    Call under ``torch.no_grad()`` in evaluation; the model is applied to one crop batch at a
    time (memory of one ``B``-image forward pass).

    Args:
        model: callable mapping a float tensor ``B x 3 x crop x crop`` to logits ``B x C``
            (for ``CSoANet`` wrap it, e.g. ``lambda x: net(x).<logits field>``).
        images: float tensor ``B x 3 x H x W`` (normalised images), ``H, W >= crop_size``.
        crop_size: side of the square crops in pixels.

    Returns:
        float tensor ``B x C`` of averaged probabilities; every row sums to 1.

    Raises:
        ValueError: bad image shape, NaN, crop larger than the image, or a model output that
            is not a ``B x C`` tensor.
    """
    images = check_map(images, "images", ndim=4)
    if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)):
        raise ValueError(f"crop_size must be a positive int; got {crop_size!r}")
    h, w = images.shape[-2:]
    if not 0 < crop_size <= min(h, w):
        raise ValueError(
            f"crop_size must be in [1, {min(h, w)}] for {h}x{w} images; got {crop_size}"
        )
    total: Tensor | None = None
    for i, crop in enumerate(TF.ten_crop(images, [int(crop_size), int(crop_size)])):
        out = model(crop)
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != images.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"model must return logits of shape ({images.shape[0]}, C); crop {i} gave {shape}"
            )
        probs = torch.softmax(out.float(), dim=1)
        if total is not None and probs.shape != total.shape:
            raise ValueError("model returned a different number of classes for different crops")
        total = probs if total is None else total + probs
    assert total is not None
    return total / 10.0


# ----------------------------------------------------------------------------- evaluator
class LocalizationEvaluator:
    """Accumulate a test set batch by batch, then report every localisation metric at once.

    Per batch it needs the classification scores, the GT labels and the normalised
    localisation map of the **ground-truth** class (``fuse_cams`` output, Eq. 13's union).
    Boxes are computed for every ``theta`` during ``accumulate`` (one labelling call per batch
    for all thetas), so a theta sweep (Table 3) costs a single pass over the data. Only
    per-image flags and IoUs are kept (``O(N * len(theta))``), plus fixed-size MaxBoxAccV2 /
    PxAP counters.

    Args:
        theta: one Eq. 13 threshold or a sequence of distinct ones, each in ``[0, 1]``.
        iou_threshold: IoU needed for a correct box (0.5, Sec. 4.2).
        with_maxboxacc: also accumulate ``MaxBoxAccV2`` (Choe et al., CVPR 2020).

    ``compute()`` returns a ``csoa_nb.core.scores.Scores`` whose ``theta`` is the first theta:

    * ``errors`` (the first theta's) and ``by_theta`` (each theta -> ``ThetaErrors``: top-1,
      top-5, GT-known loc. errors and the classification errors, ``localization_errors``);
    * ``gt_known_loc_acc``: IoU level 30 / 50 / 70 -> percent of boxes at the first theta
      with IoU >= 0.3 / 0.5 / 0.7;
    * ``max_box_acc_v2``, ``max_box_acc`` and ``best_threshold`` (by IoU level) when
      ``with_maxboxacc`` (the curve is in ``self.maxboxacc.compute()``);
    * ``pxap`` when ``gt_masks`` were given (then they must be given for every batch);
    * ``num_images``.
    """

    def __init__(
        self,
        theta: float | Sequence[float],
        iou_threshold: float = 0.5,
        with_maxboxacc: bool = True,
    ) -> None:
        thetas = [theta] if not isinstance(theta, (Sequence, np.ndarray)) else list(theta)
        if not thetas:
            raise ValueError("theta must be a number or a non-empty sequence of numbers")
        self.thetas = [check_theta(t) for t in thetas]
        if len({f"{t:g}" for t in self.thetas}) != len(self.thetas):
            raise ValueError(f"theta values must be distinct; got {thetas}")
        self.iou_threshold = _check_iou_threshold(iou_threshold)
        self.with_maxboxacc = bool(with_maxboxacc)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._top1: list[Tensor] = []
        self._top5: list[Tensor] = []
        self._iou: list[Tensor] = []  # each B x len(thetas)
        self.maxboxacc = MaxBoxAccV2() if self.with_maxboxacc else None
        self.pxap_metric = PxAP()
        self._has_masks: bool | None = None

    def accumulate(
        self,
        logits: Tensor,
        labels: Tensor,
        loc_maps: Tensor,
        gt_boxes: Sequence[Tensor],
        gt_masks: Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            logits: float tensor ``B x C`` (logits or probabilities, e.g. ``ten_crop_logits``).
            labels: int tensor ``B`` of GT classes.
            loc_maps: float tensor ``B x H x W`` in ``[0, 1]``, the normalised fused map of the
                GT class (``fuse_cams(cam_last[i, y_i], cam_feature[i, y_i], (H, W))``).
            gt_boxes: list of ``B`` tensors ``K_i x 4`` in the same pixel frame (exclusive).
            gt_masks: optional ``B x H x W`` (or ``B x 1 x H x W``) foreground masks for PxAP.

        Raises:
            ValueError: inconsistent shapes or values, or masks given for some batches only.
        """
        top1, top5 = _topk_correct(logits, labels)
        maps = _check_unit_maps(loc_maps)
        if maps.shape[0] != top1.shape[0]:
            raise ValueError(
                f"loc_maps has {maps.shape[0]} maps but logits has {top1.shape[0]} rows"
            )
        gts = _check_box_list(gt_boxes, maps.shape[0])
        has_masks = gt_masks is not None
        if self._has_masks is not None and has_masks != self._has_masks:
            raise ValueError("gt_masks must be given for every batch or for none")
        masks = _check_masks(gt_masks, maps.shape) if has_masks else None

        maps = maps.detach().cpu()
        b = maps.shape[0]
        stack = torch.cat([binarize(maps, t) for t in self.thetas])  # (T*B) x H x W
        boxes = largest_component_box(stack).view(len(self.thetas), b, 4)
        iou = torch.stack([max_iou(boxes[k], gts) for k in range(len(self.thetas))], dim=1)

        if self.maxboxacc is not None:
            self.maxboxacc.accumulate(maps, gts)
        if masks is not None:
            self.pxap_metric.accumulate(maps, masks)
        self._has_masks = has_masks
        self._top1.append(top1)
        self._top5.append(top5)
        self._iou.append(iou.cpu())

    @property
    def num_images(self) -> int:
        return sum(t.shape[0] for t in self._top1)

    def compute(self) -> Scores:
        """All metrics over the accumulated images (see the class docstring).

        Raises:
            ValueError: nothing was accumulated.
        """
        if self.num_images == 0:
            raise ValueError("LocalizationEvaluator.compute() called before any accumulate()")
        top1 = torch.cat(self._top1)
        top5 = torch.cat(self._top5)
        iou = torch.cat(self._iou)
        by_theta = {
            theta: ThetaErrors(**_errors_from_flags(top1, top5, iou[:, k], self.iou_threshold))
            for k, theta in enumerate(self.thetas)
        }
        accuracy = {
            delta: 100.0 * (iou[:, 0] >= delta / 100.0).double().mean().item()
            for delta in DEFAULT_IOU_THRESHOLDS
        }
        box: dict = {}
        if self.maxboxacc is not None:
            res = self.maxboxacc.compute()
            box = {key: res[key] for key in ("max_box_acc_v2", "max_box_acc", "best_threshold")}
        return Scores(
            theta=self.thetas[0],
            errors=by_theta[self.thetas[0]],
            by_theta=by_theta,
            gt_known_loc_acc=accuracy,
            num_images=self.num_images,
            pxap=self.pxap_metric.compute()["pxap"] if self._has_masks else None,
            **box,
        )
