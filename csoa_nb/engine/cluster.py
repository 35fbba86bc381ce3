"""Where `make results` runs its tasks: today's pool of local processes, or one job each on a
Slurm cluster through submitit (`python -m csoa_nb.engine.results make --executor slurm`).

An executor takes the tasks of one phase of `make results` (train these configs; backfill or
score the post-hoc maps of these run folders; on a cluster also the pretraining stages, which
the driver trains itself with the local pool) and reports each as it ends (`Outcome`). The
driver (`csoa_nb.engine.make_results.make_results`) waits for every task of a phase before it
starts the next, so the phases keep their order without Slurm dependencies, and a phase is
chosen from what the run store holds when it starts (the "wsol" sweep from the finished search
runs).

- `LocalPool`: `jobs` worker processes of this machine (`engine/workers.worker_pool`); the
  first failure stops `make results`, as before.
- `SubmititExecutor`: each task is one submitit job (the tasks of a phase one job array on
  Slurm, `--array=0-N%parallelism`), or a local process under submitit's local executor
  (`cluster="local"`: the tests, a workstation). A failed job is reported with the tail of its
  log; the phase's other jobs go on, and `make results` names every failure at its end.
  A job that Slurm signals before its time limit or a pre-emption is re-queued
  (`ClusterJob.checkpoint`) and resumes from the run's last `checkpoint.pt`.

The run store is the only coordination between drivers and jobs: a job writes its run folder
under the folder's lock (`engine/runs.run_lock`, held by `train`; taken for the backfill and
post-hoc tasks by `make_results._in_worker`), so a config is never trained twice and a folder is
never written by two jobs.
A driver leaves out the tasks whose folder is locked by another process (another driver's job),
waits for that lock, then looks at the store again (`job_status.wait_for_locks`). The lock
needs `flock` across the cluster's nodes (NFS v4, Lustre mounted with `-o flock`, GPFS,
BeeGFS).

Job files live in `<output_dir>/.submitit/`: submitit's (`<job id>_submitted.pkl`, the log
`<job id>_0_log.out`, ...) and ours, in `records/`: `<job id>.json` (the driver: task, run,
log, when), `<job id>.start.json` (the job: which process on which host, the text its run lock
holds) and `<job id>.end.json` (the job: finished, or the error). `csoa_nb.engine.job_status`
reads them with the store and the locks for `python -m csoa_nb.engine.results status`.

submitit is imported only when a `SubmititExecutor` is made or a job runs: `--executor local`
does not need it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from csoa_nb.base.checks import check_choice
from csoa_nb.engine.job_status import RECORDS_DIR, log_tail
from csoa_nb.engine.runs import read_json, write_json
from csoa_nb.engine.workers import worker_pool

#: `--executor`: today's pool of local processes, Slurm jobs, or submitit's local executor.
EXECUTORS = ("local", "slurm", "submitit-local")
#: submitit's folder inside the run store (our job records: `job_status.RECORDS_DIR` in it).
JOBS_DIR = ".submitit"

#: What a task function is: `(task, payload) -> (name, seconds)`
#: (`csoa_nb.engine.make_results._in_worker`).
TaskFunction = Callable[[str, Any], tuple[str, float]]


@dataclass(frozen=True)
class Task:
    """One task of a phase: `kind` ("pretrain", "train", "backfill", "posthoc") and its
    `payload` (a config dict or a run folder) for the task function; `name` (a config hash or
    a folder name) and `what` (a few words) for the log; `folder`, the run folder it writes
    (locked while it does), if any; `gpu`: it needs a GPU (a CUDA run); `cpus`: CPUs it uses
    (the trainer and its loader workers)."""

    kind: str
    payload: Any
    name: str
    what: str
    folder: Path | None = None
    gpu: bool = False
    cpus: int = 1


@dataclass(frozen=True)
class Outcome:
    """A task that ended: `result` (what the task function returned) when it succeeded, else
    `error`; `job_id` and `log` on a cluster executor."""

    task: Task
    result: Any = None
    error: str | None = None
    job_id: str = ""
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# ------------------------------------------------------------------------------ executors
class LocalPool:
    """Today's `make results`: `jobs` fresh processes of this machine, one thread each; a task
    that raises stops the phase (its error propagates, as before)."""

    name = "local"
    #: The driver prepares the shared inputs and checks devices itself, on this machine.
    remote = False

    def __init__(self, jobs: int, poll_s: float = 1.0) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1 (runs trained at once), got {jobs}: "
                             "e.g. --jobs 2")
        self.jobs = jobs
        self.poll_s = poll_s

    def run(self, function: TaskFunction, tasks: Sequence[Task]) -> Iterator[Outcome]:
        if not tasks:
            return
        with worker_pool(self.jobs) as pool:  # its workers end with this process, even on SIGKILL
            futures = {pool.submit(function, task.kind, task.payload): task for task in tasks}
            for future in as_completed(futures):
                yield Outcome(futures[future], future.result())


@dataclass(frozen=True)
class ClusterSettings:
    """How `make results` submits its tasks as submitit jobs (`--executor slurm`, or
    `submitit-local`: submitit's local executor, for tests and a workstation).

    `gpus_per_run`: GPUs a CUDA run's job asks for (one run trains on one GPU: more would make
    another run, see `check`); `cpus_per_run`: CPUs per job (default: the run's loader workers
    + 1); `timeout_min`: a job's time limit; `array_parallelism`: jobs of an array running at
    once; `max_timeouts`: how often a job that reached its time limit is re-queued (a
    pre-emption does not count); `options`: more `#SBATCH --key=value` lines (account, qos,
    constraint); `setup`: shell lines run before each job (`module load ...`); `poll_s`: how
    often the driver looks at its jobs and at the locks of runs held elsewhere."""

    executor: str = "slurm"
    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int | None = None
    mem_gb: float | None = None
    timeout_min: int = 240
    array_parallelism: int = 64
    max_timeouts: int = 3
    options: tuple[tuple[str, str], ...] = ()
    setup: tuple[str, ...] = ()
    poll_s: float = 30.0

    def __post_init__(self) -> None:
        check_choice("executor", self.executor, EXECUTORS[1:])
        if self.gpus_per_run not in (0, 1):
            raise ValueError(
                f"--gpus-per-run must be 0 or 1, got {self.gpus_per_run}: `make results` trains "
                "each run on one GPU; a run on N GPUs is another run (its config records "
                "world_size, the global batch is N x batch_size), which the book does not read. "
                "Train such runs with torchrun (README, \"The paper preset on several GPUs\")")
        for flag, value, least in (("--cpus-per-run", self.cpus_per_run, 1),
                                   ("--timeout-min", self.timeout_min, 1),
                                   ("--array-parallelism", self.array_parallelism, 1),
                                   ("--max-timeouts", self.max_timeouts, 0)):
            if value is not None and (isinstance(value, bool) or value < least):
                raise ValueError(f"{flag} must be an integer >= {least}, got {value!r}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"--mem-gb must be > 0 (memory per job), got {self.mem_gb!r}")
        if not self.poll_s > 0:
            raise ValueError(f"poll_s must be > 0 seconds, got {self.poll_s!r}")
        for key, _ in self.options:
            if not key or key.startswith("-") or "=" in key:
                raise ValueError(f"--slurm-option {key!r}: give KEY=VALUE without dashes, e.g. "
                                 "--slurm-option account=myproj")

    @property
    def cluster(self) -> str:
        """submitit's name of the executor."""
        return "local" if self.executor == "submitit-local" else "slurm"

    def check(self, tasks: Sequence[Task]) -> None:
        """Refuse a CUDA run without a GPU to run on, before any job is submitted."""
        cuda = [t for t in tasks if t.gpu]
        if cuda and self.gpus_per_run == 0:
            raise ValueError(f"{len(cuda)} task(s) run on CUDA (e.g. {cuda[0].kind} "
                             f"{cuda[0].name}) but --gpus-per-run is 0: pass --gpus-per-run 1")

    def parameters(self, kind: str, gpu: bool, cpus: int) -> dict[str, Any]:
        """submitit's `update_parameters` for the jobs of one phase."""
        params: dict[str, Any] = {
            "name": f"csoa-{kind}",
            "timeout_min": self.timeout_min,
            "cpus_per_task": self.cpus_per_run or cpus,
            "tasks_per_node": 1,
            "nodes": 1,
            "stderr_to_stdout": True,  # one log per job: its tail says what went wrong
            "slurm_array_parallelism": self.array_parallelism,
        }
        if gpu and self.gpus_per_run:  # none asked for otherwise (a cluster without GPUs)
            params["gpus_per_node"] = self.gpus_per_run
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.options:
            params["slurm_additional_parameters"] = dict(self.options)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


