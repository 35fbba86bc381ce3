"""The trainer under torchrun (gloo, CPU): one process equals the plain command bit for bit; two
processes equal what two DDP ranks compute, simulated step by step in one process; a SIGKILL of
one rank resumes; bf16 autocast trains; world_size and amp_dtype in the hash.

The torchrun runs start real processes (`python -m torch.distributed.run`); the smoke preset
keeps each under ten seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from smoke_runs import smoke
from torch.utils.data import DataLoader

from csoa_nb.data import collate_wsol
from csoa_nb.engine.builders import dataset_labels, method_losses, resolve_weights
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import EpochBatches, SeededItems, build_datasets
from csoa_nb.engine.distributed import DistEnv, DistributedClassBalancedBatchSampler
from csoa_nb.engine.evaluate import collect_maps, score_maps
from csoa_nb.engine.runs import load_run
from csoa_nb.engine.train import finalize_run, resume_run, setup_run, train
from csoa_nb.methods.confseg import alpha as alpha_schedule

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3  # the killed run dies after epoch 1's checkpoint, with epochs left to resume
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT")


def quiet(_: str) -> None:
    pass


def torchrun_cmd(nproc: int, data_root: Path, out: Path, method: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "csoa_nb.engine.train", "--preset", "smoke",
            "--method", method, "--no-progress", "--set", f"epochs={EPOCHS}",
            "--set", f"data_root={data_root}", "--set", f"output_dir={out}",
            "--set", "results_dirs="]


def torchrun_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    # the thread count of the in-process references: float sums split over threads round
    # differently
    env.update(OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONPATH=str(ROOT))
    return env


def run_torchrun(nproc: int, data_root: Path, out: Path, method: str) -> str:
    done = subprocess.run(torchrun_cmd(nproc, data_root, out, method), cwd=ROOT,
                          env=torchrun_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def two_ranks(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig,
                                                                                  str]:
    """A 2-rank csoa run (W_E, two heads, BatchNorm: every part DDP touches)."""
    out = tmp_path_factory.mktemp("two")
    stdout = run_torchrun(2, data_root, out, "csoa")
    return smoke(data_root, out, method="csoa", epochs=EPOCHS, world_size=2), stdout


# ------------------------------------------------------------------------------- one process
def test_torchrun_with_one_process_is_the_plain_run(data_root, tmp_path):
    reference = train(smoke(data_root, tmp_path / "plain", method="cam", epochs=EPOCHS),
                      progress=False, log=quiet)
    run_torchrun(1, data_root, tmp_path / "one", "cam")
    run_dir = tmp_path / "one" / reference.config.hash  # the same hash: world_size 1 unhashed
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["world_size"] == 1
    assert saved["metrics"] == reference.metrics  # bit for bit
    history = load_run(run_dir).history
    assert [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in history] == [
        {k: v for k, v in r.items() if k != "epoch_time_s"} for r in reference.history]


# ------------------------------------------------------------------------------ two processes
def simulate_two_ranks(config: RunConfig, run_dir: Path) -> tuple[list[dict], dict]:
    """What 2 DDP ranks compute, in one process: at each step, rank r's batch (its sampler),
    forward from the same weights, BatchNorm statistics and RNG state (DDP broadcasts rank 0's
    buffers before each forward; every rank draws the same stream), each rank's gradient
    halved and summed (DDP's average), one SGD step; BatchNorm statistics and RNG continue from
    rank 0's. Epoch logs sum both ranks; evaluation is single-process, on the whole test set."""
    single = config.replace(world_size=1)
    train_set, test_set = build_datasets(single)
    weights = resolve_weights(single, progress=False, log=quiet)
    samplers = [DistributedClassBalancedBatchSampler.for_env(
        dataset_labels(train_set), config.batch_size, config.classes_per_batch, config.seed,
        DistEnv(rank=rank, world_size=2)) for rank in range(2)]
    state = setup_run(single, torch.device("cpu"), (train_set, test_set), samplers[0],
                      weights, run_dir, time.perf_counter())
    run_dir.mkdir(parents=True)
    resume_run(state, quiet)  # a fresh run: config.json, state.net = the model itself
    loaders = [state.loader, DataLoader(SeededItems(train_set, config.seed, cache=True),
                                        batch_sampler=EpochBatches(samplers[1]),
                                        collate_fn=collate_wsol)]
    model, params = state.model, list(state.model.parameters())
    history = []
    for epoch in range(config.epochs):
        for sampler in samplers:
            sampler.set_epoch(epoch)
        model.train()
        steps = len(samplers[0])
        sums: list[dict[str, float]] = [{}, {}]
        correct, seen = [0, 0], [0, 0]
        for index, batches in enumerate(zip(*loaders, strict=True)):
            alpha = alpha_schedule(epoch + index / steps, config.epochs, config.alpha_ramp)
            rng = torch.get_rng_state()
            buffers = {k: b.clone() for k, b in model.named_buffers()}
            grads = []
            for rank, batch in enumerate(batches):
                torch.set_rng_state(rng)
                for k, b in model.named_buffers():
                    b.copy_(buffers[k])
                images, labels = batch["image"], batch["label"]
                out = model(images)
                terms = method_losses(single, out, images, labels, alpha, state.embed_net)
                state.optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                grads.append([p.grad.clone() for p in params])
                for name, value in terms.items():
                    sums[rank][name] = sums[rank].get(name, 0.0) + float(value.detach())
                correct[rank] += int((out.logits_last.argmax(1) == labels).sum())
                seen[rank] += len(labels)
                if rank == 0:
                    after = torch.get_rng_state(), {k: b.clone() for k, b in model.named_buffers()}
            torch.set_rng_state(after[0])
            for k, b in model.named_buffers():
                b.copy_(after[1][k])
            for p, g0, g1 in zip(params, *grads, strict=True):
                p.grad = g0 / 2 + g1 / 2
            state.optimizer.step()
        lr_now = state.optimizer.param_groups[0]["lr"]
        state.scheduler.step()
        history.append({
            "epoch": epoch + 1, "lr": lr_now,
            "alpha": alpha_schedule(epoch + 1, config.epochs, config.alpha_ramp),
            "train_acc": 100.0 * float(correct[0] + correct[1]) / float(seen[0] + seen[1]),
            **{f"loss_{k}": (sums[0][k] + sums[1][k]) / 2 / steps for k in sums[0]},
        })
        val_maps = collect_maps(model, state.val_set, single)
        val = score_maps(val_maps, single, thetas=(single.theta,), full=False)
        history[-1].update({f"val_{k}": v for k, v in val.to_record().items()})
    return history, finalize_run(state, quiet).metrics


def test_two_processes_compute_what_two_ddp_ranks_compute(two_ranks, tmp_path):
    config, stdout = two_ranks
    run_dir = Path(config.output_dir) / config.hash
    assert config.hash != config.replace(world_size=1).hash  # another run than W = 1
    assert stdout.count("run folder:") == 1  # rank 0 alone reports
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["world_size"] == 2 and saved["config_hash"] == config.hash
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    result = load_run(run_dir)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]  # one line per epoch: one writer
    maps = result.eval_maps()  # every test image once, in dataset order
    _, test_set = build_datasets(config)
    assert maps["labels"].tolist() == dataset_labels(test_set)
    assert maps["cam_last"].shape[0] == len(maps["boxes"]) == 16

    # the simulated run in a folder named by its own (world size 1) hash, as a run folder is
    history, metrics = simulate_two_ranks(config, tmp_path / config.replace(world_size=1).hash)
    # the log (both ranks' losses, validation on the gathered shards), bit for bit
    for got, want in zip(result.history, history, strict=True):
        assert set(got) == {*want, "epoch_time_s"}
        for key, value in want.items():
            assert got[key] == value, (got["epoch"], key)
    assert result.metrics == metrics  # the final evaluation, bit for bit


