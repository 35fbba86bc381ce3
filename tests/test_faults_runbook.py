"""Regression tests for faults of the runbook and of `python -m csoa_nb.engine.evaluate`.

- The runbook never overwrites the book's sources nor deletes a folder it did not make.
- `python -m csoa_nb.engine.evaluate` gives each metric key the meaning it has in
  `results.json`.
- `evaluate` on a bad run folder, outside a checkout, or with a bad `--json` destination
  fails clearly and early, and writes nothing it should not.

The runbook tests replace papermill and jupyter-book by stand-ins (nothing is executed or
rendered); the evaluate tests build a finished run folder by hand, with maps whose boxes are
easy to work out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from csoa_nb.book import runbook
from csoa_nb.engine import evaluate
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.runs import save_arrays, write_json


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ runbook
@pytest.fixture
def stand_ins(monkeypatch) -> list[str]:
    """papermill copies the source notebook; jupyter-book writes `_build/html/index.html`.

    Returns the list of notebooks "executed", in order.
    """
    import papermill

    executed: list[str] = []

    def execute_notebook(src: str, dst: str, **_: object) -> None:
        executed.append(Path(src).stem)
        shutil.copyfile(src, dst)

    def run(cmd: list[str], cwd: Path, **_: object) -> subprocess.CompletedProcess:
        html = Path(cwd) / "_build" / "html"
        html.mkdir(parents=True)
        (html / "index.html").write_text("<html>book</html>\n")
        return subprocess.CompletedProcess(cmd, 0, stdout="")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    monkeypatch.setattr(runbook, "_jupyter_book", lambda: "jupyter-book")
    monkeypatch.setattr(runbook.subprocess, "run", run)
    return executed


def build_all(build: Path, html_out: Path) -> None:
    runbook.main(
        ["all", "--preset", "smoke", "--build-dir", str(build), "--html-out", str(html_out)]
    )


def test_user_files_in_html_out_and_build_dir_survive(tmp_path, stand_ins):
    """`--html-out DIR` used to `rmtree` DIR/html whatever it held. A folder the
    runbook did not create (no marker file) is refused, before any notebook runs, and every
    file in it survives; likewise a pre-existing build folder of the user's."""
    html_out = tmp_path / "site"
    (html_out / "html").mkdir(parents=True)
    mine = html_out / "html" / "my-notes.txt"
    mine.write_text("the user's own file\n")
    with pytest.raises(
        SystemExit,
        match=r"site/html already exists and was not created by the "
        r"runbook.*choose another --html-out, or remove .*site/html yourself",
    ):
        build_all(tmp_path / "build", html_out)
    assert mine.read_text() == "the user's own file\n"
    assert stand_ins == []  # refused before executing, not after an hour of notebooks

    # the `build` step alone, on a build folder the runbook did make
    runbook.main(["execute", "--preset", "smoke", "--build-dir", str(tmp_path / "build")])
    with pytest.raises(SystemExit, match=r"site/html already exists and was not created"):
        runbook.main(["build", "--build-dir", str(tmp_path / "build"), "--html-out", str(html_out)])
    assert sorted(p.name for p in (html_out / "html").iterdir()) == ["my-notes.txt"]

    # a build folder of the user's is neither written into nor built from
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "_config.yml").write_text("title: my own book\n")
    before = snapshot(theirs)
    stand_ins.clear()
    with pytest.raises(
        SystemExit,
        match=r"theirs already exists and was not created .*"
        r"choose another --build-dir",
    ):
        runbook.main(["execute", "--preset", "smoke", "--build-dir", str(theirs)])
    with pytest.raises(SystemExit, match=r"theirs already exists and was not created"):
        runbook.main(["build", "--build-dir", str(theirs), "--html-out", str(tmp_path / "h")])
    assert stand_ins == []
    assert snapshot(theirs) == before


