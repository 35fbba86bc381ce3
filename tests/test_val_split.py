"""The synthetic benchmark's validation split (Choe et al.'s "train-fullsup"): its own
folder next to the benchmark, deterministic, disjoint from train and test, with boxes and masks,
read with the test transform; the benchmark's folder and every config hash stay as they were."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from smoke_runs import smoke

import csoa_nb.data.synthetic as syn
from csoa_nb.data.common import mask_box
from csoa_nb.data.synthetic import store
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_val_set, dataset_root, val_root


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def rows(folder: Path, name: str) -> list[list[str]]:
    return [line.split() for line in (folder / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[RunConfig, Path, Path]:
    config = smoke(tmp_path_factory.mktemp("data"))
    bench = dataset_root(config)
    return config, bench, val_root(config)


def test_two_builds_are_byte_identical(built, tmp_path: Path) -> None:
    _, _, val = built
    again = val_root(smoke(tmp_path))
    assert again.name == val.name
    assert folder_digest(again) == folder_digest(val)


def test_count_layout_and_split_flags(built) -> None:
    config, bench, val = built
    assert val.parent == bench.parent and val.name.startswith("synthetic-benchmark-val-")
    images = rows(val, "images.txt")
    assert len(images) == config.num_classes * syn.VAL_PER_CLASS == 20
    labels = [int(label) for _, label in rows(val, "image_class_labels.txt")]
    assert labels == [k + 1 for k in range(4) for _ in range(5)]
    assert {flag for _, flag in rows(val, "train_test_split.txt")} == {"0"}
    assert rows(val, "classes.txt") == rows(bench, "classes.txt")


def test_no_val_image_is_a_train_or_test_image(built) -> None:
    _, bench, val = built

    def pixels(folder: Path) -> set[bytes]:
        return {np.asarray(Image.open(folder / "images" / rel)).tobytes()
                for _, rel in rows(folder, "images.txt")}

    val_pixels = pixels(val)
    assert len(val_pixels) == 20  # and no two validation images are equal either
    assert not val_pixels & pixels(bench)


def test_boxes_and_masks_are_present_and_consistent(built) -> None:
    _, _, val = built
    boxes = {image_id: [float(v) for v in box] for image_id, *box in
             rows(val, "bounding_boxes.txt")}
    for image_id, rel in rows(val, "images.txt"):
        mask = np.asarray(Image.open(val / "masks" / Path(rel).with_suffix(".png"))) >= 128
        assert mask.any()
        x0, y0, x1, y1 = mask_box(mask)
        assert boxes[image_id] == [x0, y0, x1 - x0, y1 - y0]


def test_reader_has_the_test_transform_boxes_and_masks(built) -> None:
    config, _, _ = built
    reader = build_val_set(config)
    assert len(reader) == 20 and reader.has_masks
    assert reader.transform.train is False
    assert sorted(reader.labels) == [k for k in range(4) for _ in range(5)]
    item = reader[3]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert item["boxes"].shape == (1, 4)


def test_benchmark_folder_and_hashes_are_unchanged(tmp_path: Path) -> None:
    config = smoke(tmp_path)
    bench = dataset_root(config)
    before = folder_digest(bench)
    val = val_root(config)
    assert folder_digest(bench) == before
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == sorted(
        [bench.name, val.name])
    # the spec hash the config hashes is the benchmark's alone (committed runs keep theirs)
    assert config.data_identity() == "synthetic-9ee3a9a3be49" == "synthetic-" + bench.name[-12:]


def test_stale_val_tmp_folder_is_cleaned(tmp_path: Path) -> None:
    dead = tmp_path / f".tmp-synthetic-benchmark-val-{'a' * 12}-{store._host_tag()}-999999999-x1"
    dead.mkdir()
    assert syn.clean_stale_tmp(tmp_path) == [dead]


def test_per_class_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="per_class must be an integer >= 1"):
        syn.make_val_dataset(tmp_path, 4, 40, 0, per_class=0)
