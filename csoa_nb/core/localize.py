"""Eq. 13 of CSoA: from two class activation maps to one bounding box.

Kou et al., "Improve CAM with Auto-adapted Segmentation and Co-supervised Augmentation",
WACV 2021, end of Sec. 3.2 (inference, Eq. 13) and Sec. 4.2. At test time the network keeps
two CAMs of the chosen class, ``S_L`` (top layer, ``cam_last``) and ``S_F`` (internal feature layer,
``cam_feature``). Eq. 13 binarises each one,

    S_hat(i, j) = 1  if  S(i, j) > theta * S_max,   0 otherwise,

the two binary maps are united (a pixel is foreground when either map says so), and, following
the CAM protocol of Zhou et al. ("Learning Deep Features for Discriminative Localization",
CVPR 2016) that the paper cites for this step ("following the instruction in [26]"), the box is
the bounding box of the largest connected foreground region (the paper itself does not spell
this last step out).

Conventions (see ``DESIGN.md``):

* CAMs of one class are float tensors ``B x h x w``; image-sized maps are ``B x H x W``.
* Boxes are float ``(x0, y0, x1, y1)`` in image pixels with ``x1``/``y1`` **exclusive**, so a
  region covering columns 2..5 has ``x0 = 2, x1 = 6`` and area ``(x1 - x0) * (y1 - y0)``.
  No component -> the empty box ``(0, 0, 0, 0)`` (its IoU with any box is 0).
* Bad input raises ``ValueError`` naming the argument.

Normalisation: Zhou et al. min-max normalise each upsampled map to ``[0, 1]`` before applying
``theta * max``; this module does the same (``normalize_cam``). For non-negative CAMs whose
minimum is 0 (the usual case after ReLU) this is exactly Eq. 13 on the raw map; otherwise the
threshold is ``min + theta * (max - min)`` of the raw map.

Implementation: maps are resized with OpenCV (``cv2.resize``, bilinear with half-pixel
centres, the same sampling as ``F.interpolate(mode="bilinear", align_corners=False)``) and
connected components come from OpenCV's border following (``cv2.findContours``, Suzuki and Abe
1985), with the exact pixel count of every component recovered from its border paths by Pick's
theorem (``_outer_counts``). ``csoa_box`` thresholds the raw upsampled maps at the exact float
value that ``normalize_cam`` + ``binarize`` would (``_raw_threshold``), so it returns the same
boxes as ``largest_component_box(binarize(fuse_cams(...), theta))`` without normalising
(``bench/localize.py`` measures it against OpenCV's contour boxes).

Why Eq. 13 has two entry points: the evaluator scores every map at many thresholds (three
reported thetas, MaxBoxAccV2's 100), so it fuses once (``fuse_cams``) and binarises the fused
map per threshold; ``csoa_box`` is the one-threshold path a caller wants for a single box,
faster per map because it never materialises the normalised maps (``bench/localize.py``). Both
share the resize (``_resize``) and the component search (``_largest_box`` /
``slice_components``), and a test holds their boxes equal bit for bit in float32 and float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from csoa_nb.base.checks import as_tensor, check_map, check_size, check_theta

__all__ = [
    "normalize_cam",
    "upsample_cam",
    "binarize",
    "fuse_cams",
    "slice_components",
    "largest_per_slice",
    "largest_component_box",
    "component_boxes",
    "csoa_box",
    "check_unit_maps",
]

#: The thetas every run is scored at and the book reports (Table 3 of the paper).
REPORTED_THETAS = (0.2, 0.3, 0.4)

_NO_BOXES = (np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


# ----------------------------------------------------------------------------- validation
def _check_cam_pair(cam_last: object, cam_feature: object) -> tuple[Tensor, Tensor | None]:
    """``S_L`` and (optional) ``S_F`` as ``B x h x w`` float maps with one batch size."""
    cam_last = check_map(cam_last, "cam_last", ndim=3)
    if cam_feature is None:
        return cam_last, None
    cam_feature = check_map(cam_feature, "cam_feature", ndim=3)
    if cam_feature.shape[0] != cam_last.shape[0]:
        raise ValueError(
            f"cam_last and cam_feature must have the same batch size; got "
            f"{cam_last.shape[0]} and {cam_feature.shape[0]}"
        )
    return cam_last, cam_feature


def _check_binary(binary: object, name: str, ndims: tuple[int, ...]) -> Tensor:
    t = as_tensor(binary, name)
    if t.dtype != torch.bool:
        raise ValueError(
            f"{name} must be a bool tensor (e.g. the output of binarize); got dtype {t.dtype}"
        )
    if t.ndim not in ndims:
        dims = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must have {dims} dims; got shape {tuple(t.shape)}")
    return t


def check_unit_maps(loc_maps: object, name: str = "loc_maps") -> Tensor:
    """Localisation maps for scoring: a float ``B x H x W`` tensor normalised to ``[0, 1]``
    (``fuse_cams`` / ``normalize_cam`` output), as every metric takes them."""
    t = check_map(loc_maps, name, ndim=3)
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"{name} must be normalised to [0, 1] (use csoa_nb.core.localize.fuse_cams or "
            f"normalize_cam); got min {float(t.min()):.4g}, max {float(t.max()):.4g}"
        )
    return t


# ----------------------------------------------------------------------------- maps
def normalize_cam(cam: Tensor) -> Tensor:
    """Min-max normalise each ``h x w`` map of ``cam`` (``... x h x w``, int/bool made float32) to
    ``[0, 1]`` (the CAM protocol of Zhou et al. 2016); a constant map becomes zeros (fails Eq. 13).

    Raises:
        ValueError: ``cam`` is not a tensor, has fewer than 2 dims, or contains NaN/inf.
    """
    cam = check_map(cam, "cam", min_ndim=2)
    lo = cam.amin(dim=(-2, -1), keepdim=True)
    hi = cam.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (cam - lo) / safe, torch.zeros_like(cam))


def upsample_cam(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize ``B x h x w`` maps to ``B x H x W`` for ``size = (H, W)`` pixels, like
    ``F.interpolate(mode="bilinear", align_corners=False)`` to float rounding (via ``cv2.resize``);
    values stay within each map's ``[min, max]``.

    Raises:
        ValueError: wrong number of dims, NaN/inf values, or a bad ``size``.
    """
    cam = check_map(cam, "cam", ndim=3)
    size = check_size(size)
    if tuple(cam.shape[-2:]) == size:
        return cam.clone()
    maps = cam.detach().cpu().numpy()
    out = np.empty((maps.shape[0], *size), dtype=maps.dtype)
    for i, m in enumerate(maps):
        out[i] = _resize(m, size)
    return torch.from_numpy(out).to(cam.device)


