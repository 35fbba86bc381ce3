"""Post-hoc localization maps of a trained classifier: Grad-CAM, Grad-CAM++, Score-CAM.

The maps come from the ``grad-cam`` package (jacobgil/pytorch-grad-cam, imported as
``pytorch_grad_cam``); nothing here re-implements them. This module only adapts the project's
network and conventions to it:

* Grad-CAM: Selvaraju et al., ICCV 2017, Eq. 1-2: channel weights = spatial mean of the
  gradient of the class score with respect to the target layer's activations, map =
  ``ReLU(sum_k weight_k A_k)``.
* Grad-CAM++: Chattopadhay et al., WACV 2018, Eq. 19-20: the weights average only the
  positive gradients, each position scaled by second- and third-order terms.
* Score-CAM: Wang et al., CVPR 2020 workshops, Sec. 3: the weight of channel k is the class
  score (softmax over the channels' scores, as the library computes it) of the image masked
  by the upsampled, min-max normalised ``A_k``; no gradients.

For a network whose logits are the global average of a linear map of the target layer (CAM's
Eq. 1, e.g. the 1x1 classifier of :class:`csoa_nb.core.models.CAMHead` reading its last ReLU),
Grad-CAM's weights are exactly that classifier's weights divided by ``h * w``, so Grad-CAM at
that layer is ``ReLU(CAM_c - b_c)`` divided by ``h * w`` (Selvaraju et al., Sec. 3.1): the
classifier's bias ``b_c`` is in CAM but not in the weighted sum, so the two maps differ by that
constant before the ReLU, which can move where the ReLU cuts, not only a scale. The default target
layer for :class:`csoa_nb.core.models.CSoANet` is therefore the output of backbone block 5, the
input of W_L, where the head's two convolutions make the maps differ from CAM.

What the maps are: the library returns each map after a ReLU, min-max normalised to ``[0,
1]`` per image and resized (bilinear, OpenCV) to the input size; it exposes no unnormalised
map. :func:`posthoc_maps` returns exactly that, ``B x H x W``. For the project's pipeline this
is the same as a raw map: Eq. 13 (``csoa_nb.core.localize.csoa_box``) and the threshold sweeps
min-max normalise first, which leaves such a map unchanged (up to the library's ``1e-7`` in
the denominator), and resizing an ``H x W`` map to ``H x W`` is the identity.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from csoa_nb.core.models import CSoANet

__all__ = ["POSTHOC_KINDS", "PosthocConfig", "LogitsOf", "default_target_layer", "posthoc_maps"]

#: the post-hoc methods, by the name used in configs.
POSTHOC_KINDS = ("gradcam", "gradcampp", "scorecam")


@dataclass(frozen=True)
class PosthocConfig:
    """Settings of the post-hoc maps.

    Attributes:
        kind: one of :data:`POSTHOC_KINDS`.
        scorecam_batch_size: masked images per forward pass of Score-CAM (the library's
            default is 16; Score-CAM runs one pass per channel of the target layer per image).
    """

    kind: str = "gradcam"
    scorecam_batch_size: int = 16

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        if (isinstance(self.scorecam_batch_size, bool)
                or not isinstance(self.scorecam_batch_size, int) or self.scorecam_batch_size < 1):
            raise ValueError(f"scorecam_batch_size must be an integer >= 1, got "
                             f"{self.scorecam_batch_size!r}")


def _check_kind(kind: object) -> str:
    if kind not in POSTHOC_KINDS:
        raise ValueError(f"unknown post-hoc map kind {kind!r}: choose one of "
                         f"{', '.join(POSTHOC_KINDS)}")
    return kind  # type: ignore[return-value]


class LogitsOf(nn.Module):
    """Wrap a :class:`csoa_nb.core.models.CSoANet`, whose forward returns a ``CSoAOutput``, into
    a classifier returning ``logits_last`` (``B x C``), the form the library needs."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(x)
        return out.logits_last if hasattr(out, "logits_last") else out


def default_target_layer(net: CSoANet) -> nn.Module:
    """The layer whose output the maps weight: backbone block 5 of ``net`` (W_L's input)."""
    if not isinstance(net, CSoANet):
        raise ValueError(f"default_target_layer needs a csoa_nb.core.models.CSoANet, got "
                         f"{type(net).__name__}; pass target_layer explicitly")
    return net.backbone.stages[-1]


def _library_class(kind: str) -> type:
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        raise ImportError(
            "csoa_nb.methods.posthoc needs the grad-cam package (import pytorch_grad_cam): "
            "pip install 'grad-cam>=1.5.7' (or reinstall the project: pip install -e .)"
        ) from exc
    return {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "scorecam": ScoreCAM}[kind]


def posthoc_maps(
    model: nn.Module,
    target_layer: nn.Module,
    images: Tensor,
    labels: Tensor,
    kind: str = "gradcam",
    scorecam_batch_size: int = PosthocConfig.scorecam_batch_size,
) -> Tensor:
    """Grad-CAM / Grad-CAM++ / Score-CAM maps of ``labels`` from the ``grad-cam`` package.

    Args:
        model: the classifier, images ``B x 3 x H x W`` -> logits ``B x C``; a
            :class:`csoa_nb.core.models.CSoANet` is wrapped in :class:`LogitsOf` here.
        target_layer: a module inside ``model`` whose output ``B x K x h x w`` is weighted
            (e.g. :func:`default_target_layer`).
        images: float tensor ``B x 3 x H x W`` on the model's device.
        labels: integer tensor ``B``, the class per image (ground truth or prediction).
        kind: one of :data:`POSTHOC_KINDS`.
        scorecam_batch_size: Score-CAM's masked images per forward pass.

    Returns:
        Float32 tensor ``B x H x W`` on ``images``' device, the library's maps: ReLU, per-image
        min-max normalised to ``[0, 1]``, resized to the input size (see the module
        docstring). The model is run in ``eval()`` mode and its mode is restored afterwards;
        its parameters' ``.grad`` are ``None`` afterwards (the library zeroes them anyway).

    Raises:
        ValueError: unknown ``kind``, bad shapes, or labels outside the model's classes.
    """
    kind = _check_kind(kind)
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor B x 3 x H x W, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if not isinstance(labels, Tensor) or labels.shape != images.shape[:1] or (
        labels.is_floating_point()
    ):
        raise ValueError(f"labels must be an integer tensor of shape ({images.shape[0]},), got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    if not any(m is target_layer for m in model.modules()):
        raise ValueError(f"target_layer ({type(target_layer).__name__}) is not a module of the "
                         "model: pass one of model.modules(), e.g. default_target_layer(net)")
    classifier = LogitsOf(model) if isinstance(model, CSoANet) else model
    was_training = model.training
    with torch.no_grad():
        num_classes = classifier.eval()(images[:1]).shape[-1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (the model's classes), got "
                         f"min {int(labels.min())}, max {int(labels.max())}")

    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(c)) for c in labels.tolist()]
    cam = _library_class(kind)(model=classifier, target_layers=[target_layer])
    if kind == "scorecam":
        cam.batch_size = scorecam_batch_size
    # Not ``with cam:``: the library's __exit__ swallows an IndexError and returns nothing.
    try:
        with torch.enable_grad():
            if kind == "scorecam":  # one tqdm bar per image on stderr: keep the output clean
                with contextlib.redirect_stderr(io.StringIO()):
                    maps = cam(input_tensor=images, targets=targets)
            else:
                maps = cam(input_tensor=images, targets=targets)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return torch.from_numpy(maps).to(device=images.device, dtype=torch.float32)
