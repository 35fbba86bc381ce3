"""The offline benchmark: a synthetic WSOL dataset written in the CUB-200-2011 on-disk format.

(Over 500 lines: the renderer, its class designs and the crash-safe writer with its cache
folder handling; its command line is `__main__.py`.)

Why it is a real WSOL problem: every object is a LARGE body whose shape, colour and texture are
shared by all classes, plus a SMALL class-discriminative part (a coloured, patterned shape with
`part_fraction` of the object's area) near one end of the body's major axis. A classifier only
needs the part, so plain CAM lights the part and under-covers the object, exactly the failure
CSoA addresses. The background is cluttered (low-frequency colour noise, striped texture
patches) and holds distractor bodies without a part, so "everything that is not background" is
not a shortcut either.

`Difficulty` sets the knobs; `family="pretrain"` gives a disjoint family of designs (rounded
rectangle bodies with a checker texture, other part shapes/colours) used as the ImageNet
analogue for pretraining, so pretraining never sees the benchmark's classes.

On disk (`make_dataset`), in `root/synthetic-<family>-<hash12>/`::

    images.txt image_class_labels.txt train_test_split.txt bounding_boxes.txt classes.txt
    images/<class>/<name>.jpg   JPEG quality 95, 4:4:4 chroma (keeps the small part's colour)
    masks/<class>/<name>.png    object mask (body + part), 0/255
    parts/<class>/<name>.png    part mask, 0/255 (empty when the part is occluded)
    part_boxes.txt              "<image_id> <x> <y> <w> <h>" of the part (zeros if occluded)
    manifest.json               arguments, hash, class designs; written last

The validation split (`make_val_dataset`; Choe et al.'s "train-fullsup": a few images per
class with boxes and masks, on which hyperparameters and theta are chosen) is a folder of its
own next to it, `root/synthetic-<family>-val-<hash12>`, in the same format with every image
marked as test (`is_train` 0; read it as CUB200's "test" split). Its images are keyed by
another split id, so they are none of the train or test images, and the benchmark's folder,
spec and hash are the same with or without it.

Every image comes from its own `np.random.default_rng([seed, split_id, index])`, so the output
is deterministic and independent of generation order. CLI::

    python -m csoa_nb.data.synthetic --root data [--preset smoke|cpu] [--num-classes N ...]
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from csoa_nb.base.cache import stable_hash
from csoa_nb.base.paths import disk_full_error
from csoa_nb.data.common import DataError, abspath, mask_box

#: Bumped whenever the rendering changes, so cached datasets are regenerated (it is hashed).
GENERATOR_VERSION = "1"
FAMILIES = ("benchmark", "pretrain")
SPLITS = ("train", "test")
#: The validation split's name; it lives in its own folder (`make_val_dataset`), not in SPLITS.
VAL_SPLIT = "val"
#: Validation images per class by default (wsolevaluation's train-fullsup has a few per class).
VAL_PER_CLASS = 5
JPEG_QUALITY = 95

_GOLDEN = 0.6180339887498949

#: `make_dataset` generates into `root/.tmp-synthetic-<family>-<hash12>-<host8>-<pid>-<random>`
#: (host8: 8 hex digits of sha256 of the host name; pid: the generating process; `make_val_dataset`
#: has `<family>-val-`). Names of older versions had no `<host8>-<pid>-`. Nothing but names of
#: this exact pattern is ever removed (see `clean_stale_tmp`).
_TMP_NAME = re.compile(
    rf"\.tmp-synthetic-(?:{'|'.join(FAMILIES)})-(?:{VAL_SPLIT}-)?[0-9a-f]{{12}}-"
    r"(?:(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-)?[A-Za-z0-9_]+"
)
#: A temporary folder whose owner cannot be checked (made on another host, a name without a
#: pid, or a pid now used by another process) is removed once it is older than this (seconds).
STALE_TMP_SECONDS = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Difficulty:
    """How hard the synthetic benchmark is (see the module docstring).

    Attributes:
        part_fraction: part area / object area (the object is body + part).
        body_class_evidence: 0..1, how far the body colour is tinted toward the class colour
            (0: the body carries no class information).
        part_occlusion: probability, train split only, that the part is not drawn.
        num_distractors: maximum number of part-less bodies in the background (0..n uniform).
        clutter: 0..1 strength of the background texture patches and noise.
        family: "benchmark" or "pretrain" (disjoint designs, for the pretraining stage).
    """

    part_fraction: float = 0.05
    # 0.3: the calibrated benchmark (csoa_nb.engine.results "calibration", chapter 01), the
    # default of every run (csoa_nb.engine.config.RunConfig reads these defaults)
    body_class_evidence: float = 0.3
    part_occlusion: float = 0.0
    num_distractors: int = 2
    clutter: float = 0.5
    family: str = "benchmark"

    def __post_init__(self) -> None:
        if not 0.0 < self.part_fraction <= 0.5:
            raise ValueError(f"part_fraction must be in (0, 0.5], got {self.part_fraction}")
        for name in ("body_class_evidence", "part_occlusion", "clutter"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if int(self.num_distractors) != self.num_distractors or not 0 <= self.num_distractors <= 8:
            raise ValueError(f"num_distractors must be an int in 0..8, got {self.num_distractors}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid choices: {FAMILIES}")


# ---------------------------------------------------------------------------------------------
# Designs: what is shared (body) and what is class-specific (part) in each family
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Vectorised shapes (all take local coordinates u, v already rotated into the shape's frame)
# ---------------------------------------------------------------------------------------------
def _body_inside(shape: str, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Implicit body function: <= 1 inside. Ellipse or superellipse (exponent 4)."""
    if shape == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2
    return np.abs(u / a) ** 4 + np.abs(v / b) ** 4


