"""The run store's arrays (format 2, `csoa_nb.engine.arrays`): exact, deterministic, shared
once per data set, within a byte budget; old folders are named and converted."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from smoke_runs import copy_run, smoke

from csoa_nb.engine import convert_runs, evaluate
from csoa_nb.engine.arrays import FILES, LEGACY_FILES, SHARED_DIR, npz_bytes, read_npz
from csoa_nb.engine.runs import RunStoreError, load_arrays, load_run, save_arrays
from csoa_nb.engine.train import train

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"
#: What a finished smoke run commits (every file but checkpoint.pt, model.pt, .lock), bytes.
SMOKE_RUN_BUDGET = 40_000
#: What one committed cpu-preset run commits at most (two-head methods: two maps per image,
#: over 480 test and 120 validation images; the largest, a two-head run, commits 566,677),
#: bytes.
CPU_RUN_BUDGET = 600_000
#: The committed store, per run, on disk (4 KiB blocks). Format 1 took 128 MiB for 106 runs
#: with 5 validation images a class, format 2 41.4 MiB (a third). With 10 validation images a
#: class (the re-make of 2026-12-07) format 2 takes 418.5 KiB a run: 35 % of format 1's.
STORE_BUDGET_PER_RUN = 440 * 2**10
UNCOMMITTED = {"checkpoint.pt", "model.pt", ".lock"}


def bits(array: np.ndarray) -> np.ndarray:
    return array.view(f"<u{array.itemsize}") if array.dtype.kind == "f" else array


def test_codec_is_exact_and_gives_the_same_bytes_again():
    rng = np.random.default_rng(0)
    half = rng.normal(size=(3, 5, 7)).astype(np.float16)
    half.flat[:6] = [np.nan, np.inf, -np.inf, -0.0, 6e-8, -65504]  # NaN, infinities, subnormal
    arrays = {
        "half": half,
        "single": rng.normal(size=(4, 12)).astype(np.float32),
        "labels": np.arange(9, dtype=np.int64),
        "images": rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
        "scalar": np.array(12, dtype=np.int64),
        "empty": np.zeros((0, 4), np.float32),
    }
    data = npz_bytes(arrays, {"kind": "test"})
    assert data == npz_bytes(arrays, {"kind": "test"})  # no timestamps in the zip
    back, manifest = read_npz(io.BytesIO(data))
    assert manifest["kind"] == "test" and manifest["format"] == 2
    assert manifest["arrays"]["half"]["codec"] == "planes"
    assert manifest["arrays"]["labels"]["codec"] == "raw"
    assert back.keys() == arrays.keys()
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        assert np.array_equal(bits(back[name]), bits(array)), name
    # a plain npz: numpy reads it without pickle; a float is stored as byte planes
    with np.load(io.BytesIO(data), allow_pickle=False) as plain:
        assert plain["labels"].tolist() == list(range(9))
        assert plain["half"].shape == (2, 3, 5, 7) and plain["half"].dtype == np.uint8


def hand_maps(count: int, boxes_shift: float = 0.0, seed: int = 0) -> dict:
    """A `collect_maps` dict (no masks): `count` images, 3 classes, 4 x 4 maps."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(count, 3, generator=generator).softmax(1)
    return {
        "cam_last": torch.rand(count, 4, 4, generator=generator).half(),
        "cam_feature": None,
        "probs": probs,
        "probs_last": probs.clone(),
        "labels": torch.arange(count) % 3,
        "boxes": [torch.tensor([[1.0 + boxes_shift, 2.0, 9.0, 10.0]] * (1 + i % 2))
                  for i in range(count)],
        "image_size": [16, 16],
    }


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_arrays_of_one_data_set_are_stored_once(tmp_path: Path):
    first, second, other = (tmp_path / name for name in ("a", "b", "c"))
    for folder in (first, second, other):
        folder.mkdir()
    maps_a, maps_b = hand_maps(6, seed=1), hand_maps(6, seed=2)
    save_arrays(first, "test", maps_a)
    save_arrays(second, "test", maps_b)
    assert len(list((tmp_path / SHARED_DIR).glob("test-*.npz"))) == 1  # same labels and boxes
    save_arrays(other, "test", hand_maps(6, boxes_shift=0.5))
    assert len(list((tmp_path / SHARED_DIR).glob("test-*.npz"))) == 2  # other boxes
    for folder, maps in ((first, maps_a), (second, maps_b)):
        loaded = load_arrays(folder, "test")
        assert loaded.keys() == maps.keys()
        assert all(same(maps[key], loaded[key]) for key in maps), folder
    # probs_last equal to probs is not stored twice; one that differs is
    own, _ = read_npz(first / FILES["test"])
    assert "probs_last" not in own and "labels" not in own and "boxes" not in own
    maps_a["probs_last"] = maps_a["probs"].flip(1)
    save_arrays(first, "test", maps_a)
    assert torch.equal(load_arrays(first, "test")["probs_last"], maps_a["probs"].flip(1))


