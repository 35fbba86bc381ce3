"""ACoL: adversarial complementary learning with two classifier branches.

Zhang, Wei, Feng, Yang and Huang, "Adversarial Complementary Learning for Weakly Supervised
Object Localization", CVPR 2018, Sec. 3 (Fig. 2). Two classifiers, A and B, read the same
backbone features. The class activation map of branch A (for the ground-truth class in
training) is normalised to ``[0, 1]``; the feature positions where it reaches the threshold
``delta`` are erased (set to zero) in the features that branch B receives. B must then classify
from the regions A did not use. Both branches are trained with cross-entropy (Sec. 3.2:
``loss = CE(A) + CE(B)``), and the localization map is the elementwise maximum of the two
branches' normalised maps (Sec. 3.3).

Details follow the reference code of Choe et al. (clovaai/wsolevaluation, ``wsol/method/
acol.py``): the CAM of branch A is min-max normalised per image before thresholding, the
erasure keeps positions with ``map < delta`` (a map value equal to ``delta`` is erased), the
erasure mask carries no gradient, and without labels (inference) branch A's predicted class
drives the erasure. Each branch here is the project's :class:`csoa_nb.models.CAMHead` (two 3x3
convolutions and a 1x1 classifier, the head shape ACoL and wsolevaluation use on VGG16), whose
output is the CAM and whose global average gives the logits (CAM's Eq. 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csoa_nb.localize import normalize_cam
from csoa_nb.models import CAMHead, cam_logits

__all__ = [
    "ACoLConfig",
    "ACoLOutput",
    "ACoLHead",
    "erase_high_activation",
    "acol_loss",
    "acol_map",
]


@dataclass(frozen=True)
class ACoLConfig:
    """Hyperparameters of ACoL.

    Attributes:
        delta: erasing threshold on branch A's normalised map. The paper's ablation over
            ``delta`` in {0.5, ..., 0.9} settles on 0.6; clovaai/wsolevaluation defaults to 0.7
            and searches it.
    """

    delta: float = 0.6

    def __post_init__(self) -> None:
        _check_delta(self.delta)


class ACoLOutput(NamedTuple):
    """What :class:`ACoLHead` returns: logits ``B x C`` and raw CAMs ``B x C x h x w``."""

    logits_a: Tensor
    logits_b: Tensor
    cams_a: Tensor
    cams_b: Tensor


def _check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not (
        0.0 <= float(delta) <= 1.0
    ):
        raise ValueError(f"delta must be a number in [0, 1] (a fraction of the map's range), "
                         f"got {delta!r}")
    return float(delta)


def _gather(cams: Tensor, labels: Tensor) -> Tensor:
    """``cams[b, labels[b]]`` for every ``b``: ``B x h x w``."""
    return cams[torch.arange(cams.shape[0], device=cams.device), labels]


def _check_labels(labels: object, batch: int, num_classes: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.shape != (batch,) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({batch},), got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    if batch and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got min "
                         f"{int(labels.min())}, max {int(labels.max())}")
    return labels.long()


def erase_high_activation(features: Tensor, cam: Tensor, delta: float) -> Tensor:
    """Erase from ``features`` where the normalised ``cam`` reaches ``delta`` (ACoL, Sec. 3.2).

    Args:
        features: float tensor ``B x K x h x w``, the input of both branches.
        cam: float tensor ``B x h x w``, branch A's raw CAM of one class per image.
        delta: threshold in ``[0, 1]`` on ``normalize_cam(cam)`` (per-image min-max).

    Returns:
        ``features * mask`` with ``mask[b, i, j] = 0`` where the normalised map is ``>= delta``
        and 1 elsewhere, shared by all K channels. The mask is computed without gradient; the
        gradient still flows through the kept features. A constant map normalises to zeros
        and erases nothing (for ``delta > 0``).

    Raises:
        ValueError: shapes that do not match, or ``delta`` outside ``[0, 1]``.
    """
    delta = _check_delta(delta)
    if features.ndim != 4 or cam.ndim != 3 or cam.shape != (
        features.shape[0], *features.shape[2:]
    ):
        raise ValueError(
            f"features must be B x K x h x w and cam B x h x w of the same B, h, w; got "
            f"features {tuple(features.shape)}, cam {tuple(cam.shape)}"
        )
    with torch.no_grad():
        keep = normalize_cam(cam.detach()) < delta
    return features * keep[:, None].to(features.dtype)


class ACoLHead(nn.Module):
    """The two classifiers of ACoL on a shared feature map (Sec. 3.1).

    Args:
        in_channels: K, channels of the feature map.
        num_classes: C.
        width: units of each branch's two 3x3 convolutions (1024 in ACoL's VGG16).
        delta: erasing threshold, see :class:`ACoLConfig`.

    ``forward(features, labels=None)``: branch A on ``features``; its CAM of ``labels`` (or,
    when ``labels`` is ``None``, of its own predicted class) erases ``features`` for branch B
    (:func:`erase_high_activation`). Returns :class:`ACoLOutput`.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 1024,
                 delta: float = ACoLConfig.delta) -> None:
        super().__init__()
        self.delta = _check_delta(delta)
        self.num_classes = num_classes
        self.branch_a = CAMHead(in_channels, num_classes, width)
        self.branch_b = CAMHead(in_channels, num_classes, width)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> ACoLOutput:
        cams_a = self.branch_a(features)
        logits_a = cam_logits(cams_a)
        if labels is None:
            labels = logits_a.argmax(dim=1)
        labels = _check_labels(labels, features.shape[0], self.num_classes)
        erased = erase_high_activation(features, _gather(cams_a, labels), self.delta)
        cams_b = self.branch_b(erased)
        return ACoLOutput(logits_a, cam_logits(cams_b), cams_a, cams_b)

    def extra_repr(self) -> str:
        return f"delta={self.delta}"


def acol_loss(output: ACoLOutput, labels: Tensor) -> Tensor:
    """ACoL's training loss (Sec. 3.2): ``CE(logits_a, y) + CE(logits_b, y)``, batch means."""
    return F.cross_entropy(output.logits_a, labels) + F.cross_entropy(output.logits_b, labels)


def acol_map(cams_a: Tensor, cams_b: Tensor, labels: Tensor) -> Tensor:
    """ACoL's localization map (Sec. 3.3): ``max(norm(A_y), norm(B_y))``, ``B x h x w``.

    Args:
        cams_a, cams_b: raw CAMs ``B x C x h x w`` of the two branches.
        labels: the class per image (ground truth, or the prediction at test time), ``B``.

    Returns:
        Float tensor ``B x h x w`` in ``[0, 1]``: each branch's map of ``labels`` min-max
        normalised per image (:func:`csoa_nb.localize.normalize_cam`), then the elementwise
        maximum. Like ``csoa_nb.localize.fuse_cams``, thresholding it at ``theta`` is the union
        of the two thresholded maps.
    """
    if cams_a.shape != cams_b.shape or cams_a.ndim != 4:
        raise ValueError(f"cams_a and cams_b must both be B x C x h x w, got "
                         f"{tuple(cams_a.shape)} and {tuple(cams_b.shape)}")
    labels = _check_labels(labels, cams_a.shape[0], cams_a.shape[1])
    return torch.maximum(normalize_cam(_gather(cams_a, labels)),
                         normalize_cam(_gather(cams_b, labels)))
