"""The book's figures of data, maps and training. Each function returns a
`matplotlib.figure.Figure`; captions and the prose that reads them are the notebook's job.
Figures of results (our runs beside the paper's) are `csoa_nb.report.charts`'s.

Figures of maps take the CAM sample a run saves (`RunResult.cams()`, described in
`csoa_nb.report.views`); the numbers they draw (binary maps, union, box, IoU, confidence mask,
inner term, CoAug inputs) come from `csoa_nb.report.views.localize_one`, `confseg_one` and
`coaug_views`, the functions the interactive widgets use too.

Every figure here follows the house style of `csoa_nb.report.style` (`house_style`: the book's
rc parameters, at most the text column's width, fonts of at least 9 points, at most four panels
to a row; its colours: ground-truth boxes green, predicted boxes red and dashed, the class part
red in the data figures; CAMs drawn with the "jet" colour map over the image, after upsampling
and min-max normalisation, with a colour bar on every figure that has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from csoa_nb.core.scores import SampleCams
from csoa_nb.data.synthetic import Difficulty, render_sample
from csoa_nb.data.transforms import denormalize
from csoa_nb.report.style import (
    COLUMN_WIDTH_IN,
    GT_COLOR,
    MAX_PANELS_PER_ROW,
    MIN_FONT_PT,
    PANEL_IN,
    PART_COLOR,
    PRED_COLOR,
    draw_box,
    draw_gt_boxes,
    heat_bar,
    hide_ticks,
    house_style,
    panel_grid,
    show_heat,
    show_image,
    wrap_panels,
)
from csoa_nb.report.views import coaug_views, localize_one

__all__ = [
    "cam_grid",
    "cam_panel",
    "coaug_inputs",
    "part_ratio_histogram",
    "show_dataset_items",
    "show_samples",
    "theta_grid",
    "training_curves",
]

#: Loss terms `training_curves` plots by default (`loss_<term>` keys of a run's history).
DEFAULT_TERMS = ("total", "cls_last", "cls_feature", "inner", "coaug")
#: Validation curves of `training_curves` (`history` keys) and their legend labels.
VAL_CURVES = {
    "val_top1_loc_err": "top-1 loc. err",
    "val_gt_known_loc_err": "GT-known loc. err",
    "val_top1_cls_err": "top-1 cls. err",
}


# ---------------------------------------------------------------------------- helpers
def _outline(ax: plt.Axes, mask: Any, color: str) -> None:
    mask = np.asarray(mask, dtype=float)
    if 0 < mask.sum() < mask.size:
        ax.contour(mask, levels=[0.5], colors=color, linewidths=1.2)


def draw_region(ax: plt.Axes, mask: Any) -> None:
    """A binary region (e.g. the union of Eq. 13): translucent yellow fill and outline."""
    mask = np.asarray(mask, dtype=bool)
    ax.imshow(np.ma.masked_where(~mask, mask.astype(float)), cmap=ListedColormap(["yellow"]),
              alpha=0.35, vmin=0, vmax=1, interpolation="nearest")
    _outline(ax, mask, "yellow")


def _uint8(cams: SampleCams, index: int) -> np.ndarray:
    return np.asarray(cams["images"][index])


def _indices(indices: int | Sequence[int]) -> list[int]:
    return [int(indices)] if isinstance(indices, (int, np.integer)) else [int(i) for i in indices]


def _to_hwc(images: torch.Tensor) -> np.ndarray:
    """Normalised ``B x 3 x H x W`` -> displayable ``B x H x W x 3`` in [0, 1]."""
    return denormalize(images).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------- data
def _sample_grid(n: int, with_masks: bool) -> tuple[Figure, list[tuple[plt.Axes, Any]]]:
    """Axes for ``n`` samples, at most `MAX_PANELS_PER_ROW` to a row: per sample its image
    panel and (``with_masks``) the mask panel below it; unused cells are removed."""
    groups, cols = wrap_panels(n)
    per = 2 if with_masks else 1
    fig, axes = panel_grid(groups * per, cols)
    panels = []
    for k in range(groups * cols):
        g, c = divmod(k, cols)
        image_ax = axes[g * per, c]
        mask_ax = axes[g * per + 1, c] if with_masks else None
        if k < n:
            panels.append((image_ax, mask_ax))
        else:
            image_ax.remove()
            if mask_ax is not None:
                mask_ax.remove()
    for g in range(groups):
        axes[g * per, 0].set_ylabel("image")
        if with_masks:
            axes[g * per + 1, 0].set_ylabel("mask")
    return fig, panels


@house_style
def show_samples(difficulty: Difficulty, image_size: int, n: int = 8, seed: int = 0) -> Figure:
    """`n` rendered images of classes 0..n-1 (test-style, part never occluded): the image with
    the ground-truth box (green, whole object) and the part outlined (red), the object mask
    beneath (body grey, part white); at most four classes to a row."""
    fig, panels = _sample_grid(n, with_masks=True)
    for k, (image_ax, mask_ax) in enumerate(panels):
        sample = render_sample(difficulty, image_size, k, [seed, k])
        show_image(image_ax, sample["image"], f"class {k}")
        draw_box(image_ax, sample["box"], GT_COLOR)
        _outline(image_ax, sample["part_mask"], PART_COLOR)
        shades = 0.55 * sample["mask"] + 0.45 * sample["part_mask"]
        mask_ax.imshow(shades, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        hide_ticks(mask_ax)
    return fig


@house_style
def show_dataset_items(dataset: Any, n: int = 8) -> Figure:
    """`n` items spread over a dataset (e.g. `CUB200`), as the network receives them
    (transformed, then de-normalised): the image with its boxes, and the mask below it if it
    has one; at most four items to a row."""
    picks = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    items = [dataset[int(i)] for i in picks]
    has_masks = all("mask" in item for item in items)
    fig, panels = _sample_grid(n, with_masks=has_masks)
    for k, (item, (image_ax, mask_ax)) in enumerate(zip(items, panels, strict=True)):
        image = denormalize(item["image"]).permute(1, 2, 0).numpy()
        show_image(image_ax, image, f"#{picks[k]}, class {int(item['label'])}")
        draw_gt_boxes(image_ax, item["boxes"])
        if mask_ax is not None:
            mask_ax.imshow(item["mask"][0].numpy(), cmap="gray", vmin=0, vmax=1)
            hide_ticks(mask_ax)
    return fig


@house_style
def part_ratio_histogram(ratios: np.ndarray, part_fraction: float | None = None) -> Figure:
    """Histogram of part area / object area per image (occluded parts, ratio 0, left out),
    with the configured `Difficulty.part_fraction` as a dashed line."""
    ratios = np.asarray(ratios, dtype=float)
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.0), layout="constrained")
    sns.histplot(ratios[ratios > 0], bins=30, ax=ax)
    if part_fraction is not None:
        ax.axvline(part_fraction, color="k", ls="--", label="part_fraction setting")
        ax.legend()
    ax.set_xlabel("part area / object area (from the masks)")
    ax.set_ylabel("images")
    return fig


# ---------------------------------------------------------------------------- Eq. 13
@house_style
def cam_panel(
    cams: SampleCams,
    index: int,
    theta: float,
    class_index: int | None = None,
    *,
    result: dict[str, Any] | None = None,
) -> Figure:
    """Eq. 13 for one image, in reading order (two rows of three): the image with its GT box;
    S_L and S_F over it (one colour bar); S_F − S_L (red where S_F is higher: what the inner
    head adds; its own colour bar, scaled by the largest difference); the two binary maps (red:
    S_L only, blue: S_F only, magenta: both); the predicted box (red, dashed) against the GT box
    over the union (yellow), with the IoU in the title. One-head models: image, S_L, binary map,
    box (two rows of two). `result`: `localize_one(cams, index, theta, class_index)` if the
    caller has it already, else computed here."""
    r = localize_one(cams, index, theta, class_index) if result is None else result
    image = _uint8(cams, index)
    two = r["map_feature"] is not None
    fig, grid = panel_grid(2, 3 if two else 2, panel=COLUMN_WIDTH_IN / 3)
    axes = list(grid.ravel())
    show_image(axes[0], image, f"image {index}, class {r['class_index']}")
    draw_gt_boxes(axes[0], cams["boxes"][index])
    heat = show_heat(axes[1], image, r["map_last"], "$S_L$ (top head $W_L$)")
    heat_axes = [axes[1]]
    last = r["binary_last"].numpy()
    if two:
        show_heat(axes[2], image, r["map_feature"], "$S_F$ (inner head $W_F$)")
        heat_axes.append(axes[2])
        difference = _show_gap(axes[3], r, _gap_scale([r]))
        axes[3].set_title("$S_F - S_L$ (red: $S_F$ higher)", fontsize=MIN_FONT_PT)
        feature = r["binary_feature"].numpy()
        colours = np.stack([last, np.zeros_like(last), feature], -1).astype(float)
        axes[4].imshow(colours * 0.9, interpolation="nearest")
        axes[4].set_title("binary: $S_L$ red, $S_F$ blue", fontsize=MIN_FONT_PT)
        hide_ticks(axes[4])
    else:
        axes[2].imshow(last, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[2].set_title("binary $S_L$ (Eq. 13)", fontsize=MIN_FONT_PT)
        hide_ticks(axes[2])
    show_image(axes[-1], image, f"box: IoU {r['iou']:.2f}")
    draw_region(axes[-1], r["union"].numpy())
    draw_gt_boxes(axes[-1], cams["boxes"][index])
    draw_box(axes[-1], r["box"], PRED_COLOR, dashed=True)
    heat_bar(fig, heat, heat_axes)
    if two:
        heat_bar(fig, difference, [axes[3]], label="$S_F - S_L$")
    fig.suptitle(f"$\\theta$ = {theta:.2f}")
    return fig


#: The least half-range of an S_F − S_L colour scale, so that nearly equal maps stay pale.
MIN_GAP_SCALE = 0.05


def _gap_scale(found: Sequence[dict[str, Any]]) -> float:
    """The half-range of the S_F − S_L colour scale: the largest difference over `found`
    (`localize_one` results), so that a small one shows, at least `MIN_GAP_SCALE`."""
    return max([float((r["map_feature"] - r["map_last"]).abs().max()) for r in found
                if r["map_feature"] is not None] + [MIN_GAP_SCALE])


def _show_gap(ax: plt.Axes, result: dict[str, Any], spread: float) -> Any:
    """S_F − S_L of one `localize_one` result on ``ax`` (red where S_F is higher) on the scale
    ±`spread`; returns its image, for the colour bar."""
    image = ax.imshow((result["map_feature"] - result["map_last"]).numpy(), cmap="RdBu_r",
                      vmin=-spread, vmax=spread, interpolation="nearest")
    hide_ticks(ax)
    return image


@house_style
def cam_grid(cams: SampleCams, indices: Sequence[int], theta: float) -> Figure:
    """One row per image: the image with the union of Eq. 13 at `theta` (yellow), the GT
    (green) and predicted (red, dashed) boxes and the IoU; S_L over the image; for two-head
    models S_F over the image and S_F − S_L (red where S_F is higher: the parts S_F adds; its
    scale the largest difference over the rows), else the binary S_L. One colour bar, below,
    for the maps, and one for the difference."""
    indices = _indices(indices)
    two = cams["cam_feature"] is not None
    fig, axes = panel_grid(len(indices), 4 if two else 3, height=PANEL_IN + 0.15)
    titles = ["image, union, boxes", "$S_L$", "$S_F$", "$S_F - S_L$"] if two else [
        "image, boxes", "$S_L$", "binary $S_L$ (Eq. 13)"]
    heat = difference = None
    found = [localize_one(cams, index, theta) for index in indices]
    spread = _gap_scale(found)  # one scale over the rows
    for row, (index, r) in enumerate(zip(indices, found, strict=True)):
        image = _uint8(cams, index)
        show_image(axes[row, 0], image, f"#{index} class {r['class_index']}: IoU {r['iou']:.2f}")
        if two:
            draw_region(axes[row, 0], r["union"].numpy())
        draw_gt_boxes(axes[row, 0], cams["boxes"][index])
        draw_box(axes[row, 0], r["box"], PRED_COLOR, dashed=True)
        heat = show_heat(axes[row, 1], image, r["map_last"])
        if two:
            show_heat(axes[row, 2], image, r["map_feature"])
            difference = _show_gap(axes[row, 3], r, spread)
        else:
            show_image(axes[row, -1], image)
            draw_region(axes[row, -1], r["union"].numpy())
    for col, title in enumerate(titles):
        top = axes[0, col].get_title()
        axes[0, col].set_title(f"{title}\n{top}" if top else title, fontsize=MIN_FONT_PT)
    heat_bar(fig, heat, axes[:, 1:3] if two else axes[:, 1:2], location="bottom")
    if difference is not None:
        heat_bar(fig, difference, axes[:, 3:4], label="$S_F - S_L$", location="bottom")
    fig.suptitle(f"$\\theta$ = {theta:.2f}")
    return fig


@house_style
def theta_grid(
    cams: SampleCams, indices: int | Sequence[int], thetas: Sequence[float] = (0.2, 0.3, 0.4)
) -> Figure:
    """Eq. 13 at several thresholds: one row per image, the map Eq. 13 thresholds
    (S_L for a one-head model, the fused map of S_L and S_F for two heads; colour bar below),
    then one column per theta with the union shaded (yellow), GT box (green),
    predicted box (red, dashed) and the IoU."""
    indices = _indices(indices)
    if 1 + len(thetas) > MAX_PANELS_PER_ROW:
        raise ValueError(
            f"theta_grid draws at most {MAX_PANELS_PER_ROW - 1} thetas per figure, got "
            f"{len(thetas)}: pass fewer (e.g. thetas=(0.2, 0.3, 0.4))"
        )
    fig, axes = panel_grid(len(indices), 1 + len(thetas), height=PANEL_IN + 0.15)
    heat = None
    for row, index in enumerate(indices):
        image = _uint8(cams, index)
        first = localize_one(cams, index, thetas[0])
        name = "fused map" if first["map_feature"] is not None else "$S_L$"
        heat = show_heat(axes[row, 0], image, first["loc_map"], f"#{index}: {name}")
        for col, theta in enumerate(thetas, start=1):
            r = localize_one(cams, index, theta)
            show_image(axes[row, col], image, f"$\\theta$ = {theta:.2f}: IoU {r['iou']:.2f}")
            draw_region(axes[row, col], r["union"].numpy())
            draw_gt_boxes(axes[row, col], cams["boxes"][index])
            draw_box(axes[row, col], r["box"], PRED_COLOR, dashed=True)
    heat_bar(fig, heat, axes[:, 0], location="bottom")
    return fig


# ---------------------------------------------------------------------------- Eq. 2-5
#: The binary mask of Eq. 3 split by Eq. 7: ambiguous grey, confident background blue,
#: confident object gold (`csoa_nb.report.widgets.draw_mask_state` draws Eq. 2-5 with it).
CONFIDENCE_CMAP = ListedColormap(["0.75", "tab:blue", "gold"])


# ---------------------------------------------------------------------------- Eq. 8-10
#: The views of `coaug_inputs`, one column each: (key of `coaug_views` or None for the image,
#: column title).
_COAUG_VIEWS = (
    ("foreground_map", "$S$ over $I$"),
    ("foreground", "$S \\cdot I$ (Eq. 8)"),
    ("background", "$(1 - S) \\cdot I$\n(Eq. 8)"),
    ("mask_background", "$(1 - S) \\cdot \\widehat{Mask}$\n$\\cdot\\, I$ (Eq. 10)"),
)
#: Images `coaug_inputs` draws at most (one row each; the four views are the columns).
MAX_COAUG_IMAGES = 4


@house_style
def coaug_inputs(cams: SampleCams, indices: Sequence[int] = (0, 1, 2)) -> Figure:
    """What W_E sees (Eq. 8, 10), one row per image (at most `MAX_COAUG_IMAGES`), one column
    per view: the foreground map S (ReLU-max normalised S_L^c) over the image (its colour bar
    below the grid); S * I; (1 - S) * I; (1 - S) * Mask_hat * I. Masked-out pixels show the
    ImageNet mean colour (zero after normalisation). The views as columns keep the figure
    short at the column's width."""
    indices = _indices(indices)
    if not 1 <= len(indices) <= MAX_COAUG_IMAGES:
        raise ValueError(
            f"coaug_inputs draws 1 to {MAX_COAUG_IMAGES} images (one row each), got "
            f"{len(indices)}: pass fewer indices, e.g. indices[:{MAX_COAUG_IMAGES}]"
        )
    views = coaug_views(cams)
    shown = {k: _to_hwc(views[k][indices]) for k in
             ("foreground", "background", "mask_background")}
    label_in = 0.8
    fig, axes = panel_grid(len(indices), len(_COAUG_VIEWS),
                           panel=(COLUMN_WIDTH_IN - label_in) / len(_COAUG_VIEWS), extra=label_in)
    heat = None
    for row, index in enumerate(indices):
        heat = show_heat(axes[row, 0], _uint8(cams, index), views["foreground_map"][index, 0])
        axes[row, 0].set_ylabel(f"#{index}\nclass {int(cams['labels'][index])}", rotation=0,
                                ha="right", va="center")
        for col, (key, _) in enumerate(_COAUG_VIEWS[1:], start=1):
            show_image(axes[row, col], shown[key][row])
    for col, (_, label) in enumerate(_COAUG_VIEWS):
        axes[0, col].set_title(label, fontsize=MIN_FONT_PT)
    heat_bar(fig, heat, axes, label="$S$ (first column)", location="bottom")
    return fig


