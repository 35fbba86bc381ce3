"""RunConfig: presets, validation, hashing; the paper preset equals Section 4.1."""

from __future__ import annotations

import pytest
import torch

from csoa_nb.engine.builders import build_model, build_optimizer
from csoa_nb.engine.config import METHODS, PRESETS, RunConfig


def test_presets_build_and_label_themselves():
    for name in PRESETS:
        assert RunConfig.from_preset(name).preset == name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "gradcam"}, "valid choices: cam, twohead, confseg, coaug, csoa"),
        ({"backbone": "resnet50"}, "valid choices: vgg16, inception_v3, vgg_slim"),
        ({"theta": 0.0}, "theta must lie in (0, 1)"),
        ({"theta": 1.5}, "theta must lie in (0, 1)"),
        ({"batch_size": 50}, "must be a multiple of classes_per_batch"),
        ({"dataset": "voc"}, "valid choices: synthetic, cub, ilsvrc, wsol-metadata"),
    ],
)
def test_bad_settings_name_the_valid_choices(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_preset("cpu", **changes)


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match="valid choices: smoke, cpu, paper"):
        RunConfig.from_preset("gpu")


def test_hash_ignores_where_and_how_but_not_what():
    base = RunConfig.from_preset("cpu")
    assert base.replace(output_dir="elsewhere", num_workers=4).hash == base.hash
    # the device's kind is what: a CUDA run does not compute a CPU run's numbers; its index is
    # where
    cuda = base.replace(device="cuda:0")
    assert cuda.hash != base.hash and cuda.replace(device="cuda:1").hash == cuda.hash
    assert base.replace(seed=1).hash != base.hash
    assert base.replace(theta=0.2).hash != base.hash
    assert len(base.hash) == 12 and int(base.hash, 16) >= 0


def test_cpu_preset_trains_bf16_channels_last_and_the_layout_is_hashed_only_when_on():
    cpu = RunConfig.from_preset("cpu")
    assert (cpu.amp, cpu.channels_last, cpu.memory_format) == (True, True, torch.channels_last)
    smoke = RunConfig.from_preset("smoke")
    assert (smoke.amp, smoke.channels_last) == (False, False)
    assert smoke.memory_format == torch.contiguous_format
    assert "channels_last" not in smoke.hashed_fields()  # the hashes of NCHW runs stay put
    assert smoke.replace(channels_last=True).hash != smoke.hash
    assert cpu.replace(channels_last=False).hash != cpu.hash


def test_json_round_trip_is_exact():
    config = RunConfig.from_preset("smoke", method="coaug", seed=3)
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig.from_dict(config.to_dict()).hash == config.hash


def test_cli_style_overrides_parse_by_field_type():
    config = RunConfig.from_preset("cpu").with_overrides(
        ["epochs=3", "theta=0.25", "ten_crop=true"]
    )
    assert (config.epochs, config.theta, config.ten_crop) == (3, 0.25, True)
    with pytest.raises(ValueError, match="expected a value of type int"):
        RunConfig.from_preset("cpu").with_overrides(["epochs=three"])
    with pytest.raises(ValueError, match="key one of"):
        RunConfig.from_preset("cpu").with_overrides(["nonsense=1"])


def test_method_parts_cover_every_method():
    for method in METHODS:
        config = RunConfig.from_preset("smoke", method=method)
        assert isinstance(config.two_heads, bool)
    assert not RunConfig.from_preset("smoke", method="cam").two_heads
    assert RunConfig.from_preset("smoke", method="csoa").uses_coaug


def test_paper_preset_is_section_4_1():
    config = RunConfig.from_preset("paper", device="cpu")
    assert (config.backbone, config.embedding, config.feature_block) == ("vgg16", "alexnet", 4)
    assert (config.batch_size, config.classes_per_batch) == (48, 12)
    assert config.ten_crop and config.crop_size == 224 and config.num_classes == 200
    ilsvrc = RunConfig.from_preset("paper", dataset="ilsvrc", device="cpu")
    assert (ilsvrc.backbone, ilsvrc.num_classes) == ("inception_v3", 1000)
    # inspect the built optimizer and schedule (weights=None: nothing is loaded)
    model = build_model(config, weights=None)
    optimizer, scheduler = build_optimizer(config, model)
    assert isinstance(optimizer, torch.optim.SGD)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.001)
        assert group["momentum"] == pytest.approx(0.9)
        assert group["weight_decay"] == pytest.approx(5e-4)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ExponentialLR)
    assert scheduler.gamma == pytest.approx(0.95)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001 * 0.95)
    n_params = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert n_params == sum(p.numel() for p in model.parameters())


