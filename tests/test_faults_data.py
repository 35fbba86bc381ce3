"""Regression tests for faults of the data layer.

One test per fault; each builds a tiny dataset in the real on-disk format in `tmp_path`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import (
    CUB_CLASSES,
    CUB_ROWS,
    META_BOXES,
    WNIDS,
    H,
    W,
    add_train_split,
    build_cub,
    build_ilsvrc,
    build_metadata,
)
from PIL import Image

from csoa_nb.data import CUB200, DataError, ILSVRCLoc, WSOLMetadata, load_image
from csoa_nb.data import synthetic as syn
from csoa_nb.data.common import load_mask
from csoa_nb.data.synthetic import store


def test_16bit_png_decodes_to_8bit_scale(tmp_path: Path) -> None:
    """A 16-bit PNG decodes to v >> 8, not to clipped white."""
    values = np.array([[0, 32768, 65535, 30000, 255]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # mode "I;16", stored as a 16-bit grey PNG
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I")  # what this Pillow hands to _decode
    image = np.asarray(load_image(path))
    # 0 >> 8 = 0, 32768 >> 8 = 128, 65535 >> 8 = 255, 30000 >> 8 = 117, 255 >> 8 = 0
    assert image.shape == (1, 5, 3)
    assert image[0, :, 0].tolist() == [0, 128, 255, 117, 0]
    assert (image == image[..., :1]).all()  # grey: R = G = B
    # a 32-bit "I" image holding 16-bit data (how older Pillows open such PNGs) scales alike
    wide = tmp_path / "wide.tif"
    Image.fromarray(values.astype(np.int32)).save(wide)
    assert np.asarray(load_image(wide))[0, :, 1].tolist() == [0, 128, 255, 117, 0]
    # a 16-bit mask is thresholded on the 0..255 scale: 30000 -> 117 < 128 is background
    assert np.asarray(load_mask(path, threshold=128))[0].tolist() == [0, 255, 255, 0, 0]
    # 8-bit data is untouched
    grey8 = tmp_path / "grey8.png"
    Image.fromarray(np.array([[0, 1, 127, 128, 255]], dtype=np.uint8)).save(grey8)
    assert np.asarray(load_image(grey8))[0, :, 2].tolist() == [0, 1, 127, 128, 255]


def test_metadata_duplicate_ids_rejected(tmp_path: Path) -> None:
    """A repeated image id in class_labels.txt / image_sizes.txt is an error
    naming the file and both lines, not a silent last-line-wins."""
    images, meta = build_metadata(tmp_path)
    first = next(iter(META_BOXES))  # "test/a/img1.jpg", label 0 on line 1
    labels = meta / "test" / "class_labels.txt"
    clean_labels = labels.read_text()
    labels.write_text(clean_labels + f"{first},1\n")  # line 3 says label 1
    with pytest.raises(DataError) as err:
        WSOLMetadata(images, meta, "test")
    message = str(err.value)
    assert f"{labels}, line 3: image id '{first}' already appeared on line 1" in message
    assert "(label 0 there, label 1 here)" in message
    labels.write_text(clean_labels)

    sizes = meta / "test" / "image_sizes.txt"
    sizes.write_text(sizes.read_text() + f"{first},{W + 5},{H}\n")
    with pytest.raises(DataError, match=r"image_sizes.txt, line 3: image id .* on line 1"):
        WSOLMetadata(images, meta, "test")
    sizes.unlink()
    ids = meta / "test" / "image_ids.txt"
    ids.write_text(ids.read_text() + f"{first}\n")
    with pytest.raises(DataError, match=r"image_ids.txt, line 3: image id .* on line 1"):
        WSOLMetadata(images, meta, "test")


def _crlf_with_trailing_blanks(path: Path, tails: tuple[str, ...] = ("   ", "\t", " \t ")) -> None:
    """Rewrite a text file with Windows line ends, trailing blanks and a UTF-8 byte-order mark."""
    lines = path.read_text().splitlines()
    text = "".join(f"{line}{tails[i % len(tails)]}\r\n" for i, line in enumerate(lines))
    path.write_bytes(("\ufeff" + text).encode("utf-8"))


def test_list_files_tolerate_crlf_and_trailing_blanks(tmp_path: Path) -> None:
    """Trailing blanks / CRLF / BOM after a path in a list file of CUB,
    ILSVRC or wsolevaluation metadata do not turn an existing image into "does not exist";
    a path with an inner space still works."""
    root = build_cub(tmp_path / "cub")
    spaced = "001.Alpha/alpha 1.jpg"  # CUB_ROWS[0] moved to a path with a space
    (root / "images" / CUB_ROWS[0][1]).rename(root / "images" / spaced)
    listing = root / "images.txt"
    listing.write_text(listing.read_text().replace(CUB_ROWS[0][1], spaced))
    for name in ("images.txt", "classes.txt", "image_class_labels.txt", "bounding_boxes.txt"):
        _crlf_with_trailing_blanks(root / name)
    train = CUB200(root, "train")
    assert [p.relative_to(root / "images").as_posix() for p in train.image_paths] == [
        spaced,
        CUB_ROWS[2][1],
    ]
    assert train.class_names == CUB_CLASSES
    assert train[0]["boxes"].tolist() == [[2.0, 3.0, 12.0, 11.0]]
    assert len(CUB200(root, "test")) == 2

    ilsvrc = build_ilsvrc(tmp_path / "ilsvrc")
    _crlf_with_trailing_blanks(ilsvrc / "LOC_synset_mapping.txt")
    ds = ILSVRCLoc(ilsvrc, "val")
    assert ds.wnids == WNIDS
    assert ds.class_names == ["tench, Tinca tinca", "goldfish, Carassius auratus"]

    images, meta = build_metadata(tmp_path / "meta")
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        _crlf_with_trailing_blanks(meta / "test" / name)
    ds = WSOLMetadata(images, meta, "test")
    assert ds.image_ids == list(META_BOXES) and ds.labels == [0, 2]
    assert ds[1]["boxes"].tolist() == [[0.0, 0.0, 5.0, 5.0], [10.0, 6.0, 20.0, 16.0]]


def test_metadata_train_split_needs_no_localization(tmp_path: Path) -> None:
    """A wsolevaluation train split without (or with an empty, as published
    for ILSVRC/OpenImages) localization.txt loads with whole-image boxes; a test split
    without it raises naming the file and what to add."""
    images, meta = build_metadata(tmp_path)
    add_train_split(images, meta)
    train_loc = meta / "train" / "localization.txt"
    train_loc.unlink()
    ds = WSOLMetadata(images, meta, "train")
    assert len(ds) == 2 and not ds.has_masks
    assert [ds[i]["boxes"].tolist() for i in range(2)] == [[[0.0, 0.0, float(W), float(H)]]] * 2
    train_loc.write_text("")
    assert WSOLMetadata(images, meta, "train")[1]["boxes"].tolist() == [[0.0, 0.0, W, H]]

    test_loc = meta / "test" / "localization.txt"
    test_loc.unlink()
    with pytest.raises(DataError) as err:
        WSOLMetadata(images, meta, "test")
    message = str(err.value)
    assert f"{test_loc} is missing" in message
    assert "add them to that file" in message and "require_localization" not in message
    test_loc.write_text("\n")
    with pytest.raises(DataError, match=r"localization.txt is empty: the test split"):
        WSOLMetadata(images, meta, "test")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_make_dataset_removes_stale_tmp_folders_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `.tmp-synthetic-*` folder of a killed generation is removed by the
    next make_dataset; live, unrelated and user folders beside it are untouched."""
    spec = dict(num_classes=2, images_per_class=1, image_size=16, seed=0, test_per_class=1)
    digest = syn.spec_hash(syn.dataset_spec(**spec))
    host = store._host_tag()
    base = f".tmp-synthetic-benchmark-{digest}"
    stale = tmp_path / f"{base}-{host}-{_dead_pid()}-k1ll3d_x"
    live = tmp_path / f"{base}-{host}-{os.getpid()}-running"  # this process: alive
    old = tmp_path / f"{base}-abc12def"  # an older version's name: no pid, goes by age
    recent = tmp_path / f"{base}-zz99yy88"
    other_host = tmp_path / f"{base}-{'0' * 8 if host != '0' * 8 else '1' * 8}-1-remote"
    users = [tmp_path / "my-notes", tmp_path / ".tmp-synthetic-mine", tmp_path / f"{base}x"]
    for folder in (stale, live, old, recent, other_host, *users):
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "a.jpg").write_bytes(b"x")
    week_ago = time.time() - syn.STALE_TMP_SECONDS - 60
    os.utime(old, (week_ago, week_ago))
    as_file = tmp_path / f"{base}-{host}-{_dead_pid()}-afile"  # a file, not a folder
    as_file.write_text("mine")

    out = syn.make_dataset(tmp_path, **spec)
    assert out == tmp_path / f"synthetic-benchmark-{digest}" and (out / "manifest.json").is_file()
    assert not stale.exists() and not old.exists()
    for kept in (live, recent, other_host, *users):
        assert (kept / "images" / "a.jpg").read_bytes() == b"x"
    assert as_file.read_text() == "mine"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(base))
    assert left == sorted(p.name for p in (live, recent, other_host, users[2], as_file))

    # a generation that fails removes its own temporary folder (try/finally)
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_write_dataset", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        syn.make_dataset(tmp_path, **{**spec, "seed": 1})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(base)) == left
    assert not any(
        p.name.startswith(".tmp-synthetic-") and str(os.getpid()) in p.name and p != live
        for p in tmp_path.iterdir()
    )
