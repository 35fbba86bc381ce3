"""The run folder: where a run's files live, how they are written safely, how they are read back.

A run of config `c` lives in `<output_dir>/<c.hash>/`:

| file | written | holds |
| --- | --- | --- |
| `config.json` | at start | the full `RunConfig` |
| `metrics.jsonl` | each epoch | losses by term, alpha, lr, train accuracy, validation loc/cls |
| `checkpoint.pt` | each epoch | model, optimizer, scheduler, epoch, RNG states (atomic) |
| `results.json` | at the end | final test metrics, timings, the command that made it |
| `eval_maps.pt` | at the end | ground-truth-class CAMs of every test image, class scores, boxes |
| `cams.pt` | at the end | a few test images with all-class CAMs, for figures and widgets |

Every file is written to a temporary name and renamed, so a killed run never leaves a torn file.
A finished run (one with `results.json`) found under `output_dir` or any of `results_dirs` (the
committed `results/runs/`) is loaded instead of retrained.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from csoa_nb.config import RunConfig
from csoa_nb.paths import project_path


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: truncated, foreign, or from another config."""


@dataclass
class RunResult:
    """A finished run: its config, folder, final metrics and per-epoch history."""

    config: RunConfig
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False
    wall_time_s: float = 0.0

    def cams(self) -> dict[str, Any]:
        """The sample of test images and CAMs saved for figures (`cams.pt`)."""
        return torch.load(self.run_dir / "cams.pt", map_location="cpu", weights_only=True)

    def eval_maps(self) -> dict[str, Any]:
        """Ground-truth-class CAMs and class scores of the whole test set (`eval_maps.pt`)."""
        return torch.load(self.run_dir / "eval_maps.pt", map_location="cpu", weights_only=True)


def run_dir_for(config: RunConfig) -> Path:
    return project_path(config.output_dir) / config.hash


def find_run(config: RunConfig) -> Path | None:
    """The folder of a finished run with this config's hash, or None."""
    for base in (config.output_dir, *config.results_dirs):
        candidate = project_path(base) / config.hash
        if (candidate / "results.json").is_file():
            return candidate
    return None


def load_run(run_dir: str | Path, cached: bool = True) -> RunResult:
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(
            f"{results_path} does not exist: {run_dir} is not a finished run "
            "(train it with `python -m csoa_nb.train`)"
        )
    results = json.loads(results_path.read_text())
    config = RunConfig.from_json(run_dir / "config.json")
    return RunResult(
        config=config,
        run_dir=run_dir,
        metrics=results["metrics"],
        history=read_jsonl(run_dir / "metrics.jsonl"),
        cached=cached,
        wall_time_s=float(results.get("wall_time_s", 0.0)),
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename over `path`."""
    tmp = _tmp_name(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, payload: Any) -> None:
    write_atomic(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def save_torch(path: Path, payload: Any) -> None:
    """`torch.save` through a temporary file and an atomic rename."""
    tmp = _tmp_name(path)
    torch.save(payload, tmp)
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def truncate_jsonl(path: Path, keep_epochs: int) -> None:
    """Drop history lines of epochs that the checkpoint does not hold (after a kill)."""
    records = [r for r in read_jsonl(path) if r.get("epoch", 0) <= keep_epochs]
    write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())


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
    """The command that is running, for `results.json`."""
    return " ".join([Path(sys.executable).name, *sys.argv])
