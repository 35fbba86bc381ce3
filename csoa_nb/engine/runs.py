"""The run folder: where a run's files live, how they are written safely, how they are read back.

A run of config `c` lives in `<output_dir>/<c.hash>/`:

| file | written | holds |
| --- | --- | --- |
| `config.json` | at start | the full `RunConfig` |
| `metrics.jsonl` | each epoch | losses by term, alpha, lr, train accuracy, validation loc/cls |
| `checkpoint.pt` | each epoch | model, optimizer, scheduler, epoch, RNG states (atomic) |
| `results.json` | at the end | final test metrics, timings, the command that made it |
| `eval_maps.npz` | at the end | ground-truth-class CAMs of every test image, class scores |
| `cams.npz` | at the end | maps of two classes of a few test images, for figures and widgets |
| `model.pt` | at the end | the final weights (`state_dict`; not committed, like `checkpoint.pt`) |
| `val_maps.npz` | at the end | the validation split's maps (`csoa_nb.engine.protocol`) |
| `protocol.json` | at the end | theta chosen on the validation split; scores there |

The arrays that the data set fixes (labels, boxes, the sample's images and masks) are stored
once for all the runs of a store, in `<store>/shared/` (`csoa_nb.engine.arrays`, which also
says how the `.npz` files are written); `save_arrays` / `load_arrays` write and read a run's
arrays of one kind in the dict form the engine works with.

Every file is written to a temporary name, fsynced and renamed (and the folder fsynced;
`csoa_nb.base.files`), so a killed run never leaves a torn file; temporary files of a failed
write are removed, and those of a killed process are removed when the run is next opened.
`metrics.jsonl` is appended one line per epoch; a torn last line (a kill or a full disk during
the append) is dropped on reading.
A finished run (one with `results.json`) found under `output_dir` or any of `results_dirs` (the
committed `results/runs/`) is loaded instead of retrained. A run folder is trained by one process
at a time: `run_lock` holds an exclusive `fcntl` lock on `<run folder>/.lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from csoa_nb.base.cache import find_cached
from csoa_nb.base.files import replace_atomic, write_atomic
from csoa_nb.base.paths import disk_full_error, display_path, project_path
from csoa_nb.core.scores import MapSet, SampleCams, Scores
from csoa_nb.engine.arrays import (
    FILES,
    LEGACY_FILES,
    SHARED_DIR,
    join_arrays,
    npz_bytes,
    read_npz,
    shared_name,
    split_arrays,
)
from csoa_nb.engine.config import RunConfig


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: truncated, foreign, or from another config."""


class RunStoreError(ValueError):
    """A file of a run folder that cannot be read (corrupt, foreign); the message names it."""


#: The lock file inside a run folder (see `run_lock`).
LOCK_NAME = ".lock"
#: A finished run's final weights (a `state_dict`).
MODEL_FILE = "model.pt"


@dataclass
class RunResult:
    """A finished run: its config, folder, final scores and per-epoch history."""

    config: RunConfig
    run_dir: Path
    scores: Scores
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False
    wall_time_s: float = 0.0

    @property
    def metrics(self) -> dict[str, float]:
        """The scores' flat form, as in `results.json` and `runs_frame` (`Scores.to_record`)."""
        return self.scores.to_record()

    def cams(self) -> SampleCams:
        """The sample of test images and CAMs saved for figures (`cams.npz`)."""
        return load_arrays(self.run_dir, "sample")

    def eval_maps(self) -> MapSet:
        """Ground-truth-class CAMs and class scores of the whole test set (`eval_maps.npz`)."""
        return load_arrays(self.run_dir, "test")


def run_dir_for(config: RunConfig) -> Path:
    return project_path(config.output_dir) / config.hash


def find_run(config: RunConfig) -> Path | None:
    """The folder of a finished run with this config's hash, or None."""
    bases = (project_path(base) for base in (config.output_dir, *config.results_dirs))
    return find_cached(config.hash, bases, "results.json")


_FIX = "move the run folder away (or delete it) to retrain the run"


