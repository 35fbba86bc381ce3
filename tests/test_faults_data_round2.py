"""Regression tests for more faults of the data layer (those of test_faults_data.py aside).

Each builds a tiny data set in the real on-disk format in `tmp_path` (`fixtures_data`).

Fault -> test:

- the ILSVRC fingerprint cached by folder timestamps
     -> test_ilsvrc_fingerprint_sees_xml_edited_in_place,
        test_ilsvrc_fingerprint_sees_image_added_to_a_class_folder
- 32-bit float TIFFs decode to black
     -> test_float_tiff_scaled_from_unit_range, test_float_tiff_outside_unit_range_rejected
- an image listed twice, a train/test leak
     -> test_cub_image_listed_twice_rejected, test_metadata_image_listed_twice_rejected,
        test_metadata_image_in_two_splits_is_a_leak
- a one-class real data set trains
     -> test_one_class_data_sets_rejected (a split without images of some class is refused
        by the trainer already: tests/test_faults.py::test_missing_class_in_train_split_is_named)
- paths in list files leave the data root
     -> test_cub_listed_path_outside_root_rejected_before_opening,
        test_metadata_listed_path_outside_root_rejected
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import (
    CUB_ROWS,
    META_BOXES,
    WNIDS,
    H,
    W,
    build_cub,
    build_ilsvrc,
    build_metadata,
    voc_xml,
    write_jpeg,
)
from PIL import Image

from csoa_nb.data import CUB200, DataError, ILSVRCLoc, WSOLMetadata, load_image
from csoa_nb.data import fingerprint as fp
from csoa_nb.data.common import load_mask


# -------------------------------------------------------------------------- the ILSVRC fingerprint
def _age_tree(root: Path, seconds: float = 60.0) -> None:
    """Set the modification time of every file and folder under `root` `seconds` back, as for a
    data set extracted a while ago (so a later change cannot share a timestamp with it)."""
    old = time.time_ns() - int(seconds * 1e9)
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(old, old))


@pytest.fixture
def counted_digest(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every digest of an ILSVRC folder really computed (not taken from a cache) appends its
    folder here; the cache is allowed for any data set, however freshly written (the settling
    time set to 0), so that the tests below exercise the cached path."""
    calls: list[Path] = []
    real = fp._ilsvrc_digest

    def spy(root: Path) -> str:
        calls.append(root)
        return real(root)

    monkeypatch.setattr(fp, "_ilsvrc_digest", spy)
    monkeypatch.setattr(fp, "SETTLE_NS", 0, raising=False)
    return calls


def test_ilsvrc_fingerprint_sees_xml_edited_in_place(
    tmp_path: Path, counted_digest: list[Path]
) -> None:
    """A `bbox_val/*.xml` edited in place (same size, same second) changes the
    fingerprint in the same process; an unchanged data set is taken from the cache."""
    root = build_ilsvrc(tmp_path / "ilsvrc")
    _age_tree(root)
    first = fp.data_fingerprint("ilsvrc", root)
    assert fp.data_fingerprint("ilsvrc", root) == first
    assert len(counted_digest) == 1  # the second call was answered by the cache

    xml = root / "bbox_val" / "ILSVRC2012_val_00000001.xml"
    before = xml.stat()
    xml.write_text(xml.read_text().replace("<xmin>1</xmin>", "<xmin>2</xmin>"))
    assert xml.stat().st_size == before.st_size
    os.utime(xml, ns=(before.st_atime_ns, before.st_mtime_ns + 1))  # 1 ns later: same second
    edited = fp.data_fingerprint("ilsvrc", root)
    assert edited != first
    assert edited == fp._ilsvrc_digest(root.resolve())  # what a new process computes
    calls = len(counted_digest)
    assert fp.data_fingerprint("ilsvrc", root) == edited and len(counted_digest) == calls


