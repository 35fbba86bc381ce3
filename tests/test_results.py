"""The committed results (results/runs, made by `make results`) match the code's current configs,
so `make book` reads exactly the runs its chapters ask for and never stale ones."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.pretrain import pretrain_hash
from csoa_nb.engine.sweeps import RESULTS_DIR, SWEEPS, all_configs, sweep_configs
from csoa_nb.methods import METHODS, TABLE1_ROWS, WSOL_SPECS, row_key

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / RESULTS_DIR
COMMITTED = sorted(p for p in RUNS.glob("*") if (p / "results.json").is_file())


@functools.cache
def current_hashes(preset: str) -> frozenset[str]:
    """The hashes of every run of the current sweeps of `preset` (made once per test process,
    not once per committed run)."""
    return frozenset(c.hash for c in all_configs(preset))


def test_sweeps_are_deterministic_and_distinct():
    configs = all_configs("cpu")
    assert len({c.hash for c in configs}) == len(configs)
    assert [c.hash for c in all_configs("cpu")] == [c.hash for c in configs]
    table1 = sweep_configs("table1", "cpu")
    tuned = [c for c in table1 if c.pretrained == "pretrain"]
    # five seeds for every row of both regimes (one seed set for every chapter)
    assert len(tuned) == 7 * 5
    assert {row_key(c) for c in tuned} == set(TABLE1_ROWS)
    assert {c.seed for c in tuned} == {0, 1, 2, 3, 4}
    # from scratch: 7 rows x 5 seeds, W_E still from the pretraining stage
    scratch = [c for c in table1 if c.pretrained == ""]
    assert len(scratch) == 7 * 5
    wsol = sweep_configs("wsol", "cpu")  # chapter 14: the same seeds
    assert {c.seed for c in wsol} == {0, 1, 2, 3, 4} and len(wsol) == 2 * 7 * 5
    assert all(c.embedding_weights == "pretrain" for c in scratch)
    # W_E from ImageNet: the four rows that use W_E, fine-tuned, five seeds, Lite0's package
    # weights; the backbone from Table 1's own pretraining stage
    imagenet = sweep_configs("imagenet_we", "cpu")
    assert sorted((row_key(c), c.seed) for c in imagenet) == sorted(
        (row, s) for row in ("coaug", "csoa", "coaug_fix", "csoa_fix") for s in range(5))
    assert {(c.embedding, c.embedding_weights, c.pretrained) for c in imagenet} == {
        ("efficientnet_lite0", "efficientnet_lite0", "pretrain")}
    assert {pretrain_hash(c) for c in imagenet} == {pretrain_hash(c) for c in tuned}
    with pytest.raises(ValueError, match="valid choices"):
        sweep_configs("table9", "cpu")


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_committed_run_matches_its_config_and_a_current_sweep(run_dir):
    config = RunConfig.from_json(run_dir / "config.json")
    assert config.hash == run_dir.name, "config.json does not hash to its folder name"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config_hash"] == run_dir.name
    assert results["command"], "results.json must name the command that made it"
    assert config.hash in current_hashes(config.preset), (
        f"{run_dir} is not a run of the current sweeps: the configs changed since "
        "`make results`; delete it and run `make results` again"
    )
    for name in ("eval_maps.npz", "cams.npz", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_committed_run_keeps_the_protocols_files(run_dir):
    """Every committed run (each one of a current sweep, above) has what Choe et al.'s
    protocol reads: `make results` writes them, or backfills them from the final weights."""
    from csoa_nb.engine.protocol import (
        PROTOCOL_FILE,
        VAL_MAPS_FILE,
        choose_theta,
        load_val_maps,
        read_protocol,
        theta_curve,
    )

    for name in (VAL_MAPS_FILE, PROTOCOL_FILE):
        assert (run_dir / name).is_file(), (
            f"{run_dir / name} is missing: run `make results` (it backfills the protocol's "
            "files of finished runs)")
    protocol = read_protocol(run_dir)
    val_maps = load_val_maps(run_dir)
    config = RunConfig.from_json(run_dir / "config.json")
    assert protocol.theta == choose_theta(theta_curve(val_maps, config))
    assert len(val_maps["labels"]) == protocol.val.num_images > 0
    # the test split is the run's own: its threshold-free scores are those of results.json
    metrics = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert protocol.test.num_images == metrics["num_images"]
    assert protocol.test.max_box_acc_v2 == pytest.approx(metrics["max_box_acc_v2"])
    assert protocol.test.thetas == (protocol.theta,)


def test_committed_cam_runs_of_the_wsol_sweep_keep_their_posthoc_maps():
    """The post-hoc maps (Grad-CAM, Grad-CAM++, Score-CAM) of the "wsol" sweep's CAM runs,
    which chapter 14 reads (`make results` writes them last)."""
    from csoa_nb.engine.posthoc_runs import POSTHOC_CAMS_FILE, POSTHOC_FILE, read_posthoc
    from csoa_nb.methods.posthoc import POSTHOC_KINDS

    cam_runs = [RUNS / c.hash for c in sweep_configs("wsol", "cpu") if c.method == "cam"]
    assert len(cam_runs) == 2 * 5  # two regimes x five seeds
    for run_dir in cam_runs:
        for name in (POSTHOC_FILE, POSTHOC_CAMS_FILE):
            assert (run_dir / name).is_file(), f"{run_dir / name} is missing: run `make results`"
        scores = read_posthoc(run_dir)
        assert set(scores) == set(POSTHOC_KINDS)
        num_images = json.loads((run_dir / "results.json").read_text())["metrics"]["num_images"]
        for kind, protocol in scores.items():
            assert math.isfinite(protocol.test.max_box_acc_v2), (run_dir, kind)
            assert protocol.test.num_images == num_images, (run_dir, kind)


def test_every_cpu_run_the_book_needs_is_committed():
    """Otherwise `make book` would train it (minutes each) inside CI's budget."""
    missing = [c.hash for c in all_configs("cpu") if not (RUNS / c.hash / "results.json").is_file()]
    assert not missing, f"runs missing from {RESULTS_DIR}: {missing}; run `make results`"
    pretrained = {pretrain_hash(c) for c in all_configs("cpu") if c.pretrained == "pretrain"}
    for digest in pretrained:
        assert (RUNS / f"pretrain-{digest}" / "weights.pt").is_file()


