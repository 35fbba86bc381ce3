"""The book's experiments as named sweeps, their committed results, and their tables.

Every table chapter asks this module for a sweep (`sweep_configs("table1", preset)`), trains or
loads each run through `csoa_nb.engine.train.train` (the run cache), and summarises the runs as a
DataFrame (mean and spread over seeds). Multi-seed sweeps of the `cpu` preset do not fit CI's
budget, so they live in the committed folder `results/runs/<hash>/`, made by::

    make results            # = python -m csoa_nb.engine.results make --preset cpu --jobs 2

which trains only the runs that are missing, two at a time (one thread each); on a Slurm
cluster each missing run is one job (`make --executor slurm`, `csoa_nb.engine.cluster`), and
`status` says where each run stands. `make book` then reads them. `tests/test_results.py`
checks that the committed runs are exactly the current configs of these sweeps, so a change of
code settings cannot silently reuse stale numbers.
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
from tqdm.auto import tqdm

from csoa_nb.base.checks import check_choice, check_writable_folder
from csoa_nb.base.paths import project_path
from csoa_nb.engine.cluster import (
    EXECUTORS,
    JOBS_DIR,
    STATES,
    ClusterSettings,
    Driver,
    JobRecord,
    JobsFailed,
    LocalPool,
    Outcome,
    RunStatus,
    SubmititExecutor,
    Task,
    job_records,
    lock_holder,
    run_status,
    wait_for_locks,
)
from csoa_nb.engine.config import PRESET_SPECS, PRESETS, RunConfig
from csoa_nb.engine.runs import RunResult
from csoa_nb.methods import ROWS, TABLE1_ROWS, WSOL_SPECS, MethodSpec, row_key

#: The rows that get their preset's `headline_seeds` in the fine-tuned regime.
HEADLINE_ROWS = ("cam", "confseg", "coaug", "csoa", "coaug_fix", "csoa_fix")
#: Regimes: fine-tuned from our pretraining (the paper's protocol) or from scratch. W_E comes
#: from the pretraining stage in both (the paper's W_E is always ImageNet-pretrained).
REGIMES: dict[str, dict[str, Any]] = {
    "pretrained": {"pretrained": "pretrain"},
    "scratch": {"pretrained": "", "embedding_weights": "pretrain"},
}
#: The regimes the Table 1 sweep runs: both (from scratch with the preset's `seeds`, three per row).
SWEPT_REGIMES = tuple(REGIMES)
#: Table 2: the block W_F is appended after (W_L is after block 5), for both readings of Eq. 10.
TABLE2_BLOCKS = (3, 4, 5)
TABLE2_ROWS = ("csoa", "csoa_fix")
#: The benchmark's calibration (issue: "plain CAM lands mid-range"): plain CAM, fine-tuned from
#: the pretraining stage, seed 0, over how much class evidence the shared body carries and how
#: often the part is hidden in training images. The chosen point is RunConfig's default.
CALIBRATION_GRID = {"body_class_evidence": (0.0, 0.3, 0.6), "part_occlusion": (0.0, 0.3)}
#: What costs CSoA (with our fix) its classification accuracy (chapter 05): the 10x learning
#: rate of the new heads (cpu preset), changed alone. The other candidates need no extra run:
#: averaging the two heads' scores is re-scored from the saved maps
#: (`csoa_nb.report.findings.head_ablation`), and L_D's share is CoAug against CAM in Table 1.
DIAGNOSIS_VARIANTS: dict[str, dict[str, Any]] = {
    "head_lr_x1": {"head_lr_mult": 1.0},
}
#: Choe et al.'s protocol (issue #17, `csoa_nb.engine.protocol`): each WSOL method's own
#: hyperparameter is chosen on the validation split from its spec's `search` grid, with one
#: seed (`SEARCH_SEED`) in the fine-tuned regime; the choice holds for both regimes.
SEARCH_SEED = 0
#: The rows of Table 1 that the WSOL comparison ("wsol") puts beside the other methods: CAM and
#: CSoA with both readings of Eq. 10 (the runs of the Table 1 sweep, the preset's seeds per regime).
WSOL_BASE_ROWS = ("cam", "csoa", "csoa_fix")
#: The sweeps `make results` trains and the book reads (in this order). "wsol" needs the
#: finished runs of "wsol_search" (the hyperparameters chosen on the validation split).
SWEEPS = ("table1", "calibration", "table2", "diagnosis", "wsol_search", "wsol")
#: The sweeps of chapter 14's comparison (issue #17); the others are the paper's tables.
WSOL_SWEEPS = ("wsol_search", "wsol")


class SearchPending(LookupError):
    """The "wsol" sweep's settings are not known yet: runs of "wsol_search" are unfinished."""


