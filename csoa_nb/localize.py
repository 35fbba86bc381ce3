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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

__all__ = [
    "normalize_cam",
    "upsample_cam",
    "binarize",
    "fuse_cams",
    "slice_components",
    "largest_component_box",
    "component_boxes",
    "csoa_box",
]

#: 8-connectivity in 2-D (Zhou et al. / OpenCV contours also connect diagonal pixels).
STRUCTURE_8 = np.ones((3, 3), dtype=bool)
# 8-connectivity inside each slice of a stack, no connection between slices: labelling a
# whole stack with this structure in one call equals labelling every slice on its own.
_STRUCTURE_SLICES = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_SLICES[1] = True


# ----------------------------------------------------------------------------- validation
def _as_tensor(x: object, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ValueError(f"{name} must be a torch.Tensor (or numpy array); got {type(x).__name__}")


def _check_map(
    x: object, name: str, *, ndim: int | None = None, min_ndim: int | None = None
) -> Tensor:
    """Tensor with the required rank, numeric, no NaN/inf; ints/bools become float32."""
    t = _as_tensor(x, name)
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims; got shape {tuple(t.shape)}")
    if min_ndim is not None and t.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dims (..., h, w); got shape {tuple(t.shape)}"
        )
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued; got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.float()
    if t.numel() and not torch.isfinite(t).all():
        bad = "NaN" if torch.isnan(t).any() else "inf"
        raise ValueError(f"{name} contains {bad} values; check the model output / input data")
    if t.shape[-2:].numel() == 0 and t.ndim >= 2:
        raise ValueError(f"{name} has an empty spatial size {tuple(t.shape[-2:])}")
    return t


def _check_theta(theta: object, name: str = "theta") -> float:
    if isinstance(theta, bool) or not isinstance(theta, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [0, 1]; got {theta!r}")
    value = float(theta)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1] (Eq. 13 threshold ratio); got {theta!r}")
    return value


def _check_size(size: object, name: str = "size") -> tuple[int, int]:
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or not all(int(s) > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a pair of positive ints (H, W); got {size!r}")
    return int(size[0]), int(size[1])


def _check_binary(binary: object, name: str, ndims: tuple[int, ...]) -> Tensor:
    t = _as_tensor(binary, name)
    if t.dtype != torch.bool:
        raise ValueError(
            f"{name} must be a bool tensor (e.g. the output of binarize); got dtype {t.dtype}"
        )
    if t.ndim not in ndims:
        dims = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must have {dims} dims; got shape {tuple(t.shape)}")
    return t


# ----------------------------------------------------------------------------- maps
def normalize_cam(cam: Tensor) -> Tensor:
    """Min-max normalise every map to ``[0, 1]`` (the CAM protocol of Zhou et al. 2016).

    Args:
        cam: float tensor ``... x h x w`` (any leading dims, at least 2 dims), any real
            values, no NaN/inf. Integer/bool input is converted to float32.

    Returns:
        Tensor of the same shape and float dtype with ``(cam - min) / (max - min)`` computed
        per ``h x w`` map, so each map spans exactly ``[0, 1]``. A constant map (``max ==
        min``) becomes all zeros (no pixel can pass Eq. 13, ``0 > theta * 0`` is false).

    Raises:
        ValueError: ``cam`` is not a tensor, has fewer than 2 dims, or contains NaN/inf.
    """
    cam = _check_map(cam, "cam", min_ndim=2)
    lo = cam.amin(dim=(-2, -1), keepdim=True)
    hi = cam.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (cam - lo) / safe, torch.zeros_like(cam))


