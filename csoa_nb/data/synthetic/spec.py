"""What a synthetic benchmark is: its difficulty knobs, splits and canonical spec.

`Difficulty` sets how hard the benchmark is; `dataset_spec` / `val_spec` are the canonical
descriptions whose hash (`spec_hash`) names a dataset's folder and enters every run's config
hash; `split_id` keys each split's per-image RNG streams.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from csoa_nb.base.cache import stable_hash

#: Bumped whenever the rendering changes, so cached datasets are regenerated (it is hashed).
GENERATOR_VERSION = "1"
FAMILIES = ("benchmark", "pretrain")
SPLITS = ("train", "test")
#: The validation split's name; it lives in its own folder (`make_val_dataset`), not in SPLITS.
VAL_SPLIT = "val"
#: Validation images per class by default (wsolevaluation's train-fullsup has a few per class).
VAL_PER_CLASS = 5


@dataclass(frozen=True)
class Difficulty:
    """How hard the synthetic benchmark is (see `csoa_nb.data.synthetic`'s docstring).

    Attributes:
        part_fraction: part area / object area (the object is body + part).
        body_class_evidence: 0..1, how far the body colour is tinted toward the class colour
            (0: the body carries no class information).
        part_occlusion: probability, train split only, that the part is not drawn.
        num_distractors: maximum number of part-less bodies in the background (0..n uniform).
        clutter: 0..1 strength of the background texture patches and noise.
        family: "benchmark" or "pretrain" (disjoint designs, for the pretraining stage).
    """

    part_fraction: float = 0.05
    # 0.3: the calibrated benchmark (csoa_nb.engine.sweeps "calibration", chapter 01), the
    # default of every run (csoa_nb.engine.config.RunConfig reads these defaults)
    body_class_evidence: float = 0.3
    part_occlusion: float = 0.0
    num_distractors: int = 2
    clutter: float = 0.5
    family: str = "benchmark"

    def __post_init__(self) -> None:
        if not 0.0 < self.part_fraction <= 0.5:
            raise ValueError(f"part_fraction must be in (0, 0.5], got {self.part_fraction}")
        for name in ("body_class_evidence", "part_occlusion", "clutter"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if int(self.num_distractors) != self.num_distractors or not 0 <= self.num_distractors <= 8:
            raise ValueError(f"num_distractors must be an int in 0..8, got {self.num_distractors}")
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid choices: {FAMILIES}")


def split_id(family: str, split: str) -> int:
    """The `split_id` of the per-image RNG key: train 1 / test 2 / val 3 (pretrain family:
    11 / 12 / 13). Distinct keys give distinct images: the validation split (`VAL_SPLIT`,
    `make_val_dataset`) shares no image with train or test."""
    if split == VAL_SPLIT:
        return 10 * FAMILIES.index(family) + 1 + len(SPLITS)
    return 10 * FAMILIES.index(family) + 1 + SPLITS.index(split)


def dataset_spec(
    num_classes: int,
    images_per_class: int,
    image_size: int,
    seed: int,
    test_per_class: int | None = None,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> dict[str, Any]:
    """The canonical description of a dataset (what `make_dataset`'s hash is computed from)."""
    for name, value, low in (
        ("num_classes", num_classes, 2),
        ("images_per_class", images_per_class, 1),
        ("image_size", image_size, 16),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if test_per_class is None:
        test_per_class = images_per_class // 2
    if int(test_per_class) != test_per_class or test_per_class < 0:
        raise ValueError(f"test_per_class must be an integer >= 0, got {test_per_class!r}")
    if not isinstance(difficulty, Difficulty):
        raise ValueError(f"difficulty must be a Difficulty, got {type(difficulty).__name__}")
    return {
        "generator_version": GENERATOR_VERSION,
        "num_classes": int(num_classes),
        "images_per_class": int(images_per_class),
        "test_per_class": int(test_per_class),
        "image_size": int(image_size),
        "seed": int(seed),
        "difficulty": dataclasses.asdict(difficulty),
    }


def spec_hash(spec: dict[str, Any]) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of `spec` (`stable_hash`)."""
    return stable_hash(spec)


def val_spec(
    num_classes: int,
    image_size: int,
    seed: int,
    per_class: int = VAL_PER_CLASS,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> dict[str, Any]:
    """The canonical description of a validation split (what `make_val_dataset`'s hash is
    computed from): the benchmark's generator, classes, image size, seed and difficulty (not
    its train / test counts, which do not change a validation image), and `val_per_class`."""
    base = dataset_spec(num_classes, 1, image_size, seed, 0, difficulty)
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    keep = ("generator_version", "num_classes", "image_size", "seed", "difficulty")
    return {**{key: base[key] for key in keep}, "split": VAL_SPLIT,
            "val_per_class": int(per_class)}
