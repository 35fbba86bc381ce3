"""EfficientNet-Lite0 as a CSoA backbone (five blocks, output stride 16) and as the ImageNet W_E
of CoAug (Eq. 8): shapes, the input conversion, the ImageNet weights read offline, gradients."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos
from torch import nn

from csoa_nb.core.backbones import (
    LITE0,
    LITE0_IMAGENET,
    Backbone,
    Lite0Input,
    backbone_channels,
    backbone_strides,
)
from csoa_nb.core.efficientnet import imagenet_input, load_efficientnet_lite0
from csoa_nb.core.models import CSoANet, EmbeddingNet
from csoa_nb.data.transforms import normalize
from csoa_nb.engine.builders import check_weight_files
from csoa_nb.engine.config import RunConfig

ESPRESSO = 967  # ImageNet class index
LITE0_CHANNELS = (16, 24, 40, 112, 1280)
LITE0_STRIDES = (2, 4, 8, 16, 16)
# EfficientNet-Lite0's 4 652 008 parameters less its 1280 x 1000 classifier and bias.
LITE0_FEATURE_PARAMETERS = 4_652_008 - 1_281_000


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    """scikit-image's ``coffee`` (CC0), an espresso: its central square at 224 px, uint8 RGB."""
    image = photos.coffee()
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.asarray(crop.resize((224, 224), Image.BICUBIC))


