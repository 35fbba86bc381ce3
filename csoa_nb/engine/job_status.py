"""Where the runs of `make results` stand, from the run store alone: who holds a run's lock
(`lock_holder`, `wait_for_locks`: the drivers' only coordination), the records of the cluster
jobs (`job_records`, written by `csoa_nb.engine.cluster.SubmititExecutor`) and each run's state
for `python -m csoa_nb.engine.results status` (`run_status`).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from csoa_nb.engine.runs import LOCK_NAME, read_json

#: Our job records' folder inside submitit's (`<output_dir>/.submitit/records/`).
RECORDS_DIR = "records"
#: Lines of a job's log that `status` and a failure report show.
LOG_TAIL_LINES = 12
#: The states of a run in `status` (`run_status`).
STATES = ("done", "running", "failed", "queued", "missing")


# ------------------------------------------------------------------------------- locks
def lock_holder(folder: Path) -> str | None:
    """Who holds the run lock of `folder` (`engine/runs.run_lock`): the text its lock file
    holds ("process <pid> on <host>"), or None when nobody does (no lock file, or a free one).
    Probed with a shared, non-blocking `flock`, released at once; nothing is created."""
    path = Path(folder) / LOCK_NAME
    try:
        handle = open(path)  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def wait_for_locks(held: Mapping[Path, str], poll_s: float) -> None:
    """Wait (a progress bar) until no folder of `held` (folder -> holder) is locked."""
    waiting = dict(held)
    with tqdm(total=len(waiting), desc="runs held elsewhere", unit="run",
              disable=not waiting) as bar:
        while waiting:
            for folder in [f for f in waiting if lock_holder(f) is None]:
                del waiting[folder]
                bar.update()
            if waiting:
                time.sleep(poll_s)


# --------------------------------------------------------------------------------- status
@dataclass
class JobRecord:
    """A submitted job as our records tell it (`records/<job id>*.json`)."""

    job_id: str
    kind: str
    name: str
    log: Path | None
    submitted: str
    start: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)


def job_records(folder: Path) -> list[JobRecord]:
    """Every job recorded in `folder` (`<output_dir>/.submitit`), oldest submission first."""
    records = Path(folder) / RECORDS_DIR
    found = []
    for path in sorted(records.glob("*.json")) if records.is_dir() else []:
        if path.name.endswith((".start.json", ".end.json")):
            continue
        try:
            data = read_json(path, "job record", ("job_id", "kind", "name"))
        except ValueError:  # a record torn by a full disk: the job is still in submitit's files
            continue
        job_id = str(data["job_id"])
        extra = {}
        for part in ("start", "end"):
            other = records / f"{job_id}.{part}.json"
            try:
                extra[part] = read_json(other, "job record") if other.is_file() else {}
            except ValueError:
                extra[part] = {}
        found.append(JobRecord(job_id, data["kind"], data["name"],
                               Path(data["log"]) if data.get("log") else None,
                               str(data.get("submitted", "")), **extra))
    return sorted(found, key=lambda r: r.submitted)


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last `lines` non-empty lines of a job's log ([] when there is none)."""
    if path is None or not Path(path).is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64 * 1024))
        text = handle.read().decode(errors="replace")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


@dataclass(frozen=True)
class RunStatus:
    """A run of a sweep in `status`: `state` (one of `STATES`), a line of `detail`, and the
    tail of its last job's log when it failed."""

    state: str
    detail: str = ""
    tail: tuple[str, ...] = ()


def run_status(run_dir: Path, finished: Path | None, jobs: Sequence[JobRecord]) -> RunStatus:
    """The state of the run whose folder is `run_dir` (`finished`: its finished folder, as
    `find_run` says, maybe in a results dir), from the store, its lock and `jobs` (its train
    jobs, oldest first): done, running (lock held; by which job), failed (its last job ended
    with an error or stopped without finishing), queued (submitted, not started), missing."""
    if finished is not None:
        return RunStatus("done", str(finished))
    last = jobs[-1] if jobs else None
    holder = lock_holder(run_dir)
    if holder is not None:
        job = next((j for j in reversed(jobs) if j.start.get("holder") == holder), None)
        detail = f"lock held by {holder}"
        if job is not None:
            detail += f" (job {job.job_id}, log {job.log})"
        return RunStatus("running", detail)
    resumes = " (has checkpoint.pt: resumes from it)" if (run_dir / "checkpoint.pt").is_file() \
        else ""
    if last is None or last.end.get("ok"):
        return RunStatus("missing", f"no job{resumes}" if last is None else f"job {last.job_id} "
                        f"ended without the run: run `make results` again{resumes}")
    if last.end:
        why = last.end.get("error", "failed")
    elif last.start:
        why = (f"stopped without finishing (killed, out of time or pre-empted) on "
               f"{last.start.get('host', '?')}")
    else:
        return RunStatus("queued", f"job {last.job_id} submitted {last.submitted}, not started "
                        f"(or cancelled before it started: squeue -j {last.job_id})")
    return RunStatus("failed", f"job {last.job_id}: {why}; log {last.log}{resumes}",
                    tuple(log_tail(last.log)))