@pytest.mark.parametrize("build_dir", [".", "book"])
def test_build_dir_in_the_sources_is_refused(build_dir, monkeypatch, stand_ins):
    """`runbook execute --build-dir .` wrote its executed copies over the committed
    `book/*.ipynb`. The project root and `book/` are refused before any notebook runs, and
    the sources are untouched."""
    monkeypatch.chdir(runbook.REPO_ROOT)
    book = runbook.REPO_ROOT / runbook.BOOK_DIR
    before = snapshot(book)
    with pytest.raises(
        SystemExit,
        match=r"--build-dir would write into .*book's source folder "
        r".*overwrite the committed notebooks.*e\.g\. --build-dir _build/smoke",
    ):
        runbook.main(["execute", "--preset", "smoke", "--build-dir", build_dir])
    with pytest.raises(SystemExit, match=r"book's source folder"):
        runbook.main(["build", "--build-dir", build_dir, "--html-out", "_build"])
    assert stand_ins == []
    assert snapshot(book) == before
    assert not (book / runbook.MARKER).exists() and not (book / "book").exists()


def test_inside_or_above_book_and_html_in_book_are_refused(tmp_path, stand_ins):
    """A build folder inside `book/` or above the project root (which contains
    `book/`), and HTML written into `book/`, are refused too (on a copy of the project)."""
    root = tmp_path / "project"
    root.mkdir()
    for name in (runbook.TOC_FILE, runbook.CONFIG_FILE):
        shutil.copy2(runbook.REPO_ROOT / name, root / name)
    shutil.copytree(runbook.REPO_ROOT / runbook.BOOK_DIR, root / runbook.BOOK_DIR)
    before = snapshot(root)
    for folder, what in ((root / "book" / "out", "lies inside"), (tmp_path, "contains")):
        with pytest.raises(SystemExit, match=rf"{folder}, which {what} the book's source"):
            runbook.execute("smoke", folder, root=root)
    with pytest.raises(SystemExit, match=r"--html-out would write into .*book/html"):
        runbook.check_html_destination(root / "book", tmp_path / "build", root=root)
    assert stand_ins == []
    assert snapshot(root) == before


def test_second_build_into_runbook_folders_works(tmp_path, stand_ins):
    """The folders the runbook creates carry its marker file, so a second build into
    them (as `make book` twice, or `make test`) replaces its own HTML without complaint."""
    build, html_out = tmp_path / "_build" / "cpu", tmp_path / "_build"
    build_all(build, html_out)
    first = len(stand_ins)
    assert first == len(runbook.notebooks_from_toc(runbook.REPO_ROOT / runbook.TOC_FILE))
    for folder in (build, html_out / "html"):
        assert (folder / runbook.MARKER).is_file(), f"{folder} lacks the runbook's marker"
    (html_out / "html" / "stale.html").write_text("from the first build\n")
    build_all(build, html_out)
    assert len(stand_ins) == 2 * first
    assert sorted(p.name for p in (html_out / "html").iterdir()) == [
        runbook.MARKER,
        "index.html",
    ]
    # an empty folder holds nothing of the user's: it is used, and marked
    empty = tmp_path / "empty"
    empty.mkdir()
    runbook.execute("smoke", empty, only=["00_introduction"])
    assert (empty / runbook.MARKER).is_file()


# ------------------------------------------------------------------- a finished run, by hand
SIZE = 32  # the smoke preset's crop size: maps and masks are 32 x 32
COUNT = 16  # the smoke preset's test split: 4 classes x 4 images


