"""Trivial localization baselines: maps that look at no image.

Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020, put
WSOL scores next to what needs no learning at all: a box covering the whole image, and their
"center-gaussian baseline", an isotropic Gaussian score map centred in the image. A method
that does not beat these on a data set has learned nothing about where the objects are (on
CUB and ILSVRC objects are large and often centred, so the bar is not low).

Both functions return maps in the shape convention of CAMs (``B x h x w``, raw, before any
normalisation), so Eq. 13 (``csoa_nb.core.localize.csoa_box`` with ``cam_feature=None``) and the
threshold sweeps (MaxBoxAccV2, PxAP on ``normalize_cam`` of the upsampled map) apply to them
unchanged. ``csoa_nb.engine.baselines.trivial_scores`` scores them on a run's test split.

The full-image map is *almost* constant. A constant map has no range: the min-max
normalisation of Eq. 13 and of Choe et al. (``normalize_cam``) turns it into zeros, and no
pixel passes any threshold (an empty box, not the whole image). So the map is 1 everywhere
except its top-left cell, which is 0. At every ``theta`` in ``[0, 1)`` all other cells pass,
they form one 8-connected region whose rows and columns span the whole map, and its bounding
box is the whole image, also after bilinear upsampling (the dip spreads over less than one cell
of the map around the corner, and the far ends of the first row and first column stay at 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TrivialConfig", "full_image_maps", "center_gaussian_maps"]


@dataclass(frozen=True)
class TrivialConfig:
    """Parameter of the centre-Gaussian baseline.

    Attributes:
        sigma: standard deviation of the Gaussian in cells of the ``h x w`` map. Choe et al.
            do not fix one number for all data; choose it on the validation split like any
            other hyperparameter (their protocol). The default is a quarter of a 14-cell side
            (VGG16's map at 224 px).
    """

    sigma: float = 3.5

    def __post_init__(self) -> None:
        _check_sigma(self.sigma)


def _check_size(batch: object, h: object, w: object, min_side: int) -> tuple[int, int, int]:
    for name, value, low in (("batch", batch, 0), ("h", h, min_side), ("w", w, min_side)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return batch, h, w  # type: ignore[return-value]


def _check_sigma(sigma: object) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not float(sigma) > 0:
        raise ValueError(f"sigma must be a number > 0 (in map cells), got {sigma!r}")
    return float(sigma)


def full_image_maps(batch: int, h: int, w: int, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """The "whole image" baseline, ``batch x h x w``: ones but a 0 in the top-left cell, whose
    Eq. 13 box is the full image at every theta in ``[0, 1)`` (a constant map would give none:
    module docstring). ``h`` and ``w`` must be at least 2."""
    batch, h, w = _check_size(batch, h, w, 2)
    maps = torch.ones((batch, h, w), device=device, dtype=dtype)
    maps[:, 0, 0] = 0.0
    return maps


def center_gaussian_maps(batch: int, h: int, w: int, sigma: float = TrivialConfig.sigma,
                         device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """The centre-Gaussian baseline of Choe et al.: ``exp(-d^2 / (2 sigma^2))``.

    ``d`` is the distance, in map cells, from a cell's centre ``(i + 0.5, j + 0.5)`` to the
    map's centre ``(h / 2, w / 2)``; the peak value is 1 at the centre cell (odd sides) or
    shared by the central cells (even sides). Returns ``batch x h x w``, the same map for
    every image.
    """
    batch, h, w = _check_size(batch, h, w, 1)
    sigma = _check_sigma(sigma)
    y = torch.arange(h, device=device, dtype=torch.float64) + 0.5 - h / 2
    x = torch.arange(w, device=device, dtype=torch.float64) + 0.5 - w / 2
    d2 = y[:, None] ** 2 + x[None, :] ** 2
    gauss = torch.exp(-d2 / (2.0 * sigma**2)).to(dtype)
    return gauss.expand(batch, h, w).clone()