def upsample_cam(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize ``B x h x w`` maps to the image size ``(H, W)``.

    Args:
        cam: float tensor ``B x h x w`` (raw or normalised values, no NaN/inf).
        size: ``(H, W)`` output size in pixels (height first, like ``torch``).

    Returns:
        Float tensor ``B x H x W`` (``F.interpolate(mode="bilinear", align_corners=False)``);
        values stay within each input map's ``[min, max]``.

    Raises:
        ValueError: wrong number of dims, NaN/inf values, or a bad ``size``.
    """
    cam = _check_map(cam, "cam", ndim=3)
    size = _check_size(size)
    if tuple(cam.shape[-2:]) == size:
        return cam.clone()
    out = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)
    return out[:, 0]


def binarize(cam: Tensor, theta: float) -> Tensor:
    """Eq. 13: foreground where ``cam > theta * max(cam)``, per ``h x w`` map.

    Args:
        cam: float tensor ``... x h x w`` (at least 2 dims). Eq. 13 is meant for
            non-negative maps (raw CAMs after ReLU or ``normalize_cam`` output in ``[0, 1]``);
            for a normalised map ``max == 1`` so the test is simply ``cam > theta``.
        theta: threshold ratio in ``[0, 1]`` (the paper uses 0.2-0.4, Table 3).

    Returns:
        Bool tensor of the same shape. The inequality is strict, so an all-zero map gives an
        all-False mask at every theta, and ``theta = 1`` always gives an empty mask.

    Raises:
        ValueError: ``theta`` outside ``[0, 1]``; ``cam`` with < 2 dims or NaN/inf.
    """
    theta = _check_theta(theta)
    cam = _check_map(cam, "cam", min_ndim=2)
    return cam > theta * cam.amax(dim=(-2, -1), keepdim=True)


def fuse_cams(cam_last: Tensor, cam_feature: Tensor | None, size: tuple[int, int]) -> Tensor:
    """Fused localisation map of CSoA: ``max(norm(up(S_L)), norm(up(S_F)))``.

    Each CAM is upsampled to the image size (``upsample_cam``), min-max normalised
    (``normalize_cam``) and the two are combined by an elementwise maximum.

    Why a maximum is Eq. 13's union: for normalised maps ``a``, ``b`` with ``max == 1``,
    ``binarize(a, t) = a > t`` and ``binarize(b, t) = b > t``, and ``(a > t) or (b > t)`` is
    ``max(a, b) > t``; ``max(a, b)`` also has maximum 1, so ``binarize(fused, t)`` (threshold
    ``t * 1 = t``) is exactly "the union of the two binary maps" of Eq. 13 at **every** theta.
    (If one map is constant its normalised version is 0 and never passes, on both sides.) The
    fused map is therefore the single score map of CSoA that threshold sweeps (MaxBoxAccV2,
    PxAP) can use.

    Args:
        cam_last: float tensor ``B x h x w``, CAM ``S_L`` of one class per image.
        cam_feature: float tensor ``B x h' x w'`` (``S_F``, may have another resolution) or
            ``None`` for the single-CAM baseline, which returns ``normalize_cam(up(cam_last))``.
        size: image size ``(H, W)``.

    Returns:
        Float tensor ``B x H x W`` in ``[0, 1]`` (max 1 unless both maps are constant).

    Raises:
        ValueError: wrong dims, batch mismatch, NaN/inf, bad size.
    """
    cam_last = _check_map(cam_last, "cam_last", ndim=3)
    if cam_feature is not None:
        cam_feature = _check_map(cam_feature, "cam_feature", ndim=3)
        if cam_feature.shape[0] != cam_last.shape[0]:
            raise ValueError(
                f"cam_last and cam_feature must have the same batch size; got "
                f"{cam_last.shape[0]} and {cam_feature.shape[0]}"
            )
    size = _check_size(size)
    fused = normalize_cam(upsample_cam(cam_last, size))
    if cam_feature is not None:
        other = normalize_cam(upsample_cam(cam_feature, size)).to(fused)
        fused = torch.maximum(fused, other)
    return fused


# ----------------------------------------------------------------------------- components
def slice_components(binary: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of all 8-connected components of every slice of a ``S x H x W`` bool stack.

    One ``scipy.ndimage.label`` call labels the whole stack with a structure that connects
    pixels 8-wise inside a slice and never across slices, which is the same as labelling each
    slice with a 3x3 ones structure but much faster for threshold sweeps. Components are listed
    slice by slice and, inside a slice, in ``scipy`` label order (raster order of each
    component's first pixel) -- the same order as labelling the slice on its own.

    Args:
        binary: bool tensor / array ``S x H x W``.

    Returns:
        ``(boxes, slice_index, area)``: int64 arrays ``K x 4`` (``x0, y0, x1, y1``, x1/y1
        exclusive), ``K`` (which slice) and ``K`` (pixel count). ``K`` may be 0.

    Raises:
        ValueError: not a bool tensor with 3 dims.
    """
    t = _check_binary(binary, "binary", (3,))
    arr = t.detach().cpu().numpy()
    empty = (np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if arr.size == 0 or not arr.any():
        return empty
    labels, n = ndimage.label(arr, structure=_STRUCTURE_SLICES)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    if n * 64 <= int(area.sum()):
        # few (large) components: find_objects, one Python tuple per component.
        objects = ndimage.find_objects(labels)
        spans = np.array(
            [(s[0].start, s[2].start, s[1].start, s[2].stop, s[1].stop) for s in objects],
            dtype=np.int64,
        ).reshape(n, 5)
    else:
        # many tiny components (noisy maps): per-label min/max of the pixel coordinates.
        spans = _label_spans(labels, n)
    return spans[:, 1:], spans[:, 0], area


def _label_spans(labels: np.ndarray, n: int) -> np.ndarray:
    """``n x 5`` int64 rows ``(slice, x0, y0, x1, y1)`` of labels 1..n (x1/y1 exclusive);
    the same numbers as ``ndimage.find_objects`` but vectorised (faster for many labels)."""
    _, h, w = labels.shape
    flat = labels.ravel()
    pixel = np.flatnonzero(flat)
    lab = flat[pixel] - 1
    z, rest = np.divmod(pixel, h * w)
    y, x = np.divmod(rest, w)
    spans = np.empty((n, 5), dtype=np.int64)
    spans[lab, 0] = z  # every pixel of a label lies in the same slice
    for col, coord, fill, ufunc, shift in (
        (1, x, w, np.minimum, 0),
        (2, y, h, np.minimum, 0),
        (3, x, -1, np.maximum, 1),
        (4, y, -1, np.maximum, 1),
    ):
        bound = np.full(n, fill, dtype=np.int64)
        ufunc.at(bound, lab, coord)
        spans[:, col] = bound + shift
    return spans


def _largest_per_slice(slice_index: np.ndarray, area: np.ndarray, n_slices: int) -> np.ndarray:
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
    """Bounding box of the largest 8-connected foreground component (Zhou et al. 2016).

    Components come from ``scipy.ndimage.label`` with a 3x3 ones structure, so pixels touching
    only diagonally belong to the same component. Size = number of pixels; ties go to the
    component with the smallest label (the one whose first pixel comes first in raster order).

    Args:
        binary: bool tensor ``H x W`` or ``B x H x W`` (e.g. ``binarize(...)``).

    Returns:
        float32 tensor ``4`` or ``B x 4`` (on ``binary``'s device) with ``(x0, y0, x1, y1)``
        in pixels, x1/y1 exclusive: a component spanning columns 2..5 and rows 1..3 gives
        ``(2, 1, 6, 4)``. An empty map gives ``(0, 0, 0, 0)``, whose IoU with any box is 0.

    Raises:
        ValueError: not a bool tensor of 2 or 3 dims.
    """
    t = _check_binary(binary, "binary", (2, 3))
    stack = t[None] if t.ndim == 2 else t
    boxes, slice_index, area = slice_components(stack)
    out = np.zeros((stack.shape[0], 4), dtype=np.float32)
    pick = _largest_per_slice(slice_index, area, stack.shape[0])
    has = pick >= 0
    out[has] = boxes[pick[has]]
    result = torch.from_numpy(out).to(t.device)
    return result[0] if t.ndim == 2 else result


def component_boxes(binary: Tensor) -> Tensor:
    """Bounding boxes of **all** 8-connected components of one binary map.

    Used by the multi-contour MaxBoxAccV2 of Choe et al., "Evaluating Weakly Supervised Object
    Localization Methods Right", CVPR 2020. Built on ``scipy.ndimage.find_objects``.

    Args:
        binary: bool tensor ``H x W``.

    Returns:
        float32 tensor ``K x 4`` (``x0, y0, x1, y1``, x1/y1 exclusive), one row per component
        in label order; ``K = 0`` (shape ``0 x 4``) for an empty map.

    Raises:
        ValueError: not a 2-dim bool tensor.
    """
    t = _check_binary(binary, "binary", (2,))
    boxes, _, _ = slice_components(t[None])
    return torch.from_numpy(boxes.astype(np.float32)).to(t.device)


def csoa_box(
    cam_last: Tensor,
    cam_feature: Tensor | None,
    theta: float,
    image_size: tuple[int, int],
) -> Tensor:
    """Eq. 13 end to end: the CSoA box of every image.

    Steps: upsample both CAMs to ``image_size`` and min-max normalise them; binarise each at
    ``theta * max``; unite the two binary maps; take the bounding box of the largest
    8-connected component. The union is computed as ``binarize(fuse_cams(...), theta)``, which
    is identical (see ``fuse_cams``).

    Args:
        cam_last: float tensor ``B x h x w``, the top-layer CAM ``S_L`` of one class per image
            (the ground-truth or the predicted class).
        cam_feature: float tensor ``B x h' x w'``, the internal CAM ``S_F`` of the same class,
            or ``None`` (single-CAM baseline).
        theta: Eq. 13 ratio in ``[0, 1]``.
        image_size: ``(H, W)`` of the (transformed) image the boxes refer to.

    Returns:
        float32 tensor ``B x 4`` of boxes ``(x0, y0, x1, y1)`` in image pixels, x1/y1
        exclusive; ``(0, 0, 0, 0)`` when nothing passes the threshold.

    Raises:
        ValueError: bad theta, shapes, NaN/inf or size.
    """
    theta = _check_theta(theta)
    image_size = _check_size(image_size, "image_size")
    fused = fuse_cams(cam_last, cam_feature, image_size)
    return largest_component_box(binarize(fused, theta))
