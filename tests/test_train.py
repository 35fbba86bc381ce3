"""The engine: every method trains on the smoke preset and writes its run folder; cache,
resume after a kill, the NaN guard and checkpoint checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from smoke_runs import RUN_FILES, smoke

import csoa_nb.engine.train as train_module
from csoa_nb.engine.config import METHODS
from csoa_nb.engine.evaluate import reevaluate
from csoa_nb.engine.loop import NonFiniteLossError
from csoa_nb.engine.runs import CheckpointError, load_checkpoint
from csoa_nb.engine.train import RunInterrupted, train


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_writes_its_run_folder(method, data_root, tmp_path):
    config = smoke(data_root, tmp_path, method=method)
    result = train(config, progress=False, log=lambda _: None)
    for name in RUN_FILES:
        assert (result.run_dir / name).is_file(), name
    assert result.run_dir == tmp_path / config.hash
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2]
    assert "loss_cls_last" in history[0] and "val_top1_loc_err" in history[0]
    assert ("loss_inner" in history[0]) == config.uses_inner_loss
    assert ("loss_coaug" in history[0]) == config.uses_coaug
    for key in ("top1_loc_err", "top5_loc_err", "gt_known_loc_err", "top1_cls_err",
                "top5_cls_err", "max_box_acc_v2", "pxap", "top1_loc_err@0.2"):
        assert 0.0 <= result.metrics[key] <= 100.0, key
    maps = result.eval_maps()
    assert maps["cam_last"].shape[0] == len(maps["labels"]) == 16  # 4 classes x 4 test images
    assert (maps["cam_feature"] is None) == (not config.two_heads)
    saved = json.loads((result.run_dir / "results.json").read_text())
    assert saved["config_hash"] == config.hash and "command" in saved


def test_finished_run_is_loaded_not_retrained(data_root, tmp_path):
    config = smoke(data_root, tmp_path, method="cam", epochs=1)
    first = train(config, progress=False, log=lambda _: None)
    stamp = (first.run_dir / "results.json").stat().st_mtime_ns
    second = train(config, progress=False, log=lambda _: None)
    assert second.cached and not first.cached
    assert (second.run_dir / "results.json").stat().st_mtime_ns == stamp
    assert second.metrics == first.metrics


def test_resume_after_interruption_matches_an_uninterrupted_run(data_root, tmp_path):
    config = smoke(data_root, tmp_path / "a", method="confseg", epochs=3)
    whole = train(config, progress=False, log=lambda _: None)
    interrupted = config.replace(output_dir=str(tmp_path / "b"))
    with pytest.raises(RunInterrupted):
        train(interrupted, progress=False, stop_after_epoch=1, log=lambda _: None)
    assert not (tmp_path / "b" / config.hash / "results.json").exists()
    resumed = train(interrupted, progress=False, log=lambda _: None)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.metrics == pytest.approx(whole.metrics)


def test_bf16_channels_last_run_trains_nhwc_and_resumes_bit_for_bit(data_root, tmp_path):
    """The cpu preset's precision and layout (amp, channels_last): the network trains on NHWC
    weights, and a run killed after epoch 1 ends with the same weights to the bit."""
    config = smoke(data_root, tmp_path / "a", method="csoa", epochs=2, amp=True,
                   channels_last=True)
    whole = train(config, progress=False, log=lambda _: None)
    weights = torch.load(whole.run_dir / "model.pt", weights_only=True)
    convs = [v for v in weights.values() if v.dim() == 4 and v.shape[1] > 1 and v.shape[-1] > 1]
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last)
                         and not v.is_contiguous() for v in convs)
    interrupted = config.replace(output_dir=str(tmp_path / "b"))
    with pytest.raises(RunInterrupted):
        train(interrupted, progress=False, stop_after_epoch=1, log=lambda _: None)
    resumed = train(interrupted, progress=False, log=lambda _: None)
    again = torch.load(resumed.run_dir / "model.pt", weights_only=True)
    assert weights.keys() == again.keys()
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert resumed.metrics == whole.metrics
    plain = train(config.replace(amp=False, channels_last=False, output_dir=str(tmp_path / "c")),
                  progress=False, log=lambda _: None)
    assert plain.run_dir.name != whole.run_dir.name  # another hash: other float rounding


@pytest.mark.parametrize(("epochs", "kill_when"), [(4, "checkpoint.pt"), (2, "config.json")],
                         ids=["after-first-checkpoint", "before-first-checkpoint"])
def test_sigkill_then_rerun_finishes_identically(data_root, tmp_path, epochs, kill_when):
    """A SIGKILL mid-run, or during epoch 1 before any checkpoint, loses nothing:
    the re-run finishes with the metrics of an uninterrupted run."""
    config = smoke(data_root, tmp_path / "ref", method="cam", epochs=epochs)
    reference = train(config, progress=False, log=lambda _: None)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "csoa_nb.engine.train", "--preset", "smoke", "--method", "cam",
           "--no-progress", "--set", f"epochs={epochs}", "--set", f"data_root={data_root}",
           "--set", f"output_dir={out}", "--set", "results_dirs="]
    # the same thread count as the reference: float sums split over threads round differently
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    signal_file = out / config.hash / kill_when
    deadline = time.time() + 120
    while not signal_file.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if kill_when == "config.json":
        assert not (out / config.hash / "checkpoint.pt").exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    metrics = json.loads((out / config.hash / "results.json").read_text())["metrics"]
    assert metrics == reference.metrics


def test_nan_guard_names_epoch_batch_and_term_and_keeps_checkpoint(
    data_root, tmp_path, monkeypatch
):
    config = smoke(data_root, tmp_path, method="confseg", epochs=2)
    real = train_module.method_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2 (32 images / batch 8 = 4 batches per epoch), batch 1
            terms["inner"] = terms["inner"] * float("nan")
        return terms

    monkeypatch.setattr(train_module, "method_losses", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1: loss term 'inner'"):
        train(config, progress=False, log=lambda _: None)
    state = load_checkpoint(tmp_path / config.hash / "checkpoint.pt", config)
    assert state["epoch"] == 1


def test_checkpoint_of_another_config_or_truncated_is_refused(data_root, tmp_path):
    config = smoke(data_root, tmp_path, method="cam", epochs=2)
    with pytest.raises(RunInterrupted):
        train(config, progress=False, stop_after_epoch=1, log=lambda _: None)
    path = tmp_path / config.hash / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="refusing to resume"):
        load_checkpoint(path, config.replace(seed=5))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        train(config, progress=False, log=lambda _: None)
    assert path.stat().st_size == 100  # nothing overwritten


def test_reevaluate_at_other_thetas_without_retraining(data_root, tmp_path):
    config = smoke(data_root, tmp_path, method="twohead", epochs=1)
    result = train(config, progress=False, log=lambda _: None)
    scores = reevaluate(result.run_dir, (0.25, 0.5))
    assert scores.thetas == (0.25, 0.5) and scores.pxap is not None
    again = reevaluate(result.run_dir, (0.3,))
    assert again.at(0.3) == result.scores.at(0.3)
    # re-scored at the thetas it saved, the run gives back its results.json exactly
    assert reevaluate(result.run_dir, result.scores.thetas).to_record() == result.metrics


def test_unwritable_output_dir_is_a_clear_error(data_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="pass a writable output_dir"):
        train(smoke(data_root, blocker, epochs=1), progress=False, log=lambda _: None)


def test_cli_rejects_unknown_method(capsys):
    with pytest.raises(SystemExit, match="valid choices"):
        train_module.main(["--preset", "smoke", "--method", "gradcam"])
    assert torch.get_num_threads() >= 1


def test_progress_false_reaches_the_pretraining_stage(data_root, tmp_path, capfd):
    """`progress=False` also silences the pretraining stage's bars."""
    config = smoke(data_root, tmp_path, method="cam", epochs=1)
    train(config, progress=False, log=lambda _: None)
    assert "pretrain epoch" not in capfd.readouterr().err


def test_epoch_line_names_alpha_only_where_it_weighs_a_term(data_root, tmp_path):
    """Alpha weighs Eq. 5 and Eq. 12, so plain CAM's log does not show it."""
    lines = {}
    for method in ("cam", "confseg"):
        logged: list[str] = []
        train(smoke(data_root, tmp_path / method, method=method, epochs=1), progress=False,
              log=logged.append)
        lines[method] = next(line for line in logged if f" {method} epoch 1/1" in line)
    assert "alpha" not in lines["cam"] and "lr " in lines["cam"]
    assert "alpha 1.00" in lines["confseg"]
    # every logged line fits a notebook's text column
    assert all(len(row) <= 88 for text in lines.values() for row in text.splitlines())
