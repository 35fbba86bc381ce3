"""The book's experiments as named sweeps, their committed results, and their tables.

Every table chapter asks this module for a sweep (`sweep_configs("table1", preset)`), trains or
loads each run through `csoa_nb.engine.train.train` (the run cache), and summarises the runs as a
DataFrame (mean and spread over seeds). Multi-seed sweeps of the `cpu` preset do not fit CI's
budget, so they live in the committed folder `results/runs/<hash>/`, made by::

    make results            # = python -m csoa_nb.engine.results make --preset cpu --jobs 2

which trains only the runs that are missing, two at a time (one thread each). `make book` then
reads them. `tests/test_results.py` checks that the committed runs are exactly the current
configs of these sweeps, so a change of code settings cannot silently reuse stale numbers.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from csoa_nb.checks import check_choice, check_writable_folder
from csoa_nb.engine.config import PRESET_SPECS, PRESETS, RunConfig
from csoa_nb.engine.runs import RunResult
from csoa_nb.engine.workers import worker_pool
from csoa_nb.methods import ROWS, TABLE1_ROWS, WSOL_SPECS, MethodSpec, row_key
from csoa_nb.paths import project_path

#: The rows that get their preset's `headline_seeds` in the fine-tuned regime.
HEADLINE_ROWS = ("cam", "confseg", "coaug", "csoa", "coaug_fix", "csoa_fix")
#: Regimes: fine-tuned from our pretraining (the paper's protocol) or from scratch. W_E comes
#: from the pretraining stage in both (the paper's W_E is always ImageNet-pretrained).
REGIMES: dict[str, dict[str, Any]] = {
    "pretrained": {"pretrained": "pretrain"},
    "scratch": {"pretrained": "", "embedding_weights": "pretrain"},
}
#: The regimes the Table 1 sweep runs: both (from scratch with the preset's `seeds`, three per row).
SWEPT_REGIMES = tuple(REGIMES)
#: Table 2: the block W_F is appended after (W_L is after block 5), for both readings of Eq. 10.
TABLE2_BLOCKS = (3, 4, 5)
TABLE2_ROWS = ("csoa", "csoa_fix")
#: The benchmark's calibration (issue: "plain CAM lands mid-range"): plain CAM, fine-tuned from
#: the pretraining stage, seed 0, over how much class evidence the shared body carries and how
#: often the part is hidden in training images. The chosen point is RunConfig's default.
CALIBRATION_GRID = {"body_class_evidence": (0.0, 0.3, 0.6), "part_occlusion": (0.0, 0.3)}
#: What costs CSoA (with our fix) its classification accuracy (chapter 05): the 10x learning
#: rate of the new heads (cpu preset), changed alone. The other candidates need no extra run:
#: averaging the two heads' scores is re-scored from the saved maps
#: (`csoa_nb.report.findings.head_ablation`), and L_D's share is CoAug against CAM in Table 1.
DIAGNOSIS_VARIANTS: dict[str, dict[str, Any]] = {
    "head_lr_x1": {"head_lr_mult": 1.0},
}
#: Choe et al.'s protocol (issue #17, `csoa_nb.engine.protocol`): each WSOL method's own
#: hyperparameter is chosen on the validation split from its spec's `search` grid, with one
#: seed (`SEARCH_SEED`) in the fine-tuned regime; the choice holds for both regimes.
SEARCH_SEED = 0
#: The rows of Table 1 that the WSOL comparison ("wsol") puts beside the other methods: CAM and
#: CSoA with both readings of Eq. 10 (the runs of the Table 1 sweep, three seeds per regime).
WSOL_BASE_ROWS = ("cam", "csoa", "csoa_fix")
#: The sweeps `make results` trains and the book reads (in this order). "wsol" needs the
#: finished runs of "wsol_search" (the hyperparameters chosen on the validation split).
SWEEPS = ("table1", "calibration", "table2", "diagnosis", "wsol_search", "wsol")
#: The sweeps of chapter 14's comparison (issue #17); the others are the paper's tables.
WSOL_SWEEPS = ("wsol_search", "wsol")


class SearchPending(LookupError):
    """The "wsol" sweep's settings are not known yet: runs of "wsol_search" are unfinished."""


class NoValidationSplit(ValueError):
    """The WSOL sweeps need a validation split with boxes, which the preset's data lack."""


