"""`make results` on a cluster: each missing run one submitit job, the run store the
only coordination. Slurm is not here: the jobs run under submitit's local executor (one process
per job, with the same pickling, logs, signals and re-queueing), on sweeps of a few `smoke`
runs (`sweeps.sweep_configs` replaced by `tiny_sweeps`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from smoke_runs import smoke

import csoa_nb.engine.make_results as driver
import csoa_nb.engine.results as results
from csoa_nb.engine import sweeps
from csoa_nb.engine.cluster import (
    JOBS_DIR,
    ClusterSettings,
    JobsFailed,
    LocalPool,
    SubmititExecutor,
)
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.job_status import RECORDS_DIR, job_records, lock_holder
from csoa_nb.engine.runs import run_lock

pytest.importorskip("submitit")

#: The runs of the tiny sweeps, by role: fine-tuned from the pretraining stage (a "pretrain"
#: job first); from scratch, long enough to be killed mid-run; from scratch, short.
RUNS: dict[str, dict[str, Any]] = {
    "tuned": {"method": "cam", "seed": 0},
    "long": {"method": "cam", "seed": 1, "pretrained": "", "epochs": 40},
    "short": {"method": "cam", "seed": 2, "pretrained": ""},
}
#: The files of a run folder that must be the same bytes whoever trained it.
SAME_BYTES = ("config.json", "eval_maps.npz", "cams.npz", "val_maps.npz", "protocol.json",
              "model.pt")


def configs(data_root: Path, out: Path, *roles: str) -> list[RunConfig]:
    return [smoke(data_root, out, **RUNS[role]) for role in roles]


def tiny_sweeps(monkeypatch: pytest.MonkeyPatch, data_root: Path, *roles: str) -> None:
    """Make the sweeps of `make results` the runs `roles` (all in "table1"; no WSOL sweeps)."""

    def sweep(name: str, preset: str, **overrides: Any) -> list[RunConfig]:
        if name == "wsol_search":
            raise sweeps.NoValidationSplit("not in the tiny sweeps")
        if name != "table1":
            return []
        return configs(data_root, Path(overrides["output_dir"]), *roles)

    monkeypatch.setattr(sweeps, "sweep_configs", sweep)


def submitit_local(**changes: Any) -> ClusterSettings:
    settings = {"executor": "submitit-local", "gpus_per_run": 0, "timeout_min": 10,
                "poll_s": 0.1}
    return ClusterSettings(**{**settings, **changes})


def metrics_lines(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without its wall times."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if "time" not in k} for line in lines]


def assert_same_runs(reference: Path, store: Path, hashes: list[str]) -> None:
    """The runs `hashes` of `store` are those of `reference`, bit for bit: metrics, history,
    maps, weights, the command that made them."""
    for digest in hashes:
        ours, theirs = reference / digest, store / digest
        mine = json.loads((theirs / "results.json").read_text())
        wanted = json.loads((ours / "results.json").read_text())
        for key in ("metrics", "config_hash", "data", "command", "torch_threads"):
            assert mine[key] == wanted[key], (digest, key)
        assert metrics_lines(theirs) == metrics_lines(ours), digest
        for name in SAME_BYTES:
            assert (theirs / name).read_bytes() == (ours / name).read_bytes(), (digest, name)


def job_logs(store: Path) -> str:
    return "".join(p.read_text() for p in sorted((store / JOBS_DIR).glob("*_log.out")))


def epoch_lines(store: Path, digest: str, epoch: int = 1) -> int:
    """How many jobs trained epoch `epoch` of run `digest` (from scratch, not resumed)."""
    return len(re.findall(rf"^\[{digest}\] \w+ epoch {epoch}/", job_logs(store), re.M))


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `target` in a thread; its result or exception lands in the returned dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def trained_an_epoch(store: Path, digest: str) -> bool:
    """Whether a job of `store` logged an epoch of run `digest` (so its checkpoint is written:
    the trainer logs an epoch after checkpointing it)."""
    return (store / digest / "checkpoint.pt").is_file() and re.search(
        rf"^\[{digest}\] \w+ epoch \d+/", job_logs(store), re.M) is not None


def job_pid(store: Path, digest: str) -> int | None:
    """The process of the job that trains `digest` (its start record), once it has started."""
    for record in job_records(store / JOBS_DIR):
        if record.name == digest and record.start and not record.end:
            return int(record.start["pid"])
    return None


@pytest.fixture(scope="module")
def reference(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep's runs, made by `make results` with today's local pool."""
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        tiny_sweeps(monkeypatch, data_root, *RUNS)
        driver.make_results("smoke", jobs=1, output_dir=str(out))
    return out


