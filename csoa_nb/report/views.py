"""Per-image computations that the book's figures and widgets share.

The book's figures and widgets look at the sample of test images a run saves (`cams.npz`, read
with `RunResult.cams()`): a dict with `images` (uint8 ``N x H x W x 3``), `labels` (``N``),
`boxes` (list of ``K x 4``, ``x0, y0, x1, y1`` in pixels, x1/y1 exclusive), `masks`,
`cam_last` (S_L, ``N x C x h x w``), `cam_feature` (S_F or None), `probs` and, for a saved
run, `classes` (``N x 2``: the classes whose maps it keeps, the ground truth first; the maps of
the other classes are NaN, `csoa_nb.engine.arrays`).

These functions hold the numbers that figures and widgets show, so that a widget and the
static figure that stands in for it in the book can never disagree:

- :func:`localize_one`: Eq. 13 for one image at one theta (binary maps, union, box, IoU);
- :func:`confseg_one`: Eq. 2-5 and 7 for one image and class (mu1, mask, mu2, binary mask,
  xi1/xi2, the inner-loss map and value);
- :func:`coaug_batch` / :func:`coaug_views`: Eq. 8-12 on the saved images as one batch.

`csoa_nb.report.plots` draws their results and `csoa_nb.report.widgets` drives them; a widget
computes each once per change and hands the result to the figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from csoa_nb.core.boxes import max_iou
from csoa_nb.core.localize import (
    binarize,
    fuse_cams,
    largest_component_box,
    normalize_cam,
    upsample_cam,
)
from csoa_nb.core.scores import SampleCams
from csoa_nb.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from csoa_nb.methods.coaug import coaug_distances, coaug_loss, foreground_background, foreground_map
from csoa_nb.methods.confseg import confidence_mask, inner_loss, thresholds_xi

__all__ = [
    "check_index",
    "class_of",
    "coaug_batch",
    "coaug_views",
    "confseg_one",
    "image_size",
    "kept_classes",
    "localize_one",
    "most_changed",
    "model_images",
]


# ---------------------------------------------------------------------------- checks
def check_index(cams: SampleCams, index: int) -> int:
    count = len(cams["labels"])
    if isinstance(index, bool) or not 0 <= int(index) < count:
        raise ValueError(f"image index {index!r} out of range: the sample holds {count} images")
    return int(index)


def kept_classes(cams: SampleCams, index: int) -> list[int]:
    """The classes whose maps the sample holds for image `index` (all, for a sample without
    `classes`)."""
    if cams.get("classes") is not None:
        return [int(c) for c in cams["classes"][index]]
    return list(range(cams["cam_last"].shape[1]))


def class_of(cams: SampleCams, index: int, class_index: int | None) -> int:
    """`class_index`, or the ground-truth class of image `index` when None."""
    if class_index is None:
        return int(cams["labels"][index])
    num_classes = cams["cam_last"].shape[1]
    if isinstance(class_index, bool) or not 0 <= int(class_index) < num_classes:
        raise ValueError(f"class_index {class_index!r} out of range 0..{num_classes - 1}")
    kept = kept_classes(cams, index)
    if int(class_index) not in kept:
        raise ValueError(f"the sample keeps the maps of classes {kept} of image {index} (the "
                         f"ground truth and the strongest other class), not of {class_index}")
    return int(class_index)


def image_size(cams: SampleCams) -> tuple[int, int]:
    """``(H, W)`` of the sample's images."""
    return int(cams["images"].shape[1]), int(cams["images"].shape[2])


