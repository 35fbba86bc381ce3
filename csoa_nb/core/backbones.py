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
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from csoa_nb.base.checks import check_choice

__all__ = [
    "BACKBONES",
    "NUM_BLOCKS",
    "Backbone",
    "backbone_channels",
    "backbone_strides",
    "is_weights_name",
    "weights_file",
]

BACKBONES = ("vgg16", "inception_v3", "vgg_slim")

NUM_BLOCKS = 5

_VGG16_CHANNELS = (64, 128, 256, 512, 512)
_INCEPTION_CHANNELS = (64, 192, 288, 768, 768)
_SLIM_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
_STRIDES = {
    # vgg16: pools after blocks 1-3 kept, after blocks 4 and 5 dropped (same-size W_F / W_L).
    "vgg16": (2, 4, 8, 8, 8),
    # inception_v3 (nominal; its convs are unpadded): Conv2d_1a + maxpool1, maxpool2, Mixed_6a.
    "inception_v3": (4, 8, 8, 16, 16),
    # vgg_slim: pools after blocks 1 and 2 only (64 px -> 16 x 16 maps at blocks 3-5).
    "vgg_slim": (2, 4, 4, 4, 4),
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


def is_weights_name(value: str) -> bool:
    """Whether `value` is a torchvision weights enum name, not a path (an existing file is one)."""
    return bool(_ENUM_NAME.fullmatch(value)) and not Path(value).exists()


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
        # load torchvision's state-dict keys (features.N.* / Mixed_5b.*) into the shared modules.
        object.__setattr__(self, "_torchvision_source", source)

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
        ignored), loaded strictly into the kept modules; for vgg_slim also a plain state dict
        of this module (optionally with the ``backbone.`` prefix of a whole CSoANet).
        Returns the path read.
        """
        path = _resolve_weights(weights, self.name)
        if self.name == "vgg16":
            expected = "torchvision VGG16 keys 'features.N.weight/bias' (or a 'backbone' dict)"
        elif self.name == "inception_v3":
            expected = "torchvision Inception-v3 keys 'Conv2d_1a_3x3.*' ... 'Mixed_6e.*'"
        else:
            expected = (f"a dict {{'backbone': state dict with keys 'stages.K.N.weight'}} of a "
                        f"vgg_slim backbone with channels {self.channels}")
        state = read_state(path, self.name, expected)
        if "backbone" in state and isinstance(state["backbone"], Mapping):
            what = f"a {self.name} backbone with channels {self.channels}"
            load_strict(self, state["backbone"], path, self.name, what, "backbone.")
        elif self.name == "vgg16":
            load_strict(self._torchvision_source, subdict(state, "features."), path,
                         self.name, expected, "features.")
        elif self.name == "inception_v3":
            src = self._torchvision_source
            kept = {k: v for k, v in state.items() if k.split(".", 1)[0] in src._modules}
            load_strict(src, kept, path, self.name, expected)
        else:
            plain = subdict(state, "backbone.") or dict(state)
            load_strict(self, plain, path, self.name, expected)
        return path