# ------------------------------------------------------------------------------ the tests
def test_submitit_jobs_make_the_local_pools_runs_bit_for_bit(data_root, reference, tmp_path,
                                                             monkeypatch):
    """Each task one job (the pretraining stage first, then the runs), each run the same
    files as the local pool's, and the command that made it recorded as with the pool."""
    tiny_sweeps(monkeypatch, data_root, "tuned", "short")
    out = tmp_path / "runs"
    trained = driver.make_results("smoke", output_dir=str(out), cluster=submitit_local())
    hashes = [c.hash for c in configs(data_root, out, "tuned", "short")]
    assert sorted(trained) == sorted(hashes)
    assert_same_runs(reference, out, hashes)
    jobs = job_records(out / JOBS_DIR)
    assert [j.kind for j in jobs] == ["pretrain", "train", "train"]
    assert all(j.end == {"ok": True, "ended": j.end["ended"]} and j.log.is_file() for j in jobs)
    assert jobs[0].end["ended"] < min(j.start["started"] for j in jobs[1:])  # phases in order
    # nothing is left to do: a second driver submits nothing
    assert driver.make_results("smoke", output_dir=str(out), cluster=submitit_local()) == []
    assert len(job_records(out / JOBS_DIR)) == 3


def test_killed_job_fails_with_its_log_and_resumes_when_resubmitted(data_root, reference,
                                                                     tmp_path, monkeypatch,
                                                                     capsys):
    """A job killed mid-run (SIGKILL: no handler runs) is reported with its log's tail, the
    status names it failed, and the same command again resumes it from its checkpoint."""
    tiny_sweeps(monkeypatch, data_root, "long")
    out = tmp_path / "runs"
    (long,) = configs(data_root, out, "long")
    run_dir = out / long.hash
    thread, outcome = in_thread(lambda: driver.make_results(
        "smoke", output_dir=str(out), cluster=submitit_local()))
    wait_for(lambda: trained_an_epoch(out, long.hash), "the first checkpoint")
    pid = wait_for(lambda: job_pid(out, long.hash), "the job's start record")
    os.kill(pid, signal.SIGKILL)
    thread.join(90)
    error = outcome.get("error")
    assert isinstance(error, JobsFailed), outcome
    (failure,) = error.failures
    assert failure.task.name == long.hash and "stopped without finishing" in failure.error
    assert re.search(rf"\[{long.hash}\] cam epoch \d+/40", str(error))  # the log's tail
    assert "run the same command again" in str(error)
    assert not (run_dir / "results.json").exists()
    capsys.readouterr()
    assert results.main(["status", "--preset", "smoke", "--output-dir", str(out)]) == 0
    status = capsys.readouterr().out
    assert "table1: 1 runs: 0 done, 0 running, 1 failed, 0 queued, 0 missing" in status
    assert re.search(rf"{long.hash} .* failed +job {failure.job_id}: stopped without "
                     r"finishing.*has checkpoint.pt: resumes from it", status)
    assert re.search(rf"      \| \[{long.hash}\] cam epoch \d+/40", status)
    # the same command again: a new job, which resumes from the checkpoint
    assert driver.make_results("smoke", output_dir=str(out),
                                cluster=submitit_local()) == [long.hash]
    assert len(job_records(out / JOBS_DIR)) == 2
    assert re.search(rf"\[{long.hash}\] resuming after epoch \d+ from", job_logs(out))
    assert epoch_lines(out, long.hash) == 1  # epoch 1 was trained once, by the first job
    assert_same_runs(reference, out, [long.hash])
    results.main(["status", "--preset", "smoke", "--output-dir", str(out)])
    assert "table1: 1 runs: 1 done, 0 running, 0 failed" in capsys.readouterr().out


