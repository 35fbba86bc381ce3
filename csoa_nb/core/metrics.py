"""Evaluation of CSoA in one pass: every localisation metric of a test set, batch by batch.

Paper protocol (Kou et al., WACV 2021, Sec. 4.1-4.2): classification scores are the softmax
scores averaged over 10 crops (``csoa_nb.core.ten_crop``, after Zhou et al., CVPR 2016); a box
is correct when its IoU with a ground-truth box is >= 0.5 (``csoa_nb.core.boxes``, the ILSVRC
rule of Russakovsky et al., IJCV 2015); Top-1 / Top-5 / GT-known localisation errors and Top-1
/ Top-5 classification errors are reported in percent (``csoa_nb.core.loc_errors``). Boxes
come from Eq. 13 at one threshold ``theta`` (``csoa_nb.core.localize``).

Beyond the paper (Choe et al., "Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020): MaxBoxAccV2 (``csoa_nb.core.maxboxacc``) and PxAP (``csoa_nb.core.pxap``).

``LocalizationEvaluator`` accumulates all of them over a test set and returns one
``csoa_nb.core.scores.Scores``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from csoa_nb.base.checks import check_theta
from csoa_nb.core.boxes import best_iou, check_box_list, check_boxes, pad_boxes
from csoa_nb.core.loc_errors import check_iou_threshold, errors_from_flags, topk_correct
from csoa_nb.core.localize import binarize, check_unit_maps, largest_component_box
from csoa_nb.core.maxboxacc import DEFAULT_IOU_THRESHOLDS, MaxBoxAccV2
from csoa_nb.core.pxap import PxAP, check_masks
from csoa_nb.core.scores import Scores, ThetaErrors

__all__ = ["LocalizationEvaluator"]


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
        self.iou_threshold = check_iou_threshold(iou_threshold)
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
        top1, top5 = topk_correct(logits, labels)
        maps = check_unit_maps(loc_maps)
        if maps.shape[0] != top1.shape[0]:
            raise ValueError(
                f"loc_maps has {maps.shape[0]} maps but logits has {top1.shape[0]} rows"
            )
        gts = check_box_list(gt_boxes, maps.shape[0])
        has_masks = gt_masks is not None
        if self._has_masks is not None and has_masks != self._has_masks:
            raise ValueError("gt_masks must be given for every batch or for none")
        masks = check_masks(gt_masks, maps.shape) if has_masks else None

        maps = maps.detach().cpu()
        b = maps.shape[0]
        stack = torch.cat([binarize(maps, t) for t in self.thetas])  # (T*B) x H x W
        boxes = largest_component_box(stack).view(len(self.thetas), b, 4)
        # every threshold's boxes against the padded GT boxes at once (the GT boxes are checked
        # once above, the predicted ones here): B x T
        predicted = check_boxes(boxes.reshape(-1, 4), "pred").view(len(self.thetas), b, 4)
        iou = best_iou(predicted, pad_boxes(gts)).T

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
            theta: ThetaErrors(**errors_from_flags(top1, top5, iou[:, k], self.iou_threshold))
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
