"""`make results`: train every missing run of the book's sweeps into the run store, then the
files made from finished runs (the protocol's, the post-hoc maps' scores); and `sweep_status`,
where each run stands.

Which runs: `csoa_nb.engine.sweeps`. Where each task runs: `csoa_nb.engine.cluster` (the local
worker pool, or one submitit job per task on Slurm). The command line is
`python -m csoa_nb.engine.results make|status` (`csoa_nb.engine.results`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from csoa_nb.base.checks import check_choice, check_writable_folder
from csoa_nb.base.paths import project_path
from csoa_nb.engine import sweeps
from csoa_nb.engine.cluster import (
    JOBS_DIR,
    ClusterSettings,
    Driver,
    JobsFailed,
    LocalPool,
    Outcome,
    SubmititExecutor,
    Task,
)
from csoa_nb.engine.config import PRESETS, RunConfig
from csoa_nb.engine.job_status import (
    JobRecord,
    RunStatus,
    job_records,
    lock_holder,
    run_status,
    wait_for_locks,
)
from csoa_nb.engine.sweeps import (
    RESULTS_DIR,
    SWEEPS,
    WSOL_SWEEPS,
    NoValidationSplit,
    SearchPending,
    regime_of,
)
from csoa_nb.methods import row_key


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
            configs = sweeps.sweep_configs(name, preset, **overrides)
        except (SearchPending, NoValidationSplit):
            continue
        for position, c in enumerate(configs):
            order.setdefault(c.hash, (name in WSOL_SWEEPS, regime_of(c) != "pretrained", k,
                                      position))
    return order


def _describe(config: RunConfig) -> str:
    from csoa_nb.engine.pretrain import STAGE_EMBEDDING

    w_e = (f" W_E {config.embedding}"
           if config.uses_coaug and config.embedding != STAGE_EMBEDDING else "")
    return (f"{row_key(config)} {regime_of(config)}{w_e} block {config.feature_block} "
            f"seed {config.seed}")


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
    from csoa_nb.engine.builders import check_device, check_weight_files
    from csoa_nb.engine.posthoc_runs import POSTHOC_FILE
    from csoa_nb.engine.protocol import lacks_protocol
    from csoa_nb.engine.runs import find_run

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
        configs = sweeps.all_configs(preset, pending_ok=True, **into)
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
            cam_runs = [find_run(c) for c in sweeps.sweep_configs("wsol", preset, **into)
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
    """Where each run of each sweep stands (`job_status.run_status`: done, running, failed,
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
            configs = sweeps.sweep_configs(name, preset, output_dir=output_dir)
        except (SearchPending, NoValidationSplit) as error:
            left_out[name] = error
            continue
        states[name] = [(c, run_status(run_dir_for(c), find_run(c), jobs.get(c.hash, [])))
                        for c in configs]
    return states, left_out
