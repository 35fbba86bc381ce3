"""Collapse monitors: is the CAM still a map of the object?

CoAug's Eq. 12 has degenerate minima (chapter 04): a map that is negative everywhere (after the
ReLU/max of Eq. 8, S = 0: every foreground F is the same blank image) and a map that is
saturated (S = 1 almost everywhere: the background B is blank and D_back = 0). Min-max
normalisation at evaluation then draws an all-negative map with the object *dark*, which looks
like an "inverted" map. Three numbers tell these apart, per epoch and for the final test set:

- `cam_nonpositive`: share of raw true-class CAM pixels <= 0 (all-negative collapse: ~1);
- `fg_saturated`: share of pixels where S = relu(S_L^c) / max relu(S_L^c) exceeds 0.5
  (saturation: most of the image);
- `box_mass_ratio` (`csoa_nb.engine.evaluate.box_mass_ratio`): map mass inside the ground-truth box
  over the box's share of the image (< 1: the map prefers the background: inverted).
"""

from __future__ import annotations

import torch
from torch import Tensor

from csoa_nb.methods.coaug import foreground_map

#: Where each collapse is declared: (monitor, comparison, limit).
ALL_NEGATIVE_LIMIT = 0.95  # cam_nonpositive >= this
SATURATED_LIMIT = 0.6  # fg_saturated >= this (a correct map of our objects: ~0.1-0.3)
INVERTED_LIMIT = 1.0  # box_mass_ratio < this


def collapse_stats(cam_gt: Tensor) -> dict[str, float]:
    """`cam_nonpositive` and `fg_saturated` of raw true-class maps `cam_gt` (N x h x w)."""
    if cam_gt.dim() != 3:
        raise ValueError(f"cam_gt must be N x h x w raw maps, got shape {tuple(cam_gt.shape)}")
    cam = cam_gt.float()
    labels = torch.zeros(len(cam), dtype=torch.long, device=cam.device)
    fg = foreground_map(cam[:, None], labels, cam.shape[-2:])
    return {
        "cam_nonpositive": float((cam <= 0).float().mean()),
        "fg_saturated": float((fg > 0.5).float().mean()),
    }


def diagnose_collapse(stats: dict[str, float]) -> list[str]:
    """One sentence per collapse that `stats` (collapse_stats + box_mass_ratio) shows."""
    found = []
    nonpositive = stats.get("cam_nonpositive")
    if nonpositive is not None and nonpositive >= ALL_NEGATIVE_LIMIT:
        found.append(
            f"all-negative map: {100 * nonpositive:.1f} % of raw CAM pixels are <= 0, so "
            "Eq. 8's S is 0 and min-max normalisation draws the object dark; look at the raw "
            "maps and the class scores"
        )
    saturated = stats.get("fg_saturated")
    if saturated is not None and saturated >= SATURATED_LIMIT:
        found.append(
            f"saturated map: S > 0.5 on {100 * saturated:.1f} % of pixels, the foreground is "
            "most of the image and D_back of Eq. 10 is ~0; look at the maps and L_D's D_back"
        )
    ratio = stats.get("box_mass_ratio")
    if ratio is not None and ratio < INVERTED_LIMIT and not found:
        found.append(
            f"inverted map: less mass inside the ground-truth boxes than a uniform map "
            f"(ratio {ratio:.2f} < 1), the background is brighter than the object; look at the "
            "maps"
        )
    return found
