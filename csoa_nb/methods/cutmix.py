"""CutMix: paste a box of another training image and mix the labels by its area.

Yun, Han, Oh, Chun, Choe and Yoo, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", ICCV 2019, Sec. 3.1 (Eq. 1-2). For a batch and a
random permutation ``pi`` of it, draw ``lambda ~ Beta(beta, beta)`` and a box ``r = (r_x, r_y,
r_w, r_h)`` with ``r_w = W sqrt(1 - lambda)``, ``r_h = H sqrt(1 - lambda)`` and its centre
uniform over the image (Eq. 2); the box is clipped to the image. The new image is
``x_i`` outside the box and ``x_pi(i)`` inside (Eq. 1), and its target is ``lambda y_i + (1 -
lambda) y_pi(i)`` with ``lambda`` recomputed as the exact share of the image left unpasted
(clipping shrinks the box), as in the authors' code. With one-hot targets the loss is
``lambda CE(logits, y_i) + (1 - lambda) CE(logits, y_pi(i))``.

As in the paper's ImageNet recipe and clovaai/wsolevaluation (``main.py``, ``wsol/method/
cutmix.py``), a batch is mixed with probability ``prob`` and otherwise left alone. Integer
sizes follow that code: the box sides are ``int(W sqrt(1 - lambda))`` and ``int(H sqrt(1 -
lambda))``, and the corners are ``centre -/+ side // 2``, clipped to the image.

As a method of the registry (`CUTMIX`, ``RunConfig.method = "cutmix"``): CAM's network, with
:func:`cutmix` as its training-time `augment` (:class:`CutMixSettings`:
``RunConfig.cutmix_beta``, ``cutmix_prob``),
whose targets are the mixed label distributions ``lambda onehot(y_i) + (1 - lambda)
onehot(y_pi(i))`` (:func:`mixed_targets`); CAM's cross-entropy against them is
:func:`cutmix_loss` (cross-entropy is linear in its target). Inference is CAM's (Eq. 13).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from csoa_nb.methods.cam import cam_losses
from csoa_nb.methods.settings import setting
from csoa_nb.methods.spec import MethodSpec, Parts

__all__ = ["CUTMIX", "CutMixSettings", "CutMixBatch", "cutmix", "cutmix_augment", "cutmix_loss",
           "mixed_targets"]


@dataclass(frozen=True)
class CutMixSettings:
    """Hyperparameters of CutMix (`RunConfig` fields of these names).

    Attributes:
        cutmix_beta: parameter of the symmetric Beta distribution of ``lambda``; 1.0 in the
            paper (``lambda`` uniform on ``[0, 1]``) and in wsolevaluation.
        cutmix_prob: probability that a batch is mixed; 1.0 in the paper's ImageNet
            experiments and in wsolevaluation (0.5 in its CIFAR ones).
    """

    cutmix_beta: float = setting(1.0, label="Beta parameter β")
    cutmix_prob: float = setting(1.0, label="mixing probability", search=(0.1, 0.25, 0.5, 1.0))

    def __post_init__(self) -> None:
        _check_params(self.cutmix_beta, self.cutmix_prob)


class CutMixBatch(NamedTuple):
    """The result of :func:`cutmix`.

    ``images`` are the mixed images; ``labels_a`` the original labels, ``labels_b`` those of
    the pasted images (``labels[index]``); ``lam`` the unpasted share of the image;
    ``box = (x0, y0, x1, y1)`` the pasted box in pixels (x1/y1 exclusive, DESIGN.md's
    convention; ``(0, 0, 0, 0)`` when nothing was pasted); ``index`` the permutation ``pi``.
    """

    images: Tensor
    labels_a: Tensor
    labels_b: Tensor
    lam: float
    box: tuple[int, int, int, int]
    index: Tensor


def _check_params(beta: object, prob: object) -> tuple[float, float]:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not float(beta) > 0:
        raise ValueError(f"CutMix beta must be a number > 0, got {beta!r}")
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not (
        0.0 <= float(prob) <= 1.0
    ):
        raise ValueError(f"CutMix prob must be a number in [0, 1], got {prob!r}")
    return float(beta), float(prob)


def _beta_sample(beta: float, generator: torch.Generator | None) -> float:
    """One draw of ``Beta(beta, beta)`` by NumPy, seeded from ``generator`` (torch's takes none)."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(beta, beta))


def cutmix(
    images: Tensor,
    labels: Tensor,
    beta: float = CutMixSettings.cutmix_beta,
    prob: float = CutMixSettings.cutmix_prob,
    generator: torch.Generator | None = None,
) -> CutMixBatch:
    """CutMix a batch (Yun et al., Eq. 1-2).

    Args:
        images: float tensor ``B x C x H x W``. Not modified.
        labels: integer tensor ``B``.
        beta: Beta parameter (> 0).
        prob: probability of mixing this batch.
        generator: CPU ``torch.Generator`` for every draw (``None``: the global one). The
            draws, in order: the mixing decision, ``lambda``, the permutation, the box centre.

    Returns:
        :class:`CutMixBatch`. When the batch is not mixed (or the box is empty) the images
        are a copy of the input, ``labels_b == labels_a`` and ``lam == 1``.

    Raises:
        ValueError: bad shapes, ``beta <= 0`` or ``prob`` outside ``[0, 1]``.
    """
    beta, prob = _check_params(beta, prob)
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor B x C x H x W, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if not isinstance(labels, Tensor) or labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be a tensor of shape ({images.shape[0]},), got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    b, _, h, w = images.shape
    identity = torch.arange(b, device=labels.device)
    if not bool(torch.rand((), generator=generator) < prob):
        return CutMixBatch(images.clone(), labels, labels, 1.0, (0, 0, 0, 0), identity)
    lam0 = _beta_sample(beta, generator)
    index = torch.randperm(b, generator=generator).to(labels.device)
    cut = math.sqrt(1.0 - lam0)
    cut_w, cut_h = int(w * cut), int(h * cut)
    cx = int(torch.randint(0, w, (), generator=generator))
    cy = int(torch.randint(0, h, (), generator=generator))
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    area = (x1 - x0) * (y1 - y0)
    if area == 0:
        return CutMixBatch(images.clone(), labels, labels, 1.0, (0, 0, 0, 0), identity)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[index.to(images.device), :, y0:y1, x0:x1]
    lam = 1.0 - area / (h * w)
    return CutMixBatch(mixed, labels, labels[index], lam, (x0, y0, x1, y1), index)


def cutmix_loss(logits: Tensor, labels_a: Tensor, labels_b: Tensor, lam: float) -> Tensor:
    """``lam * CE(logits, labels_a) + (1 - lam) * CE(logits, labels_b)`` (batch means)."""
    return lam * F.cross_entropy(logits, labels_a) + (1.0 - lam) * F.cross_entropy(
        logits, labels_b
    )


def mixed_targets(batch: CutMixBatch, num_classes: int) -> Tensor:
    """The targets of a CutMix batch: ``lam onehot(labels_a) + (1 - lam) onehot(labels_b)``,
    float ``B x num_classes`` (each row sums to 1)."""
    one_a = F.one_hot(batch.labels_a.long(), num_classes).float()
    one_b = F.one_hot(batch.labels_b.long(), num_classes).float()
    return batch.lam * one_a + (1.0 - batch.lam) * one_b


def cutmix_augment(
    images: Tensor, labels: Tensor, generator: torch.Generator, settings: CutMixSettings,
    num_classes: int,
) -> tuple[Tensor, Tensor]:
    """CutMix's `augment` hook: :func:`cutmix` with the run's ``cutmix_beta`` and
    ``cutmix_prob``; the targets are :func:`mixed_targets` over the run's ``num_classes``."""
    batch = cutmix(images, labels, settings.cutmix_beta, settings.cutmix_prob, generator)
    return batch.images, mixed_targets(batch, num_classes)


CUTMIX = MethodSpec(
    key="cutmix",
    label="CutMix",
    color="#393b79",
    parts=Parts(),
    losses=cam_losses,
    summary="CAM trained on CutMix batches, label-mixed cross-entropy (Yun et al., ICCV 2019)",
    settings=CutMixSettings,
    augment=cutmix_augment,
)
