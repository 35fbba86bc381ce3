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
  scores (`RunResult.scores.at(theta)`) or, for other thetas, from the run's saved maps (no
  retraining).
- `ranking_table(frame, metrics)`: the rank of each method under each metric (1 = best).
- `formatted(paper_df)`: a table as display strings, the paper's empty cells as "–";
  `best_theta`, and for chapter 13 `settings_table` (the `paper` preset beside Sec. 4.1's
  words) and `cli_command` (the `python -m csoa_nb.engine.train` line of a config).

Sentences about these tables are `csoa_nb.report.prose`'s; their figures are
`csoa_nb.report.charts`'s; their vocabulary (column and row names) is `csoa_nb.report.vocabulary`'s.

Our metrics are percentages (errors: lower is better; MaxBoxAccV2, PxAP and the accuracies:
higher is better), as in `csoa_nb.core.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csoa_nb import methods
from csoa_nb.core.localize import REPORTED_THETAS
from csoa_nb.core.scores import THETA_FRAME_METRICS, THETA_METRICS
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.runs import RunResult
from csoa_nb.report.stats import mean_std
from csoa_nb.report.vocabulary import (
    EMBEDDING_LABELS,
    INDEX_NAMES,
    MISSING,
    REGIME_ORDER,
    column_label,
    higher_is_better,
    row_label,
)

#: The paper's four columns of Tables 1, 2, 4 and 5, in its order.
PAPER_METRICS = ("top1_loc_err", "top5_loc_err", "top1_cls_err", "top5_cls_err")
#: Table 1 as this book shows it: the paper's columns plus MaxBoxAccV2 (Choe et al., 2020).
TABLE1_METRICS = (*PAPER_METRICS, "max_box_acc_v2")


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


def check_metrics(frame: pd.DataFrame, metrics: Sequence[str]) -> None:
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        known = sorted(c for c in frame.columns if c not in ("hash",))
        raise ValueError(f"metrics {missing} are not columns of the frame; it has {known}")


def order_key(level: str, value: Any) -> tuple[int, Any]:
    if level == "method" and value in methods.ROWS:
        return (list(methods.ROWS).index(value), "")
    if level == "regime" and value in REGIME_ORDER:
        return (REGIME_ORDER.index(value), "")
    if level == "embedding" and value in EMBEDDING_LABELS:
        return (list(EMBEDDING_LABELS).index(value), "")
    return (len(methods.ROWS), value)


def _ordered_keys(index: pd.Index, levels: list[str]) -> list[Any]:
    keys = list(index)
    if len(levels) == 1:
        return sorted(keys, key=lambda k: order_key(levels[0], k))
    return sorted(keys, key=lambda k: tuple(order_key(lv, v) for lv, v in zip(levels, k,
                                                                               strict=True)))


def _relabel_index(index: pd.Index, levels: list[str]) -> pd.Index:
    if len(levels) == 1:
        labels = [row_label(levels[0], k) for k in index]
        return pd.Index(labels, name=INDEX_NAMES.get(levels[0], levels[0]))
    tuples = [tuple(row_label(lv, v) for lv, v in zip(levels, k, strict=True)) for k in index]
    return pd.MultiIndex.from_tuples(tuples, names=[INDEX_NAMES.get(lv, lv) for lv in levels])


def summarize(
    frame: pd.DataFrame, by: list[str], metrics: list[str], *, digits: int | None = None
) -> pd.DataFrame:
    """Mean and standard deviation over seeds, as "mean ± std" strings (`stats.mean_std`;
    `digits` None: one decimal in a column of percentages, two in one below 1) plus numeric
    columns."""
    grouped = frame.groupby(by, sort=False)[metrics]
    mean, std, count = grouped.mean(), grouped.std(ddof=1).fillna(0.0), grouped.size()
    table = pd.DataFrame(index=mean.index)
    for metric in metrics:
        # one decimal for a column of percentages, two for one of shares and ratios below 1
        places = digits if digits is not None else (
            1 if float(mean[metric].abs().max()) >= 1 else 2)
        table[metric] = [
            mean_std(m, s, n, places)
            for m, s, n in zip(mean[metric], std[metric], count, strict=True)
        ]
    table["seeds"] = count
    table.attrs["mean"] = mean
    table.attrs["std"] = std
    return table


def ours_table(
    frame: pd.DataFrame,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    rows: str | Sequence[str] = "method",
    digits: int | None = None,
    **where: Any,
) -> pd.DataFrame:
    """Mean ± std over seeds of `metrics`, one row per value of `rows`, labelled like the paper.

    Args:
        frame: one row per run (`csoa_nb.engine.results.runs_frame`, or `theta_frame`).
        metrics: metric columns of `frame` (e.g. `PAPER_METRICS`); columns are renamed with
            `column_label` ("Top-1 loc. err").
        rows: the column(s) that name a row: "method" (rows "CAM (base)", ..., "CSoA" in
            Table 1's order), "feature_block" ("CSoA-3-5", ...), "theta", "regime", or a list.
        digits: decimals of the strings (None: one for points, two for shares below 1).
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
    check_metrics(selected, metrics)
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
    """Table 2, ours: CSoA, W_F after block 3, 4 or 5 ("CSoA-3-5"...; `csoa_fix`: Eq. 10 fix)."""
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
            two tables one above the other, rows `(source, row)`, for tables whose numbers
            compare only within each block (Tables 4-6); with `row_map`, the paper's rows are
            renamed as ours too, a "paper row" column holds the paper's name, and our rows
            come in the order of the rows they stand for, then the others.
        digits: decimals of the paper's numbers; None keeps them as printed in the paper
            (ours are already strings from `ours_table`).

    Returns:
        Strings (the paper's empty cells as "–"; a row or column one side lacks: "").
    """
    paper_label = paper_df.attrs.get("label", "paper")
    paper = formatted(paper_df, digits)
    ours = formatted(ours_df, 2 if digits is None else digits)
    row_map = dict(row_map or {})
    renamed = [row_map.get(k, k) for k in paper.index]
    if row_map:
        paper.insert(0, "paper row", [str(k) for k in paper.index])
    if stacked:
        if row_map:
            paper.index = pd.Index(renamed)
            matched = [k for k in paper.index if k in set(ours.index)]
            ours = ours.reindex(matched + [k for k in ours.index if k not in set(matched)])
            name = ours_df.index.name or "row"
        else:
            same = paper_df.index.name == ours_df.index.name
            name = paper_df.index.name if same else "row"
        paper.index.name = ours.index.name = name
        out = pd.concat([paper, ours], keys=[paper_label, ours_label], names=["source", name])
        return out.fillna("")
    paper.index = pd.Index(renamed, name=ours_df.index.name or paper_df.index.name)
    ours.index.name = paper.index.name
    order = list(paper.index) + [k for k in ours.index if k not in set(paper.index)]
    paper = paper.reindex(order)
    ours = ours.reindex(order)
    out = pd.concat([paper, ours], axis=1, keys=[paper_label, ours_label], names=["source", None])
    return out.fillna("")


# ------------------------------------------------------------------------------- thetas
def theta_frame(
    results: Iterable[RunResult],
    thetas: Sequence[float] = REPORTED_THETAS,
    metrics: Sequence[str] = THETA_FRAME_METRICS,
) -> pd.DataFrame:
    """Eq. 13 errors of every run at every theta: one row per (run, theta).

    A theta the run saved (`result.scores.at(0.3)`) is read; the others are computed from the
    run's saved ground-truth-class CAMs (`eval_maps.npz`), all in one pass per run, as
    `csoa_nb.engine.evaluate.reevaluate` does but without MaxBoxAccV2 and PxAP, which do not
    depend on theta. Nothing is retrained.

    Columns: method, regime, feature_block, seed, hash, theta and `metrics` (fields of
    `csoa_nb.core.scores.ThetaErrors`; by default `THETA_FRAME_METRICS`).
    """
    from csoa_nb.engine.evaluate import score_maps
    from csoa_nb.engine.sweeps import regime_of

    thetas = [float(t) for t in thetas]
    if not thetas:
        raise ValueError("thetas is empty: pass at least one theta in (0, 1)")
    for theta in thetas:
        if not 0.0 < theta < 1.0:
            raise ValueError(f"theta must lie in (0, 1) (Eq. 13), got {theta}")
    unknown = [m for m in metrics if m not in THETA_METRICS]
    if unknown:
        raise ValueError(f"metrics {unknown} do not depend on theta; choose among "
                         f"{list(THETA_METRICS)}")
    rows = []
    for result in results:
        saved = result.scores
        missing = tuple(t for t in thetas if not saved.has_theta(t))
        extra = (score_maps(result.eval_maps(), result.config, thetas=missing, full=False)
                 if missing else None)
        config = result.config
        for theta in thetas:
            errors = saved.at(theta) if saved.has_theta(theta) else extra.at(theta)
            rows.append(
                {
                    "method": methods.row_key(config),
                    "regime": regime_of(config),
                    "feature_block": config.feature_block,
                    "seed": config.seed,
                    "hash": config.hash,
                    "theta": theta,
                    **{m: float(getattr(errors, m)) for m in metrics},
                }
            )
    return pd.DataFrame(rows)


def theta_table(
    thetas: pd.DataFrame,
    *,
    method: str = "csoa",
    regime: str = "pretrained",
    metrics: Sequence[str] = ("top1_loc_err", "top5_loc_err"),
    theta: Sequence[float] | None = REPORTED_THETAS,
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
    rows.sort(key=lambda r: (order_key("regime", r["regime"]),
                             order_key("method", r["method"])))
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


# ----------------------------------------------------------------- the paper preset (ch. 13)
def cli_command(config: RunConfig) -> str:
    """The `python -m csoa_nb.engine.train` line that trains `config`: its preset and method, plus a
    `--set` for every field that differs from the plain preset (device, data_root included).
    """
    base = RunConfig.from_preset(config.preset)
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
