"""Faults of the run store's files (those of test_faults.py aside): each test reproduces one.

Fault -> test:

- a run folder holding another run's files
  -> test_foreign_results_json_is_not_loaded_as_the_run,
     test_edited_config_is_not_scored_under_its_new_theta
- a full disk during any write -> test_every_write_names_a_full_disk
- corrupt run files -> test_corrupt_run_files_name_the_file
- records of the wrong shape
  -> test_protocol_and_posthoc_records_of_the_wrong_shape_are_named
- a copied run's paths -> test_a_copied_runs_paths_are_not_trusted

Faults of the data readers: test_faults_data_round2.py; of the settings and the command lines:
test_faults_round2.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from smoke_runs import smoke
from test_faults_runbook import finished_run

from csoa_nb.data.synthetic import make_dataset
from csoa_nb.engine import evaluate
from csoa_nb.engine.builders import load_final_model
from csoa_nb.engine.posthoc_runs import POSTHOC_FILE, read_posthoc
from csoa_nb.engine.protocol import PROTOCOL_FILE, read_protocol
from csoa_nb.engine.runs import RunStoreError, load_run, run_lock, save_torch
from csoa_nb.engine.train import train


def quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------- a run is what its name says
def test_foreign_results_json_is_not_loaded_as_the_run(data_root: Path, tmp_path: Path):
    """Another run's results.json copied into a run folder was loaded as that run
    ("(cached)", the other run's numbers)."""
    mine = smoke(data_root, tmp_path, method="cam", seed=0)
    other = smoke(data_root, tmp_path, method="cam", seed=1)
    train(mine, progress=False, log=quiet)
    theirs = train(other, progress=False, log=quiet)
    shutil.copy(theirs.run_dir / "results.json", tmp_path / mine.hash / "results.json")
    with pytest.raises(RunStoreError, match=rf"results.json belongs to run {other.hash}, not to "
                                            rf"the folder {mine.hash}: it was copied"):
        train(mine, progress=False, log=quiet)


def test_edited_config_is_not_scored_under_its_new_theta(tmp_path: Path):
    """Theta 0.3 -> 0.5 in a finished run's config.json, and `evaluate --json` labelled
    the theta 0.3 numbers as theta 0.5."""
    run = finished_run(tmp_path, with_masks=True)
    config = json.loads((run / "config.json").read_text())
    config["theta"] = 0.5
    (run / "config.json").write_text(json.dumps(config))
    report = tmp_path / "metrics.json"
    with pytest.raises(SystemExit, match=rf"config.json hashes to \w+, not to its folder's name "
                                         rf"{run.name}: it was edited"):
        evaluate.main([str(run), "--theta", "0.3", "--json", str(report)])
    assert not report.exists()
    with pytest.raises(RunStoreError, match="it was edited or copied from another run"):
        load_run(run)


# --------------------------------------------------------------------------- a full disk, named
@contextlib.contextmanager
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs filled to the last byte (root only; skipped where mounting is refused)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.decode().strip()})")
    try:
        (mount / "run").mkdir()
        with open(mount / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_every_write_names_a_full_disk(tmp_path: Path):
    """A `.pt` write said "[enforce fail at inline_container.cc:672] . unexpected pos",
    the lock file and the synthetic generator a bare `OSError: [Errno 28]`; now each names
    the folder and what to do, and leaves no temporary file."""
    with full_disk(tmp_path) as disk:
        run = disk / "run"
        with pytest.raises(OSError, match=rf"no space left on the disk of {run} while writing "
                                          r"checkpoint.pt: free some space"):
            save_torch(run / "checkpoint.pt", {"x": torch.zeros(100_000)})
        assert list(run.iterdir()) == []
        with pytest.raises(OSError, match=rf"no space left on the disk of {run} while writing "
                                          r"\.lock"), run_lock(run, say=quiet):
            pass
        with pytest.raises(OSError, match=rf"no space left on the disk of {disk} while writing "
                                          r"the synthetic benchmark synthetic-\S+: free some "
                                          r"space.*generated again"):
            make_dataset(disk, num_classes=2, images_per_class=2, image_size=16, seed=0)
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "run"]


