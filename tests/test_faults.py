"""Faults of the run store and the engine: each test reproduces one fault.

Fault -> test:

- the data set's identity is in the hash
  -> test_data_identity_is_in_the_hash, test_synthetic_generator_version_is_in_the_hash
- a cached or a fresh pretraining stage -> test_cached_or_fresh_pretraining_gives_the_same_run
- two commands on one run folder
  -> test_second_command_waits_for_the_lock, test_find_run_of_a_finished_twin
- loader workers -> test_worker_count_does_not_change_the_run
- float noise in theta -> test_theta_is_rounded_to_one_run
- a torn metrics line -> test_torn_metrics_line_resumes
- corrupt or foreign run files -> test_corrupt_run_files_name_the_file
- a full disk, temp files of a killed writer
  -> test_disk_full_is_named_and_leaves_no_temp_file, test_orphan_temp_files_are_removed_on_resume
- settings that cannot train
  -> test_bad_settings_fail_before_any_work, test_bad_config_values_are_refused,
     test_missing_class_in_train_split_is_named
- a corrupt pretraining cache -> test_corrupt_pretraining_cache_says_what_to_delete
- machine paths in run files
  -> test_config_json_has_no_machine_paths, test_committed_runs_have_no_machine_paths,
     test_command_line_names_no_machine_folder
- a SIGKILL before the first checkpoint
  -> test_train.py::test_sigkill_then_rerun_finishes_identically

The other fault tests: the runbook and `evaluate` in test_faults_runbook.py; the data readers in
test_faults_data.py and test_faults_data_round2.py; the run store's files in
test_faults_store_round2.py; settings and command lines in test_faults_round2.py; the old array
format in test_run_arrays.py.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from fixtures_data import build_cub, build_metadata
from smoke_runs import smoke

import csoa_nb.engine.runs as runs_module
from csoa_nb.base.paths import project_root
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.pretrain import find_pretrained, pretrain
from csoa_nb.engine.runs import RunStoreError, find_run, load_run, run_lock, save_torch
from csoa_nb.engine.train import RunInterrupted, train


def quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------------- data identity
def test_data_identity_is_in_the_hash(tmp_path):
    """A changed data set is another run; a moved one is the same run."""
    cub = build_cub(tmp_path / "a")
    config = RunConfig.from_preset("cpu", dataset="cub", num_classes=2, classes_per_batch=2,
                              batch_size=2, data_root=str(cub))
    moved = tmp_path / "b" / "CUB"
    shutil.copytree(cub, moved)
    assert config.replace(data_root=str(moved)).hash == config.hash  # paths do not matter
    boxes = moved / "bounding_boxes.txt"
    lines = boxes.read_text().splitlines()
    first = lines[0].split()
    lines[0] = " ".join([first[0], str(float(first[1]) + 1.0), *first[2:]])
    boxes.write_text("\n".join(lines) + "\n")
    assert config.replace(data_root=str(moved)).hash != config.hash  # corrected boxes
    # the parent of CUB_200_2011/ is the same data set as the folder itself
    nested = tmp_path / "c"
    shutil.copytree(cub, nested / "CUB_200_2011")
    assert config.replace(data_root=str(nested)).hash == config.hash
    # wsolevaluation metadata: its lists are the data's identity
    root, meta = build_metadata(tmp_path / "m")
    meta_config = config.replace(dataset="wsol-metadata", data_root=str(root),
                                 metadata_dir=str(meta))
    labels = meta / "test" / "class_labels.txt"
    before = meta_config.hash
    lines = labels.read_text().splitlines()
    image_id, label = lines[0].rsplit(",", 1)
    lines[0] = f"{image_id},{int(label) + 1}"
    labels.write_text("\n".join(lines) + "\n")
    assert meta_config.hash != before


def test_synthetic_generator_version_is_in_the_hash(monkeypatch):
    """The synthetic benchmark is identified by its spec hash, generator included."""
    from csoa_nb.data.synthetic import spec

    config = RunConfig.from_preset("cpu")
    before = config.hash
    monkeypatch.setattr(spec, "GENERATOR_VERSION", "999")
    assert config.hash != before


# -------------------------------------------------------------------------------- one stream
def test_cached_or_fresh_pretraining_gives_the_same_run(data_root, tmp_path):
    """The first run of a config (which generates the data and trains the pretraining
    stage) equals a re-run whose data and pretraining are cached."""
    fresh = smoke(tmp_path / "fresh-data", tmp_path / "fresh", method="csoa")
    assert find_pretrained(fresh) is None and not (tmp_path / "fresh-data").exists()
    first = train(fresh, progress=False, log=quiet)
    cached = smoke(data_root, tmp_path / "cached", method="csoa")
    pretrain(cached, progress=False)  # the stage is cached before the run starts
    torch.manual_seed(12345)  # and the caller's global stream is elsewhere
    second = train(cached, progress=False, log=quiet)
    assert second.metrics == first.metrics
    assert second.history[-1]["loss_total"] == first.history[-1]["loss_total"]


def test_worker_count_does_not_change_the_run(data_root, tmp_path):
    """0 or 2 loader workers, and a resume with workers, give the same run."""
    base = smoke(data_root, tmp_path / "w0", method="confseg", epochs=3)
    zero = train(base, progress=False, log=quiet)
    two = base.replace(num_workers=2, output_dir=str(tmp_path / "w2"))
    assert two.hash == base.hash
    with pytest.raises(RunInterrupted):
        train(two, progress=False, stop_after_epoch=1, log=quiet)
    resumed = train(two, progress=False, log=quiet)
    assert resumed.metrics == zero.metrics
    assert [r["loss_total"] for r in resumed.history] == [r["loss_total"] for r in zero.history]


# --------------------------------------------------------------------------------------- lock
def _hold_lock(folder: str, ready, release) -> None:
    with run_lock(Path(folder), quiet):
        ready.set()
        release.wait(60)


def test_second_command_waits_for_the_lock(data_root, tmp_path):
    """While another process holds a run folder, a second command says so and waits;
    then it trains once: one line per epoch in metrics.jsonl."""
    config = smoke(data_root, tmp_path, method="cam", epochs=2)
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path / config.hash), ready,
                                                      release))
    holder.start()
    assert ready.wait(60)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if "is in use by" in line:
            release.set()  # the holder finishes once the second command reported the wait

    result = train(config, progress=False, log=log)
    holder.join(30)
    waited = [line for line in lines if "is in use by process" in line]
    assert len(waited) == 1 and str(holder.pid) in waited[0]
    assert [r["epoch"] for r in result.history] == [1, 2]


# ------------------------------------------------------------------------------------- theta
def test_theta_is_rounded_to_one_run():
    """0.1 * 3 = 0.30000000000000004 is the run of theta 0.3 (and its keys)."""
    odd = RunConfig.from_preset("cpu", theta=0.1 * 3)
    assert odd.theta == 0.3 and odd.hash == RunConfig.from_preset("cpu", theta=0.3).hash


# ------------------------------------------------------------------------------- the run store
def test_torn_metrics_line_resumes(data_root, tmp_path):
    """A torn last line is dropped (that epoch re-runs from the checkpoint); a bad line
    elsewhere names the file and line."""
    config = smoke(data_root, tmp_path, method="cam", epochs=2)
    with pytest.raises(RunInterrupted):
        train(config, progress=False, stop_after_epoch=1, log=quiet)
    metrics = tmp_path / config.hash / "metrics.jsonl"
    with open(metrics, "a") as handle:
        handle.write('{"epoch": 2, "loss_to')  # the disk filled during the append
    with pytest.warns(RuntimeWarning, match="torn last line 2"):
        result = train(config, progress=False, log=quiet)
    assert [r["epoch"] for r in result.history] == [1, 2]
    good = metrics.read_text()
    metrics.write_text("{oops\n" + good)
    with pytest.raises(RunStoreError, match=rf"{metrics.name}, line 1: not JSON"):
        runs_module.read_jsonl(metrics)


def test_corrupt_run_files_name_the_file(data_root, tmp_path):
    """Corrupt or foreign results.json / config.json name the file and the fix."""
    config = smoke(data_root, tmp_path, method="cam", epochs=1)
    run_dir = train(config, progress=False, log=quiet).run_dir
    results, config_json = run_dir / "results.json", run_dir / "config.json"
    good_results, good_config = results.read_text(), config_json.read_text()
    results.write_text('{"metrics": ')
    with pytest.raises(RunStoreError, match=r"results.json is not a readable results file.*"
                                            r"move the run folder away"):
        train(config, progress=False, log=quiet)
    results.write_text('["not", "ours"]')
    with pytest.raises(RunStoreError, match=r"results.json is not a csoa_nb results file"):
        load_run(run_dir)
    results.write_text(good_results)
    config_json.write_text('{"method": "cam", "colour": 3}')
    with pytest.raises(RunStoreError, match=r"config.json is not a valid run config.*colour"):
        load_run(run_dir)
    config_json.write_text(good_config)
    assert load_run(run_dir).metrics == json.loads(good_results)["metrics"]


def test_disk_full_is_named_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """A full disk says so, naming the folder; the temp file is removed; the file and
    its folder are fsynced before and after the rename."""
    target = tmp_path / "checkpoint.pt"

    def full_disk(payload, handle):  # save_torch hands torch a file object
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs_module.torch, "save", full_disk)
    with pytest.raises(OSError, match=rf"no space left on the disk of {tmp_path}"):
        save_torch(target, {"x": 1})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(runs_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    save_torch(target, {"x": 1})
    assert len(synced) == 2  # the temp file, then the folder after the rename
    assert torch.load(target, weights_only=True) == {"x": 1}


def test_orphan_temp_files_are_removed_on_resume(data_root, tmp_path):
    """Temp files of a killed writer are removed when the run is next opened; other
    files of the folder are kept."""
    config = smoke(data_root, tmp_path, method="cam", epochs=2)
    with pytest.raises(RunInterrupted):
        train(config, progress=False, stop_after_epoch=1, log=quiet)
    run_dir = tmp_path / config.hash
    orphan = run_dir / ".checkpoint.pt.99999999.tmp"
    orphan.write_bytes(b"x" * 1000)
    mine = run_dir / "notes.txt"
    mine.write_text("the user's")
    lines: list[str] = []
    train(config, progress=False, log=lines.append)
    assert not orphan.exists() and mine.read_text() == "the user's"
    assert any(".checkpoint.pt.99999999.tmp" in line for line in lines)


# ---------------------------------------------------------------------------- checks up front
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 400, "classes_per_batch": 4}, r"batch_size \(400\) exceeds the 32"),
        ({"device": "cuda"} if not torch.cuda.is_available() else {"device": "tpu"},
         r"device"),
    ],
)
def test_bad_settings_fail_before_any_work(data_root, tmp_path, changes, message):
    """Settings that cannot train fail before pretraining and leave no run folder."""
    train(smoke(data_root, tmp_path / "warm", method="cam", epochs=1), progress=False,
          log=quiet)  # the data set exists: only the check itself runs below
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        train(smoke(data_root, out, **changes), progress=False, log=quiet)
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_config_values_are_refused():
    """Seed out of numpy's range and an empty test split fail at once."""
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match=r"seed must lie in 0\.\."):
            RunConfig.from_preset("smoke", seed=seed)
    with pytest.raises(ValueError, match="test_per_class must be >= 1"):
        RunConfig.from_preset("smoke", test_per_class=0)


