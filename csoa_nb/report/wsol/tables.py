"""Chapter 14's tables, written from the frames of `csoa_nb.report.wsol.frames`: the main table
of a regime (mean ± std over seeds), each method's search grid, the differences from the base
(each with its 95 % CI), the fixed-theta view beside the protocol's and the runs behind each
row. As everywhere in the book, a score is given with its spread over seeds and a difference
with its confidence interval."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from csoa_nb import methods
from csoa_nb.report.stats import interval_text, mean_std, signed
from csoa_nb.report.vocabulary import MISSING, REGIME_LABELS, column_label, higher_is_better
from csoa_nb.report.wsol.frames import BOX_ERRORS, MAIN_METRICS, ordered, row_label


# ------------------------------------------------------------------------------ tables
def spread_cell(values: Iterable[float], digits: int = 1) -> str:
    """"mean ± std" over seeds (sample standard deviation, `stats.mean_std`, as the other
    chapters' tables of scores); the mean alone for one value; "–" when no value is a
    number."""
    series = pd.Series(list(values), dtype=float).dropna()
    if series.empty:
        return MISSING
    spread = float(series.std(ddof=1)) if len(series) > 1 else 0.0
    return mean_std(float(series.mean()), spread, len(series), digits)


#: The marks of a column's direction in chapter 14's headers, and the caption's key to them.
HIGHER_MARK, LOWER_MARK = "↑", "↓"
DIRECTION_KEY = f"{HIGHER_MARK}: higher is better, {LOWER_MARK}: lower is better"


def metric_header(metric: str, theta_label: str = "chosen θ") -> str:
    """A column header with the unit and the direction (`HIGHER_MARK`: higher is better,
    `LOWER_MARK`: lower is better; the caption says so): "MaxBoxAccV2 (%) ↑",
    "Top-1 loc. err at chosen θ (%) ↓"."""
    where = f" at {theta_label}" if metric in BOX_ERRORS else ""
    mark = HIGHER_MARK if higher_is_better(metric) else LOWER_MARK
    return f"{column_label(metric)}{where} (%) {mark}"


def summary_table(
    frame: pd.DataFrame, regime: str, *, metrics: Sequence[str] = MAIN_METRICS,
    theta_label: str = "chosen θ", digits: int = 1,
) -> pd.DataFrame:
    """The main table of one regime: a row per map (in `ROW_ORDER`), a column per metric with
    `spread_cell`s over seeds, the mean theta chosen on the validation split (when the frame
    has `theta`) and the number of seeds (None for a trivial row: no seeds).

    Raises:
        ValueError: no row of `regime` in `frame`.
    """
    chosen = frame[frame["regime"] == regime]
    if chosen.empty:
        raise ValueError(f"no row of regime {regime!r}; present: {sorted(set(frame['regime']))}")
    table, counts = [], []
    for key in ordered(chosen["method"]):
        rows = chosen[chosen["method"] == key]
        row: dict[str, Any] = {"Method": row_label(key)}
        for metric in metrics:
            row[metric_header(metric, theta_label)] = spread_cell(rows[metric], digits)
        if "theta" in rows:
            row["θ chosen on val. (mean)"] = f"{rows['theta'].astype(float).mean():.2f}"
        table.append(row)
        counts.append(int(rows["seed"].dropna().nunique()) or None)
    out = pd.DataFrame(table).set_index("Method")
    out["seeds"] = pd.Series(counts, index=out.index, dtype=object)
    return out


def search_table(search: pd.DataFrame,
                 specs: Sequence[methods.MethodSpec] = methods.WSOL_SPECS) -> pd.DataFrame:
    """Each method's grid (`MethodSpec.search`) point by point: the validation MaxBoxAccV2
    of its "wsol_search" runs, mean ± std over the search seeds, their mean
    chosen theta ("–" without a run), and a mark on the value chosen. Index: ("HaS: patch
    side S, px", value); `show_table` prints the method once."""
    rows = []
    for spec in specs:
        for setting, values in spec.search.items():
            for value in values:
                runs = search[(search["method"] == spec.key) & (search["setting"] == setting)
                              & (search["value"] == value)]
                rows.append({
                    "method: hyperparameter": f"{spec.label}: "
                                              f"{methods.setting_label(setting)}",
                    "value": f"{value:g}",
                    "val. MaxBoxAccV2 (%), mean ± std": spread_cell(
                        runs["val_max_box_acc_v2"]),
                    "θ chosen on val. (mean)": (f"{runs['theta'].mean():.2f}" if len(runs)
                                                else MISSING),
                    "chosen": "✓" if len(runs) and bool(runs["chosen"].any()) else "",
                })
    return pd.DataFrame(rows).set_index(["method: hyperparameter", "value"])


def margin_table(margins: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """`frames.search_margins` as a table: a row per method, the chosen value, the runner-up
    and the margin between them ("+1.2 [−0.4, +2.8]", points of validation MaxBoxAccV2,
    paired over the search seeds) with its word ("resolved", "not resolved")."""
    rows = []
    for row in margins.itertuples():
        spec = methods.method_spec(row.method)
        rows.append({
            "Method": spec.label,
            "hyperparameter": methods.setting_label(row.setting),
            "chosen": f"{row.chosen:g}",
            "runner-up": f"{row.runner_up:g}",
            "margin, val. MaxBoxAccV2 (points) [95 % CI]": (
                f"{signed(row.margin, digits)} {interval_text(row.low, row.high, digits)}"
                if math.isfinite(row.low) else signed(row.margin, digits)),
            "choice": row.word,
        })
    return pd.DataFrame(rows).set_index("Method")


def difference_text(row: Any, digits: int = 1) -> str:
    """"+1.2 [−0.3, +2.7] not shown", "−4.0 [−6.1, −1.9] worse (Holm, 24 tests)",
    "+1.2 (one seed)" or "–" (the interval unadjusted, the word after the adjustment)."""
    if row.verdict == "n/a":
        return MISSING
    if row.verdict == "one seed":
        return f"{signed(row.mean, digits)} (one seed)"
    return f"{signed(row.mean, digits)} {interval_text(row.low, row.high, digits)} {row.word}"


def versus_table(diffs: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """`differences` as a table: a row per compared map, a column per metric ("Δ MaxBoxAccV2
    (points)": mean, 95 % CI, verdict), and how the interval was made ("paired (3)": paired
    t over 3 seeds; "one-sample", "Welch")."""
    table = []
    for key in ordered(diffs["method"]):
        rows = diffs[diffs["method"] == key]
        row: dict[str, Any] = {"Method": row_label(key)}
        for line in rows.itertuples():
            row[f"Δ {column_label(line.metric)} (points)"] = difference_text(line, digits)
        tests = sorted({t.removesuffix(" t") for t, n in zip(rows["test"], rows["n"],
                                                                strict=True) if n})
        row["t interval (n)"] = (", ".join(f"{t} ({int(rows['n'].max())})" for t in tests)
                                 or MISSING)
        table.append(row)
    return pd.DataFrame(table).set_index("Method")


def fixed_theta_table(
    fixed: pd.DataFrame, protocol: pd.DataFrame, theta: float, *, digits: int = 1,
) -> pd.DataFrame:
    """The paper's view beside the protocol's, for the trained runs: the top-1 loc. error at
    the fixed `theta` (`fixed` = `results.runs_frame` of the runs), at the theta chosen on the
    validation split (`protocol`), and the GT-known loc. error at `theta`. Index: (regime,
    method), in `REGIME_LABELS` and `ROW_ORDER` order."""
    at = f"θ = {theta:g}"
    rows = []
    for regime in [r for r in REGIME_LABELS if r in set(fixed["regime"])]:
        here = fixed[fixed["regime"] == regime]
        there = protocol[protocol["regime"] == regime]
        for key in ordered(here["method"]):
            runs = here[here["method"] == key]
            rows.append({
                "regime": REGIME_LABELS[regime], "Method": row_label(key),
                metric_header("top1_loc_err", at): spread_cell(runs["top1_loc_err"], digits),
                metric_header("top1_loc_err"): spread_cell(
                    there.loc[there["method"] == key, "top1_loc_err"], digits),
                metric_header("gt_known_loc_err", at): spread_cell(runs["gt_known_loc_err"],
                                                                     digits),
                "seeds": int(runs["seed"].nunique()),
            })
    return pd.DataFrame(rows).set_index(["regime", "Method"])


def provenance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The run folders behind each row (config hashes, folders of `results/runs/` or of the
    notebook's `output_dir`): post-hoc rows read their CAM run's folder; trivial rows are
    computed from the data, no run."""
    rows = []
    for regime in [r for r in REGIME_LABELS if r in set(frame["regime"])]:
        here = frame[frame["regime"] == regime]
        for key in ordered(here["method"]):
            runs = here[here["method"] == key]
            hashes = sorted(h for h in runs["hash"] if h)
            rows.append({"regime": REGIME_LABELS[regime], "Method": row_label(key),
                         "runs (config hashes)": " ".join(hashes) or "computed from the data"})
    return pd.DataFrame(rows).set_index(["regime", "Method"])