def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(data_root, reference,
                                                                    tmp_path, monkeypatch):
    """Slurm's signal before a time limit or a pre-emption (USR2): submitit calls the job's
    `checkpoint`, re-queues the job, and the run resumes; the driver sees one job succeed."""
    tiny_sweeps(monkeypatch, data_root, "long")
    out = tmp_path / "runs"
    (long,) = configs(data_root, out, "long")
    thread, outcome = in_thread(lambda: driver.make_results(
        "smoke", output_dir=str(out), cluster=submitit_local()))
    wait_for(lambda: trained_an_epoch(out, long.hash), "the first checkpoint")
    pid = wait_for(lambda: job_pid(out, long.hash), "the job's start record")
    os.kill(pid, signal.SIGUSR2)
    thread.join(90)
    assert outcome == {"result": [long.hash]}
    logs = job_logs(out)
    assert "Calling checkpoint method" in logs and "Requeued job" in logs
    assert re.search(rf"\[{long.hash}\] resuming after epoch \d+ from", logs)
    (job,) = job_records(out / JOBS_DIR)
    assert job.end["ok"] and job.start["pid"] != pid  # the same job, a second process
    assert_same_runs(reference, out, [long.hash])


def test_two_drivers_at_once_train_each_run_once(data_root, reference, tmp_path, monkeypatch):
    """Two drivers (two login nodes) on one run store at the same time: the run is trained by
    one job; a twin job waits for the run's lock and loads the finished run."""
    tiny_sweeps(monkeypatch, data_root, "long")
    out = tmp_path / "runs"
    hashes = [c.hash for c in configs(data_root, out, "long")]
    drivers = [in_thread(lambda: driver.make_results(
        "smoke", output_dir=str(out), cluster=submitit_local())) for _ in range(2)]
    for thread, outcome in drivers:
        thread.join(120)
        assert "error" not in outcome, outcome
    for digest in hashes:
        assert epoch_lines(out, digest) == 1, f"run {digest} was trained more than once"
        assert epoch_lines(out, digest, epoch=2) == 1
    assert_same_runs(reference, out, hashes)


def test_driver_leaves_a_held_run_to_its_holder_and_takes_it_over_if_it_stops(
        data_root, reference, tmp_path, monkeypatch, capsys):
    """A run whose folder another process holds (another driver's job) is not submitted
    again: the driver waits for the lock, and trains the run itself when the holder stopped
    without finishing it. `status` names the holder meanwhile."""
    tiny_sweeps(monkeypatch, data_root, "short")
    out = tmp_path / "runs"
    (short,) = configs(data_root, out, "short")
    waiting = threading.Event()
    real_wait = driver.wait_for_locks

    def wait(held, poll_s):
        if held:
            waiting.set()
        return real_wait(held, poll_s)

    monkeypatch.setattr(driver, "wait_for_locks", wait)
    with run_lock(out / short.hash):
        thread, outcome = in_thread(lambda: driver.make_results(
            "smoke", jobs=1, output_dir=str(out)))
        assert waiting.wait(60), "the driver did not wait for the held run"
        assert not (out / short.hash / "config.json").exists()  # nobody trained it
        holder = lock_holder(out / short.hash)
        assert holder == f"process {os.getpid()} on {os.uname().nodename}"
        results.main(["status", "--preset", "smoke", "--output-dir", str(out)])
        status = capsys.readouterr().out
        assert re.search(rf"{short.hash} .* running +lock held by {holder}", status), status
        assert f"{short.hash}: in use by {holder}; waiting for it" in status
    thread.join(60)  # the holder stopped without finishing: the driver trains the run
    assert outcome == {"result": [short.hash]}
    assert_same_runs(reference, out, [short.hash])