def test_missing_class_in_train_split_is_named(tmp_path):
    """A class without training images is named before any work."""
    cub = build_cub(tmp_path / "cub")
    split = cub / "train_test_split.txt"
    labels = dict(line.split() for line in (cub / "image_class_labels.txt").read_text()
                  .splitlines())
    rows = [line.split() for line in split.read_text().splitlines()]
    split.write_text("".join(f"{i} {'0' if labels[i] == '2' else flag}\n" for i, flag in rows))
    config = RunConfig.from_preset("smoke", dataset="cub", num_classes=2, classes_per_batch=1,
                              batch_size=2, data_root=str(cub), pretrained="",
                              output_dir=str(tmp_path / "out"), results_dirs=())
    with pytest.raises(ValueError, match=r"1 of 2 classes have no training image.*indices 1"):
        train(config, progress=False, log=quiet)
    assert not (tmp_path / "out" / config.hash).exists()


# ------------------------------------------------------------------------- pretraining cache
def test_corrupt_pretraining_cache_says_what_to_delete(data_root, tmp_path):
    """Corrupt cached weights name the pretrain-<hash>/ folder to delete."""
    config = smoke(data_root, tmp_path, method="cam", epochs=1)
    weights = pretrain(config, progress=False)
    weights.write_bytes(weights.read_bytes()[:64])
    with pytest.raises(ValueError, match=rf"corrupt.*delete the folder {weights.parent}"):
        train(config, progress=False, log=quiet)