def test_ilsvrc_fingerprint_sees_image_added_to_a_class_folder(
    tmp_path: Path, counted_digest: list[Path]
) -> None:
    """An image added under `train/<wnid>/` (the `train/` folder's own
    timestamp does not change) or removed from `val/` changes the fingerprint at once."""
    root = build_ilsvrc(tmp_path / "ilsvrc")
    _age_tree(root)
    first = fp.data_fingerprint("ilsvrc", root)
    train_mtime = (root / "train").stat().st_mtime_ns
    write_jpeg(root / "train" / WNIDS[0] / f"{WNIDS[0]}_3.JPEG", seed=5)
    assert (root / "train").stat().st_mtime_ns == train_mtime
    added = fp.data_fingerprint("ilsvrc", root)
    assert added != first and added == fp._ilsvrc_digest(root.resolve())
    (root / "val" / "ILSVRC2012_val_00000002.JPEG").unlink()
    removed = fp.data_fingerprint("ilsvrc", root)
    assert removed not in (first, added) and removed == fp._ilsvrc_digest(root.resolve())


# -------------------------------------------------------------------------- float images
def test_float_tiff_scaled_from_unit_range(tmp_path: Path) -> None:
    """A 32-bit float TIFF (mode "F") in [0, 1] decodes to round(v * 255),
    not to black; a float mask is thresholded on that 0..255 scale."""
    path = tmp_path / "half.tif"
    Image.fromarray(np.full((4, 5), 0.5, dtype=np.float32)).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "F"
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8
    assert (pixels == 128).all()
    ramp = tmp_path / "ramp.tif"
    Image.fromarray(np.array([[0.0, 0.25, 0.5, 0.75, 1.0]], dtype=np.float32)).save(ramp)
    assert np.asarray(load_image(ramp))[0, :, 1].tolist() == [0, 64, 128, 191, 255]
    assert np.asarray(load_mask(ramp, threshold=128))[0].tolist() == [0, 0, 255, 255, 255]


def test_float_tiff_outside_unit_range_rejected(tmp_path: Path) -> None:
    """A float image not in [0, 1] (e.g. 0..255 stored as float, or NaN) is a
    `DataError` naming the file, the range found and how to convert it."""
    path = tmp_path / "bytes_as_float.tif"
    Image.fromarray(np.array([[0.0, 127.5, 255.0]], dtype=np.float32)).save(path)
    with pytest.raises(DataError) as err:
        load_image(path)
    message = str(err.value)
    assert str(path.absolute()) in message
    assert "values in [0, 255]" in message and "[0, 1]" in message and "8-bit" in message
    nan = tmp_path / "nan.tif"
    Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32)).save(nan)
    with pytest.raises(DataError, match=r"nan.tif.* NaN"):
        load_image(nan)


# --------------------------------------------------------------------------- listed twice
def _set_cub_path(root: Path, image_id: int, relpath: str) -> None:
    listing = root / "images.txt"
    lines = listing.read_text().splitlines()
    lines[image_id - 1] = f"{image_id} {relpath}"
    listing.write_text("\n".join(lines) + "\n")


def test_cub_image_listed_twice_rejected(tmp_path: Path) -> None:
    """The same image under two ids of images.txt is a `DataError` naming both
    lines, and calls a train/test pair a leak; another spelling of the path is the same file."""
    root = build_cub(tmp_path / "cub")
    listing = root / "images.txt"
    _set_cub_path(root, 2, CUB_ROWS[0][1])  # id 2 (a test image) = id 1 (a training image)
    for split in ("train", "test"):
        with pytest.raises(DataError) as err:
            CUB200(root, split)
        message = str(err.value)
        assert f"{listing}, line 2: image path '{CUB_ROWS[0][1]}' is already listed on line 1" \
            in message
        assert "line 1 is a train image and line 2 a test image: a train/test leak" in message
    _set_cub_path(root, 2, CUB_ROWS[1][1])
    _set_cub_path(root, 3, f"./{CUB_ROWS[0][1].replace('/', '//')}")  # two training images
    with pytest.raises(DataError) as err:
        CUB200(root, "train")
    message = str(err.value)
    alias = "./001.Alpha//alpha_1.jpg"
    assert f"{listing}, line 3: image path '{alias}' is already listed on line 1 " \
        f"(as '{CUB_ROWS[0][1]}')" in message
    assert "leak" not in message


