"""Interactive inspectors for the book: the theta explorer (Eq. 13) and the mask inspector
(Eq. 2-5).

The numbers they show come from `csoa_nb.report.views` (computed once per change) and the
figures from `csoa_nb.report.plots`, so a widget and the static figure that stands in for it in
the book never disagree. Both work headless: they draw into an ``ipywidgets.Image`` (PNG bytes),
need no browser to be built or driven (set a slider's ``value`` and the state attributes
follow), and display themselves in a notebook.
"""

from __future__ import annotations

import io
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt

from csoa_nb.core.scores import SampleCams
from csoa_nb.report.plots import cam_panel, confseg_steps
from csoa_nb.report.views import check_index, confseg_one, kept_classes, localize_one

__all__ = [
    "MaskInspector",
    "ThetaExplorer",
    "mask_inspector",
    "theta_explorer",
]

#: Range of the theta slider (Eq. 13's ratio; the paper uses 0.2-0.4, Table 3).
THETA_RANGE = (0.05, 0.95)


# ---------------------------------------------------------------------------- widgets
def _png(fig: plt.Figure) -> bytes:
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
    display (the figure is `csoa_nb.report.plots.cam_panel`, shown as a PNG in `view`).
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
        self.view.value = _png(cam_panel(self.cams, self.index, self.theta, result=self.result))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class MaskInspector:
    """Eq. 2-5 interactively: pick an image and a class, see the confidence mask of S_L.

    Attributes (recomputed on every change, by :func:`confseg_one`): `index`, `class_index`,
    `mask` (``|S_L^c - mu1|``), `binary` (``mask > mu2``), `inner_map` (``|S_F^c - S_L^c| *
    binary``, None without S_F), `inner_term` (the Eq. 5 value, None without S_F), `result`.
    Choosing an image resets the class to that image's ground-truth class (the one Eq. 2-5 use
    in training). `widget` is the VBox to display (figure: `csoa_nb.report.plots.confseg_steps`).
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
            confseg_steps(self.cams, self.index, self.class_index, result=self.result)
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