def test_relative_paths_mean_the_project_root_from_any_subfolder(tmp_path, monkeypatch):
    from csoa_nb.base.paths import project_path

    (tmp_path / "csoa_nb").mkdir()
    (tmp_path / "_toc.yml").write_text("root: x\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # where JupyterLab starts a chapter's kernel
    assert project_path("data") == tmp_path / "data"
    assert project_path(tmp_path / "abs") == tmp_path / "abs"
    elsewhere = tmp_path / "book" / "deeper"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert project_path("runs") == tmp_path / "runs"


def test_a_message_names_a_folder_of_the_project_relative_to_it(tmp_path, monkeypatch):
    """A run folder in use is named relative to the project (a chapter's output shows no
    folder of the building machine); a folder elsewhere keeps its full path."""
    from csoa_nb.base.paths import display_path

    (tmp_path / "project" / "csoa_nb").mkdir(parents=True)
    (tmp_path / "project" / "_toc.yml").write_text("root: x\n")
    monkeypatch.chdir(tmp_path / "project")
    assert display_path(tmp_path / "project" / "runs" / "abc123") == "runs/abc123"
    assert display_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    ("field", "value"), [("seed", "abc"), ("epochs", 2.5), ("device", 0), ("ten_crop", "yes")]
)
def test_wrong_parameter_types_are_named(field, value):
    with pytest.raises(ValueError, match=f"{field} must be of type"):
        RunConfig.from_preset("smoke", **{field: value})


def test_a_float_field_accepts_an_int():
    config = RunConfig.from_preset("smoke", theta=0.5, lr=1)
    assert isinstance(config.lr, float) and config.hash == config.replace(lr=1.0).hash


def test_cli_dataset_choice_selects_the_presets_dataset_defaults():
    from csoa_nb.engine.train_cli import config_from_args, parse_args

    config = config_from_args(parse_args(["--preset", "paper", "--set", "dataset=ilsvrc"]))
    assert (config.dataset, config.backbone, config.num_classes) == ("ilsvrc", "inception_v3", 1000)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", float("nan")), ("lr", -1.0), ("batch_size", 0), ("momentum", 1.5), ("slim_width", 0)],
)
def test_out_of_range_settings_fail_early(field, value):
    with pytest.raises(ValueError, match=field):
        RunConfig.from_preset("smoke", **{field: value})


def test_from_preset_variant_seeds_and_cli_precedence():
    """The paper preset's ILSVRC variant comes with `dataset="ilsvrc"`, whether given in code or
    as a --set (no pre-scan of the CLI); a --set wins over --method; seeds live with presets."""
    from csoa_nb.engine.config import PRESET_SPECS
    from csoa_nb.engine.train_cli import config_from_args, parse_args

    ilsvrc = RunConfig.from_preset("paper", dataset="ilsvrc", device="cpu")
    assert (ilsvrc.backbone, ilsvrc.num_classes, ilsvrc.epochs) == ("inception_v3", 1000, 20)
    assert RunConfig.from_preset("paper", device="cpu").backbone == "vgg16"
    args = parse_args(["--preset", "paper", "--method", "cam", "--set", "dataset=ilsvrc",
                       "--set", "method=csoa", "--set", "device=cpu"])
    config = config_from_args(args)
    assert (config.method, config.backbone, config.preset) == ("csoa", "inception_v3", "paper")
    assert config.hash == RunConfig.from_preset(
        "paper", method="csoa", dataset="ilsvrc", device="cpu"
    ).hash
    assert PRESET_SPECS["cpu"].seeds == (0, 1, 2, 3, 4)  # one seed set for every chapter
    assert PRESET_SPECS["cpu"].headline_seeds == (0, 1, 2, 3, 4)