def hand_maps(with_masks: bool) -> dict:
    """`COUNT` identical images of class 1 with one ground-truth box (8, 8, 16, 16).

    The CAM is 1 on that box (the "core") and 0.25 on a ring around it, (4, 4, 24, 24),
    0 elsewhere. Eq. 13 at theta 0.3 keeps the core: box (8, 8, 16, 16), IoU 1, a correct
    localisation. At theta 0.2 the ring passes too: box (4, 4, 24, 24), IoU 64 / 400 = 0.16
    < 0.5, a localisation error. The class is right (0.7 on class 1), so top-1 loc. error is
    0 % at theta 0.3 and 100 % at theta 0.2.
    """
    cam = torch.zeros(SIZE, SIZE)
    cam[4:24, 4:24] = 0.25
    cam[8:16, 8:16] = 1.0
    maps = {
        "cam_last": cam.expand(COUNT, SIZE, SIZE).half().clone(),
        "cam_feature": None,
        "probs": torch.tensor([0.1, 0.7, 0.1, 0.1]).expand(COUNT, 4).clone(),
        "labels": torch.ones(COUNT, dtype=torch.long),
        "boxes": [torch.tensor([[8.0, 8.0, 16.0, 16.0]]) for _ in range(COUNT)],
        "masks": None,
        "image_size": [SIZE, SIZE],
    }
    if with_masks:
        mask = torch.zeros(COUNT, SIZE, SIZE, dtype=torch.uint8)
        mask[:, 8:16, 8:16] = 1
        maps["masks"] = mask
    return maps


def finished_run(output_dir: Path, *, with_masks: bool = False) -> Path:
    """A run folder as `csoa_nb.engine.train.train` leaves it (config theta 0.3, data_root 'data').

    `with_masks` also saves the test masks in `eval_maps.npz` (train does not), so that PxAP
    needs no dataset.
    """
    config = RunConfig.from_preset(
        "smoke", method="cam", output_dir=str(output_dir), results_dirs=()
    )
    assert config.theta == 0.3 and config.data_root == "data"
    run_dir = output_dir / config.hash
    run_dir.mkdir(parents=True)
    write_json(run_dir / "config.json", config.to_dict())
    maps = hand_maps(with_masks)
    # what train() writes: the run's theta first, then the final thetas
    metrics = evaluate.score_maps(maps, config, thetas=(0.3, 0.2, 0.4), full=True).to_record()
    save_arrays(run_dir, "test", maps)
    write_json(run_dir / "results.json", {"config_hash": config.hash, "metrics": metrics})
    return run_dir


# ----------------------------------------------------------------------- one meaning per key
def test_unsuffixed_keys_are_the_runs_theta(tmp_path, monkeypatch):
    """With `--theta 0.2 ...` (the default) the unsuffixed `top1_loc_err` of the
    `--json` file was the error at 0.2, while results.json's is at the run's theta 0.3."""
    monkeypatch.chdir(tmp_path)
    run_dir = finished_run(tmp_path / "runs", with_masks=True)
    saved = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert (saved["top1_loc_err"], saved["top1_loc_err@0.2"]) == (0.0, 100.0)  # by hand above
    for thetas in (["0.2", "0.3", "0.4"], ["0.2", "0.4"], ["0.2"]):
        out = tmp_path / f"metrics-{len(thetas)}.json"
        assert evaluate.main([str(run_dir), "--theta", *thetas, "--json", str(out)]) == 0
        metrics = json.loads(out.read_text())
        for key in (
            "top1_loc_err",
            "top5_loc_err",
            "gt_known_loc_err",
            "top1_cls_err",
            "gt_known_loc_acc@iou50",
            "gt_known_loc_acc@iou70",
        ):
            assert metrics[key] == saved[key], f"{key} with --theta {' '.join(thetas)}"
        assert metrics["top1_loc_err"] == 0.0  # theta 0.3: the core box, IoU 1
        assert metrics["gt_known_loc_acc@iou50"] == 100.0  # IoU 1 at theta 0.3 (0.16 at 0.2)
        assert metrics["top1_loc_err@0.2"] == 100.0  # the ring box: IoU 0.16
        # `key@T` for exactly the thetas asked for
        suffixes = {k.split("@")[1] for k in metrics if k.startswith("top1_loc_err@")}
        assert suffixes == {f"{float(t):g}" for t in thetas}


