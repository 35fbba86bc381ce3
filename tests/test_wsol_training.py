"""HaS, ACoL, ADL and CutMix as methods of the registry: their settings and the
config hash, their hooks (`augment`, `model`) checked by hand, and smoke runs of each."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from smoke_runs import RUN_FILES, smoke

import csoa_nb.engine.train as train_module
from csoa_nb.core.localize import fuse_cams
from csoa_nb.core.models import CSoANet
from csoa_nb.data import collate_wsol
from csoa_nb.engine.builders import build_model, build_sampler
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import EpochBatches, SeededItems, build_datasets, step_seed
from csoa_nb.engine.evaluate import class_probabilities
from csoa_nb.engine.train import RunInterrupted, train
from csoa_nb.methods import METHODS, WSOL_SPECS
from csoa_nb.methods.acol import (
    ACoLHead,
    ACoLNet,
    acol_map,
    erase_high_activation,
    smooth_features,
)
from csoa_nb.methods.adl import AttentionDropout, drop_mask, self_attention
from csoa_nb.methods.confseg import class_map
from csoa_nb.methods.cutmix import cutmix, cutmix_loss, mixed_targets
from csoa_nb.methods.has import hidden_cells


def check_run(result) -> None:
    """A finished smoke run: its folder, finite losses every epoch, every metric scored."""
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name
    for record in result.history:
        losses = {k: v for k, v in record.items() if k.startswith("loss_")}
        assert "loss_total" in losses and all(math.isfinite(v) for v in losses.values())
    for key in ("top1_loc_err", "gt_known_loc_err", "top1_cls_err", "max_box_acc_v2", "pxap"):
        assert 0.0 <= result.metrics[key] <= 100.0, key


def record_steps(monkeypatch) -> list[dict]:
    """Every call of the trainer's `method_losses`: what the network saw, and the result."""
    calls: list[dict] = []
    real = train_module.method_losses

    def recording(config, out, images, labels, alpha, embed_net):
        terms = real(config, out, images, labels, alpha, embed_net)
        calls.append({"images": images.detach().clone(), "targets": labels.detach().clone(),
                      "logits": out.logits_last.detach().clone(),
                      "total": terms["total"].detach().clone()})
        return terms

    monkeypatch.setattr(train_module, "method_losses", recording)
    return calls


def epoch_batches(config: RunConfig, epoch: int = 0) -> list[dict]:
    """The batches the trainer's loader yields in `epoch`, rebuilt from the run's seed."""
    train_set, _ = build_datasets(config)
    sampler = build_sampler(config, train_set)
    sampler.set_epoch(epoch)
    items = SeededItems(train_set, config.seed, cache=True)
    return [collate_wsol([items[key] for key in keys]) for keys in EpochBatches(sampler)]


def step_generator(config: RunConfig, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(config.seed, epoch, step))


def test_cached_items_equal_read_ones_bit_for_bit(data_root, tmp_path):
    """`SeededItems(cache=True)` keeps resized tensors and only crops and flips them: every
    item of three epochs equals the reader's own (decode, resize, crop, flip, normalise)."""
    config = smoke(data_root, tmp_path)
    train_set, test_set = build_datasets(config)
    for dataset in (train_set, test_set):
        cached = SeededItems(dataset, config.seed, cache=True)
        read = SeededItems(dataset, config.seed, cache=False)
        assert cached.cache and not read.cache
        for key in [(index, epoch) for epoch in range(3) for index in range(len(dataset))]:
            a, b = cached[key], read[key]
            assert a.keys() == b.keys() and a["label"] == b["label"]
            assert all(torch.equal(a[k], b[k]) for k in ("image", "boxes", "mask")), key


# ---------------------------------------------------------------------------- settings, hash


def test_settings_default_to_the_papers_values_and_hash_only_for_their_method():
    base = RunConfig.from_preset("cpu")
    assert (base.has_grid_size, base.has_hide_prob) == (32, 0.5)
    assert base.acol_delta == 0.6
    assert (base.adl_drop_rate, base.adl_gamma) == (0.75, 0.9)
    assert (base.cutmix_beta, base.cutmix_prob) == (1.0, 1.0)
    # each method's searched values move its own runs' hash only (every setting's rule, from
    # the registry: tests/test_method_settings.py)
    owners = {name: spec.key for spec in WSOL_SPECS for name in spec.setting_names}
    for spec in WSOL_SPECS:
        for name, values in spec.search.items():
            value = next(v for v in values if v != getattr(base, name))
            for method in METHODS:
                config = base.replace(method=method)
                moved = config.replace(**{name: value}).hash != config.hash
                assert moved == (method == owners[name]), (name, method)
    with pytest.raises(ValueError, match=r"hide_prob must .*defaults: has_grid_size=32"):
        base.replace(has_hide_prob=1.5)


