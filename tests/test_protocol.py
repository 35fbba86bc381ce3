"""Choe et al.'s protocol (`csoa_nb.engine.protocol`): theta and hyperparameters
chosen on the validation split, the test split scored once there; the files a run keeps for
it (`val_maps.pt`, `protocol.json`, `model.pt`), their backfill from final weights, the
post-hoc maps of a CAM run and the trivial baselines under the protocol."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from smoke_runs import copy_run, smoke

import csoa_nb.engine.baselines as baselines
from csoa_nb.engine.baselines import SIGMA_GRID, map_size, trivial_maps, trivial_protocol
from csoa_nb.engine.builders import load_final_model
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.datasets import build_datasets, build_val_set
from csoa_nb.engine.evaluate import score_maps
from csoa_nb.engine.posthoc_runs import (
    POSTHOC_FILE,
    backfill,
    main,
    posthoc_collect,
    posthoc_scores,
    read_posthoc,
    write_posthoc,
)
from csoa_nb.engine.protocol import (
    PROTOCOL_FILE,
    THETA_GRID,
    VAL_MAPS_FILE,
    ProtocolScores,
    choose_best,
    choose_theta,
    load_val_maps,
    protocol_scores,
    read_protocol,
    theta_curve,
)
from csoa_nb.engine.runs import MODEL_FILE, RunStoreError, load_arrays
from csoa_nb.engine.train import train
from csoa_nb.methods import WSOL_SPECS
from csoa_nb.methods.posthoc import POSTHOC_KINDS

# ----------------------------------------------------------------------- the two choices


@pytest.mark.parametrize(("curve", "theta"), [
    ({0.1: 30.0, 0.2: 10.0, 0.3: 20.0}, 0.2),                 # the lowest error
    ({0.1: 30.0, 0.2: 10.0, 0.3: 10.0, 0.4: 10.0}, 0.2),      # a tie: the lowest theta
    ({0.3: 10.0, 0.2: 10.0, 0.1: 30.0}, 0.2),                 # whatever the order
    ({0.1: math.nan, 0.2: 40.0, 0.3: math.inf}, 0.2),          # no measurement never wins
])
def test_choose_theta_is_the_threshold_of_the_lowest_validation_error(curve, theta):
    chosen = choose_theta(curve)
    assert chosen == theta and isinstance(chosen, float)


def test_choose_theta_without_a_finite_error_is_a_clear_error():
    for curve in ({}, {0.3: math.nan}):
        with pytest.raises(ValueError, match="no threshold with a finite validation error"):
            choose_theta(curve)


def test_theta_curve_covers_the_grid_inside_the_floor():
    assert THETA_GRID[0] == 0.01 and THETA_GRID[-1] == 0.99 and len(THETA_GRID) == 99
    assert THETA_GRID[36] == 0.37  # rounded, not 0.37000000000000005


def test_choose_best_highest_score_first_on_ties_nan_never_wins():
    assert choose_best([("a", 60.0), ("b", 70.0), ("c", 65.0)]) == "b"
    assert choose_best([("a", 70.0), ("b", 70.0), ("c", 65.0)]) == "a"  # a tie keeps the first
    assert choose_best([("a", 65.0), ("b", 70.0), ("c", 70.0)]) == "b"
    assert choose_best([("a", math.nan), ("b", 10.0), ("c", math.nan)]) == "b"
    assert choose_best([("a", 10.0), ("b", math.nan)]) == "a"
    # "finite" as its docstring says: an infinite score is no measurement either
    assert choose_best([("a", math.inf), ("b", 10.0), ("c", -math.inf)]) == "b"
    with pytest.raises(ValueError, match="no candidate with a finite validation score"):
        choose_best([("a", math.nan), ("b", math.nan)])
    with pytest.raises(ValueError, match="no candidate with a finite validation score"):
        choose_best([("a", math.inf)])
    with pytest.raises(ValueError, match="no candidate"):
        choose_best([])


def test_every_wsol_search_grid_holds_the_default_and_only_the_methods_settings():
    defaults = RunConfig()
    for spec in WSOL_SPECS:
        assert len(spec.search) == 1, spec.key  # one hyperparameter each, four values
        for setting, values in spec.search.items():
            assert setting in spec.setting_names
            assert len(values) == 4 and len(set(values)) == 4
            assert getattr(defaults, setting) in values, (spec.key, setting)


# ------------------------------------------------------- protocol_scores on built maps

SIZE = 8


def box_map(box: tuple[int, int, int, int], inside: float = 1.0, rest: float = 0.0,
            ring: tuple[tuple[int, int, int, int], float] | None = None) -> torch.Tensor:
    """An 8 x 8 map: `rest` everywhere but its bottom-right pixel (0, so that min-max
    normalisation keeps the values), `ring`'s value on its box, `inside` on `box`."""
    out = torch.full((SIZE, SIZE), rest)
    out[-1, -1] = 0.0
    if ring is not None:
        (x0, y0, x1, y1), value = ring
        out[y0:y1, x0:x1] = value
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = inside
    return out


