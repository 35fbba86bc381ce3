"""MaxBoxAccV2 of Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020 (reference code ``clovaai/wsolevaluation``).

GT-known box accuracy maximised over CAM thresholds, averaged over the IoU thresholds
30/50/70 %, with all connected regions' boxes as candidates (multi-contour). Unlike the paper's
errors (``csoa_nb.core.loc_errors``) it does not depend on Eq. 13's ``theta``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from csoa_nb.core.boxes import check_box_list, pair_iou
from csoa_nb.core.localize import check_unit_maps, largest_per_slice, slice_components

__all__ = ["DEFAULT_CAM_THRESHOLDS", "DEFAULT_IOU_THRESHOLDS", "MaxBoxAccV2", "max_box_acc"]

#: CAM thresholds of MaxBoxAccV2: ``np.arange(0, 1, 0.01)`` (100 values), the default
#: ``--cam_curve_interval 0.01`` of wsolevaluation's ``evaluation.py`` CLI (its training
#: ``config.py`` uses 0.001; pass ``cam_thresholds=np.arange(0, 1, 0.001)`` for that).
DEFAULT_CAM_THRESHOLDS = np.arange(0, 1, 0.01)
#: IoU thresholds (percent) of MaxBoxAccV2, Choe et al. CVPR 2020.
DEFAULT_IOU_THRESHOLDS = (30, 50, 70)


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
        if gt.shape[0] == 0:
            return np.zeros(self.cam_thresholds.size, dtype=np.float64)
        return self._ious(self._components(loc_map), gt)

    def _components(self, loc_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The map's regions at every CAM threshold (`slice_components`): what `best_ious`
        compares with the GT boxes, and all that depends on the map."""
        binary = loc_map[None] > (self.cam_thresholds * loc_map.max())[:, None, None]
        return slice_components(binary)

    def _ious(self, components: tuple[np.ndarray, np.ndarray, np.ndarray],
              gt: np.ndarray) -> np.ndarray:
        n_thr = self.cam_thresholds.size
        best = np.zeros(n_thr, dtype=np.float64)
        boxes, slice_index, area = components
        if boxes.shape[0] == 0 or gt.shape[0] == 0:
            return best
        if self.multi_contour:
            comp_iou = pair_iou(boxes[:, None, :].astype(np.float64), gt[None]).max(axis=1)
            np.maximum.at(best, slice_index, comp_iou)
        else:
            pick = largest_per_slice(slice_index, area, n_thr)
            has = pick >= 0
            chosen = boxes[pick[has]].astype(np.float64)
            best[has] = pair_iou(chosen[:, None, :], gt[None]).max(axis=1)
        return best

    def image_hits(self, loc_maps: Tensor, gt_boxes: Sequence[Tensor]) -> np.ndarray:
        """Whether each map is correct at each (IoU level, CAM threshold): bool ``B x
        len(iou_thresholds) x len(cam_thresholds)``; their mean over images is the BoxAcc curve
        (`accumulate` adds them up), so a bootstrap over images can re-weight them.

        Args and errors as `accumulate`.
        """
        maps = check_unit_maps(loc_maps)
        gts = check_box_list(gt_boxes, maps.shape[0])
        arr = maps.detach().cpu().numpy()
        hits = np.zeros((arr.shape[0], len(self.iou_thresholds), self.cam_thresholds.size),
                        dtype=bool)
        previous, components = None, None
        for i in range(arr.shape[0]):
            # a map equal to the one before has its regions (the trivial baselines: one map
            # for every image)
            if previous is None or not np.array_equal(arr[i], previous):
                previous, components = arr[i], self._components(arr[i])
            best = self._ious(components, gts[i].cpu().numpy())
            hits[i] = best[None, :] >= self._iou_fractions[:, None]
        return hits

    def accumulate(self, loc_maps: Tensor, gt_boxes: Sequence[Tensor]) -> None:
        """Add a batch: ``B x H x W`` maps in ``[0, 1]`` (e.g. ``fuse_cams`` of the GT class) in the
        pixel frame of ``gt_boxes``, ``B`` tensors ``K_i x 4`` (x1/y1 exclusive).

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
    """One-shot ``MaxBoxAccV2(**kw).compute()`` over one batch: ``B x H x W`` maps in ``[0, 1]``
    and ``B`` GT box tensors ``K_i x 4`` (Choe et al., CVPR 2020)."""
    metric = MaxBoxAccV2(**kw)
    metric.accumulate(loc_maps, gt_boxes)
    return metric.compute()
