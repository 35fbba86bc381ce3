"""Re-score every committed run from its saved maps; compare with `results.json` and
`protocol.json`.

    python bench/rescore.py [--runs results/runs] [--data-root DIR]

For each finished run folder, `csoa_nb.engine.evaluate.reevaluate` scores the saved
`eval_maps.npz` at the thetas the run saved (PxAP from the run's dataset: `--data-root` names
its folder when the run's own one is elsewhere), and every key of the flat form
(`Scores.to_record`) is compared with the committed `results.json` by exact equality. Where the
run has `protocol.json`, the protocol is run again from `val_maps.npz` and `eval_maps.npz`
(theta chosen on the validation split, both splits scored there, PxAP with the data set's
masks) and its theta and every key of both records are compared the same way. It prints one
line per run that differs and "N runs identical"; the exit status is 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import REPO_ROOT, set_threads

from csoa_nb.base.paths import project_path
from csoa_nb.core.scores import Scores
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_datasets, build_val_set
from csoa_nb.engine.evaluate import collect_masks, reevaluate
from csoa_nb.engine.protocol import PROTOCOL_FILE, load_val_maps, protocol_scores
from csoa_nb.engine.runs import load_arrays, read_run_config


def compare(saved: dict[str, float], again: dict[str, float]) -> list[str]:
    """The differences of two flat records, one line per key (exact equality)."""
    lines = [f"{k}: only in results.json" for k in sorted(set(saved) - set(again))]
    lines += [f"{k}: only re-scored" for k in sorted(set(again) - set(saved))]
    lines += [f"{k}: {saved[k]!r} != {again[k]!r}" for k in sorted(set(saved) & set(again))
              if saved[k] != again[k] or type(saved[k]) is not type(again[k])]
    return lines


def protocol_differences(run_dir: Path, config: RunConfig, data_root: str | None) -> list[str]:
    """The protocol's scores made again from the run's arrays, against its `protocol.json`."""
    saved = json.loads((run_dir / PROTOCOL_FILE).read_text())
    root = Path(data_root) if data_root else project_path(config.data_root)
    data = config.replace(data_root=str(root.resolve()))
    _, test_set = build_datasets(data)
    test_maps = load_arrays(run_dir, "test")
    test_maps["masks"] = collect_masks(test_set)
    val_maps = load_val_maps(run_dir)
    val_maps["masks"] = collect_masks(build_val_set(data))
    again = protocol_scores(val_maps, test_maps, config).to_record()
    lines = [] if saved["theta"] == again["theta"] else [
        f"protocol theta: {saved['theta']!r} != {again['theta']!r}"]
    for split in ("val", "test"):
        lines += [f"protocol {split} {line}" for line in compare(saved[split], again[split])]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(REPO_ROOT / "results" / "runs"))
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    set_threads(1)
    same, different = 0, 0
    for results in sorted(Path(args.runs).glob("*/results.json")):
        run_dir = results.parent
        saved = json.loads(results.read_text())["metrics"]
        config = read_run_config(run_dir)
        thetas = Scores.from_record(saved, config.theta).thetas
        notes: list[str] = []
        again = reevaluate(run_dir, thetas, data_root=args.data_root, log=notes.append)
        lines = notes + compare(saved, again.to_record())
        if (run_dir / PROTOCOL_FILE).is_file():
            lines += protocol_differences(run_dir, config, args.data_root)
        if lines:
            different += 1
            print(f"{run_dir.name}: differs\n  " + "\n  ".join(lines), flush=True)
        else:
            same += 1
    print(f"{same} runs identical, {different} differ")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
