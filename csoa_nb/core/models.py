"""Networks of CSoA: the CAM classifiers W_F / W_L, the network, and the embedding W_E.

Paper: Kou et al., "Improve CAM with Auto-adapted Segmentation and Co-supervised
Augmentation", WACV 2021.

* :class:`CSoANet` puts W_L (:class:`CAMHead`) after block 5 of a backbone
  (``csoa_nb.core.backbones``) and W_F after ``feature_block`` (Sec. 3.1 and 4.1; Table 2
  compares blocks 3, 4, 5).
* Each head turns a feature map into a class activation map S (``B x C x h x w``) and the
  logits are its global average (Eq. 1).
* :class:`EmbeddingNet` is W_E of CoAug (Eq. 8, 10): an image (or a CAM-weighted image) to a
  vector; the paper uses AlexNet features. ``"efficientnet_lite0"`` is an ImageNet-trained
  W_E too: EfficientNet-Lite0's features (``csoa_nb.core.efficientnet``), at its own stride 32.

Weights are read from local files only (``csoa_nb.core.backbones``); nothing here downloads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from csoa_nb.base.checks import check_choice
from csoa_nb.core.backbones import (
    BACKBONES,
    LITE0,
    NUM_BLOCKS,
    Backbone,
    Lite0Input,
    check_width,
    conv_bn_relu,
    init_convs,
    lite0_modules,
    load_lite0_file,
    load_strict,
    read_state,
    subdict,
    weights_file,
)

__all__ = [
    "EMBEDDINGS",
    "PAPER_HEAD_WIDTH",
    "CSoAOutput",
    "CAMHead",
    "cam_logits",
    "CSoANet",
    "EmbeddingNet",
    "fold_batchnorms",
    "pool_before_relu",
]

EMBEDDINGS = ("alexnet", "slim", LITE0)

PAPER_HEAD_WIDTH = 1024  # Sec. 4.1: "two convolutional layers ... with 1024 units"


class CSoAOutput(NamedTuple):
    """What :class:`CSoANet` returns: logits (Eq. 1) and raw CAMs S_L, S_F (``B x C x h x w``).

    In baseline mode (one classifier) ``logits_feature`` and ``cam_feature`` are ``None``. ACoL
    (``csoa_nb.methods.acol``) gives ``cam_feature`` (its branch B) without ``logits_feature``:
    the class scores (``csoa_nb.engine.evaluate.class_probabilities``) are then y_L's alone.
    """

    logits_last: Tensor
    logits_feature: Tensor | None
    cam_last: Tensor
    cam_feature: Tensor | None


# --------------------------------------------------------------------------------------------
# heads and the network


class CAMHead(nn.Module):
    """The classifier W_F / W_L of Sec. 4.1, producing a class activation map.

    conv3x3(in, width, pad 1) - ReLU - conv3x3(width, width, pad 1) - ReLU -
    conv1x1(width, num_classes). ``forward`` returns the CAM S (``B x C x h x w``, same size
    as its input map); the logits are its global average, ``y^c = mean_ij S^c_ij`` (Eq. 1).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1:
            raise ValueError(
                f"CAMHead needs positive sizes, got in_channels={in_channels}, "
                f"num_classes={num_classes}, width={width}"
            )
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes, 1),
        )
        for m in self.layers:
            if isinstance(m, nn.Conv2d):
                nn.init.zeros_(m.bias)
                if m.kernel_size == (1, 1):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def cam_logits(cam: Tensor) -> Tensor:
    """Eq. 1: the logits are the global average of each CAM channel (``B x C``)."""
    return cam.mean(dim=(-2, -1))