def chosen_settings(spec: MethodSpec, preset: str, **overrides: Any) -> dict[str, Any]:
    """The settings of WSOL method `spec` chosen on the validation split: those of its
    "wsol_search" run with the highest validation MaxBoxAccV2 (`protocol.choose_best`).

    Raises:
        SearchPending: a run of the method's grid is not finished (or has no protocol.json).
        NoValidationSplit: the data have no validation split to choose on (`sweep_configs`).
    """
    from csoa_nb.engine.protocol import PROTOCOL_FILE, choose_best, read_protocol
    from csoa_nb.engine.runs import find_run

    candidates = []
    for config in sweep_configs("wsol_search", preset, **overrides):
        if config.method != spec.key:
            continue
        found = find_run(config)
        if found is None or not (found / PROTOCOL_FILE).is_file():
            raise SearchPending(f"the {spec.label} run {config.hash} of the search grid is not "
                                "finished: run `make results`")
        candidates.append((config, read_protocol(found).val.max_box_acc_v2))
    best = choose_best(candidates)
    return {setting: getattr(best, setting) for setting in spec.search}
RESULTS_DIR = "results/runs"

def sweep_configs(
    name: str, preset: str, *, regimes: tuple[str, ...] = SWEPT_REGIMES, **overrides: Any
) -> list[RunConfig]:
    """The runs of sweep `name` (one of SWEEPS) for `preset`, in a stable order (`regimes`:
    those of `REGIMES` that Table 1 runs)."""
    check_choice("sweep", name, SWEEPS)
    check_choice("preset", preset, PRESETS)
    seeds = PRESET_SPECS[preset].seeds

    def make(row: str, **fields: Any) -> RunConfig:
        return RunConfig.from_preset(preset, **ROWS[row].config_fields, **fields, **overrides)

    if name == "calibration":
        return [
            make("cam", seed=0, body_class_evidence=evidence, part_occlusion=occlusion)
            for evidence in CALIBRATION_GRID["body_class_evidence"]
            for occlusion in CALIBRATION_GRID["part_occlusion"]
        ]
    if name == "table1":
        chosen = {r: REGIMES[r] for r in regimes} if preset != "paper" else {"pretrained": {}}
        return [
            make(row, seed=s, **regime)
            for regime_name, regime in chosen.items()
            for row in TABLE1_ROWS
            for s in (
                PRESET_SPECS[preset].headline_seeds
                if regime_name == "pretrained" and row in HEADLINE_ROWS
                else seeds
            )
        ]
    if name == "wsol":
        chosen = {spec.key: chosen_settings(spec, preset, **overrides) for spec in WSOL_SPECS}
        return [
            make(row, seed=s, **regime, **chosen.get(row, {}))
            for regime in REGIMES.values()
            for row in (*WSOL_BASE_ROWS, *chosen)
            for s in seeds
        ]
    if name == "wsol_search":
        configs = [
            make(spec.key, seed=SEARCH_SEED, **REGIMES["pretrained"], **{setting: value})
            for spec in WSOL_SPECS
            for setting, values in spec.search.items()
            for value in values
        ]
        from csoa_nb.engine.datasets import has_val_split

        if not has_val_split(configs[0]):  # before any run is trained for nothing
            raise NoValidationSplit(
                f"dataset {configs[0].dataset!r} has no validation split with boxes to choose "
                "the WSOL methods' settings on: use dataset='wsol-metadata' with metadata_dir "
                "set to wsolevaluation's metadata (its 'val' split is train-fullsup)")
        return configs
    if name == "diagnosis":
        return [
            make("csoa_fix", seed=s, **variant)
            for variant in DIAGNOSIS_VARIANTS.values()
            for s in seeds
        ]
    return [
        make(row, feature_block=b, seed=s)
        for row in TABLE2_ROWS
        for b in TABLE2_BLOCKS
        for s in seeds
    ]


def all_configs(
    preset: str,
    *,
    pending_ok: bool = False,
    left_out: dict[str, LookupError | ValueError] | None = None,
    **overrides: Any,
) -> list[RunConfig]:
    """Every distinct run the book's tables need, deduplicated by hash. `pending_ok`: leave
    out the sweeps whose settings wait for unfinished runs (`SearchPending`), or that the
    preset's data cannot have (`NoValidationSplit`), instead of raising; `left_out` then
    receives each such sweep's name and why."""
    unique: dict[str, RunConfig] = {}
    for name in SWEEPS:
        try:
            configs = sweep_configs(name, preset, **overrides)
        except (SearchPending, NoValidationSplit) as error:
            if not pending_ok:
                raise
            if left_out is not None:
                left_out[name] = error
            continue
        for config in configs:
            unique.setdefault(config.hash, config)
    return list(unique.values())


def regime_of(config: RunConfig) -> str:
    return "pretrained" if config.pretrained else "scratch"