# ---------------------------------------------------------------------------- training
def _legend_below(ax: plt.Axes, ncol: int = 1) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.22), ncol=ncol, title=None,
                        frameon=False)


@house_style
def training_curves(
    history: list[dict[str, Any]], terms: Sequence[str] | None = None, show_alpha: bool = True
) -> Figure:
    """Per-epoch curves of a run (`RunResult.history`), three panels from left to right: the
    loss terms (epoch means of `loss_<term>`; default: those of `DEFAULT_TERMS` the run
    logged); alpha of Eq. 6 at the end of each epoch (left axis; `show_alpha=False` for
    methods that do not use it) and the learning rate of the epoch (right axis); the
    validation errors in %. Legends sit below their panels."""
    frame = pd.DataFrame(history)
    if terms is None:
        terms = [t for t in DEFAULT_TERMS if f"loss_{t}" in frame]
    missing = [t for t in terms if f"loss_{t}" not in frame]
    if missing:
        logged = sorted(k[5:] for k in frame.columns if k.startswith("loss_"))
        raise ValueError(f"history has no loss term(s) {missing}; it logged {logged}")
    losses = frame.melt(id_vars="epoch", value_vars=[f"loss_{t}" for t in terms],
                        var_name="term", value_name="loss")
    losses["term"] = losses["term"].str.removeprefix("loss_")
    fig, axes = plt.subplots(1, 3, figsize=(COLUMN_WIDTH_IN, 3.9), layout="constrained")
    sns.lineplot(losses, x="epoch", y="loss", hue="term", marker="o", ax=axes[0])
    axes[0].set_title("loss terms (epoch mean)")
    if show_alpha:
        sns.lineplot(frame, x="epoch", y="alpha", marker="o", color="tab:blue", ax=axes[1],
                     label="alpha (Eq. 6)", legend=False)
    axes[1].set_ylabel("alpha" if show_alpha else "")
    twin = axes[1].twinx()
    sns.lineplot(frame, x="epoch", y="lr", marker="s", color="tab:orange", ax=twin,
                 label="learning rate", legend=False)
    twin.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    twin.set_ylabel("")
    handles = axes[1].get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    axes[1].legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper center",
                   bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    axes[1].set_title("schedule")
    curves = {k: v for k, v in VAL_CURVES.items() if k in frame}
    if curves:
        val = frame.melt(id_vars="epoch", value_vars=list(curves), var_name="metric",
                         value_name="error (%)")
        val["metric"] = val["metric"].map(curves)
        sns.lineplot(val, x="epoch", y="error (%)", hue="metric", marker="o", ax=axes[2])
    else:
        axes[2].text(0.5, 0.5, "no validation logged", ha="center", transform=axes[2].transAxes)
    axes[2].set_title("validation")
    _legend_below(axes[0], ncol=2)
    _legend_below(axes[2])
    axes[1].set_ylim(-0.05, 1.05)
    for ax in (*axes, twin):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