def test_sample_keeps_the_truth_and_the_strongest_other_class(tmp_path: Path):
    labels = torch.tensor([0, 2])
    probs = torch.tensor([[0.6, 0.1, 0.3],    # right: the other class is the runner-up, 2
                          [0.1, 0.7, 0.2]])   # wrong: the other class is the prediction, 1
    cam_last = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    sample = {"images": torch.zeros(2, 8, 8, 3, dtype=torch.uint8), "labels": labels,
              "indices": torch.tensor([0, 5]), "boxes": [torch.tensor([[0.0, 0, 4, 4]])] * 2,
              "masks": None, "cam_last": cam_last, "cam_feature": None, "probs": probs}
    (tmp_path / "run").mkdir()
    save_arrays(tmp_path / "run", "sample", sample)
    loaded = load_arrays(tmp_path / "run", "sample")
    assert loaded["classes"].tolist() == [[0, 2], [2, 1]]
    assert loaded["cam_last"].shape == (2, 3, 2, 2)
    for image, kept in enumerate(([0, 2], [2, 1])):
        for c in range(3):
            if c in kept:
                assert torch.equal(loaded["cam_last"][image, c], cam_last[image, c])
            else:
                assert loaded["cam_last"][image, c].isnan().all()
    assert loaded["masks"] is None and loaded["cam_feature"] is None
    assert same(loaded["boxes"], sample["boxes"]) and torch.equal(loaded["probs"], probs)


