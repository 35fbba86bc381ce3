"""The checks of a `RunConfig`'s values, run when a config is made (`RunConfig.validate`).

Each bad value raises a ValueError that names the field, the valid choices or range, and how to
set it (`--set`, papermill's `-p`): a field's type (`check_types`), finite numbers and least
values (`check_numbers`), then choices, ranges and the methods' settings (`check_fields`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from csoa_nb import methods as method_registry
from csoa_nb.base.checks import check_choice, check_run_theta
from csoa_nb.base.precision import AMP_DTYPES
from csoa_nb.core.backbones import BACKBONES
from csoa_nb.core.models import EMBEDDINGS
from csoa_nb.engine.presets import PRESETS
from csoa_nb.methods.settings import build_settings

if TYPE_CHECKING:
    from csoa_nb.engine.config import RunConfig

DATASETS = ("synthetic", "cub", "ilsvrc", "wsol-metadata")
#: The largest seed numpy and torch both accept.
MAX_SEED = 2**32 - 1
#: Integer fields' least values (beside those with their own checks in `check_fields`):
#: num_workers 0 loads in the training process; the pretraining stage needs an epoch, two
#: classes and an image per class; the synthetic images a pixel.
AT_LEAST = {"num_workers": 0, "num_distractors": 0, "pretrain_epochs": 1, "pretrain_classes": 2,
            "pretrain_images_per_class": 1, "synthetic_size": 1}


def check_types(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, float]:
    """Each field has its default's type (a float field takes an int too): a papermill
    parameter or a JSON value of the wrong type fails here, naming the field. Returns the ints
    given for float fields, as floats (the config stores those: the same hash as the float)."""
    as_float: dict[str, float] = {}
    for name, value in values.items():
        default = defaults[name]
        expected: type = type(default)
        ok = isinstance(value, expected) and not (
            expected is int and isinstance(value, bool)
        )
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
            as_float[name] = value
        if not ok:
            raise ValueError(
                f"{name} must be of type {expected.__name__}, got "
                f"{type(value).__name__} {value!r} (e.g. papermill -p {name} "
                f"{default!r})"
            )
    return as_float


def check_numbers(values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Every float field is finite (an inf lr or CutMix beta would pass the range checks
    and only fail mid-training, as NaN), and the integer fields of `AT_LEAST` reach it."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(
                f"{name} must be a finite number, got {value!r}: set a finite value "
                f"(--set {name}=...; papermill -p {name} ...; default "
                f"{defaults[name]!r})"
            )
        if name in AT_LEAST and value < AT_LEAST[name]:
            raise ValueError(
                f"{name} must be >= {AT_LEAST[name]}, got {value}: e.g. "
                f"--set {name}={defaults[name]} (its default)"
            )


def check_fields(config: RunConfig, settings: dict[str, Any]) -> None:
    """The choices (preset, dataset, method, backbone, ...), the ranges and the combinations
    of `config`'s fields, and every method's `settings` (its settings class's own checks)."""
    check_choice("preset", config.preset, PRESETS)
    check_choice("dataset", config.dataset, DATASETS)
    check_choice("method", config.method, tuple(method_registry.METHODS))
    check_choice("backbone", config.backbone, BACKBONES)
    check_choice("embedding", config.embedding, EMBEDDINGS)
    check_choice("amp_dtype", config.amp_dtype, AMP_DTYPES)
    if config.amp and config.amp_dtype == "fp16" and config.device.startswith("cpu"):
        raise ValueError("amp_dtype=fp16 with device cpu: CPU autocast runs bf16; use "
                         "--set amp_dtype=bf16 (or auto) or a CUDA device")
    if config.world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {config.world_size}; it is the "
                         "number of torchrun processes (torchrun sets it)")
    if not 0 <= config.seed <= MAX_SEED:
        raise ValueError(f"seed must lie in 0..{MAX_SEED} (numpy's range), got {config.seed}")
    if config.dataset == "synthetic" and (
        config.test_per_class < 1 or config.images_per_class < 1
    ):
        raise ValueError(
            "images_per_class and test_per_class must be >= 1 for the synthetic benchmark, "
            f"got {config.images_per_class} and {config.test_per_class}"
        )
    check_run_theta(config.theta)
    if config.classes_per_batch < 1 or config.batch_size % config.classes_per_batch:
        raise ValueError(
            f"batch_size ({config.batch_size}) must be a multiple of classes_per_batch "
            f"({config.classes_per_batch}): each batch holds batch_size / classes_per_batch "
            "images of each of its classes (Sec. 4.1: 48 images, 12 classes)"
        )
    if config.classes_per_batch > config.num_classes:
        raise ValueError(
            f"classes_per_batch ({config.classes_per_batch}) exceeds num_classes "
            f"({config.num_classes}); lower it (e.g. --set classes_per_batch="
            f"{config.num_classes})"
        )
    if config.feature_block not in (1, 2, 3, 4, 5):
        raise ValueError(f"feature_block must be 1..5, got {config.feature_block}")
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    positive = ("batch_size", "slim_width", "num_classes", "crop_size", "resize_size",
                "val_per_class", "lr", "pretrain_lr", "head_lr_mult", "lr_decay", "alpha_ramp")
    for name in positive:
        value = getattr(config, name)
        if not value > 0:  # also catches NaN
            raise ValueError(f"{name} must be positive, got {value!r}")
    for name in ("momentum", "weight_decay", "val_images", "head_width", "part_fraction",
                 "body_class_evidence", "part_occlusion"):
        value = getattr(config, name)
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if config.momentum >= 1 or config.alpha_ramp > 1 or config.part_occlusion > 1:
        raise ValueError(
            "momentum must be < 1, alpha_ramp <= 1 and part_occlusion <= 1; got "
            f"{config.momentum}, {config.alpha_ramp}, {config.part_occlusion}"
        )
    if config.crop_size > config.resize_size:
        raise ValueError(
            f"crop_size ({config.crop_size}) must not exceed resize_size ({config.resize_size})"
        )
    for cls in dict.fromkeys(spec.settings for spec in method_registry.METHODS.values()):
        if cls is not None:
            build_settings(cls, settings)  # its checks, naming the defaults
