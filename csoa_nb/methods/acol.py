"""ACoL: adversarial complementary learning with two classifier branches.

Zhang, Wei, Feng, Yang and Huang, "Adversarial Complementary Learning for Weakly Supervised
Object Localization", CVPR 2018, Sec. 3 (Fig. 2). Two classifiers, A and B, read the same
backbone features. The class activation map of branch A (for the ground-truth class in
training) is normalised to ``[0, 1]``; the feature positions where it reaches the threshold
``delta`` are erased (set to zero) in the features that branch B receives. B must then classify
from the regions A did not use. Both branches are trained with cross-entropy (Sec. 3.2:
``loss = CE(A) + CE(B)``), and the localization map is the elementwise maximum of the two
branches' normalised maps (Sec. 3.3).

Details follow the reference code of Choe et al. (clovaai/wsolevaluation, ``wsol/vgg.py``
``VggAcol`` and ``wsol/method/acol.py``): the backbone's features are smoothed by a 3x3
stride-1 average pool (padding 1, `smooth_features`) before both branches; the CAM of branch A
is min-max normalised per image before thresholding, the erasure keeps positions with
``map < delta`` (a map value equal to ``delta`` is erased), the erasure mask carries no
gradient, and without labels (inference) branch A's predicted class drives the erasure. One
difference is ours: the backbone is the run's, shared with every method (its 2x2 stride-2 max
pools), where the reference's ACoL VGG16 uses 3x3 stride-2 max pools and stride-1 pools after
conv4_3 and conv5_3; the effect of that difference is not measured here.
Each branch here is the project's :class:`csoa_nb.core.models.CAMHead` (two 3x3
convolutions and a 1x1 classifier, the head shape ACoL and wsolevaluation use on VGG16), whose
output is the CAM and whose global average gives the logits (CAM's Eq. 1).

As a method of the registry (`ACOL`, ``RunConfig.method = "acol"``): :class:`ACoLNet`, the
run's backbone with an :class:`ACoLHead` (:class:`ACoLSettings`: ``RunConfig.acol_delta``) in
place of CAM's head (:func:`acol_model`). Its output is a :class:`csoa_nb.core.models.CSoAOutput`
whose ``cam_last`` is branch A and ``cam_feature`` branch B, so the evaluator's map
(``csoa_nb.core.localize.fuse_cams`` of the two, Eq. 13's union) is :func:`acol_map` computed at
image size, and Eq. 13 and every metric apply unchanged. Its ``logits_feature`` is None: the
class scores are branch A's, as in wsolevaluation. The ground-truth class drives the erasure in
training and in the evaluation of maps (`csoa_nb.engine.evaluate.collect_maps` passes it, as
wsolevaluation's evaluation does: the scored maps are the ground-truth class's); without
labels, branch A's prediction does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csoa_nb.core.backbones import Backbone
from csoa_nb.core.localize import normalize_cam
from csoa_nb.core.models import CAMHead, CSoANet, CSoAOutput, cam_logits
from csoa_nb.methods.settings import setting
from csoa_nb.methods.spec import MethodSpec, Parts

__all__ = [
    "ACOL",
    "ACoLSettings",
    "ACoLOutput",
    "ACoLHead",
    "ACoLNet",
    "acol_losses",
    "acol_model",
    "erase_high_activation",
    "smooth_features",
    "acol_loss",
    "acol_map",
]


@dataclass(frozen=True)
class ACoLSettings:
    """Hyperparameters of ACoL (`RunConfig` fields of these names).

    Attributes:
        acol_delta: erasing threshold on branch A's normalised map. The paper's ablation over
            ``delta`` in {0.5, ..., 0.9} settles on 0.6; clovaai/wsolevaluation defaults to 0.7
            and searches it.
    """

    acol_delta: float = setting(0.6, label="erasing threshold δ", search=(0.5, 0.6, 0.8, 0.9))

    def __post_init__(self) -> None:
        _check_delta(self.acol_delta)


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


def smooth_features(features: Tensor) -> Tensor:
    """The reference ACoL's 3x3 stride-1 average pool (padding 1, zeros counted), same shape."""
    return F.avg_pool2d(features, kernel_size=3, stride=1, padding=1)


