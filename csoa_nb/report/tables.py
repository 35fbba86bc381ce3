"""The table chapters' tables and figures: our runs, summarised and labelled, beside the paper's.

Chapters 06-12 turn a sweep of runs (`csoa_nb.engine.results.runs_frame`, one row per run) into the
tables of the paper (Tables 1-6) and a few more, always labelled with where the numbers come
from: the paper's (`csoa_nb.report.paper.paper_table`, e.g. "paper, CUB-200-2011, VGG16") or ours
(`ours_label`, e.g. "ours, preset cpu, synthetic benchmark, vgg_slim, 3 seeds").

Tables (pandas DataFrames):

- `ours_table(frame, metrics, rows=...)`: "mean ± std" strings over seeds, with the paper's
  column names ("Top-1 loc. err", ...) and row names ("CSoA", "CSoA-4-5", theta 0.3, ...);
  the numbers are in `.attrs["mean"]`, `.attrs["std"]` (same index and columns) and
  `.attrs["seeds"]` (runs per row). `ours_table1`, `ours_table2`, `theta_table` fix the
  arguments for Tables 1-3. (pandas cannot `pd.concat` frames whose attrs hold DataFrames:
  concatenate `formatted(table)` copies, or save each table on its own.)
- `side_by_side(paper_df, ours_df, ours_label)`: the paper's table and ours in one frame, either
  row-aligned with a "source" column level, or stacked with a "source" row level.
- `theta_frame(results, thetas)`: Eq. 13 errors of every run at several thetas, from the saved
  `@theta` metrics or, for other thetas, from the run's saved maps (no retraining).
- `ranking_table(frame, metrics)`: the rank of each method under each metric (1 = best).
- `formatted(paper_df)`: a table as display strings, the paper's empty cells as "–";
  `best_theta`, and for chapter 13 `settings_table` (the `paper` preset beside Sec. 4.1's
  words) and `cli_command` (the `python -m csoa_nb.engine.train` line of a config).

Sentences: `compare(frame, a, b, metric)` writes "The top-1 loc. error of CSoA is lower than
that of CAM (base) by ..." from the numbers, with a verdict against the seed spread, so that the
book's prose never states a result its runs did not produce; `table1_findings` strings several
together.

Figures (matplotlib `Figure`s, not registered with pyplot, so a notebook cell that ends with
one shows it once, without ``%matplotlib inline``: the first one enables the inline backend's
display where the kernel uses it, as the runbook and ipykernel set it): `plot_methods`,
`plot_theta`, `plot_paper_vs_ours`, `plot_ranks`. Each returns through
`csoa_nb.report.plots.fit_to_column` (the house style: at most the text column's width, no text
below 9 pt), and is laid out for that width: panels that would not fit side by side are stacked,
legends of many methods go below the axes.

Our metrics are percentages (errors: lower is better; MaxBoxAccV2, PxAP and the accuracies:
higher is better), as in `csoa_nb.metrics`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from csoa_nb import methods
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.results import mean_std, summarize
from csoa_nb.engine.runs import RunResult
from csoa_nb.report.stats import Difference, difference

#: The paper's four columns of Tables 1, 2, 4 and 5, in its order.
PAPER_METRICS = ("top1_loc_err", "top5_loc_err", "top1_cls_err", "top5_cls_err")
#: Table 1 as this book shows it: the paper's columns plus MaxBoxAccV2 (Choe et al., 2020).
TABLE1_METRICS = (*PAPER_METRICS, "max_box_acc_v2")
#: Thetas whose errors every run saves (`@0.2` ...), the paper's Table 3.
SAVED_THETAS = (0.2, 0.3, 0.4)
#: Metrics that `theta_frame` gives per theta.
THETA_METRICS = ("top1_loc_err", "top5_loc_err", "gt_known_loc_err", "top1_cls_err")

#: Column names: the paper's where it has the column, else a plain description.
METRIC_COLUMNS: dict[str, str] = {
    "top1_loc_err": "Top-1 loc. err",
    "top5_loc_err": "Top-5 loc. err",
    "top1_cls_err": "Top-1 cls. err",
    "top5_cls_err": "Top-5 cls. err",
    "gt_known_loc_err": "GT-known loc. err",
    "gt_known_loc_acc@iou30": "GT-known loc. acc, IoU 0.3",
    "gt_known_loc_acc@iou50": "GT-known loc. acc, IoU 0.5",
    "gt_known_loc_acc@iou70": "GT-known loc. acc, IoU 0.7",
    "max_box_acc_v2": "MaxBoxAccV2",
    "max_box_acc@30": "MaxBoxAcc, IoU 0.3",
    "max_box_acc@50": "MaxBoxAcc, IoU 0.5",
    "max_box_acc@70": "MaxBoxAcc, IoU 0.7",
    "pxap": "PxAP",
    "box_mass_ratio": "box mass ratio",
    "wall_time_s": "wall time (s)",
    "best_threshold@30": "best τ, IoU 0.3",
    "best_threshold@50": "best τ, IoU 0.5",
    "best_threshold@70": "best τ, IoU 0.7",
}
#: The same metrics as a sentence names them.
METRIC_PROSE: dict[str, str] = {
    "top1_loc_err": "top-1 loc. error",
    "top5_loc_err": "top-5 loc. error",
    "top1_cls_err": "top-1 cls. error",
    "top5_cls_err": "top-5 cls. error",
    "gt_known_loc_err": "GT-known loc. error",
    "gt_known_loc_acc@iou30": "GT-known loc. accuracy at IoU 0.3",
    "gt_known_loc_acc@iou50": "GT-known loc. accuracy at IoU 0.5",
    "gt_known_loc_acc@iou70": "GT-known loc. accuracy at IoU 0.7",
    "max_box_acc_v2": "MaxBoxAccV2",
    "max_box_acc@30": "MaxBoxAcc at IoU 0.3",
    "max_box_acc@50": "MaxBoxAcc at IoU 0.5",
    "max_box_acc@70": "MaxBoxAcc at IoU 0.7",
    "pxap": "PxAP",
    "box_mass_ratio": "box mass ratio",
    "wall_time_s": "wall time",
}
#: Metrics where a larger number is better (all others in METRIC_COLUMNS: smaller is better).
HIGHER_IS_BETTER = frozenset(
    {
        "gt_known_loc_acc@iou30",
        "gt_known_loc_acc@iou50",
        "gt_known_loc_acc@iou70",
        "max_box_acc_v2",
        "max_box_acc@30",
        "max_box_acc@50",
        "max_box_acc@70",
        "pxap",
        "box_mass_ratio",
    }
)
#: The two training regimes of `csoa_nb.engine.results.REGIMES`, for labels.
REGIME_LABELS = {"pretrained": "pretrained + fine-tuned", "scratch": "from scratch"}
REGIME_ORDER = ("pretrained", "scratch")
DATASET_LABELS = {
    "synthetic": "synthetic benchmark",
    "cub": "CUB-200-2011",
    "ilsvrc": "ILSVRC validation",
    "wsol-metadata": "wsolevaluation metadata",
}
BACKBONE_LABELS = {"vgg16": "VGG16", "inception_v3": "InceptionV3", "vgg_slim": "vgg_slim"}
#: The paper's index name for our row kinds (Table 3 is indexed by "Theta").
INDEX_NAMES = {"method": "Method", "feature_block": "Method", "theta": "Theta",
               "regime": "Regime"}
#: A colour per table row, the same in every figure (`csoa_nb.methods`).
METHOD_COLORS = {key: row.color for key, row in methods.ROWS.items()}
REGIME_COLORS = {"pretrained": "#1f77b4", "scratch": "#ff7f0e"}
#: The paper leaves a cell empty ("-") where a method did not report it.
MISSING = "–"


# ------------------------------------------------------------------------------------ labels
def column_label(metric: str) -> str:
    """The column name of `metric`; a theta-suffixed key gets "(theta 0.2)" appended."""
    if metric in METRIC_COLUMNS:
        return METRIC_COLUMNS[metric]
    base, sep, theta = metric.partition("@")
    if sep and base in METRIC_COLUMNS:
        return f"{METRIC_COLUMNS[base]} (θ {theta})"
    return metric


def metric_prose(metric: str) -> str:
    """How a sentence names `metric` (e.g. "top-1 loc. error")."""
    base, sep, theta = metric.partition("@")
    if metric in METRIC_PROSE:
        return METRIC_PROSE[metric]
    if sep and base in METRIC_PROSE:
        return f"{METRIC_PROSE[base]} at θ = {theta}"
    return metric


def higher_is_better(metric: str) -> bool:
    """True for accuracies, MaxBoxAccV2 and PxAP; False for errors and wall time."""
    return metric.partition("@")[0] in HIGHER_IS_BETTER or metric in HIGHER_IS_BETTER


def feature_block_label(block: int) -> str:
    """Table 2's name of the model with W_F after `block` and W_L after block 5: "CSoA-4-5"."""
    return f"CSoA-{int(block)}-5"


