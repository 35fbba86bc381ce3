"""PxAP, the pixel-wise average precision of Choe et al., "Evaluating Weakly Supervised Object
Localization Methods Right", CVPR 2020 (reference code ``clovaai/wsolevaluation``).

The score map is compared pixel by pixel with a foreground mask, at every score threshold;
like MaxBoxAccV2 (``csoa_nb.core.maxboxacc``) it does not depend on Eq. 13's ``theta``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from csoa_nb.base.checks import as_tensor
from csoa_nb.core.localize import check_unit_maps

__all__ = ["PxAP", "pxap", "check_masks"]


def check_masks(gt_masks: object, shape: torch.Size, name: str = "gt_masks") -> Tensor:
    """Foreground masks as a bool tensor of ``shape`` (``B x H x W``, like the maps)."""
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
        """Add a batch: ``B x H x W`` scores in ``[0, 1]`` and aligned masks ``B x H x W`` (or
        ``B x 1 x H x W``) in ``{0, 1}``, 1 = foreground.

        Raises:
            ValueError: wrong shapes, values out of range, NaN.
        """
        maps = check_unit_maps(loc_maps)
        masks = check_masks(gt_masks, maps.shape)
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
    """One-shot PxAP (percent) of one batch: ``B x H x W`` maps in ``[0, 1]``, ``{0, 1}`` masks
    ``B x H x W`` (or ``B x 1 x H x W``); see ``PxAP`` (Choe et al., CVPR 2020)."""
    metric = PxAP(num_bins)
    metric.accumulate(loc_maps, masks)
    return metric.compute()["pxap"]
