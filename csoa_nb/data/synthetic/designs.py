"""The looks of the synthetic benchmark: what all classes share (the body) and what is
class-specific (the part), per design family (`Difficulty.family`: the benchmark's classes, or
the disjoint "pretrain" designs of the pretraining stage)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

_GOLDEN = 0.6180339887498949


@dataclass(frozen=True)
class FamilyDesign:
    """The look of one family: body shape/colour/texture and the pool of part designs."""

    body_shape: str  # "ellipse" | "superellipse"
    body_rgb: tuple[float, float, float]
    texture: str  # "bands" | "checker"
    part_shapes: tuple[str, ...]
    part_patterns: tuple[str, ...]
    hue_offset: float
    class_prefix: str


DESIGNS: dict[str, FamilyDesign] = {
    "benchmark": FamilyDesign(
        body_shape="ellipse",
        body_rgb=(0.58, 0.47, 0.36),  # brown
        texture="bands",
        part_shapes=("disc", "square", "triangle", "star"),
        part_patterns=("solid", "stripes", "dot"),
        hue_offset=0.0,
        class_prefix="class",
    ),
    "pretrain": FamilyDesign(
        body_shape="superellipse",
        body_rgb=(0.40, 0.47, 0.58),  # blue-grey
        texture="checker",
        part_shapes=("ring", "cross", "hexagon", "bar"),
        part_patterns=("solid", "checker", "rim"),
        hue_offset=0.31,
        class_prefix="pre",
    ),
}


def class_design(family: str, class_index: int) -> dict[str, Any]:
    """The part of class `class_index` (0-based): shape, pattern and RGB colour in [0, 1].

    Colours walk the hue circle by the golden ratio, so a class looks the same whatever the
    number of classes and neighbouring classes get far-apart hues.
    """
    design = DESIGNS[family]
    n_shapes = len(design.part_shapes)
    hue = (design.hue_offset + class_index * _GOLDEN) % 1.0
    value = 0.95 if (class_index // 3) % 2 == 0 else 0.78
    rgb = colorsys.hsv_to_rgb(hue, 0.9, value)
    return {
        "shape": design.part_shapes[class_index % n_shapes],
        "pattern": design.part_patterns[(class_index // n_shapes) % len(design.part_patterns)],
        "rgb": tuple(round(c, 4) for c in rgb),
    }


def class_folder(family: str, class_index: int) -> str:
    """CUB-style class folder name, e.g. `001.class_01` (pretrain: `001.pre_01`)."""
    prefix = DESIGNS[family].class_prefix
    return f"{class_index + 1:03d}.{prefix}_{class_index + 1:02d}"
