"""The book's vocabulary for results: how metrics, rows, regimes and runs are named.

Column names (the paper's where it has the column: "Top-1 loc. err", ...), the words prose uses
for a metric, which way is better, row names of each kind (method rows from the registry,
`csoa_nb.methods`; "CSoA-4-5" for a feature block; theta), the label of our numbers ("ours,
preset cpu, synthetic benchmark, vgg_slim, 3 seeds") and the paper's row names. Tables, prose
and charts (`csoa_nb.report.tables`, `.prose`, `.charts`) all name things through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from csoa_nb import methods
from csoa_nb.core.maxboxacc import DEFAULT_IOU_THRESHOLDS
from csoa_nb.core.scores import join_key, split_key
from csoa_nb.engine.config import RunConfig


def _by_iou(metric: str, text: str) -> dict[str, str]:
    """`metric`'s column at each IoU level ("max_box_acc@50") -> `text` with "{iou}" filled in
    as a fraction ("0.5")."""
    return {join_key(metric, iou=d): text.format(iou=f"{d / 100:g}")
            for d in DEFAULT_IOU_THRESHOLDS}


#: Column names: the paper's where it has the column, else a plain description.
METRIC_COLUMNS: dict[str, str] = {
    "top1_loc_err": "Top-1 loc. err",
    "top5_loc_err": "Top-5 loc. err",
    "top1_cls_err": "Top-1 cls. err",
    "top5_cls_err": "Top-5 cls. err",
    "gt_known_loc_err": "GT-known loc. err",
    **_by_iou("gt_known_loc_acc", "GT-known loc. acc, IoU {iou}"),
    "max_box_acc_v2": "MaxBoxAccV2",
    **_by_iou("max_box_acc", "MaxBoxAcc, IoU {iou}"),
    "pxap": "PxAP",
    "box_mass_ratio": "box mass ratio",
    "wall_time_s": "wall time (s)",
    **_by_iou("best_threshold", "best τ, IoU {iou}"),
}
#: The same metrics as a sentence names them.
METRIC_PROSE: dict[str, str] = {
    "top1_loc_err": "top-1 loc. error",
    "top5_loc_err": "top-5 loc. error",
    "top1_cls_err": "top-1 cls. error",
    "top5_cls_err": "top-5 cls. error",
    "gt_known_loc_err": "GT-known loc. error",
    **_by_iou("gt_known_loc_acc", "GT-known loc. accuracy at IoU {iou}"),
    "max_box_acc_v2": "MaxBoxAccV2",
    **_by_iou("max_box_acc", "MaxBoxAcc at IoU {iou}"),
    "pxap": "PxAP",
    "box_mass_ratio": "box mass ratio",
    "fg_saturated": "share of pixels with S > 0.5",
    "cam_nonpositive": "share of raw CAM pixels <= 0",
    "wall_time_s": "wall time",
}
#: Metrics where a larger number is better (all others in METRIC_COLUMNS: smaller is better).
HIGHER_IS_BETTER = frozenset(
    {
        *_by_iou("gt_known_loc_acc", ""),
        "max_box_acc_v2",
        *_by_iou("max_box_acc", ""),
        "pxap",
        "box_mass_ratio",
    }
)
#: The two training regimes of `csoa_nb.engine.sweeps.REGIMES`, for labels.
REGIME_LABELS = {"pretrained": "pretrained + fine-tuned", "scratch": "from scratch"}
REGIME_ORDER = ("pretrained", "scratch")
DATASET_LABELS = {
    "synthetic": "synthetic benchmark",
    "cub": "CUB-200-2011",
    "ilsvrc": "ILSVRC validation",
    "wsol-metadata": "wsolevaluation metadata",
}
BACKBONE_LABELS = {"vgg16": "VGG16", "inception_v3": "InceptionV3", "vgg_slim": "vgg_slim"}
#: The embedding networks W_E of the runs (`RunConfig.embedding`), for labels: ours is the slim
#: W_E of the pretraining stage, the ImageNet one EfficientNet-Lite0's installed weights.
EMBEDDING_LABELS = {"slim": "ours (pretraining stage)",
                    "efficientnet_lite0": "ImageNet (EfficientNet-Lite0)",
                    "alexnet": "ImageNet (AlexNet)"}
#: The paper's index name for our row kinds (Table 3 is indexed by "Theta").
INDEX_NAMES = {"method": "Method", "feature_block": "Method", "theta": "Theta",
               "regime": "Regime", "embedding": "W_E"}
#: The paper leaves a cell empty ("-") where a method did not report it.
MISSING = "–"


# ------------------------------------------------------------------------------------ labels
def _at_theta(metric: str) -> tuple[str, float | None]:
    """(the metric, its theta) of a column of `runs_frame`, e.g. ("top1_loc_err", 0.2) for
    "top1_loc_err@0.2"; theta None for any other name (`csoa_nb.core.scores.split_key`)."""
    try:
        name, theta, _ = split_key(metric)
    except ValueError:
        return metric, None
    return (name, theta) if theta is not None else (metric, None)


def column_label(metric: str) -> str:
    """The column name of `metric`; a metric at a theta gets "(θ 0.2)" appended."""
    if metric in METRIC_COLUMNS:
        return METRIC_COLUMNS[metric]
    name, theta = _at_theta(metric)
    if theta is not None and name in METRIC_COLUMNS:
        return f"{METRIC_COLUMNS[name]} (θ {theta:g})"
    return metric


def metric_prose(metric: str) -> str:
    """How a sentence names `metric` (e.g. "top-1 loc. error")."""
    if metric in METRIC_PROSE:
        return METRIC_PROSE[metric]
    name, theta = _at_theta(metric)
    if theta is not None and name in METRIC_PROSE:
        return f"{METRIC_PROSE[name]} at θ = {theta:g}"
    return metric


def higher_is_better(metric: str) -> bool:
    """True for accuracies, MaxBoxAccV2 and PxAP; False for errors and wall time."""
    return metric in HIGHER_IS_BETTER or _at_theta(metric)[0] in HIGHER_IS_BETTER


def feature_block_label(block: int) -> str:
    """Table 2's name of the model with W_F after `block` and W_L after block 5: "CSoA-4-5"."""
    return f"CSoA-{int(block)}-5"