def run_sweep(
    name: str, preset: str, *, progress: bool = False, quiet: bool = False, **overrides: Any
) -> list[RunResult]:
    """Train or load every run of a sweep (sequentially, in this process). `quiet`: no epoch
    lines and no collapse warnings (a page that only reads the results). A finished run
    without the protocol's files (one trained before they existed) gets them from its final
    weights (`posthoc_runs.backfill`), so every returned run has its `protocol.json` when its
    data has a validation split."""
    from csoa_nb.engine.posthoc_runs import backfill
    from csoa_nb.engine.protocol import lacks_protocol
    from csoa_nb.engine.train import train

    configs = sweep_configs(name, preset, **overrides)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", RuntimeWarning)
        runs = [train(c, progress=progress, **({"log": lambda _: None} if quiet else {}))
                for c in configs]
    for run in runs:
        if lacks_protocol(run.run_dir, run.config):
            backfill(run.run_dir)
    return runs


def finished_runs(name: str, preset: str, **overrides: Any) -> list[RunResult]:
    """The runs of sweep `name` that are already finished (loaded, never trained)."""
    from csoa_nb.engine.runs import find_run, load_run

    found = (find_run(c) for c in sweep_configs(name, preset, **overrides))
    return [load_run(path) for path in found if path is not None]


def runs_frame(results: Iterable[RunResult]) -> pd.DataFrame:
    """One row per run: its identifying settings, every final metric and its wall time.

    The metric columns are the scores' flat form (`RunResult.metrics`, `Scores.to_record`):
    the names the chapters and `csoa_nb.report.vocabulary` use ("max_box_acc@50", ...)."""
    rows = []
    for result in results:
        config = result.config
        rows.append(
            {
                "method": row_key(config),
                "coaug_background": config.coaug_background,
                "regime": regime_of(config),
                "feature_block": config.feature_block,
                "body_class_evidence": config.body_class_evidence,
                "part_occlusion": config.part_occlusion,
                "seed": config.seed,
                "hash": config.hash,
                "cached": result.cached,
                "wall_time_s": result.wall_time_s,
                **result.metrics,
            }
        )
    return pd.DataFrame(rows)


def mean_std(mean: float, std: float, n: int, digits: int = 2) -> str:
    """"m ± s" over n seeds, or just "m" for a single seed."""
    return f"{mean:.{digits}f}" if n < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarize(
    frame: pd.DataFrame, by: list[str], metrics: list[str], *, digits: int = 2
) -> pd.DataFrame:
    """Mean and standard deviation over seeds, as "mean ± std" strings plus numeric columns."""
    grouped = frame.groupby(by, sort=False)[metrics]
    mean, std, count = grouped.mean(), grouped.std(ddof=1).fillna(0.0), grouped.size()
    table = pd.DataFrame(index=mean.index)
    for metric in metrics:
        table[metric] = [
            mean_std(m, s, n, digits)
            for m, s, n in zip(mean[metric], std[metric], count, strict=True)
        ]
    table["seeds"] = count
    table.attrs["mean"] = mean
    table.attrs["std"] = std
    return table


def save_table(frame: pd.DataFrame, name: str, preset: str, root: str | Path = "_build") -> Path:
    """Write a table chapter's DataFrame to `<root>/tables/<preset>/<name>.csv`."""
    path = project_path(root) / "tables" / preset / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path)
    return path


# ---------------------------------------------------------------------------- make results
def _in_worker(task: str, payload: Any) -> tuple[str, float]:
    """One task of `make results` in a worker process (one thread): "train" a config (dict),
    "backfill" the protocol's files of a finished run, or score its "posthoc" maps."""
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    if task == "train":
        from csoa_nb.engine.train import train

        config = RunConfig.from_dict(payload)
        train(config, progress=False, log=lambda line: print(line, flush=True))
        return config.hash, time.perf_counter() - started
    from csoa_nb.engine.posthoc_runs import backfill, write_posthoc

    (backfill if task == "backfill" else write_posthoc)(Path(payload))
    return Path(payload).name, time.perf_counter() - started


def _run_tasks(tasks: list[tuple[str, Any, str]], jobs: int) -> list[str]:
    """Run `(task, payload, description)` triples `jobs` at a time; returns the names done."""
    done: list[str] = []
    with worker_pool(jobs) as pool:  # its workers end with this process, even on SIGKILL
        futures = {pool.submit(_in_worker, task, payload): (task, what)
                   for task, payload, what in tasks}
        for future in as_completed(futures):
            name, seconds = future.result()
            task, what = futures[future]
            done.append(name)
            print(f"[{len(done)}/{len(tasks)}] {time.strftime('%H:%M:%S')} {task} {name} "
                  f"{what}: {seconds:.0f} s", flush=True)
    return done