def row_label(level: str, value: Any) -> Any:
    """How a row of kind `level` ("method", "regime", "feature_block", "theta") is named."""
    if level == "method":
        return methods.label(value)
    if level == "regime":
        return REGIME_LABELS.get(value, value)
    if level == "feature_block":
        return feature_block_label(value)
    return value


def prose_label(level: str, value: Any) -> str:
    """How a sentence names a row: like `row_label`, but "θ = 0.3" for a theta."""
    if level == "theta":
        return f"θ = {float(value):g}"
    return str(row_label(level, value))


def ours_label(config: RunConfig, seeds: int | Sequence[int], regime: str | None = None) -> str:
    """E.g. "ours, preset cpu, synthetic benchmark, vgg_slim, 3 seeds" (+ ", from scratch").

    Args:
        config: any run of the table (preset, dataset and backbone are read from it).
        seeds: the number of seeds, or the seeds themselves.
        regime: "pretrained" or "scratch" to name the training regime, None to leave it out.
    """
    count = seeds if isinstance(seeds, int) else len(list(seeds))
    parts = [
        "ours",
        f"preset {config.preset}",
        DATASET_LABELS.get(config.dataset, config.dataset),
        BACKBONE_LABELS.get(config.backbone, config.backbone),
        f"{count} seed" + ("" if count == 1 else "s"),
    ]
    if regime is not None:
        parts.append(REGIME_LABELS.get(regime, regime))
    return ", ".join(parts)


def paper_row_map(table: int | str) -> dict[str, str]:
    """The paper's row name -> our row name, for the rows of `table` that we re-run."""
    return {paper: methods.label(ours) for paper, ours in methods.paper_rows(table).items()}