def read_json(path: Path, what: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from a run folder, with `keys` present; else `RunStoreError` naming it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunStoreError(f"{path} does not exist: {path.parent} is not a finished run "
                            "(train it with `python -m csoa_nb.engine.train`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunStoreError(f"{path} is not a readable {what} ({error}); {_FIX}") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise RunStoreError(f"{path} is not a csoa_nb {what} (missing {missing}); {_FIX}")
    return data


def read_run_config(run_dir: str | Path, results: dict[str, Any] | None = None) -> RunConfig:
    """The `config.json` of a run folder, checked against the folder: the folder is named by
    its hash, and so is the run of its `results.json` (when finished). The hash is taken on the
    data identity that `results.json` records, so a finished run is checked without its data
    (`results`: that file's record, when the caller has read it already).

    Raises:
        RunStoreError: a file that is unreadable, not a config, or from another run (edited or
            copied in); the message names it and the fix.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    saved = read_json(config_path, "run config")
    try:
        config = RunConfig.from_dict(saved)
    except (TypeError, ValueError) as error:
        raise RunStoreError(f"{config_path} is not a valid run config ({error}); {_FIX}") from None
    results_path = run_dir / "results.json"
    data = None
    if results is None and results_path.is_file():
        results = read_json(results_path, "results file", ("metrics",))
    if results is not None:
        owner = results.get("config_hash")
        if owner is not None and owner != run_dir.name:
            raise RunStoreError(
                f"{results_path} belongs to run {owner}, not to the folder {run_dir.name}: it was "
                f"copied from another run folder. Restore the run's own file, or {_FIX}")
        data = results.get("data")
    made = config.hash if data is None else config.hash_on(str(data))
    if made != run_dir.name:
        raise RunStoreError(
            f"{config_path} hashes to {made}, not to its folder's name {run_dir.name}: it was "
            f"edited or copied from another run, so it does not describe the run's files. "
            f"Restore the run's own config.json (git checkout), or {_FIX}")
    return config


def load_run(run_dir: str | Path, cached: bool = True) -> RunResult:
    run_dir = Path(run_dir)
    results = read_json(run_dir / "results.json", "results file", ("metrics",))
    config = read_run_config(run_dir, results)
    try:
        scores = Scores.from_record(results["metrics"], config.theta)
    except ValueError as error:
        raise RunStoreError(
            f"{run_dir / 'results.json'} does not hold a run's metrics ({error}); {_FIX}"
        ) from None
    return RunResult(
        config=config,
        run_dir=run_dir,
        scores=scores,
        history=read_jsonl(run_dir / "metrics.jsonl"),
        cached=cached,
        wall_time_s=float(results.get("wall_time_s", 0.0)),
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn *last* line is dropped with a warning (a kill
    or a full disk during `append_jsonl`); a bad line elsewhere raises `RunStoreError`."""
    if not path.is_file():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for position, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if position == len(lines) - 1:
                warnings.warn(f"{path}: dropping the torn last line {number} ({error})",
                              RuntimeWarning, stacklevel=2)
                break
            raise RunStoreError(f"{path}, line {number}: not JSON ({error}); {_FIX}") from None
    return records


#: What a second try does after a full disk, in the run store's messages.
_RESUME = "the run resumes from its last checkpoint"


def _disk_error(error: OSError, path: Path) -> OSError:
    return disk_full_error(error, path.parent, path.name, _RESUME)


def write_json(path: Path, payload: Any) -> None:
    write_atomic(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode(),
                 then=_RESUME)


def save_torch(path: Path, payload: Any) -> None:
    """`torch.save` through a temporary file, fsync and an atomic rename (`replace_atomic`).
    torch writes into a Python file object, so a full disk is the `OSError` it is (given a
    path, torch's own writer says only "unexpected pos")."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)

    replace_atomic(path, write, then=_RESUME)


CONVERT_COMMAND = "python -m csoa_nb.engine.convert_runs"


def save_arrays(run_dir: Path, kind: str, maps: MapSet | SampleCams | dict[str, Any]) -> Path:
    """Write a run's arrays of `kind` (`csoa_nb.engine.arrays.FILES`): its own into its folder,
    the data set's into `<store>/shared/` unless that file is there already (same name, same
    bytes). Each file is written atomically; returns the run's file."""
    own, shared = split_arrays(kind, maps)
    meta: dict[str, Any] = {"kind": kind}
    if shared:
        name = shared_name(kind, shared)
        meta["shared"] = name
        path = run_dir.parent / SHARED_DIR / f"{name}.npz"
        if not path.is_file():
            try:
                path.parent.mkdir(exist_ok=True)
            except OSError as error:
                raise _disk_error(error, path) from error
            write_atomic(path, npz_bytes(shared, {"kind": kind}), then=_RESUME)
    path = run_dir / FILES[kind]
    write_atomic(path, npz_bytes(own, meta), then=_RESUME)
    return path


def _read_arrays(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return read_npz(path)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, lzma, numpy and JSON errors alike
        raise RunStoreError(
            f"{path} is not a readable array file of the run store ({type(error).__name__}: "
            f"{error}); it may be truncated: {_FIX}"
        ) from None


def load_arrays(run_dir: str | Path, kind: str) -> MapSet | SampleCams | dict[str, Any]:
    """A run's arrays of `kind` (`save_arrays`), joined with the data set's shared arrays.

    Raises:
        RunStoreError: the file is missing, unreadable, or in the old format (the message
            names the file and the command that converts it).
    """
    run_dir = Path(run_dir)
    path = run_dir / FILES[kind]
    legacy = run_dir / LEGACY_FILES[kind]
    if not path.is_file():
        if legacy.is_file():
            raise RunStoreError(
                f"{legacy} is in the run store's old format (a torch pickle, format 1): convert "
                f"the store with `{CONVERT_COMMAND} {run_dir.parent}` (no retraining; every "
                "array is kept bit for bit)")
        raise RunStoreError(f"{path} does not exist: {run_dir} is not a finished run with "
                            f"its {kind} arrays")
    own, manifest = _read_arrays(path)
    if manifest.get("kind") != kind:
        raise RunStoreError(f"{path} holds {manifest.get('kind')!r} arrays, not {kind!r}; {_FIX}")
    shared: dict[str, Any] = {}
    if manifest.get("shared"):
        shared_path = run_dir.parent / SHARED_DIR / f"{manifest['shared']}.npz"
        if not shared_path.is_file():
            raise RunStoreError(
                f"{shared_path} does not exist: {path} keeps its data set's arrays there. A run "
                f"folder copied alone needs the {SHARED_DIR}/ folder of its store beside it: "
                f"copy it into {run_dir.parent}")
        shared, _ = _read_arrays(shared_path)
    return join_arrays(kind, own, shared)


def has_arrays(run_dir: str | Path, kind: str) -> bool:
    """Whether the run folder holds arrays of `kind`, in either format."""
    run_dir = Path(run_dir)
    return (run_dir / FILES[kind]).is_file() or (run_dir / LEGACY_FILES[kind]).is_file()


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    try:
        with open(path, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise _disk_error(error, path) from error


def truncate_jsonl(path: Path, keep_epochs: int) -> None:
    """Drop history lines of epochs that the checkpoint does not hold (after a kill)."""
    records = [r for r in read_jsonl(path) if r.get("epoch", 0) <= keep_epochs]
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode(),
                 then=_RESUME)


@contextlib.contextmanager
def run_lock(folder: Path, say: Callable[[str], None] = print) -> Iterator[None]:
    """Hold an exclusive lock on `folder/.lock` (created with `folder`) for the block.

    A second process asking for the same folder says which process holds it and waits; the
    lock is released when the holder ends, however it ends (the kernel drops `flock` locks of
    a dead process). The lock file itself stays (removing it would race with a waiter).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held for the whole block
    except OSError as error:
        raise _disk_error(error, folder / LOCK_NAME) from error
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            say(f"{display_path(folder)} is in use by {holder}; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            # unbuffered: a full disk fails here, not again when the file is closed
            os.write(handle.fileno(), f"process {os.getpid()} on {os.uname().nodename}\n".encode())
        except OSError as error:
            raise _disk_error(error, folder / LOCK_NAME) from error
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_checkpoint(path: Path, config: RunConfig) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` and check that it belongs to `config`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same thing
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); it may be "
            "truncated or not written by csoa_nb: move it away to retrain from scratch"
        ) from error
    if not isinstance(state, dict) or "config_hash" not in state or "model" not in state:
        raise CheckpointError(
            f"{path} is not a csoa_nb training checkpoint (no 'config_hash'/'model' keys)"
        )
    if state["config_hash"] != config.hash:
        raise CheckpointError(
            f"{path} belongs to config {state['config_hash']}, not {config.hash}"
            f"{_differences(path.parent / 'config.json', config)}: refusing to resume a "
            "different run into it; use another output_dir or move the folder away"
        )
    return state


def _differences(saved_config: Path, config: RunConfig) -> str:
    """" (num_classes: 4 in the checkpoint's run, 3 now; ...)" from the run's config.json."""
    try:
        saved = json.loads(saved_config.read_text())
    except (OSError, ValueError):
        return ""
    current = config.hashed_fields()
    changed = [
        f"{key}: {saved.get(key)!r} in the checkpoint's run, {value!r} now"
        for key, value in current.items()
        if saved.get(key) != value
    ]
    return f" ({'; '.join(changed)})" if changed else ""


def command_line() -> str:
    """The command that is running, for `results.json`, without the machine's folders: a
    module of this package run with `-m` is written `python -m csoa_nb.<module>`, another
    script relative to the project, anything else by its file name."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    package = Path(__file__).resolve().parents[1]
    try:
        module = script.resolve().relative_to(package.parent).with_suffix("")
        if module.name == "__main__":  # python -m csoa_nb.<subpackage>
            module = module.parent
        head = ["-m", ".".join(module.parts)] if module.parts[0] == package.name else [
            module.with_suffix(script.suffix).as_posix()]
    except ValueError:
        head = [script.name]
    return " ".join([Path(sys.executable).name, *head, *sys.argv[1:]])