def _resize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one ``h x w`` float map to ``size = (H, W)`` (half-pixel centres)."""
    if cam.shape == size:
        return cam.copy()
    return cv2.resize(np.ascontiguousarray(cam), (size[1], size[0]),
                      interpolation=cv2.INTER_LINEAR)


def binarize(cam: Tensor, theta: float) -> Tensor:
    """Eq. 13: bool foreground where ``cam > theta * max(cam)``, per ``h x w`` map; ``theta`` in
    ``[0, 1]`` (the paper uses 0.2-0.4, Table 3). Strict, so an all-zero map or ``theta = 1`` gives
    an empty mask; for a normalised map (max 1) the test is ``cam > theta``.

    Raises:
        ValueError: ``theta`` outside ``[0, 1]``; ``cam`` with < 2 dims or NaN/inf.
    """
    theta = check_theta(theta)
    cam = check_map(cam, "cam", min_ndim=2)
    return cam > theta * cam.amax(dim=(-2, -1), keepdim=True)


def fuse_cams(cam_last: Tensor, cam_feature: Tensor | None, size: tuple[int, int]) -> Tensor:
    """Fused localisation map of CSoA, ``max(norm(up(S_L)), norm(up(S_F)))``, ``B x H x W`` in
    ``[0, 1]`` for ``size = (H, W)``; ``cam_feature=None`` gives the single-CAM baseline. For maps
    of max 1, ``max(a, b) > t`` is ``(a > t) or (b > t)``: binarising it is Eq. 13's union at every
    theta, so it is the one score map that threshold sweeps (MaxBoxAccV2, PxAP) can use.

    Raises:
        ValueError: wrong dims, batch mismatch, NaN/inf, bad size.
    """
    cam_last, cam_feature = _check_cam_pair(cam_last, cam_feature)
    size = check_size(size)
    fused = normalize_cam(upsample_cam(cam_last, size))
    if cam_feature is not None:
        other = normalize_cam(upsample_cam(cam_feature, size)).to(fused)
        fused = torch.maximum(fused, other)
    return fused


# ----------------------------------------------------------------------------- components
def _outer_counts(contours: Sequence[np.ndarray], hierarchy: np.ndarray) -> dict[int, int]:
    """Pixel count of every component, keyed by the index of its outer border.

    ``cv2.findContours(RETR_CCOMP, CHAIN_APPROX_NONE)`` traces each component's outer border
    (8-connected) and each hole's (4-connected): closed paths of ``n`` steps, shoelace area ``A``.
    By Pick's theorem an outer border holds ``A + n / 2 + 1`` pixels (one pixel: ``n = 0``) and a
    hole ``A - n / 2 + 1``; a component is its outer count minus its holes' (a hole's parent is its
    outer border). ``tests/test_localize.py`` checks this against ``scipy.ndimage.label``.
    """
    count: dict[int, float] = {}
    parents = hierarchy[0, :, 3].tolist()
    for i, (contour, parent) in enumerate(zip(contours, parents, strict=True)):
        n, area = len(contour), cv2.contourArea(contour)
        if parent < 0:
            count[i] = count.get(i, 0.0) + area + (n / 2 if n > 1 else 0.0) + 1
        else:
            count[parent] = count.get(parent, 0.0) - (area - n / 2 + 1)
    return {i: round(c) for i, c in count.items()}


def _first_pixel(contour: np.ndarray) -> tuple[int, int]:
    """(row, column) of a component's first pixel in raster order: OpenCV starts each outer
    border there."""
    x, y = contour[0, 0].tolist()
    return y, x


def _box(contour: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(contour)
    return x, y, x + w, y + h


def _contours(mask: np.ndarray) -> tuple[Sequence[np.ndarray], np.ndarray]:
    return cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and pixel counts of the 8-connected components of one uint8 map (non-zero =
    foreground), in raster order of each component's first pixel (the label order of
    ``scipy.ndimage.label``): int64 arrays ``K x 4`` (``x0, y0, x1, y1``, x1/y1 exclusive)
    and ``K``."""
    contours, hierarchy = _contours(mask)
    if not contours:
        return np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    count = _outer_counts(contours, hierarchy)
    outer = sorted(count, key=lambda i: _first_pixel(contours[i]))
    boxes = np.array([_box(contours[i]) for i in outer], dtype=np.int64)
    return boxes, np.array([count[i] for i in outer], dtype=np.int64)


