"""W_E from ImageNet beside ours (chapters 04-06): do CoAug's flaw and our fix of Eq. 10
survive an embedding network that never saw the benchmark?

The sweep "imagenet_we" (`csoa_nb.engine.sweeps.IMAGENET_WE`) trains Table 1's CoAug and CSoA
rows, both readings of Eq. 10, fine-tuned, with EfficientNet-Lite0's ImageNet features as W_E.
CAM has no W_E, so its runs are Table 1's. Each comparison is paired by seed (`stats.difference`)
and one table's comparisons are one family (Holm, `prose.as_family`), worded by
`stats.verdict_words` like every other verdict of the book.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from csoa_nb.engine.sweeps import IMAGENET_WE, IMAGENET_WE_ROWS
from csoa_nb.methods import label
from csoa_nb.report.abstract import run_theta
from csoa_nb.report.prose import Comparison, as_family, compare_runs
from csoa_nb.report.stats import signed
from csoa_nb.report.tables import ours_table
from csoa_nb.report.vocabulary import EMBEDDING_LABELS, column_label, metric_prose

#: The ImageNet W_E of the sweep, and ours (the pretraining stage's slim W_E).
IMAGENET = IMAGENET_WE["embedding"]
OURS = "slim"
#: The metrics compared: Choe et al.'s threshold-free two first, then the paper's error.
EMBEDDING_METRICS = ("max_box_acc_v2", "pxap", "top1_loc_err")
#: How a row's label names its W_E in a comparison.
_SHORT = {IMAGENET: "ImageNet W_E", OURS: "our W_E"}


def embedding_frame(table1: pd.DataFrame, imagenet: pd.DataFrame) -> pd.DataFrame:
    """One frame of runs (`results.runs_frame`'s columns): CAM and the rows of
    `IMAGENET_WE_ROWS` of Table 1 fine-tuned, W_F after block 4 (our W_E), and the runs of the
    "imagenet_we" sweep (`imagenet`), told apart by the column `embedding`."""
    ours = table1[(table1["regime"] == "pretrained") & (table1["feature_block"] == 4)
                  & table1["method"].isin(("cam", *IMAGENET_WE_ROWS))]
    if "cam" not in set(ours["method"]):
        raise ValueError("Table 1's frame has no fine-tuned CAM run to compare with")
    unexpected = set(imagenet["embedding"]) - {IMAGENET}
    if unexpected:
        raise ValueError(f"the ImageNet-W_E frame holds runs of W_E {sorted(unexpected)}; pass "
                         "the runs of the sweep 'imagenet_we'")
    return pd.concat([ours, imagenet], ignore_index=True)


def embedding_table(frame: pd.DataFrame,
                    metrics: tuple[str, ...] = EMBEDDING_METRICS) -> pd.DataFrame:
    """Mean ± std over seeds of `metrics`, a row per (method, W_E) of `embedding_frame`."""
    return ours_table(frame, metrics, rows=["method", "embedding"])


def embedding_comparisons(frame: pd.DataFrame, rows: tuple[str, ...] = IMAGENET_WE_ROWS,
                          metrics: tuple[str, ...] = EMBEDDING_METRICS) -> list[Comparison]:
    """For each of `rows` and `metrics`, two paired differences: the row with the ImageNet W_E
    − CAM, and the row with the ImageNet W_E − the same row with ours. All of them one family
    (Holm), in that order (row, metric, then the two)."""
    comparisons = []
    for row in rows:
        imagenet = (frame["method"] == row) & (frame["embedding"] == IMAGENET)
        for metric in metrics:
            against_cam = compare_runs(frame[imagenet | (frame["method"] == "cam")], row, "cam",
                                       metric)
            against_ours = compare_runs(frame[frame["method"] == row], IMAGENET, OURS, metric,
                                        by="embedding")
            comparisons += [
                replace(against_cam, label_a=f"{label(row)}, {_SHORT[IMAGENET]}"),
                replace(against_ours, label_a=f"{label(row)}, {_SHORT[IMAGENET]}",
                        label_b=f"{label(row)}, {_SHORT[OURS]}"),
            ]
    return as_family(comparisons)


def _interval(comparison: Comparison) -> str:
    """" [low, high]", or nothing where one seed gives no interval."""
    interval = comparison.diff.interval(1)
    return "" if interval == "n/a" else f" {interval}"


def _cell(comparison: Comparison) -> str:
    return f"{signed(comparison.difference)}{_interval(comparison)} {comparison.verdict}"


def embedding_verdicts(comparisons: list[Comparison]) -> pd.DataFrame:
    """`embedding_comparisons` as a table: a row per (method, metric), the difference in
    points, its 95 % interval and the verdict in the family, for each of the two."""
    rows = []
    for against_cam, against_ours in zip(comparisons[::2], comparisons[1::2], strict=True):
        rows.append({
            "Method": against_cam.label_a.removesuffix(f", {_SHORT[IMAGENET]}"),
            "Metric": column_label(against_cam.metric),
            "ImageNet W_E − CAM (points)": _cell(against_cam),
            "ImageNet W_E − our W_E (points)": _cell(against_ours),
        })
    return pd.DataFrame(rows)


def embedding_takeaway(frame: pd.DataFrame, rows: tuple[str, ...] = IMAGENET_WE_ROWS,
                       metric: str = "max_box_acc_v2") -> str:
    """One sentence per row of `rows` on `metric`: the row with the ImageNet W_E against CAM
    and against our W_E, with the numbers and words of `embedding_verdicts` (the family is the
    whole table's, whichever rows are said)."""
    chosen = {(c.label_a, c.label_b, c.metric): c for c in embedding_comparisons(frame)}
    where = f" at θ = {run_theta(frame):g}" if metric == "top1_loc_err" else ""
    said = []
    for row in rows:
        name = f"{label(row)}, {_SHORT[IMAGENET]}"
        cam = chosen[(name, label("cam"), metric)]
        ours = chosen[(name, f"{label(row)}, {_SHORT[OURS]}", metric)]
        said.append(f"{label(row)} with the ImageNet W_E − CAM: {_number(cam)}; − the same "
                    f"row with our W_E: {_number(ours)}.")
    family = len(chosen)
    return (f"With {EMBEDDING_LABELS[IMAGENET]} as W_E, {metric_prose(metric)}{where}, "
            f"fine-tuned (Holm over the {family} comparisons of {{numref}}`tbl-06-we-verdicts`): "
            + " ".join(said))


def _number(comparison: Comparison) -> str:
    return f"{signed(comparison.difference)} points{_interval(comparison)}, *{comparison.verdict}*"