def built_maps(cams: list[torch.Tensor], boxes: list[tuple[int, ...]], labels: list[int],
               predicted: list[int]) -> dict:
    """`collect_maps`' form at image size 8 x 8 (the maps are upsampled to themselves)."""
    probs = torch.nn.functional.one_hot(torch.tensor(predicted), 2).float() * 0.8 + 0.1
    return {
        "cam_last": torch.stack(cams).half(),
        "cam_feature": None,
        "probs": probs,
        "labels": torch.tensor(labels),
        "boxes": [torch.tensor([box], dtype=torch.float32) for box in boxes],
        "masks": None,
        "image_size": [SIZE, SIZE],
    }


# Validation: V1 is its box (2, 2, 6, 6) at 1 inside a ring (1, 1, 7, 7) at 0.375; V2 is
# exactly its box. Below tau = 0.375 V1's region is the 6 x 6 ring, IoU 16 / 36 = 0.44 < 0.5;
# the first grid threshold above it is 0.38 (0.375 > 0.37 passes, 0.375 > 0.38 does not), so
# BoxAcc@50 is 50 % up to 0.37 and 100 % from 0.38: theta = 0.38. (At IoU 30 every threshold
# is right and the best is 0: choosing there would give theta 0.01.)
VAL = built_maps(
    [box_map((2, 2, 6, 6), ring=((1, 1, 7, 7), 0.375)), box_map((0, 0, 4, 4))],
    [(2, 2, 6, 6), (0, 0, 4, 4)], labels=[0, 1], predicted=[0, 1])
# Test: T1 as V1 with a ring at 0.3125 (right from 0.32 on), class right; T2 exactly its box,
# class wrong; T3 its box (0, 0, 2, 2) at 1, the rest of the image at 0.4375 but for a 0 at the
# far corner (one 8-connected region: the whole image up to 0.43, IoU 4 / 64; right from 0.44
# on), class right.
# At theta 0.38: top-1 loc. right for T1 alone (66.67 % error), GT-known wrong for T3 alone
# (33.33 %). At the run's theta 0.3: T1 wrong too (100 % / 66.67 %). The test split's own best
# threshold would be 0.44 (every box right: 33.33 % top-1 loc. error).
TEST = built_maps(
    [box_map((2, 2, 6, 6), ring=((1, 1, 7, 7), 0.3125)), box_map((0, 0, 4, 4)),
     box_map((0, 0, 2, 2), rest=0.4375)],
    [(2, 2, 6, 6), (0, 0, 4, 4), (0, 0, 2, 2)], labels=[0, 1, 0], predicted=[0, 0, 0])