class NoValidationSplit(ValueError):
    """The WSOL sweeps need a validation split with boxes, which the preset's data lack."""


def chosen_settings(spec: MethodSpec, preset: str, **overrides: Any) -> dict[str, Any]:
    """The settings of WSOL method `spec` chosen on the validation split: those of its
    "wsol_search" run with the highest validation MaxBoxAccV2 (`protocol.choose_best`).

    Raises:
        SearchPending: a run of the method's grid is not finished (or has no protocol.json).
        NoValidationSplit: the data have no validation split to choose on (`sweep_configs`).
    """
    from csoa_nb.engine.protocol import PROTOCOL_FILE, choose_best, read_protocol
    from csoa_nb.engine.runs import find_run

    candidates = []
    for config in sweep_configs("wsol_search", preset, **overrides):
        if config.method != spec.key:
            continue
        found = find_run(config)
        if found is None or not (found / PROTOCOL_FILE).is_file():
            raise SearchPending(f"the {spec.label} run {config.hash} of the search grid is not "
                                "finished: run `make results`")
        candidates.append((config, read_protocol(found).val.max_box_acc_v2))
    best = choose_best(candidates)
    return {setting: getattr(best, setting) for setting in spec.search}
RESULTS_DIR = "results/runs"

def sweep_configs(
    name: str, preset: str, *, regimes: tuple[str, ...] = SWEPT_REGIMES, **overrides: Any
) -> list[RunConfig]:
    """The runs of sweep `name` (one of SWEEPS) for `preset`, in a stable order (`regimes`:
    those of `REGIMES` that Table 1 runs)."""
    check_choice("sweep", name, SWEEPS)
    check_choice("preset", preset, PRESETS)
    seeds = PRESET_SPECS[preset].seeds

    def make(row: str, **fields: Any) -> RunConfig:
        return RunConfig.from_preset(preset, **ROWS[row].config_fields, **fields, **overrides)

    if name == "calibration":
        return [
            make("cam", seed=0, body_class_evidence=evidence, part_occlusion=occlusion)
            for evidence in CALIBRATION_GRID["body_class_evidence"]
            for occlusion in CALIBRATION_GRID["part_occlusion"]
        ]
    if name == "table1":
        chosen = {r: REGIMES[r] for r in regimes} if preset != "paper" else {"pretrained": {}}
        return [
            make(row, seed=s, **regime)
            for regime_name, regime in chosen.items()
            for row in TABLE1_ROWS
            for s in (
                PRESET_SPECS[preset].headline_seeds
                if regime_name == "pretrained" and row in HEADLINE_ROWS
                else seeds
            )
        ]
    if name == "wsol":
        chosen = {spec.key: chosen_settings(spec, preset, **overrides) for spec in WSOL_SPECS}
        return [
            make(row, seed=s, **regime, **chosen.get(row, {}))
            for regime in REGIMES.values()
            for row in (*WSOL_BASE_ROWS, *chosen)
            for s in seeds
        ]
    if name == "wsol_search":
        configs = [
            make(spec.key, seed=SEARCH_SEED, **REGIMES["pretrained"], **{setting: value})
            for spec in WSOL_SPECS
            for setting, values in spec.search.items()
            for value in values
        ]
        from csoa_nb.engine.datasets import has_val_split

        if not has_val_split(configs[0]):  # before any run is trained for nothing
            raise NoValidationSplit(
                f"dataset {configs[0].dataset!r} has no validation split with boxes to choose "
                "the WSOL methods' settings on: use dataset='wsol-metadata' with metadata_dir "
                "set to wsolevaluation's metadata (its 'val' split is train-fullsup)")
        return configs
    if name == "diagnosis":
        return [
            make("csoa_fix", seed=s, **variant)
            for variant in DIAGNOSIS_VARIANTS.values()
            for s in seeds
        ]
    return [
        make(row, feature_block=b, seed=s)
        for row in TABLE2_ROWS
        for b in TABLE2_BLOCKS
        for s in seeds
    ]


