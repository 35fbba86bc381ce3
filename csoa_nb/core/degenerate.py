"""Which maps does CoAug's loss prefer? Eq. 12 scored on fixed candidate maps (chapter 04).

Training moves the CAM towards low L_D (Eq. 12). So it matters which maps L_D ranks best. This
module scores *fixed* maps, no training: for every test image, candidates built from its
ground truth (the mask, the box, the inverted mask, a dilated mask), the two maps that localize
nothing (S = 1 everywhere; an all-negative CAM, S = 0 after Eq. 8's ReLU/max) and the maps of
trained runs. Each is put through Eq. 8-12 exactly as in training
(`csoa_nb.methods.coaug.foreground_background`, a frozen W_E, `coaug_loss` with the mean reduction),
over class-balanced batches of the test set (Sec. 4.1), under both readings of Eq. 10's
Mask_hat: "paper" (Eq. 3, as written) and "below_mean" (our extension).

Embeddings do not depend on gamma or delta, so a gamma sweep costs one pass per candidate and
reading (`score_candidates(..., gammas=...)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csoa_nb.data import collate_wsol
from csoa_nb.data.sampler import ClassBalancedBatchSampler
from csoa_nb.methods.coaug import (
    BACKGROUNDS,
    coaug_loss,
    foreground_background,
)

#: Candidate maps, in the order the chapter shows them.
CANDIDATES = ("S = 0 (all negative)", "S = 1 everywhere", "inverted mask", "dilated mask",
              "ground-truth box", "ground-truth mask")


#: The gammas of Eq. 12 the chapter sweeps (1 is the paper's default).
GAMMAS = (0.0, 0.1, 0.17, 0.3, 1.0)


def test_tensors(dataset: Any, max_per_class: int = 40) -> dict[str, Any]:
    """The first `max_per_class` test items of each class, collated: `image`, `label`,
    `boxes`, `mask` (N x H x W; the boxes' maps where the data set has no masks) and `index`
    (positions in `dataset`, to pick the same images from a run's saved maps)."""
    per_class: dict[int, int] = {}
    chosen = []
    for position, label in enumerate(int(v) for v in dataset.labels):
        if per_class.get(label, 0) < max_per_class:
            per_class[label] = per_class.get(label, 0) + 1
            chosen.append(position)
    batch = collate_wsol([dataset[i] for i in chosen])
    size = tuple(batch["image"].shape[-2:])
    masks = batch.get("mask")
    batch["mask"] = masks[:, 0] if masks is not None else box_maps(batch["boxes"], size)
    batch["index"] = torch.tensor(chosen)
    return batch


def box_maps(boxes: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """Binary N x H x W maps, 1 inside each image's boxes (x0, y0, x1, y1; x1/y1 exclusive)."""
    maps = torch.zeros(len(boxes), *size)
    for k, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in image_boxes.round().long().tolist():
            maps[k, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1.0
    return maps


def candidate_maps(masks: Tensor, boxes: Sequence[Tensor], dilation: int = 4) -> dict[str, Tensor]:
    """The fixed candidates of `CANDIDATES` for ground-truth `masks` (N x H x W, {0, 1}).

    Values are raw CAM values: Eq. 8 turns them into S with ReLU/max, so a map of 1s is S = 1
    and a map of -1s is S = 0. The dilated mask grows the mask by `dilation` pixels (a max-pool).
    """
    masks = masks.float()
    dilated = F.max_pool2d(masks[:, None], 2 * dilation + 1, stride=1, padding=dilation)[:, 0]
    return {
        "S = 0 (all negative)": -torch.ones_like(masks),
        "S = 1 everywhere": torch.ones_like(masks),
        "inverted mask": 1.0 - masks,
        "dilated mask": dilated,
        "ground-truth box": box_maps(boxes, tuple(masks.shape[-2:])),
        "ground-truth mask": masks,
    }


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Raw N x h x w CAMs bilinearly resized to N x H x W (as Eq. 8 sees them)."""
    return F.interpolate(maps.float()[:, None], size=size, mode="bilinear",
                         align_corners=False)[:, 0]


@torch.no_grad()
def score_candidates(
    images: Tensor,
    labels: Tensor,
    candidates: dict[str, Tensor],
    embed_net: nn.Module,
    *,
    gammas: Sequence[float] = (1.0,),
    delta: float = 1.0,
    backgrounds: Sequence[str] = BACKGROUNDS,
    batch_size: int = 48,
    classes_per_batch: int = 12,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean L_D (Eq. 12) and mean D_back of each candidate, reading and gamma.

    `images` N x 3 x H x W (normalised), `labels` N, each candidate N x H x W raw maps at image
    size. Batches: `ClassBalancedBatchSampler` over the labels (the same batches for every
    candidate). Returns one row per (candidate, background, gamma) with columns `loss`
    (mean over batches) and `d_back` (mean over images).
    """
    sampler = ClassBalancedBatchSampler(labels.tolist(), batch_size, classes_per_batch, seed=seed)
    batches = [torch.tensor(b) for b in sampler]
    classes = int(labels.max()) + 1
    rows = []
    for background in backgrounds:
        for name, maps in candidates.items():
            losses: dict[float, list[float]] = {g: [] for g in gammas}
            d_backs = []
            for batch in batches:
                cam = torch.zeros(len(batch), classes, *maps.shape[-2:])
                cam[torch.arange(len(batch)), labels[batch]] = maps[batch].float()
                views = foreground_background(images[batch], cam, labels[batch],
                                              background=background)
                fg, bg, mask_bg = embed_net(torch.cat(views)).chunk(3)
                for gamma in gammas:
                    loss, terms = coaug_loss(fg, bg, mask_bg, labels[batch], gamma=gamma,
                                             delta=delta)
                    losses[gamma].append(float(loss))
                d_backs.append(float(terms["d_back"]))
            for gamma in gammas:
                rows.append({"candidate": name, "background": background, "gamma": gamma,
                             "loss": sum(losses[gamma]) / len(batches),
                             "d_back": sum(d_backs) / len(batches)})
    return pd.DataFrame(rows)


def best_candidate(scores: pd.DataFrame) -> pd.DataFrame:
    """The lowest-loss candidate per (background, gamma)."""
    best = scores.loc[scores.groupby(["background", "gamma"])["loss"].idxmin()]
    return best.set_index(["background", "gamma"])[["candidate", "loss"]]


def describe_best(scores: pd.DataFrame) -> str:
    """Markdown bullets, one per reading of Eq. 10: the lowest-loss map at each gamma, and
    whether it localizes nothing, is the ground truth, or is another map."""
    best = best_candidate(scores)
    labels = {"paper": "Eq. 10 as written", "below_mean": "Eq. 10 with our fix"}
    lines = []
    for background in dict.fromkeys(scores["background"]):
        rows = best.loc[[background]]
        parts = [f"{candidate} at gamma {gamma:g}"
                 for (_, gamma), candidate in rows["candidate"].items()]
        nothing = rows["candidate"].str.startswith("S = ").sum()
        truth = rows["candidate"].str.startswith("ground-truth").sum()
        lines.append(
            f"- {labels.get(background, background)}: the lowest loss goes to "
            + "; ".join(parts)
            + f". A map that localizes nothing wins at {nothing} of {len(rows)} gammas, the "
            f"ground truth at {truth}."
        )
    return "\n".join(lines)
