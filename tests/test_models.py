"""Backbones, CAM heads (Eq. 1), CSoANet, EmbeddingNet and offline weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from csoa_nb.core.backbones import BACKBONES, Backbone, backbone_channels, backbone_strides
from csoa_nb.core.models import (
    EMBEDDINGS,
    CAMHead,
    CSoANet,
    EmbeddingNet,
    fold_batchnorms,
    pool_before_relu,
)

# vgg16 features: indices of the 13 convolutions and the block (stage) each belongs to
VGG16_CONVS = {0: 0, 2: 0, 5: 1, 7: 1, 10: 2, 12: 2, 14: 2, 17: 3, 19: 3, 21: 3, 24: 4, 26: 4,
               28: 4}


@pytest.fixture(scope="module")
def torchvision_vgg16_file(tmp_path_factory):
    """torchvision's vgg16 state-dict format: ``features.N.*`` (real) + ``classifier.*`` (a
    small fake: the real one is 400 MB and ignored anyway)."""
    features = torchvision.models.vgg16(weights=None).features.state_dict()
    state = {f"features.{k}": v for k, v in features.items()}
    state["classifier.0.weight"] = torch.zeros(3, 5)
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


# ------------------------------------------------------------------------------ shapes
def test_constants_and_block_tables():
    assert BACKBONES == ("vgg16", "inception_v3", "vgg_slim", "efficientnet_lite0")
    assert EMBEDDINGS == ("alexnet", "slim", "efficientnet_lite0")
    assert backbone_channels("vgg16") == (64, 128, 256, 512, 512)
    assert backbone_channels("inception_v3") == (64, 192, 288, 768, 768)
    assert backbone_channels("vgg_slim", 8) == (8, 16, 32, 64, 64)
    assert backbone_strides("vgg16") == (2, 4, 8, 8, 8)
    assert backbone_strides("vgg_slim") == (2, 4, 4, 4, 4)
    with pytest.raises(ValueError, match="vgg16, inception_v3, vgg_slim"):
        backbone_channels("resnet50")


def test_backbone_maps_match_tables():
    backbone = Backbone("vgg_slim", 4)
    maps = backbone(torch.zeros(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == list(backbone_channels("vgg_slim", 4))
    assert [64 // m.shape[-1] for m in maps] == list(backbone_strides("vgg_slim"))


@pytest.mark.parametrize("feature_block", [3, 4, 5])
def test_vgg_slim_shapes(feature_block):
    net = CSoANet("vgg_slim", 10, feature_block=feature_block, slim_width=4)
    out = net(torch.randn(2, 3, 64, 64))
    assert out.logits_last.shape == out.logits_feature.shape == (2, 10)
    assert out.cam_last.shape == out.cam_feature.shape == (2, 10, 16, 16)  # 64 px -> 16x16


def test_vgg_slim_early_blocks_and_default_head_width():
    net = CSoANet("vgg_slim", 3, feature_block=1, slim_width=4)
    assert net(torch.randn(1, 3, 64, 64)).cam_feature.shape == (1, 3, 32, 32)  # before pool 1
    assert net.head_last.layers[0].out_channels == 32  # 8 * slim_width
    assert net.head_feature.layers[0].in_channels == 4  # block 1 has w channels


@pytest.mark.parametrize("feature_block", [3, 4, 5])
def test_vgg16_shapes(feature_block):
    net = CSoANet("vgg16", 5, feature_block=feature_block, head_width=8)
    out = net(torch.randn(1, 3, 64, 64))
    assert out.cam_last.shape == out.cam_feature.shape == (1, 5, 8, 8)  # stride 8, same size
    assert not any(isinstance(m, torch.nn.Linear) for m in net.modules())  # classifier removed


def test_vgg16_default_head_width_is_paper():
    assert CSoANet("vgg16", 2).head_last.layers[0].out_channels == 1024


@pytest.mark.parametrize("feature_block, feature_size", [(3, 7), (4, 3), (5, 3)])
def test_inception_shapes(feature_block, feature_size):
    # 75 px is the smallest input torchvision's Inception-v3 accepts; cut after Mixed_6e
    net = CSoANet("inception_v3", 4, feature_block=feature_block, head_width=8)
    out = net(torch.randn(1, 3, 75, 75))
    assert out.cam_last.shape == (1, 4, 3, 3)
    assert out.cam_feature.shape == (1, 4, feature_size, feature_size)
    names = [n for n, _ in net.backbone.named_modules()]
    assert not any("Mixed_7" in n or "fc" == n.split(".")[-1] for n in names)
    # paper: W_F after Mixed_6b, W_L after Mixed_6e
    assert list(net.backbone.stages[3]._modules)[-1] == "Mixed_6b"
    assert list(net.backbone.stages[4]._modules)[-1] == "Mixed_6e"


def test_inception_input_transform():
    # ImageNet-normalised grey 0.5 becomes 0 on the (x - 0.5) / 0.5 scale of the Google weights
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    grey = (0.5 - mean) / std * torch.ones(1, 3, 2, 2)
    transform = Backbone("inception_v3").stages[0].transform_input
    torch.testing.assert_close(transform(grey), torch.zeros(1, 3, 2, 2))


def test_baseline_has_no_feature_head():
    net = CSoANet("vgg_slim", 3, baseline=True, slim_width=4)
    out = net(torch.randn(2, 3, 64, 64))
    assert out.logits_feature is None and out.cam_feature is None
    assert net.head_feature is None
    assert out.cam_last.shape == (2, 3, 16, 16)


def test_logits_are_cam_means_eq1():
    net = CSoANet("vgg_slim", 3, slim_width=4)
    out = net(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(out.logits_last, out.cam_last.mean(dim=(2, 3)))
    torch.testing.assert_close(out.logits_feature, out.cam_feature.mean(dim=(2, 3)))


def test_cam_head_structure():
    head = CAMHead(6, 3, 5)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (6, 5, (3, 3), (1, 1)), (5, 5, (3, 3), (1, 1)), (5, 3, (1, 1), (0, 0))]
    assert head(torch.zeros(1, 6, 7, 9)).shape == (1, 3, 7, 9)


def test_gradients_reach_both_heads():
    torch.manual_seed(0)
    net = CSoANet("vgg_slim", 3, slim_width=4)
    labels = torch.tensor([0, 2])
    out = net(torch.randn(2, 3, 64, 64))
    F.cross_entropy(out.logits_last, labels).backward(retain_graph=True)
    assert net.head_last.layers[0].weight.grad.abs().sum() > 0
    assert net.head_feature.layers[0].weight.grad is None  # W_F only sees its own loss
    loss = F.cross_entropy(out.logits_last, labels) + F.cross_entropy(out.logits_feature, labels)
    net.zero_grad()
    loss.backward()
    assert net.head_feature.layers[0].weight.grad.abs().sum() > 0
    assert net.head_last.layers[-1].weight.grad.abs().sum() > 0
    assert net.backbone.stages[0][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone": "resnet"}, "vgg16, inception_v3, vgg_slim"),
        ({"num_classes": 0}, "num_classes"),
        ({"feature_block": 0}, "feature_block"),
        ({"feature_block": 6}, "feature_block"),
        ({"feature_block": 4.0}, "feature_block"),
        ({"slim_width": 0}, "slim_width"),
    ],
)
def test_csoanet_validates(kwargs, match):
    args = {"backbone": "vgg_slim", "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        CSoANet(**args)


# ------------------------------------------------------------------------------ weights
def test_vgg16_loads_torchvision_state_dict(torchvision_vgg16_file):
    path, state = torchvision_vgg16_file
    net = CSoANet("vgg16", 3, weights=path, head_width=8)
    loaded = net.backbone.state_dict()
    for index, stage in VGG16_CONVS.items():
        for part in ("weight", "bias"):
            assert torch.equal(loaded[f"stages.{stage}.{index}.{part}"],
                               state[f"features.{index}.{part}"])
    assert len(loaded) == 26  # 13 convs x (weight, bias), nothing else


def test_vgg16_enum_name_resolved_in_hub_cache(monkeypatch, tmp_path, torchvision_vgg16_file):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth") as info:
        CSoANet("vgg16", 3, weights="VGG16_Weights.IMAGENET1K_V1", head_width=8)
    assert str(expected) in str(info.value) and "weights=PATH" in str(info.value)
    assert not expected.exists()  # nothing was downloaded
    expected.parent.mkdir()
    expected.symlink_to(torchvision_vgg16_file[0])
    net = CSoANet("vgg16", 3, weights="VGG16_Weights.IMAGENET1K_V1", head_width=8)
    assert torch.equal(net.backbone.state_dict()["stages.4.28.weight"],
                       torchvision_vgg16_file[1]["features.28.weight"])


def test_weights_missing_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        CSoANet("vgg16", 3, weights=missing, head_width=8)
    with pytest.raises(FileNotFoundError, match="pretraining"):
        CSoANet("vgg_slim", 3, weights=missing)


def test_weights_truncated_or_foreign_file(tmp_path, torchvision_vgg16_file):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(torchvision_vgg16_file[0].read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.pth"):
        CSoANet("vgg16", 3, weights=truncated, head_width=8)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match=r"foreign.pth.*features\.N"):
        CSoANet("vgg16", 3, weights=foreign, head_width=8)


def test_enum_names_checked(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ValueError, match="do not belong to vgg16"):
        CSoANet("vgg16", 3, weights="AlexNet_Weights.IMAGENET1K_V1", head_width=8)
    with pytest.raises(ValueError, match="no torchvision weights"):
        CSoANet("vgg_slim", 3, weights="VGG16_Weights.IMAGENET1K_V1")
    with pytest.raises(ValueError, match="unknown torchvision weights"):
        CSoANet("vgg16", 3, weights="VGG16_Weights.NOPE", head_width=8)


def test_inception_loads_torchvision_state_dict(tmp_path):
    source = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    state = {k: v for k, v in source.state_dict().items()
             if not k.startswith(("Mixed_7", "fc."))}
    state["Mixed_6b.branch1x1.bn.running_mean"] = torch.arange(192.0)  # a buffer must load too
    state.update({"AuxLogits.fc.weight": torch.zeros(2), "Mixed_7a.x": torch.zeros(1),
                  "fc.weight": torch.zeros(2, 2)})  # ignored
    path = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    torch.save(state, path)
    net = CSoANet("inception_v3", 3, weights=path, head_width=8)
    assert torch.equal(net.backbone.stages[3].Mixed_6b.branch1x1.bn.running_mean,
                       torch.arange(192.0))
    assert torch.equal(net.backbone.stages[0].Conv2d_1a_3x3.conv.weight,
                       state["Conv2d_1a_3x3.conv.weight"])
    del state["Mixed_6e.branch1x1.conv.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="Mixed_6e.branch1x1.conv.weight"):
        CSoANet("inception_v3", 3, weights=path, head_width=8)


def test_vgg_slim_and_slim_embedding_load_pretraining_file(tmp_path):
    source = CSoANet("vgg_slim", 7, baseline=True, slim_width=4)
    embed_source = EmbeddingNet("slim", slim_width=4)
    path = tmp_path / "weights.pt"
    torch.save({"backbone": source.backbone.state_dict(),
                "embedding": embed_source.state_dict(), "info": {"epochs": 1}}, path)
    net = CSoANet("vgg_slim", 3, weights=path, slim_width=4)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[key], value)
    embed_net = EmbeddingNet("slim", weights=path, slim_width=4)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(embed_net(x), embed_source(x))
    plain = tmp_path / "plain.pt"  # a plain state dict of the backbone is accepted too
    torch.save(source.backbone.state_dict(), plain)
    net = CSoANet("vgg_slim", 3, weights=plain, slim_width=4)
    assert torch.equal(net.backbone.stages[4][0].weight, source.backbone.stages[4][0].weight)
    with pytest.raises(ValueError, match="weights.pt"):  # built for another width
        CSoANet("vgg_slim", 3, weights=path, slim_width=8)


# ------------------------------------------------------------------------------ embedding
@pytest.mark.parametrize("kind, dim", [("alexnet", 256), ("slim", 32)])
def test_embedding_shapes(kind, dim):
    embed_net = EmbeddingNet(kind, slim_width=4)
    assert embed_net.out_dim == dim
    assert embed_net(torch.randn(3, 3, 64, 64)).shape == (3, dim)


@pytest.mark.parametrize("kind", ["alexnet", "slim"])
def test_frozen_embedding_is_the_same_function_and_passes_input_gradients(kind):
    torch.manual_seed(0)
    embed_net = EmbeddingNet(kind, slim_width=4)
    for module in embed_net.modules():  # non-trivial BatchNorm statistics and affine terms
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 2)
            module.bias.data.uniform_(-1, 1)
    x = torch.randn(3, 3, 64, 64)
    expected = embed_net.eval()(x)
    frozen = embed_net.freeze()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())  # folded
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    x.requires_grad_()
    out = frozen(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # L_D reaches the CAM through W_E
    with pytest.raises(RuntimeError, match="before freeze"):
        frozen.load_weights("any.pt")


def test_frozen_imagenet_embedding_runs_in_float32_under_bf16_autocast_on_a_cpu():
    # its depthwise convolutions are twice as fast in float32 there; the result is the float32
    # function, whatever autocast the loss is computed in
    torch.manual_seed(0)
    embed_net = EmbeddingNet("efficientnet_lite0").freeze()
    x = torch.randn(2, 3, 64, 64)
    expected = embed_net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = embed_net(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["alexnet", "slim"])
def test_pool_before_relu_keeps_values_and_input_gradients_bit_for_bit(kind):
    # bfloat16 under autocast, as the cpu preset trains: ties inside a pooling window are common
    # there, so the gradient's choice of window element is tested too
    torch.manual_seed(0)
    reference = EmbeddingNet(kind, slim_width=4).eval()
    reference.features = fold_batchnorms(reference.features)
    swapped = EmbeddingNet(kind, slim_width=4).eval()
    swapped.features = pool_before_relu(fold_batchnorms(swapped.features))
    swapped.load_state_dict(reference.state_dict())
    order = [type(m).__name__ for m in swapped.features]
    assert order[1:3] == ["MaxPool2d", "ReLU"]  # the first pool now runs before its ReLU
    images = (4 * torch.randn(6, 3, 64, 64)).round() / 4
    results = []
    for net in (reference, swapped):
        x = images.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
        out.float().pow(2).sum().backward()
        results.append((out, x.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_alexnet_embedding_loads_torchvision_file(tmp_path):
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    state = {f"features.{k}": v for k, v in features.items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    embed_net = EmbeddingNet("alexnet", weights=path)
    assert torch.equal(embed_net.features[10].weight, state["features.10.weight"])
    with pytest.raises(ValueError, match="unknown embedding 'vgg'"):
        EmbeddingNet("vgg")
