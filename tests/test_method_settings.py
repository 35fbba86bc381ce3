"""A method's settings are its own: a frozen dataclass beside its spec holds its
hyperparameters (names, defaults, checks, labels, search grid); `RunConfig`'s fields, checks
and hash rules for them, and the tables' labels, come from the registry.

The toy method below is a whole method module in a few lines: registered (temporarily) in the
registry, it is configured, checked, hashed and trained with no other file touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import pytest
import torch
from smoke_runs import RUN_FILES, smoke

from csoa_nb import methods
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.train import train
from csoa_nb.methods.cam import cam_losses
from csoa_nb.methods.settings import setting
from csoa_nb.methods.spec import MethodSpec, Parts


# ------------------------------------------------------------------ the toy method's module
@dataclass(frozen=True)
class ToySettings:
    """The toy method's one hyperparameter: the gain its training images are scaled by."""

    toy_gain: float = setting(1.0, label="image gain g", search=(0.5, 1.0, 2.0))

    def __post_init__(self) -> None:
        if not self.toy_gain > 0:
            raise ValueError(f"toy_gain must be > 0, got {self.toy_gain!r}")


#: What the toy's hooks received, call by call.
SEEN: list[tuple[str, object]] = []


def toy_augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                settings: ToySettings, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    SEEN.append(("augment", settings))
    return images * settings.toy_gain, labels


def toy_losses(settings, out, images, labels, alpha, embed_net):
    SEEN.append(("losses", settings))
    return cam_losses(settings, out, images, labels, alpha, embed_net)


TOY = MethodSpec(key="toy", label="Toy", color="#000000", parts=Parts(), losses=toy_losses,
                 summary="CAM on images scaled by a gain", settings=ToySettings,
                 augment=toy_augment)


@pytest.fixture
def toy(monkeypatch):
    """The toy method in the registry for one test (the one line a new method adds)."""
    monkeypatch.setitem(methods.METHODS, TOY.key, TOY)
    SEEN.clear()
    return TOY


# ------------------------------------------------------------------------------------ tests
def test_a_toy_method_is_configured_checked_and_hashed_through_the_registry(toy):
    cam = RunConfig.from_preset("smoke", method="cam")
    config = RunConfig.from_preset("smoke", method="toy", toy_gain=2)
    assert config.toy_gain == 2.0 and isinstance(config.toy_gain, float)
    assert config.method_settings == ToySettings(toy_gain=2.0)
    assert cam.method_settings is None and cam.toy_gain == 1.0
    # its setting is hashed for its own runs only
    assert config.replace(toy_gain=0.5).hash != config.hash
    assert cam.replace(toy_gain=0.5).hash == cam.hash
    assert "toy_gain" in config.hashed_fields() and "toy_gain" not in cam.hashed_fields()
    # the user-facing flat name: --set, config.json, the check's message with the default
    assert RunConfig.parse_assignments(["toy_gain=3"]) == {"toy_gain": 3.0}
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"toy_gain must be > 0.*defaults: toy_gain=1\.0"):
        config.replace(toy_gain=-1.0)
    with pytest.raises(ValueError, match="toy_gain must be of type float"):
        config.replace(toy_gain="big")
    # its label and search grid, for the tables and the protocol
    assert toy.search == {"toy_gain": (0.5, 1.0, 2.0)}
    assert toy.setting_names == ("toy_gain",)
    assert methods.setting_label("toy_gain") == "image gain g"


def test_registering_a_method_moves_no_other_runs_hash(monkeypatch):
    before = {key: RunConfig.from_preset("cpu", method=key).hash for key in methods.METHODS}
    monkeypatch.setitem(methods.METHODS, TOY.key, TOY)
    after = {key: RunConfig.from_preset("cpu", method=key).hash for key in before}
    assert after == before


def test_a_toy_method_trains_through_the_registry(toy, data_root, tmp_path):
    config = smoke(data_root, tmp_path, method="toy", toy_gain=0.5, epochs=1)
    result = train(config, progress=False, log=lambda _: None)
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name
    assert result.run_dir.name == config.hash
    assert 0.0 <= result.metrics["max_box_acc_v2"] <= 100.0
    # every hook got the run's typed settings
    assert {kind for kind, _ in SEEN} == {"augment", "losses"}
    assert all(received == ToySettings(toy_gain=0.5) for _, received in SEEN)
    # config.json: flat names, loaded back to the same run
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["toy_gain"] == 0.5 and saved["method"] == "toy"
    assert RunConfig.from_json(result.run_dir / "config.json").hash == config.hash
    assert train(config, progress=False, log=lambda _: None).cached


def test_every_methods_settings_are_run_config_fields_with_its_defaults():
    defaults = RunConfig()
    for spec in methods.METHODS.values():
        if spec.settings is None:
            assert spec.setting_names == () and not spec.search
            continue
        instance = spec.settings()
        assert spec.setting_names == tuple(f.name for f in fields(spec.settings))
        for name in spec.setting_names:
            assert getattr(defaults, name) == getattr(instance, name), (spec.key, name)
            assert methods.setting_label(name) != name, f"{name} needs a label"
        assert set(spec.search) <= set(spec.setting_names)
        config = RunConfig.from_preset("cpu", method=spec.key)
        assert config.method_settings == instance


def test_each_setting_enters_the_hash_of_its_own_methods_only():
    """The rule, from the registry (no list of names): a method's hashed fields are the shared
    ones plus its own settings."""
    owners: dict[str, set[str]] = {}
    for spec in methods.METHODS.values():
        for name in spec.setting_names:
            owners.setdefault(name, set()).add(spec.key)
    assert {"coaug_background", "has_grid_size", "acol_delta"} <= set(owners)
    assert owners["gamma"] == {"coaug", "csoa"}
    for key in methods.METHODS:
        hashed = RunConfig.from_preset("cpu", method=key).hashed_fields()
        assert {name for name in owners if name in hashed} == {
            name for name, keys in owners.items() if key in keys}, key