def test_make_results_trains_the_papers_sweeps_before_the_wsol_comparison():
    """`make results` sorts the missing runs by `_order`: every run of the paper's sweeps
    (Table 1 in both regimes, calibration, Table 2, diagnosis) before any run that only the
    WSOL comparison needs, so that the paper's tables are complete first."""
    from csoa_nb.engine.make_results import _order
    from csoa_nb.engine.sweeps import WSOL_SWEEPS

    first_sweep: dict[str, str] = {}
    for name in SWEEPS:
        for config in sweep_configs(name, "cpu"):
            first_sweep.setdefault(config.hash, name)
    order = _order("cpu")
    assert set(order) == set(first_sweep)
    wsol_only = [first_sweep[h] in WSOL_SWEEPS for h in sorted(order, key=order.__getitem__)]
    assert wsol_only == sorted(wsol_only)  # False (the paper's) ... then True (chapter 14's)
    # the paper's sweeps and the ImageNet W_E's 20, five seeds each; the search's 48 runs (4
    # methods x 4 values x 3 seeds) and the 28 runs of the "wsol" sweep that neither Table 1
    # nor the search holds
    assert wsol_only.count(False) == 100 + 20 and wsol_only.count(True) == 48 + 28


def test_finished_runs_never_trains(tmp_path):
    """A page that only reads a sweep (`finished_runs`) never trains a missing run."""
    from csoa_nb.engine.results import finished_runs

    runs = finished_runs("diagnosis", "smoke", output_dir=str(tmp_path), results_dirs=())
    assert runs == [] and list(tmp_path.iterdir()) == []