def test_metadata_image_listed_twice_rejected(tmp_path: Path) -> None:
    """Wsolevaluation image ids naming one file twice (`a/x.jpg`,
    `a/./x.jpg`) are a `DataError` naming both lines of image_ids.txt."""
    images, meta = build_metadata(tmp_path)
    first = next(iter(META_BOXES))  # "test/a/img1.jpg", line 1
    alias = first.replace("/a/", "/a/./")
    split = meta / "test"
    for name, line in (
        ("image_ids.txt", f"{alias}\n"),
        ("class_labels.txt", f"{alias},0\n"),
        ("image_sizes.txt", f"{alias},{W},{H}\n"),
        ("localization.txt", f"{alias},1,2,11,12\n"),
    ):
        (split / name).write_text((split / name).read_text() + line)
    with pytest.raises(DataError) as err:
        WSOLMetadata(images, meta, "test")
    message = str(err.value)
    assert f"{split / 'image_ids.txt'}, line 3: image id '{alias}' is already listed on line 1 " \
        f"(as '{first}')" in message
    assert "keep one line per image" in message


def test_metadata_image_in_two_splits_is_a_leak(tmp_path: Path) -> None:
    """An image listed by the test split and by the train split of
    wsolevaluation metadata (trained and tested on) is refused when either split is read,
    naming both files and lines; the train split's own images are fine."""
    images, meta = build_metadata(tmp_path)
    train = meta / "train"
    train.mkdir()
    leaked = list(META_BOXES)[1]  # line 2 of the test split's image_ids.txt
    write_jpeg(images / "train/c/img3.jpg", seed=50)
    (train / "image_ids.txt").write_text(f"train/c/img3.jpg\n./{leaked}\n")
    (train / "class_labels.txt").write_text(f"train/c/img3.jpg,1\n./{leaked},2\n")
    for split, line, other, other_line in (("test", 2, "train", 2), ("train", 2, "test", 2)):
        with pytest.raises(DataError) as err:
            WSOLMetadata(images, meta, split)
        message = str(err.value)
        assert (f"{meta / split / 'image_ids.txt'}, line {line}, and "
                f"{meta / other / 'image_ids.txt'}, line {other_line}, both list") in message
        assert f"a {split}/{other} leak" in message
    (train / "image_ids.txt").write_text("train/c/img3.jpg\n")
    (train / "class_labels.txt").write_text("train/c/img3.jpg,1\n")
    assert len(WSOLMetadata(images, meta, "train")) == 1
    assert len(WSOLMetadata(images, meta, "test")) == 2


# --------------------------------------------------------------------------- one class
def test_one_class_data_sets_rejected(tmp_path: Path) -> None:
    """A real data set of one class (CUB, ILSVRC, wsolevaluation) is a
    `DataError` saying that at least 2 classes are needed, as the synthetic benchmark does."""
    root = build_cub(tmp_path / "cub")
    (root / "classes.txt").write_text("1 001.Alpha\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 1\n4 1\n")
    with pytest.raises(DataError) as err:
        CUB200(root, "train")
    message = str(err.value)
    assert f"{root / 'classes.txt'} lists 1 class" in message and "at least 2" in message

    ilsvrc = build_ilsvrc(tmp_path / "ilsvrc")
    (ilsvrc / "LOC_synset_mapping.txt").write_text(f"{WNIDS[0]} tench, Tinca tinca\n")
    shutil.rmtree(ilsvrc / "train" / WNIDS[1])
    shutil.rmtree(ilsvrc / "train_boxes")
    stem = "ILSVRC2012_val_00000001"
    (ilsvrc / "bbox_val" / f"{stem}.xml").write_text(voc_xml(stem, [(WNIDS[0], (1, 2, 9, 12))]))
    for split in ("train", "val"):
        with pytest.raises(DataError, match=r"LOC_synset_mapping.txt lists 1 class.*at least 2"):
            ILSVRCLoc(ilsvrc, split)

    images, meta = build_metadata(tmp_path / "meta")
    labels = meta / "test" / "class_labels.txt"
    labels.write_text(labels.read_text().replace(",2\n", ",0\n"))
    with pytest.raises(DataError) as err:
        WSOLMetadata(images, meta, "test")
    message = str(err.value)
    assert f"{labels} gives 1 class" in message and "at least 2" in message
    with pytest.raises(DataError, match=r"num_classes=1.*at least 2"):
        WSOLMetadata(images, meta, "test", num_classes=1)
    assert WSOLMetadata(images, meta, "test", num_classes=3).num_classes == 3  # a test split