@dataclass(frozen=True)
class ClusterJob:
    """The callable a submitit job runs: `function(kind, payload)` under the driver's command
    line (so `results.json` names the command that made the run, as with the local pool),
    with our records of the job (`records/<job id>.start.json`, `.end.json`)."""

    function: TaskFunction
    kind: str
    payload: Any
    argv: tuple[str, ...]
    records: str

    def __call__(self) -> tuple[str, float]:
        import submitit

        job_id = submitit.JobEnvironment().job_id
        sys.argv = list(self.argv)
        records = Path(self.records)
        write_json(records / f"{job_id}.start.json", {
            "pid": os.getpid(), "host": os.uname().nodename, "started": _now(),
            "holder": f"process {os.getpid()} on {os.uname().nodename}",  # as run_lock writes
        })
        try:
            result = self.function(self.kind, self.payload)
        except Exception as error:
            write_json(records / f"{job_id}.end.json", {
                "ok": False, "error": f"{type(error).__name__}: {error}", "ended": _now()})
            raise
        write_json(records / f"{job_id}.end.json", {"ok": True, "ended": _now()})
        return result

    def checkpoint(self) -> Any:
        """submitit's hook on Slurm's time-limit or pre-emption signal: re-queue the task, which
        resumes from its last per-epoch `checkpoint.pt` (the epoch under way is lost)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


class SubmititExecutor:
    """Each task one submitit job; the tasks of a phase one job array where the backend
    allows (Slurm). Job files in `folder` (`<output_dir>/.submitit`)."""

    remote = True

    def __init__(self, settings: ClusterSettings, folder: Path,
                 argv: Sequence[str] | None = None) -> None:
        try:
            import submitit  # noqa: F401 - checked here, before any work
        except ImportError:
            raise ValueError(
                f"--executor {settings.executor} needs submitit: pip install 'submitit>=1.5' "
                "(or use --executor local)") from None
        lacking = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if settings.cluster == "slurm" and lacking:
            raise ValueError(
                f"--executor slurm: no `{lacking[0]}` on this machine's PATH: run `make results` "
                "on a login node of the Slurm cluster (or use --executor local or "
                "submitit-local)")
        self.settings = settings
        self.name = settings.executor
        self.poll_s = settings.poll_s
        self.folder = Path(folder)
        self.records = self.folder / RECORDS_DIR
        self.argv = tuple(sys.argv if argv is None else argv)

    def executor(self, kind: str, gpu: bool, cpus: int) -> Any:
        """A submitit `AutoExecutor` for the jobs of one phase."""
        import submitit

        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.settings.cluster,
                                         slurm_max_num_timeout=self.settings.max_timeouts)
        executor.update_parameters(**self.settings.parameters(kind, gpu, cpus))
        return executor

    def run(self, function: TaskFunction, tasks: Sequence[Task]) -> Iterator[Outcome]:
        if not tasks:
            return
        self.settings.check(tasks)
        self.records.mkdir(parents=True, exist_ok=True)
        groups: dict[tuple[str, bool, int], list[Task]] = {}
        for task in tasks:
            groups.setdefault((task.kind, task.gpu, task.cpus), []).append(task)
        submitted: list[tuple[Task, Any]] = []
        for (kind, gpu, cpus), group in groups.items():
            from submitit.core.utils import FailedJobError, FailedSubmissionError

            executor = self.executor(kind, gpu, cpus)
            try:
                with executor.batch():  # one job array on Slurm
                    jobs = [executor.submit(ClusterJob(function, t.kind, t.payload, self.argv,
                                                       str(self.records))) for t in group]
            except (FailedSubmissionError, FailedJobError) as error:  # sbatch said no
                raise ValueError(
                    f"{self.name} refused the {len(group)} {kind} job(s): "
                    f"{str(error).strip()}. Check "
                    "--slurm-partition, --gpus-per-run, --timeout-min and --slurm-option "
                    "against the cluster's limits (sinfo, sacctmgr show qos)") from None
            for task, job in zip(group, jobs, strict=True):
                if self.settings.cluster == "local":  # no network file system's lag to wait
                    job._results_timeout_s = 1  # for (submitit waits 15 s for a result file)
                write_json(self.records / f"{job.job_id}.json", {
                    "job_id": job.job_id, "kind": task.kind, "name": task.name,
                    "what": task.what, "log": str(job.paths.stdout), "submitted": _now(),
                    "executor": self.name,
                    "driver": f"process {os.getpid()} on {os.uname().nodename}"})
                submitted.append((task, job))
        ids = sorted({str(job.job_id).split("_")[0] for _, job in submitted})
        tqdm.write(f"submitted {len(submitted)} {tasks[0].kind} job(s) to {self.name} "
                   f"(job {', '.join(ids)}); logs in {self.folder}")
        with tqdm(total=len(submitted), desc=f"{tasks[0].kind} jobs", unit="job") as bar:
            while submitted:
                ended = [(task, job) for task, job in submitted if job.done()]
                for task, job in ended:
                    submitted.remove((task, job))
                    bar.update()
                    yield self._outcome(task, job)
                if submitted:
                    time.sleep(self.poll_s)

    def _outcome(self, task: Task, job: Any) -> Outcome:
        job_id, log = str(job.job_id), Path(job.paths.stdout)
        try:
            return Outcome(task, job.result(), job_id=job_id, log=log)
        except Exception as error:  # noqa: BLE001 - submitit's errors and the task's, alike
            end, start = (self.records / f"{job_id}.{part}.json" for part in ("end", "start"))
            try:
                why = read_json(end, "job record").get("error") if end.is_file() else None
            except ValueError:  # torn by a full disk
                why = None
            if why is None:
                first = str(error).strip().splitlines()
                why = f"{type(error).__name__}: {first[0] if first else ''}".strip()
                if start.is_file():  # it began the task and never said how it ended
                    why = f"stopped without finishing (killed, out of time or pre-empted); {why}"
            return Outcome(task, error=why, job_id=job_id, log=log)


@dataclass
class Driver:
    """One `make results`: its executor, and the tasks that failed so far by (kind, name) (a
    cluster job's failure does not stop the others; they are named at the end, `JobsFailed`)."""

    executor: LocalPool | SubmititExecutor
    failed: dict[tuple[str, str], Outcome] = field(default_factory=dict)


class JobsFailed(RuntimeError):
    """Cluster jobs of `make results` failed; the message names each with its log's tail."""

    def __init__(self, failures: Sequence[Outcome], output_dir: str) -> None:
        self.failures = list(failures)
        lines = [f"{len(self.failures)} task(s) failed; every other task is done in {output_dir}:"]
        for outcome in self.failures:
            task = outcome.task
            lines.append(f"  {task.kind} {task.name} ({task.what}), job {outcome.job_id}: "
                         f"{outcome.error}; log {outcome.log}")
            lines += [f"      | {line}" for line in log_tail(outcome.log)]
        lines.append(
            "Fix the cause and run the same command again: finished runs are kept and an "
            "interrupted run resumes from its checkpoint.pt. `python -m csoa_nb.engine.results "
            f"status --output-dir {output_dir}` shows where each run stands.")
        super().__init__("\n".join(lines))


def _now() -> str:
    """The time, to the microsecond (records of one second sort by it)."""
    return datetime.now().isoformat(timespec="microseconds")
