"""What the tests that train share: a `smoke` run's config and the files of a run folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from csoa_nb.engine.arrays import SHARED_DIR
from csoa_nb.engine.config import RunConfig

#: The files of a finished run folder (`csoa_nb.engine.runs`).
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "results.json", "eval_maps.npz",
             "cams.npz")


def copy_run(run_dir: Path, store: Path) -> Path:
    """A copy of run folder `run_dir` in `store`, with the arrays its data set shares
    (`<store>/shared/`, `csoa_nb.engine.arrays`)."""
    shutil.copytree(run_dir, store / run_dir.name)
    shutil.copytree(run_dir.parent / SHARED_DIR, store / SHARED_DIR, dirs_exist_ok=True)
    return store / run_dir.name


def smoke(data_root: Path, out: Path | None = None, **changes: Any) -> RunConfig:
    """A `smoke` preset run whose data live under `data_root` and whose folder goes to `out`,
    never read from the committed results."""
    if out is not None:
        changes["output_dir"] = str(out)
    return RunConfig.from_preset("smoke", data_root=str(data_root), results_dirs=(), **changes)