def test_theta_is_chosen_under_the_largest_component_rule_the_error_is_reported_with():
    # A 16 x 16 map: the object (1, 1, 5, 5) is a small peak at 1.0, a larger, weaker blob
    # (8, 6, 16, 16) at 0.3 lies off it, the rest is 0. Over *all* contours (MaxBoxAcc) the
    # object's own box is right at every threshold from 0.01 (best threshold 0.01); but there
    # Eq. 13's largest component is the blob (80 px > 16 px): IoU 0, 100 % error. From 0.31
    # the blob is gone and the box is the object's: 0 % error, the theta chosen.
    cam = torch.zeros(16, 16)
    cam[6:16, 8:16] = 0.3
    cam[1:5, 1:5] = 1.0
    val = {"cam_last": cam[None].half(), "cam_feature": None,
           "probs": torch.tensor([[0.9, 0.1]]), "labels": torch.tensor([0]),
           "boxes": [torch.tensor([[1.0, 1.0, 5.0, 5.0]])], "masks": None,
           "image_size": [16, 16]}
    config = RunConfig.from_preset("smoke")
    probe = score_maps(val, config, thetas=(0.01,), full=True)
    assert probe.best_threshold[50] == pytest.approx(0.0)  # MaxBoxAcc: all contours
    assert probe.at(0.01).gt_known_loc_err == 100.0         # the reported rule there
    curve = theta_curve(val, config)
    assert curve[0.3] == 100.0 and curve[0.31] == 0.0 and curve[0.99] == 0.0
    scores = protocol_scores(val, val, config)
    assert scores.theta == 0.31
    assert scores.test.gt_known_loc_err == 0.0 and scores.test.top1_loc_err == 0.0


def test_protocol_scores_choose_theta_on_validation_and_score_the_test_split_there():
    config = RunConfig.from_preset("smoke")
    assert config.theta == 0.3
    scores = protocol_scores(VAL, TEST, config)
    assert scores.theta == 0.38
    assert scores.val.best_threshold[50] == pytest.approx(0.38)
    assert scores.val.best_threshold[30] == 0.0
    assert scores.val.max_box_acc_v2 == pytest.approx(100.0)
    assert scores.val.theta == 0.38 and scores.val.gt_known_loc_err == 0.0
    test = scores.test
    assert test.theta == 0.38 and test.thetas == (0.38,)
    assert test.top1_loc_err == pytest.approx(200 / 3)
    assert test.gt_known_loc_err == pytest.approx(100 / 3)
    assert test.top1_cls_err == pytest.approx(100 / 3)
    assert test.max_box_acc_v2 == pytest.approx(100.0)  # threshold-free: T3 right from 0.44
    assert test.best_threshold[50] == pytest.approx(0.44)  # not what the protocol uses
    assert test.num_images == 3
    # the other views of the same maps: the run's own theta, the test split's best threshold
    at_run_theta = score_maps(TEST, config, thetas=(0.3, 0.44), full=False)
    assert at_run_theta.at(0.3).top1_loc_err == pytest.approx(100.0)
    assert at_run_theta.at(0.44).top1_loc_err == pytest.approx(100 / 3)
    # the record round trip that protocol.json holds
    assert ProtocolScores.from_record(json.loads(json.dumps(scores.to_record()))) == scores


def test_protocol_scores_at_the_runs_own_theta_reuse_the_probe():
    """When the chosen theta is the run's (0.38 here), the validation split is scored once."""
    config = RunConfig.from_preset("smoke", theta=0.38)
    scores = protocol_scores(VAL, TEST, config)
    assert scores.theta == 0.38 and scores.val.thetas == (0.38,)
    assert scores.test.top1_loc_err == pytest.approx(200 / 3)


# ------------------------------------------------------------------ a finished smoke run


@pytest.fixture(scope="module", params=[False, True], ids=["nchw", "channels-last-bf16"])
def cam_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory, request) -> Path:
    """A finished smoke CAM run (2 epochs, seconds), trained by `train()`: in float32 NCHW,
    and as the cpu preset trains (bf16 autocast, channels-last)."""
    out = tmp_path_factory.mktemp("runs")
    layout = {"amp": True, "channels_last": True} if request.param else {}
    result = train(smoke(data_root, out, method="cam", **layout), progress=False,
                   log=lambda _: None)
    return out / result.config.hash