# ------------------------------------------------------------------------------------- HaS


def test_has_step_hides_the_cells_its_step_generator_picks(data_root, tmp_path, monkeypatch):
    config = smoke(data_root, tmp_path, method="has", has_grid_size=8, epochs=1)
    calls = record_steps(monkeypatch)
    check_run(train(config, progress=False, log=lambda _: None))
    batches = epoch_batches(config)
    assert len(calls) == len(batches) == 4
    hidden_total = 0
    for step, (call, batch) in enumerate(zip(calls, batches, strict=True)):
        images = batch["image"]
        assert torch.equal(call["targets"], batch["label"])  # HaS leaves the labels alone
        cells = hidden_cells(8, 32, 32, 8, 0.5, step_generator(config, 0, step))
        for b, r, c in itertools.product(*(range(n) for n in cells.shape)):
            window = (b, slice(None), slice(8 * r, 8 * r + 8), slice(8 * c, 8 * c + 8))
            expected = torch.zeros_like(images[window]) if cells[b, r, c] else images[window]
            assert torch.equal(call["images"][window], expected)
        hidden_total += int(cells.sum())
    assert 0 < hidden_total < 4 * 8 * 16  # some cells hidden, not all


@pytest.mark.parametrize("method", ["has", "adl"])
def test_resumed_run_draws_what_an_uninterrupted_one_draws(method, data_root, tmp_path):
    config = smoke(data_root, tmp_path / "a", method=method, has_grid_size=8, epochs=3)
    whole = train(config, progress=False, log=lambda _: None)
    interrupted = config.replace(output_dir=str(tmp_path / "b"))
    with pytest.raises(RunInterrupted):
        train(interrupted, progress=False, stop_after_epoch=1, log=lambda _: None)
    resumed = train(interrupted, progress=False, log=lambda _: None)
    strip = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in whole.history]
    assert [{k: v for k, v in r.items() if k != "epoch_time_s"}
            for r in resumed.history] == strip
    assert resumed.metrics == whole.metrics


# ---------------------------------------------------------------------------------- CutMix


def test_cutmix_step_trains_on_the_mixed_batch_and_label_mix(data_root, tmp_path, monkeypatch):
    config = smoke(data_root, tmp_path, method="cutmix", epochs=1)
    calls = record_steps(monkeypatch)
    check_run(train(config, progress=False, log=lambda _: None))
    batches = epoch_batches(config)
    assert len(calls) == len(batches) == 4
    lams = []
    for step, (call, batch) in enumerate(zip(calls, batches, strict=True)):
        mixed = cutmix(batch["image"], batch["label"], 1.0, 1.0, step_generator(config, 0, step))
        assert torch.equal(call["images"], mixed.images)
        targets = call["targets"]
        assert targets.shape == (8, 4) and torch.allclose(targets.sum(1), torch.ones(8))
        for i in range(8):
            hand = torch.zeros(4)
            hand[int(mixed.labels_a[i])] += mixed.lam
            hand[int(mixed.labels_b[i])] += 1 - mixed.lam
            assert torch.allclose(targets[i], hand)
        assert float(call["total"]) == pytest.approx(
            float(cutmix_loss(call["logits"], mixed.labels_a, mixed.labels_b, mixed.lam)),
            rel=1e-5)
        lams.append(mixed.lam)
    assert any(lam < 1.0 for lam in lams)  # at least one batch was pasted into


def test_mixed_targets_by_hand():
    batch = cutmix(torch.zeros(2, 1, 4, 4), torch.tensor([0, 2]), generator=torch.Generator()
                   .manual_seed(3))
    targets = mixed_targets(batch._replace(labels_b=torch.tensor([2, 0]), lam=0.75), 3)
    assert targets.tolist() == [[0.75, 0.0, 0.25], [0.25, 0.0, 0.75]]


# ------------------------------------------------------------------------------------ ACoL


