"""The book's results: a sweep's runs trained or loaded, as frames and tables; and the command
line of `make results`.

Every table chapter asks this module for a sweep's runs (`run_sweep("table1", preset)`, a
sweep of `csoa_nb.engine.sweeps`), each trained or loaded through `csoa_nb.engine.train.train`
(the run cache), and summarises them as a DataFrame (mean and spread over seeds). Multi-seed
sweeps of the `cpu` preset do not fit CI's budget, so they live in the committed folder
`results/runs/<hash>/`, made by::

    make results            # = python -m csoa_nb.engine.results make --preset cpu --jobs 2

which trains only the runs that are missing, two at a time (one thread each); on a Slurm
cluster each missing run is one job (`make --executor slurm`, `csoa_nb.engine.cluster`), and
`status` says where each run stands (`csoa_nb.engine.make_results`). `make book` then reads
them. `tests/test_results.py` checks that the committed runs are exactly the current configs of
these sweeps, so a change of code settings cannot silently reuse stale numbers.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from csoa_nb.base.paths import project_path
from csoa_nb.engine.cluster import EXECUTORS, ClusterSettings, JobsFailed
from csoa_nb.engine.config import PRESETS
from csoa_nb.engine.job_status import STATES
from csoa_nb.engine.make_results import make_results, sweep_status
from csoa_nb.engine.runs import RunResult
from csoa_nb.engine.sweeps import (
    RESULTS_DIR,
    SearchPending,
    all_configs,
    regime_of,
    sweep_configs,
)
from csoa_nb.methods import row_key


def run_sweep(
    name: str, preset: str, *, progress: bool = False, quiet: bool = False, **overrides: Any
) -> list[RunResult]:
    """Train or load every run of a sweep (sequentially, in this process). `quiet`: no epoch
    lines and no collapse warnings (a page that only reads the results). A finished run
    without the protocol's files (one trained before they existed) gets them from its final
    weights (`posthoc_runs.backfill`), so every returned run has its `protocol.json` when its
    data has a validation split."""
    from csoa_nb.engine.posthoc_runs import backfill
    from csoa_nb.engine.protocol import lacks_protocol
    from csoa_nb.engine.train import train

    configs = sweep_configs(name, preset, **overrides)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", RuntimeWarning)
        runs = [train(c, progress=progress, **({"log": lambda _: None} if quiet else {}))
                for c in configs]
    for run in runs:
        if lacks_protocol(run.run_dir, run.config):
            backfill(run.run_dir)
    return runs


def finished_runs(name: str, preset: str, **overrides: Any) -> list[RunResult]:
    """The runs of sweep `name` that are already finished (loaded, never trained)."""
    from csoa_nb.engine.runs import find_run, load_run

    found = (find_run(c) for c in sweep_configs(name, preset, **overrides))
    return [load_run(path) for path in found if path is not None]


def runs_frame(results: Iterable[RunResult]) -> pd.DataFrame:
    """One row per run: its identifying settings, every final metric and its wall time.

    The metric columns are the scores' flat form (`RunResult.metrics`, `Scores.to_record`):
    the names the chapters and `csoa_nb.report.vocabulary` use ("max_box_acc@50", ...)."""
    rows = []
    for result in results:
        config = result.config
        rows.append(
            {
                "method": row_key(config),
                "coaug_background": config.coaug_background,
                "regime": regime_of(config),
                "embedding": config.embedding,
                "feature_block": config.feature_block,
                "body_class_evidence": config.body_class_evidence,
                "part_occlusion": config.part_occlusion,
                "seed": config.seed,
                "theta": config.theta,
                "hash": config.hash,
                "cached": result.cached,
                "wall_time_s": result.wall_time_s,
                **result.metrics,
            }
        )
    return pd.DataFrame(rows)


def save_table(frame: pd.DataFrame, name: str, preset: str, root: str | Path = "_build") -> Path:
    """Write a table chapter's DataFrame to `<root>/tables/<preset>/<name>.csv`."""
    path = project_path(root) / "tables" / preset / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path)
    return path


# ---------------------------------------------------------------------------------------- CLI
def _cluster_settings(args: argparse.Namespace) -> ClusterSettings | None:
    """`make`'s cluster options as `ClusterSettings` (None for `--executor local`, which
    takes none of them)."""
    given = {flag: getattr(args, dest) for flag, dest in CLUSTER_FLAGS.items()
             if getattr(args, dest) not in (None, [])}
    if args.executor == "local":
        if given:
            raise ValueError(f"{', '.join(given)} apply to --executor slurm or submitit-local, "
                             "not to --executor local (the local pool takes --jobs)")
        return None
    options = []
    for option in args.slurm_option or ():
        key, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"--slurm-option {option!r}: give KEY=VALUE, e.g. "
                             "--slurm-option account=myproj")
        options.append((key.strip(), value.strip()))
    fields = {"partition": args.slurm_partition, "gpus_per_run": args.gpus_per_run,
              "cpus_per_run": args.cpus_per_run, "mem_gb": args.mem_gb,
              "timeout_min": args.timeout_min, "array_parallelism": args.array_parallelism,
              "max_timeouts": args.max_timeouts, "poll_s": args.poll_s}
    return ClusterSettings(executor=args.executor, options=tuple(options),
                           setup=tuple(args.slurm_setup or ()),
                           **{k: v for k, v in fields.items() if v is not None})


