"""Run configuration: one frozen dataclass, made from a preset, with a stable hash.

`RunConfig` is everything that decides what a training run computes. Its `hash` names the run
folder (`output_dir/<hash>/`), so two chapters asking for the same run share it, and a finished
run is loaded instead of retrained. Fields that do not change the result (device, output folder,
data loader workers, the preset's label) are left out of the hash; the rules, all of them, are
`csoa_nb.engine.hashing`'s.

A method's hyperparameters are its own: the fields of its spec's settings class
(`csoa_nb.methods.settings`: `HaSSettings.has_grid_size`, `CoAugSettings.gamma`, ...) are
`RunConfig` fields of the same flat names, made from the registry when a config is made, so
`--set has_grid_size=16`, papermill's parameters and `config.json` name them as before; the
class checks them, and `method_settings` is the instance the method's hooks receive.

The presets (`PRESET_SPECS`, `PRESETS`) are `csoa_nb.engine.presets`'; `from_preset` starts
from one. A config's values are checked when it is made (`csoa_nb.engine.config_checks`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from csoa_nb import methods as method_registry
from csoa_nb.base.cache import stable_hash
from csoa_nb.base.checks import FolderError, check_choice, check_writable_folder
from csoa_nb.base.paths import project_path
from csoa_nb.data.fingerprint import data_fingerprint
from csoa_nb.data.synthetic import Difficulty, dataset_spec, spec_hash
from csoa_nb.engine.config_checks import check_fields, check_numbers, check_types
from csoa_nb.engine.hashing import hashed_fields
from csoa_nb.engine.presets import PRESET_SPECS, PRESETS
from csoa_nb.methods.settings import build_settings

#: The trainable methods (`csoa_nb.methods`, the registry) at import; a config checks its method
#: against the registry as it is when the config is made.
METHODS = tuple(method_registry.METHODS)
#: theta is stored rounded to this many decimals: 0.30000000000000004 is the run of 0.3.
THETA_DECIMALS = 4
#: The synthetic benchmark's difficulty by default (`Difficulty`'s defaults: the calibrated point).
_BENCHMARK = Difficulty()


@dataclass(frozen=True, init=False, eq=False, repr=False)
class RunConfig:
    """All settings of one training run (see the module docstring for the presets): the
    fields declared here, and every method's settings (`csoa_nb.methods.settings_table`, read
    from the registry when the config is made), each an attribute of its flat name.
    `RunConfig(**fields)` takes keywords only; a field left out takes its default."""

    preset: str = "cpu"
    # --- data -------------------------------------------------------------------------------
    dataset: str = "synthetic"
    data_root: str = "data"
    metadata_dir: str = ""  # wsol-metadata only: the folder holding train/ and test/ lists
    num_classes: int = 12
    images_per_class: int = 80  # synthetic: training images per class
    test_per_class: int = 40  # synthetic: test images per class
    synthetic_size: int = 72  # synthetic: generated image side in pixels
    # synthetic difficulty (csoa_nb.data.synthetic.Difficulty), frozen by the calibration sweep
    # (csoa_nb.engine.sweeps, "calibration"; chapter 01) so that plain CAM lands mid-range
    part_fraction: float = _BENCHMARK.part_fraction
    body_class_evidence: float = _BENCHMARK.body_class_evidence
    part_occlusion: float = _BENCHMARK.part_occlusion
    num_distractors: int = _BENCHMARK.num_distractors
    clutter: float = _BENCHMARK.clutter
    resize_size: int = 72
    crop_size: int = 64
    # --- model ------------------------------------------------------------------------------
    backbone: str = "vgg_slim"
    slim_width: int = 16
    head_width: int = 0  # 0: the backbone's default (1024 for VGG16/InceptionV3, 8*slim_width)
    feature_block: int = 4  # W_F after this block (Table 2: 3, 4 or 5)
    method: str = "csoa"
    pretrained: str = ""  # "": from scratch; "pretrain": our pretraining stage; else a path/name
    embedding: str = "slim"
    # (W_E's weights, `embedding_weights`, are CoAug's setting: `CoAugSettings`)
    # --- pretraining stage (used when pretrained == "pretrain") ----------------------------
    pretrain_classes: int = 20
    pretrain_images_per_class: int = 80
    pretrain_epochs: int = 8
    pretrain_lr: float = 0.05
    # --- optimisation (Sec. 4.1) --------------------------------------------------------------
    epochs: int = 12
    batch_size: int = 48
    classes_per_batch: int = 12
    lr: float = 0.001
    head_lr_mult: float = 1.0  # lr multiplier of the new CAM heads (1: Sec. 4.1 as written)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay: float = 0.95  # lr x 0.95 each epoch
    alpha_ramp: float = 0.5  # alpha of Eq. 6 reaches 1 after this fraction of training
    # --- a method's settings: not declared here but by its spec's `settings` class (CoAug's
    # gamma, delta, coaug_weight, coaug_background, embedding_weights: `CoAugSettings`; HaS's
    # has_grid_size, has_hide_prob: `HaSSettings`; ACoL, ADL, CutMix); hashed for its runs only
    # --- evaluation ---------------------------------------------------------------------------
    theta: float = 0.3  # Eq. 13; Table 3's best (the text says 0.2; see the Table 3 chapter)
    ten_crop: bool = False
    val_images: int = 200  # per-epoch validation on this many test images (0: none)
    # synthetic: images per class of the validation split on which theta and the WSOL methods'
    # settings are chosen (Choe et al.'s train-fullsup; `csoa_nb.engine.protocol`)
    val_per_class: int = 5
    # --- run ------------------------------------------------------------------------------------
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # autocast (float32 losses of Eq. 5 and Eq. 12), dtype `amp_dtype`
    amp_dtype: str = "auto"  # auto | bf16 | fp16 (CUDA only, with loss scaling); amp only
    # train the CSoA network on NHWC tensors (`torch.channels_last`): the same computation,
    # other float rounding (so hashed when on), about 2x faster with amp on a CPU with bf16
    # instructions (bench/README.md, "make results")
    channels_last: bool = False
    world_size: int = 1  # torchrun processes (the CLI sets it from torchrun's WORLD_SIZE)
    num_workers: int = 0  # data loader processes (per torchrun process)
    output_dir: str = "runs"
    results_dirs: tuple[str, ...] = field(default=("results/runs",))

    # ------------------------------------------------------------------------------------------
    def __init__(self, **values: Any) -> None:
        defaults = self.field_defaults()
        unknown = set(values) - set(defaults)
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {sorted(unknown)}; the fields are "
                             f"{', '.join(sorted(defaults))}")
        declared = {spec.name for spec in fields(RunConfig)}
        settings = {}
        for name, default in defaults.items():
            if name in declared:
                object.__setattr__(self, name, values.get(name, default))
            else:
                settings[name] = values.get(name, default)
        object.__setattr__(self, "_settings", settings)
        self.validate()
        # one run per theta: 0.30000000000000004 (e.g. 0.1 * 3) is the run of 0.3
        object.__setattr__(self, "theta", round(self.theta, THETA_DECIMALS))

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """Every field's default: those declared here, then every method's settings (the
        registry as it is now).

        Raises:
            ValueError: a method's setting reuses the name of a declared field.
        """
        declared = {spec.name: spec.default for spec in fields(cls)}  # each a plain default
        settings = {name: item.default
                    for name, item in method_registry.settings_table().items()}
        clash = set(declared) & set(settings)
        if clash:
            raise ValueError(f"method setting(s) {sorted(clash)} reuse the name of a RunConfig "
                             "field: rename them in their method's settings class")
        return {**declared, **settings}

    def __getattr__(self, name: str) -> Any:
        """A method's setting by its flat name (`config.has_grid_size`)."""
        settings = self.__dict__.get("_settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(f"'RunConfig' object has no attribute {name!r}")

    def _values(self) -> dict[str, Any]:
        """Every field's value, by name (declared fields first)."""
        declared = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        return {**declared, **self.__dict__["_settings"]}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values().items())))

    def __repr__(self) -> str:
        return f"RunConfig({', '.join(f'{k}={v!r}' for k, v in self._values().items())})"

    def validate(self) -> None:
        """Raise one ValueError per bad setting, naming the valid choices
        (`csoa_nb.engine.config_checks`)."""
        defaults = self.field_defaults()
        for name, value in check_types(self._values(), defaults).items():
            if name in self._settings:
                self._settings[name] = value
            else:
                object.__setattr__(self, name, value)
        check_numbers(self._values(), defaults)
        check_fields(self, self._settings)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> RunConfig:
        """The preset `name` (one of PRESETS; see `PRESET_SPECS`) with `overrides` applied; a
        preset's variant for the overridden `dataset` (the paper's ILSVRC) comes in between."""
        check_choice("preset", name, PRESETS)
        spec = PRESET_SPECS[name]
        base: dict[str, Any] = dict(spec.settings)
        base.update(spec.by_dataset.get(overrides.get("dataset", ""), {}))
        base.update(overrides)
        return cls(preset=name, **base)

    @property
    def method_spec(self) -> method_registry.MethodSpec:
        """The registry's entry of `method` (`csoa_nb.methods`)."""
        return method_registry.METHODS[self.method]

    @property
    def method_settings(self) -> Any:
        """`method`'s `settings` instance built from this config's fields (what its `losses`,
        `augment` and `model` receive), or None for a method without settings."""
        settings = self.method_spec.settings
        return None if settings is None else build_settings(settings, self._settings)

    @property
    def two_heads(self) -> bool:
        return self.method_spec.parts.two_heads

    @property
    def uses_inner_loss(self) -> bool:
        return self.method_spec.parts.inner_loss

    @property
    def uses_coaug(self) -> bool:
        return self.method_spec.parts.coaug

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` applied (validated)."""
        unknown = set(changes) - set(self.field_defaults())
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {sorted(unknown)}")
        return type(self)(**{**self._values(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Every field by its flat name (`config.json`'s keys, via `to_record`)."""
        data = self._values()
        data["results_dirs"] = list(self.results_dirs)
        return data

    def to_record(self) -> dict[str, Any]:
        """`to_dict` for a run's `config.json`: no path of the machine that made it.

        Path fields (`data_root`, `output_dir`, `metadata_dir`, `results_dirs`) inside the
        project are stored relative to it; an absolute path outside it is left out (it would
        mean nothing on another machine; loading falls back to the default). None of them is
        hashed, so the run's identity is unchanged.
        """
        root = project_path(".")
        data = self.to_dict()

        def portable(value: str) -> str | None:
            path = Path(value)
            if not path.is_absolute():
                return value
            try:
                return path.relative_to(root).as_posix()
            except ValueError:
                return None

        for name in ("data_root", "output_dir", "metadata_dir"):
            value = portable(data[name])
            if value is None:
                del data[name]
            else:
                data[name] = value
        data["results_dirs"] = [v for v in map(portable, data["results_dirs"]) if v is not None]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        unknown = set(data) - set(cls.field_defaults())
        if unknown:
            raise ValueError(f"unknown RunConfig field(s) {sorted(unknown)} in saved config")
        data = dict(data)
        if "results_dirs" in data:
            data["results_dirs"] = tuple(data["results_dirs"])
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def hashed_fields(self, data: str | None = None) -> dict[str, Any]:
        """Fields deciding what a run computes (`engine.hashing`), plus `DATA_KEY`: its data."""
        return hashed_fields(self, self.data_identity() if data is None else data)

    @property
    def device_kind(self) -> str:
        """The kind of `device` ("cpu", "cuda", ...), without its index."""
        return str(self.device).split(":", 1)[0]

    def data_identity(self) -> str:
        """What the run's data is, independent of where it lies (`csoa_nb.data.fingerprint`):
        the synthetic benchmark's spec hash, or a fingerprint of a real data set's lists."""
        if self.dataset == "synthetic":
            kwargs = self.synthetic_kwargs()
            return "synthetic-" + spec_hash(dataset_spec(**kwargs))
        metadata = str(project_path(self.metadata_dir)) if self.metadata_dir else ""
        return data_fingerprint(self.dataset, project_path(self.data_root), metadata)

    def check_output_dir(self) -> Path:
        """`output_dir` (absolute) once run folders can be written there
        (`checks.check_writable_folder`; nothing is created): the trainer, the pretraining stage
        and `make results` call it before any work."""
        return check_writable_folder(
            project_path(self.output_dir), "output_dir",
            "pass a writable output_dir (--set output_dir=DIR; papermill: -p output_dir DIR)")

    def data_root_error(self, error: OSError) -> FolderError:
        """The error to raise when `data_root` cannot be read, or (the synthetic benchmark
        and the pretraining stage's data are generated there) written: names the folder,
        what failed and the fix."""
        what = error.strerror or str(error)
        where = f": {error.filename}" if error.filename else ""
        return FolderError(
            f"data_root {project_path(self.data_root)} cannot be used ({what}{where}): pass a "
            "folder you can read, and write where the synthetic data are generated (--set "
            "data_root=DIR; papermill: -p data_root DIR)"
        )

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout the networks train in: NHWC with `channels_last`, else NCHW."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def hash(self) -> str:
        """12 hex digits of sha256 over the canonical JSON of `hashed_fields()` (`stable_hash`)."""
        return stable_hash(self.hashed_fields())

    def hash_on(self, data: str) -> str:
        """The hash on data `data`, as `results.json` records it: checks a run without its data."""
        return stable_hash(self.hashed_fields(data))

    def synthetic_kwargs(self) -> dict[str, Any]:
        """Arguments of `csoa_nb.data.synthetic.make_dataset` for this config's benchmark."""
        return {
            "num_classes": self.num_classes,
            "images_per_class": self.images_per_class,
            "test_per_class": self.test_per_class,
            "image_size": self.synthetic_size,
            "seed": 0,  # the benchmark is fixed; the run's seed varies the training only
            "difficulty": Difficulty(
                part_fraction=self.part_fraction,
                body_class_evidence=self.body_class_evidence,
                part_occlusion=self.part_occlusion,
                num_distractors=self.num_distractors,
                clutter=self.clutter,
            ),
        }

    @classmethod
    def parse_assignments(cls, assignments: list[str]) -> dict[str, Any]:
        """`key=value` strings (the CLI's `--set`) as fields, each value parsed by the type of
        the field's default."""
        defaults = cls.field_defaults()
        defaults["results_dirs"] = ()
        changes: dict[str, Any] = {}
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep or key not in defaults:
                raise ValueError(
                    f"--set expects key=value with key one of {sorted(defaults)}, got {item!r}"
                )
            changes[key] = _parse_value(raw, defaults[key], key)
        return changes

    def with_overrides(self, assignments: list[str]) -> RunConfig:
        """Apply `key=value` strings (the CLI's `--set`), parsing values by the field's type."""
        return self.replace(**self.parse_assignments(assignments))


def _parse_value(raw: str, current: Any, key: str) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            return tuple(s for s in raw.split(",") if s)
    except ValueError:
        raise ValueError(
            f"{key}={raw!r}: expected a value of type {type(current).__name__}"
        ) from None
    return raw
