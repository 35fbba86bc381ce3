"""Re-score every committed run from its saved maps and compare with its `results.json`.

    python bench/rescore.py [--runs results/runs] [--data-root DIR]

For each finished run folder, `csoa_nb.engine.evaluate.reevaluate` scores the saved
`eval_maps.pt` at the thetas the run saved (PxAP from the run's dataset: `--data-root` names
its folder when the run's own one is elsewhere), and every key of the flat form
(`Scores.to_record`) is compared with the committed `results.json` by exact equality. It prints
one line per run that differs and "N runs identical"; the exit status is 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import REPO_ROOT, set_threads

from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.evaluate import reevaluate
from csoa_nb.scores import Scores


def compare(saved: dict[str, float], again: dict[str, float]) -> list[str]:
    """The differences of two flat records, one line per key (exact equality)."""
    lines = [f"{k}: only in results.json" for k in sorted(set(saved) - set(again))]
    lines += [f"{k}: only re-scored" for k in sorted(set(again) - set(saved))]
    lines += [f"{k}: {saved[k]!r} != {again[k]!r}" for k in sorted(set(saved) & set(again))
              if saved[k] != again[k] or type(saved[k]) is not type(again[k])]
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
        config = RunConfig.from_json(run_dir / "config.json")
        thetas = Scores.from_record(saved, config.theta).thetas
        notes: list[str] = []
        again = reevaluate(run_dir, thetas, data_root=args.data_root, log=notes.append)
        lines = notes + compare(saved, again.to_record())
        if lines:
            different += 1
            print(f"{run_dir.name}: differs\n  " + "\n  ".join(lines), flush=True)
        else:
            same += 1
    print(f"{same} runs identical, {different} differ")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
