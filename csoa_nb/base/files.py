"""Crash-safe file writes: the one way the project writes a file that must never be torn.

A file is written to a temporary name beside it (`.<name>.<pid>.tmp`), fsynced, renamed over
its target and its folder fsynced, so a kill or a power cut leaves the old file or the new
one, never half of one. The temporary file of a failed write is removed; those of a killed
process are removed by `remove_stale_tmp`. A full disk raises the project's one full-disk
message (`csoa_nb.base.paths.disk_full_error`), whose `then` says what a second try does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from csoa_nb.base.paths import disk_full_error


def tmp_name(path: Path) -> Path:
    """The temporary file `.<name>.<pid>.tmp` beside `path` that `replace_atomic` writes."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_dir(folder: Path) -> None:
    """fsync `folder` itself, so a rename or a new entry in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomic(path: Path, write: Callable[[Path], None], *, then: str) -> None:
    """`write(tmp)`, fsync, rename over `path`, fsync the folder; no temp file survives a
    failure, and a full disk says so (naming `path`'s folder and file, and `then`).

    `write` writes the whole file at the path it is given (e.g. `torch.save` into an open
    file, `np.savez`), for writers that cannot hand over their bytes."""
    tmp = tmp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise disk_full_error(error, path.parent, path.name, then) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, *, then: str) -> None:
    """Write `data` to a temp file beside `path`, fsync, rename over `path` (`replace_atomic`)."""
    replace_atomic(path, lambda tmp: tmp.write_bytes(data), then=then)


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete the temporary files (`.<name>.<pid>.tmp`) that `replace_atomic` left in `folder`
    when its process was killed; returns them. Call it when no live writer can be there (e.g.
    holding the folder's lock). Only names of that exact form are touched."""
    removed = []
    for path in folder.glob(".*.tmp"):
        stem, _, pid = path.name[: -len(".tmp")].rpartition(".")
        if stem and pid.isdigit() and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
