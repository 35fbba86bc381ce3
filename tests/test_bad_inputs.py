"""Bad inputs: each fails with an error that names the file or value and the fix, and nothing
written before (a checkpoint, results.json, a cached dataset's manifest) is changed or lost.

Catalogue: each kind of bad input and the tests that cover it
(`file::test`; "foreign checkpoint": one from another config, refused on resume).

| bad input | file::test |
| --- | --- |
| missing data root | test_data_readers.py::test_cub_missing_root |
| | test_data_readers.py::test_ilsvrc_malformed_xml_and_missing_root |
| | test_bad_inputs.py::test_missing_data_root |
| wrong layout | test_data_readers.py::test_cub_missing_images_txt_hints_nested |
| | test_data_readers.py::test_cub_each_missing_txt_named |
| | test_data_readers.py::test_metadata_bad_inputs |
| | test_synthetic.py::test_incomplete_folder_is_not_reused_or_deleted |
| corrupt image | test_data_readers.py::test_load_image_missing_and_truncated |
| | test_data_readers.py::test_cub_corrupt_jpeg_names_path |
| | test_bad_inputs.py::test_corrupt_cached_image_keeps_run_files |
| label out of range | test_data_readers.py::test_cub_label_out_of_range |
| | test_data_readers.py::test_metadata_boxes |
| box outside image | test_data_readers.py::test_cub_box_outside_image_on_load |
| | test_data_readers.py::test_cub_box_bad_size_checked_upfront |
| | test_data_readers.py::test_metadata_bad_inputs |
| classes: data/config | test_data_readers.py::test_check_num_classes |
| | test_data_readers.py::test_cub_missing_image_and_class_mismatch |
| classes: checkpoint | test_bad_inputs.py::test_checkpoint_of_other_class_count_refused |
| | test_bad_inputs.py::test_new_num_classes_is_a_new_run |
| | test_bad_inputs.py::test_refusal_names_the_differing_setting |
| unknown preset etc. | test_config.py::test_unknown_preset_lists_presets |
| | test_config.py::test_bad_settings_name_the_valid_choices |
| | test_train.py::test_cli_rejects_unknown_method |
| | test_bad_inputs.py::test_runbook_unknown_preset_and_bad_seed |
| theta not in (0, 1) | test_config.py::test_bad_settings_name_the_valid_choices |
| | test_localize.py::test_binarize_bad_theta |
| | test_bad_inputs.py::test_evaluate_cli_theta_outside_0_1 |
| truncated checkpoint | test_train.py::test_checkpoint_of_another_config_or_truncated_is_refused |
| foreign checkpoint | test_train.py::test_checkpoint_of_another_config_or_truncated_is_refused |
| | test_bad_inputs.py::test_checkpoint_of_other_class_count_refused |
| NaN loss | test_train.py::test_nan_guard_names_epoch_batch_and_term_and_keeps_checkpoint |
| | test_bad_inputs.py::test_nan_loss_on_resume_keeps_checkpoint |
| NaN / inf map | test_localize.py::test_normalize_cam_errors |
| | test_localize.py::test_csoa_box_errors |
| output dir unwritable | test_train.py::test_unwritable_output_dir_is_a_clear_error |
| | test_bad_inputs.py::test_run_folder_blocked_by_a_file |
| W_E without weights | test_bad_inputs.py::test_lite0_w_e_without_weights_is_refused |
| parameter type | test_config.py::test_wrong_parameter_types_are_named |
| | test_bad_inputs.py::test_papermill_wrong_type_parameter |
| | test_bad_inputs.py::test_runbook_unknown_preset_and_bad_seed |
| | test_bad_inputs.py::test_runbook_execute_names_bad_seed |

Everything runs on the smoke preset in temporary folders (`results_dirs=()`), in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from smoke_runs import smoke

import csoa_nb.engine.train as train_module
from csoa_nb.book import runbook
from csoa_nb.data import DataError
from csoa_nb.engine import evaluate
from csoa_nb.engine.builders import build_model, resolve_weights
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.loop import NonFiniteLossError
from csoa_nb.engine.runs import LOCK_NAME, CheckpointError, load_checkpoint
from csoa_nb.engine.train import RunInterrupted, train


def quiet(_: str) -> None:
    pass


def snapshot(*roots: Path) -> dict[Path, tuple[bytes, int]]:
    """Bytes and modification time of every file under `roots` (but the run lock's file, which
    names the process that last held it)."""
    return {
        path: (path.read_bytes(), path.stat().st_mtime_ns)
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != LOCK_NAME
    }


def assert_unchanged(before: dict[Path, tuple[bytes, int]], *, bytes_only: tuple[str, ...] = ()):
    """Every file of `before` still exists with the same bytes and (unless its name is in
    `bytes_only`) the same modification time."""
    for path, (data, mtime) in before.items():
        assert path.is_file(), f"{path} was removed"
        assert path.read_bytes() == data, f"{path} was overwritten"
        if path.name not in bytes_only:
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> RunConfig:
    """A finished 4-class smoke run (cam, 1 epoch) with its dataset and pretraining."""
    root = tmp_path_factory.mktemp("finished")
    config = smoke(root / "data", root / "out", method="cam", epochs=1)
    train(config, progress=False, log=quiet)
    return config


def run_folder(config: RunConfig) -> Path:
    return Path(config.output_dir) / config.hash


def manifests(config: RunConfig) -> list[Path]:
    found = sorted(Path(config.data_root).rglob("manifest.json"))
    assert found, "the smoke run should have cached its synthetic datasets"
    return found


def interrupted(tmp_path: Path, finished: RunConfig, **changes) -> RunConfig:
    """A copy of the finished run's data, and a run of `changes` stopped after epoch 1."""
    data = tmp_path / "data"
    shutil.copytree(finished.data_root, data)
    config = smoke(data, tmp_path / "out", **{"method": "cam", "epochs": 2, **changes})
    with pytest.raises(RunInterrupted):
        train(config, progress=False, stop_after_epoch=1, log=quiet)
    return config