# ------------------------------------------------------------------------------------ a kill
def _rank_pid(agent: int, rank: int) -> int | None:
    """The pid of torchrun worker `rank` among the children of the agent process `agent`."""
    children = Path(f"/proc/{agent}/task/{agent}/children")
    for pid in children.read_text().split() if children.exists() else []:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def test_sigkill_of_one_rank_then_rerun_resumes(two_ranks, data_root, tmp_path):
    config, _ = two_ranks
    reference = load_run(Path(config.output_dir) / config.hash)
    out = tmp_path / "killed"
    cmd = torchrun_cmd(2, data_root, out, "csoa")
    agent = subprocess.Popen(cmd, cwd=ROOT, env=torchrun_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    run_dir = out / config.hash
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and agent.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    victim = _rank_pid(agent.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    assert agent.wait(timeout=60) != 0  # torchrun stops the job when a rank dies
    assert not (run_dir / "results.json").exists()
    done = subprocess.run(cmd, cwd=ROOT, env=torchrun_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming after epoch" in done.stdout
    resumed = load_run(run_dir)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.metrics == reference.metrics


# --------------------------------------------------------------------------- mixed precision
def test_bf16_autocast_trains_the_smoke_preset(data_root, tmp_path):
    fp32 = train(smoke(data_root, tmp_path, method="csoa", epochs=1), progress=False, log=quiet)
    config = smoke(data_root, tmp_path, method="csoa", epochs=1, amp=True)
    bf16 = train(config, progress=False, log=quiet)
    assert bf16.config.hash != fp32.config.hash
    losses = {k: v for k, v in bf16.history[0].items() if k.startswith("loss_")}
    assert {"loss_coaug", "loss_inner", "loss_total"} <= set(losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16.metrics.values())
    # autocast really ran: bf16 rounding moves the loss, a little
    assert losses["loss_total"] != fp32.history[0]["loss_total"]
    assert losses["loss_total"] == pytest.approx(fp32.history[0]["loss_total"], rel=0.05)


# ------------------------------------------------------------------------------------ config
def test_new_fields_enter_the_hash_only_away_from_their_default():
    base = RunConfig.from_preset("smoke")
    assert "world_size" not in base.hashed_fields()
    assert "amp_dtype" not in base.hashed_fields()
    assert base.replace(amp_dtype="bf16").hash == base.hash  # no autocast, no dtype
    assert base.replace(world_size=2).hash != base.hash
    assert base.replace(amp=True).hash != base.replace(amp=True, amp_dtype="bf16").hash
    with pytest.raises(ValueError, match="amp_dtype=fp16 with device cpu"):
        base.replace(amp=True, amp_dtype="fp16")


def test_world_size_differing_from_the_job_is_refused(data_root, tmp_path):
    with pytest.raises(ValueError, match=r"world_size=2 but this job has 1 process.*"
                                         r"--nproc_per_node"):
        train(smoke(data_root, tmp_path, world_size=2), progress=False, log=quiet)
