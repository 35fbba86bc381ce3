"""Chapter 14's figures, in the house style of `csoa_nb.report.style`: MaxBoxAccV2 against the
classification error, and every row's map on the same test images (`sample_maps` gathers them
from the run folders: the trained runs' saved sample, the CAM run's post-hoc maps, the trivial
maps)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from csoa_nb import methods
from csoa_nb.core.localize import binarize, fuse_cams, largest_component_box
from csoa_nb.core.scores import SampleCams
from csoa_nb.engine.baselines import TRIVIAL_KINDS, map_size
from csoa_nb.engine.runs import RunResult, load_arrays
from csoa_nb.engine.sweeps import regime_of
from csoa_nb.methods.posthoc import POSTHOC_KINDS
from csoa_nb.methods.trivial import center_gaussian_maps, full_image_maps
from csoa_nb.report.style import (
    COLUMN_WIDTH_IN,
    GT_COLOR,
    MIN_FONT_PT,
    PRED_COLOR,
    draw_box,
    draw_gt_boxes,
    heat_bar,
    house_style,
    show_heat,
)
from csoa_nb.report.vocabulary import REGIME_LABELS, column_label, higher_is_better
from csoa_nb.report.wsol.frames import BASE, GAUSSIAN, family, ordered, row_color, row_label


# ------------------------------------------------------------------------------ figures
def _wrap(text: str, width: int) -> str:
    return textwrap.fill(text.replace("Eq. ", "Eq.\u00a0"), width=width, break_long_words=False)


@house_style
def plot_accuracy_vs_classification(
    frame: pd.DataFrame, *, y: str = "max_box_acc_v2", x: str = "top1_cls_err",
) -> Figure:
    """`y` (default MaxBoxAccV2) against `x` (top-1 cls. error), one point per map and seed,
    one panel per regime, each row in its colour (circles: trained methods, triangles:
    post-hoc maps of the CAM network). A trivial baseline has no classifier: a horizontal
    line at its `y`. One legend below the panels."""
    regimes = [r for r in REGIME_LABELS if r in set(frame["regime"])]
    fig, axes = plt.subplots(1, len(regimes), figsize=(COLUMN_WIDTH_IN, 4.9), squeeze=False,
                             layout="constrained", sharey=True)
    handles: dict[str, Any] = {}
    for ax, regime in zip(axes[0], regimes, strict=True):
        here = frame[frame["regime"] == regime]
        for key in ordered(here["method"]):
            rows = here[here["method"] == key]
            color, name = row_color(key), row_label(key)
            if family(key) == "trivial":
                value = float(rows[y].astype(float).mean())
                style = ":" if key == "full_image" else "--"
                ax.axhline(value, color=color, linestyle=style, linewidth=1.5)
                handles[key] = Line2D([], [], color=color, linestyle=style, label=name)
                continue
            marker = "^" if family(key) == "post-hoc" else "o"
            ax.scatter(rows[x].astype(float), rows[y].astype(float), color=color, s=36,
                       marker=marker, alpha=0.85, edgecolors="white", linewidths=0.5)
            handles[key] = Line2D([], [], color=color, marker=marker, linestyle="",
                                  markersize=7, label=name)
        ax.set_title(REGIME_LABELS[regime], fontsize=MIN_FONT_PT + 1)
        ax.set_xlabel(_wrap(f"{column_label(x)} (%), lower is better", 40))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{column_label(y)} (%), "
                          f"{'higher' if higher_is_better(y) else 'lower'} is better")
    legend = [handles[k] for k in ordered(handles)]
    fig.legend(handles=legend, loc="outside lower center", ncols=3, frameon=False,
               fontsize=MIN_FONT_PT)
    return fig


def gt_class_maps(cams: Mapping[str, Any], positions: Sequence[int]) -> Tensor:
    """The evaluated map of a trained run for sample images `positions` of its `cams.npz`:
    Eq. 13's union of the ground-truth class's S_L and S_F (`localize.fuse_cams`: upsampled,
    min-max normalised, elementwise max; S_L alone for a one-head network). ``K x H x W`` in
    [0, 1], H x W the images' size (what `views.localize_one` calls `loc_map`)."""
    index = torch.as_tensor(list(positions), dtype=torch.long)
    labels = cams["labels"][index].long()
    size = (int(cams["images"].shape[1]), int(cams["images"].shape[2]))
    cam_last = cams["cam_last"][index, labels].float()
    feature = cams["cam_feature"]
    cam_feature = None if feature is None else feature[index, labels].float()
    return fuse_cams(cam_last, cam_feature, size)


def trivial_sample_maps(kind: str, count: int, map_hw: tuple[int, int], size: tuple[int, int],
                        sigma: float | None = None) -> Tensor:
    """The map of trivial baseline `kind` (`methods.trivial`) at the network's map size
    `map_hw`, as the evaluator sees it (`fuse_cams`: upsampled to `size`, normalised),
    ``count x H x W``; `sigma` (map cells) for the centred Gaussian."""
    h, w = map_hw
    if kind == "full_image":
        maps = full_image_maps(count, h, w)
    elif kind == GAUSSIAN:
        if sigma is None or math.isnan(sigma):
            raise ValueError("the centred Gaussian needs its sigma (the protocol frame's "
                             "`sigma` of its row, chosen on the validation split)")
        maps = center_gaussian_maps(count, h, w, sigma)
    else:
        raise ValueError(f"unknown trivial map {kind!r}; valid choices: "
                         f"{', '.join(TRIVIAL_KINDS)}")
    return fuse_cams(maps, None, size)