def all_configs(
    preset: str,
    *,
    pending_ok: bool = False,
    left_out: dict[str, LookupError | ValueError] | None = None,
    **overrides: Any,
) -> list[RunConfig]:
    """Every distinct run the book's tables need, deduplicated by hash. `pending_ok`: leave
    out the sweeps whose settings wait for unfinished runs (`SearchPending`), or that the
    preset's data cannot have (`NoValidationSplit`), instead of raising; `left_out` then
    receives each such sweep's name and why."""
    unique: dict[str, RunConfig] = {}
    for name in SWEEPS:
        try:
            configs = sweep_configs(name, preset, **overrides)
        except (SearchPending, NoValidationSplit) as error:
            if not pending_ok:
                raise
            if left_out is not None:
                left_out[name] = error
            continue
        for config in configs:
            unique.setdefault(config.hash, config)
    return list(unique.values())


def regime_of(config: RunConfig) -> str:
    return "pretrained" if config.pretrained else "scratch"


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
                "feature_block": config.feature_block,
                "body_class_evidence": config.body_class_evidence,
                "part_occlusion": config.part_occlusion,
                "seed": config.seed,
                "hash": config.hash,
                "cached": result.cached,
                "wall_time_s": result.wall_time_s,
                **result.metrics,
            }
        )
    return pd.DataFrame(rows)


def mean_std(mean: float, std: float, n: int, digits: int = 2) -> str:
    """"m ± s" over n seeds, or just "m" for a single seed."""
    return f"{mean:.{digits}f}" if n < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarize(
    frame: pd.DataFrame, by: list[str], metrics: list[str], *, digits: int = 2
) -> pd.DataFrame:
    """Mean and standard deviation over seeds, as "mean ± std" strings plus numeric columns."""
    grouped = frame.groupby(by, sort=False)[metrics]
    mean, std, count = grouped.mean(), grouped.std(ddof=1).fillna(0.0), grouped.size()
    table = pd.DataFrame(index=mean.index)
    for metric in metrics:
        table[metric] = [
            mean_std(m, s, n, digits)
            for m, s, n in zip(mean[metric], std[metric], count, strict=True)
        ]
    table["seeds"] = count
    table.attrs["mean"] = mean
    table.attrs["std"] = std
    return table


def save_table(frame: pd.DataFrame, name: str, preset: str, root: str | Path = "_build") -> Path:
    """Write a table chapter's DataFrame to `<root>/tables/<preset>/<name>.csv`."""
    path = project_path(root) / "tables" / preset / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path)
    return path


# ---------------------------------------------------------------------------- make results
def _in_worker(task: str, payload: Any) -> tuple[str, float]:
    """One task of `make results` in a worker process or a cluster job (one thread): "train" a
    config (dict), "pretrain" its pretraining stage (the cluster's shared input), "backfill"
    the protocol's files of a finished run, or score its "posthoc" maps. The last two hold the
    run folder's lock and do nothing when a twin task (another driver's) did it meanwhile."""
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    if task in ("train", "pretrain"):
        config = RunConfig.from_dict(payload)
        if task == "pretrain":
            from csoa_nb.engine.pretrain import pretrain, pretrain_hash

            pretrain(config, progress=False, log=lambda line: print(line, flush=True))
            return f"pretrain-{pretrain_hash(config)}", time.perf_counter() - started
        from csoa_nb.engine.train import train

        train(config, progress=False, log=lambda line: print(line, flush=True))
        return config.hash, time.perf_counter() - started
    from csoa_nb.engine.posthoc_runs import POSTHOC_FILE, backfill, write_posthoc
    from csoa_nb.engine.protocol import lacks_protocol
    from csoa_nb.engine.runs import read_run_config, run_lock

    run_dir = Path(payload)
    with run_lock(run_dir, lambda line: print(line, flush=True)):
        if task == "backfill":
            if lacks_protocol(run_dir, read_run_config(run_dir)):
                backfill(run_dir)
        elif not (run_dir / POSTHOC_FILE).is_file():
            write_posthoc(run_dir)
    return run_dir.name, time.perf_counter() - started


def _task(kind: str, payload: Any, what: str) -> Task:
    """A `(task, payload, description)` triple of `make results` as the executors take it:
    its name, the folder it writes (whose lock tells whether another process is at it) and
    what it runs on."""
    if kind in ("train", "pretrain"):
        from csoa_nb.engine.pretrain import pretrain_hash
        from csoa_nb.engine.runs import run_dir_for

        config = RunConfig.from_dict(payload)
        folder = run_dir_for(config) if kind == "train" else (
            project_path(config.output_dir) / f"pretrain-{pretrain_hash(config)}")
        return Task(kind, payload, config.hash if kind == "train" else folder.name, what,
                    folder, gpu=config.device.startswith("cuda"), cpus=config.num_workers + 1)
    return Task(kind, payload, Path(payload).name, what, Path(payload))