# ---------------------------------------------------------------------------- Eq. 13
def localize_one(
    cams: SampleCams, index: int, theta: float, class_index: int | None = None
) -> dict[str, Any]:
    """Eq. 13 for image `index` of a CAM sample at threshold `theta`.

    The maps of `class_index` (default: the ground-truth class, i.e. GT-known localization)
    are upsampled to the image size and min-max normalised (`csoa_nb.core.localize`); each is
    binarised at ``theta`` (Eq. 13), the union is ``binarize(fuse_cams(...), theta)`` (equal to
    the OR of the two binary maps, see `fuse_cams`), and the box is the bounding box of the
    union's largest 8-connected component. Exactly what `csoa_nb.engine.evaluate` scores.

    Returns a dict: `class_index`; `map_last`, `map_feature` (``H x W`` float in [0, 1];
    `map_feature` None for a one-head model); `loc_map` (their elementwise max); bool ``H x W``
    `binary_last`, `binary_feature` (or None) and `union`; `box` (float ``4``, x0, y0, x1, y1,
    x1/y1 exclusive; zeros if nothing passes); `iou` (float, best IoU with the image's GT boxes).
    """
    index = check_index(cams, index)
    c = class_of(cams, index, class_index)
    size = image_size(cams)
    cam_last = cams["cam_last"][index, c][None].float()
    cam_feature = cams["cam_feature"]
    cam_feature = None if cam_feature is None else cam_feature[index, c][None].float()
    map_last = normalize_cam(upsample_cam(cam_last, size))[0]
    map_feature = None if cam_feature is None else normalize_cam(upsample_cam(cam_feature, size))[0]
    loc_map = fuse_cams(cam_last, cam_feature, size)[0]
    union = binarize(loc_map, theta)
    box = largest_component_box(union)
    iou = float(max_iou(box[None], [cams["boxes"][index]])[0])
    return {
        "class_index": c,
        "map_last": map_last,
        "map_feature": map_feature,
        "loc_map": loc_map,
        "binary_last": binarize(map_last, theta),
        "binary_feature": None if map_feature is None else binarize(map_feature, theta),
        "union": union,
        "box": box,
        "iou": iou,
    }


# ---------------------------------------------------------------------------- Eq. 2-7
def most_changed(before: SampleCams, after: SampleCams, theta: float, k: int = 2) -> list[int]:
    """The `k` sample images whose Eq. 13 box changes most between two runs' maps of the same
    images (largest |IoU after − IoU before| at `theta`; `localize_one`), most changed first,
    so that a figure of the two shows what the change does.

    Raises:
        ValueError: the two samples are not the same images.
    """
    if not np.array_equal(np.asarray(before["images"]), np.asarray(after["images"])):
        raise ValueError("the two runs' samples are not the same images: compare runs of one "
                         "data set and preset")
    change = [abs(localize_one(after, i, theta)["iou"] - localize_one(before, i, theta)["iou"])
              for i in range(len(before["labels"]))]
    return sorted(range(len(change)), key=lambda i: (-change[i], i))[:k]


def confseg_one(
    cams: SampleCams, index: int, class_index: int | None = None
) -> dict[str, Any]:
    """Eq. 2-5 and 7 for image `index` and class `class_index` (default: ground truth).

    On the raw map ``S_L^c`` (``h x w``, as the loss sees it): ``mu1`` (Eq. 2), the confidence
    mask ``|S_L^c - mu1|`` (Eq. 2), ``mu2`` (Eq. 4), the binary mask ``mask > mu2`` (Eq. 3),
    and ``xi1 = mu1 + mu2``, ``xi2 = mu1 - mu2`` (Eq. 7), all from `csoa_nb.methods.confseg`. With a
    second head: ``S_F^c``, the per-pixel Eq. 5 term ``|S_F^c - S_L^c| * binary`` and its value
    `inner`, which is `csoa_nb.methods.confseg.inner_loss` on this one image (the pixel mean of the
    term map; the paper sums, we average: see `inner_loss`).

    Returns a dict of tensors / floats: `class_index`, `cam_last`, `mu1`, `mask`, `mu2`,
    `binary` (float 0/1), `xi1`, `xi2`, `cam_feature`, `inner_map`, `inner` (the last three
    None for a one-head model).
    """
    index = check_index(cams, index)
    c = class_of(cams, index, class_index)
    cam_last = cams["cam_last"][index, c].float()
    mask, binary = confidence_mask(cam_last)
    xi1, xi2 = thresholds_xi(cam_last)
    out: dict[str, Any] = {
        "class_index": c,
        "cam_last": cam_last,
        "mu1": float(cam_last.mean()),
        "mask": mask,
        "mu2": float(mask.mean()),
        "binary": binary,
        "xi1": float(xi1),
        "xi2": float(xi2),
        "cam_feature": None,
        "inner_map": None,
        "inner": None,
    }
    if cams["cam_feature"] is not None:
        cam_feature = cams["cam_feature"][index, c].float()
        student = cam_feature
        if student.shape != cam_last.shape:  # as inner_loss does for maps of another size
            student = F.interpolate(student[None, None], size=cam_last.shape,
                                    mode="bilinear", align_corners=False)[0, 0]
        labels = torch.tensor([c])
        out["cam_feature"] = cam_feature
        out["inner_map"] = (student - cam_last).abs() * binary
        out["inner"] = float(inner_loss(cams["cam_feature"][index : index + 1].float(),
                                        cams["cam_last"][index : index + 1].float(), labels))
    return out