def _part_shape(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of a part shape of circumradius `r` centred at u = v = 0."""
    rho2 = u * u + v * v
    if shape == "disc":
        return rho2 <= r * r
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= r / math.sqrt(2.0)
    if shape == "triangle":
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            ang = -math.pi / 2 + 2 * math.pi * k / 3
            inside &= u * math.cos(ang) + v * math.sin(ang) <= r / 2
        return inside
    if shape == "star":
        ang = np.arctan2(v, u)
        limit = r * (0.5 + 0.5 * np.abs(np.cos(2.5 * ang)))
        return rho2 <= limit * limit
    if shape == "ring":
        return (rho2 <= r * r) & (rho2 >= (0.55 * r) ** 2)
    if shape == "cross":
        w = 0.35 * r
        au, av = np.abs(u), np.abs(v)
        return ((au <= r) & (av <= w)) | ((av <= r) & (au <= w))
    if shape == "hexagon":
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            ang = math.pi * k / 3
            inside &= np.abs(u * math.cos(ang) + v * math.sin(ang)) <= r * math.sqrt(3.0) / 2
        return inside
    if shape == "bar":
        return (np.abs(u) <= r) & (np.abs(v) <= 0.45 * r)
    raise ValueError(f"unknown part shape {shape!r}")


def _shape_area_coefficients() -> dict[str, float]:
    """Area of every part shape at circumradius 1, measured once on a fine grid."""
    t = (np.arange(801) - 400) / 350.0
    u, v = np.meshgrid(t, t)
    cell = (1 / 350.0) ** 2
    shapes = {s for d in DESIGNS.values() for s in d.part_shapes}
    return {s: float(_part_shape(s, u, v, 1.0).sum() * cell) for s in sorted(shapes)}


_AREA = _shape_area_coefficients()


def _rotate(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, theta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cx, cy), rotated by -theta (u along the shape's major axis)."""
    c, s = math.cos(theta), math.sin(theta)
    dx, dy = x - cx, y - cy
    return dx * c + dy * s, -dx * s + dy * c


def _texture(
    design: FamilyDesign, u: np.ndarray, v: np.ndarray, a: float, b: float, phase: float
) -> np.ndarray:
    """Multiplicative body texture and shading (HxW, around 1)."""
    q = np.clip(_body_inside(design.body_shape, u, v, a, b), 0.0, 1.0)
    shade = 1.0 - 0.28 * q
    if design.texture == "bands":
        period = 0.42 * a
        tex = 1.0 + 0.13 * np.sin(2 * math.pi * u / period + phase)
    else:
        period = 0.5 * b
        tex = 1.0 + 0.12 * np.sign(
            np.sin(2 * math.pi * u / period + phase) * np.sin(2 * math.pi * v / period)
        )
    return shade * tex


def _pattern(pattern: str, u: np.ndarray, v: np.ndarray, r: float, rgb: np.ndarray) -> np.ndarray:
    """HxWx3 colour of a part with `pattern` (class colour with a light/dark modulation)."""
    base = np.broadcast_to(rgb, u.shape + (3,))
    dark = rgb * 0.3
    if pattern == "solid":
        return base
    if pattern == "stripes":
        period = max(2.0, 0.8 * r)
        on = np.sin(2 * math.pi * u / period) > 0.0
        return np.where(on[..., None], base, dark)
    if pattern == "dot":
        on = (u * u + v * v) <= (0.42 * r) ** 2
        return np.where(on[..., None], np.array([0.97, 0.97, 0.97]), base)
    if pattern == "checker":
        period = max(2.0, 0.9 * r)
        on = np.sin(2 * math.pi * u / period) * np.sin(2 * math.pi * v / period) > 0.0
        return np.where(on[..., None], base, dark)
    if pattern == "rim":
        on = (u * u + v * v) >= (0.7 * r) ** 2
        return np.where(on[..., None], dark, base)
    raise ValueError(f"unknown part pattern {pattern!r}")


def _lowfreq_background(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
    """Bilinear upsampling of a `grid x grid` field of random colours to `size x size`."""
    colours = rng.uniform(0.12, 0.88, size=(grid, grid, 3))
    pos = (np.arange(size) + 0.5) / size * (grid - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, grid - 2)
    t = (pos - i0)[:, None, None]
    # separable linear interpolation with elementwise ops only (no BLAS: bit-reproducible)
    rows = colours[i0] * (1 - t) + colours[i0 + 1] * t  # size x grid x 3
    return rows[:, i0] * (1 - t[:, 0][None]) + rows[:, i0 + 1] * t[:, 0][None]


def _hsv_jitter(rgb: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(rgb + rng.normal(0.0, amount, size=3), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------
def _render(
    rng: np.random.Generator,
    difficulty: Difficulty,
    size: int,
    class_index: int,
    allow_occlusion: bool,
) -> dict[str, Any]:
    design = DESIGNS[difficulty.family]
    cdesign = class_design(difficulty.family, class_index)
    class_rgb = np.array(cdesign["rgb"])
    coords = np.arange(size) + 0.5
    x, y = np.meshgrid(coords, coords)  # pixel centres, x: column, y: row

    # 1. background: low-frequency colour noise + striped texture patches
    clutter = difficulty.clutter
    img = _lowfreq_background(rng, size, grid=int(rng.integers(3, 6)))
    for _ in range(int(rng.poisson(7.0 * clutter))):
        pu, pv = _rotate(x, y, *rng.uniform(0, size, 2), rng.uniform(0, math.pi))
        ra, rb = rng.uniform(0.06, 0.22, 2) * size
        region = (pu / ra) ** 2 + (pv / rb) ** 2 <= 1.0
        if rng.random() < 0.5:  # rectangles too
            region = (np.abs(pu) <= ra) & (np.abs(pv) <= rb * 0.6)
        c1, c2 = rng.uniform(0.0, 1.0, (2, 3))
        stripes = np.sin(2 * math.pi * pu / rng.uniform(2.5, 8.0)) > 0
        fill = np.where(stripes[..., None], c1, c2)
        alpha = min(1.0, clutter * rng.uniform(0.6, 1.2))
        img = np.where(region[..., None], (1 - alpha) * img + alpha * fill, img)

    # 2. the object's geometry (placed first so distractors can avoid it)
    body_rgb = _hsv_jitter(np.array(design.body_rgb), rng, 0.03)
    a = rng.uniform(0.25, 0.42) * size
    b = a * rng.uniform(0.45, 1.0)
    for _attempt in range(20):
        theta = rng.uniform(0.0, math.pi)
        ex = math.hypot(a * math.cos(theta), b * math.sin(theta))
        ey = math.hypot(a * math.sin(theta), b * math.cos(theta))
        lo_x, lo_y = 0.85 * ex, 0.85 * ey  # up to 15 % of the extent may leave the image
        cx = rng.uniform(lo_x, size - lo_x) if lo_x < size / 2 else size / 2
        cy = rng.uniform(lo_y, size - lo_y) if lo_y < size / 2 else size / 2
        if _attempt == 19:  # last resort: centred, which always leaves room for the part
            cx = cy = size / 2
        u, v = _rotate(x, y, cx, cy, theta)
        body = _body_inside(design.body_shape, u, v, a, b) <= 1.0
        body_area = int(body.sum())
        r = math.sqrt(difficulty.part_fraction * body_area / _AREA[cdesign["shape"]])
        # largest offset along the major axis at which a disc of radius 1.1 r fits the body
        # (convex symmetric body: every smaller offset fits too)
        angles = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        offsets = np.linspace(a, 0.0, 48)
        ring_u = offsets[:, None] + 1.1 * r * np.cos(angles)[None, :]
        ring_v = 1.1 * r * np.sin(angles)[None, :]
        fits = (_body_inside(design.body_shape, ring_u, ring_v, a, b) <= 1.0).all(axis=1)
        d_max = float(offsets[np.argmax(fits)]) if fits.any() else 0.0
        d = d_max * rng.uniform(0.82, 1.0)
        side = 1.0 if rng.random() < 0.5 else -1.0
        placed = False
        for s in (side, -side):
            px = cx + s * d * math.cos(theta)
            py = cy + s * d * math.sin(theta)
            if 1.1 * r + 1 <= px <= size - 1.1 * r - 1 and 1.1 * r + 1 <= py <= size - 1.1 * r - 1:
                placed = True
                break
        if placed:
            break
    else:  # pragma: no cover - a centred body always leaves room for the part
        raise RuntimeError("could not place the synthetic object; report this as a bug")
    phi = rng.uniform(0.0, 2 * math.pi)
    pu, pv = _rotate(x, y, px, py, phi)
    part = _part_shape(cdesign["shape"], pu, pv, r) & body
    occluded = bool(rng.random() < difficulty.part_occlusion) and allow_occlusion
    if occluded:
        part = np.zeros_like(part)
    mask = body | part

    # 3. distractors: part-less bodies behind the object, mostly off it
    for _ in range(int(rng.integers(0, difficulty.num_distractors + 1))):
        for _try in range(10):
            da = a * rng.uniform(0.5, 0.85)
            db = da * rng.uniform(0.45, 1.0)
            dcx, dcy = rng.uniform(0, size, 2)
            du, dv = _rotate(x, y, dcx, dcy, rng.uniform(0, math.pi))
            dmask = _body_inside(design.body_shape, du, dv, da, db) <= 1.0
            area = int(dmask.sum())
            if area > 0 and int((dmask & mask).sum()) <= 0.2 * area:
                drgb = _hsv_jitter(np.array(design.body_rgb), rng, 0.03)
                dtex = _texture(design, du, dv, da, db, rng.uniform(0, 2 * math.pi))
                img = np.where(dmask[..., None], drgb * dtex[..., None], img)
                break

    # 4. the object: textured body (optionally tinted toward the class colour), then the part
    e = difficulty.body_class_evidence
    tint = (1 - e) * body_rgb + e * class_rgb
    tex = _texture(design, u, v, a, b, rng.uniform(0, 2 * math.pi))
    img = np.where(body[..., None], tint * tex[..., None], img)
    part_rgb = _hsv_jitter(class_rgb, rng, 0.02)
    if not occluded:
        img = np.where(part[..., None], _pattern(cdesign["pattern"], pu, pv, r, part_rgb), img)

    # 5. sensor noise, quantisation
    img = img + rng.normal(0.0, 0.012 + 0.02 * clutter, size=img.shape)
    image = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    return {
        "image": image,
        "mask": mask,
        "part_mask": part,
        "box": mask_box(mask),
        "part_box": mask_box(part),
        "occluded": occluded,
        "class_index": class_index,
    }


def render_sample(
    difficulty: Difficulty,
    image_size: int,
    class_index: int,
    seed: int | Sequence[int],
    *,
    train: bool = False,
) -> dict[str, Any]:
    """Render one image of class `class_index` (0-based) from `np.random.default_rng(seed)`.

    Returns `{"image": uint8 HxWx3, "mask": bool HxW (body + part), "part_mask": bool HxW,
    "box": (x0, y0, x1, y1), "part_box": (x0, y0, x1, y1), "occluded": bool, "class_index"}`
    (boxes tight, x1/y1 exclusive). Occlusion only happens with `train=True`. The image with
    index `i` of split `split` in a dataset made by `make_dataset(..., seed=s)` is
    `render_sample(d, size, class, [s, split_id(d.family, split), i], train=split == "train")`.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    rng = np.random.default_rng(seed)
    return _render(rng, difficulty, int(image_size), int(class_index), allow_occlusion=train)


def split_id(family: str, split: str) -> int:
    """The `split_id` of the per-image RNG key: train 1 / test 2 / val 3 (pretrain family:
    11 / 12 / 13). Distinct keys give distinct images: the validation split (`VAL_SPLIT`,
    `make_val_dataset`) shares no image with train or test."""
    if split == VAL_SPLIT:
        return 10 * FAMILIES.index(family) + 1 + len(SPLITS)
    return 10 * FAMILIES.index(family) + 1 + SPLITS.index(split)


# ---------------------------------------------------------------------------------------------
# The dataset on disk
# ---------------------------------------------------------------------------------------------
def dataset_spec(
    num_classes: int,
    images_per_class: int,
    image_size: int,
    seed: int,
    test_per_class: int | None = None,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> dict[str, Any]:
    """The canonical description of a dataset (what `make_dataset`'s hash is computed from)."""
    for name, value, low in (
        ("num_classes", num_classes, 2),
        ("images_per_class", images_per_class, 1),
        ("image_size", image_size, 16),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if test_per_class is None:
        test_per_class = images_per_class // 2
    if int(test_per_class) != test_per_class or test_per_class < 0:
        raise ValueError(f"test_per_class must be an integer >= 0, got {test_per_class!r}")
    if not isinstance(difficulty, Difficulty):
        raise ValueError(f"difficulty must be a Difficulty, got {type(difficulty).__name__}")
    return {
        "generator_version": GENERATOR_VERSION,
        "num_classes": int(num_classes),
        "images_per_class": int(images_per_class),
        "test_per_class": int(test_per_class),
        "image_size": int(image_size),
        "seed": int(seed),
        "difficulty": dataclasses.asdict(difficulty),
    }


def spec_hash(spec: dict[str, Any]) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of `spec`
    (`csoa_nb.base.cache.stable_hash`)."""
    return stable_hash(spec)


def _is_complete(folder: Path, digest: str) -> bool:
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("complete") is True and data.get("hash") == digest


def _save_png(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG", compress_level=1)


def val_spec(
    num_classes: int,
    image_size: int,
    seed: int,
    per_class: int = VAL_PER_CLASS,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> dict[str, Any]:
    """The canonical description of a validation split (what `make_val_dataset`'s hash is
    computed from): the benchmark's generator, classes, image size, seed and difficulty (not
    its train / test counts, which do not change a validation image), and `val_per_class`."""
    base = dataset_spec(num_classes, 1, image_size, seed, 0, difficulty)
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    keep = ("generator_version", "num_classes", "image_size", "seed", "difficulty")
    return {**{key: base[key] for key in keep}, "split": VAL_SPLIT,
            "val_per_class": int(per_class)}


def _write_dataset(folder: Path, spec: dict[str, Any], digest: str, difficulty: Difficulty,
                   splits: tuple[str, ...] = SPLITS) -> None:
    """Write the images of `splits` (SPLITS, or (VAL_SPLIT,) for a validation folder)."""
    family = difficulty.family
    size = spec["image_size"]
    counts = {"train": spec.get("images_per_class", 0), "test": spec.get("test_per_class", 0),
              VAL_SPLIT: spec.get("val_per_class", 0)}
    images, labels, is_train, boxes, part_boxes = [], [], [], [], []
    image_id = 0
    for k in range(spec["num_classes"]):
        folder_name = class_folder(family, k)
        for sub in ("images", "masks", "parts"):
            (folder / sub / folder_name).mkdir(parents=True)
        number = 0
        for split in splits:
            for i in range(counts[split]):
                image_id += 1
                number += 1
                index = k * counts[split] + i
                rng = np.random.default_rng([spec["seed"], split_id(family, split), index])
                sample = _render(rng, difficulty, size, k, allow_occlusion=split == "train")
                stem = f"{folder_name}/{DESIGNS[family].class_prefix}_{k + 1:02d}_{number:04d}"
                Image.fromarray(sample["image"]).save(
                    folder / "images" / f"{stem}.jpg",
                    format="JPEG",
                    quality=JPEG_QUALITY,
                    subsampling=0,
                )
                _save_png(sample["mask"], folder / "masks" / f"{stem}.png")
                _save_png(sample["part_mask"], folder / "parts" / f"{stem}.png")
                x0, y0, x1, y1 = sample["box"]
                px0, py0, px1, py1 = sample["part_box"]
                images.append(f"{image_id} {stem}.jpg")
                labels.append(f"{image_id} {k + 1}")
                is_train.append(f"{image_id} {int(split == 'train')}")
                boxes.append(f"{image_id} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}")
                part_boxes.append(f"{image_id} {px0:.1f} {py0:.1f} {px1 - px0:.1f} {py1 - py0:.1f}")
    tables = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": is_train,
        "bounding_boxes.txt": boxes,
        "part_boxes.txt": part_boxes,
        "classes.txt": [f"{k + 1} {class_folder(family, k)}" for k in range(spec["num_classes"])],
    }
    for name, lines in tables.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {
        "generator": "csoa_nb.data.synthetic",
        "hash": digest,
        "spec": spec,
        "family": family,
        "num_images": {split: counts[split] * spec["num_classes"] for split in splits},
        "classes": [
            {"folder": class_folder(family, k), **class_design(family, k)}
            for k in range(spec["num_classes"])
        ],
        "complete": True,
    }
    (folder / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def make_dataset(
    root: str | os.PathLike[str],
    num_classes: int,
    images_per_class: int,
    image_size: int,
    seed: int,
    *,
    test_per_class: int | None = None,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> Path:
    """Write (or reuse) a synthetic dataset in CUB-200-2011 format; return its folder.

    The folder is `root/synthetic-<family>-<hash12>`, hash12 being the first 12 hex digits of
    sha256 over the canonical JSON of all arguments and `GENERATOR_VERSION`. A folder with a
    complete, matching `manifest.json` is reused as is. Generation happens in a hidden temporary
    folder inside `root` that is renamed into place at the end, so an interrupted run never
    leaves a half dataset that looks complete. That folder is removed when generation fails;
    one left by a killed run is removed by the next call (`clean_stale_tmp`). Nothing else in
    `root` is touched.

    Args:
        root: parent folder (created if needed).
        num_classes: number of classes (>= 2).
        images_per_class: training images per class.
        image_size: side of the square images in pixels (>= 16).
        seed: base seed (>= 0); image `i` of a split uses `default_rng([seed, split_id, i])`.
        test_per_class: test images per class (default `images_per_class // 2`); test images
            are never occluded.
        difficulty: the `Difficulty` knobs, including the design `family`.
    """
    if not isinstance(difficulty, Difficulty):
        raise ValueError(f"difficulty must be a Difficulty, got {type(difficulty).__name__}")
    spec = dataset_spec(num_classes, images_per_class, image_size, seed, test_per_class, difficulty)
    digest = spec_hash(spec)
    return _materialize(abspath(root), f"synthetic-{difficulty.family}-{digest}", spec, digest,
                        difficulty, SPLITS)


def make_val_dataset(
    root: str | os.PathLike[str],
    num_classes: int,
    image_size: int,
    seed: int,
    *,
    per_class: int = VAL_PER_CLASS,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> Path:
    """Write (or reuse) the validation split of a benchmark; return its folder.

    Choe et al. (CVPR 2020) choose every method's hyperparameters and CAM threshold on a small
    fully supervised split ("train-fullsup"), disjoint from the test set, and score the test
    set once. This is that split for the benchmark `make_dataset(root, num_classes, ...,
    image_size, seed, difficulty=difficulty)`: `per_class` images of each class, with boxes,
    masks and parts, never occluded (as test images), image `i` of class `k` drawn from
    `default_rng([seed, split_id(family, "val"), k * per_class + i])`.

    The folder is `root/synthetic-<family>-val-<hash12>` (hash of `val_spec`), in the format of
    `make_dataset` with every image marked `is_train` 0, so `CUB200(folder, "test")` reads it.
    It is generated and reused like the benchmark's folder (hidden temporary folder, renamed
    into place, `manifest.json` last) and leaves the benchmark's folder untouched.
    """
    if not isinstance(difficulty, Difficulty):
        raise ValueError(f"difficulty must be a Difficulty, got {type(difficulty).__name__}")
    spec = val_spec(num_classes, image_size, seed, per_class, difficulty)
    digest = spec_hash(spec)
    name = f"synthetic-{difficulty.family}-{VAL_SPLIT}-{digest}"
    return _materialize(abspath(root), name, spec, digest, difficulty, (VAL_SPLIT,))


def _materialize(root_path: Path, name: str, spec: dict[str, Any], digest: str,
                 difficulty: Difficulty, splits: tuple[str, ...]) -> Path:
    """`root_path / name`, written by `_write_dataset` unless a complete one is there."""
    final = root_path / name
    clean_stale_tmp(root_path)
    if final.exists():
        if _is_complete(final, digest):
            return final
        raise DataError(
            f"{final} exists but is not a complete synthetic dataset with hash {digest} (no valid "
            "manifest.json): delete that folder (it is not ours to overwrite) or use another root"
        )
    then = "the half-written folder is removed, and the benchmark is generated again"
    prefix = f".tmp-{final.name}-{_host_tag()}-{os.getpid()}-"
    tmp: Path | None = None
    try:
        root_path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=root_path))
        _write_dataset(tmp, spec, digest, difficulty, splits)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, digest):  # else another process finished it first
                raise
    except OSError as error:
        raise disk_full_error(error, root_path, f"the synthetic benchmark {name}", then) from error
    finally:  # after a successful rename `tmp` is gone; otherwise it is half-written
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _host_tag() -> str:
    """8 hex digits identifying this host in temporary folder names (hash of the host name)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host may still run (True when that cannot be told)."""
    if os.name != "posix" or pid <= 0:  # on Windows, os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists but belongs to another user
        return True
    return True


def clean_stale_tmp(root: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary folders of `make_dataset` runs that died (killed, power cut) in `root`.

    Only direct sub-folders of `root` whose name matches `_TMP_NAME` exactly, that are real
    folders (not links) owned by the current user are candidates; one is removed when its
    name says it was made on this host by a process that no longer exists, or when it is
    older than `STALE_TMP_SECONDS`. A folder of a live generation (its pid still runs) is kept,
    and nothing else in `root` is ever touched. Returns the removed folders; errors (an
    unreadable `root`, a folder another process removes first) are ignored.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return removed
    host, now = _host_tag(), time.time()
    for entry in entries:
        match = _TMP_NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            continue
        pid = match["pid"]
        owner_gone = pid is not None and match["host"] == host and not _pid_alive(int(pid))
        if owner_gone or now - info.st_mtime > STALE_TMP_SECONDS:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def part_area_ratios(root: str | os.PathLike[str]) -> np.ndarray:
    """Part area / object area of every image of a dataset written by `make_dataset`.

    Measured from the saved masks: pixels of `parts/<stem>.png` over pixels of
    `masks/<stem>.png` (the object = body + part), in the order of `images.txt`. An image
    whose part is occluded (train split only) has an empty part mask and ratio 0. Returns a
    float64 array with one value per image.
    """
    folder = abspath(root)
    listing = folder / "images.txt"
    if not listing.is_file() or not (folder / "parts").is_dir():
        raise DataError(
            f"{folder} has no images.txt or parts/ folder: pass a folder made by "
            "csoa_nb.data.synthetic.make_dataset"
        )
    ratios = []
    for line in listing.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        stem = Path(line.strip().split(maxsplit=1)[1]).with_suffix(".png")
        part = np.asarray(Image.open(folder / "parts" / stem)) >= 128
        mask = np.asarray(Image.open(folder / "masks" / stem)) >= 128
        ratios.append(part.sum() / max(int(mask.sum()), 1))
    return np.asarray(ratios, dtype=np.float64)