# ------------------------------------------------ Choe et al.'s protocol: wsol_search, wsol


def protocol_record(val_max_box_acc_v2: float) -> dict:
    """A protocol.json whose validation MaxBoxAccV2 is the given one."""
    from csoa_nb.core.scores import Scores, ThetaErrors
    from csoa_nb.engine.protocol import ProtocolScores

    errors = ThetaErrors(50.0, 40.0, 30.0, 20.0, 10.0)
    scores = Scores(theta=0.35, errors=errors, by_theta={0.35: errors},
                    gt_known_loc_acc={50: 70.0}, num_images=20,
                    max_box_acc_v2=val_max_box_acc_v2, max_box_acc={50: 70.0},
                    best_threshold={50: 0.35})
    return ProtocolScores(0.35, scores, scores).to_record()


def fake_run(base: Path, config: RunConfig, val_max_box_acc_v2: float | None) -> Path:
    """A finished run folder as `find_run` and `read_protocol` see it (no protocol.json when
    the score is None: a run finished before the protocol's files were written)."""
    run_dir = Path(base) / config.hash
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    (run_dir / "results.json").write_text(json.dumps({"config_hash": config.hash}))
    if val_max_box_acc_v2 is not None:
        (run_dir / "protocol.json").write_text(json.dumps(protocol_record(val_max_box_acc_v2)))
    return run_dir


#: Validation MaxBoxAccV2 of each search run (setting value -> one score per search seed
#: 0, 1, 2): HaS's best mean is 16 though seed 0 alone would choose 32, ACoL's means tie at
#: 0.5 and 0.8 (the first wins), one ADL run has NaN (its point never wins), CutMix's best is
#: its last value.
SEARCH_SCORES = {
    "has": {8: (61.0, 60.0, 62.0), 16: (64.5, 66.0, 65.0), 32: (66.0, 58.0, 60.0),
            64: (40.0, 41.0, 39.0)},
    "acol": {0.5: (58.0, 57.0, 59.0), 0.6: (55.0, 55.0, 55.0), 0.8: (59.0, 58.0, 57.0),
             0.9: (50.0, 52.0, 51.0)},
    "adl": {0.6: (45.0, 46.0, 47.0), 0.7: (math.nan, 60.0, 61.0), 0.8: (50.0, 50.0, 50.0),
            0.9: (49.0, 49.0, 49.0)},
    "cutmix": {0.1: (39.0, 40.0, 41.0), 0.25: (40.0, 40.0, 40.0), 0.5: (41.0, 41.0, 41.0),
               1.0: (42.0, 43.0, 41.0)},
}
CHOSEN = {"has": {"has_grid_size": 16}, "acol": {"acol_delta": 0.5},
          "adl": {"adl_gamma": 0.8}, "cutmix": {"cutmix_prob": 1.0}}


def search_score(config: RunConfig) -> float:
    return SEARCH_SCORES[config.method][search_value(config)][config.seed]


def search_value(config: RunConfig) -> Any:
    (setting,) = METHODS[config.method].search
    return getattr(config, setting)


def test_wsol_search_is_each_methods_grid_fine_tuned_with_the_search_seeds():
    configs = sweep_configs("wsol_search", "cpu")
    assert len(configs) == 48 == len({c.hash for c in configs})  # 4 methods x 4 values x 3
    assert [c.method for c in configs] == [m for m in ("has", "acol", "adl", "cutmix")
                                           for _ in range(12)]
    assert [c.seed for c in configs] == [0, 1, 2] * 16
    assert all(c.pretrained == "pretrain" and c.preset == "cpu" for c in configs)
    default = RunConfig.from_preset("cpu")
    for config in configs:
        spec = METHODS[config.method]
        assert list(SEARCH_SCORES[config.method]) == list(spec.search[next(iter(spec.search))])
        # only the searched setting differs from the method's default run
        (setting,) = spec.search
        plain = RunConfig.from_preset("cpu", method=config.method, seed=config.seed,
                                      **{setting: getattr(config, setting)})
        assert plain.hash == config.hash
        for other in spec.setting_names:
            if other != setting:
                assert getattr(config, other) == getattr(default, other)
    values = {m: [search_value(c) for c in configs if c.method == m] for m in SEARCH_SCORES}
    assert values == {"has": [8] * 3 + [16] * 3 + [32] * 3 + [64] * 3,
                      "acol": [0.5] * 3 + [0.6] * 3 + [0.8] * 3 + [0.9] * 3,
                      "adl": [0.6] * 3 + [0.7] * 3 + [0.8] * 3 + [0.9] * 3,
                      "cutmix": [0.1] * 3 + [0.25] * 3 + [0.5] * 3 + [1.0] * 3}