# ------------------------------------------------------------ Eq. 12 on fixed maps (ch. 04)
#: Legend labels of the two readings of Eq. 10's Mask_hat.
BACKGROUND_LABELS = {"paper": "Eq. 10 as written (Eq. 3 mask)",
                     "below_mean": "Eq. 10 fix, ours (below the mean)"}


#: One colour per candidate map of chapter 04 (`csoa_nb.core.degenerate.CANDIDATES` and the
#: trained maps), the same in every figure: the ground truth green, the two maps that localize
#: nothing red (S = 1) and blue (S = 0), the trained maps in the colours of their rows.
CANDIDATE_COLORS = {
    "S = 0 (all negative)": "tab:blue",
    "S = 1 everywhere": "tab:red",
    "ground-truth mask": "tab:green",
    "ground-truth box": "#74c476",
    "inverted mask": "tab:purple",
    "dilated mask": "tab:brown",
    "trained CAM": "#7f7f7f",
    "trained CoAug (as written)": "tab:orange",
    "trained CoAug (fix, ours)": "tab:olive",
}


def candidate_color(candidate: str) -> str:
    """`CANDIDATE_COLORS` of a candidate map; dark grey for one it does not list."""
    return CANDIDATE_COLORS.get(candidate, "#333333")


def candidate_losses(scores: pd.DataFrame, gamma: float = 1.0) -> Figure:
    """L_D (Eq. 12) of fixed candidate maps under both readings of Eq. 10, one panel each,
    lowest (the map training is pulled towards) at the top. `scores`:
    `csoa_nb.core.degenerate.score_candidates`."""
    chosen = scores[scores["gamma"] == gamma]
    backgrounds = list(dict.fromkeys(chosen["background"]))
    fig, axes = plt.subplots(1, len(backgrounds), figsize=(6.9, 0.42 * chosen["candidate"]
                                                           .nunique() + 1.3),
                             layout="constrained", sharex=True, squeeze=False)
    for ax, background in zip(axes[0], backgrounds, strict=True):
        part = chosen[chosen["background"] == background].sort_values("loss")
        ax.barh(range(len(part)), part["loss"],
                color=[candidate_color(c) for c in part["candidate"]])
        ax.set_yticks(range(len(part)), part["candidate"], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel(f"mean L_D (Eq. 12), gamma = {gamma:g}", fontsize=9)
        ax.set_title(BACKGROUND_LABELS.get(background, background), fontsize=10)
        ax.tick_params(axis="x", labelsize=9)
    return fig


def gamma_sweep(scores: pd.DataFrame) -> Figure:
    """L_D of each candidate over gamma (log-spaced axis with 0 shown), one column per reading
    of Eq. 10; the second row zooms on the band where most candidates lie (their losses'
    10-90 % range), where the first row's full scale crowds them together."""
    backgrounds = list(dict.fromkeys(scores["background"]))
    fig, axes = plt.subplots(2, len(backgrounds), figsize=(6.9, 5.6), layout="constrained",
                             sharex=True, squeeze=False)
    low, high = np.nanquantile(scores["loss"], [0.1, 0.9])
    pad = 0.1 * (high - low) or 0.05
    for column, background in enumerate(backgrounds):
        part = scores[scores["background"] == background]
        for row in (0, 1):
            ax = axes[row, column]
            for candidate, rows in part.groupby("candidate", sort=False):
                style = "-" if candidate.startswith(("ground-truth", "S = ")) else ":"
                ax.plot(rows["gamma"], rows["loss"], style, marker="o", label=candidate,
                        color=candidate_color(candidate))
            ax.set_xscale("symlog", linthresh=0.1)
            ax.tick_params(labelsize=9)
        axes[0, column].set_title(BACKGROUND_LABELS.get(background, background), fontsize=10)
        axes[1, column].set_ylim(low - pad, high + pad)
        axes[1, column].set_xlabel("gamma (Eq. 12)", fontsize=9)
    axes[0, 0].set_ylabel("mean L_D", fontsize=9)
    axes[1, 0].set_ylabel("mean L_D (zoom)", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig
