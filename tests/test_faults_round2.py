"""Faults of the settings and the command lines: each test reproduces one.

Fault -> test:

- a missing validation split -> test_missing_val_split_fails_before_training
- non-finite or out-of-range settings, missing weights files
  -> test_nonfinite_and_out_of_range_settings_are_refused,
     test_missing_weights_files_fail_before_any_work
- a pretraining cache of another width -> test_ill_fitting_pretraining_cache_says_what_to_delete
- thetas that round alike -> test_evaluate_merges_thetas_that_round_alike
- unusable folders
  -> test_unusable_output_dir_is_named, test_unusable_data_root_is_named,
     test_unusable_build_dir_is_named, and `results make --output-dir`:
     test_results_make_checks_its_arguments_first
- the results command line
  -> test_results_make_checks_its_arguments_first, test_results_list_prints_pending_searches
- workers outliving a killed `results make` -> test_pool_workers_die_with_their_parent
- a notebook that is not JSON -> test_strip_names_the_notebook_that_is_not_json
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
from fixtures_data import add_train_split, build_metadata
from smoke_runs import smoke

import csoa_nb.engine.make_results as driver
import csoa_nb.engine.results as results
import csoa_nb.engine.train as train_module
from csoa_nb.book import runbook
from csoa_nb.core.models import CSoANet, EmbeddingNet
from csoa_nb.engine import evaluate, sweeps
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.pretrain import pretrain_hash
from csoa_nb.engine.runs import save_arrays, save_torch, write_json
from csoa_nb.engine.train import train

#: A folder name over every common file system's limit of 255 bytes.
TOO_LONG = "x" * 300


def quiet(_: str) -> None:
    pass


def no_run_folder(out: Path, config: RunConfig) -> bool:
    return not (out / config.hash).exists()


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """`folder` as a read-only mount would be: root writes anywhere whatever the mode bits
    (but not on a read-only mount, where `os.access` says so), so for root `os.access` is
    made to answer as it would there."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


# --------------------------------------------------------------------- every split up front
def metadata_without_val(root: Path) -> tuple[Path, Path]:
    """wsolevaluation metadata with train/ and test/ (classes 0 and 1) but no val/."""
    images, meta = build_metadata(root)
    labels = meta / "test" / "class_labels.txt"
    labels.write_text(labels.read_text().replace(",2\n", ",1\n"))
    add_train_split(images, meta, seed=60)
    return images, meta


def test_missing_val_split_fails_before_training(tmp_path):
    """The metadata's val/ split (read at the end of a run, for Choe et al.'s protocol)
    was found missing only after training; now before any epoch, and no run folder is left."""
    images, meta = metadata_without_val(tmp_path / "m")
    out = tmp_path / "out"
    config = RunConfig.from_preset(
        "smoke", dataset="wsol-metadata", data_root=str(images), metadata_dir=str(meta),
        num_classes=2, classes_per_batch=2, batch_size=2, pretrained="", method="cam",
        epochs=1, val_images=0, output_dir=str(out), results_dirs=())
    lines: list[str] = []
    with pytest.raises(ValueError, match=rf"metadata folder {re.escape(str(meta / 'val'))} "
                                         r"does not exist: pass the folder that holds"):
        train(config, progress=False, log=lines.append)
    assert lines == []  # no epoch was trained
    assert no_run_folder(out, config)


# ------------------------------------------------------------- finiteness, ranges and files
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "cutmix", "cutmix_beta": math.inf},
         r"cutmix_beta must be a finite number, got inf.*default 1.0"),
        ({"lr": math.inf}, r"lr must be a finite number, got inf.*--set lr="),
        ({"clutter": math.nan}, r"clutter must be a finite number, got nan"),
        ({"num_workers": -1}, r"num_workers must be >= 0, got -1.*--set num_workers=0"),
        ({"pretrain_epochs": 0}, r"pretrain_epochs must be >= 1, got 0"),
    ],
)
def test_nonfinite_and_out_of_range_settings_are_refused(changes, message, monkeypatch):
    """Inf passed every check (cutmix_beta=inf: NaN mid-training; lr=inf:
    NonFiniteLossError) and num_workers=-1 reached torch's DataLoader; now the config refuses
    them, and the CLI says so in one line before any work."""
    with pytest.raises(ValueError, match=message):
        RunConfig.from_preset("smoke", **changes)

    def no_work(*args, **kwargs):
        raise AssertionError("work began")

    monkeypatch.setattr(train_module, "train", no_work)
    sets = [f"--set={key}={value}" for key, value in changes.items()]
    with pytest.raises(SystemExit, match="error: " + message):
        train_module.main(["--preset", "smoke", *sets])


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"method": "cam", "pretrained": "missing.pt"}, "pretrained"),
        ({"method": "coaug", "pretrained": "", "embedding_weights": "missing.pt"},
         "embedding_weights"),
    ],
)
def test_missing_weights_files_fail_before_any_work(tmp_path, changes, name):
    """A missing weights file failed after the data were built, with advice for the
    Python API ("or pass weights=None"); now before any work, with the setting's fix."""
    data, out = tmp_path / "data", tmp_path / "out"
    config = smoke(data, out, epochs=1, **changes)
    with pytest.raises(ValueError) as caught:
        train(config, progress=False, log=quiet)
    text = str(caught.value)
    assert text.startswith(f"{name}='missing.pt': no weights file at ")
    assert str(Path("missing.pt").resolve()) in text
    assert f"--set {name}=PATH" in text and "weights=None" not in text
    assert not data.exists()  # the data set was not even generated
    assert no_run_folder(out, config)


# --------------------------------------------------------------- ill-fitting pretraining cache
def test_ill_fitting_pretraining_cache_says_what_to_delete(data_root, tmp_path):
    """Cached pretraining weights of another width said "does not fit vgg_slim: ...
    size mismatch" without naming the pretrain-<hash>/ folder to delete, and left an empty run
    folder."""
    out = tmp_path / "out"
    config = smoke(data_root, out, method="cam", epochs=1)
    stage = out / f"pretrain-{pretrain_hash(config)}"
    stage.mkdir(parents=True)
    narrow = {"backbone": CSoANet("vgg_slim", 4, baseline=True, slim_width=2).backbone,
              "embedding": EmbeddingNet("slim", slim_width=2)}
    save_torch(stage / "weights.pt", {k: v.state_dict() for k, v in narrow.items()})
    with pytest.raises(ValueError, match=rf"cached pretraining weights .*weights.pt do not fit "
                                         rf"the vgg_slim backbone .*slim_width 4.*stages.0.0."
                                         rf"weight.*delete the folder {re.escape(str(stage))} "
                                         r"and run the same command again"):
        train(config, progress=False, log=quiet)
    assert no_run_folder(out, config)


# ---------------------------------------------------------------------- evaluate --theta
def finished_run(output_dir: Path) -> Path:
    """A finished run folder of hand-made maps (with masks: PxAP needs no dataset)."""
    config = RunConfig.from_preset("smoke", method="cam", output_dir=str(output_dir),
                                   results_dirs=())
    run_dir = output_dir / config.hash
    run_dir.mkdir(parents=True)
    write_json(run_dir / "config.json", config.to_dict())
    size, count = 32, 4
    cam = torch.zeros(size, size)
    cam[4:24, 4:24] = 0.25
    cam[8:16, 8:16] = 1.0
    mask = torch.zeros(count, size, size, dtype=torch.uint8)
    mask[:, 8:16, 8:16] = 1
    maps = {
        "cam_last": cam.expand(count, size, size).clone(),
        "cam_feature": None,
        "probs": torch.tensor([0.1, 0.7, 0.1, 0.1]).expand(count, 4).clone(),
        "labels": torch.ones(count, dtype=torch.long),
        "boxes": [torch.tensor([[8.0, 8.0, 16.0, 16.0]]) for _ in range(count)],
        "masks": mask,
        "image_size": [size, size],
    }
    metrics = evaluate.score_maps(maps, config, thetas=(0.3, 0.2), full=True).to_record()
    save_arrays(run_dir, "test", maps)
    write_json(run_dir / "results.json", {"config_hash": config.hash, "metrics": metrics})
    return run_dir


