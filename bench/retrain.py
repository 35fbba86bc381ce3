"""Train committed runs again from their `config.json` and compare every file with the
committed one: does a result reproduce bit for bit on this machine?

    OMP_NUM_THREADS=1 python bench/retrain.py results/runs/<hash> [results/runs/<hash> ...]

Each run is trained into a temporary folder (with a copy of the committed pretraining stage,
and no `results_dirs`, so that the committed run is not simply loaded; the data generated
under its usual root); a CAM run's post-hoc maps are made again from the new weights. Then
it is compared with the committed folder: `results.json`'s metrics, `protocol.json` and
`posthoc.json` (where present) by exact equality, `metrics.jsonl` line by line with the
timing fields left out, and every `.npz` byte for byte (the run store writes them
deterministically). It prints one line per file that differs and "identical" or "differs"
per run; the exit status is 1 if any differs.
Runs made on another CPU may differ (bfloat16 rounds by CPU: bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import REPO_ROOT, machine_lines, set_threads

from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.posthoc_runs import write_posthoc
from csoa_nb.engine.pretrain import pretrain_hash
from csoa_nb.engine.sweeps import RESULTS_DIR
from csoa_nb.engine.train import train

#: Fields of a `metrics.jsonl` line that time the run rather than describe it.
TIME_FIELDS = ("epoch_time_s",)


def _lines(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in rows]


def differences(committed: Path, again: Path) -> list[str]:
    """What differs between a committed run folder and the same run trained again."""
    found = []
    saved = json.loads((committed / "results.json").read_text())["metrics"]
    made = json.loads((again / "results.json").read_text())["metrics"]
    found += [f"results.json {k}: {saved.get(k)!r} != {made.get(k)!r}"
              for k in sorted(set(saved) | set(made)) if saved.get(k) != made.get(k)]
    for name in ("protocol.json", "posthoc.json"):
        if (committed / name).is_file() and (again / name).is_file():
            if json.loads((committed / name).read_text()) != json.loads(
                    (again / name).read_text()):
                found.append(f"{name} differs")
    if _lines(committed / "metrics.jsonl") != _lines(again / "metrics.jsonl"):
        found.append("metrics.jsonl differs (times aside)")
    for array in sorted(committed.glob("*.npz")):
        other = again / array.name
        if not other.is_file():
            found.append(f"{array.name} missing in the new run")
        elif array.read_bytes() != other.read_bytes():
            found.append(f"{array.name} differs")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="committed run folders")
    args = parser.parse_args(argv)
    set_threads(1)
    for line in machine_lines():
        print(line)
    status = 0
    for run_dir in args.runs:
        config = RunConfig.from_json(run_dir / "config.json")
        with tempfile.TemporaryDirectory() as tmp:
            fresh = config.replace(output_dir=tmp, results_dirs=())
            stage = f"pretrain-{pretrain_hash(fresh)}"
            if fresh.pretrained == "pretrain" or fresh.embedding_weights == "pretrain":
                shutil.copytree(REPO_ROOT / RESULTS_DIR / stage, Path(tmp) / stage)
            result = train(fresh, progress=False)
            if result.cached:
                raise SystemExit(f"{run_dir}: loaded, not trained: the retrain would compare "
                                 "the run with itself")
            if (run_dir / "posthoc.json").is_file():  # a CAM run's Grad-CAM family maps too
                write_posthoc(result.run_dir)
            found = differences(run_dir, result.run_dir)
        print(f"{run_dir.name} ({config.method}, seed {config.seed}): "
              + ("identical" if not found else "differs"))
        for line in found:
            print("   ", line)
        status |= bool(found)
    return status


if __name__ == "__main__":
    sys.exit(main())