def test_wsol_sweep_takes_the_settings_chosen_on_validation(tmp_path):
    from csoa_nb.engine.sweeps import WSOL_BASE_ROWS, chosen_settings

    overrides = {"output_dir": str(tmp_path / "out"), "results_dirs": (str(tmp_path / "r"),)}
    for i, config in enumerate(sweep_configs("wsol_search", "cpu", **overrides)):
        # half the runs in output_dir, half in a results dir: find_run looks in both
        base = overrides["output_dir"] if i % 2 else overrides["results_dirs"][0]
        fake_run(base, config, search_score(config))
    for spec in WSOL_SPECS:
        assert chosen_settings(spec, "cpu", **overrides) == CHOSEN[spec.key]
    configs = sweep_configs("wsol", "cpu", **overrides)
    assert len(configs) == len({c.hash for c in configs}) == (3 + 4) * 2 * 5
    table1 = {c.hash for c in sweep_configs("table1", "cpu")}
    base = [c for c in configs if row_key(c) in WSOL_BASE_ROWS]
    assert len(base) == 3 * 2 * 5 and {c.hash for c in base} <= table1  # Table 1's runs
    expected = {
        RunConfig.from_preset("cpu", method=method, seed=seed, **regime, **CHOSEN[method]).hash
        for method in CHOSEN
        for regime in ({"pretrained": "pretrain"},
                       {"pretrained": "", "embedding_weights": "pretrain"})
        for seed in (0, 1, 2, 3, 4)
    }
    assert {c.hash for c in configs if c.method in CHOSEN} == expected
    assert all(c.output_dir == overrides["output_dir"] for c in configs)


def test_wsol_sweep_waits_for_every_search_run(tmp_path):
    from csoa_nb.engine.sweeps import SearchPending, chosen_settings

    overrides = {"output_dir": str(tmp_path), "results_dirs": ()}
    search = sweep_configs("wsol_search", "cpu", **overrides)
    for config in search[:-1]:  # CutMix's last run is not there
        fake_run(tmp_path, config, search_score(config))
    assert chosen_settings(METHODS["has"], "cpu", **overrides) == CHOSEN["has"]
    with pytest.raises(SearchPending, match=f"CutMix run {search[-1].hash} of the search "
                                            "grid is not finished: run `make results`"):
        sweep_configs("wsol", "cpu", **overrides)
    with pytest.raises(SearchPending):
        all_configs("cpu", **overrides)
    # finished, but before the protocol's files were written: still pending
    fake_run(tmp_path, search[-1], None)
    with pytest.raises(SearchPending, match=search[-1].hash):
        chosen_settings(METHODS["cutmix"], "cpu", **overrides)
    others = [c.hash for name in SWEEPS if name != "wsol"
              for c in sweep_configs(name, "cpu", **overrides)]
    pending = [c.hash for c in all_configs("cpu", pending_ok=True, **overrides)]
    assert pending == list(dict.fromkeys(others))  # "wsol" left out, nothing else
    search_hashes = {c.hash for c in search}
    assert {c.hash for c in all_configs("cpu", pending_ok=True, **overrides)
            if c.method in CHOSEN} == search_hashes