def test_status_says_done_running_failed_queued_missing(data_root, tmp_path, monkeypatch,
                                                        capsys):
    """`status` from the run store, the locks and the job records alone (no Slurm)."""
    from csoa_nb.engine.runs import write_json

    roles = {"done": {"seed": 10}, "running": {"seed": 11}, "failed": {"seed": 12},
             "killed": {"seed": 13}, "queued": {"seed": 14}, "missing": {"seed": 15}}
    out = tmp_path / "runs"
    runs = {role: smoke(data_root, out, method="cam", **fields) for role, fields in roles.items()}

    def sweep(name: str, preset: str, **overrides: Any) -> list[RunConfig]:
        if name == "wsol_search":
            raise sweeps.NoValidationSplit("not in this test")
        return list(runs.values()) if name == "table1" else []

    monkeypatch.setattr(sweeps, "sweep_configs", sweep)
    records = out / JOBS_DIR / RECORDS_DIR
    records.mkdir(parents=True)
    here = f"process {os.getpid()} on {os.uname().nodename}"
    for number, (role, config) in enumerate(runs.items()):
        if role == "missing":
            continue
        job = f"77_{number}"
        log = out / JOBS_DIR / f"{job}_0_log.out"
        log.write_text(f"line one of {role}\n\nlast line of {role}\n")
        write_json(records / f"{job}.json", {"job_id": job, "kind": "train", "name": config.hash,
                                             "what": role, "log": str(log),
                                             "submitted": f"2026-01-01T00:00:0{number}"})
        if role != "queued":
            write_json(records / f"{job}.start.json", {"pid": 1, "host": "node", "holder": (
                here if role == "running" else "process 1 on node")})
        if role in ("failed", "done"):
            write_json(records / f"{job}.end.json", {"ok": role == "done", "error": "NonFin"
                                                     "iteLossError: loss is nan"})
    (out / runs["done"].hash).mkdir()
    (out / runs["done"].hash / "results.json").write_text("{}")
    (out / runs["killed"].hash).mkdir()
    (out / runs["killed"].hash / "checkpoint.pt").write_bytes(b"")
    with run_lock(out / runs["running"].hash):
        assert results.main(["status", "--preset", "smoke", "--output-dir", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "table1: 6 runs: 1 done, 1 running, 2 failed, 1 queued, 1 missing"
    state = {role: next(line for line in lines if runs[role].hash in line) for role in runs}
    assert re.search(r" done +\S+" + runs["done"].hash, state["done"])
    assert state["running"].endswith(f"running  lock held by {here} (job 77_1, log "
                                     f"{out / JOBS_DIR / '77_1_0_log.out'})")
    assert re.search(r" failed +job 77_2: NonFiniteLossError: loss is nan; log \S+77_2_0_log"
                     r"\.out$", state["failed"])
    assert re.search(r" failed +job 77_3: stopped without finishing \(killed, out of time or "
                     r"pre-empted\) on node; log \S+ \(has checkpoint.pt: resumes from it\)$",
                     state["killed"])
    assert re.search(r" queued +job 77_4 submitted 2026-01-01T00:00:04, not started \(or "
                     r"cancelled before it started: squeue -j 77_4\)$", state["queued"])
    assert state["missing"].endswith("missing  no job")
    tail = lines[lines.index(state["failed"]) + 1: lines.index(state["failed"]) + 3]
    assert tail == ["      | line one of failed", "      | last line of failed"]
    assert "wsol_search: left out: not in this test" in lines


def test_cluster_options_are_checked_before_any_work(tmp_path, monkeypatch):
    """Wrong options say which and how to fix them; none starts work or needs Slurm."""

    def no_work(*args, **kwargs):
        raise AssertionError("work began")

    monkeypatch.setattr(driver, "_run_tasks", no_work)
    out = ["--output-dir", str(tmp_path / "out")]
    cases = {
        ("--slurm-partition", "gpu"): r"--slurm-partition apply to --executor slurm or "
                                      r"submitit-local, not to --executor local",
        ("--executor", "slurm", "--gpus-per-run", "2"): r"--gpus-per-run must be 0 or 1, got "
                                                        r"2: .* torchrun",
        ("--executor", "slurm", "--timeout-min", "0"): r"--timeout-min must be an integer >= "
                                                       r"1, got 0",
        ("--executor", "slurm", "--slurm-option", "account"): r"--slurm-option 'account': "
                                                              r"give KEY=VALUE",
    }
    for flags, message in cases.items():
        with pytest.raises(SystemExit, match=rf"^error: {message}"):
            results.main(["make", "--preset", "smoke", *flags, *out])
    with pytest.raises(SystemExit) as caught:
        results.main(["make", "--executor", "pbs"])
    assert caught.value.code == 2
    cuda = driver._task("train", RunConfig.from_preset("smoke", device="cuda").to_dict(), "")
    with pytest.raises(ValueError, match=r"run on CUDA .* --gpus-per-run is 0: pass "
                                         r"--gpus-per-run 1"):
        submitit_local().check([cuda])
    assert not (tmp_path / "out").exists()


def test_slurm_jobs_ask_for_what_the_options_say(tmp_path, monkeypatch):
    """The sbatch script of a phase's job array (rendered, not submitted: no Slurm here), and
    a machine without Slurm's commands refused before any work."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match=r"--executor slurm: no `sbatch` on this machine's "
                                         r"PATH: run `make results` on a login node"):
        SubmititExecutor(ClusterSettings(), tmp_path / JOBS_DIR)
    for tool in ("sbatch", "srun"):  # stand-ins: nothing is run
        (tmp_path / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / tool).chmod(0o755)
    settings = ClusterSettings(partition="gpu", timeout_min=300, array_parallelism=8,
                               cpus_per_run=9, mem_gb=32, max_timeouts=5,
                               options=(("account", "wsol"), ("qos", "high")),
                               setup=("module load cuda",))
    executor = SubmititExecutor(settings, tmp_path / JOBS_DIR).executor("train", True, 1)
    slurm = executor._executor
    assert slurm.max_num_timeout == 5
    assert slurm.parameters["array_parallelism"] == 8
    script = slurm._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=300", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=9", "#SBATCH --mem=32GB", "#SBATCH --account=wsol",
                 "#SBATCH --qos=high", "#SBATCH --job-name=csoa-train", "#SBATCH --signal=USR2@90",
                 "#SBATCH --open-mode=append", "module load cuda"):
        assert line in script, (line, script)
    cpu = SubmititExecutor(ClusterSettings(gpus_per_run=1), tmp_path).executor("backfill",
                                                                               False, 1)
    assert "gpus-per-node" not in cpu._executor._make_submission_file_text("x", "uid")
    # sbatch refuses the jobs: the driver says so, naming the options to check
    (tmp_path / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition "
                                     "specified: gpu' >&2\nexit 1\n")
    task = driver._task("backfill", str(tmp_path / "run"), "protocol")
    with pytest.raises(ValueError, match=r"^slurm refused the 1 backfill job\(s\): sbatch: error: "
                                         r"invalid partition specified: gpu\. Check "
                                         r"--slurm-partition"):
        list(SubmititExecutor(settings, tmp_path / JOBS_DIR).run(driver._in_worker, [task]))


def test_the_local_pool_does_not_need_submitit():
    """`--executor local` (the default) never imports submitit."""
    script = ("import sys, csoa_nb.engine.results as r; r.main(['list', '--preset', 'smoke']); "
              "print('submitit' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert shown[-1] == "False"
    assert LocalPool(1).remote is False