@pytest.mark.parametrize(
    ("thetas", "rows", "note"),
    [
        (["0.1", "0.1"], ["0.10"], r"--theta 0.1 is given twice: scored once"),
        (["0.2", "0.2000001"], ["0.20"],
         r"--theta 0.2 and 0.2000001 are one theta at 4 decimals \(0.2, as a run rounds "
         r"it\): scored once"),
        (["0.3", "0.3", "0.2"], ["0.30", "0.20"], r"--theta 0.3 is given twice: scored once"),
        (["0.125", "0.2"], ["0.125", "0.20"], None),
    ],
)
def test_evaluate_merges_thetas_that_round_alike(tmp_path, monkeypatch, capsys, thetas, rows,
                                                 note):
    """`--theta 0.1 0.1` ended in a traceback ("theta values must be distinct"),
    `0.2 0.2000001` too (two rows that looked equal), and `0.3 0.3` printed
    the row twice. Thetas are rounded as a run rounds them (4 decimals); duplicates are
    scored once, with one note."""
    monkeypatch.chdir(tmp_path)  # outside a checkout: no dataset is generated for PxAP
    run_dir = finished_run(tmp_path / "runs")
    report = tmp_path / "m.json"
    assert evaluate.main([str(run_dir), "--theta", *thetas, "--json", str(report)]) == 0
    captured = capsys.readouterr()
    printed = [line.split(":")[0] for line in captured.out.splitlines()]
    assert printed == [f"theta {row}" for row in rows]
    notes = [line for line in captured.err.splitlines() if line.startswith("note: --theta")]
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and re.fullmatch("note: " + note, notes[0]), notes
    keys = {k.split("@")[1] for k in json.loads(report.read_text()) if k.startswith("top1_loc_")
            and "@" in k}
    assert keys == {f"{float(row):g}" for row in rows}


# --------------------------------------------------------------------- unusable folders
def test_unusable_output_dir_is_named(data_root, tmp_path, monkeypatch):
    """An output_dir over the file-name limit, under a file or on a read-only mount
    gave a raw OSError traceback; now a ValueError (one line in the CLI) names the folder and
    the fix, before any work."""
    (tmp_path / "file.txt").write_text("a file\n")
    locked = tmp_path / "locked"
    read_only(monkeypatch, locked)
    cases = [
        (tmp_path / TOO_LONG / "runs",
         r"has a name longer than the file system's limit of \d+ bytes \(x+\.\.\., 300 bytes\)"),
        (tmp_path / "file.txt" / "runs", r"lies under .*file.txt, a file, not a folder"),
        (locked, r"is not writable \(a read-only mount, or no write permission\)"),
    ]
    for out, reason in cases:
        config = smoke(data_root, out, method="cam", epochs=1)
        fix = r": pass a writable output_dir \(--set output_dir=DIR; papermill: -p output_dir"
        with pytest.raises(ValueError, match=rf"^output_dir {re.escape(str(out))} {reason}{fix}"
                           ) as caught:
            train(config, progress=False, log=quiet)
        assert isinstance(caught.value, OSError)  # what writing there would have raised
        with pytest.raises(SystemExit, match=rf"^error: output_dir .*{reason}{fix}"):
            train_module.main(["--preset", "smoke", "--set", f"output_dir={out}"])
    assert list(locked.iterdir()) == []


def test_unusable_data_root_is_named(tmp_path, monkeypatch):
    """A data_root the synthetic benchmark cannot be written into gave a raw OSError
    traceback; now a ValueError names data_root and the fix, and no run folder is left."""
    locked = tmp_path / "locked"
    read_only(monkeypatch, locked)
    out = tmp_path / "out"
    cases = [(tmp_path / TOO_LONG, r"File name too long")]
    if os.geteuid() != 0:  # root writes into any folder but a read-only mount
        cases.append((locked, r"Permission denied"))
    for data, reason in cases:
        config = smoke(data, out, method="cam", epochs=1)
        with pytest.raises(ValueError, match=rf"^data_root {re.escape(str(data))} cannot be "
                                             rf"used \({reason}.*--set data_root=DIR"):
            train(config, progress=False, log=quiet)
        assert no_run_folder(out, config)


def test_unusable_build_dir_is_named(tmp_path, monkeypatch):
    """`runbook execute --build-dir` over the file-name limit or read-only gave a raw
    OSError traceback; now it names the folder and the fix before any notebook runs."""
    import papermill

    def no_work(*args, **kwargs):
        raise AssertionError("a notebook ran")

    monkeypatch.setattr(papermill, "execute_notebook", no_work)
    locked = tmp_path / "locked"
    read_only(monkeypatch, locked)
    for build, reason in [(tmp_path / TOO_LONG, "has a name longer than"),
                          (locked / "cpu", r"cannot be created: .*locked is not writable "
                                           r"\(a read-only mount")]:
        with pytest.raises(SystemExit, match=rf"^--build-dir {re.escape(str(build))} {reason}"
                                             r".*: choose a folder you can write, e\.g\. "
                                             r"--build-dir _build/smoke"):
            runbook.main(["execute", "--preset", "smoke", "--build-dir", str(build),
                          "--only", "00_introduction"])
        with pytest.raises(SystemExit, match=rf"^--build-dir {re.escape(str(build))} {reason}"):
            runbook.main(["build", "--build-dir", str(build), "--html-out",
                          str(tmp_path / "site")])
    assert list(locked.iterdir()) == []