# ---------------------------------------------------------------------------- Eq. 8-12
def model_images(cams: SampleCams) -> Tensor:
    """The sample's uint8 images as the network sees them, ImageNet-normalised ``N x 3 x H x W``
    (inverting what `csoa_nb.engine.evaluate.sample_cams` stored, up to uint8 rounding)."""
    # torchvision on first use: its import costs about 2 s
    from torchvision.transforms.functional import normalize

    images = cams["images"].permute(0, 3, 1, 2).float() / 255.0
    return normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def coaug_views(cams: SampleCams) -> dict[str, Tensor]:
    """The three inputs of W_E (Eq. 8, 10) for every image of the sample, ground-truth class.

    `csoa_nb.methods.coaug.foreground_background` on the normalised images and raw S_L: ``S * I``,
    ``(1 - S) * I`` and ``(1 - S) * Mask_hat * I`` with ``S`` the ReLU-max normalised map.
    Returns `images`, `foreground`, `background`, `mask_background` (normalised ``N x 3 x H x
    W``, what W_E sees; zero = the ImageNet mean colour), `foreground_map` (``S``, ``N x 1 x H
    x W`` in [0, 1]) and `labels`.
    """
    images = model_images(cams)
    labels = cams["labels"].long()
    with torch.no_grad():
        cam_last = cams["cam_last"].float()
        fg, bg, mask_bg = foreground_background(images, cam_last, labels)
        fg_map = foreground_map(cam_last, labels, images.shape[-2:])
    return {"images": images, "foreground": fg, "background": bg, "mask_background": mask_bg,
            "foreground_map": fg_map, "labels": labels}


@torch.no_grad()
def coaug_batch(
    cams: SampleCams, embed_net: torch.nn.Module, gamma: float = 1.0, delta: float = 1.0
) -> dict[str, Any]:
    """Eq. 8-12 with the sample as one batch: embeddings, the four distances and L_D.

    `embed_net` is W_E (frozen, in eval mode). Returns `d_cam` (``N``, Eq. 9), `d_back` (``N``,
    Eq. 10), `d_pair` (``N x N``, Eq. 11), `same_class` (bool ``N x N``), `loss` (Eq. 12,
    `csoa_nb.methods.coaug.coaug_loss` with the mean reduction used in training) and its two sums
    `same` (pairs of one class) and `diff` (pairs of two classes), plus `labels`.
    """
    views = coaug_views(cams)
    embed_net.eval()
    count = len(views["labels"])
    embedded = embed_net(
        torch.cat([views["foreground"], views["background"], views["mask_background"]])
    )
    fg, bg, mask_bg = embedded[:count], embedded[count : 2 * count], embedded[2 * count :]
    d_cam, d_back, d_pair = coaug_distances(fg, bg, mask_bg)
    loss, terms = coaug_loss(fg, bg, mask_bg, views["labels"], gamma=gamma, delta=delta)
    labels = views["labels"]
    return {
        "labels": labels,
        "d_cam": d_cam,
        "d_back": d_back,
        "d_pair": d_pair,
        "same_class": labels[:, None] == labels[None, :],
        "loss": float(loss),
        "same": float(terms["same"]),
        "diff": float(terms["diff"]),
    }
