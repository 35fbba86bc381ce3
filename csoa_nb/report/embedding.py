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

from csoa_nb.engine.pretrain import STAGE_EMBEDDING
from csoa_nb.engine.sweeps import IMAGENET_WE, IMAGENET_WE_ROWS
from csoa_nb.methods import ROWS, label
from csoa_nb.report.abstract import run_theta
from csoa_nb.report.prose import Comparison, as_family, compare_runs
from csoa_nb.report.stats import difference_text, signed
from csoa_nb.report.tables import ours_table
from csoa_nb.report.vocabulary import EMBEDDING_LABELS, MISSING, column_label, metric_prose

#: The ImageNet W_E of the sweep, and ours (the pretraining stage's slim W_E).
IMAGENET = IMAGENET_WE["embedding"]
OURS = STAGE_EMBEDDING
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


#: The comparisons of one row with the ImageNet W_E: against CAM, against the same row with
#: our W_E, and (a row of our fix) against the same method as written, both with the ImageNet W_E.
AGAINST = ("cam", "our_w_e", "as_written")
_COLUMNS = {"cam": "ImageNet W_E − CAM (points)",
            "our_w_e": "ImageNet W_E − our W_E (points)",
            "as_written": "fix − as written, ImageNet W_E (points)"}


def _as_written(row: str) -> str | None:
    """The row of the same method as written, for a row of our fix (else None)."""
    method = ROWS[row].method.key
    return method if method != row else None


def embedding_comparisons(frame: pd.DataFrame, rows: tuple[str, ...] = IMAGENET_WE_ROWS,
                          metrics: tuple[str, ...] = EMBEDDING_METRICS
                          ) -> dict[tuple[str, str, str], Comparison]:
    """(row, metric, against) -> the paired difference of the row with the ImageNet W_E and
    what `against` names (`AGAINST`): CAM, the same row with our W_E, and for a row of our fix
    the same method as written with the ImageNet W_E. All of them one family (Holm)."""
    imagenet = frame[frame["embedding"] == IMAGENET]
    with_cam = pd.concat([imagenet, frame[frame["method"] == "cam"]])
    comparisons: dict[tuple[str, str, str], Comparison] = {}
    for row in rows:
        name = f"{label(row)}, {_SHORT[IMAGENET]}"
        written = _as_written(row)
        both_w_e = frame[frame["method"] == row]
        for metric in metrics:
            cam = compare_runs(with_cam, row, "cam", metric)
            comparisons[(row, metric, "cam")] = replace(cam, label_a=name)
            ours = compare_runs(both_w_e, IMAGENET, OURS, metric, by="embedding")
            comparisons[(row, metric, "our_w_e")] = replace(
                ours, label_a=name, label_b=f"{label(row)}, {_SHORT[OURS]}")
            if written is not None and written in set(imagenet["method"]):
                fix = compare_runs(imagenet, row, written, metric)
                comparisons[(row, metric, "as_written")] = replace(
                    fix, label_a=name, label_b=f"{label(written)}, {_SHORT[IMAGENET]}")
    judged = as_family(list(comparisons.values()))
    return dict(zip(comparisons, judged, strict=True))


def _interval(comparison: Comparison) -> str:
    """" [low, high]", or nothing where one seed gives no interval."""
    interval = comparison.diff.interval(1)
    return "" if interval == "n/a" else f" {interval}"


def _cell(comparison: Comparison | None) -> str:
    if comparison is None:
        return MISSING
    return f"{signed(comparison.difference)}{_interval(comparison)} {comparison.verdict}"


def embedding_verdicts(comparisons: dict[tuple[str, str, str], Comparison]) -> pd.DataFrame:
    """`embedding_comparisons` as a table: a row per (method, metric), a column per
    comparison (`AGAINST`): the difference in points, its 95 % interval and the verdict in the
    family ("–" where a row has no such comparison)."""
    keys = dict.fromkeys((row, metric) for row, metric, _ in comparisons)
    return pd.DataFrame([
        {"Method": label(row), "Metric": column_label(metric),
         **{_COLUMNS[against]: _cell(comparisons.get((row, metric, against)))
            for against in AGAINST}}
        for row, metric in keys])


def embedding_takeaway(frame: pd.DataFrame, rows: tuple[str, ...] = IMAGENET_WE_ROWS,
                       metric: str = "max_box_acc_v2", *, as_list: bool = False) -> str:
    """One sentence per row of `rows` on `metric`: the row with the ImageNet W_E against CAM,
    against our W_E and (our fix) against the method as written, with the numbers and words of
    `embedding_verdicts` (the family is the whole table's, whichever rows are said).
    `as_list`: the sentences as a Markdown list under the lead."""
    comparisons = embedding_comparisons(frame)
    where = f" at θ = {run_theta(frame):g}" if metric == "top1_loc_err" else ""
    said = []
    for row in rows:
        # the metric before the row: "<row> − CAM: <metric> <number>" is how the book states
        # Table 1's comparisons, which these are not
        parts = [f"{label(row)}, {metric_prose(metric)}{where}: with the ImageNet W_E − CAM: "
                 f"{_number(comparisons[(row, metric, 'cam')])}",
                 f"− the same row with our W_E: {_number(comparisons[(row, metric, 'our_w_e')])}"]
        written = comparisons.get((row, metric, "as_written"))
        if written is not None:
            parts.append(f"− {written.label_b}: {_number(written)}")
        said.append("; ".join(parts) + ".")
    lead = (f"With {EMBEDDING_LABELS[IMAGENET]} as W_E, {metric_prose(metric)}{where}, "
            f"fine-tuned (Holm over the {len(comparisons)} comparisons of "
            "{numref}`tbl-06-we-verdicts`):")
    if as_list:
        return lead + "\n\n" + "\n".join(f"- {sentence}" for sentence in said)
    return f"{lead} {' '.join(said)}"


def _number(comparison: Comparison) -> str:
    diff = comparison.diff
    return difference_text(comparison.difference, diff.low, diff.high, comparison.verdict)
