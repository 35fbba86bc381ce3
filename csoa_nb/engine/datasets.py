"""The data of a run: the folder its dataset is read from and its train / test readers.

Shared by training (`csoa_nb.engine.train`), evaluation (`csoa_nb.engine.evaluate`, which needs
the test masks for PxAP) and the sweeps (`csoa_nb.engine.results`, which builds the shared
inputs first).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from csoa_nb.data import CUB200, ILSVRCLoc, WSOLMetadata, WSOLTransform, make_dataset
from csoa_nb.data.fingerprint import resolve_root
from csoa_nb.engine.config import RunConfig
from csoa_nb.paths import project_path


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
