"""The synthetic benchmark: determinism, caching, exact ground truth, design, CUB round trip."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from csoa_nb.data import CUB200, DataError, Difficulty, make_dataset
from csoa_nb.data import synthetic as syn
from csoa_nb.data.synthetic import store
from csoa_nb.data.synthetic.__main__ import main as synthetic_cli

SMALL = dict(num_classes=4, images_per_class=6, image_size=48, test_per_class=3)


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_boxes(path: Path) -> dict[int, tuple[float, ...]]:
    out = {}
    for line in path.read_text().splitlines():
        image_id, *vals = line.split()
        out[int(image_id)] = tuple(float(v) for v in vals)
    return out


def tight(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, w, h) of a non-empty boolean mask, w = last_col - first_col + 1."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] - cols[0] + 1),
        float(rows[-1] - rows[0] + 1),
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth"), seed=3, **SMALL)


def load_masks(folder: Path) -> list[tuple[int, str, np.ndarray, np.ndarray]]:
    """(image_id, relpath, object mask, part mask) of every image."""
    out = []
    for line in (folder / "images.txt").read_text().splitlines():
        image_id, rel = line.split()
        png = rel[:-4] + ".png"
        mask = np.asarray(Image.open(folder / "masks" / png)) >= 128
        part = np.asarray(Image.open(folder / "parts" / png)) >= 128
        out.append((int(image_id), rel, mask, part))
    return out


def test_layout_and_reader_round_trip(dataset: Path) -> None:
    assert dataset.name.startswith("synthetic-benchmark-") and len(dataset.name) == 32
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["hash"] == dataset.name[-12:]
    assert manifest["spec"]["generator_version"] == syn.GENERATOR_VERSION
    train, test = CUB200(dataset, "train", num_classes=4), CUB200(dataset, "test")
    assert (len(train), len(test)) == (4 * 6, 4 * 3)
    assert train.has_masks and train.mask_dir == dataset / "masks"
    assert train.class_names == ["001.class_01", "002.class_02", "003.class_03", "004.class_04"]
    assert sorted(set(train.labels)) == [0, 1, 2, 3] and train.labels.count(2) == 6
    sample = test[5]
    assert sample["image"].shape == (3, 48, 48) and sample["mask"].shape == (1, 48, 48)
    m = sample["mask"][0].numpy() > 0
    x, y, w, h = tight(m)
    assert sample["boxes"].tolist() == [[x, y, x + w, y + h]]


def test_same_seed_byte_identical_other_seed_differs(tmp_path: Path, dataset: Path) -> None:
    again = make_dataset(tmp_path / "a", seed=3, **SMALL)
    assert again.name == dataset.name
    assert file_hashes(again) == file_hashes(dataset)
    other = make_dataset(tmp_path / "b", seed=4, **SMALL)
    assert other.name != dataset.name
    a, b = file_hashes(dataset), file_hashes(other)
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert len(jpgs) == 36 and all(a[k] != b[k] for k in jpgs)


def test_cache_hit_does_not_rewrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    first = make_dataset(tmp_path, seed=1, **SMALL)
    mtimes = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    second = make_dataset(tmp_path, seed=1, **SMALL)
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["keep.txt", first.name])
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_incomplete_folder_is_not_reused_or_deleted(tmp_path: Path) -> None:
    spec = syn.dataset_spec(seed=2, **SMALL)
    target = tmp_path / f"synthetic-benchmark-{syn.spec_hash(spec)}"
    target.mkdir()
    (target / "images.txt").write_text("half\n")
    with pytest.raises(DataError, match=f"{target.name} exists but is not a complete"):
        make_dataset(tmp_path, seed=2, **SMALL)
    assert (target / "images.txt").read_text() == "half\n"


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    real_save = store._save_png
    calls = {"n": 0}

    def failing_save(mask: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        real_save(mask, path)

    monkeypatch.setattr(store, "_save_png", failing_save)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(tmp_path, seed=5, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    monkeypatch.setattr(store, "_save_png", real_save)
    assert (make_dataset(tmp_path, seed=5, **SMALL) / "manifest.json").is_file()


def test_boxes_are_tight_and_parts_small(dataset: Path) -> None:
    boxes = read_boxes(dataset / "bounding_boxes.txt")
    part_boxes = read_boxes(dataset / "part_boxes.txt")
    ratios = []
    for image_id, _, mask, part in load_masks(dataset):
        assert boxes[image_id] == tight(mask)
        assert part.any() and not (part & ~mask).any()  # the part lies inside the object
        assert part_boxes[image_id] == tight(part)
        ratios.append(part.sum() / mask.sum())
    ratios = np.array(ratios)
    frac = Difficulty().part_fraction
    assert ratios.min() >= 0.5 * frac and ratios.max() <= 2 * frac and ratios.max() < 0.12
    # the object is large: at least 8 % of the image on average
    assert np.mean([m.mean() for _, _, m, _ in load_masks(dataset)]) > 0.08


def test_part_fraction_knob(tmp_path: Path) -> None:
    for frac in (0.03, 0.12):
        d = Difficulty(part_fraction=frac)
        ratios = [
            (lambda r: r["part_mask"].sum() / r["mask"].sum())(syn.render_sample(d, 64, c, s))
            for c in range(4)
            for s in range(5)
        ]
        assert 0.5 * frac <= min(ratios) and max(ratios) <= 2 * frac


def test_render_sample_reproduces_the_dataset(dataset: Path) -> None:
    spec = json.loads((dataset / "manifest.json").read_text())["spec"]
    # per class: 6 train then 3 test images; item 10 = class 1, its train image 1
    _, rel, mask, part = load_masks(dataset)[10]
    assert rel == "002.class_02/class_02_0002.jpg"
    key = [spec["seed"], syn.split_id("benchmark", "train"), 1 * 6 + 1]
    sample = syn.render_sample(Difficulty(), 48, 1, key, train=True)
    assert np.array_equal(sample["mask"], mask) and np.array_equal(sample["part_mask"], part)
    jpeg = np.asarray(Image.open(dataset / "images" / rel)).astype(float)
    assert np.abs(jpeg - sample["image"]).mean() < 4.0  # same picture up to JPEG loss


def test_occlusion_only_in_train(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path, seed=0, difficulty=Difficulty(part_occlusion=1.0), **SMALL)
    lines = (folder / "train_test_split.txt").read_text().splitlines()
    split = dict(line.split() for line in lines)
    for image_id, _, mask, part in load_masks(folder):
        assert mask.any()
        assert part.any() == (split[str(image_id)] == "0")


def test_classes_differ_only_by_the_part() -> None:
    d = Difficulty(clutter=0.0, num_distractors=0, body_class_evidence=0.0)
    a = syn.render_sample(d, 64, 0, 11)
    b = syn.render_sample(d, 64, 1, 11)
    # same geometry and body; the part's colour differs
    assert np.array_equal(a["mask"], b["mask"])
    body = a["mask"] & ~a["part_mask"] & ~b["part_mask"]
    diff = np.abs(a["image"].astype(int) - b["image"].astype(int))
    assert diff[body].mean() < 1.0 and diff[a["part_mask"]].mean() > 40
    assert np.array_equal(a["image"][~a["mask"]], b["image"][~b["mask"]])


def test_body_class_evidence_tints_body() -> None:
    rgb = np.array(syn.class_design("benchmark", 0)["rgb"]) * 255
    dist = []
    for e in (0.0, 1.0):
        r = syn.render_sample(Difficulty(body_class_evidence=e), 64, 0, 5)
        body = r["mask"] & ~r["part_mask"]
        dist.append(np.abs(r["image"][body].mean(0) - rgb).mean())
    assert dist[1] < 0.5 * dist[0]


def test_clutter_knob_adds_background_texture() -> None:
    def roughness(clutter: float) -> float:
        d = Difficulty(clutter=clutter, num_distractors=0)
        vals = []
        for s in range(6):
            r = syn.render_sample(d, 64, 0, s)
            img = r["image"].astype(float)
            grad = np.abs(np.diff(img, axis=1)).mean(-1)
            vals.append(grad[~(r["mask"][:, 1:] | r["mask"][:, :-1])].mean())
        return float(np.mean(vals))

    assert roughness(1.0) > 2 * roughness(0.0)


def test_pretrain_family_differs(tmp_path: Path) -> None:
    bench, pre = syn.DESIGNS["benchmark"], syn.DESIGNS["pretrain"]
    assert not set(bench.part_shapes) & set(pre.part_shapes)
    assert bench.body_shape != pre.body_shape
    # measured on rendered pixels: the benchmark body is brown (R > B), the pretrain one
    # blue-grey (B > R)
    for family, sign in (("benchmark", 1), ("pretrain", -1)):
        d = Difficulty(family=family)
        r_minus_b = []
        for s in range(8):
            r = syn.render_sample(d, 64, s % 4, s)
            body = r["mask"] & ~r["part_mask"]
            mean = r["image"][body].mean(0)
            r_minus_b.append(mean[0] - mean[2])
        assert sign * np.mean(r_minus_b) > 15
    folder = make_dataset(tmp_path, 2, 2, 32, 0, difficulty=Difficulty(family="pretrain"))
    assert folder.name.startswith("synthetic-pretrain-")
    assert CUB200(folder, "train").class_names == ["001.pre_01", "002.pre_02"]
    bench_key = syn.split_id("benchmark", "train")
    assert syn.split_id("pretrain", "train") != bench_key  # no shared layouts either


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="part_fraction"):
        Difficulty(part_fraction=0.0)
    with pytest.raises(ValueError, match="family"):
        Difficulty(family="imagenet")
    with pytest.raises(ValueError, match="clutter"):
        Difficulty(clutter=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        make_dataset(tmp_path, 1, 4, 32, 0)
    with pytest.raises(ValueError, match="seed"):
        make_dataset(tmp_path, 2, 4, 32, -1)
    assert list(tmp_path.iterdir()) == []
    spec = syn.dataset_spec(2, 4, 32, 0, difficulty=Difficulty())
    assert spec["test_per_class"] == 2
    harder = dataclasses.replace(Difficulty(), clutter=0.4)
    changed = syn.dataset_spec(2, 4, 32, 0, difficulty=harder)
    assert syn.spec_hash(spec) != syn.spec_hash(changed)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--root", str(tmp_path), "--num-classes", "2", "--images-per-class", "2"]
    path = synthetic_cli([*argv, "--image-size", "32", "--seed", "1"])
    assert capsys.readouterr().out.strip() == str(path)
    assert len(CUB200(path, "train")) == 4 and len(CUB200(path, "test")) == 2
    with pytest.raises(SystemExit, match="num_classes"):
        synthetic_cli([*argv[:2], "--num-classes", "1"])


def test_cli_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = pytest.importorskip("csoa_nb.engine.config")
    kwargs = config.RunConfig.from_preset("smoke").synthetic_kwargs()
    path = synthetic_cli(["--root", str(tmp_path), "--preset", "smoke"])
    assert path == make_dataset(tmp_path, **kwargs)
    assert len(CUB200(path, "train")) == kwargs["num_classes"] * kwargs["images_per_class"]


def test_cli_as_module(tmp_path: Path) -> None:
    """`python -m csoa_nb.data.synthetic` (the module runs as __main__: one Difficulty class)."""
    pytest.importorskip("csoa_nb.engine.config")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-W", "error::RuntimeWarning", "-m", "csoa_nb.data.synthetic"]
    done = subprocess.run(
        [*argv, "--root", str(tmp_path), "--preset", "smoke", "--images-per-class", "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.parent == tmp_path and (path / "manifest.json").is_file()
    assert json.loads((path / "manifest.json").read_text())["spec"]["images_per_class"] == 2