def test_finished_run_writes_model_val_maps_and_protocol(cam_run: Path):
    config, model = load_final_model(cam_run)
    assert config.method == "cam" and not model.training
    saved = torch.load(cam_run / MODEL_FILE, map_location="cpu", weights_only=True)
    checkpoint = torch.load(cam_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == config.epochs == 2
    for name, tensor in checkpoint["model"].items():  # model.pt: the final weights
        assert torch.equal(saved[name], tensor), name
    val_maps = load_val_maps(cam_run)
    val_set = build_val_set(config)
    assert len(val_maps["labels"]) == len(val_set) == 20  # 5 images x 4 classes
    assert "masks" not in val_maps and val_maps["cam_last"].dtype == torch.float16
    protocol = read_protocol(cam_run)
    assert 0.01 <= protocol.theta <= 0.99
    assert protocol.theta == choose_theta(theta_curve(val_maps, config))
    assert protocol.val.num_images == 20 and protocol.test.num_images == 16
    assert protocol.test.thetas == (protocol.theta,)
    assert protocol.test.pxap is not None and protocol.val.pxap is not None
    # the test split's threshold-free metrics are the run's own (results.json)
    results = json.loads((cam_run / "results.json").read_text())["metrics"]
    assert protocol.test.max_box_acc_v2 == pytest.approx(results["max_box_acc_v2"])
    assert protocol.test.pxap == pytest.approx(results["pxap"])


def test_backfill_remakes_the_files_a_finished_run_writes(cam_run: Path, tmp_path: Path):
    old = copy_run(cam_run, tmp_path)
    for name in (MODEL_FILE, VAL_MAPS_FILE, PROTOCOL_FILE):
        (old / name).unlink()
    with pytest.raises(RunStoreError, match=f"posthoc_runs backfill {old}"):
        read_protocol(old)
    scores = backfill(old)  # from the last epoch's checkpoint.pt
    assert (old / PROTOCOL_FILE).read_text() == (cam_run / PROTOCOL_FILE).read_text()
    assert scores == read_protocol(cam_run)
    made, written = load_val_maps(old), load_val_maps(cam_run)
    assert made.keys() == written.keys()
    for key, value in written.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(made[key], value), key
        elif key == "boxes":
            assert all(torch.equal(a, b) for a, b in zip(made[key], value, strict=True))
        else:
            assert made[key] == value, key
    made_model = torch.load(old / MODEL_FILE, map_location="cpu", weights_only=True)
    written_model = torch.load(cam_run / MODEL_FILE, map_location="cpu", weights_only=True)
    assert all(torch.equal(made_model[k], v) for k, v in written_model.items())


def test_run_sweep_gives_an_older_run_its_protocol_files(data_root: Path, tmp_path: Path):
    """A run finished before the protocol existed (no protocol.json) is not an error for the
    pages that read a sweep: run_sweep makes the files from its final weights."""
    from csoa_nb.engine.results import run_sweep

    where = dict(data_root=str(data_root), output_dir=str(tmp_path), results_dirs=())
    (first,) = run_sweep("diagnosis", "smoke", quiet=True, **where)
    written = (first.run_dir / PROTOCOL_FILE).read_text()
    for name in (MODEL_FILE, VAL_MAPS_FILE, PROTOCOL_FILE):
        (first.run_dir / name).unlink()
    (again,) = run_sweep("diagnosis", "smoke", quiet=True, **where)
    assert again.cached and again.run_dir == first.run_dir
    assert (again.run_dir / PROTOCOL_FILE).read_text() == written


def test_backfill_command_line_skips_a_run_that_has_the_files(cam_run, tmp_path, capsys):
    old = copy_run(cam_run, tmp_path)
    (old / PROTOCOL_FILE).unlink()
    assert main(["backfill", str(old), str(cam_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    theta = read_protocol(cam_run).theta
    assert lines == [f"{old.name}: theta {theta:.2f}, test MaxBoxAccV2 "
                     f"{read_protocol(cam_run).test.max_box_acc_v2:.2f}"]  # cam_run: skipped


def test_load_final_model_says_what_to_do_without_final_weights(cam_run: Path, tmp_path: Path):
    gone = tmp_path / cam_run.name
    gone.mkdir()
    shutil.copy(cam_run / "config.json", gone / "config.json")
    with pytest.raises(ValueError, match="neither model.pt nor checkpoint.pt.*Train its "
                                         "config.json again"):
        load_final_model(gone)
    # an unfinished run's checkpoint is not the final weights
    checkpoint = torch.load(cam_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    checkpoint["epoch"] = 1
    torch.save(checkpoint, gone / "checkpoint.pt")
    with pytest.raises(ValueError, match="holds epoch 1 of 2: finish the run"):
        load_final_model(gone)


# ------------------------------------------------------------- post-hoc maps of a CAM run


def test_write_posthoc_scores_the_three_kinds_under_the_protocol(cam_run: Path, tmp_path: Path):
    run = copy_run(cam_run, tmp_path)
    records = write_posthoc(run)
    assert set(records) == set(POSTHOC_KINDS) == {"gradcam", "gradcampp", "scorecam"}
    stored = json.loads((run / POSTHOC_FILE).read_text())
    assert stored == json.loads(json.dumps(records))
    read = read_posthoc(run)
    for kind, scores in read.items():
        assert math.isfinite(scores.test.max_box_acc_v2) and math.isfinite(
            scores.val.max_box_acc_v2), kind
        assert 0.01 <= scores.theta <= 0.99
        assert scores.test.num_images == 16 and scores.val.num_images == 20
    # Grad-CAM's numbers, made again from the maps
    config, model = load_final_model(run)
    _, test_set = build_datasets(config)
    val_maps = posthoc_collect(model, build_val_set(config), config, "gradcam")
    test_maps = posthoc_collect(model, test_set, config, "gradcam")
    theta = choose_theta(theta_curve(val_maps, config))
    assert read["gradcam"].theta == theta
    test = score_maps(test_maps, config, thetas=(theta,), full=True)
    assert read["gradcam"].test.max_box_acc_v2 == pytest.approx(test.max_box_acc_v2)
    assert read["gradcam"].test.top1_loc_err == pytest.approx(test.top1_loc_err)
    # the sample maps: one per sample image of cams.npz, at image size
    samples = load_arrays(run, "sample")
    cams = load_arrays(run, "posthoc")
    assert set(cams) == set(POSTHOC_KINDS)
    for kind in POSTHOC_KINDS:
        assert cams[kind].shape == (len(samples["indices"]), 32, 32)
    indices = samples["indices"].long()  # on the smoke preset: the whole test split
    assert torch.equal(cams["gradcam"], test_maps["cam_last"][indices])
    # posthoc_scores reads what is there
    assert posthoc_scores(run) == read


def test_read_posthoc_without_the_file_names_the_command_that_makes_it(cam_run: Path):
    with pytest.raises(RunStoreError, match=f"posthoc.json does not exist.*`python -m "
                                            f"csoa_nb.engine.posthoc_runs posthoc {cam_run}`"):
        read_posthoc(cam_run)


def test_write_posthoc_refuses_a_run_of_another_method(cam_run: Path, tmp_path: Path):
    cutmix = RunConfig.from_json(cam_run / "config.json").replace(method="cutmix")
    run = tmp_path / cutmix.hash  # a CutMix run: CutMix's network is CAM's, its weights load
    shutil.copytree(cam_run, run)
    (run / "config.json").write_text(json.dumps(cutmix.to_dict()))
    (run / "results.json").unlink()
    with pytest.raises(ValueError, match="is a 'cutmix' run: post-hoc maps are scored on the "
                                         "plain CAM network"):
        write_posthoc(run)
    assert not (run / POSTHOC_FILE).exists()


# ----------------------------------------------------------- trivial baselines, protocol


def test_trivial_full_image_under_the_protocol(data_root: Path):
    config = smoke(data_root)
    scores, sigma = trivial_protocol(config, "full_image")
    assert sigma is None
    # the full image's box at every threshold: BoxAcc is flat, its first best is 0 -> 0.01
    assert scores.val.best_threshold[50] == 0.0 and scores.theta == 0.01
    _, test_set = build_datasets(config)
    full = (0.0, 0.0, 32.0, 32.0)
    hits = sum(max(_iou(full, tuple(b.tolist())) for b in test_set[i]["boxes"]) >= 0.5
               for i in range(len(test_set)))
    assert scores.test.gt_known_loc_err == pytest.approx(100 - 100 * hits / len(test_set))
    assert scores.test.thetas == (0.01,)
    for part in (scores.val, scores.test):
        for name in ("top1_loc_err", "top5_loc_err", "top1_cls_err", "top5_cls_err"):
            assert math.isnan(getattr(part, name)), name
        assert part.cam_nonpositive is None and part.fg_saturated is None


def test_trivial_center_gaussian_sigma_and_theta_chosen_on_validation(data_root: Path,
                                                                     monkeypatch):
    config = smoke(data_root)
    scored = []  # (split size, sigma, theta) of every scoring, in order
    original = baselines._scored

    def spy(config, kind, annotations, sigma, theta):
        scored.append((len(annotations["labels"]), sigma, theta))
        return original(config, kind, annotations, sigma, theta)

    monkeypatch.setattr(baselines, "_scored", spy)
    scores, sigma = trivial_protocol(config, "center_gaussian")
    side = min(map_size(config))
    assert side == 8
    assert sigma in [fraction * side for fraction in SIGMA_GRID]
    # the grid and theta on the validation split (20 images), the test split (16) once
    assert scored == [*((20, fraction * side, config.theta) for fraction in SIGMA_GRID),
                      (20, sigma, scores.theta), (16, sigma, scores.theta)]
    val_set = build_val_set(config)
    by_sigma = {fraction * side: score_maps(
        trivial_maps(config, "center_gaussian", val_set, sigma=fraction * side), config,
        thetas=(config.theta,), full=True) for fraction in SIGMA_GRID}
    best = max(s.max_box_acc_v2 for s in by_sigma.values())
    assert by_sigma[sigma].max_box_acc_v2 == best
    assert sigma == next(s for s, v in by_sigma.items() if v.max_box_acc_v2 == best)
    assert scores.theta == choose_theta(theta_curve(
        trivial_maps(config, "center_gaussian", val_set, sigma=sigma), config))
    assert scores.val.max_box_acc_v2 == pytest.approx(best)
    _, test_set = build_datasets(config)
    test = score_maps(trivial_maps(config, "center_gaussian", test_set, sigma=sigma), config,
                      thetas=(scores.theta,), full=True)
    assert scores.test.gt_known_loc_err == pytest.approx(test.gt_known_loc_err)
    assert scores.test.max_box_acc_v2 == pytest.approx(test.max_box_acc_v2)
    assert math.isnan(scores.test.top1_loc_err)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = width * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_lacks_protocol_only_where_a_validation_split_exists(tmp_path: Path):
    """The one test of 'needs a backfill' (run_sweep, make results): never for data without a
    validation split (CUB in its own format), whose backfill could only fail."""
    from csoa_nb.engine.protocol import lacks_protocol

    synthetic = RunConfig.from_preset("smoke")
    assert lacks_protocol(tmp_path, synthetic)
    assert not lacks_protocol(tmp_path, synthetic.replace(dataset="cub"))
    (tmp_path / PROTOCOL_FILE).write_text("{}")
    assert not lacks_protocol(tmp_path, synthetic)
