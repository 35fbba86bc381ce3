"""The data of a run: the folder its dataset is read from, its train / test readers, and the
reproducible items the training loop draws (`SeededItems`, keyed by `EpochBatches`).

Shared by training (`csoa_nb.engine.train`), evaluation (`csoa_nb.engine.evaluate`, which needs
the test masks for PxAP) and the sweeps (`csoa_nb.engine.make_results`, which builds the shared
inputs first).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from csoa_nb.base.paths import project_path
from csoa_nb.data import CUB200, ILSVRCLoc, WSOLMetadata, WSOLTransform, make_dataset
from csoa_nb.data.fingerprint import resolve_root
from csoa_nb.data.sampler import ClassBalancedBatchSampler
from csoa_nb.data.synthetic import make_val_dataset
from csoa_nb.data.transforms import make_sample, sample_dict
from csoa_nb.engine.config import RunConfig


def dataset_root(config: RunConfig) -> Path:
    """The folder the config's dataset is read from (generating the synthetic one if needed)."""
    root = project_path(config.data_root)
    if config.dataset == "synthetic":
        return make_dataset(root / "synthetic", **config.synthetic_kwargs())
    return resolve_root(config.dataset, root)


def build_datasets(config: RunConfig) -> tuple[Dataset, Dataset]:
    """Train and test datasets of `config` with the paper's transforms (Sec. 4.1)."""
    root = dataset_root(config)
    train_tf = WSOLTransform(True, config.resize_size, config.crop_size)
    test_tf = WSOLTransform(False, config.resize_size, config.crop_size)
    kw = {"num_classes": config.num_classes}
    if config.dataset in ("synthetic", "cub"):
        return CUB200(root, "train", train_tf, **kw), CUB200(root, "test", test_tf, **kw)
    if config.dataset == "ilsvrc":
        return ILSVRCLoc(root, "train", train_tf, **kw), ILSVRCLoc(root, "val", test_tf, **kw)
    meta = project_path(config.metadata_dir)
    return (
        WSOLMetadata(root, meta, "train", train_tf, **kw),
        WSOLMetadata(root, meta, "test", test_tf, **kw),
    )


def val_root(config: RunConfig, per_class: int | None = None) -> Path:
    """The folder of the synthetic benchmark's validation split (generating it if needed):
    `csoa_nb.data.synthetic.make_val_dataset` next to the benchmark's folder, for the same
    classes, image size, seed and difficulty (`RunConfig.synthetic_kwargs`). The benchmark's
    folder and the config's hash are not touched."""
    if config.dataset != "synthetic":
        raise ValueError(
            f"val_root is for the synthetic benchmark, not dataset {config.dataset!r}: use "
            "build_val_set(config), which reads a real data set's validation split"
        )
    kwargs = config.synthetic_kwargs()
    return make_val_dataset(
        project_path(config.data_root) / "synthetic",
        kwargs["num_classes"],
        kwargs["image_size"],
        kwargs["seed"],
        per_class=config.val_per_class if per_class is None else per_class,
        difficulty=kwargs["difficulty"],
    )


def has_val_split(config: RunConfig) -> bool:
    """Whether `build_val_set` can read `config`'s data (CUB and ILSVRC have no val split)."""
    return config.dataset in ("synthetic", "wsol-metadata")


def build_val_set(config: RunConfig, per_class: int | None = None) -> Dataset:
    """The validation split of `config`'s data with the test transform: the set on which
    Choe et al. (CVPR 2020) choose hyperparameters and theta ("train-fullsup"), disjoint from
    the test set, with boxes and masks.

    synthetic: `per_class` images of each class (default `RunConfig.val_per_class`,
    `val_root`); wsol-metadata: the metadata's
    "val" split. CUB and ILSVRC in their own formats have none: ValueError naming the fix.
    """
    test_tf = WSOLTransform(False, config.resize_size, config.crop_size)
    kw = {"num_classes": config.num_classes}
    if config.dataset == "synthetic":
        return CUB200(val_root(config, per_class), "test", test_tf, **kw)
    if config.dataset == "wsol-metadata":
        root = dataset_root(config)
        return WSOLMetadata(root, project_path(config.metadata_dir), "val", test_tf, **kw)
    raise ValueError(
        f"dataset {config.dataset!r} has no validation split with boxes in its own format: "
        "use dataset='wsol-metadata' with metadata_dir set to wsolevaluation's metadata "
        "(its 'val' split is train-fullsup)"
    )


def worker_init(worker_id: int) -> None:
    """A loader worker's numpy and python seeds, from torch's seed of that worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item `index`'s augmentation in `epoch` of a run with `seed` (32 bits)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


#: The last entropy word of a step's seed: keeps `step_seed` apart from `sample_seed`.
_STEP_STREAM = 1


def step_seed(seed: int, epoch: int, step: int) -> int:
    """32-bit seed of a step's `augment` draws, from nothing drawn before (a resume repeats it)."""
    return int(np.random.SeedSequence([seed, epoch, step, _STEP_STREAM]).generate_state(1)[0])


class SeededItems(Dataset):
    """A reader whose items are drawn reproducibly, whatever the loader's worker count.

    Keys are `(index, epoch)` pairs (from `EpochBatches`) or plain indices (epoch 0). Item
    `index`'s random crop and flip in `epoch` come from torch's generator seeded with
    `sample_seed(seed, epoch, index)` inside `torch.random.fork_rng`, so they depend on
    neither the process that loads it nor what was drawn before, and a resumed run draws the
    same augmentations as an uninterrupted one. `cache=True` keeps the decoded images in memory,
    resized and normalised (`WSOLTransform.resize`; the synthetic benchmark's ~1,500 small
    images take ~120 MB), so decoding, resizing and normalising happen once, not every epoch,
    and an item is a crop and a flip (`WSOLTransform.place`); the items are the same bit for
    bit either way.
    """

    def __init__(self, dataset: Any, seed: int, *, cache: bool = False) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.cache = cache and hasattr(dataset, "load_raw")
        self._raw: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # labels, num_classes, has_masks, transform, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _item(self, index: int) -> dict[str, Any]:
        if not self.cache:
            return self.dataset[index]
        transform, label = self.dataset.transform, self.dataset.labels[index]
        raw = self._raw.get(index)
        if raw is None:
            image, boxes, mask = self.dataset.load_raw(index)
            if transform is None:
                raw = (image, boxes, mask)
            else:  # the resized tensors: each epoch only crops and flips them
                raw = (*transform.resize(image, mask), boxes, image.size)
            self._raw[index] = raw
        if transform is None:
            return make_sample(None, *raw, label, index)
        image_t, mask_t, boxes, size = raw
        return sample_dict(*transform.place(image_t, boxes, mask_t, size), label, index)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: `torch.manual_seed` would also seed (lazily, recording a
            # traceback each time) every accelerator's generator, 1-2 ms an item; the
            # transforms draw from the CPU generator alone, so the items are the same
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self._item(index)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """`ClassBalancedBatchSampler`'s batches as `(index, epoch)` keys for `SeededItems`."""

    def __init__(self, sampler: ClassBalancedBatchSampler) -> None:
        super().__init__()
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [(index, epoch) for index in batch]
