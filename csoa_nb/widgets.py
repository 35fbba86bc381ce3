"""Interactive inspectors for the book, and the per-image computations behind them.

The book's figures and widgets look at the sample of test images a run saves (`cams.pt`, read
with `RunResult.cams()`): a dict with `images` (uint8 ``N x H x W x 3``), `labels` (``N``),
`boxes` (list of ``K x 4``, ``x0, y0, x1, y1`` in pixels, x1/y1 exclusive), `masks`,
`cam_last` (S_L, ``N x C x h x w``), `cam_feature` (S_F or None), `probs` and `theta`.

Three functions hold the numbers that figures and widgets show, so that a widget and the
static figure that stands in for it in the book can never disagree:

- :func:`localize_one`: Eq. 13 for one image at one theta (binary maps, union, box, IoU);
- :func:`confseg_one`: Eq. 2-5 and 7 for one image and class (mu1, mask, mu2, binary mask,
  xi1/xi2, the inner-loss map and value);
- :func:`coaug_batch` / :func:`coaug_views`: Eq. 8-12 on the saved images as one batch.

Two widgets call them: :func:`theta_explorer` (Eq. 13) and :func:`mask_inspector` (Eq. 2-5).
Both work headless: they draw into an ``ipywidgets.Image`` (PNG bytes), need no browser to be
built or driven (set a slider's ``value`` and the state attributes follow), and display
themselves in a notebook.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import normalize as tv_normalize

from csoa_nb.coaug import coaug_distances, coaug_loss, foreground_background, foreground_map
from csoa_nb.confseg import confidence_mask, inner_loss, thresholds_xi
from csoa_nb.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from csoa_nb.localize import (
    binarize,
    fuse_cams,
    largest_component_box,
    normalize_cam,
    upsample_cam,
)
from csoa_nb.metrics import max_iou

__all__ = [
    "MaskInspector",
    "ThetaExplorer",
    "coaug_batch",
    "coaug_views",
    "confseg_one",
    "localize_one",
    "mask_inspector",
    "theta_explorer",
]

#: Range of the theta slider (Eq. 13's ratio; the paper uses 0.2-0.4, Table 3).
THETA_RANGE = (0.05, 0.95)


# ---------------------------------------------------------------------------- checks
def _check_index(cams: dict[str, Any], index: int) -> int:
    count = len(cams["labels"])
    if isinstance(index, bool) or not 0 <= int(index) < count:
        raise ValueError(f"image index {index!r} out of range: the sample holds {count} images")
    return int(index)


def _class_of(cams: dict[str, Any], index: int, class_index: int | None) -> int:
    """`class_index`, or the ground-truth class of image `index` when None."""
    if class_index is None:
        return int(cams["labels"][index])
    num_classes = cams["cam_last"].shape[1]
    if isinstance(class_index, bool) or not 0 <= int(class_index) < num_classes:
        raise ValueError(f"class_index {class_index!r} out of range 0..{num_classes - 1}")
    return int(class_index)


def image_size(cams: dict[str, Any]) -> tuple[int, int]:
    """``(H, W)`` of the sample's images."""
    return int(cams["images"].shape[1]), int(cams["images"].shape[2])