def _largest_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Box of the largest 8-connected component of one uint8 map, ties to the first in
    raster order; ``(0, 0, 0, 0)`` when the map is empty."""
    contours, hierarchy = _contours(mask)
    if not contours:
        return 0, 0, 0, 0
    if len(contours) == 1:  # one component without holes: no counting needed
        return _box(contours[0])
    count = _outer_counts(contours, hierarchy)
    most = max(count.values())
    tied = [i for i, c in count.items() if c == most]
    return _box(contours[min(tied, key=lambda i: _first_pixel(contours[i]))])


def slice_components(binary: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of all 8-connected components of every slice of a ``S x H x W`` bool stack.

    ``(boxes, slice_index, area)``: int64 ``K x 4`` (x1/y1 exclusive), slices ``K`` and pixel
    counts ``K``, ``K`` may be 0; slice by slice, then in raster order of first pixels
    (``scipy.ndimage.label``'s order). How components are found and counted: ``_outer_counts``.

    Raises:
        ValueError: not a bool tensor with 3 dims.
    """
    t = _check_binary(binary, "binary", (3,))
    stack = np.ascontiguousarray(t.detach().cpu().numpy()).view(np.uint8)
    parts = [_components(m) for m in stack] if stack.size and stack.any() else []
    if not any(area.size for _, area in parts):
        return _NO_BOXES
    boxes = np.concatenate([b for b, _ in parts])
    slice_index = np.concatenate([np.full(a.size, s, np.int64) for s, (_, a) in enumerate(parts)])
    return boxes, slice_index, np.concatenate([a for _, a in parts])


def largest_per_slice(slice_index: np.ndarray, area: np.ndarray, n_slices: int) -> np.ndarray:
    """Index (into the component list) of each slice's largest component, -1 if none.

    Ties go to the component listed first (smallest label)."""
    pick = np.full(n_slices, -1, dtype=np.int64)
    if slice_index.size == 0:
        return pick
    order = np.lexsort((np.arange(slice_index.size), -area, slice_index))
    first_slice, first_pos = np.unique(slice_index[order], return_index=True)
    pick[first_slice] = order[first_pos]
    return pick