# ------------------------------------------------------------------------- the results CLI
def test_results_make_checks_its_arguments_first(tmp_path, monkeypatch, capsys):
    """`make --preset nonsense` raised KeyError; `--jobs 0` failed after the
    pretraining stage; an unusable `--output-dir` gave an OSError. Each is refused
    before any work."""
    import csoa_nb.engine.datasets as datasets
    import csoa_nb.engine.pretrain as pretrain

    def no_work(*args, **kwargs):
        raise AssertionError("work began")

    monkeypatch.setattr(datasets, "dataset_root", no_work)
    monkeypatch.setattr(pretrain, "pretrain", no_work)
    monkeypatch.setattr(driver, "_run_tasks", no_work)
    for command in ("make", "list"):
        with pytest.raises(SystemExit) as caught:
            results.main([command, "--preset", "nonsense"])
        assert caught.value.code == 2
        assert "invalid choice: 'nonsense' (choose from 'smoke', 'cpu', 'paper')" in (
            capsys.readouterr().err)
    out = tmp_path / "out"
    for jobs in ("0", "-2"):
        with pytest.raises(SystemExit, match=rf"^error: --jobs must be >= 1 \(runs trained at "
                                             rf"once\), got {jobs}: e\.g\. --jobs 2"):
            results.main(["make", "--preset", "smoke", "--jobs", jobs, "--output-dir", str(out)])
    with pytest.raises(ValueError, match=r"jobs must be >= 1"):
        driver.make_results("smoke", jobs=0, output_dir=str(out))
    with pytest.raises(ValueError, match=r"unknown preset 'nonsense'; valid choices: smoke"):
        driver.make_results("nonsense", output_dir=str(out))
    long = tmp_path / TOO_LONG
    with pytest.raises(SystemExit, match=rf"^error: output_dir {re.escape(str(long))} has a "
                                         r"name longer .*: choose a folder you can write "
                                         r"\(--output-dir DIR\)"):
        results.main(["make", "--preset", "smoke", "--output-dir", str(long)])
    assert not out.exists()


def test_results_list_prints_pending_searches(capsys, tmp_path, monkeypatch):
    """`results list --preset smoke` ended in a SearchPending traceback (the "wsol"
    sweep's settings wait for its search runs); now the pending sweep is one status line and
    the other runs are listed. Run outside the checkout, so that no finished search run (e.g.
    one a notebook test left in runs/) is found."""
    monkeypatch.chdir(tmp_path)
    assert results.main(["list", "--preset", "smoke"]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = [line for line in lines if line.startswith("wsol: ")]
    assert len(status) == 1
    assert re.fullmatch(r"wsol: pending: the .* run \w{12} of the search grid is not finished: "
                        r"run `make results`", status[0])
    runs = [line for line in lines if re.match(r"\w{12}  ", line)]
    expected = sweeps.all_configs("smoke", pending_ok=True)
    assert [line[:12] for line in runs] == [c.hash for c in expected]


# ---------------------------------------------------------------- workers die with make
def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_pool_workers_die_with_their_parent():
    """`kill -9` of `results make` left its worker (with a training run's memory) and
    the resource tracker running for good under pid 1. The pool's workers now watch their
    parent and exit when it is gone; the tracker then ends too."""
    script = (
        "import os, time\n"
        "from csoa_nb.engine.workers import worker_pool\n"
        "pool = worker_pool(1)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True)
    try:
        worker = int(parent.stdout.readline())
        spawned = children_of(parent.pid)  # the worker and the pool's resource tracker
        assert worker in spawned and len(spawned) >= 2 and all(map(alive, spawned))
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        parent.stdout.close()
    deadline = time.monotonic() + 10
    while any(map(alive, spawned)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in spawned if alive(pid)]


# ------------------------------------------------------------------------ runbook strip
def test_strip_names_the_notebook_that_is_not_json(tmp_path):
    """`strip a.ipynb bad.ipynb` said "Notebook does not appear to be JSON" without
    naming the file; now it names it, before any notebook is changed."""
    good = tmp_path / "a.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    notebook.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"})]
    notebook.cells[0].execution_count = 1
    nbformat.write(notebook, good)
    before = good.read_bytes()
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match=rf"^{re.escape(str(bad))} is not a notebook: it is "
                                         r"not valid JSON .*restore it.*git checkout -- "):
        runbook.main(["strip", str(good), str(bad)])
    assert good.read_bytes() == before  # nothing stripped before the bad one was found
    runbook.main(["strip", str(good)])
    assert nbformat.read(good, as_version=4).cells[0].outputs == []