def _order(preset: str, **overrides: Any) -> dict[str, tuple[bool, bool, int, int]]:
    """Training order: the paper's tables first (Table 1 fine-tuned, calibration, Table 2,
    the diagnosis, then Table 1 from scratch), then the WSOL comparison's sweeps, so that a
    `make results` stopped early has the headline comparisons. A run of two sweeps (e.g.
    CAM in Table 1 and in "wsol") takes its place in the first."""
    order: dict[str, tuple[bool, bool, int, int]] = {}
    for k, name in enumerate(SWEEPS):
        try:
            configs = sweep_configs(name, preset, **overrides)
        except (SearchPending, NoValidationSplit):
            continue
        for position, c in enumerate(configs):
            order.setdefault(c.hash, (name in WSOL_SWEEPS, regime_of(c) != "pretrained", k,
                                      position))
    return order


def make_results(preset: str, jobs: int = 2, output_dir: str = RESULTS_DIR) -> list[str]:
    """Train every missing run of every sweep into `output_dir`, write the protocol's files of
    finished runs that lack them (`posthoc_runs.backfill`) and the post-hoc maps' scores of
    the CAM runs of the "wsol" sweep (`posthoc_runs.write_posthoc`). Sweeps whose settings
    are chosen from other runs ("wsol" from "wsol_search") follow once those are finished.
    Returns the hashes trained.

    Raises:
        ValueError: an unknown preset, `jobs` < 1, an `output_dir` that cannot be written, or
            a run's device or weights file missing: all before any work.
    """
    from csoa_nb.engine.datasets import dataset_root
    from csoa_nb.engine.posthoc_runs import POSTHOC_FILE
    from csoa_nb.engine.pretrain import pretrain
    from csoa_nb.engine.protocol import lacks_protocol
    from csoa_nb.engine.runs import find_run
    from csoa_nb.engine.train import check_device, check_weight_files

    check_choice("preset", preset, PRESETS)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1 (runs trained at once), got {jobs}: e.g. --jobs 2")
    check_writable_folder(project_path(output_dir), "output_dir",
                          "choose a folder you can write (--output-dir DIR)")

    trained: list[str] = []
    # the search runs that "wsol"'s settings are chosen from are found in output_dir too
    into = {"output_dir": output_dir}
    while True:
        configs = all_configs(preset, pending_ok=True, **into)
        missing = [c for c in configs if find_run(c) is None]
        order = _order(preset, **into)
        missing.sort(key=lambda c: order[c.hash])
        print(f"{len(configs)} runs in the sweeps, {len(missing)} to train into {output_dir}")
        for config in missing:  # what a worker would refuse, before any work
            check_device(config)
            check_weight_files(config)
        # shared, cached inputs first, so parallel workers never build them twice
        for config in missing:
            dataset_root(config)
            if config.pretrained == "pretrain":
                pretrain(config, progress=False)
        trained += _run_tasks([("train", c.to_dict(), f"{c.method} {regime_of(c)} block "
                                f"{c.feature_block} seed {c.seed}") for c in missing], jobs)
        found = [(c, find_run(c)) for c in configs]
        stale = [path for config, path in found if path and lacks_protocol(path, config)]
        _run_tasks([("backfill", str(path), "val_maps.npz, protocol.json") for path in stale],
                   jobs)
        if not missing and not stale:
            break
    try:
        cam_runs = [find_run(c) for c in sweep_configs("wsol", preset, **into)
                    if c.method == "cam"]
    except (SearchPending, NoValidationSplit):  # a search run failed; or no such sweep
        cam_runs = []
    _run_tasks([("posthoc", str(path), "Grad-CAM, Grad-CAM++, Score-CAM") for path in cam_runs
                if path and not (path / POSTHOC_FILE).is_file()], jobs)
    return trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csoa_nb.engine.results", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="train every missing run of the book's sweeps")
    make.add_argument("--preset", default="cpu", choices=PRESETS)
    make.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    make.add_argument("--output-dir", default=RESULTS_DIR)
    listing = sub.add_parser("list", help="print the sweeps' runs and whether they exist")
    listing.add_argument("--preset", default="cpu", choices=PRESETS)
    args = parser.parse_args(argv)
    if args.command == "make":
        started = time.perf_counter()
        try:
            make_results(args.preset, args.jobs, args.output_dir)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"done in {time.perf_counter() - started:.0f} s")
        return 0
    from csoa_nb.engine.runs import find_run

    left_out: dict[str, LookupError | ValueError] = {}
    configs = all_configs(args.preset, pending_ok=True, left_out=left_out)
    for name, why in left_out.items():  # a status line each, not a traceback
        print(f"{name}: {'pending' if isinstance(why, SearchPending) else 'left out'}: {why}")
    for config in configs:
        where = find_run(config)
        print(f"{config.hash}  {config.method:8s} {regime_of(config):10s} "
              f"block {config.feature_block} seed {config.seed}  {where or 'missing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