# ---------------------------------------------------------------------------- Eq. 13
def localize_one(
    cams: dict[str, Any], index: int, theta: float, class_index: int | None = None
) -> dict[str, Any]:
    """Eq. 13 for image `index` of a CAM sample at threshold `theta`.

    The maps of `class_index` (default: the ground-truth class, i.e. GT-known localization)
    are upsampled to the image size and min-max normalised (`csoa_nb.localize`); each is
    binarised at ``theta`` (Eq. 13), the union is ``binarize(fuse_cams(...), theta)`` (equal to
    the OR of the two binary maps, see `fuse_cams`), and the box is the bounding box of the
    union's largest 8-connected component. Exactly what `csoa_nb.evaluate` scores.

    Returns a dict: `class_index`; `map_last`, `map_feature` (``H x W`` float in [0, 1];
    `map_feature` None for a one-head model); `loc_map` (their elementwise max); bool ``H x W``
    `binary_last`, `binary_feature` (or None) and `union`; `box` (float ``4``, x0, y0, x1, y1,
    x1/y1 exclusive; zeros if nothing passes); `iou` (float, best IoU with the image's GT boxes).
    """
    index = _check_index(cams, index)
    c = _class_of(cams, index, class_index)
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
def confseg_one(
    cams: dict[str, Any], index: int, class_index: int | None = None
) -> dict[str, Any]:
    """Eq. 2-5 and 7 for image `index` and class `class_index` (default: ground truth).

    On the raw map ``S_L^c`` (``h x w``, as the loss sees it): ``mu1`` (Eq. 2), the confidence
    mask ``|S_L^c - mu1|`` (Eq. 2), ``mu2`` (Eq. 4), the binary mask ``mask > mu2`` (Eq. 3),
    and ``xi1 = mu1 + mu2``, ``xi2 = mu1 - mu2`` (Eq. 7), all from `csoa_nb.confseg`. With a
    second head: ``S_F^c``, the per-pixel Eq. 5 term ``|S_F^c - S_L^c| * binary`` and its value
    `inner`, which is `csoa_nb.confseg.inner_loss` on this one image (the pixel mean of the
    term map; the paper sums, we average: see `inner_loss`).

    Returns a dict of tensors / floats: `class_index`, `cam_last`, `mu1`, `mask`, `mu2`,
    `binary` (float 0/1), `xi1`, `xi2`, `cam_feature`, `inner_map`, `inner` (the last three
    None for a one-head model).
    """
    index = _check_index(cams, index)
    c = _class_of(cams, index, class_index)
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
def model_images(cams: dict[str, Any]) -> Tensor:
    """The sample's uint8 images as the network sees them: float ``N x 3 x H x W``,
    ImageNet-normalised (the inverse of what `csoa_nb.evaluate.sample_cams` stored, up to the
    uint8 rounding)."""
    images = cams["images"].permute(0, 3, 1, 2).float() / 255.0
    return tv_normalize(images, IMAGENET_MEAN, IMAGENET_STD)


def coaug_views(cams: dict[str, Any]) -> dict[str, Tensor]:
    """The three inputs of W_E (Eq. 8, 10) for every image of the sample, ground-truth class.

    `csoa_nb.coaug.foreground_background` on the normalised images and raw S_L: ``S * I``,
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
    cams: dict[str, Any], embed_net: torch.nn.Module, gamma: float = 1.0, delta: float = 1.0
) -> dict[str, Any]:
    """Eq. 8-12 with the sample as one batch: embeddings, the four distances and L_D.

    `embed_net` is W_E (frozen, in eval mode). Returns `d_cam` (``N``, Eq. 9), `d_back` (``N``,
    Eq. 10), `d_pair` (``N x N``, Eq. 11), `same_class` (bool ``N x N``), `loss` (Eq. 12,
    `csoa_nb.coaug.coaug_loss` with the mean reduction used in training) and its two sums
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


# ---------------------------------------------------------------------------- widgets
def _png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (then closed, so no figure piles up in the kernel)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _image_picker(cams: dict[str, Any]) -> widgets.Dropdown:
    probs = cams.get("probs")
    options = []
    for i, label in enumerate(cams["labels"].tolist()):
        text = f"{i}: class {label}"
        if probs is not None:
            text += f", predicted {int(probs[i].argmax())}"
        options.append((text, i))
    return widgets.Dropdown(options=options, value=0, description="image")