# ---------------------------------------------------------------------- corrupt files are named
def test_corrupt_run_files_name_the_file(tmp_path: Path, data_root: Path):
    """A truncated config.json (`JSONDecodeError`), model.pt (`OSError: [Errno 22]`)
    and eval_maps (`PytorchStreamReader failed`, or torch's advice to load with
    weights_only=False) did not name the file."""
    run = finished_run(tmp_path / "a")
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])
    with pytest.raises(SystemExit, match=rf"{run / 'config.json'} is not a readable run config"):
        evaluate.main([str(run), "--theta", "0.3"])
    run = finished_run(tmp_path / "b")
    (run / "eval_maps.npz").write_bytes(b"garbage, not a zip of arrays")
    with pytest.raises(SystemExit, match=r"eval_maps.npz is not a readable array file") as error:
        evaluate.main([str(run), "--theta", "0.3"])
    assert "weights_only" not in str(error.value)
    trained = train(smoke(data_root, tmp_path / "c", method="cam"), progress=False, log=quiet)
    model = trained.run_dir / "model.pt"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(RunStoreError, match=rf"{model} is not readable final weights.*"
                                            "truncated: delete it"):
        load_final_model(trained.run_dir)


# --------------------------------------------------------- protocol records of the wrong shape
@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(val=[]), r"'val' is \[\], not an object of metrics"),
    (lambda r: r["test"].update(max_box_acc_v2="99"), r"metric 'max_box_acc_v2' is '99'"),
    (lambda r: r["test"].pop("top1_loc_err"), r"the metrics lack \['top1_loc_err'\]"),
    (lambda r: r.update(theta=7), r"theta is 7, not a threshold in \[0.01, 0.99\]"),
], ids=["val-list", "string-metric", "missing-metric", "theta-7"])
def test_protocol_and_posthoc_records_of_the_wrong_shape_are_named(tmp_path, change,
                                                                         message):
    """Valid JSON of the wrong shape gave `AttributeError` / `TypeError` deep in
    `results make`, and `theta: 7` was accepted."""
    run = finished_run(tmp_path, with_masks=True)
    metrics = json.loads((run / "results.json").read_text())["metrics"]
    good = {"theta": 0.3, "val": dict(metrics), "test": dict(metrics)}
    (run / PROTOCOL_FILE).write_text(json.dumps(good))
    assert read_protocol(run).theta == 0.3
    bad = json.loads(json.dumps(good))
    change(bad)
    (run / PROTOCOL_FILE).write_text(json.dumps(bad))
    with pytest.raises(RunStoreError, match=rf"{PROTOCOL_FILE} is not a record of the "
                                            rf"protocol's scores \({message}.*backfill {run}"):
        read_protocol(run)
    (run / POSTHOC_FILE).write_text(json.dumps({"gradcam": bad}))
    with pytest.raises(RunStoreError, match=rf"the record of 'gradcam' is not a record.*"
                                            rf"{message}.*posthoc_runs posthoc {run}"):
        read_posthoc(run)
    (run / POSTHOC_FILE).write_text(json.dumps({"gradcam": []}))
    with pytest.raises(RunStoreError, match=r"protocol record is an object, not list"):
        read_posthoc(run)


# ----------------------------------------------------------------- a copied run's paths, untrusted
@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_a_copied_runs_paths_are_not_trusted(tmp_path: Path, where: str):
    """An absolute or `../../..` data_root in a copied run's config.json made
    `evaluate` generate the synthetic benchmark there."""
    checkout = tmp_path / "checkout"
    (checkout / "csoa_nb").mkdir(parents=True)
    (checkout / "_toc.yml").write_text("root: x\n")
    run = finished_run(checkout / "runs")
    target = tmp_path / "outside"
    config = json.loads((run / "config.json").read_text())
    config["data_root"] = (str(target) if where == "absolute"
                           else os.path.relpath(target, checkout))
    (run / "config.json").write_text(json.dumps(config))  # data_root is not in the hash
    notes: list[str] = []
    scores = evaluate.reevaluate(run, (0.3,), log=notes.append)
    assert scores.pxap is None and len(notes) == 1
    assert "a run folder's paths are trusted only inside" in notes[0]
    assert "pass --data-root DIR" in notes[0]
    assert not target.exists()