def row_label(level: str, value: Any) -> Any:
    """How a row of kind `level` ("method", "regime", "embedding", "feature_block", "theta")
    is named."""
    if level == "method":
        return methods.label(value)
    if level == "regime":
        return REGIME_LABELS.get(value, value)
    if level == "embedding":
        return EMBEDDING_LABELS.get(value, value)
    if level == "feature_block":
        return feature_block_label(value)
    return value


def prose_label(level: str, value: Any) -> str:
    """How a sentence names a row: like `row_label`, but "θ = 0.3" for a theta."""
    if level == "theta":
        return f"θ = {float(value):g}"
    return str(row_label(level, value))


def seed_list(seeds: Sequence[int]) -> str:
    """"seeds 0-4", "seed 3", "seeds 0-2, 5": which seeds, runs of consecutive ones joined."""
    values = sorted({int(s) for s in seeds})
    spans: list[list[int]] = []
    for value in values:
        if spans and value == spans[-1][1] + 1:
            spans[-1][1] = value
        else:
            spans.append([value, value])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
    return f"seed{'s' if len(values) != 1 else ''} {text}"


def ours_label(config: RunConfig, seeds: int | Sequence[int] | pd.DataFrame,
               regime: str | None = None) -> str:
    """E.g. "ours, preset cpu, synthetic benchmark, vgg_slim, 3 seeds" (+ ", from scratch").

    Args:
        config: any run of the table (preset, dataset and backbone are read from it).
        seeds: the number of seeds, the seeds themselves, or the runs frame
            (`results.runs_frame`), whose rows in `regime` may have different seed counts
            ("3-5 seeds").
        regime: "pretrained" or "scratch" to name the training regime, None to leave it out.
    """
    named: list[int] = []
    if isinstance(seeds, pd.DataFrame):
        runs = seeds if regime is None else seeds[seeds["regime"] == regime]
        per_row = runs.groupby("method")["seed"].nunique()
        low, high = (int(per_row.min()), int(per_row.max())) if len(per_row) else (0, 0)
        named = sorted({int(s) for s in runs["seed"].dropna()})
    elif isinstance(seeds, int):
        low = high = seeds
    else:
        named = sorted({int(s) for s in seeds})
        low = high = len(named)
    counts = f"{low}" if low == high else f"{low}-{high}"
    which = f" ({seed_list(named)})" if named and low == high else ""
    parts = [
        "ours",
        f"preset {config.preset}",
        DATASET_LABELS.get(config.dataset, config.dataset),
        BACKBONE_LABELS.get(config.backbone, config.backbone),
        f"{counts} seed" + ("" if high == 1 else "s") + which,
    ]
    if regime is not None:
        parts.append(REGIME_LABELS.get(regime, regime))
    return ", ".join(parts)


def paper_row_map(table: int | str) -> dict[str, str]:
    """The paper's row name -> our row name, for the rows of `table` that we re-run."""
    return {paper: methods.label(ours) for paper, ours in methods.paper_rows(table).items()}