def test_corrupt_or_unshared_arrays_name_the_file_and_the_fix(tmp_path: Path):
    run = tmp_path / "store" / "run"
    run.mkdir(parents=True)
    save_arrays(run, "test", hand_maps(4))
    shared = next((tmp_path / "store" / SHARED_DIR).glob("*.npz"))
    alone = tmp_path / "elsewhere" / "run"
    alone.parent.mkdir()
    run.rename(alone)  # a run folder copied without its store's shared/ folder
    with pytest.raises(RunStoreError, match=f"{shared.name} does not exist.*copy it into"):
        load_arrays(alone, "test")
    data = (alone / FILES["test"]).read_bytes()
    (alone / FILES["test"]).write_bytes(data[: len(data) // 2])
    with pytest.raises(RunStoreError, match=r"eval_maps.npz is not a readable array file.*"
                                            r"truncated"):
        load_arrays(alone, "test")


# ------------------------------------------------------------------ a trained run, old and new
@pytest.fixture(scope="module")
def smoke_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store")
    result = train(smoke(data_root, out, method="csoa"), progress=False, log=lambda _: None)
    return result.run_dir


def committed_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name not in UNCOMMITTED)


def test_a_finished_smoke_run_stays_within_its_byte_budget(smoke_run: Path):
    names = {p.name for p in smoke_run.iterdir()} - UNCOMMITTED
    assert names == {"config.json", "metrics.jsonl", "results.json", "eval_maps.npz",
                     "cams.npz", "val_maps.npz", "protocol.json"}
    assert committed_bytes(smoke_run) <= SMOKE_RUN_BUDGET, committed_bytes(smoke_run)
    shared = smoke_run.parent / SHARED_DIR
    assert sorted(p.name.split("-")[0] for p in shared.iterdir()) == ["sample", "test", "val"]


def test_committed_runs_stay_within_the_store_budget():
    runs = [p.parent for p in RUNS.glob("*/results.json")]
    assert runs, "no committed runs"
    for run in runs:
        assert committed_bytes(run) <= CPU_RUN_BUDGET, (run.name, committed_bytes(run))
        assert not any((run / name).exists() for name in LEGACY_FILES.values()), run
    on_disk = sum(-(-p.stat().st_size // 4096) * 4096 for p in RUNS.rglob("*")
                  if p.is_file() and p.name not in UNCOMMITTED and ".submitit" not in p.parts)
    assert on_disk / len(runs) <= STORE_BUDGET_PER_RUN, (on_disk, len(runs))


def as_format_1(run: Path) -> dict:
    """Rewrite a run folder's arrays as format 1 wrote them (`.pt` pickles, the sample with
    every class); returns what each old file holds."""
    old = {}
    for kind in ("test", "val", "sample"):
        maps = load_arrays(run, kind)
        if kind == "sample":  # format 1 kept every class: fill the ones format 2 drops
            for key in ("cam_last", "cam_feature"):
                if maps[key] is not None:
                    maps[key] = torch.nan_to_num(maps[key], nan=-1.5)
            del maps["classes"]
        else:
            maps = {k: v for k, v in maps.items() if k != "masks"}
        torch.save(maps, run / LEGACY_FILES[kind])
        (run / FILES[kind]).unlink()
        old[kind] = maps
    return old


def test_an_old_run_folder_names_the_command_then_converts_bit_for_bit(smoke_run: Path,
                                                                        tmp_path: Path, capsys):
    store = tmp_path / "old-store"
    store.mkdir()
    run = copy_run(smoke_run, store)
    old = as_format_1(run)
    shutil.rmtree(store / SHARED_DIR)  # format 1 shared nothing
    result = load_run(run)
    with pytest.raises(RunStoreError, match=r"cams.pt is in the run store's old format.*"
                                            rf"python -m csoa_nb.engine.convert_runs {store}"):
        result.cams()
    with pytest.raises(SystemExit, match=r"eval_maps.pt is in the run store's old format"):
        evaluate.main([str(run), "--theta", "0.3"])
    assert convert_runs.main([str(store)]) == 0
    assert f"{store}: 1 run folders converted" in capsys.readouterr().out
    assert not any((run / name).exists() for name in LEGACY_FILES.values())
    for kind, maps in old.items():
        assert convert_runs.same_arrays(kind, maps, load_arrays(run, kind)) == [], kind
    # the re-scored metrics are the run's own, key for key
    saved = json.loads((run / "results.json").read_text())["metrics"]
    again = evaluate.reevaluate(run, tuple(load_run(run).scores.thetas)).to_record()
    assert again == saved
    assert convert_runs.main([str(store)]) == 0  # a second run has nothing to do
    assert f"{store}: 0 run folders converted" in capsys.readouterr().out


def test_conversion_keeps_the_old_file_when_an_array_does_not_come_back(smoke_run: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch):
    (tmp_path / "store").mkdir()
    run = copy_run(smoke_run, tmp_path / "store")
    as_format_1(run)
    real = convert_runs.load_arrays

    def lossy(run_dir, kind):
        maps = real(run_dir, kind)
        maps["probs"] = maps["probs"].half().float()  # a codec that rounds
        return maps

    monkeypatch.setattr(convert_runs, "load_arrays", lossy)
    with pytest.raises(RunStoreError, match=r"eval_maps.pt: \['probs'\] did not come back bit "
                                            "for bit.*the old file is kept"):
        convert_runs.convert_run(run, say=lambda _: None)
    assert (run / "eval_maps.pt").is_file() and not (run / "eval_maps.npz").exists()
