"""The committed results (results/runs, made by `make results`) match the code's current configs,
so `make book` reads exactly the runs its chapters ask for and never stale ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.pretrain import pretrain_hash
from csoa_nb.engine.results import RESULTS_DIR, all_configs, sweep_configs
from csoa_nb.methods import TABLE1_ROWS, row_key

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / RESULTS_DIR
COMMITTED = sorted(p for p in RUNS.glob("*") if (p / "results.json").is_file())


def test_sweeps_are_deterministic_and_distinct():
    configs = all_configs("cpu")
    assert len({c.hash for c in configs}) == len(configs)
    assert [c.hash for c in all_configs("cpu")] == [c.hash for c in configs]
    table1 = sweep_configs("table1", "cpu")
    tuned = [c for c in table1 if c.pretrained == "pretrain"]
    # fine-tuned: 6 headline rows x 5 seeds + the two-head ablation x 3
    assert len(tuned) == 6 * 5 + 3
    assert {row_key(c) for c in tuned} == set(TABLE1_ROWS)
    # from scratch: 7 rows x 3 seeds, W_E still from the pretraining stage
    scratch = [c for c in table1 if c.pretrained == ""]
    assert len(scratch) == 7 * 3
    assert all(c.embedding_weights == "pretrain" for c in scratch)
    with pytest.raises(ValueError, match="valid choices"):
        sweep_configs("table9", "cpu")


@pytest.mark.parametrize("run_dir", COMMITTED, ids=lambda p: p.name)
def test_committed_run_matches_its_config_and_a_current_sweep(run_dir):
    config = RunConfig.from_json(run_dir / "config.json")
    assert config.hash == run_dir.name, "config.json does not hash to its folder name"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config_hash"] == run_dir.name
    assert results["command"], "results.json must name the command that made it"
    current = {c.hash for c in all_configs(config.preset)}
    assert config.hash in current, (
        f"{run_dir} is not a run of the current sweeps: the configs changed since "
        "`make results`; delete it and run `make results` again"
    )
    for name in ("eval_maps.pt", "cams.pt", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name


def test_every_cpu_run_the_book_needs_is_committed():
    """Otherwise `make book` would train it (minutes each) inside CI's budget."""
    missing = [c.hash for c in all_configs("cpu") if not (RUNS / c.hash / "results.json").is_file()]
    assert not missing, f"runs missing from {RESULTS_DIR}: {missing}; run `make results`"
    pretrained = {pretrain_hash(c) for c in all_configs("cpu") if c.pretrained == "pretrain"}
    for digest in pretrained:
        assert (RUNS / f"pretrain-{digest}" / "weights.pt").is_file()


def test_finished_runs_never_trains(tmp_path):
    """A page that only reads a sweep (`finished_runs`) never trains a missing run."""
    from csoa_nb.engine.results import finished_runs

    runs = finished_runs("diagnosis", "smoke", output_dir=str(tmp_path), results_dirs=())
    assert runs == [] and list(tmp_path.iterdir()) == []
