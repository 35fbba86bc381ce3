"""The identity of a data set, for the run cache: what a run was trained and tested on.

A run's config hash must change when its data changes, and must not change when the same data
moves to another folder. So the hash holds a fingerprint of the data's *content*, never of its
path:

- the synthetic benchmark: its spec hash (`csoa_nb.data.synthetic.spec_hash`, which covers the
  generator's version and every knob);
- CUB-200-2011: the five list files (images, labels, split, boxes, classes);
- ILSVRC: the class list, the image names of `train/` and `val/`, and the validation boxes
  (`bbox_val/*.xml`), not the pixels of every image;
- wsolevaluation metadata: every file of the metadata folder's splits.

A fingerprint is cached by the listed files' sizes and modification times, so the hash of a
config costs a few `stat` calls after the first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

#: What the fingerprint is when the data is not there (a run cannot be trained or found then).
ABSENT = "absent"
CUB_LISTS = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)


def resolve_root(dataset: str, root: str | os.PathLike[str]) -> Path:
    """The folder a real data set is read from: `root` or its official sub-folder
    (`CUB_200_2011/`, `ILSVRC/`) when `root` is the parent of one."""
    root = Path(root)
    if dataset == "cub":
        nested = root / "CUB_200_2011"
        return nested if (nested / "images.txt").exists() else root
    if dataset == "ilsvrc":
        nested = root / "ILSVRC"
        return nested if nested.is_dir() else root
    return root


def _cub_files(root: Path) -> Iterator[tuple[str, Path]]:
    for name in CUB_LISTS:
        yield name, root / name


def _metadata_files(metadata_dir: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(metadata_dir.rglob("*.txt")):
        yield path.relative_to(metadata_dir).as_posix(), path


def _stat_key(files: list[tuple[str, Path]]) -> tuple[tuple[str, int, int], ...] | None:
    key = []
    for name, path in files:
        try:
            info = path.stat()
        except OSError:
            return None
        key.append((name, info.st_size, info.st_mtime_ns))
    return tuple(key)


def _digest_files(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


@lru_cache(maxsize=64)
def _cached_digest(kind: str, folder: str, stat_key: tuple[tuple[str, int, int], ...]) -> str:
    del stat_key  # part of the cache key only: a changed file is read again
    base = Path(folder)
    files = list(_cub_files(base) if kind == "cub" else _metadata_files(base))
    return _digest_files(files)


def _ilsvrc_digest(root: Path) -> str:
    """Class list, image names of train/ and val/, and the validation boxes' XML."""
    digest = hashlib.sha256()
    synsets = root / "LOC_synset_mapping.txt"
    if synsets.is_file():
        digest.update(b"synsets\0" + synsets.read_bytes())
    for split in ("train", "val"):
        folder = root / split
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        digest.update(f"{split}\0".encode() + "\n".join(names).encode())
    for xml in sorted((root / "bbox_val").glob("*.xml")):
        digest.update(xml.name.encode() + b"\0" + xml.read_bytes())
    return digest.hexdigest()[:12]


@lru_cache(maxsize=8)
def _cached_ilsvrc(folder: str, mtimes: tuple[int, ...]) -> str:
    del mtimes
    return _ilsvrc_digest(Path(folder))


def data_fingerprint(dataset: str, root: str | os.PathLike[str], metadata_dir: str = "") -> str:
    """12 hex digits identifying the content of a real data set, or `ABSENT` if it is missing.

    `dataset` is one of "cub", "ilsvrc", "wsol-metadata" (the synthetic benchmark is
    identified by its spec hash instead, see `RunConfig.data_identity`). The digest depends on
    the files' content and relative names only, so a moved data set keeps its fingerprint.
    """
    root = resolve_root(dataset, root)
    if dataset == "ilsvrc":
        folders = [root / "train", root / "val", root / "bbox_val"]
        try:
            mtimes = tuple(f.stat().st_mtime_ns for f in folders)
        except OSError:
            return ABSENT
        return _cached_ilsvrc(str(root.resolve()), mtimes)
    if dataset == "cub":
        kind, folder = "cub", root
        files = list(_cub_files(root))
    elif dataset == "wsol-metadata":
        kind, folder = "meta", Path(metadata_dir)
        files = list(_metadata_files(folder)) if folder.is_dir() else []
    else:
        raise ValueError(f"no fingerprint for dataset {dataset!r}: cub, ilsvrc, wsol-metadata")
    stat_key = _stat_key(files) if files else None
    if stat_key is None:
        return ABSENT
    return _cached_digest(kind, str(folder.resolve()), stat_key)