def _run_tasks(tasks: list[tuple[str, Any, str]], driver: Driver) -> list[str]:
    """Run `(task, payload, description)` triples on the driver's executor; returns the names
    done. A task whose folder another process holds (another driver's job) is left to it: this
    call waits for that lock, and the next look at the run store finds the run or not. A
    failed cluster job goes to `driver.failed` (the local pool raises, as before)."""
    items = [_task(*triple) for triple in tasks]
    held = {t.folder: holder for t in items
            if t.folder is not None and (holder := lock_holder(t.folder)) is not None}
    for folder, holder in held.items():
        print(f"{folder.name}: in use by {holder}; waiting for it, then looking again",
              flush=True)
    free = [t for t in items if t.folder not in held]
    done: list[str] = []
    for count, outcome in enumerate(driver.executor.run(_in_worker, free), 1):
        task = outcome.task
        job = f" (job {outcome.job_id})" if outcome.job_id else ""
        head = f"[{count}/{len(free)}] {time.strftime('%H:%M:%S')} {task.kind} {task.name} " \
               f"{task.what}"
        if outcome.ok:
            name, seconds = outcome.result
            done.append(name)
            tqdm.write(f"{head}: {seconds:.0f} s{job}")
        else:
            driver.failed[(task.kind, task.name)] = outcome
            tqdm.write(f"{head}: FAILED{job}: {outcome.error}; log {outcome.log}")
    wait_for_locks(held, driver.executor.poll_s)
    return done


def _order(preset: str, **overrides: Any) -> dict[str, tuple[bool, bool, int, int]]:
    """Training order: the paper's tables first (Table 1 fine-tuned, calibration, Table 2,
    the diagnosis, then Table 1 from scratch), then the WSOL comparison's sweeps, so that a
    `make results` stopped early has the headline comparisons. A run of two sweeps (e.g.
    CAM in Table 1 and in "wsol") takes its place in the first."""
    order: dict[str, tuple[bool, bool, int, int]] = {}
    for k, name in enumerate(SWEEPS):
        try:
            configs = sweep_configs(name, preset, **overrides)
        except (SearchPending, NoValidationSplit):
            continue
        for position, c in enumerate(configs):
            order.setdefault(c.hash, (name in WSOL_SWEEPS, regime_of(c) != "pretrained", k,
                                      position))
    return order


def _describe(config: RunConfig) -> str:
    return f"{config.method} {regime_of(config)} block {config.feature_block} seed {config.seed}"


def _prepare(missing: list[RunConfig], driver: Driver) -> list[RunConfig]:
    """The shared, cached inputs of the `missing` runs, built once before the runs that read
    them: the data sets (here) and the pretraining stages (here with the local pool; one job
    per stage on a cluster, the driver's machine being a login node). Returns the runs whose
    inputs are there; the others are failed with their stage's job."""
    from csoa_nb.engine.datasets import dataset_root
    from csoa_nb.engine.pretrain import find_pretrained, pretrain, pretrain_hash

    for config in missing:
        dataset_root(config)
    stages: dict[str, RunConfig] = {}
    for config in missing:
        if config.pretrained == "pretrain":
            if not driver.executor.remote:
                pretrain(config, progress=False)
            elif find_pretrained(config) is None:
                stages.setdefault(f"pretrain-{pretrain_hash(config)}", config)
    if stages:
        _run_tasks([("pretrain", c.to_dict(), "pretraining stage") for c in stages.values()],
                   driver)
    ready = []
    for config in missing:
        stage = f"pretrain-{pretrain_hash(config)}" if config.pretrained == "pretrain" else ""
        failed = driver.failed.get(("pretrain", stage))
        if failed is None:
            ready.append(config)
            continue
        driver.failed[("train", config.hash)] = Outcome(
            _task("train", config.to_dict(), _describe(config)),
            error=f"not submitted: its pretraining stage {stage} failed (job {failed.job_id})",
            job_id=failed.job_id, log=failed.log)
    return ready