# --------------------------------------------------------------------- evaluate fails clearly
def test_not_a_finished_run_is_named(tmp_path):
    """A missing folder, a non-run folder, an unfinished run and a run without
    `eval_maps.npz` each gave a bare FileNotFoundError; now each is named, with what to do."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8")
    unfinished = finished_run(tmp_path / "a")
    (unfinished / "results.json").unlink()
    (unfinished / "eval_maps.npz").unlink()
    no_maps = finished_run(tmp_path / "b")
    (no_maps / "eval_maps.npz").unlink()
    cases = [
        (tmp_path / "nowhere", r"nowhere is not a folder: pass a run folder"),
        (photos, r"photos is not a run folder \(it has no config.json\): pass a folder"),
        (unfinished, r"is an unfinished run \(config.json but no results.json\): finish it"),
        (no_maps, r"eval_maps.npz does not exist.*Retrain the run: move .* away"),
    ]
    report = tmp_path / "metrics.json"
    for folder, message in cases:
        with pytest.raises(SystemExit, match="error: .*" + message):
            evaluate.main([str(folder), "--json", str(report)])
        with pytest.raises(ValueError, match=message):
            evaluate.reevaluate(folder, (0.2,))
    assert not report.exists()


def test_outside_a_checkout_no_dataset_is_written(tmp_path, monkeypatch, capsys):
    """Outside a checkout, the run's relative data_root 'data' meant `./data`, and
    evaluate silently generated the smoke dataset there. Now it means the checkout that holds
    the run folder; with none, PxAP is left out with a note naming --data-root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    run_dir = finished_run(outside / "runs")
    report = outside / "metrics.json"
    assert evaluate.main([str(run_dir), "--theta", "0.3", "--json", str(report)]) == 0
    assert not (outside / "data").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["metrics.json", "runs"]
    assert "pxap" not in json.loads(report.read_text())
    assert json.loads(report.read_text())["top1_loc_err"] == 0.0  # the rest stands
    note = capsys.readouterr().err
    assert "PxAP left out" in note and "pass --data-root DIR" in note

    # the same run inside a checkout: 'data' is that checkout's data folder, not ./data
    project = tmp_path / "project"
    (project / "csoa_nb").mkdir(parents=True)
    shutil.copy2(runbook.REPO_ROOT / runbook.TOC_FILE, project / runbook.TOC_FILE)
    shutil.copytree(run_dir.parent, project / "runs")
    metrics = evaluate.reevaluate(project / "runs" / run_dir.name, (0.3,))
    assert (project / "data" / "synthetic").is_dir()
    assert not (outside / "data").exists()
    # PxAP of the dataset's masks (labels and maps are ours, the masks the dataset's)
    assert 0.0 <= metrics.pxap <= 100.0
    # --data-root names the dataset for a run outside any checkout
    again = evaluate.reevaluate(run_dir, (0.3,), data_root=project / "data")
    assert again.pxap == metrics.pxap
    assert not (outside / "data").exists()


def test_bad_json_destination_fails_before_computing(tmp_path, monkeypatch):
    """A `--json` path in a missing folder (or a folder, or under a file) failed
    only after every metric was computed; now it is refused first."""
    run_dir = finished_run(tmp_path / "runs", with_masks=True)
    computed: list[int] = []
    real = evaluate.score_maps

    def counting(*args, **kwargs):
        computed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "score_maps", counting)
    (tmp_path / "file.txt").write_text("not a folder\n")
    cases = [
        (tmp_path / "no" / "such" / "m.json", r"its folder .*no/such does not exist: create"),
        (tmp_path / "file.txt" / "m.json", r"its folder .*file.txt is a file, not a folder"),
        (tmp_path, r"is a folder: name a file in it"),
    ]
    for path, message in cases:
        with pytest.raises(SystemExit, match=r"error: --json .*" + message):
            evaluate.main([str(run_dir), "--json", str(path)])
    assert computed == []
    assert not (tmp_path / "no").exists()
    if os.geteuid() != 0:  # root may write anywhere: the permission check cannot fail for it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SystemExit, match=r"locked/m.json is not writable"):
            evaluate.main([str(run_dir), "--json", str(locked / "m.json")])
        assert computed == []
    # a good destination still works
    assert evaluate.main([str(run_dir), "--json", str(tmp_path / "m.json")]) == 0
    assert computed == [1] and json.loads((tmp_path / "m.json").read_text())["pxap"] >= 0