# --------------------------------------------------------------------------- paths leave the root
def test_cub_listed_path_outside_root_rejected_before_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An absolute path or a `..` path leaving `images/` in images.txt is a
    `DataError` naming the file and line, raised by the constructor, before any image is
    opened (/etc/passwd included)."""
    root = build_cub(tmp_path / "data" / "cub")
    outside = tmp_path / "outside.jpg"
    write_jpeg(outside, seed=9)
    opened: list[str] = []
    real_open = Image.open

    def spy(fp_: object, *args: object, **kwargs: object) -> Image.Image:
        opened.append(str(fp_))
        return real_open(fp_, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    listing = root / "images.txt"
    for bad in (str(outside), "../../../outside.jpg", "001.Alpha/../../../../outside.jpg",
                "/etc/passwd"):
        _set_cub_path(root, 2, bad)
        with pytest.raises(DataError) as err:
            CUB200(root, "test")
        message = str(err.value)
        assert f"{listing}, line 2: image path {bad!r} lies outside {root / 'images'}" in message
        assert "relative to that folder" in message
    assert opened == []  # nothing outside was opened (nor anything at all)
    _set_cub_path(root, 2, "001.Alpha/../001.Alpha/alpha_2.jpg")  # stays inside: allowed
    assert CUB200(root, "test")[0]["label"] == 0
    # images/ linked to another disk is a data root like any other, `..` inside it included
    (root / "images").rename(tmp_path / "disk")
    (root / "images").symlink_to(tmp_path / "disk", target_is_directory=True)
    assert len(CUB200(root, "test")) == 2
    # but a '..' after a link inside images/ must not leave it once the link is followed
    (tmp_path / "disk" / "001.Alpha" / "deep").symlink_to(tmp_path / "data")
    _set_cub_path(root, 2, "001.Alpha/deep/../outside.jpg")  # = tmp_path / "outside.jpg"
    with pytest.raises(DataError, match=r"line 2: image path .* leave it through a link"):
        CUB200(root, "test")
    assert opened == [str(root / "images" / "001.Alpha" / "../001.Alpha/alpha_2.jpg")]


def test_metadata_listed_path_outside_root_rejected(tmp_path: Path) -> None:
    """A wsolevaluation image id that is absolute or leaves the image root,
    and a mask path that leaves the mask root, are `DataError`s naming the file and line."""
    images, meta = build_metadata(tmp_path / "data")
    outside = tmp_path / "outside.jpg"
    write_jpeg(outside, seed=9)
    split = meta / "test"
    first = next(iter(META_BOXES))
    clean = {name: (split / name).read_text() for name in
             ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")}
    for bad in (str(outside), "../../outside.jpg"):
        for name, text in clean.items():
            (split / name).write_text(text.replace(first, bad))
        with pytest.raises(DataError) as err:
            WSOLMetadata(images, meta, "test")
        assert f"{split / 'image_ids.txt'}, line 1: image id {bad!r} lies outside {images}" \
            in str(err.value)
    for name, text in clean.items():
        (split / name).write_text(text)

    masked = tmp_path / "masked"
    images, meta = build_metadata(masked, masks=True)
    loc = meta / "test" / "localization.txt"
    secret = masked / "secret.png"
    shutil.copy(images / first.replace(".jpg", "_m0.png"), secret)
    loc.write_text(loc.read_text().replace(first.replace(".jpg", "_m0.png"), "../secret.png"))
    with pytest.raises(DataError) as err:
        WSOLMetadata(images, meta, "test")
    assert f"{loc}, line 1: mask path '../secret.png' lies outside {images}" in str(err.value)