#: `make`'s options for the cluster executors (flag -> argparse dest).
CLUSTER_FLAGS = {
    "--slurm-partition": "slurm_partition", "--gpus-per-run": "gpus_per_run",
    "--cpus-per-run": "cpus_per_run", "--mem-gb": "mem_gb", "--timeout-min": "timeout_min",
    "--array-parallelism": "array_parallelism", "--max-timeouts": "max_timeouts",
    "--slurm-option": "slurm_option", "--slurm-setup": "slurm_setup", "--poll-s": "poll_s",
}


def _print_status(preset: str, output_dir: str) -> None:
    states, left_out = sweep_status(preset, output_dir)
    for name, runs in states.items():
        counts = {state: sum(s.state == state for _, s in runs) for state in STATES}
        print(f"{name}: {len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for config, state in runs:
            print(f"  {config.hash}  {config.method:8s} {regime_of(config):10s} block "
                  f"{config.feature_block} seed {config.seed}  {state.state:8s} {state.detail}")
            for line in state.tail:
                print(f"      | {line}")
    for name, why in left_out.items():
        print(f"{name}: {'pending' if isinstance(why, SearchPending) else 'left out'}: {why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="train every missing run of the book's sweeps")
    make.add_argument("--preset", default="cpu", choices=PRESETS)
    make.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                      help="runs trained at once by --executor local")
    make.add_argument("--output-dir", default=RESULTS_DIR)
    make.add_argument("--executor", default="local", choices=EXECUTORS,
                      help="local: --jobs processes here; slurm: one Slurm job per task "
                           "(submitit); submitit-local: one local process per task (submitit)")
    jobs = make.add_argument_group("cluster jobs (--executor slurm or submitit-local)")
    jobs.add_argument("--slurm-partition", help="the partition the jobs run in")
    jobs.add_argument("--gpus-per-run", type=int, help="GPUs of a CUDA run's job (default 1)")
    jobs.add_argument("--cpus-per-run", type=int,
                      help="CPUs per job (default: the run's loader workers + 1)")
    jobs.add_argument("--mem-gb", type=float, help="memory per job (default: the partition's)")
    jobs.add_argument("--timeout-min", type=int,
                      help="a job's time limit in minutes (default 240); a run still training "
                           "then is re-queued and resumes from its checkpoint")
    jobs.add_argument("--array-parallelism", type=int,
                      help="jobs of a phase's array running at once (default 64)")
    jobs.add_argument("--max-timeouts", type=int,
                      help="re-queues of a job that reached its time limit (default 3)")
    jobs.add_argument("--slurm-option", action="append", metavar="KEY=VALUE",
                      help="another #SBATCH --KEY=VALUE line (account, qos, constraint, ...)")
    jobs.add_argument("--slurm-setup", action="append", metavar="LINE",
                      help="a shell line run before each job (e.g. 'module load cuda')")
    jobs.add_argument("--poll-s", type=float,
                      help="seconds between the driver's looks at its jobs (default 30)")
    listing = sub.add_parser("list", help="print the sweeps' runs and whether they exist")
    listing.add_argument("--preset", default="cpu", choices=PRESETS)
    status = sub.add_parser("status", help="which runs of which sweep are done, running (by "
                                           "which job), failed (the tail of its log), missing")
    status.add_argument("--preset", default="cpu", choices=PRESETS)
    status.add_argument("--output-dir", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.command == "make":
        started = time.perf_counter()
        try:
            make_results(args.preset, args.jobs, args.output_dir, _cluster_settings(args))
        except (ValueError, JobsFailed) as error:
            raise SystemExit(f"error: {error}") from None
        print(f"done in {time.perf_counter() - started:.0f} s")
        return 0
    if args.command == "status":
        _print_status(args.preset, args.output_dir)
        return 0
    from csoa_nb.engine.runs import find_run

    left_out: dict[str, LookupError | ValueError] = {}
    configs = all_configs(args.preset, pending_ok=True, left_out=left_out)
    for name, why in left_out.items():  # a status line each, not a traceback
        print(f"{name}: {'pending' if isinstance(why, SearchPending) else 'left out'}: {why}")
    for config in configs:
        where = find_run(config)
        print(f"{config.hash}  {config.method:8s} {regime_of(config):10s} "
              f"block {config.feature_block} seed {config.seed}  {where or 'missing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
