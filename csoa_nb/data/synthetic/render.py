"""Drawing one synthetic image: background clutter, distractors, the body and its class
part, with the object mask, part mask and their tight boxes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from csoa_nb.data.common import mask_box
from csoa_nb.data.synthetic.designs import DESIGNS, FamilyDesign, class_design
from csoa_nb.data.synthetic.spec import Difficulty


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
    """One image of class `class_index` (0-based) from `np.random.default_rng(seed)`: `{"image":
    uint8 HxWx3, "mask": bool HxW (body + part), "part_mask", "box", "part_box" (tight, x1/y1
    exclusive), "occluded", "class_index"}`; occluded only if `train`. Image `i` of `split` of
    `make_dataset(..., seed=s)` uses seed `[s, split_id(d.family, split), i]`."""
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    rng = np.random.default_rng(seed)
    return _render(rng, difficulty, int(image_size), int(class_index), allow_occlusion=train)
