"""Interactive inspectors for the book: the theta explorer (Eq. 13) and the mask inspector
(Eq. 2-5), and the static pictures of their states that stand in for them in the HTML.

A widget's state is drawn by one plain function, `draw_theta_state` or `draw_mask_state`, on a
figure or on one subfigure of a grid: the widget shows `theta_state` / `mask_state` (one state,
a figure of its own) and the book shows `theta_states` / `mask_states` (fixed states, one
subfigure each), so the picture a reader of the HTML sees is the one the Lab reader sees. The
numbers come from `csoa_nb.report.views`, computed once per change and handed to the drawing.
The widgets work headless: they draw into an ``ipywidgets.Image`` (PNG bytes), need no browser
to be built or driven (set a slider's ``value`` and the state attributes follow), and display
themselves in a notebook.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase
from matplotlib.patches import Patch

from csoa_nb.core.scores import SampleCams
from csoa_nb.report.plots import CONFIDENCE_CMAP, draw_region
from csoa_nb.report.style import (
    COLUMN_WIDTH_IN,
    MIN_FONT_PT,
    PANEL_IN,
    PRED_COLOR,
    draw_box,
    draw_gt_boxes,
    heat_bar,
    hide_ticks,
    house_style,
    show_heat,
    show_image,
)
from csoa_nb.report.views import check_index, confseg_one, kept_classes, localize_one

__all__ = [
    "STATIC_THETAS",
    "MaskInspector",
    "ThetaExplorer",
    "draw_mask_state",
    "draw_theta_state",
    "mask_inspector",
    "mask_state",
    "mask_states",
    "theta_explorer",
    "theta_state",
    "theta_states",
]

#: Range of the theta slider (Eq. 13's ratio; the paper uses 0.2-0.4, Table 3).
THETA_RANGE = (0.05, 0.95)
#: The thetas of the theta explorer's static picture: the three of the paper's Table 3.
STATIC_THETAS = (0.2, 0.3, 0.4)
#: Height of one state's title line above its panels (inches).
_TITLE_IN = 0.35


# ---------------------------------------------------------------------------- states
def _box_text(box: Any) -> str:
    x0, y0, x1, y1 = (int(v) for v in box.tolist())
    return f"({x0}, {y0}, {x1}, {y1})"


def _theta_state_size(two_heads: bool) -> tuple[float, float]:
    """(width, height) in inches of one theta state: a row of `PANEL_IN` panels, the colour
    bar and the title."""
    return (4 if two_heads else 3) * PANEL_IN + 0.6, PANEL_IN + _TITLE_IN


def draw_theta_state(
    fig: FigureBase, cams: SampleCams, index: int, theta: float, result: dict[str, Any]
) -> list[Axes]:
    """One state of the theta explorer on `fig` (a figure, or one subfigure of a grid): Eq. 13
    on image `index` at `theta`, `result` being `localize_one(cams, index, theta)`.

    One row, left to right: the map(s) Eq. 13 thresholds over the image (S_L; S_F too for two
    heads; one colour bar), the region above ``theta * max`` (the union of the thresholded maps,
    yellow), the image with the GT box (green) and the box of the region's largest component
    (red, dashed) and its IoU. The title names the image, theta and the box. Returns the panels'
    axes, left to right (the colour bar's not included).
    """
    two = result["map_feature"] is not None
    axes = list(fig.subplots(1, 4 if two else 3, squeeze=False)[0])
    image = np.asarray(cams["images"][index])
    heat = show_heat(axes[0], image, result["map_last"], "$S_L$")
    if two:
        show_heat(axes[1], image, result["map_feature"], "$S_F$")
    maps = axes[:2] if two else axes[:1]
    region, box = axes[-2], axes[-1]
    show_image(region, image, "union (Eq. 13)" if two else "region (Eq. 13)")
    draw_region(region, result["union"].numpy())
    show_image(box, image, f"box: IoU {result['iou']:.2f}")
    draw_gt_boxes(box, cams["boxes"][index])
    draw_box(box, result["box"], PRED_COLOR, dashed=True)
    heat_bar(fig.figure, heat, maps)
    fig.suptitle(f"image {index}, class {result['class_index']}, $\\theta$ = {theta:.2f}: "
                 f"box {_box_text(result['box'])}")
    return axes


@house_style
def theta_state(
    cams: SampleCams, index: int, theta: float, *, result: dict[str, Any] | None = None
) -> Figure:
    """The figure the theta explorer shows: `draw_theta_state` on a figure of its own.
    `result`: `localize_one(cams, index, theta)` if the caller has it already (the widget)."""
    result = localize_one(cams, index, theta) if result is None else result
    fig = plt.figure(figsize=_theta_state_size(result["map_feature"] is not None),
                     layout="constrained")
    draw_theta_state(fig, cams, index, theta, result)
    return fig


@house_style
def theta_states(
    cams: SampleCams, index: int = 0, thetas: Sequence[float] = STATIC_THETAS
) -> Figure:
    """The theta explorer's static picture: its states at `thetas` on image `index` (its first
    image by default), one row each, each drawn by `draw_theta_state` as the explorer draws
    it."""
    index = check_index(cams, index)
    width, height = _theta_state_size(cams["cam_feature"] is not None)
    fig = plt.figure(figsize=(width, height * len(thetas)), layout="constrained")
    subfigures = fig.subfigures(len(thetas), 1, squeeze=False).ravel()
    for sub, theta in zip(subfigures, thetas, strict=True):
        draw_theta_state(sub, cams, index, theta, localize_one(cams, index, theta))
    return fig


def _mask_state_size(two_heads: bool) -> tuple[float, float]:
    """(width, height) in inches of one mask state: two rows of square panels a third of the
    column wide."""
    panel = COLUMN_WIDTH_IN / 3
    return (3 if two_heads else 2) * panel, 2 * panel + _TITLE_IN


def draw_mask_state(
    fig: FigureBase, cams: SampleCams, index: int, result: dict[str, Any]
) -> list[Axes]:
    """One state of the mask inspector on `fig` (a figure, or one subfigure of a grid): Eq. 2-5
    on image `index` and class ``result["class_index"]``, `result` being `confseg_one`'s.

    At the map's own resolution, in reading order (two rows of three): the image with its GT
    box; S_L^c with mu1; the confidence mask |S_L^c - mu1| with mu2 (Eq. 2, 4); the binary
    mask (Eq. 3), split by Eq. 7 into confident object (S > xi1, gold) and confident background
    (S < xi2, blue), ambiguous pixels grey; S_F^c on S_L^c's colour scale; the Eq. 5 term
    |S_F^c - S_L^c| * mask with its mean, L_inner. Every continuous map has its colour bar.
    One-head models stop after the binary mask (two rows of two). Returns the panels' axes.
    """
    two = result["cam_feature"] is not None
    axes = list(fig.subplots(2, 3 if two else 2).ravel())
    show_image(axes[0], np.asarray(cams["images"][index]), "image")
    draw_gt_boxes(axes[0], cams["boxes"][index])
    cam_last = result["cam_last"].numpy()
    scale = [cam_last] + ([result["cam_feature"].numpy()] if two else [])
    lo, hi = min(m.min() for m in scale), max(m.max() for m in scale)

    def show(ax: Axes, data: np.ndarray, title: str, **kw: Any) -> None:
        image = ax.imshow(data, interpolation="nearest", **kw)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        ax.set_title(title, fontsize=MIN_FONT_PT)
        hide_ticks(ax)

    show(axes[1], cam_last, f"$S_L^c$, $\\mu_1$ = {result['mu1']:.2f}", vmin=lo, vmax=hi)
    show(axes[2], result["mask"].numpy(), f"$|S_L^c - \\mu_1|$, $\\mu_2$ = {result['mu2']:.2f}",
         cmap="magma")
    confident = result["binary"].numpy() * np.where(cam_last > result["mu1"], 2, 1)
    axes[3].imshow(confident, cmap=CONFIDENCE_CMAP, vmin=0, vmax=2, interpolation="nearest")
    axes[3].set_title(f"binary mask: {float(result['binary'].mean()):.0%} confident",
                      fontsize=MIN_FONT_PT)
    axes[3].legend(
        handles=[Patch(color="gold", label="$S > \\xi_1$"),
                 Patch(color="tab:blue", label="$S < \\xi_2$"),
                 Patch(color="0.75", label="ambiguous")],
        loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, handlelength=1.0,
    )
    hide_ticks(axes[3])
    if two:
        show(axes[4], result["cam_feature"].numpy(), "$S_F^c$ (same scale)", vmin=lo, vmax=hi)
        show(axes[5], result["inner_map"].numpy(),
             f"$|S_F^c - S_L^c| \\cdot$ mask,\nmean $L_{{inner}}$ = {result['inner']:.3f}",
             cmap="magma")
    gt = " (ground truth)" if result["class_index"] == int(cams["labels"][index]) else ""
    fig.suptitle(f"image {index}, class {result['class_index']}{gt}")
    return axes


@house_style
def mask_state(
    cams: SampleCams,
    index: int,
    class_index: int | None = None,
    *,
    result: dict[str, Any] | None = None,
) -> Figure:
    """The figure the mask inspector shows: `draw_mask_state` on a figure of its own, for the
    class `class_index` (default: the ground truth). `result`: `confseg_one(cams, index,
    class_index)` if the caller has it already (the widget)."""
    result = confseg_one(cams, index, class_index) if result is None else result
    fig = plt.figure(figsize=_mask_state_size(result["cam_feature"] is not None),
                     layout="constrained")
    draw_mask_state(fig, cams, index, result)
    return fig


@house_style
def mask_states(cams: SampleCams, indices: Sequence[int]) -> Figure:
    """The mask inspector's static picture: its state on each image of `indices` (the class
    it then shows: the ground truth), one below the other, each drawn by `draw_mask_state`."""
    indices = [check_index(cams, i) for i in indices]
    width, height = _mask_state_size(cams["cam_feature"] is not None)
    fig = plt.figure(figsize=(width, height * len(indices)), layout="constrained")
    subfigures = fig.subfigures(len(indices), 1, squeeze=False).ravel()
    for sub, index in zip(subfigures, indices, strict=True):
        draw_mask_state(sub, cams, index, confseg_one(cams, index))
    return fig


# ---------------------------------------------------------------------------- widgets
def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes (then closed, so no figure piles up in the kernel)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()
def _image_picker(cams: SampleCams) -> widgets.Dropdown:
    probs = cams.get("probs")
    options = []
    for i, label in enumerate(cams["labels"].tolist()):
        text = f"{i}: class {label}"
        if probs is not None:
            text += f", predicted {int(probs[i].argmax())}"
        options.append((text, i))
    return widgets.Dropdown(options=options, value=0, description="image")


def _class_options(cams: SampleCams, index: int) -> list[tuple[str, int]]:
    """The classes of image `index` whose maps the sample keeps, the ground truth first."""
    return [(f"class {c}", c) for c in kept_classes(cams, index)]


class ThetaExplorer:
    """Eq. 13 interactively: pick an image and a theta, see the maps, union and box.

    Attributes (recomputed on every change, by :func:`localize_one`): `index`, `theta`,
    `box`, `iou`, `binary_last`, `binary_feature`, `union`, `result` (the whole dict).
    Controls: `image_picker` (Dropdown), `theta_slider` (FloatSlider); `widget` is the VBox to
    display (the figure is `theta_state`, shown as a PNG in `view`).
    """

    def __init__(self, cams: SampleCams, theta: float = 0.3, index: int = 0) -> None:
        self.cams = cams
        self.image_picker = _image_picker(cams)
        self.image_picker.value = check_index(cams, index)
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
        self.view.value = _png(theta_state(self.cams, self.index, self.theta, result=self.result))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class MaskInspector:
    """Eq. 2-5 interactively: pick an image and a class, see the confidence mask of S_L.

    Attributes (recomputed on every change, by :func:`confseg_one`): `index`, `class_index`,
    `mask` (``|S_L^c - mu1|``), `binary` (``mask > mu2``), `inner_map` (``|S_F^c - S_L^c| *
    binary``, None without S_F), `inner_term` (the Eq. 5 value, None without S_F), `result`.
    Choosing an image resets the class to that image's ground-truth class (the one Eq. 2-5 use
    in training). `widget` is the VBox to display (the figure is `mask_state`, shown in `view`).
    """

    def __init__(self, cams: SampleCams, index: int = 0) -> None:
        self.cams = cams
        self._syncing = False
        self.image_picker = _image_picker(cams)
        self.image_picker.value = check_index(cams, index)
        self.class_picker = widgets.Dropdown(
            options=_class_options(cams, self.image_picker.value),
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
            self.class_picker.options = _class_options(self.cams, change["new"])
            self.class_picker.value = int(self.cams["labels"][change["new"]])
        finally:
            self._syncing = False
        self._update()

    def _on_class(self, change: Any) -> None:
        if not self._syncing:
            self._update()

    def _update(self) -> None:
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
        self.view.value = _png(
            mask_state(self.cams, self.index, self.class_index, result=self.result)
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def theta_explorer(cams: SampleCams, theta: float = 0.3) -> ThetaExplorer:
    """A :class:`ThetaExplorer` on a CAM sample (`RunResult.cams()`), starting at `theta`."""
    return ThetaExplorer(cams, theta=theta)


def mask_inspector(cams: SampleCams) -> MaskInspector:
    """A :class:`MaskInspector` on a CAM sample (`RunResult.cams()`)."""
    return MaskInspector(cams)