# ------------------------------------------------------------------------------------- data
def test_missing_data_root(finished, tmp_path):
    nowhere = tmp_path / "nowhere"
    config = smoke(nowhere, Path(finished.output_dir), dataset="cub", epochs=1)
    before = snapshot(Path(finished.output_dir), Path(finished.data_root))
    with pytest.raises(DataError, match=r"CUB root .*nowhere does not exist.*images.txt"):
        train(config, progress=False, log=quiet)
    assert not nowhere.exists()
    assert not (run_folder(config) / "config.json").exists()
    assert_unchanged(before)


def test_corrupt_cached_image_keeps_run_files(
    finished, tmp_path
):
    config = interrupted(tmp_path, finished)
    images = sorted((Path(config.data_root) / "synthetic").glob("synthetic-benchmark-*/images"))
    victim = sorted(images[0].rglob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated JPEG
    before = snapshot(Path(config.output_dir), *(m.parent for m in manifests(config)))
    with pytest.raises(DataError, match=rf"{victim.name} is not a readable image.*replace it"):
        train(config, progress=False, log=quiet)
    # the resume rewrites metrics.jsonl with the epochs the checkpoint holds: same bytes
    assert_unchanged(before, bytes_only=("metrics.jsonl",))
    assert not (run_folder(config) / "results.json").exists()


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_of_other_class_count_refused(finished, tmp_path):
    four = run_folder(finished) / "checkpoint.pt"
    three = smoke(tmp_path / "data", tmp_path / "out", method="cam", epochs=1, num_classes=3,
                  classes_per_batch=2)
    assert three.hash != finished.hash  # num_classes is hashed: it can never resume `four`
    # someone copies the 4-class checkpoint into the 3-class run's folder
    run_folder(three).mkdir(parents=True)
    foreign = run_folder(three) / "checkpoint.pt"
    shutil.copy2(four, foreign)
    before = snapshot(run_folder(finished), run_folder(three))
    with pytest.raises(CheckpointError, match=rf"{finished.hash}, not {three.hash}: refusing"):
        train(three, progress=False, log=quiet)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt belongs to config"):
        load_checkpoint(four, three)
    # bypassing the check, strict loading still fails loudly, naming the class layer
    state = load_checkpoint(four, finished)
    with pytest.raises(RuntimeError, match=r"size mismatch for head_last.layers.4.weight.*\[4"):
        build_model(three).load_state_dict(state["model"])
    assert_unchanged(before)


def test_refusal_names_the_differing_setting(finished):
    other = finished.replace(num_classes=3, classes_per_batch=2)
    with pytest.raises(CheckpointError, match="num_classes"):
        load_checkpoint(run_folder(finished) / "checkpoint.pt", other)


def test_new_num_classes_is_a_new_run(finished, tmp_path):
    out = Path(finished.output_dir)
    before = snapshot(run_folder(finished), *(m.parent for m in manifests(finished)))
    three = smoke(tmp_path / "data", out, method="cam", epochs=1, num_classes=3,
                  classes_per_batch=2)
    result = train(three, progress=False, log=quiet)
    assert result.run_dir == out / three.hash != run_folder(finished)
    assert result.eval_maps()["probs"].shape[1] == 3
    assert_unchanged(before)


def test_nan_loss_on_resume_keeps_checkpoint(finished, tmp_path, monkeypatch):
    config = interrupted(tmp_path, finished, method="csoa")
    before = snapshot(run_folder(config), *(m.parent for m in manifests(config)))
    real = train_module.method_losses

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        terms["coaug"] = terms["coaug"] * float("nan")
        return terms

    monkeypatch.setattr(train_module, "method_losses", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1: loss term 'coaug'.*kept"):
        train(config, progress=False, log=quiet)
    assert_unchanged(before, bytes_only=("metrics.jsonl",))
    assert load_checkpoint(run_folder(config) / "checkpoint.pt", config)["epoch"] == 1


# ------------------------------------------------------------------------ settings and CLIs
def test_run_folder_blocked_by_a_file(finished, tmp_path):
    config = smoke(Path(finished.data_root), tmp_path, method="csoa", epochs=1)
    blocker = tmp_path / config.hash
    blocker.write_text("someone else's file\n")
    before = snapshot(tmp_path, Path(finished.output_dir))
    with pytest.raises(OSError, match=rf"cannot create the run folder .*{config.hash}.*writable"):
        train(config, progress=False, log=quiet)
    assert_unchanged(before)


def test_evaluate_cli_theta_outside_0_1(finished, tmp_path):
    before = snapshot(run_folder(finished))
    report = tmp_path / "metrics.json"
    for theta in ("1.5", "0", "nan"):
        with pytest.raises(SystemExit, match=r"theta must lie in \(0, 1\), got"):
            evaluate.main([str(run_folder(finished)), "--theta", theta, "--json", str(report)])
    assert not report.exists()
    assert_unchanged(before)


def test_runbook_unknown_preset_and_bad_seed(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"unknown preset 'gpu'; valid choices: smoke, cpu"):
        runbook.execute(preset="gpu", build_dir=tmp_path / "build")
    assert not (tmp_path / "build").exists()
    with pytest.raises(SystemExit):
        runbook.main(["execute", "--preset", "smoke", "--seed", "abc"])
    assert "argument --seed: invalid int value: 'abc'" in capsys.readouterr().err


def test_runbook_execute_names_bad_seed(tmp_path):
    with pytest.raises((ValueError, SystemExit), match="seed"):
        runbook.execute(preset="smoke", build_dir=tmp_path, only=["00_introduction"], seed="abc")


def test_papermill_wrong_type_parameter(tmp_path):
    """`papermill ... -p seed abc` injects the string 'abc' after a chapter's parameters
    cell; the chapter's RunConfig then names the field, its type and a valid example."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    intro = nbformat.read(runbook.REPO_ROOT / "book" / "00_introduction.ipynb", as_version=4)
    (parameters,) = [c for c in intro.cells if "parameters" in c.metadata.get("tags", [])]
    chapter = nbformat.v4.new_notebook(metadata=intro.metadata, cells=[
        parameters,
        nbformat.v4.new_code_cell(
            "config = RunConfig.from_preset(preset, seed=seed, device=device, "
            "data_root=data_root, output_dir=output_dir)"
        ),
    ])
    path = tmp_path / "chapter.ipynb"
    nbformat.write(chapter, path)
    injected = parameterize_notebook(load_notebook_node(str(path)),
                                     {"preset": "smoke", "seed": "abc"})
    namespace = {"RunConfig": RunConfig}
    with pytest.raises(ValueError, match=r"seed must be of type int, got str 'abc' \(e.g. "
                                         r"papermill -p seed 0\)"):
        for cell in injected.cells:
            exec(cell.source, namespace)  # the chapter's own cells, papermill's injection
    assert namespace["seed"] == "abc" and "config" not in namespace


def test_finished_run_still_intact(finished):
    """After every test above, the module's finished run is intact and still a cache hit."""
    result = train(finished, progress=False, log=quiet)
    assert result.cached
    saved = json.loads((run_folder(finished) / "results.json").read_text())
    assert saved["config_hash"] == finished.hash
    assert torch.load(run_folder(finished) / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_catalogue_names_existing_tests():
    """Every `file::test` of the catalogue above is a test function of that file."""
    rows = [line for line in __doc__.splitlines() if "::test_" in line]
    assert rows
    for row in rows:
        target = row.split("|")[2].split()[0]
        file_name, test_name = target.split("::")
        source = (Path(__file__).parent / file_name).read_text()
        assert f"def {test_name}(" in source, f"{target} does not exist"


def test_lite0_w_e_without_weights_is_refused(tmp_path):
    # the pretraining stage's W_E is the slim one: an EfficientNet-Lite0 W_E must name its
    # weights, and is told so before the stage is trained for it
    config = RunConfig.from_preset("smoke", method="csoa", embedding="efficientnet_lite0",
                                   output_dir=str(tmp_path), results_dirs=())
    with pytest.raises(ValueError, match="embedding_weights .*'efficientnet_lite0'"):
        resolve_weights(config, progress=False)
    assert list(tmp_path.iterdir()) == []