def test_make_results_trains_the_wsol_sweep_after_its_search_into_output_dir(
        tmp_path, monkeypatch):
    """`make_results` in phases, with training faked: every missing run, then the protocol's
    files of a run that lacks them, then the "wsol" sweep once its search runs are finished,
    then the post-hoc maps of its CAM runs, all in `output_dir`."""
    import csoa_nb.engine.datasets as datasets
    import csoa_nb.engine.make_results as driver
    import csoa_nb.engine.pretrain as pretrain

    out = tmp_path / "out"
    monkeypatch.setattr(datasets, "dataset_root", lambda config: None)
    monkeypatch.setattr(pretrain, "pretrain", lambda config, progress=False: None)
    old = sweep_configs("table1", "smoke")[0]
    stale = fake_run(out, old, None)  # finished before protocol.json was written
    calls: list[tuple[str, list[str]]] = []

    def fake_tasks(tasks, jobs):
        names = []
        for task, payload, _ in tasks:
            if task == "train":
                config = RunConfig.from_dict(payload)
                assert Path(config.output_dir) == out
                # the smoke preset searches with one seed: each point's mean over three
                value = (sum(SEARCH_SCORES[config.method][search_value(config)]) / 3
                         if config.method in SEARCH_SCORES else 50.0)
                names.append(fake_run(out, config, value).name)
            else:
                if task == "backfill":
                    (Path(payload) / "protocol.json").write_text(
                        json.dumps(protocol_record(50.0)))
                names.append(str(payload))
        if tasks:
            calls.append((tasks[0][0], names))
        return names

    monkeypatch.setattr(driver, "_run_tasks", fake_tasks)
    trained = driver.make_results("smoke", jobs=1, output_dir=str(out))
    overrides = {"output_dir": str(out)}
    everything = all_configs("smoke", **overrides)  # the search runs are there now
    assert sorted(trained) == sorted(c.hash for c in everything if c.hash != old.hash)
    wsol = sweep_configs("wsol", "smoke", **overrides)
    assert {c.hash for c in wsol if c.method in CHOSEN} == {
        c.replace(**CHOSEN[c.method]).hash for c in wsol if c.method in CHOSEN}
    # round 1 trains what needs no choice and backfills the stale run; round 2 the "wsol"
    # runs at the chosen settings; then the CAM runs' post-hoc maps
    assert [task for task, _ in calls] == ["train", "backfill", "train", "posthoc"]
    search = {c.hash for c in sweep_configs("wsol_search", "smoke")}
    # the from-scratch runs at the chosen values (fine-tuned, seed 0, is the search run itself)
    chosen = {c.hash for c in wsol if c.method in CHOSEN} - search
    assert len(chosen) == 4
    assert search <= set(calls[0][1]) and not chosen & set(calls[0][1])
    assert calls[1][1] == [str(stale)] and (stale / "protocol.json").is_file()
    assert set(calls[2][1]) == chosen
    cam_runs = sorted(str(out / c.hash) for c in wsol if c.method == "cam")
    assert len(cam_runs) == 2  # fine-tuned and from scratch, seed 0
    assert calls[-1][0] == "posthoc" and sorted(calls[-1][1]) == cam_runs


def test_chosen_settings_without_a_validation_split_names_the_fix():
    """CUB in its own format has no split with boxes to choose on: a clear error, not a search
    that waits for ever."""
    from csoa_nb.engine.sweeps import (
        NoValidationSplit,
        all_configs,
        chosen_settings,
        sweep_configs,
    )
    from csoa_nb.methods import WSOL_SPECS

    with pytest.raises(NoValidationSplit, match="wsol-metadata"):
        chosen_settings(WSOL_SPECS[0], "smoke", dataset="cub", results_dirs=())
    # before any run of the grid is trained; `make results` leaves both sweeps out
    with pytest.raises(NoValidationSplit):
        sweep_configs("wsol_search", "smoke", dataset="cub", results_dirs=())
    kept = all_configs("smoke", pending_ok=True, dataset="cub", results_dirs=())
    assert kept and not {c.method for c in kept} & {s.key for s in WSOL_SPECS}