class CSoANet(nn.Module):
    """The CSoA network (Fig. 2): a backbone with W_F after block ``feature_block`` and W_L
    after block 5, each producing a CAM whose global average gives logits (Eq. 1).

    Args:
        backbone: one of :data:`BACKBONES`.
        num_classes: C >= 1.
        feature_block: block (1-5) after which W_F sits; 4 is the paper's choice, 5 gives
            CSoA-5-5 of Table 2 (W_F and W_L read the same map).
        weights: ``None`` (random init), a local file, or a torchvision weights enum (or its
            name, e.g. ``"VGG16_Weights.IMAGENET1K_V1"``) looked up in
            ``torch.hub.get_dir()/checkpoints`` (never downloaded). See
            :meth:`Backbone.load_weights`. Heads are always freshly initialised.
        baseline: the paper's "VGGnet-base": W_L only; ``cam_feature``/``logits_feature`` are
            ``None``.
        head_width: units of the two 3x3 head convolutions; default 1024 (paper) for vgg16,
            inception_v3 and efficientnet_lite0, ``8 * slim_width`` for vgg_slim.
        slim_width: base width w of vgg_slim.

    ``forward(x, labels=None)`` returns a :class:`CSoAOutput` with the raw (unnormalised) CAMs;
    ``labels`` is unused (the trainer passes them to every method's network; ACoL's reads
    them, ``csoa_nb.methods.acol``).
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        feature_block: int = 4,
        weights: str | Path | None = None,
        baseline: bool = False,
        head_width: int | None = None,
        slim_width: int = 16,
    ) -> None:
        super().__init__()
        check_choice("backbone", backbone, BACKBONES)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if (isinstance(feature_block, bool) or not isinstance(feature_block, int)
                or not 1 <= feature_block <= NUM_BLOCKS):
            raise ValueError(f"feature_block must be one of 1, 2, 3, 4, 5, got {feature_block!r}")
        check_width(slim_width)
        if head_width is None:
            head_width = 8 * slim_width if backbone == "vgg_slim" else PAPER_HEAD_WIDTH
        if head_width < 1:
            raise ValueError(f"head_width must be >= 1, got {head_width}")
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.feature_block = feature_block
        self.baseline = baseline
        self.backbone = Backbone(backbone, slim_width)
        if weights is not None:
            self.backbone.load_weights(weights)
        channels = self.backbone.channels
        self.head_last = CAMHead(channels[-1], num_classes, head_width)
        self.head_feature = (
            None if baseline else CAMHead(channels[feature_block - 1], num_classes, head_width)
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> CSoAOutput:
        maps = self.backbone(x)
        cam_last = self.head_last(maps[-1])
        if self.head_feature is None:
            return CSoAOutput(cam_logits(cam_last), None, cam_last, None)
        cam_feature = self.head_feature(maps[self.feature_block - 1])
        return CSoAOutput(cam_logits(cam_last), cam_logits(cam_feature), cam_last, cam_feature)


# --------------------------------------------------------------------------------------------
# embedding network of CoAug


class EmbeddingNet(nn.Module):
    """W_E of CoAug (Eq. 8 and 10): images ``B x 3 x H x W`` -> vectors ``B x out_dim``.

    * ``"alexnet"`` (paper, Sec. 4.1: "we apply Alexnet as the feature extractor"):
      torchvision AlexNet ``features`` + global average pooling -> 256-d. Needs H, W >= 63.
      ``weights``: torchvision's ``alexnet-owt-7be5be79.pth`` (or ``"AlexNet_Weights.
      IMAGENET1K_V1"`` from the hub cache); ``classifier.*`` keys are ignored.
    * ``"slim"``: four conv3x3 + BatchNorm + ReLU layers of widths w, 2w, 4w, 8w, each of the
      first three followed by a 2x2 max-pool, then global average pooling -> 8w-d.
    * ``"efficientnet_lite0"``: EfficientNet-Lite0's features at output stride 32 (as trained;
      ``Lite0Input`` first, so it reads ImageNet mean/std images as the backbones do) + global
      average pooling -> 1280-d: the input of its ImageNet classifier. ``weights``:
      ``"efficientnet_lite0"`` (the installed package's ImageNet weights) or a file in their
      naming (``_fc.*`` ignored).

    A file may also be a dict ``{"embedding": state dict of this module}`` (what the
    pretraining step writes) or such a state dict itself (keys ``features.*``).
    """

    def __init__(self, kind: str = "alexnet", weights: str | Path | None = None,
                 slim_width: int = 16) -> None:
        super().__init__()
        check_choice("embedding", kind, EMBEDDINGS)
        self.kind = kind
        self.frozen = False
        if kind == "alexnet":
            from torchvision.models import alexnet

            self.features = alexnet(weights=None).features
            self.out_dim = 256
        elif kind == LITE0:
            # keys stem.* / blocks.N.* / head.*: EfficientNetLite0's, which the file maps to
            modules = lite0_modules(output_stride=32)
            self.features = nn.Sequential(
                OrderedDict([("input", Lite0Input()), *modules.named_children()]))
            self.out_dim = modules.head[0].out_channels
        else:
            check_width(slim_width)
            w = slim_width
            widths = (3, w, 2 * w, 4 * w, 8 * w)
            layers: list[nn.Module] = []
            for k in range(4):
                layers += conv_bn_relu(widths[k], widths[k + 1])
                if k < 3:
                    layers.append(nn.MaxPool2d(2, 2))
            self.features = nn.Sequential(*layers)
            init_convs(self.features)
            self.out_dim = 8 * w
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, weights: object) -> Path:
        """Load ``features`` weights from a local file or enum name (see the class doc)."""
        net = "slim embedding" if self.kind == "slim" else self.kind
        if self.frozen:
            raise RuntimeError(f"load the {net} weights before freeze(): its BatchNorms are "
                               "folded into the convolutions")
        path = weights_file(weights, net)
        expected = "keys 'features.N.weight/bias' (or a dict with key 'embedding')"
        state = read_state(path, net, expected)
        if "embedding" in state and isinstance(state["embedding"], Mapping):
            state = state["embedding"]
        elif self.kind == LITE0 and "_conv_stem.weight" in state:
            load_lite0_file(self.features, state, path, net)
            return path
        load_strict(self.features, subdict(state, "features."), path, net, expected,
                     "features.")
        return path

    def freeze(self) -> EmbeddingNet:
        """Make this W_E the frozen embedding of CoAug (call it after loading weights).

        Eval mode and no parameter gradients (gradients still flow to the input, which is how
        L_D reaches the CAM); every BatchNorm is folded into the convolution before it, nested
        ones too (Lite0's; in eval mode a BatchNorm is an affine map per channel, so the output
        is the same up to float rounding) and the layers run channels-last. The narrow
        convolutions of the slim W_E are memory-bound in NCHW on a CPU; folding and NHWC cut a
        CSoA training step at the cpu preset by about a fifth (``bench/step_time.py``). Returns
        ``self``.
        """
        self.features = pool_before_relu(fold_batchnorms(self.features))
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        self.frozen = True
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.frozen:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.frozen and self.kind == LITE0 and x.device.type == "cpu":
            # float32 even under bf16 autocast: on a CPU its depthwise convolutions and their
            # input gradients take twice as long in bf16 (bench/README.md, step_time.py)
            with torch.autocast("cpu", enabled=False):
                return F.adaptive_avg_pool2d(self.features(x.float()), 1).flatten(1)
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


def pool_before_relu(module: nn.Module) -> nn.Module:
    """``module`` with each ReLU that a MaxPool2d follows in a Sequential moved after the pool.

    ``maxpool(relu(x)) == relu(maxpool(x))`` (ReLU is monotone), and the gradient to ``x`` is
    the same too: both pick the same window element, and where a window's maximum is <= 0 both
    pass no gradient. The ReLU and its backward then run on a quarter of the pixels (the slim
    W_E's widest layer is the first). Names are kept; in place, returns ``module``."""
    for child in module.children():
        pool_before_relu(child)
    if not isinstance(module, nn.Sequential):
        return module
    names = list(module._modules)
    for first, second in zip(names, names[1:], strict=False):
        if isinstance(module._modules[first], nn.ReLU) and isinstance(
                module._modules[second], nn.MaxPool2d):
            module._modules[first], module._modules[second] = (module._modules[second],
                                                               module._modules[first])
    return module


def fold_batchnorms(module: nn.Module) -> nn.Module:
    """``module`` with each BatchNorm2d that follows a Conv2d in a Sequential folded into that
    convolution (``fuse_conv_bn_eval``), in every Sequential inside it too; names are kept and
    a Sequential subclass (Lite0's ``ConvBN``) becomes a plain Sequential."""
    for name, child in list(module.named_children()):
        setattr(module, name, fold_batchnorms(child))
    if not isinstance(module, nn.Sequential):
        return module
    kept: list[tuple[str, nn.Module]] = []
    for name, layer in module.named_children():
        if isinstance(layer, nn.BatchNorm2d) and kept and isinstance(kept[-1][1], nn.Conv2d):
            kept[-1] = (kept[-1][0], fuse_conv_bn_eval(kept[-1][1].eval(), layer.eval()))
        else:
            kept.append((name, layer))
    return nn.Sequential(OrderedDict(kept))