def largest_component_box(binary: Tensor) -> Tensor:
    """Box of the largest 8-connected foreground component (Zhou et al. 2016) of ``H x W`` or
    ``B x H x W`` bool maps: float32 ``4`` / ``B x 4`` ``(x0, y0, x1, y1)``, x1/y1 exclusive;
    ``(0, 0, 0, 0)`` (IoU 0) when empty. Ties go to the first component in raster order.

    Raises:
        ValueError: not a bool tensor of 2 or 3 dims.
    """
    t = _check_binary(binary, "binary", (2, 3))
    stack = t[None] if t.ndim == 2 else t
    masks = np.ascontiguousarray(stack.detach().cpu().numpy()).view(np.uint8)
    out = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        out[i] = _largest_box(mask)
    result = torch.from_numpy(out).to(t.device)
    return result[0] if t.ndim == 2 else result


def component_boxes(binary: Tensor) -> Tensor:
    """Float32 ``K x 4`` boxes (x1/y1 exclusive) of **all** 8-connected components of an ``H x W``
    bool map, raster order, ``0 x 4`` if empty: for the multi-contour MaxBoxAccV2 of Choe et al.,
    "Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020.

    Raises:
        ValueError: not a 2-dim bool tensor.
    """
    t = _check_binary(binary, "binary", (2,))
    boxes, _, _ = slice_components(t[None])
    return torch.from_numpy(boxes.astype(np.float32)).to(t.device)


def _raw_threshold(lo: float, hi: float, theta: float, dtype: type[np.floating]) -> float:
    """The raw value ``v*`` with ``cam > v*`` exactly where ``normalize_cam(cam) > theta``.

    ``normalize_cam`` computes ``f(v) = (v - lo) / (hi - lo)`` in the map's float ``dtype``;
    ``f`` is non-decreasing (rounding keeps order), so ``f(v) > theta`` is ``v > v*`` for the
    largest ``v*`` of that dtype with ``f(v*) <= theta``. Start from ``lo + theta * (hi -
    lo)`` and step one representable value at a time (a step or two at most) to land on it.
    A constant map (``hi == lo``) normalises to zeros, which never pass: ``v* = inf``.
    """
    lo_, span, theta_ = dtype(lo), dtype(dtype(hi) - dtype(lo)), dtype(theta)
    if not span > 0 or theta_ >= 1:  # f <= 1 on the map: nothing passes
        return float("inf")
    up, down = dtype(np.inf), dtype(-np.inf)
    v = dtype(lo + theta * (hi - lo))
    while (v - lo_) / span > theta_:
        v = np.nextafter(v, down)
    while not (np.nextafter(v, up) - lo_) / span > theta_:
        v = np.nextafter(v, up)
    return float(v)


def csoa_box(
    cam_last: Tensor,
    cam_feature: Tensor | None,
    theta: float,
    image_size: tuple[int, int],
) -> Tensor:
    """Eq. 13 end to end: the CSoA box of every image, float32 ``B x 4`` in pixels of
    ``image_size = (H, W)``, x1/y1 exclusive, ``(0, 0, 0, 0)`` when nothing passes.

    ``S_L`` (``cam_last``, ``B x h x w``) and ``S_F`` (``cam_feature``, ``B x h' x w'``, or None for
    the single-CAM baseline) are upsampled, normalised, binarised at ``theta * max`` and united
    (the same union as ``binarize(fuse_cams(...), theta)``); the box is the largest 8-connected
    component's.

    Raises:
        ValueError: bad theta, shapes, NaN/inf or size.
    """
    theta = check_theta(theta)
    image_size = check_size(image_size, "image_size")
    cam_last, cam_feature = _check_cam_pair(cam_last, cam_feature)
    maps = [cam_last] if cam_feature is None else [cam_last, cam_feature.to(cam_last.dtype)]
    arrays = [m.detach().cpu().numpy() for m in maps]
    dtype = arrays[0].dtype.type
    union, passed = np.empty((2, *image_size), dtype=bool)
    boxes = np.zeros((cam_last.shape[0], 4), dtype=np.float32)
    for i in range(cam_last.shape[0]):
        for k, array in enumerate(arrays):  # Eq. 13: binarise each CAM, then unite
            up = _resize(array[i], image_size)
            lo, hi, _, _ = cv2.minMaxLoc(up)
            np.greater(up, _raw_threshold(lo, hi, theta, dtype), out=passed if k else union)
        if len(arrays) == 2:
            union |= passed
        boxes[i] = _largest_box(union.view(np.uint8))
    return torch.from_numpy(boxes).to(cam_last.device)