def _spread(count: int, total: int) -> list[int]:
    """`count` positions spread evenly over a sample of `total` images (all if fewer)."""
    if total <= count:
        return list(range(total))
    return [int(p) for p in np.linspace(0, total - 1, count).round()]


def _theta(protocol: pd.DataFrame, key: str, regime: str, seed: int) -> float:
    rows = protocol[(protocol["method"] == key) & (protocol["regime"] == regime)]
    seeded = rows[rows["seed"] == seed]
    rows = seeded if len(seeded) else rows
    return float(rows["theta"].mean()) if len(rows) else math.nan


def sample_maps(
    runs: Sequence[RunResult], protocol: pd.DataFrame, *, regime: str = "pretrained",
    seed: int = 0, count: int = 6,
) -> tuple[SampleCams, dict[str, Tensor], dict[str, float]]:
    """The maps of every row of `protocol` on the same `count` test images (spread over the
    runs' saved sample, `cams.npz`), for the runs of `regime` and `seed`: the trained runs'
    `gt_class_maps`, the CAM run's post-hoc maps (`posthoc_cams.npz`), the trivial maps
    (`trivial_sample_maps`, sigma from `protocol`). Returns the sample (`images` uint8
    ``K x H x W x 3``, `boxes`, `labels`, `indices`: test-set indices), the maps by row key
    and the theta chosen on the validation split by row key.

    Raises:
        ValueError: no CAM run of `regime` and `seed`, or runs whose samples differ.
    """
    chosen = {methods.row_key(r.config): r for r in runs
              if regime_of(r.config) == regime and r.config.seed == seed}
    if BASE not in chosen:
        raise ValueError(f"no CAM run of regime {regime!r} with seed {seed} among the runs")
    cam = chosen[BASE].cams()
    positions = _spread(count, len(cam["labels"]))
    size = (int(cam["images"].shape[1]), int(cam["images"].shape[2]))
    maps: dict[str, Tensor] = {}
    keys = ordered(set(protocol.loc[protocol["regime"] == regime, "method"]) | set(chosen))
    for key in keys:
        if key in chosen:
            cams = cam if key == BASE else chosen[key].cams()
            if not torch.equal(torch.as_tensor(cams["indices"]), torch.as_tensor(cam["indices"])):
                raise ValueError(f"the {row_label(key)} run {chosen[key].run_dir.name} saved "
                                 "other sample images than the CAM run: rerun both")
            maps[key] = gt_class_maps(cams, positions)
        elif key in POSTHOC_KINDS:
            saved = load_arrays(chosen[BASE].run_dir, "posthoc")
            maps[key] = fuse_cams(saved[key][positions].float(), None, size)
        elif key in TRIVIAL_KINDS:
            rows = protocol[(protocol["method"] == key) & (protocol["regime"] == regime)]
            maps[key] = trivial_sample_maps(key, len(positions), map_size(chosen[BASE].config),
                                            size, float(rows["sigma"].iloc[0]))
    thetas = {key: _theta(protocol, key, regime, seed) for key in maps}
    sample = {
        "images": cam["images"][positions],
        "boxes": [cam["boxes"][p] for p in positions],
        "labels": cam["labels"][positions],
        "indices": cam["indices"][positions],
    }
    return sample, maps, thetas


@house_style
def plot_method_maps(
    sample: Mapping[str, Any], maps: Mapping[str, Tensor], thetas: Mapping[str, float],
) -> Figure:
    """A row per map (`ROW_ORDER`: trivial, CAM and its post-hoc maps, the WSOL methods, CSoA),
    a column per image: the normalised map over the image (one colour bar, below), the
    ground-truth box (green) and the box of Eq. 13 at the row's chosen theta (red, dashed;
    none where theta is NaN). Column titles: test-set index and class."""
    keys = ordered(maps)
    count = len(sample["labels"])
    label_in = 1.05
    panel = min(1.0, (COLUMN_WIDTH_IN - label_in) / max(count, 1))
    fig, axes = plt.subplots(len(keys), count, squeeze=False, layout="constrained",
                             figsize=(min(COLUMN_WIDTH_IN, label_in + panel * count),
                                      panel * len(keys) + 0.9))
    heat = None
    for row, key in enumerate(keys):
        theta = thetas.get(key, math.nan)
        for col in range(count):
            ax = axes[row, col]
            image = np.asarray(sample["images"][col])
            heat = show_heat(ax, image, maps[key][col].numpy())
            draw_gt_boxes(ax, sample["boxes"][col])
            if not math.isnan(theta):
                draw_box(ax, largest_component_box(binarize(maps[key][col], theta)), PRED_COLOR,
                     dashed=True)
        axes[row, 0].set_ylabel(_wrap(row_label(key), 14), rotation=0, ha="right",
                                va="center", fontsize=MIN_FONT_PT)
    for col in range(count):
        axes[0, col].set_title(f"#{int(sample['indices'][col])}, class "
                               f"{int(sample['labels'][col])}", fontsize=MIN_FONT_PT)
    heat_bar(fig, heat, axes, label="normalised map", location="bottom")
    fig.legend(handles=[Line2D([], [], color=GT_COLOR, label="ground truth"),
                        Line2D([], [], color=PRED_COLOR, linestyle="--",
                               label="box at the chosen θ")],
               loc="outside upper center", ncols=2, frameon=False, fontsize=MIN_FONT_PT)
    return fig