# ------------------------------------------------------------------------------ our tables
def select(frame: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows of `frame` whose columns equal the given values (a list/tuple: any of them).

    Raises ValueError naming the filter and the values present when nothing matches.
    """
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        if column not in frame.columns:
            raise ValueError(
                f"cannot filter on {column!r}: the frame has columns {list(frame.columns)}"
            )
        if isinstance(value, (list, tuple, set, frozenset)):
            mask &= frame[column].isin(list(value))
        else:
            mask &= frame[column] == value
    selected = frame[mask]
    if selected.empty:
        present = {c: sorted(frame[c].unique().tolist(), key=str) for c in where}
        raise ValueError(f"no run matches {where}; the frame has {present}")
    return selected


def _check_metrics(frame: pd.DataFrame, metrics: Sequence[str]) -> None:
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        known = sorted(c for c in frame.columns if c not in ("hash",))
        raise ValueError(f"metrics {missing} are not columns of the frame; it has {known}")


def _order_key(level: str, value: Any) -> tuple[int, Any]:
    if level == "method" and value in methods.ROWS:
        return (list(methods.ROWS).index(value), "")
    if level == "regime" and value in REGIME_ORDER:
        return (REGIME_ORDER.index(value), "")
    return (len(methods.ROWS), value)


def _ordered_keys(index: pd.Index, levels: list[str]) -> list[Any]:
    keys = list(index)
    if len(levels) == 1:
        return sorted(keys, key=lambda k: _order_key(levels[0], k))
    return sorted(keys, key=lambda k: tuple(_order_key(lv, v) for lv, v in zip(levels, k,
                                                                               strict=True)))


def _relabel_index(index: pd.Index, levels: list[str]) -> pd.Index:
    if len(levels) == 1:
        labels = [row_label(levels[0], k) for k in index]
        return pd.Index(labels, name=INDEX_NAMES.get(levels[0], levels[0]))
    tuples = [tuple(row_label(lv, v) for lv, v in zip(levels, k, strict=True)) for k in index]
    return pd.MultiIndex.from_tuples(tuples, names=[INDEX_NAMES.get(lv, lv) for lv in levels])


def ours_table(
    frame: pd.DataFrame,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    rows: str | Sequence[str] = "method",
    digits: int = 2,
    **where: Any,
) -> pd.DataFrame:
    """Mean ± std over seeds of `metrics`, one row per value of `rows`, labelled like the paper.

    Args:
        frame: one row per run (`csoa_nb.engine.results.runs_frame`, or `theta_frame`).
        metrics: metric columns of `frame` (e.g. `PAPER_METRICS`); columns are renamed with
            `column_label` ("Top-1 loc. err").
        rows: the column(s) that name a row: "method" (rows "CAM (base)", ..., "CSoA" in
            Table 1's order), "feature_block" ("CSoA-3-5", ...), "theta", "regime", or a list.
        digits: decimals of the strings.
        **where: filters applied first, e.g. `regime="pretrained"` (see `select`).

    Returns:
        A DataFrame of "mean ± std" strings (just "mean" for a single seed), with the numbers
        in `.attrs["mean"]` and `.attrs["std"]` (sample std, ddof 1; 0 for one seed; same index
        and columns), the runs per row in `.attrs["seeds"]` and the metric keys in
        `.attrs["metrics"]`.

    Raises:
        ValueError: a filter matches nothing, a metric is missing, or a row repeats a seed
            (runs of different settings mixed in one row: filter them apart).
    """
    levels = [rows] if isinstance(rows, str) else list(rows)
    metrics = list(metrics)
    selected = select(frame, **where) if where else frame
    _check_metrics(selected, metrics)
    if "seed" in selected.columns:
        repeated = selected[selected.duplicated([*levels, "seed"], keep=False)]
        if not repeated.empty:
            raise ValueError(
                f"rows {levels} repeat a seed in {len(repeated)} runs (e.g. "
                f"{repeated.iloc[0][levels].to_dict()}): runs of different settings would be "
                "averaged together; filter the frame first (e.g. feature_block=4, "
                "regime='pretrained')"
            )
    summary = summarize(selected, levels, metrics, digits=digits)
    order = _ordered_keys(summary.index, levels)
    columns = {m: column_label(m) for m in metrics}
    seeds = summary["seeds"].reindex(order)
    mean = summary.attrs["mean"].reindex(order).rename(columns=columns)
    std = summary.attrs["std"].reindex(order).rename(columns=columns)
    table = summary[metrics].reindex(order).rename(columns=columns)
    index = _relabel_index(table.index, levels)
    for part in (table, mean, std, seeds):
        part.index = index
    table.columns.name = None
    table.attrs = {"mean": mean, "std": std, "seeds": seeds, "metrics": metrics}
    return table


def ours_table1(
    frame: pd.DataFrame, regime: str = "pretrained", metrics: Sequence[str] = TABLE1_METRICS
) -> pd.DataFrame:
    """Table 1, ours: one row per method (the four of the paper and the two-head ablation)."""
    return ours_table(frame, metrics, rows="method", regime=regime)


def ours_table2(
    frame: pd.DataFrame, metrics: Sequence[str] = PAPER_METRICS, method: str = "csoa"
) -> pd.DataFrame:
    """Table 2, ours: CSoA (`method="csoa_fix"`: with our Eq. 10 fix) with W_F after block 3,
    4 or 5 ("CSoA-3-5" ...)."""
    return ours_table(frame, metrics, rows="feature_block", method=method)


def numeric(table: pd.DataFrame, which: str = "mean") -> pd.DataFrame:
    """The numbers behind an `ours_table` ("mean" or "std")."""
    if which not in ("mean", "std"):
        raise ValueError(f"which must be 'mean' or 'std', got {which!r}")
    if which not in table.attrs:
        raise ValueError("this table has no numbers in .attrs: make it with ours_table()")
    return table.attrs[which]


# --------------------------------------------------------------------------- side by side
def _decimals(value: float) -> int:
    """Decimals of the shortest repr of `value`, at least 1 (the paper prints none fewer)."""
    text = repr(float(value))
    return 1 if "e" in text else max(1, len(text.partition(".")[2].rstrip("0")))


def formatted(frame: pd.DataFrame, digits: int | None = None) -> pd.DataFrame:
    """A table as display strings, missing cells as the paper's "–".

    Numbers get `digits` decimals; with None, each column gets as many as its most precise
    number, which reprints the paper's tables as printed ("35.0" in a column of 35.0, 25.4;
    "33.80" in a column of 45.01, 33.8).
    """

    def number(value: Any) -> bool:
        return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)

    def missing(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    columns = {}
    for column in frame.columns:
        values = list(frame[column])
        places = digits
        if places is None:
            places = max((_decimals(v) for v in values if number(v) and not missing(v)),
                         default=0)
        columns[column] = [
            MISSING if missing(v) else f"{float(v):.{places}f}" if number(v) else str(v)
            for v in values
        ]
    out = pd.DataFrame(columns, index=frame.index)
    out.columns = frame.columns
    out.attrs = {}
    return out


def side_by_side(
    paper_df: pd.DataFrame,
    ours_df: pd.DataFrame,
    ours_label: str,
    *,
    row_map: Mapping[Any, Any] | None = None,
    stacked: bool = False,
    digits: int | None = None,
) -> pd.DataFrame:
    """The paper's table and ours in one DataFrame, each labelled with its source.

    Args:
        paper_df: `csoa_nb.report.paper.paper_table(n)` (its `.attrs["label"]` names the source).
        ours_df: an `ours_table` (strings) or any frame of ours with the same kind of columns.
        ours_label: e.g. `ours_label(config, 3)`.
        row_map: the paper's row name -> our row name, for rows that stand for each other
            (`paper_row_map(1)`); rows with equal names are matched without it.
        stacked: False: one row per (matched) row, columns `(source, column)` and, when
            `row_map` renames rows, a "paper row" column holding the paper's name. True: the
            two tables one above the other, rows `(source, row)`, for tables whose rows do not
            correspond (Tables 4 and 6).
        digits: decimals of the paper's numbers; None keeps them as printed in the paper
            (ours are already strings from `ours_table`).

    Returns:
        Strings (the paper's empty cells as "–"; a row or column one side lacks: "").
    """
    paper_label = paper_df.attrs.get("label", "paper")
    paper = formatted(paper_df, digits)
    ours = formatted(ours_df, 2 if digits is None else digits)
    if stacked:
        name = paper_df.index.name if paper_df.index.name == ours_df.index.name else "row"
        paper.index.name = ours.index.name = name
        out = pd.concat([paper, ours], keys=[paper_label, ours_label], names=["source", name])
        return out.fillna("")
    row_map = dict(row_map or {})
    renamed = [row_map.get(k, k) for k in paper.index]
    if row_map:
        paper.insert(0, "paper row", [str(k) for k in paper.index])
    paper.index = pd.Index(renamed, name=ours_df.index.name or paper_df.index.name)
    ours.index.name = paper.index.name
    order = list(paper.index) + [k for k in ours.index if k not in set(paper.index)]
    paper = paper.reindex(order)
    ours = ours.reindex(order)
    out = pd.concat([paper, ours], axis=1, keys=[paper_label, ours_label], names=["source", None])
    return out.fillna("")


# ------------------------------------------------------------------------------- thetas
def theta_key(metric: str, theta: float) -> str:
    """The metrics key of `metric` at `theta`, e.g. "top1_loc_err@0.2"."""
    return f"{metric}@{theta:g}"


def theta_frame(
    results: Iterable[RunResult],
    thetas: Sequence[float] = SAVED_THETAS,
    metrics: Sequence[str] = THETA_METRICS,
) -> pd.DataFrame:
    """Eq. 13 errors of every run at every theta: one row per (run, theta).

    A theta the run saved (`top1_loc_err@0.3` ... in its metrics) is read; the others are
    computed from the run's saved ground-truth-class CAMs (`eval_maps.pt`), all in one pass per
    run, as `csoa_nb.engine.evaluate.reevaluate` does but without MaxBoxAccV2 and PxAP, which do not
    depend on theta. Nothing is retrained.

    Columns: method, regime, feature_block, seed, hash, theta and `metrics`.
    """
    from csoa_nb.engine.evaluate import score_maps
    from csoa_nb.engine.results import regime_of

    thetas = [float(t) for t in thetas]
    if not thetas:
        raise ValueError("thetas is empty: pass at least one theta in (0, 1)")
    for theta in thetas:
        if not 0.0 < theta < 1.0:
            raise ValueError(f"theta must lie in (0, 1) (Eq. 13), got {theta}")
    rows = []
    for result in results:
        scores = dict(result.metrics)
        missing = [t for t in thetas if any(theta_key(m, t) not in scores for m in metrics)]
        if missing:
            scores.update(score_maps(result.eval_maps(), result.config, thetas=tuple(missing),
                                     full=False))
        config = result.config
        for theta in thetas:
            rows.append(
                {
                    "method": methods.row_key(config),
                    "regime": regime_of(config),
                    "feature_block": config.feature_block,
                    "seed": config.seed,
                    "hash": config.hash,
                    "theta": theta,
                    **{m: float(scores[theta_key(m, theta)]) for m in metrics},
                }
            )
    return pd.DataFrame(rows)


def theta_table(
    thetas: pd.DataFrame,
    *,
    method: str = "csoa",
    regime: str = "pretrained",
    metrics: Sequence[str] = ("top1_loc_err", "top5_loc_err"),
    theta: Sequence[float] | None = SAVED_THETAS,
) -> pd.DataFrame:
    """Table 3, ours: one row per theta (index "Theta") for one method and regime."""
    where: dict[str, Any] = {"method": method, "regime": regime}
    if theta is not None:
        where["theta"] = [float(t) for t in theta]
    return ours_table(thetas, metrics, rows="theta", **where)


def best_theta(thetas: pd.DataFrame, metric: str = "top1_loc_err") -> pd.DataFrame:
    """Per method and regime: the theta with the best mean `metric`, and that mean."""
    mean = thetas.groupby(["regime", "method", "theta"], sort=False)[metric].mean()
    rows = []
    for (regime, method), curve in mean.groupby(level=[0, 1], sort=False):
        values = curve.droplevel([0, 1])
        best = values.idxmax() if higher_is_better(metric) else values.idxmin()
        rows.append({"regime": regime, "method": method, "best theta": float(best),
                     column_label(metric): float(values[best])})
    rows.sort(key=lambda r: (_order_key("regime", r["regime"]),
                             _order_key("method", r["method"])))
    out = pd.DataFrame(rows)
    out["regime"] = out["regime"].map(lambda r: row_label("regime", r))
    out["method"] = out["method"].map(lambda m: row_label("method", m))
    return out.rename(columns={"regime": "Regime", "method": "Method"}).set_index(
        ["Regime", "Method"])


# ------------------------------------------------------------------------------ rankings
def ranking_table(
    frame: pd.DataFrame,
    metrics: Sequence[str],
    *,
    rows: str = "method",
    **where: Any,
) -> pd.DataFrame:
    """The rank (1 = best) of each row's mean under each metric; ties share the better rank.

    Errors rank ascending, accuracies / MaxBoxAccV2 / PxAP descending (`higher_is_better`).
    Ranks use the means only; `.attrs["mean"]` holds them so the reader can see the gaps.
    """
    table = ours_table(frame, metrics, rows=rows, **where)
    mean = numeric(table)
    ranks = pd.DataFrame(index=mean.index)
    for metric, column in zip(metrics, mean.columns, strict=True):
        ranks[column] = (
            mean[column].rank(ascending=not higher_is_better(metric), method="min").astype(int)
        )
    ranks.attrs = {"mean": mean, "metrics": list(metrics)}
    return ranks


def ranking_summary(ranks: pd.DataFrame, reference: str | None = None) -> str:
    """A sentence per column of `ranks`: does its ordering agree with the `reference` column's?

    `reference` defaults to the first column (e.g. "Top-1 loc. err").
    """
    reference = reference or str(ranks.columns[0])
    if reference not in ranks.columns:
        raise ValueError(f"{reference!r} is not a column of the ranking: {list(ranks.columns)}")
    base = ranks[reference]
    order = ", ".join(str(k) for k in base.sort_values(kind="stable").index)
    lines = [f"By {reference}, best first: {order}."]
    for column in ranks.columns:
        if column == reference:
            continue
        moved = [f"{k} {base[k]} → {ranks[column][k]}" for k in ranks.index
                 if ranks[column][k] != base[k]]
        if moved:
            lines.append(f"By {column} the ranking changes: {'; '.join(moved)}.")
        else:
            lines.append(f"By {column} the ranking is the same.")
    return " ".join(lines)


# ---------------------------------------------------------------------------- sentences
@dataclass(frozen=True)
class Comparison:
    """Mean ± std of one metric for two rows of a sweep, and the 95 % confidence interval of
    their difference (`csoa_nb.report.stats.difference`: paired by seed where the seeds match).

    `shown` is True when the interval of mean_a - mean_b excludes 0, False when it contains
    it, None with a single seed (no interval).
    """

    metric: str
    label_a: str
    label_b: str
    mean_a: float
    std_a: float
    n_a: int
    mean_b: float
    std_b: float
    n_b: int
    diff: Difference

    @property
    def difference(self) -> float:
        """mean_a - mean_b, in the metric's unit (percentage points)."""
        return self.mean_a - self.mean_b

    @property
    def a_is_better(self) -> bool:
        if higher_is_better(self.metric):
            return self.difference > 0
        return self.difference < 0

    @property
    def shown(self) -> bool | None:
        return self.diff.shown

    @property
    def a_better_shown(self) -> bool:
        """True only when a is better and the 95 % interval of the difference excludes 0."""
        return bool(self.a_is_better and self.shown)

    @property
    def verdict(self) -> str:
        """"better" / "worse" (interval excludes 0), "no difference shown", or "one seed"."""
        if self.shown is None:
            return "one seed"
        if not self.shown:
            return "no difference shown"
        return "better" if self.a_is_better else "worse"

    def sentence(self, digits: int = 2) -> str:
        name = metric_prose(self.metric)
        unit = "" if self.metric in ("box_mass_ratio", "wall_time_s") else " points"
        if self.metric == "wall_time_s":
            unit = " s"
        d = abs(self.difference)
        if round(d, digits) == 0:
            head = f"The {name} of {self.label_a} equals that of {self.label_b}"
        else:
            relation = "higher" if self.difference > 0 else "lower"
            quality = "better" if self.a_is_better else "worse"
            head = (f"The {name} of {self.label_a} is {relation} ({quality}) than that of "
                    f"{self.label_b} by {d:.{digits}f}{unit}")
        detail = (f"{self.label_a} {mean_std(self.mean_a, self.std_a, self.n_a, digits)}, "
                  f"{self.label_b} {mean_std(self.mean_b, self.std_b, self.n_b, digits)}")
        if self.shown is None:
            verdict = ("a single seed, so there is no confidence interval and no difference can "
                       "be told apart from noise")
        else:
            interval = f"{self.diff.interval(digits)}{unit} ({self.diff.how()})"
            verdict = (f"the difference is shown, its 95 % CI is {interval}" if self.shown else
                       f"these runs do not show a difference, its 95 % CI {interval} "
                       "contains 0")
        return f"{head} ({detail}): {verdict}."

    def __str__(self) -> str:
        return self.sentence()


def compare_runs(
    frame: pd.DataFrame, a: Any, b: Any, metric: str, *, by: str = "method", **where: Any
) -> Comparison:
    """Compare rows `a` and `b` (values of column `by`, e.g. "csoa" and "cam") on `metric`.

    `**where` filters first, e.g. `regime="pretrained"`. Std is the sample std over seeds; the
    interval pairs the runs by their `seed` column where both rows have the same seeds.
    """
    selected = select(frame, **where) if where else frame
    _check_metrics(selected, [metric])
    stats, series = {}, {}
    for key in (a, b):
        rows = selected.loc[selected[by] == key]
        if rows.empty:
            raise ValueError(
                f"no run with {by} = {key!r}{' and ' + str(where) if where else ''}; "
                f"present: {sorted(selected[by].unique().tolist(), key=str)}"
            )
        values = rows[metric].astype(float)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        stats[key] = (float(values.mean()), std, len(values))
        index = rows["seed"] if "seed" in rows and rows["seed"].is_unique else range(len(rows))
        series[key] = pd.Series(values.to_numpy(), index=list(index))
    (ma, sa, na), (mb, sb, nb) = stats[a], stats[b]
    diff = difference(series[a], series[b])
    return Comparison(metric, prose_label(by, a), prose_label(by, b), ma, sa, na, mb, sb, nb,
                      diff)


def compare(frame: pd.DataFrame, a: Any, b: Any, metric: str, *, by: str = "method",
            **where: Any) -> str:
    """E.g. "The top-1 loc. error of CSoA is lower (better) than that of CAM (base) by 3.10
    points (CSoA 40.20 ± 1.00, CAM (base) 43.30 ± 1.20): the difference is shown, its 95 % CI
    is [-4.10, -2.10] points (paired t over 3 seeds)."."""
    return compare_runs(frame, a, b, metric, by=by, **where).sentence()


def ordering(frame: pd.DataFrame, metric: str, *, by: str = "method", digits: int = 2,
             **where: Any) -> str:
    """The rows ordered by mean `metric`, best first: "CSoA 40.20, ConfSeg 41.00, ..."."""
    mean = numeric(ours_table(frame, [metric], rows=by, **where)).iloc[:, 0]
    mean = mean.sort_values(ascending=not higher_is_better(metric), kind="stable")
    return ", ".join(f"{k} {v:.{digits}f}" for k, v in mean.items())


def table1_findings(
    frame: pd.DataFrame, regime: str = "pretrained", metric: str = "top1_loc_err"
) -> str:
    """What Table 1's runs of one regime show, as Markdown bullets written from the numbers.

    CSoA against the base CAM first; then each module against what it adds to, so that a
    missing gain can be traced: the two-head union without the inner loss against CAM (the
    union of Eq. 13 alone), ConfSeg against that (the inner loss of Eq. 5), CoAug against CAM
    (Eq. 12) and CSoA against ConfSeg (CoAug on top of ConfSeg); then the same for our reading
    of Eq. 10 (the "_fix" rows) where the frame has them. Each verdict is the 95 % interval of
    the paired difference (`Comparison`).
    """
    selected = select(frame, regime=regime)
    present = set(selected["method"])
    pairs = [("csoa", "cam"), ("twohead", "cam"), ("confseg", "twohead"), ("confseg", "cam"),
             ("coaug", "cam"), ("csoa", "confseg"), ("coaug_fix", "cam"),
             ("coaug_fix", "coaug"), ("csoa_fix", "cam"), ("csoa_fix", "coaug_fix")]
    lines = [f"- Best first by {metric_prose(metric)}: {ordering(selected, metric)}."]
    for a, b in pairs:
        if a in present and b in present:
            lines.append("- " + compare(selected, a, b, metric))
    for key in ("csoa", "csoa_fix"):
        if {key, "cam"} <= present:
            main = compare_runs(selected, key, "cam", metric)
            label = prose_label("method", key)
            if main.a_better_shown:
                lines.append(f"- {label} beats the base CAM in these runs (95 % interval of the "
                             "difference excludes 0).")
            else:
                lines.append(
                    f"- **{label} does not beat the base CAM in these runs**"
                    + (" (a single seed cannot show it)." if main.shown is None else
                       " (the 95 % interval of the difference does not show it).")
                    + " The comparisons above show which step fails to add a gain."
                )
    return "\n".join(lines)


# -------------------------------------------------------------------------------- figures
#: Width of the book's text column in inches (`csoa_nb.report.plots.COLUMN_WIDTH_IN`, which is not
#: imported here: `csoa_nb.report.plots` pulls in pyplot and the widgets).
COLUMN_WIDTH_IN = 6.9
#: Width one category of a panel's x axis needs (a tick label wrapped to `_TICK_CHARS`
#: characters at 9 pt), and the room of the y axis' label and ticks, in inches.
_INCH_PER_KEY = 0.75
_Y_AXIS_IN = 1.0
_TICK_CHARS = 11


def _figure(
    panels: int, width: float = 4.6, height: float = 3.4, columns: int | None = None,
    sharex: bool = False,
) -> tuple[Figure, list[Any]]:
    """A constrained-layout figure of ``panels`` axes of ``width`` x ``height`` inches, at
    most ``columns`` to a row (default: all in one row)."""
    columns = panels if columns is None else max(1, min(panels, columns))
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False, sharex=sharex)
    axes = list(grid.flat)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _to_column(fig: Figure) -> Figure:
    """`csoa_nb.report.plots.fit_to_column`: the house style's width, fonts and dpi (imported here,
    not at the top, so that importing this module does not import pyplot); and a kernel that
    can show the figure (`_enable_inline_display`)."""
    from csoa_nb.report.plots import fit_to_column

    _enable_inline_display()
    return fit_to_column(fig, width=COLUMN_WIDTH_IN)


def _enable_inline_display() -> None:
    """Let an IPython kernel show the figures of this module, which pyplot does not manage.

    IPython draws a bare `Figure` as a PNG once the inline backend has registered its
    formatters, which it does when its module is imported; matplotlib imports the backend only
    for the first pyplot figure, so a notebook that draws nothing but these figures would show
    "<Figure size ...>" without ``%matplotlib inline``. Importing the module does nothing
    outside IPython, or when the kernel's backend (``MPLBACKEND``) is another one.
    """
    try:
        import matplotlib_inline.backend_inline  # noqa: F401  (registers on import)
    except ImportError:  # no IPython kernel packages: nothing to show figures in
        pass


def _wrap(text: Any, width: int) -> str:
    """`text` on lines of at most `width` characters; "Eq. 10" is never split."""
    text = str(text).replace("Eq. ", "Eq.\u00a0")
    return textwrap.fill(text, width=width, break_long_words=False, break_on_hyphens=False)


def _axis_label(metric: str) -> str:
    unit = "" if metric in ("box_mass_ratio", "wall_time_s") else " (%)"
    better = "higher" if higher_is_better(metric) else "lower"
    return f"{column_label(metric)}{unit}, {better} is better"


def plot_methods(
    frame: pd.DataFrame,
    metric: str | Sequence[str],
    *,
    rows: str = "method",
    hue: str | None = "regime",
    title: str | None = None,
    **where: Any,
) -> Figure:
    """Mean ± std (error bars) of `metric` per row, one panel per metric; dots are the seeds.

    `rows`: the x axis ("method" or "feature_block"); `hue`: a column whose values get their
    own colour and offset (default the regime; "method": the methods' colours), or None.
    Panels sit side by side while they fit the text column, else one below the other,
    sharing the x axis.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    selected = select(frame, **where) if where else frame
    _check_metrics(selected, metrics)
    keys = sorted(selected[rows].unique(), key=lambda k: _order_key(rows, k))
    hues = [None] if hue is None else sorted(selected[hue].unique(),
                                             key=lambda k: _order_key(hue, k))
    panel = _INCH_PER_KEY * len(keys) + _Y_AXIS_IN
    columns = max(1, int(COLUMN_WIDTH_IN // panel))
    stacked = columns < len(metrics)
    fig, axes = _figure(len(metrics), width=max(COLUMN_WIDTH_IN / min(columns, len(metrics)),
                                                panel),
                        height=2.3 if stacked else 3.4, columns=columns, sharex=stacked)
    if stacked:  # room for the tick labels under the last row
        fig.set_size_inches(fig.get_size_inches() + np.array([0.0, 0.6]))
    width = 0.7 / len(hues)
    for ax, name in zip(axes, metrics, strict=True):
        for h, hue_value in enumerate(hues):
            part = selected if hue is None else selected[selected[hue] == hue_value]
            offset = (h - (len(hues) - 1) / 2) * width
            palette = {"regime": REGIME_COLORS, "method": METHOD_COLORS}.get(hue or "", {})
            color = palette.get(hue_value, f"C{h}")
            for x, key in enumerate(keys):
                values = part.loc[part[rows] == key, name].astype(float).to_numpy()
                if values.size == 0:
                    continue
                std = values.std(ddof=1) if values.size > 1 else 0.0
                ax.errorbar(x + offset, values.mean(), yerr=std, fmt="o", color=color,
                            capsize=4, markersize=7,
                            label=None if x else (row_label(hue, hue_value) if hue else None))
                ax.scatter(np.full(values.size, x + offset + width * 0.25), values, s=12,
                           color=color, alpha=0.5, linewidths=0)
        ax.set_xticks(range(len(keys)), [_wrap(row_label(rows, k), _TICK_CHARS)
                                         for k in keys])
        ax.set_ylabel(_wrap(_axis_label(name), 30 if stacked else 40))
        ax.grid(axis="y", alpha=0.3)
        if hue is not None and len(hues) > 1:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(_wrap(title, 80), fontsize="medium")
    return _to_column(fig)


def plot_theta(
    thetas: pd.DataFrame,
    metric: str = "top1_loc_err",
    *,
    hue: str = "method",
    paper: pd.DataFrame | None = None,
    paper_column: str = "Top-1 loc. err",
    marked: float | None = None,
    title: str | None = None,
    **where: Any,
) -> Figure:
    """`metric` against theta (Eq. 13), one line per `hue` value (mean, band = ± std).

    `paper`: the paper's Table 3 (`paper_table(3)`), drawn in its own left panel with its
    label (a different data set: the two are not drawn on one axis). `marked`: a theta to
    mark with a vertical line (e.g. the default 0.3).
    """
    selected = select(thetas, **where) if where else thetas
    _check_metrics(selected, [metric])
    panels = 2 if paper is not None else 1
    keys = selected[hue].nunique()
    fig, axes = _figure(panels, width=COLUMN_WIDTH_IN / panels,
                        height=3.4 + 0.22 * math.ceil(keys / 2))
    if paper is not None:
        ax = axes[0]
        ax.plot(paper.index.astype(float), paper[paper_column].astype(float), "o-", color="k")
        ax.set_title(_wrap(paper.attrs.get("label", "paper"), 30), fontsize="medium")
        ax.set_xlabel("θ")
        ax.set_ylabel(f"{paper_column} (%)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    keys = sorted(selected[hue].unique(), key=lambda k: _order_key(hue, k))
    for i, key in enumerate(keys):
        curve = selected[selected[hue] == key].groupby("theta")[metric]
        mean, std = curve.mean(), curve.std(ddof=1).fillna(0.0)
        color = METHOD_COLORS.get(key, f"C{i}") if hue == "method" else f"C{i}"
        ax.plot(mean.index, mean.to_numpy(), "o-", color=color, markersize=4,
                label=str(row_label(hue, key)))
        ax.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(),
                        color=color, alpha=0.15, linewidth=0)
    if marked is not None:
        ax.axvline(marked, color="k", linestyle=":", linewidth=1)
    ax.set_xlabel("θ")
    ax.set_ylabel(_wrap(_axis_label(metric), 30))
    ax.grid(alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize="small", loc="outside lower center",
               ncols=2)
    if title:
        ax.set_title(_wrap(title, 40), fontsize="medium")
    return _to_column(fig)


def plot_paper_vs_ours(
    paper_df: pd.DataFrame,
    ours_df: pd.DataFrame | None,
    column: str,
    *,
    ours_label: str = "",
    highlight: Sequence[str] = (),
) -> Figure:
    """The paper's `column` (left) and ours (right, ± std), horizontal bars, one panel each.

    The panels have their own axes: the numbers come from different data sets and networks,
    so only the orderings inside each panel compare. `ours_df=None` draws the paper's panel
    alone (a table we do not re-run). `highlight`: paper rows drawn darker (e.g. CSoA's).
    """
    if column not in paper_df.columns or (ours_df is not None and column not in ours_df.columns):
        raise ValueError(
            f"column {column!r} must be in both tables: paper has {list(paper_df.columns)}, "
            f"ours has {[] if ours_df is None else list(ours_df.columns)}"
        )
    paper = paper_df[column].astype(float)
    slots = len(paper) if ours_df is None else max(len(paper), len(ours_df))
    fig = Figure(figsize=(5.5 if ours_df is None else 11, 1.2 + 0.32 * slots),
                 layout="constrained")
    axes = list(fig.subplots(1, 1 if ours_df is None else 2, squeeze=False)[0])
    ax_p = axes[0]
    names = [str(k) for k in paper.index]
    colors = ["#333333" if k in highlight else "#9e9e9e" for k in names]
    ax_p.barh(range(len(paper)), paper.fillna(0).to_numpy(), color=colors)
    ax_p.set_yticks(range(len(paper)), names)
    for y, value in enumerate(paper):
        if math.isnan(value):
            ax_p.text(0, y, f" {MISSING} (not reported)", va="center", fontsize="small")
    ax_p.set_title(_wrap(paper_df.attrs.get("label", "paper"), 40), fontsize="medium")
    if ours_df is not None:
        mean = numeric(ours_df)[column].astype(float)
        std = numeric(ours_df, "std")[column].astype(float)
        ax_o = axes[1]
        ax_o.barh(range(len(mean)), mean.to_numpy(), xerr=std.to_numpy(), capsize=3,
                  color=[METHOD_COLORS.get(_method_of(k), "#1f77b4") for k in mean.index])
        ax_o.set_yticks(range(len(mean)), [_wrap(k, 18) for k in mean.index])
        ax_o.set_title(_wrap(ours_label, 40), fontsize="medium")
    for ax in axes:
        ax.set_ylim(slots - 0.5, -0.5)  # one slot per row in both panels, first row on top
        ax.set_xlabel(f"{column} (%)")
        ax.grid(axis="x", alpha=0.3)
    return _to_column(fig)


def _method_of(label: Any) -> str | None:
    for key, name in ((k, row.label) for k, row in methods.ROWS.items()):
        if name == label:
            return key
    return None


def plot_ranks(ranks: pd.DataFrame, title: str | None = None) -> Figure:
    """Each row's rank (1 = best, at the top) under each metric of a `ranking_table`."""
    fig, (ax,) = _figure(1, width=COLUMN_WIDTH_IN, height=3.4 + 0.22 * math.ceil(len(ranks) / 2))
    x = np.arange(len(ranks.columns))
    for i, (name, values) in enumerate(ranks.iterrows()):
        color = METHOD_COLORS.get(_method_of(name), f"C{i}")
        jitter = (i - (len(ranks) - 1) / 2) * 0.04
        ax.plot(x, values.to_numpy() + jitter, "o-", color=color, label=str(name), linewidth=2)
    ax.set_xticks(x, [_wrap(c, 14) for c in ranks.columns])
    ax.set_yticks(range(1, len(ranks) + 1))
    ax.set_ylim(len(ranks) + 0.5, 0.5)
    ax.set_ylabel("rank (1 = best)")
    fig.legend(*ax.get_legend_handles_labels(), fontsize="small", loc="outside lower center",
               ncols=2)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(_wrap(title, 70), fontsize="medium")
    return _to_column(fig)


# ----------------------------------------------------------------- the paper preset (ch. 13)
def cli_command(config: RunConfig) -> str:
    """The `python -m csoa_nb.engine.train` line that trains `config`: its preset and method, plus a
    `--set` for every field that differs from the plain preset (device, data_root included).
    """
    base = RunConfig.preset(config.preset)
    parts = [
        "python -m csoa_nb.engine.train", f"--preset {config.preset}", f"--method {config.method}"
    ]
    if config.seed != base.seed:
        parts.append(f"--seed {config.seed}")
    for key, value in config.to_dict().items():
        if key in ("preset", "method", "seed", "results_dirs") or value == getattr(base, key):
            continue
        parts.append(f"--set {key}={value}")
    return " ".join(parts)



#: Section 4.1's words beside the `paper` preset's fields (chapter 13).
SECTION_4_1: tuple[tuple[str, str], ...] = (
    ("dataset", "CUB-200-2011 test set and ILSVRC validation set (Sec. 4.2)"),
    ("num_classes", "a convolutional layer of size 1×1 ... with 1000 units (200 units for "
                    "CUB-200-2011)"),
    ("backbone", "integrated with the commonly used CNNs including VGGnet and GoogLeNet"),
    ("head_width", "two convolutional layers with kernel size 3×3, stride 1, pad 1 with 1024 "
                   "units"),
    ("feature_block", "append two classifiers after the fourth and final convolutional block"),
    ("pretrained", "fine-tuned with the pre-trained weights of ILSVRC2016"),
    ("embedding", "we apply Alexnet as the feature extractor"),
    ("batch_size", "The batch size is set to 48"),
    ("classes_per_batch", "with at most 12 categories for each batch"),
    ("lr", "an initial learning rate of 0.001"),
    ("lr_decay", "decay of 0.95 each epoch"),
    ("momentum", "The optimizer is SGD with 0.9 momentum"),
    ("weight_decay", "and 5×10^-4 weight decay"),
    ("ten_crop", "averages the scores from the softmax layer with 10 crops"),
    ("theta", "Eq. 13; Table 3's best (the text of Sec. 4.3 says 0.2: see chapter 08)"),
    ("epochs", "not stated in the paper"),
    ("resize_size", "not stated in the paper (256 → 224 crops, as in the WSOL code it follows)"),
    ("crop_size", "not stated in the paper"),
)


def settings_table(config: RunConfig, notes: Sequence[tuple[str, str]] = SECTION_4_1
                   ) -> pd.DataFrame:
    """The fields of `config` named in `notes`, with the value and the paper's words."""
    rows = [(field, str(getattr(config, field)), words) for field, words in notes]
    return pd.DataFrame(rows, columns=["setting", "value", "Sec. 4.1"]).set_index("setting")