def test_acol_loss_map_and_scores_through_the_registry():
    torch.manual_seed(0)
    config = RunConfig.from_preset("smoke", method="acol", acol_delta=0.5)
    net = build_model(config)
    assert isinstance(net, ACoLNet) and net.head_last.delta == 0.5
    images = torch.randn(3, 3, 32, 32)
    labels = torch.tensor([1, 3, 0])
    net.eval()  # batch norm of the backbone in eval mode: the same features in both passes
    out = net(images, labels)
    # by hand: branch A on the block-5 features (smoothed by the reference's 3x3 average
    # pool), its CAM of the label erases them for B
    features = smooth_features(net.backbone(images)[-1])
    cams_a = net.head_last.branch_a(features)
    cam_a_label = cams_a[torch.arange(3), labels]
    cams_b = net.head_last.branch_b(erase_high_activation(features, cam_a_label, 0.5))
    assert torch.allclose(out.cam_last, cams_a) and torch.allclose(out.cam_feature, cams_b)
    assert out.logits_feature is None
    terms = METHODS["acol"].losses(config.method_settings, out, images, labels, 1.0, None)
    ce_a = F.cross_entropy(cams_a.mean((2, 3)), labels)
    ce_b = F.cross_entropy(cams_b.mean((2, 3)), labels)
    assert torch.allclose(terms["cls_last"], ce_a) and torch.allclose(terms["cls_b"], ce_b)
    assert torch.allclose(terms["total"], ce_a + ce_b)
    # training erases by the label, not by the prediction (at least one image differs here)
    predicted = cams_a.mean((2, 3)).argmax(1)
    assert not torch.equal(predicted, labels)
    assert not torch.allclose(net(images).cam_feature, out.cam_feature)
    # the evaluator's map (Eq. 13's union of the two heads) is ACoL's map, its scores branch A's
    size = tuple(out.cam_last.shape[-2:])
    fused = fuse_cams(class_map(out.cam_last, labels), class_map(out.cam_feature, labels), size)
    assert torch.allclose(fused, acol_map(out.cam_last, out.cam_feature, labels))
    assert torch.allclose(class_probabilities(out), cams_a.mean((2, 3)).softmax(1))


def test_acol_trains_on_smoke(data_root, tmp_path, monkeypatch):
    config = smoke(data_root, tmp_path, method="acol", epochs=1)
    seen: list[tuple[bool, bool]] = []  # (training, erased by the given labels) per call
    real = ACoLHead.forward

    def spy(self, features, labels=None):
        seen.append((self.training, labels is not None))
        return real(self, features, labels)

    monkeypatch.setattr(ACoLHead, "forward", spy)
    result = train(config, progress=False, log=lambda _: None)
    check_run(result)
    # the trainer's steps erase by the ground truth, and so does the evaluator (the maps it
    # scores are the ground-truth class's, as in wsolevaluation)
    assert [given for training, given in seen if training] == [True] * 4
    evaluated = [given for training, given in seen if not training]
    assert evaluated and all(evaluated)
    assert {"loss_cls_last", "loss_cls_b"} <= set(result.history[0])
    record = result.history[0]
    assert record["loss_total"] == pytest.approx(record["loss_cls_last"] + record["loss_cls_b"])
    maps = result.eval_maps()
    assert maps["cam_feature"] is not None and maps["cam_feature"].shape == maps["cam_last"].shape


# ------------------------------------------------------------------------------------- ADL


def test_adl_layers_follow_blocks_3_to_5_and_drop_by_the_config():
    torch.manual_seed(0)
    config = RunConfig.from_preset("smoke", method="adl", adl_drop_rate=1.0, adl_gamma=0.8)
    net = build_model(config)
    assert isinstance(net, CSoANet)
    last = [stage[-1] for stage in net.backbone.stages]
    assert [isinstance(layer, AttentionDropout) for layer in last] == [False, False, True, True,
                                                                       True]
    assert all((layer.drop_rate, layer.gamma) == (1.0, 0.8) for layer in last[2:])
    plain = build_model(config.replace(method="cam"))
    assert list(net.state_dict()) == list(plain.state_dict())  # no parameters added
    images = torch.randn(2, 3, 32, 32)
    # training: block 3's output is its convolutions' output times the drop mask (rate 1)
    net.train()
    block2 = net.backbone.stages[1](net.backbone.stages[0](images))
    before = net.backbone.stages[2][:-1](block2)
    expected = before * drop_mask(self_attention(before), 0.8)
    assert torch.allclose(net.backbone.stages[2](block2), expected)
    assert (expected == 0).any() and not torch.equal(expected, before)
    # evaluation: the layers are the identity, the network is the plain one
    net.eval()
    plain.load_state_dict(net.state_dict())
    plain.eval()
    assert torch.equal(net(images).cam_last, plain(images).cam_last)
