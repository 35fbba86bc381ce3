"""The book's experiments as named sweeps: the runs each table needs, for a preset.

`sweep_configs("table1", preset)` lists the runs of a sweep (`SWEEPS`), `all_configs` every
distinct run the book needs. The "wsol" sweep's settings are chosen from the finished runs of
"wsol_search" (`chosen_settings`, Choe et al.'s protocol). The runs are trained or loaded and
summarised by `csoa_nb.engine.results`, and made by `make results`
(`csoa_nb.engine.make_results`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from csoa_nb.base.checks import check_choice
from csoa_nb.engine.config import PRESET_SPECS, PRESETS, RunConfig
from csoa_nb.methods import ROWS, TABLE1_ROWS, WSOL_SPECS, MethodSpec

#: The rows that get their preset's `headline_seeds` in the fine-tuned regime.
HEADLINE_ROWS = ("cam", "confseg", "coaug", "csoa", "coaug_fix", "csoa_fix")
#: Regimes: fine-tuned from our pretraining (the paper's protocol) or from scratch. W_E comes
#: from the pretraining stage in both (the paper's W_E is always ImageNet-pretrained).
REGIMES: dict[str, dict[str, Any]] = {
    "pretrained": {"pretrained": "pretrain"},
    "scratch": {"pretrained": "", "embedding_weights": "pretrain"},
}
#: The regimes the Table 1 sweep runs: both (from scratch too, with the preset's `seeds`).
SWEPT_REGIMES = tuple(REGIMES)
#: Table 2: the block W_F is appended after (W_L is after block 5), for both readings of Eq. 10.
TABLE2_BLOCKS = (3, 4, 5)
TABLE2_ROWS = ("csoa", "csoa_fix")
#: The benchmark's calibration, so that plain CAM lands mid-range: plain CAM, fine-tuned from
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
#: Choe et al.'s protocol (`csoa_nb.engine.protocol`): each WSOL method's own
#: hyperparameter is chosen on the validation split from its spec's `search` grid, each grid
#: point trained with the preset's `search_seeds` in the fine-tuned regime and scored by its
#: mean validation MaxBoxAccV2 over them; the choice holds for both regimes.
#: The rows of Table 1 that the WSOL comparison ("wsol") puts beside the other methods: CAM and
#: CSoA with both readings of Eq. 10 (the runs of the Table 1 sweep, the preset's seeds per regime).
WSOL_BASE_ROWS = ("cam", "csoa", "csoa_fix")
#: W_E from ImageNet (our question, chapters 04-06): Table 1's CoAug and CSoA rows, both
#: readings of Eq. 10, fine-tuned, with EfficientNet-Lite0's ImageNet features as W_E (the
#: installed package's weights), a network that never saw the benchmark, in place of the
#: pretraining stage's slim W_E. CAM has no W_E: its runs are Table 1's.
IMAGENET_WE: dict[str, Any] = {"embedding": "efficientnet_lite0",
                               "embedding_weights": "efficientnet_lite0"}
IMAGENET_WE_ROWS = ("coaug", "csoa", "coaug_fix", "csoa_fix")
#: The sweeps `make results` trains and the book reads (in this order). "wsol" needs the
#: finished runs of "wsol_search" (the hyperparameters chosen on the validation split).
SWEEPS = ("table1", "calibration", "table2", "diagnosis", "imagenet_we", "wsol_search", "wsol")
#: The sweeps of chapter 14's comparison; the others are the paper's tables.
WSOL_SWEEPS = ("wsol_search", "wsol")
#: The committed run store: what `make results` fills and the book reads.
RESULTS_DIR = "results/runs"


class SearchPending(LookupError):
    """The "wsol" sweep's settings are not known yet: runs of "wsol_search" are unfinished."""


class NoValidationSplit(ValueError):
    """The WSOL sweeps need a validation split with boxes, which the preset's data lack."""


@dataclass(frozen=True)
class SearchPoint:
    """One point of a WSOL method's search grid: its settings and the validation MaxBoxAccV2
    of its run with each of the preset's `search_seeds` (in that order)."""

    settings: dict[str, Any]
    seeds: tuple[int, ...]
    scores: tuple[float, ...]

    @property
    def mean(self) -> float:
        """The point's score: the mean of `scores` (NaN if one is NaN, so it never wins)."""
        return sum(self.scores) / len(self.scores)


def search_points(spec: MethodSpec, preset: str, **overrides: Any) -> list[SearchPoint]:
    """Method `spec`'s grid points, in grid order, each with its runs' validation MaxBoxAccV2.

    Raises:
        SearchPending: a run of the method's grid is not finished (or has no protocol.json).
        NoValidationSplit: the data have no validation split to choose on (`sweep_configs`).
    """
    from csoa_nb.engine.protocol import PROTOCOL_FILE, read_protocol
    from csoa_nb.engine.runs import find_run

    points: dict[tuple[Any, ...], dict[int, float]] = {}
    for config in sweep_configs("wsol_search", preset, **overrides):
        if config.method != spec.key:
            continue
        found = find_run(config)
        if found is None or not (found / PROTOCOL_FILE).is_file():
            raise SearchPending(f"the {spec.label} run {config.hash} of the search grid is not "
                                "finished: run `make results`")
        key = tuple(getattr(config, setting) for setting in spec.search)
        points.setdefault(key, {})[config.seed] = read_protocol(found).val.max_box_acc_v2
    return [SearchPoint(dict(zip(spec.search, key, strict=True)), tuple(by_seed),
                        tuple(by_seed.values()))
            for key, by_seed in points.items()]


def chosen_settings(spec: MethodSpec, preset: str, **overrides: Any) -> dict[str, Any]:
    """The settings of WSOL method `spec` chosen on the validation split: the grid point with
    the highest mean validation MaxBoxAccV2 over the search seeds (`protocol.choose_best`;
    `search_points` raises what it raises)."""
    from csoa_nb.engine.protocol import choose_best

    points = search_points(spec, preset, **overrides)
    return dict(choose_best([(point, point.mean) for point in points]).settings)


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
            make(spec.key, seed=s, **REGIMES["pretrained"], **{setting: value})
            for spec in WSOL_SPECS
            for setting, values in spec.search.items()
            for value in values
            for s in PRESET_SPECS[preset].search_seeds
        ]
        from csoa_nb.engine.datasets import has_val_split

        if not has_val_split(configs[0]):  # before any run is trained for nothing
            raise NoValidationSplit(
                f"dataset {configs[0].dataset!r} has no validation split with boxes to choose "
                "the WSOL methods' settings on: use dataset='wsol-metadata' with metadata_dir "
                "set to wsolevaluation's metadata (its 'val' split is train-fullsup)")
        return configs
    if name == "imagenet_we":
        return [
            make(row, seed=s, **REGIMES["pretrained"], **IMAGENET_WE)
            for row in IMAGENET_WE_ROWS
            for s in PRESET_SPECS[preset].headline_seeds
        ]
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