def make_results(
    preset: str,
    jobs: int = 2,
    output_dir: str = RESULTS_DIR,
    cluster: ClusterSettings | None = None,
) -> list[str]:
    """Train every missing run of every sweep into `output_dir`, write the protocol's files of
    finished runs that lack them (`posthoc_runs.backfill`) and the post-hoc maps' scores of
    the CAM runs of the "wsol" sweep (`posthoc_runs.write_posthoc`). Sweeps whose settings
    are chosen from other runs ("wsol" from "wsol_search") follow once those are finished.
    Each phase waits for all its tasks before the next starts. `cluster`: submit each task as
    a submitit job (`csoa_nb.engine.cluster`) instead of `jobs` local processes; a failed job
    does not stop the others. Returns the hashes trained.

    Raises:
        ValueError: an unknown preset, `jobs` < 1, an `output_dir` that cannot be written, or
            a run's device or weights file missing: all before any work.
        JobsFailed: cluster jobs failed (after every other task was done); the message names
            each with the tail of its log.
    """
    from csoa_nb.engine.posthoc_runs import POSTHOC_FILE
    from csoa_nb.engine.protocol import lacks_protocol
    from csoa_nb.engine.runs import find_run
    from csoa_nb.engine.train import check_device, check_weight_files

    check_choice("preset", preset, PRESETS)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (runs trained at once), got {jobs}: e.g. --jobs 2")
    store = check_writable_folder(project_path(output_dir), "output_dir",
                                  "choose a folder you can write (--output-dir DIR)")
    driver = Driver(LocalPool(jobs) if cluster is None
                    else SubmititExecutor(cluster, store / JOBS_DIR))

    def failed(kind: str) -> set[str]:
        return {name for k, name in driver.failed if k == kind}

    trained: list[str] = []
    # the search runs that "wsol"'s settings are chosen from are found in output_dir too
    into = {"output_dir": output_dir}
    while True:
        configs = all_configs(preset, pending_ok=True, **into)
        missing = [c for c in configs if find_run(c) is None and c.hash not in failed("train")]
        order = _order(preset, **into)
        missing.sort(key=lambda c: order[c.hash])
        print(f"{len(configs)} runs in the sweeps, {len(missing)} to train into {output_dir}")
        for config in missing:  # what a worker would refuse, before any work
            if not driver.executor.remote:  # a job checks its device on its own node
                check_device(config)
            check_weight_files(config)
        # shared, cached inputs first, so parallel workers never build them twice
        ready = _prepare(missing, driver)
        trained += _run_tasks([("train", c.to_dict(), _describe(c)) for c in ready], driver)
        found = [(c, find_run(c)) for c in configs]
        stale = [path for config, path in found if path and path.name not in failed("backfill")
                 and lacks_protocol(path, config)]
        _run_tasks([("backfill", str(path), "val_maps.npz, protocol.json") for path in stale],
                   driver)
        if not missing and not stale:
            break
    while True:
        try:
            cam_runs = [find_run(c) for c in sweep_configs("wsol", preset, **into)
                        if c.method == "cam"]
        except (SearchPending, NoValidationSplit):  # a search run failed; or no such sweep
            cam_runs = []
        todo = [path for path in cam_runs if path and not (path / POSTHOC_FILE).is_file()
                and path.name not in failed("posthoc")]
        held = [path for path in todo if lock_holder(path) is not None]
        _run_tasks([("posthoc", str(path), "Grad-CAM, Grad-CAM++, Score-CAM") for path in todo],
                   driver)
        if not held:  # else look again: what another process held may be left undone
            break
    if driver.failed:
        raise JobsFailed(list(driver.failed.values()), output_dir)
    return trained


def sweep_status(
    preset: str, output_dir: str = RESULTS_DIR
) -> tuple[dict[str, list[tuple[RunConfig, RunStatus]]], dict[str, LookupError | ValueError]]:
    """Where each run of each sweep stands (`cluster.run_status`: done, running, failed,
    queued, missing), from the run store in `output_dir`, its locks and the records of the
    cluster jobs in `<output_dir>/.submitit`; and the sweeps left out, with why."""
    from csoa_nb.engine.runs import find_run, run_dir_for

    store = project_path(output_dir)
    jobs: dict[str, list[JobRecord]] = {}
    for record in job_records(store / JOBS_DIR):
        if record.kind == "train":
            jobs.setdefault(record.name, []).append(record)
    states: dict[str, list[tuple[RunConfig, RunStatus]]] = {}
    left_out: dict[str, LookupError | ValueError] = {}
    for name in SWEEPS:
        try:
            configs = sweep_configs(name, preset, output_dir=output_dir)
        except (SearchPending, NoValidationSplit) as error:
            left_out[name] = error
            continue
        states[name] = [(c, run_status(run_dir_for(c), find_run(c), jobs.get(c.hash, [])))
                        for c in configs]
    return states, left_out


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
