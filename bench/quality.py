"""Localization quality of cam, confseg, coaug and csoa over seeds, from the run cache.

Reads the runs of sweep "table1" (`csoa_nb.engine.sweeps.sweep_configs`) of a preset, the paper's
protocol by default (fine-tuned from the pretraining stage), and prints per method the mean,
standard deviation and range over seeds of top-1 localization error, GT-known localization
error (both at the config's theta, in %, lower is better) and MaxBoxAccV2 (Choe et al. 2020,
in %, higher is better). Finished runs are loaded (`results/runs/` holds the committed cpu
runs); a missing run is trained, which takes minutes per run on a CPU, unless `--only-cached`
skips it.

    python bench/quality.py --only-cached              # what is committed, no training
    python bench/quality.py                            # trains what is missing (long)
    python bench/quality.py --regime scratch --methods cam csoa
"""

from __future__ import annotations

import argparse
import os

import pandas as pd

try:
    from bench._common import REPO_ROOT, format_table, print_machine, set_threads
except ModuleNotFoundError:  # run as `python bench/quality.py`
    from _common import REPO_ROOT, format_table, print_machine, set_threads  # type: ignore

from csoa_nb.engine.config import PRESETS
from csoa_nb.engine.results import runs_frame
from csoa_nb.engine.runs import RunResult, find_run, load_run
from csoa_nb.engine.sweeps import REGIMES, regime_of, sweep_configs
from csoa_nb.methods import ROWS, row_key

#: Table rows (`csoa_nb.methods.ROWS`): "_fix" is our reading of Eq. 10 (chapter 04), not the
#: paper's.
METHODS = ("cam", "confseg", "coaug", "csoa", "coaug_fix", "csoa_fix")
#: (column of results.json metrics, label, better)
METRICS = (
    ("top1_loc_err", "top-1 loc err %", "lower"),
    ("gt_known_loc_err", "GT-known loc err %", "lower"),
    ("max_box_acc_v2", "MaxBoxAccV2 %", "higher"),
)


def collect(
    preset: str, regime: str, methods: tuple[str, ...], only_cached: bool
) -> tuple[list[RunResult], list[str]]:
    """The runs of table 1 for `methods` in `regime`: loaded, trained, or (only_cached)
    listed as missing ("hash method seed")."""
    configs = [
        c for c in sweep_configs("table1", preset)
        if row_key(c) in methods and (preset == "paper" or regime_of(c) == regime)
    ]
    found, missing = [], []
    for config in configs:
        run_dir = find_run(config)
        if run_dir is not None:
            found.append(load_run(run_dir))
        elif only_cached:
            missing.append(f"{config.hash} {row_key(config)} seed {config.seed}")
        else:
            from csoa_nb.engine.train import train

            found.append(train(config, progress=False))
    return found, missing


def quality_table(frame: pd.DataFrame, methods: tuple[str, ...]) -> list[list[str]]:
    """Rows: method, seeds, then "mean ± std [min, max]" of every metric."""
    rows = []
    for method in methods:
        runs = frame[frame["method"] == method] if len(frame) else frame
        if not len(runs):
            rows.append([method, "0", *(["not run yet"] * len(METRICS))])
            continue
        cells = [method, f"{len(runs)} ({', '.join(str(s) for s in sorted(runs['seed']))})"]
        for key, _, _ in METRICS:
            values = runs[key].astype(float)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            cells.append(
                f"{values.mean():.2f} ± {std:.2f} [{values.min():.2f}, {values.max():.2f}]"
            )
        rows.append(cells)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu", choices=PRESETS)
    parser.add_argument("--regime", default="pretrained", choices=tuple(REGIMES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=tuple(ROWS))
    parser.add_argument("--only-cached", action="store_true",
                        help="skip runs that are not finished (never train)")
    parser.add_argument("--quick", action="store_true", help="the same as --only-cached")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    os.chdir(REPO_ROOT)  # the configs' relative folders (results/runs, runs, data) mean here
    print_machine()
    methods = tuple(args.methods)
    only_cached = args.only_cached or args.quick
    results, missing = collect(args.preset, args.regime, methods, only_cached)
    frame = runs_frame(results)
    print(
        f"sweep table1, preset {args.preset}, regime {args.regime}: {len(results)} runs "
        f"loaded" + (f", {len(missing)} not finished (skipped)" if missing else "")
    )
    headers = ["method", "seeds", *(f"{label} ({better} is better)"
                                    for _, label, better in METRICS)]
    print("values: mean ± std over seeds [min, max]")
    print(format_table(headers, quality_table(frame, methods)))
    if missing:
        print("not finished: " + "; ".join(missing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
