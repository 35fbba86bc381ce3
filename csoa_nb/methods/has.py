"""Hide-and-Seek (HaS): hide random grid cells of the training images.

Singh and Lee, "Hide-and-Seek: Forcing a Network to be Meticulous for Weakly-supervised Object
and Action Localization", ICCV 2017, Sec. 3.1-3.2. Every training image is cut into a grid of
``S x S``-pixel patches and each patch is hidden, independently, with probability ``p_hide``;
the network then has to find evidence for the class in what is left, so its CAM spreads beyond
the most discriminative part. At test time the full image is used (nothing is hidden).

Hidden pixels are set to the mean pixel value of the training data (Sec. 3.2: this keeps the
expected activation of a first-layer filter the same in training and testing). Our images are
normalised with the ImageNet mean and std (``csoa_nb.data.transforms``), so the data mean is
``0`` in every channel: ``fill = 0.0``.

In the comparison of Choe et al. ("Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020; code clovaai/wsolevaluation) HaS is one of the five WSOL methods put under
one protocol; it changes only the input, so the network is the plain CAM network.

As a method of the registry (`HAS`, ``RunConfig.method = "has"``): CAM's network and loss
(cross-entropy on y_L, `csoa_nb.methods.cam`), with :func:`hide_patches` as its training-time
`augment` with its settings :class:`HaSSettings` (``RunConfig.has_grid_size``,
``has_hide_prob``); inference is CAM's (Eq. 13).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from csoa_nb.methods.cam import cam_losses
from csoa_nb.methods.settings import setting
from csoa_nb.methods.spec import MethodSpec, Parts

__all__ = ["HAS", "HaSSettings", "has_augment", "hide_patches", "hidden_cells"]


@dataclass(frozen=True)
class HaSSettings:
    """Hyperparameters of Hide-and-Seek (`RunConfig` fields of these names).

    Attributes:
        has_grid_size: side ``S`` of a square patch in input pixels (Sec. 3.1). The paper
            tries ``S`` in {16, 32, 44, 56} on ILSVRC (and a random mix of them);
            clovaai/wsolevaluation searches it per backbone. 32 is one of the paper's values.
        has_hide_prob: probability ``p_hide`` that a patch is hidden; 0.5 in the paper (and
            the default of wsolevaluation).

    Hidden pixels are set to 0, the training data's mean for ImageNet-normalised images
    (Sec. 3.2; :func:`hide_patches`' ``fill``).
    """

    has_grid_size: int = setting(32, label="patch side S, px", search=(8, 16, 32, 64))
    has_hide_prob: float = setting(0.5, label="hiding probability p_hide")

    def __post_init__(self) -> None:
        _check_grid(self.has_grid_size)
        _check_prob(self.has_hide_prob)


def _check_grid(grid_size: object) -> int:
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(
            f"grid_size must be a positive integer (patch side in pixels), got {grid_size!r}"
        )
    return grid_size


def _check_prob(hide_prob: object) -> float:
    if isinstance(hide_prob, bool) or not isinstance(hide_prob, (int, float)) or not (
        0.0 <= float(hide_prob) <= 1.0
    ):
        raise ValueError(f"hide_prob must be a number in [0, 1], got {hide_prob!r}")
    return float(hide_prob)


def hidden_cells(
    batch: int,
    height: int,
    width: int,
    grid_size: int,
    hide_prob: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Which grid cells Hide-and-Seek hides: bool tensor ``B x rows x cols``.

    The grid has ``rows = ceil(H / S)`` and ``cols = ceil(W / S)`` cells; the last row / column
    is narrower when ``S`` does not divide the image. Cell ``(b, r, c)`` is hidden exactly when
    ``u[b, r, c] < hide_prob`` for ``u = torch.rand(B, rows, cols, generator=generator)`` (on the
    CPU), so ``hide_prob = 0`` hides nothing and ``hide_prob = 1`` hides everything.
    """
    grid_size = _check_grid(grid_size)
    hide_prob = _check_prob(hide_prob)
    rows = -(-height // grid_size)
    cols = -(-width // grid_size)
    u = torch.rand((batch, rows, cols), generator=generator)
    return u < hide_prob


def hide_patches(
    images: Tensor,
    grid_size: int,
    hide_prob: float,
    generator: torch.Generator | None = None,
    fill: float = 0.0,
) -> Tensor:
    """Hide-and-Seek on a batch (Singh and Lee, Sec. 3.1): a new tensor whose hidden
    ``grid_size``-pixel cells (:func:`hidden_cells` of ``generator``, each image its own) are
    ``fill`` in every channel (0: the data mean after normalisation, Sec. 3.2).

    Raises:
        ValueError: ``images`` not a 4-dim float tensor; bad ``grid_size`` or ``hide_prob``.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = (f"a {images.ndim}-dim {images.dtype} tensor" if isinstance(images, Tensor)
               else type(images).__name__)
        raise ValueError(f"images must be a float tensor B x C x H x W, got {got}")
    b, _, h, w = images.shape
    cells = hidden_cells(b, h, w, grid_size, hide_prob, generator)
    pixels = cells.repeat_interleave(grid_size, dim=1).repeat_interleave(grid_size, dim=2)
    pixels = pixels[:, :h, :w].to(images.device)
    return images.masked_fill(pixels[:, None], float(fill))


def has_augment(
    images: Tensor, labels: Tensor, generator: torch.Generator, settings: HaSSettings,
    num_classes: int,
) -> tuple[Tensor, Tensor]:
    """HaS's `augment` hook: :func:`hide_patches` with the run's ``has_grid_size`` and
    ``has_hide_prob`` (fill 0, the data mean); the labels are unchanged."""
    hidden = hide_patches(images, settings.has_grid_size, settings.has_hide_prob, generator)
    return hidden, labels


HAS = MethodSpec(
    key="has",
    label="HaS",
    color="#8c564b",
    parts=Parts(),
    losses=cam_losses,
    summary="CAM trained on images with random grid cells hidden (Singh and Lee, ICCV 2017)",
    settings=HaSSettings,
    augment=has_augment,
)