# ----------------------------------------------------------------------------- portable files
def test_config_json_has_no_machine_paths(data_root, tmp_path):
    """Config.json keeps project-relative paths and drops outside ones."""
    config = smoke(data_root, tmp_path, method="cam", epochs=1)
    run_dir = train(config, progress=False, log=quiet).run_dir
    text = (run_dir / "config.json").read_text()
    assert str(tmp_path) not in text and str(data_root) not in text
    saved = RunConfig.from_json(run_dir / "config.json")
    assert saved.hash == config.hash
    inside = config.replace(output_dir=str(project_root() / "runs" / "x"))
    assert inside.to_record()["output_dir"] == "runs/x"


def test_committed_runs_have_no_machine_paths():
    """No committed config.json names a folder of the machine that trained it."""
    for path in sorted((project_root() / "results" / "runs").glob("*/config.json")):
        data = json.loads(path.read_text())
        for key in ("data_root", "output_dir", "metadata_dir", *data.get("results_dirs", [])):
            value = data.get(key, "") if key in data else key
            assert not str(value).startswith("/"), f"{path}: {key} = {value}"
        command = json.loads((path.parent / "results.json").read_text())["command"]
        assert not any(word.startswith("/") for word in command.split()), (path, command)


def test_find_run_of_a_finished_twin(data_root, tmp_path):
    """A command that waited for a twin loads the twin's finished run."""
    config = smoke(data_root, tmp_path, method="cam", epochs=1)
    first = train(config, progress=False, log=quiet)
    assert find_run(config) == first.run_dir
    again = train(config, progress=False, log=quiet)
    assert again.cached and again.metrics == first.metrics


def test_command_line_names_no_machine_folder(monkeypatch):
    """Results.json's command names the module, not where the checkout lies."""
    from csoa_nb.engine import runs
    package = Path(runs.__file__).resolve().parent
    monkeypatch.setattr(sys, "argv", [str(package / "results.py"), "make", "--preset", "cpu"])
    assert runs.command_line().endswith(" -m csoa_nb.engine.results make --preset cpu")
    monkeypatch.setattr(sys, "argv", ["/elsewhere/tool.py", "--x"])
    assert runs.command_line().endswith(" tool.py --x")
