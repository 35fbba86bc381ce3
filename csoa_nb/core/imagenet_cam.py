"""Class activation maps of EfficientNet-Lite0's ImageNet classes (tensor in, tensor out).

EfficientNet-Lite0 (:mod:`csoa_nb.core.efficientnet`) ends like the networks of CAM (Zhou et
al., CVPR 2016): its last convolutional map ``F`` (``1280 x h x w``) is averaged over space and
a linear layer ``(W, b)`` gives the 1000 logits. Eq. 1 of the book, ``y^c = mean_ij S^c_ij``,
holds with

    S^c = sum_k W_ck F_k + b_c,

so ``S^c`` is this network's ``S_L`` of class ``c``: its class activation map, before any ReLU
(as CAM is), whose spatial mean is exactly the logit (``class_activation_maps``).
``imagenet_cams`` upsamples it to the image.

Score-CAM (Wang et al., CVPR 2020 workshops) costs one forward pass per channel of its target
layer per image; for several classes of one photo the passes are the same, only the class
whose score is read differs. ``score_cam_maps`` runs the ``grad-cam`` package's ScoreCAM once
per photo, records every logit of its masked images and gives each further class the
library's own weights, a softmax over the channels of that class's scores.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from csoa_nb.core.localize import upsample_cam

__all__ = [
    "IMAGENET_SHORT_SIDE",
    "class_activation_maps",
    "imagenet_cams",
    "imagenet_probabilities",
    "resize_short_side",
    "score_cam_maps",
    "top_k",
]

#: The short side, in pixels, the photos are resized to: EfficientNet-Lite0's training size.
IMAGENET_SHORT_SIDE = 224


def resize_short_side(image: Tensor, short_side: int = IMAGENET_SHORT_SIDE) -> Tensor:
    """An RGB image (``3 x H x W`` or ``B x 3 x H x W``, 0..255 values, uint8 or float)
    resized (bicubic, antialiased) so that its short side is ``short_side``, aspect kept: float
    0..255, ready for :func:`csoa_nb.core.efficientnet.imagenet_input`."""
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image of shape {tuple(image.shape)}: pass a (B x) 3 x H x W tensor")
    if short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")
    h, w = image.shape[-2:]
    scale = short_side / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    resized = F.interpolate(image.float(), size=size, mode="bicubic", align_corners=False,
                            antialias=True)
    return resized.clamp(0.0, 255.0)


def class_activation_maps(
    features: Tensor, weight: Tensor, bias: Tensor | None, classes: Sequence[int] | Tensor
) -> Tensor:
    """CAM (Eq. 1's ``S_L``) of ``classes`` from the last convolutional map ``features``
    (``B x K x h x w``) and the linear classifier after global average pooling (``weight``:
    ``C x K``; ``bias``: ``C`` or None): ``S^c = sum_k weight[c, k] * features[:, k] +
    bias[c]``, float ``B x n x h x w`` for ``n`` classes, in the order given. Its spatial mean
    is the logit of class ``c``."""
    if features.ndim != 4:
        raise ValueError(f"features of shape {tuple(features.shape)}: pass B x K x h x w")
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight of shape {tuple(weight.shape)} does not fit features with "
                         f"{features.shape[1]} channels: pass the C x K weight of the classifier")
    index = torch.as_tensor(classes, dtype=torch.long, device=weight.device).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= weight.shape[0]):
        raise ValueError(f"classes must lie in [0, {weight.shape[0] - 1}], got {index.tolist()}")
    maps = torch.einsum("nk,bkhw->bnhw", weight[index].to(features), features)
    if bias is not None:
        maps = maps + bias[index].to(features)[None, :, None, None]
    return maps


@torch.no_grad()
def imagenet_cams(
    model: nn.Module, x: Tensor, classes: Sequence[int] | Tensor, size: tuple[int, int]
) -> Tensor:
    """The CAM of each of ``classes`` for the images ``x`` (scaled by ``imagenet_input``), from
    an :class:`~csoa_nb.core.efficientnet.EfficientNetLite0` (``features`` and ``fc``),
    bilinearly upsampled to ``size = (H, W)``: raw values (not normalised), float
    ``B x n x H x W``."""
    cams = class_activation_maps(model.features(x), model.fc.weight, model.fc.bias, classes)
    b, n, h, w = cams.shape
    return upsample_cam(cams.reshape(b * n, h, w), size).reshape(b, n, *size)


@torch.no_grad()
def imagenet_probabilities(model: nn.Module, x: Tensor) -> Tensor:
    """The class probabilities (softmax of the logits) of the images ``x``, ``B x 1000``."""
    return model(x).softmax(dim=-1)


def top_k(model: nn.Module, x: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """The ``k`` most probable classes of each image: probabilities (``B x k``, decreasing)
    and class indices (``B x k``)."""
    return imagenet_probabilities(model, x).topk(k, dim=-1)


class _RecordingTarget:
    """A ``pytorch_grad_cam`` target: the score of ``category``, keeping every logit row it
    is shown (those of Score-CAM's masked images)."""

    def __init__(self, category: int) -> None:
        self.category = category
        self.rows: list[Tensor] = []

    def __call__(self, output: Tensor) -> Tensor:
        self.rows.append(output.detach().reshape(-1).cpu())
        return output[..., self.category]


def _score_cam_class(base: type) -> type:
    """The library's ScoreCAM whose masked-image logits are computed once and reused."""

    class ClassScoreCAM(base):  # type: ignore[misc, valid-type]
        logits: Tensor | None = None

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            (target,) = targets
            if self.logits is None:  # the library's own masking and forward passes, once
                recorder = _RecordingTarget(int(target.category))
                super().get_cam_weights(input_tensor, target_layer, [recorder], activations,
                                        grads)
                self.logits = torch.stack(recorder.rows)  # K x C
            scores = self.logits[:, int(target.category)]
            return torch.softmax(scores, dim=-1)[None].numpy()  # the library's last line

    return ClassScoreCAM


def score_cam_maps(
    model: nn.Module,
    target_layer: nn.Module,
    x: Tensor,
    classes: Sequence[int],
    batch_size: int = 32,
) -> Tensor:
    """Score-CAM maps of ``classes`` for one image ``x`` (``1 x 3 x h x w``), from the
    ``grad-cam`` package: float32 ``n x h x w``, each ReLU'd, min-max normalised to ``[0, 1]``
    and at the input's size, as the library returns them. The masked images (one per channel
    of ``target_layer``, ``batch_size`` per forward pass) run once for all the classes."""
    try:
        from pytorch_grad_cam import ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as error:  # pragma: no cover - the dependency is declared
        raise ImportError("score_cam_maps needs the grad-cam package (import pytorch_grad_cam): "
                          "pip install 'grad-cam>=1.5.7'") from error
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x of shape {tuple(x.shape)}: pass one image, 1 x 3 x h x w")
    if not any(m is target_layer for m in model.modules()):
        raise ValueError("target_layer is not a module of the model: pass one of "
                         "model.modules(), e.g. model.blocks[-1]")
    was_training = model.training
    cam = _score_cam_class(ScoreCAM)(model=model.eval(), target_layers=[target_layer])
    cam.batch_size = batch_size
    maps = []
    try:  # not ``with cam:``: the library's __exit__ swallows an IndexError
        with contextlib.redirect_stderr(io.StringIO()):  # the library's tqdm bar
            for c in classes:
                maps.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c))])[0])
    finally:
        cam.activations_and_grads.release()
        model.train(was_training)
    return torch.from_numpy(np.stack(maps)).float() if maps else x.new_zeros(0, *x.shape[-2:])