def book_input(photo: np.ndarray) -> torch.Tensor:
    """The photo as the book's data pipeline gives it: ImageNet mean/std, ``1 x 3 x H x W``."""
    return normalize(Image.fromarray(photo))[None]


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("EfficientNet-Lite0 tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("size", [64, 224])
def test_blocks_channels_and_strides(size: int) -> None:
    backbone = Backbone(LITE0).eval()
    assert backbone_channels(LITE0) == backbone.channels == LITE0_CHANNELS
    assert backbone_strides(LITE0) == backbone.strides == LITE0_STRIDES
    with torch.no_grad():
        maps = backbone(torch.zeros(1, 3, size, size))
    shapes = [tuple(m.shape[1:]) for m in maps]
    assert shapes == [(c, size // s, size // s) for c, s in zip(LITE0_CHANNELS, LITE0_STRIDES,
                                                                 strict=True)]
    assert maps[3].shape[-2:] == maps[4].shape[-2:]  # W_F and W_L: "the same spatial size"
    assert sum(p.numel() for p in backbone.parameters()) == LITE0_FEATURE_PARAMETERS


def test_input_conversion_is_the_weights_scaling(coffee: np.ndarray) -> None:
    pixel = np.array([[[0, 127, 255]]], dtype=np.uint8)  # one RGB pixel
    converted = Lite0Input()(book_input(pixel))
    torch.testing.assert_close(converted.flatten(), torch.tensor([-127 / 128, 0.0, 1.0]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(Lite0Input()(book_input(coffee)), imagenet_input(coffee),
                               atol=1e-5, rtol=0)


def test_imagenet_backbone_classifies_a_photo_offline(
    monkeypatch: pytest.MonkeyPatch, coffee: np.ndarray
) -> None:
    """The backbone's last map through the package's classifier gives the package network's
    logits (the weights loaded, the input converted): espresso."""
    refuse_network(monkeypatch)
    net = CSoANet(LITE0, 3, weights=LITE0_IMAGENET, head_width=8).eval()
    reference = load_efficientnet_lite0(output_stride=16)
    with torch.no_grad():
        pooled = net.backbone(book_input(coffee))[-1].mean(dim=(2, 3))
        logits = reference.fc(pooled)
        expected = reference(imagenet_input(coffee))
    torch.testing.assert_close(logits, expected, atol=2e-4, rtol=1e-4)
    assert int(logits.argmax()) == ESPRESSO
    assert float(logits.softmax(dim=1)[0, ESPRESSO]) > 0.9  # 0.94 measured


def test_csoanet_trains_on_a_batch_with_cams_of_one_size() -> None:
    torch.manual_seed(0)
    net = CSoANet(LITE0, 5, head_width=16).train()
    out = net(torch.randn(2, 3, 64, 64))
    assert tuple(out.cam_last.shape) == tuple(out.cam_feature.shape) == (2, 5, 4, 4)
    assert tuple(out.logits_last.shape) == tuple(out.logits_feature.shape) == (2, 5)
    (out.logits_last.sum() + out.logits_feature.sum()).backward()
    stem = net.backbone.stages[0].stem[0].weight
    for parameter in (stem, net.head_last.layers[0].weight, net.head_feature.layers[0].weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_imagenet_embedding_is_frozen_gap_of_the_features(
    monkeypatch: pytest.MonkeyPatch, coffee: np.ndarray
) -> None:
    refuse_network(monkeypatch)
    embed_net = EmbeddingNet(LITE0, weights=LITE0_IMAGENET).freeze()
    assert embed_net.out_dim == 1280
    assert not any(isinstance(m, nn.BatchNorm2d) for m in embed_net.modules())  # folded
    assert not embed_net.training and not any(p.requires_grad for p in embed_net.parameters())
    reference = load_efficientnet_lite0()
    with torch.no_grad():
        expected = reference.features(imagenet_input(coffee)).mean(dim=(2, 3))
    x = book_input(coffee).requires_grad_()
    embedding = embed_net(x)
    assert tuple(embedding.shape) == (1, 1280)
    torch.testing.assert_close(embedding, expected, atol=2e-4, rtol=1e-4)
    embedding.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # L_D reaches the CAM through W_E


def test_weights_name_belongs_to_lite0_only(tmp_path) -> None:
    with pytest.raises(ValueError, match="do not belong to vgg16"):
        Backbone("vgg16").load_weights(LITE0_IMAGENET)
    with pytest.raises(ValueError, match="do not belong to slim embedding"):
        EmbeddingNet("slim", weights=LITE0_IMAGENET, slim_width=4)
    config = RunConfig(backbone=LITE0, pretrained=LITE0_IMAGENET, embedding=LITE0,
                       embedding_weights=LITE0_IMAGENET)
    check_weight_files(config)  # the package's file is found: no error
    with pytest.raises(ValueError, match="embedding_weights='efficientnet_lite0'"):
        check_weight_files(config.replace(embedding="slim"))


def test_backbone_checkpoint_round_trip(tmp_path) -> None:
    source = Backbone(LITE0)
    path = tmp_path / "weights.pt"
    torch.save({"backbone": source.state_dict()}, path)
    loaded = Backbone(LITE0)
    loaded.load_weights(path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_the_paper_preset_trains_with_the_imagenet_lite0_on_cub(tmp_path):
    """A user with CUB-200-2011 and no GPU: the paper preset with EfficientNet-Lite0's ImageNet
    weights as the backbone and as W_E trains CSoA on the CUB format (the fixture: two classes,
    one epoch, small crops, narrow heads) and scores its test split."""
    from fixtures_data import build_cub

    from csoa_nb.engine.config import RunConfig
    from csoa_nb.engine.datasets import dataset_root
    from csoa_nb.engine.train import train

    cub = build_cub(tmp_path / "CUB_200_2011")
    config = RunConfig.from_preset(
        "paper", method="csoa", num_classes=2, classes_per_batch=2, batch_size=2,
        backbone="efficientnet_lite0", pretrained="efficientnet_lite0",
        embedding="efficientnet_lite0", embedding_weights="efficientnet_lite0", head_width=16,
        resize_size=72, crop_size=64, epochs=1, ten_crop=False, val_images=0, device="cpu",
        num_workers=0, data_root=str(tmp_path), output_dir=str(tmp_path / "out"),
        results_dirs=())
    assert config.dataset == "cub" and dataset_root(config) == cub
    result = train(config, progress=False, log=lambda _: None)
    assert result.scores.num_images == 2  # the fixture's test split
    assert 0.0 <= result.scores.top1_loc_err <= 100.0
    cams = result.cams()
    assert cams["cam_last"].shape[-2:] == cams["cam_feature"].shape[-2:] == (4, 4)  # 64 / 16

