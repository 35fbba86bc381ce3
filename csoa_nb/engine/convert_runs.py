"""Rewrite run folders of the old format (`.pt` torch pickles) into the run store's arrays.

    python -m csoa_nb.engine.convert_runs [STORE ...]      # default: results/runs

Each run folder of each store (a folder with `config.json`) that holds an old file
(`csoa_nb.engine.arrays.LEGACY_FILES`) is converted under its run lock, one kind of arrays
at a time: the old file is read (`weights_only=True`), written in the new form
(`csoa_nb.engine.runs.save_arrays`), read back, and compared with what it was read from;
the old file is removed only when every array came back bit for bit (the sample: its kept
classes). A kill at any point leaves a folder that a second run of the command finishes.
Nothing is retrained; the scores in `results.json` / `protocol.json` are not touched
(`bench/rescore.py` re-scores every run from the converted arrays and compares).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from csoa_nb.base.paths import project_path
from csoa_nb.engine.arrays import FILES, LEGACY_FILES
from csoa_nb.engine.runs import RunStoreError, load_arrays, run_lock, save_arrays

__all__ = ["convert_run", "convert_store", "same_arrays"]


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, torch.Tensor):
        return (isinstance(new, torch.Tensor) and old.dtype == new.dtype
                and old.shape == new.shape and torch.equal(old, new))
    if isinstance(old, (list, tuple)):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    return old == new


def same_arrays(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys of `old` (a format-1 dict) that `new` (read back) does not reproduce bit for
    bit; the sample's maps are compared on the classes it keeps (`new["classes"]`)."""
    differ = []
    for key, value in old.items():
        if kind in ("test", "val") and key == "masks":
            continue
        if kind == "sample" and key in ("cam_last", "cam_feature") and value is not None:
            classes = new["classes"].long()
            rows = torch.arange(len(classes))[:, None]
            kept_equal = _same(value[rows, classes], new[key][rows, classes])
            if not kept_equal or not torch.equal(classes[:, 0], old["labels"].long()):
                differ.append(key)
        elif not _same(value, new.get(key)):
            differ.append(key)
    return differ


def convert_run(run_dir: Path, say: Callable[[str], None] = print) -> list[str]:
    """Convert the old files of one run folder; returns the kinds converted.

    Raises:
        RunStoreError: an old file is unreadable, or its arrays did not come back equal (the
            old file is kept then).
    """
    done = []
    with run_lock(run_dir, say=say):
        for kind, name in LEGACY_FILES.items():
            legacy = run_dir / name
            if not legacy.is_file():
                continue
            try:
                old = torch.load(legacy, map_location="cpu", weights_only=True)
            except Exception as error:  # noqa: BLE001 - any unpickling failure: same message
                raise RunStoreError(f"{legacy} is not a readable run file ({type(error).__name__}"
                                    f": {error}); nothing was converted in {run_dir}") from None
            save_arrays(run_dir, kind, old)
            differ = same_arrays(kind, old, load_arrays(run_dir, kind))
            if differ:
                (run_dir / FILES[kind]).unlink()
                raise RunStoreError(f"{legacy}: {differ} did not come back bit for bit from "
                                    f"{FILES[kind]}; the old file is kept")
            legacy.unlink()
            done.append(kind)
    return done


def convert_store(store: Path, say: Callable[[str], None] = print) -> int:
    """Convert every run folder of `store`; returns how many folders changed."""
    folders = sorted(p.parent for p in store.glob("*/config.json")
                     if any((p.parent / n).is_file() for n in LEGACY_FILES.values()))
    for folder in tqdm(folders, desc=f"convert {store.name}", unit="run", disable=not folders):
        convert_run(folder, say=say)
    return len(folders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.convert_runs",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stores", nargs="*", default=["results/runs"],
                        help="folders that hold run folders (default: results/runs)")
    args = parser.parse_args(argv)
    for name in args.stores:
        store = project_path(name) if not Path(name).is_absolute() else Path(name)
        if not store.is_dir():
            print(f"error: {store} is not a folder of runs", file=sys.stderr)
            return 2
        try:
            count = convert_store(store)
        except RunStoreError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{store}: {count} run folders converted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