def erase_high_activation(features: Tensor, cam: Tensor, delta: float) -> Tensor:
    """Zero ``features`` (``B x K x h x w``) where branch A's raw ``cam`` (``B x h x w``),
    min-max normalised per image, is ``>= delta`` (ACoL, Sec. 3.2). The mask carries no
    gradient and a constant map erases nothing (for ``delta > 0``).

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
        delta: erasing threshold, see :class:`ACoLSettings`.

    ``forward(features, labels=None)``: the features smoothed (:func:`smooth_features`);
    branch A on them; its CAM of ``labels`` (or, when ``labels`` is ``None``, of its own
    predicted class) erases them for branch B (:func:`erase_high_activation`). Returns
    :class:`ACoLOutput`.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 1024,
                 delta: float = ACoLSettings.acol_delta) -> None:
        super().__init__()
        self.delta = _check_delta(delta)
        self.num_classes = num_classes
        self.branch_a = CAMHead(in_channels, num_classes, width)
        self.branch_b = CAMHead(in_channels, num_classes, width)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> ACoLOutput:
        features = smooth_features(features)
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
    """ACoL's localization map (Sec. 3.3): ``max(norm(A_y), norm(B_y))``, ``B x h x w`` in [0, 1].

    ``y`` is ``labels`` (ground truth, or the prediction at test time), ``norm`` a per-image
    min-max; as with ``fuse_cams``, thresholding it at theta is the union of the two
    thresholded maps.
    """
    if cams_a.shape != cams_b.shape or cams_a.ndim != 4:
        raise ValueError(f"cams_a and cams_b must both be B x C x h x w, got "
                         f"{tuple(cams_a.shape)} and {tuple(cams_b.shape)}")
    labels = _check_labels(labels, cams_a.shape[0], cams_a.shape[1])
    return torch.maximum(normalize_cam(_gather(cams_a, labels)),
                         normalize_cam(_gather(cams_b, labels)))


class ACoLNet(nn.Module):
    """ACoL's network: a backbone and an :class:`ACoLHead` on its block-5 map.

    ``forward(x, labels=None)`` returns a :class:`csoa_nb.core.models.CSoAOutput`: ``logits_last``
    and ``cam_last`` are branch A's, ``cam_feature`` is branch B's CAM, ``logits_feature`` is
    None (the class scores are branch A's). The head is named ``head_last`` so that it gets
    the heads' learning rate (``RunConfig.head_lr_mult``).
    """

    def __init__(self, backbone: Backbone, head: ACoLHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_last = head

    def forward(self, x: Tensor, labels: Tensor | None = None) -> CSoAOutput:
        out = self.head_last(self.backbone(x)[-1], labels)
        return CSoAOutput(out.logits_a, None, out.cams_a, out.cams_b)


def acol_model(settings: ACoLSettings, net: CSoANet) -> ACoLNet:
    """ACoL's `model` hook: ``net``'s backbone (and the weights it loaded) with an
    :class:`ACoLHead` of ``net``'s classes, its head width and ``settings.acol_delta`` on its
    last block; the plain network's own heads are dropped."""
    width = net.head_last.layers[0].out_channels
    head = ACoLHead(net.backbone.channels[-1], net.num_classes, width, settings.acol_delta)
    return ACoLNet(net.backbone, head)


def acol_losses(
    settings: ACoLSettings,
    out: CSoAOutput,
    images: Tensor,
    labels: Tensor,
    alpha: float,
    embed_net: nn.Module | None,
) -> dict[str, Tensor]:
    """ACoL's loss terms (Sec. 3.2, :func:`acol_loss`): ``cls_last`` = CE(branch A),
    ``cls_b`` = CE(branch B, logits the global average of its CAM), ``total`` their sum."""
    if out.cam_feature is None:
        raise ValueError("method 'acol' needs branch B's CAM (cam_feature): build the network "
                         "with its model hook (csoa_nb.methods.acol.acol_model)")
    ce_a = F.cross_entropy(out.logits_last, labels)
    ce_b = F.cross_entropy(cam_logits(out.cam_feature), labels)
    return {"cls_last": ce_a, "cls_b": ce_b, "total": ce_a + ce_b}


ACOL = MethodSpec(
    key="acol",
    label="ACoL",
    color="#e377c2",
    parts=Parts(two_heads=True),
    losses=acol_losses,
    summary="two branches, B reads the features A's CAM leaves (Zhang et al., CVPR 2018)",
    settings=ACoLSettings,
    model=acol_model,
    version=2,  # 2: the reference's 3x3 average pool before both branches; 1: raw features
)