class ThetaExplorer:
    """Eq. 13 interactively: pick an image and a theta, see the maps, union and box.

    Attributes (recomputed on every change, by :func:`localize_one`): `index`, `theta`,
    `box`, `iou`, `binary_last`, `binary_feature`, `union`, `result` (the whole dict).
    Controls: `image_picker` (Dropdown), `theta_slider` (FloatSlider); `widget` is the VBox to
    display (the figure is `csoa_nb.plots.cam_panel`, shown as a PNG in `view`).
    """

    def __init__(self, cams: dict[str, Any], theta: float = 0.3, index: int = 0) -> None:
        self.cams = cams
        self.image_picker = _image_picker(cams)
        self.image_picker.value = _check_index(cams, index)
        self.theta_slider = widgets.FloatSlider(
            value=theta, min=THETA_RANGE[0], max=THETA_RANGE[1], step=0.05,
            description="theta", readout_format=".2f", continuous_update=False,
        )
        self.summary = widgets.HTML()
        self.view = widgets.Image(format="png")
        self.widget = widgets.VBox(
            [widgets.HBox([self.image_picker, self.theta_slider]), self.summary, self.view]
        )
        self.image_picker.observe(self._update, names="value")
        self.theta_slider.observe(self._update, names="value")
        self._update()

    def _update(self, change: Any = None) -> None:
        from csoa_nb.plots import cam_panel

        self.index = int(self.image_picker.value)
        self.theta = float(self.theta_slider.value)
        self.result = localize_one(self.cams, self.index, self.theta)
        self.box = self.result["box"]
        self.iou = self.result["iou"]
        self.binary_last = self.result["binary_last"]
        self.binary_feature = self.result["binary_feature"]
        self.union = self.result["union"]
        x0, y0, x1, y1 = (int(v) for v in self.box.tolist())
        self.summary.value = (
            f"theta = {self.theta:.2f}: box ({x0}, {y0}, {x1}, {y1}), "
            f"IoU with the GT box {self.iou:.2f} ({'hit' if self.iou >= 0.5 else 'miss'} "
            "at IoU 0.5)"
        )
        self.view.value = _png(cam_panel(self.cams, self.index, self.theta))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class MaskInspector:
    """Eq. 2-5 interactively: pick an image and a class, see the confidence mask of S_L.

    Attributes (recomputed on every change, by :func:`confseg_one`): `index`, `class_index`,
    `mask` (``|S_L^c - mu1|``), `binary` (``mask > mu2``), `inner_map` (``|S_F^c - S_L^c| *
    binary``, None without S_F), `inner_term` (the Eq. 5 value, None without S_F), `result`.
    Choosing an image resets the class to that image's ground-truth class (the one Eq. 2-5 use
    in training). `widget` is the VBox to display (figure: `csoa_nb.plots.confseg_steps`).
    """

    def __init__(self, cams: dict[str, Any], index: int = 0) -> None:
        self.cams = cams
        self._syncing = False
        self.image_picker = _image_picker(cams)
        self.image_picker.value = _check_index(cams, index)
        num_classes = cams["cam_last"].shape[1]
        self.class_picker = widgets.Dropdown(
            options=[(f"class {c}", c) for c in range(num_classes)],
            value=int(cams["labels"][self.image_picker.value]),
            description="class",
        )
        self.summary = widgets.HTML()
        self.view = widgets.Image(format="png")
        self.widget = widgets.VBox(
            [widgets.HBox([self.image_picker, self.class_picker]), self.summary, self.view]
        )
        self.image_picker.observe(self._on_image, names="value")
        self.class_picker.observe(self._on_class, names="value")
        self._update()

    def _on_image(self, change: Any) -> None:
        self._syncing = True
        try:
            self.class_picker.value = int(self.cams["labels"][change["new"]])
        finally:
            self._syncing = False
        self._update()

    def _on_class(self, change: Any) -> None:
        if not self._syncing:
            self._update()

    def _update(self) -> None:
        from csoa_nb.plots import confseg_steps

        self.index = int(self.image_picker.value)
        self.class_index = int(self.class_picker.value)
        self.result = confseg_one(self.cams, self.index, self.class_index)
        self.mask = self.result["mask"]
        self.binary = self.result["binary"]
        self.inner_map = self.result["inner_map"]
        self.inner_term = self.result["inner"]
        r = self.result
        gt = int(self.cams["labels"][self.index])
        text = (
            f"class {self.class_index}{' (ground truth)' if self.class_index == gt else ''}: "
            f"mu1 = {r['mu1']:.3f}, mu2 = {r['mu2']:.3f}, xi1 = {r['xi1']:.3f}, "
            f"xi2 = {r['xi2']:.3f}, confident pixels {float(self.binary.mean()):.0%}"
        )
        if self.inner_term is not None:
            text += f", L_inner (Eq. 5) = {self.inner_term:.4f}"
        self.summary.value = text
        self.view.value = _png(confseg_steps(self.cams, self.index, self.class_index))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def theta_explorer(cams: dict[str, Any], theta: float = 0.3) -> ThetaExplorer:
    """A :class:`ThetaExplorer` on a CAM sample (`RunResult.cams()`), starting at `theta`."""
    return ThetaExplorer(cams, theta=theta)


def mask_inspector(cams: dict[str, Any]) -> MaskInspector:
    """A :class:`MaskInspector` on a CAM sample (`RunResult.cams()`)."""
    return MaskInspector(cams)
