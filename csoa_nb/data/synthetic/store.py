"""The synthetic benchmark on disk: writing (or reusing) a dataset's folder crash-safely.

A folder is generated in a hidden temporary folder beside it and renamed into place at the
end, `manifest.json` (written last, `csoa_nb.base.files.write_atomic`) marking it complete;
temporary folders of killed runs are removed by `clean_stale_tmp`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from csoa_nb.base.files import fsync_dir, write_atomic
from csoa_nb.base.paths import disk_full_error
from csoa_nb.data.common import DataError, abspath
from csoa_nb.data.synthetic.designs import DESIGNS, class_design, class_folder
from csoa_nb.data.synthetic.render import render_sample
from csoa_nb.data.synthetic.spec import (
    FAMILIES,
    SPLITS,
    VAL_PER_CLASS,
    VAL_SPLIT,
    Difficulty,
    dataset_spec,
    spec_hash,
    split_id,
    val_spec,
)

JPEG_QUALITY = 95
#: What a second try does after a full disk, in the full-disk message.
_THEN = "the half-written folder is removed, and the benchmark is generated again"

#: `make_dataset` generates into `root/.tmp-synthetic-<family>-<hash12>-<host8>-<pid>-<random>`
#: (host8: 8 hex digits of sha256 of the host name; pid: the generating process; `make_val_dataset`
#: has `<family>-val-`). Names of older versions had no `<host8>-<pid>-`. Nothing but names of
#: this exact pattern is ever removed (see `clean_stale_tmp`).
_TMP_NAME = re.compile(
    rf"\.tmp-synthetic-(?:{'|'.join(FAMILIES)})-(?:{VAL_SPLIT}-)?[0-9a-f]{{12}}-"
    r"(?:(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-)?[A-Za-z0-9_]+"
)
#: A temporary folder whose owner cannot be checked (made on another host, a name without a
#: pid, or a pid now used by another process) is removed once it is older than this (seconds).
STALE_TMP_SECONDS = 7 * 24 * 3600.0


def _is_complete(folder: Path, digest: str) -> bool:
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("complete") is True and data.get("hash") == digest


def _save_png(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG", compress_level=1)


def _write_dataset(folder: Path, spec: dict[str, Any], digest: str, difficulty: Difficulty,
                   splits: tuple[str, ...] = SPLITS) -> None:
    """Write the images of `splits` (SPLITS, or (VAL_SPLIT,) for a validation folder)."""
    family = difficulty.family
    size = spec["image_size"]
    counts = {"train": spec.get("images_per_class", 0), "test": spec.get("test_per_class", 0),
              VAL_SPLIT: spec.get("val_per_class", 0)}
    images, labels, is_train, boxes, part_boxes = [], [], [], [], []
    image_id = 0
    for k in range(spec["num_classes"]):
        folder_name = class_folder(family, k)
        for sub in ("images", "masks", "parts"):
            (folder / sub / folder_name).mkdir(parents=True)
        number = 0
        for split in splits:
            for i in range(counts[split]):
                image_id += 1
                number += 1
                index = k * counts[split] + i
                key = [spec["seed"], split_id(family, split), index]
                sample = render_sample(difficulty, size, k, key, train=split == "train")
                stem = f"{folder_name}/{DESIGNS[family].class_prefix}_{k + 1:02d}_{number:04d}"
                Image.fromarray(sample["image"]).save(
                    folder / "images" / f"{stem}.jpg",
                    format="JPEG",
                    quality=JPEG_QUALITY,
                    subsampling=0,
                )
                _save_png(sample["mask"], folder / "masks" / f"{stem}.png")
                _save_png(sample["part_mask"], folder / "parts" / f"{stem}.png")
                x0, y0, x1, y1 = sample["box"]
                px0, py0, px1, py1 = sample["part_box"]
                images.append(f"{image_id} {stem}.jpg")
                labels.append(f"{image_id} {k + 1}")
                is_train.append(f"{image_id} {int(split == 'train')}")
                boxes.append(f"{image_id} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}")
                part_boxes.append(f"{image_id} {px0:.1f} {py0:.1f} {px1 - px0:.1f} {py1 - py0:.1f}")
    tables = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": is_train,
        "bounding_boxes.txt": boxes,
        "part_boxes.txt": part_boxes,
        "classes.txt": [f"{k + 1} {class_folder(family, k)}" for k in range(spec["num_classes"])],
    }
    for name, lines in tables.items():
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {
        "generator": "csoa_nb.data.synthetic",
        "hash": digest,
        "spec": spec,
        "family": family,
        "num_images": {split: counts[split] * spec["num_classes"] for split in splits},
        "classes": [
            {"folder": class_folder(family, k), **class_design(family, k)}
            for k in range(spec["num_classes"])
        ],
        "complete": True,
    }
    write_atomic(folder / "manifest.json",
                 (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"),
                 then=_THEN)


def make_dataset(
    root: str | os.PathLike[str],
    num_classes: int,
    images_per_class: int,
    image_size: int,
    seed: int,
    *,
    test_per_class: int | None = None,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> Path:
    """Write (or reuse) a synthetic CUB-200-2011-format dataset of square `image_size`-pixel
    images; return its folder `root/synthetic-<family>-<hash12>` (hash of all arguments and
    `GENERATOR_VERSION`). Built in a hidden temporary folder renamed into place, so a killed run
    never leaves a half dataset that looks complete; one with a matching `manifest.json` is
    reused. Image `i` of a split uses `default_rng([seed, split_id, i])`; test images (default
    `images_per_class // 2` per class) are never occluded.
    """
    if not isinstance(difficulty, Difficulty):
        raise ValueError(f"difficulty must be a Difficulty, got {type(difficulty).__name__}")
    spec = dataset_spec(num_classes, images_per_class, image_size, seed, test_per_class, difficulty)
    digest = spec_hash(spec)
    return _materialize(abspath(root), f"synthetic-{difficulty.family}-{digest}", spec, digest,
                        difficulty, SPLITS)


def make_val_dataset(
    root: str | os.PathLike[str],
    num_classes: int,
    image_size: int,
    seed: int,
    *,
    per_class: int = VAL_PER_CLASS,
    difficulty: Difficulty = Difficulty(),  # noqa: B008 - frozen dataclass, immutable
) -> Path:
    """Write (or reuse) the validation split of `make_dataset(root, num_classes, ..., image_size,
    seed, difficulty=difficulty)`, on which Choe et al. (CVPR 2020) tune hyperparameters and CAM
    thresholds; return its folder `root/synthetic-<family>-val-<hash12>`. `per_class` unoccluded
    images per class with boxes, masks and parts; image `i` of class `k` from
    `default_rng([seed, split_id(family, "val"), k * per_class + i])`; `is_train` 0 throughout, so
    `CUB200(folder, "test")` reads it.
    """
    if not isinstance(difficulty, Difficulty):
        raise ValueError(f"difficulty must be a Difficulty, got {type(difficulty).__name__}")
    spec = val_spec(num_classes, image_size, seed, per_class, difficulty)
    digest = spec_hash(spec)
    name = f"synthetic-{difficulty.family}-{VAL_SPLIT}-{digest}"
    return _materialize(abspath(root), name, spec, digest, difficulty, (VAL_SPLIT,))


def _materialize(root_path: Path, name: str, spec: dict[str, Any], digest: str,
                 difficulty: Difficulty, splits: tuple[str, ...]) -> Path:
    """`root_path / name`, written by `_write_dataset` unless a complete one is there."""
    final = root_path / name
    clean_stale_tmp(root_path)
    if final.exists():
        if _is_complete(final, digest):
            return final
        raise DataError(
            f"{final} exists but is not a complete synthetic dataset with hash {digest} (no valid "
            "manifest.json): delete that folder (it is not ours to overwrite) or use another root"
        )
    prefix = f".tmp-{final.name}-{_host_tag()}-{os.getpid()}-"
    tmp: Path | None = None
    try:
        root_path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=root_path))
        _write_dataset(tmp, spec, digest, difficulty, splits)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, digest):  # else another process finished it first
                raise
        else:
            fsync_dir(root_path)
    except OSError as error:
        raise disk_full_error(error, root_path, f"the synthetic benchmark {name}", _THEN) from error
    finally:  # after a successful rename `tmp` is gone; otherwise it is half-written
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _host_tag() -> str:
    """8 hex digits identifying this host in temporary folder names (hash of the host name)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host may still run (True when that cannot be told)."""
    if os.name != "posix" or pid <= 0:  # on Windows, os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists but belongs to another user
        return True
    return True


def clean_stale_tmp(root: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary folders of `make_dataset` runs that died (killed, power cut) in `root`.

    Only direct sub-folders of `root` whose name matches `_TMP_NAME` exactly, that are real
    folders (not links) owned by the current user are candidates; one is removed when its
    name says it was made on this host by a process that no longer exists, or when it is
    older than `STALE_TMP_SECONDS`. A folder of a live generation (its pid still runs) is kept,
    and nothing else in `root` is ever touched. Returns the removed folders; errors (an
    unreadable `root`, a folder another process removes first) are ignored.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return removed
    host, now = _host_tag(), time.time()
    for entry in entries:
        match = _TMP_NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            continue
        pid = match["pid"]
        owner_gone = pid is not None and match["host"] == host and not _pid_alive(int(pid))
        if owner_gone or now - info.st_mtime > STALE_TMP_SECONDS:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def part_area_ratios(root: str | os.PathLike[str]) -> np.ndarray:
    """Part area / object area of every image of a dataset written by `make_dataset`.

    Measured from the saved masks: pixels of `parts/<stem>.png` over pixels of
    `masks/<stem>.png` (the object = body + part), in the order of `images.txt`. An image
    whose part is occluded (train split only) has an empty part mask and ratio 0. Returns a
    float64 array with one value per image.
    """
    folder = abspath(root)
    listing = folder / "images.txt"
    if not listing.is_file() or not (folder / "parts").is_dir():
        raise DataError(
            f"{folder} has no images.txt or parts/ folder: pass a folder made by "
            "csoa_nb.data.synthetic.make_dataset"
        )
    ratios = []
    for line in listing.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        stem = Path(line.strip().split(maxsplit=1)[1]).with_suffix(".png")
        part = np.asarray(Image.open(folder / "parts" / stem)) >= 128
        mask = np.asarray(Image.open(folder / "masks" / stem)) >= 128
        ratios.append(part.sum() / max(int(mask.sum()), 1))
    return np.asarray(ratios, dtype=np.float64)
