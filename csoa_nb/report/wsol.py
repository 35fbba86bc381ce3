"""CSoA among WSOL methods under Choe et al.'s protocol (issue #17): chapter 14's frames,
tables, sentences and figures.

Choe, Oh, Lee, Chun, Akata and Shim ("Evaluating Weakly Supervised Object Localization Methods
Right", CVPR 2020) choose each method's hyperparameter and its CAM threshold on a validation
split with boxes and score the test split once (`csoa_nb.engine.protocol`). This module puts
every map of the comparison under that protocol side by side:

* the **protocol frame** (`protocol_frame`, one row per scored map): the trained runs of the
  "wsol" sweep (`csoa_nb.engine.results`: CAM, CSoA as written and with our fix of Eq. 10,
  HaS, ACoL, ADL, CutMix), the post-hoc maps of each CAM run (Grad-CAM, Grad-CAM++, Score-CAM,
  `csoa_nb.engine.posthoc_runs`) and the two trivial baselines of each regime (full-image box,
  centred Gaussian, `csoa_nb.engine.baselines.trivial_protocol`; they look at no image, so they
  have no seed, and no classifier, so their top-1 errors are NaN). Its columns are those of
  `results.runs_frame` that the tables read (`method`: the row key, `regime`, `seed`, `hash`,
  the metrics) plus `family` ("trained", "post-hoc", "trivial"), `theta` (chosen on the
  validation split), `val_max_box_acc_v2` and `sigma` (the centred Gaussian's, in map cells);
* the **search frame** (`search_frame`): one row per run of the "wsol_search" grid, with its
  validation MaxBoxAccV2 and whether it was chosen (`results.chosen_settings`);
* the **differences** (`differences`): each row minus a base row (CAM, or the centred
  Gaussian), paired by seed with Student's t (`csoa_nb.report.stats.difference`), or, where one
  side is a trivial baseline (one exact value, no seed noise), a one-sample t interval of
  the other side's per-seed values; a verdict from the interval, as `findings.versus_base`.

Tables (`search_table`, `summary_table`, `versus_table`, `fixed_theta_table`,
`provenance_table`) and sentences (`verdict_markdown`) are frames and strings written from these
frames; figures (`plot_accuracy_vs_classification`, `plot_method_maps`) follow the house style of
`csoa_nb.report.plots`. Only `protocol_frame` and `sample_maps` read run folders.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from csoa_nb import methods
from csoa_nb.core.localize import binarize, fuse_cams, largest_component_box
from csoa_nb.engine.baselines import TRIVIAL_KINDS, map_size, trivial_protocol
from csoa_nb.engine.config import RunConfig
from csoa_nb.engine.posthoc_runs import posthoc_scores
from csoa_nb.engine.protocol import ProtocolScores, read_protocol
from csoa_nb.engine.results import regime_of
from csoa_nb.engine.runs import RunResult, load_arrays
from csoa_nb.methods.posthoc import POSTHOC_KINDS
from csoa_nb.methods.trivial import center_gaussian_maps, full_image_maps
from csoa_nb.report.findings import by_seed
from csoa_nb.report.plots import (
    COLUMN_WIDTH_IN,
    GT_COLOR,
    MIN_FONT_PT,
    PRED_COLOR,
    _box,
    _gt_boxes,
    _heat,
    _heat_bar,
    house_style,
)
from csoa_nb.report.stats import (
    Difference,
    Verdict,
    difference,
    mean_interval,
    one_sample,
    verdicts,
)
from csoa_nb.report.vocabulary import (
    MISSING,
    REGIME_LABELS,
    column_label,
    higher_is_better,
    metric_prose,
)

__all__ = [
    "BASE",
    "EXTRA_ROWS",
    "FAMILIES",
    "GAUSSIAN",
    "HEADLINE_METRICS",
    "MAIN_METRICS",
    "ROW_ORDER",
    "SETTING_LABELS",
    "VERDICT_WORDS",
    "differences",
    "family",
    "fixed_theta_table",
    "gt_class_maps",
    "interval_cell",
    "metric_header",
    "plot_accuracy_vs_classification",
    "plot_method_maps",
    "protocol_frame",
    "protocol_record",
    "provenance_table",
    "row_color",
    "row_label",
    "sample_maps",
    "search_frame",
    "search_table",
    "summary_table",
    "trivial_sample_maps",
    "verdict_markdown",
    "verdict_word",
    "versus_table",
]

#: The rows of the comparison that are no method of the registry: label and colour.
EXTRA_ROWS: dict[str, tuple[str, str]] = {
    "full_image": ("full-image box", "#525252"),
    "center_gaussian": ("centred Gaussian", "#000000"),
    "gradcam": ("Grad-CAM", "#637939"),
    "gradcampp": ("Grad-CAM++", "#bd9e39"),
    "scorecam": ("Score-CAM", "#ad494a"),
}
#: Table order: the trivial baselines, CAM and its post-hoc maps, the other WSOL methods
#: (`methods.WSOL_SPECS`), CSoA as written and with our fix of Eq. 10.
ROW_ORDER: tuple[str, ...] = (
    *TRIVIAL_KINDS, "cam", *POSTHOC_KINDS, *(spec.key for spec in methods.WSOL_SPECS),
    "csoa", "csoa_fix",
)
#: What made each kind of row's map.
FAMILIES = ("trivial", "post-hoc", "trained")
#: The row every other row is compared with, and the trivial bar a method should clear.
BASE = "cam"
GAUSSIAN = "center_gaussian"
#: The columns of the main table: Choe et al.'s headline metrics (threshold-free), the top-1
#: loc. error at the chosen theta, the classification error.
MAIN_METRICS = ("max_box_acc_v2", "pxap", "top1_loc_err", "top1_cls_err")
#: The metrics the verdict paragraph reads (Choe et al.'s headline).
HEADLINE_METRICS = ("max_box_acc_v2", "pxap")
#: The box errors, which depend on the CAM threshold theta (their headers name it; not
#: `csoa_nb.core.scores.THETA_METRICS`, which also holds the classification errors).
BOX_ERRORS = ("top1_loc_err", "gt_known_loc_err")
#: A method's setting (a `RunConfig` field), as the grid table names it: the label on its
#: settings class (`csoa_nb.methods.settings_table`).
SETTING_LABELS = {name: item.label for name, item in methods.settings_table().items()}
#: Verdicts of a difference row − base, within the family of one regime's table (Holm,
#: `stats.verdicts`): shown better / worse after the adjustment; suggested (only the
#: unadjusted interval excludes 0); not shown; no interval (one seed); no number (a trivial map
#: has no classification error).
VERDICT_WORDS = ("better", "worse", "suggested better", "suggested worse", "not shown",
                 "one seed", "n/a")


# ------------------------------------------------------------------------------ row names
def row_label(key: str) -> str:
    """The label of a row of the comparison (the registry's for a method: "CSoA+fix (ours)")."""
    return EXTRA_ROWS[key][0] if key in EXTRA_ROWS else methods.label(key)


def row_color(key: str) -> str:
    """The colour of a row in every figure (the registry's for a method)."""
    if key in EXTRA_ROWS:
        return EXTRA_ROWS[key][1]
    return methods.ROWS[key].color if key in methods.ROWS else "#1f77b4"


def family(key: str) -> str:
    """"trivial" (looks at no image), "post-hoc" (maps of the trained CAM network) or
    "trained" (a method of the registry)."""
    if key in TRIVIAL_KINDS:
        return "trivial"
    return "post-hoc" if key in POSTHOC_KINDS else "trained"


def _ordered(keys: Iterable[str]) -> list[str]:
    """`keys` in `ROW_ORDER`, unknown keys after them in their first order."""
    keys = list(dict.fromkeys(keys))
    return [k for k in ROW_ORDER if k in keys] + [k for k in keys if k not in ROW_ORDER]


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


# ------------------------------------------------------------------------------ the frames
def protocol_record(
    key: str, regime: str, seed: int | None, run_hash: str, scores: ProtocolScores,
    sigma: float | None = None,
) -> dict[str, Any]:
    """One row of the protocol frame: the map `key` of a run (or a trivial baseline, `seed`
    None) in `regime`, scored under the protocol. Metrics in percent, NaN where not computed
    (PxAP without masks; a trivial map's classification errors)."""
    test = scores.test
    return {
        "method": key,
        "family": family(key),
        "regime": regime,
        "seed": math.nan if seed is None else float(seed),
        "hash": run_hash,
        "theta": float(scores.theta),
        "max_box_acc_v2": _nan(test.max_box_acc_v2),
        "pxap": _nan(test.pxap),
        "top1_loc_err": _nan(test.top1_loc_err),
        "top1_cls_err": _nan(test.top1_cls_err),
        "gt_known_loc_err": _nan(test.gt_known_loc_err),
        "val_max_box_acc_v2": _nan(scores.val.max_box_acc_v2),
        "sigma": _nan(sigma),
    }


def protocol_frame(runs: Sequence[RunResult], *, trivial: bool = True) -> pd.DataFrame:
    """The protocol frame (module docstring) of the runs of the "wsol" sweep: each run's
    `protocol.json`; each CAM run's post-hoc maps (`posthoc_scores`: read, or made when
    missing, about a minute per run at the cpu preset); with `trivial`, the two trivial
    baselines once per regime (on the data of that regime's first CAM run)."""
    rows, cam_configs = [], {}
    for run in runs:
        config = run.config
        key, regime = methods.row_key(config), regime_of(config)
        rows.append(protocol_record(key, regime, config.seed, config.hash,
                                    read_protocol(run.run_dir)))
        if config.method == BASE:
            cam_configs.setdefault(regime, config)
            for kind, scores in posthoc_scores(run.run_dir).items():
                rows.append(protocol_record(kind, regime, config.seed, config.hash, scores))
    if trivial:
        for regime, config in cam_configs.items():
            for kind in TRIVIAL_KINDS:
                scores, sigma = trivial_protocol(config, kind)
                rows.append(protocol_record(kind, regime, None, "", scores, sigma))
    return pd.DataFrame(rows)


def search_frame(
    entries: Iterable[tuple[RunConfig, ProtocolScores]],
    chosen: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per run of the "wsol_search" grid: `method`, `setting` (the searched field),
    `value`, `val_max_box_acc_v2` and `theta` on the validation split, `chosen` (the value is
    that of `chosen[method]`, i.e. `results.chosen_settings`), `hash`.

    Raises:
        ValueError: a method's spec searches no field, or several (the grid table shows one).
    """
    rows = []
    for config, scores in entries:
        grid = methods.method_spec(config.method).search
        if len(grid) != 1:
            raise ValueError(f"method {config.method!r} searches {list(grid)}: the grid table "
                             "shows exactly one searched field per method")
        (setting,) = grid
        value = getattr(config, setting)
        rows.append({
            "method": config.method, "setting": setting, "value": value,
            "val_max_box_acc_v2": _nan(scores.val.max_box_acc_v2), "theta": scores.theta,
            "chosen": chosen.get(config.method, {}).get(setting) == value,
            "hash": config.hash,
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ tables
def interval_cell(values: Iterable[float], digits: int = 1) -> str:
    """"mean [low, high]" with the 95 % t interval over seeds (`stats.mean_interval`); the
    mean alone for one value; "–" when no value is a number."""
    series = pd.Series(list(values), dtype=float).dropna()
    if series.empty:
        return MISSING
    mean, low, high = mean_interval(series)
    if len(series) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def metric_header(metric: str, theta_label: str = "chosen θ") -> str:
    """A column header with the unit and the direction: "MaxBoxAccV2 (%, higher is better)",
    "Top-1 loc. err at chosen θ (%, lower is better)"."""
    where = f" at {theta_label}" if metric in BOX_ERRORS else ""
    better = "higher" if higher_is_better(metric) else "lower"
    return f"{column_label(metric)}{where} (%, {better} is better)"


def summary_table(
    frame: pd.DataFrame, regime: str, *, metrics: Sequence[str] = MAIN_METRICS,
    theta_label: str = "chosen θ", digits: int = 1,
) -> pd.DataFrame:
    """The main table of one regime: a row per map (in `ROW_ORDER`), a column per metric with
    `interval_cell`s over seeds, the mean theta chosen on the validation split (when the frame
    has `theta`) and the number of seeds (None for a trivial row: no seeds).

    Raises:
        ValueError: no row of `regime` in `frame`.
    """
    chosen = frame[frame["regime"] == regime]
    if chosen.empty:
        raise ValueError(f"no row of regime {regime!r}; present: {sorted(set(frame['regime']))}")
    table, counts = [], []
    for key in _ordered(chosen["method"]):
        rows = chosen[chosen["method"] == key]
        row: dict[str, Any] = {"Method": row_label(key)}
        for metric in metrics:
            row[metric_header(metric, theta_label)] = interval_cell(rows[metric], digits)
        if "theta" in rows:
            row["θ chosen on val. (mean)"] = f"{rows['theta'].astype(float).mean():.2f}"
        table.append(row)
        counts.append(int(rows["seed"].dropna().nunique()) or None)
    out = pd.DataFrame(table).set_index("Method")
    out["seeds"] = pd.Series(counts, index=out.index, dtype=object)
    return out


def search_table(search: pd.DataFrame,
                 specs: Sequence[methods.MethodSpec] = methods.WSOL_SPECS) -> pd.DataFrame:
    """Each method's grid (`MethodSpec.search`) point by point: the validation MaxBoxAccV2 and
    chosen theta of its "wsol_search" run ("–" when it has none) and a mark on the value
    chosen. Index: ("HaS: has_grid_size (patch side S, px)", value); `show_table` prints
    the method once."""
    rows = []
    for spec in specs:
        for setting, values in spec.search.items():
            for value in values:
                found = search[(search["method"] == spec.key) & (search["setting"] == setting)
                               & (search["value"] == value)]
                run = found.iloc[0] if len(found) else None
                rows.append({
                    "method: hyperparameter": f"{spec.label}: {setting} "
                                              f"({methods.setting_label(setting)})",
                    "value": f"{value:g}",
                    "val. MaxBoxAccV2 (%)": math.nan if run is None else run.val_max_box_acc_v2,
                    "θ chosen on val.": MISSING if run is None else f"{run.theta:.2f}",
                    "chosen": "✓" if run is not None and bool(run.chosen) else "",
                })
    return pd.DataFrame(rows).set_index(["method: hyperparameter", "value"])


# ------------------------------------------------------------------------------ differences
def verdict_word(judged: Verdict, mean: float) -> str:
    """One of `VERDICT_WORDS` for a difference row − base and its verdict in the family
    (`stats.verdicts`; the direction of "better" from `vocabulary.higher_is_better`): "n/a"
    without a number."""
    if math.isnan(mean):
        return "n/a"
    if judged.strength in ("one seed", "not shown"):
        return judged.strength
    side = "better" if judged.sign > 0 else "worse"
    return side if judged.strength == "shown" else f"suggested {side}"


def _seeded(rows: pd.DataFrame) -> bool:
    return bool(len(rows)) and bool(rows["seed"].notna().all())


_NONE = Difference(math.nan, math.nan, math.nan, 0, False)


def _compare(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[Difference, str]:
    """The difference a − b of `metric` (`stats.Difference`) and the test that made it."""
    if _seeded(a) and _seeded(b):
        va, vb = by_seed(a, metric).dropna(), by_seed(b, metric).dropna()
        if va.empty or vb.empty:
            return _NONE, "–"
        diff = difference(va, vb)
        return diff, "paired t" if diff.paired else "Welch t"
    # one side is a trivial map: one exact value, no seed noise; the interval is the other
    # side's (a one-sample t interval of its per-seed differences from that value)
    if _seeded(a):
        values = a[metric].astype(float) - float(b[metric].astype(float).mean())
    else:
        values = float(a[metric].astype(float).mean()) - b[metric].astype(float)
    values = values.dropna()
    if values.empty:
        return _NONE, "–"
    return one_sample(values), "one-sample t"


def differences(
    frame: pd.DataFrame, regime: str, *, base: str = BASE,
    metrics: Sequence[str] = MAIN_METRICS,
) -> pd.DataFrame:
    """Every row of `regime` minus `base`, one line per (row, metric): `method`, `family`,
    `metric`, `mean`, `low`, `high` (unadjusted 95 % CI, points), `n`, `test`, `p` (the t
    test's), `p_holm` and `tests` (Holm over the frame's lines, which are one family: the
    printed table), `verdict` (`verdict_word`) and `word` (`stats.Verdict.word`).

    Rows with seeds against a base with seeds: paired by seed (`stats.difference`; Welch's
    t if the seeds differ). A trivial row against a base with seeds, or a row with seeds
    against a trivial base: the trivial map's one exact value against the other side's
    per-seed values, a one-sample t interval ("unpaired"). Two trivial rows are not compared
    (no seeds on either side, nothing to put an interval on).

    Raises:
        ValueError: `base` has no row in `regime`.
    """
    chosen = frame[frame["regime"] == regime]
    base_rows = chosen[chosen["method"] == base]
    if base_rows.empty:
        raise ValueError(f"no {base!r} row in regime {regime!r}; present: "
                         f"{sorted(set(chosen['method']))}")
    lines = []
    for key in _ordered(chosen["method"]):
        rows = chosen[chosen["method"] == key]
        if key == base or not (_seeded(rows) or _seeded(base_rows)):
            continue
        lines += [(key, metric, *_compare(rows, base_rows, metric)) for metric in metrics]
    judged = verdicts([diff for *_, diff, _ in lines],
                      [higher_is_better(metric) for _, metric, *_ in lines])
    out = [{"method": key, "family": family(key), "base": base, "metric": metric,
            "mean": diff.mean, "low": diff.low, "high": diff.high, "n": diff.n, "test": test,
            "p": diff.p, "p_holm": verdict_.p_adjusted, "tests": verdict_.family,
            "verdict": verdict_word(verdict_, diff.mean),
            "word": MISSING if math.isnan(diff.mean) else verdict_.word()}
           for (key, metric, diff, test), verdict_ in zip(lines, judged, strict=True)]
    return pd.DataFrame(out, columns=["method", "family", "base", "metric", "mean", "low",
                                      "high", "n", "test", "p", "p_holm", "tests", "verdict",
                                      "word"])


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def _difference_text(row: Any, digits: int = 1) -> str:
    """"+1.2 [−0.3, +2.7] not shown", "−4.0 [−6.1, −1.9] worse (Holm, 24 tests)",
    "+1.2 (one seed)" or "–" (the interval unadjusted, the word after the adjustment)."""
    if row.verdict == "n/a":
        return MISSING
    if row.verdict == "one seed":
        return f"{_signed(row.mean, digits)} (one seed)"
    return (f"{_signed(row.mean, digits)} [{_signed(row.low, digits)}, "
            f"{_signed(row.high, digits)}] {row.word}")


def versus_table(diffs: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """`differences` as a table: a row per compared map, a column per metric ("Δ MaxBoxAccV2
    (points)": mean, 95 % CI, verdict), and how the interval was made ("paired (3)": paired
    t over 3 seeds; "one-sample", "Welch")."""
    table = []
    for key in _ordered(diffs["method"]):
        rows = diffs[diffs["method"] == key]
        row: dict[str, Any] = {"Method": row_label(key)}
        for line in rows.itertuples():
            row[f"Δ {column_label(line.metric)} (points)"] = _difference_text(line, digits)
        tests = sorted({t.removesuffix(" t") for t, n in zip(rows["test"], rows["n"],
                                                                strict=True) if n})
        row["t interval (n)"] = (", ".join(f"{t} ({int(rows['n'].max())})" for t in tests)
                                 or MISSING)
        table.append(row)
    return pd.DataFrame(table).set_index("Method")


def _names(keys: Iterable[str]) -> str:
    names = [row_label(k) for k in keys]
    return ", ".join(names) if names else "none"


def _family(diffs: pd.DataFrame) -> str:
    """"Holm over the table's 40 tests": the family the verdicts of `differences` are in."""
    tests = int(diffs["tests"].max()) if len(diffs) and diffs["tests"].notna().any() else 0
    return f"Holm over the table's {tests} tests"


def verdict_markdown(
    versus_base: Mapping[str, pd.DataFrame],
    versus_gaussian: Mapping[str, pd.DataFrame],
    *, metrics: Sequence[str] = HEADLINE_METRICS, ours: Sequence[str] = ("csoa", "csoa_fix"),
    digits: int = 1,
) -> str:
    """The verdict paragraph, per regime, written from `differences` (never typed numbers):
    the methods (trained and post-hoc maps) shown better / worse than the base on each of
    `metrics`, where CSoA as written and with our fix stand, and which methods are shown
    above the centred Gaussian. `versus_base`, `versus_gaussian`: regime -> `differences`
    against CAM and against the centred Gaussian."""
    lines = []
    for regime, diffs in versus_base.items():
        lines.append(f"**{REGIME_LABELS.get(regime, regime)}.**")
        lines.append("")
        mapped = diffs[diffs["family"] != "trivial"]
        base = row_label(str(diffs["base"].iloc[0])) if len(diffs) else row_label(BASE)
        for metric in metrics:
            part = mapped[mapped["metric"] == metric]
            name = metric_prose(metric)
            if len(part) and (part["verdict"] == "one seed").all():
                lines.append(f"- {name}: one seed per row, so no interval and no verdict; the "
                             "table gives the single differences.")
                continue
            groups = {v: part.loc[part["verdict"] == v, "method"] for v in VERDICT_WORDS}
            suggested = pd.concat([groups["suggested better"], groups["suggested worse"]])
            lines.append(f"- {name}: shown better than {base}: {_names(groups['better'])}; "
                         f"shown worse: {_names(groups['worse'])} ({_family(diffs)}); only "
                         f"suggested (unadjusted p < 0.05): {_names(suggested)}; not shown "
                         f"different: {_names(groups['not shown'])}.")
        for key in ours:
            mine = mapped[(mapped["method"] == key) & mapped["metric"].isin(metrics)]
            if mine.empty:
                continue
            parts = [f"{metric_prose(line.metric)} {_difference_text(line, digits)}"
                     for line in mine.itertuples()]
            intervals = (mine["verdict"] != "one seed").any()
            lines.append(f"- {row_label(key)} − {base}: " + "; ".join(parts)
                         + (" (points, 95 % CI)." if intervals else " (points)."))
        gauss = versus_gaussian.get(regime)
        if gauss is not None and len(gauss):
            above = gauss[gauss["family"] != "trivial"]
            for metric in metrics:
                part = above[above["metric"] == metric]
                gname = row_label(str(gauss["base"].iloc[0]))
                if len(part) and (part["verdict"] == "one seed").all():
                    lines.append(f"- Against the {gname} on {metric_prose(metric)}: one seed "
                                 "per row, no verdict.")
                    continue
                winners = part.loc[part["verdict"] == "better", "method"]
                below = part.loc[part["verdict"] == "worse", "method"]
                if len(winners):
                    lines.append(f"- Shown above the {gname} on {metric_prose(metric)} "
                                 f"({_family(gauss)}): {_names(winners)}; shown below it: "
                                 f"{_names(below)}.")
                else:
                    lines.append(f"- No method is shown above the {gname} on "
                                 f"{metric_prose(metric)} ({_family(gauss)}); shown below it: "
                                 f"{_names(below)}.")
        lines.append("")
    return "\n".join(lines).strip()


def headline(diffs: pd.DataFrame, metric: str = "max_box_acc_v2", *,
             ours: Sequence[str] = ("csoa", "csoa_fix"), digits: int = 1) -> str:
    """One sentence of `differences` (one regime) for the book's first and last pages: which
    maps are shown better / worse than the base on `metric`, and where the `ours` rows stand
    (difference, 95 % CI, verdict)."""
    part = diffs[(diffs["metric"] == metric) & (diffs["family"] != "trivial")]
    if part.empty:
        return f"no map to set against the base on {metric_prose(metric)}"
    base = row_label(str(part["base"].iloc[0]))
    better = part.loc[part["verdict"] == "better", "method"]
    worse = part.loc[part["verdict"] == "worse", "method"]
    stands = "; ".join(f"{row_label(line.method)} {_difference_text(line, digits)}"
                       for line in part[part["method"].isin(ours)].itertuples())
    return (f"on {metric_prose(metric)}, shown better than {base}: {_names(better)}; shown "
            f"worse: {_names(worse)} ({_family(diffs)}); {stands} (points, unadjusted 95 % CI)")


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
        for key in _ordered(here["method"]):
            runs = here[here["method"] == key]
            rows.append({
                "regime": REGIME_LABELS[regime], "Method": row_label(key),
                metric_header("top1_loc_err", at): interval_cell(runs["top1_loc_err"], digits),
                metric_header("top1_loc_err"): interval_cell(
                    there.loc[there["method"] == key, "top1_loc_err"], digits),
                metric_header("gt_known_loc_err", at): interval_cell(runs["gt_known_loc_err"],
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
        for key in _ordered(here["method"]):
            runs = here[here["method"] == key]
            hashes = sorted(h for h in runs["hash"] if h)
            rows.append({"regime": REGIME_LABELS[regime], "Method": row_label(key),
                         "runs (config hashes)": " ".join(hashes) or "computed from the data"})
    return pd.DataFrame(rows).set_index(["regime", "Method"])


# ------------------------------------------------------------------------------ figures
def _wrap(text: str, width: int) -> str:
    return textwrap.fill(text.replace("Eq. ", "Eq.\u00a0"), width=width, break_long_words=False)


@house_style
def plot_accuracy_vs_classification(
    frame: pd.DataFrame, *, y: str = "max_box_acc_v2", x: str = "top1_cls_err",
) -> Figure:
    """`y` (default MaxBoxAccV2) against `x` (top-1 cls. error), one point per map and seed,
    one panel per regime, each row in its colour (circles: trained methods, triangles:
    post-hoc maps of the CAM network). A trivial baseline has no classifier: a horizontal
    line at its `y`. One legend below the panels."""
    regimes = [r for r in REGIME_LABELS if r in set(frame["regime"])]
    fig, axes = plt.subplots(1, len(regimes), figsize=(COLUMN_WIDTH_IN, 4.9), squeeze=False,
                             layout="constrained", sharey=True)
    handles: dict[str, Any] = {}
    for ax, regime in zip(axes[0], regimes, strict=True):
        here = frame[frame["regime"] == regime]
        for key in _ordered(here["method"]):
            rows = here[here["method"] == key]
            color, name = row_color(key), row_label(key)
            if family(key) == "trivial":
                value = float(rows[y].astype(float).mean())
                style = ":" if key == "full_image" else "--"
                ax.axhline(value, color=color, linestyle=style, linewidth=1.5)
                handles[key] = Line2D([], [], color=color, linestyle=style, label=name)
                continue
            marker = "^" if family(key) == "post-hoc" else "o"
            ax.scatter(rows[x].astype(float), rows[y].astype(float), color=color, s=36,
                       marker=marker, alpha=0.85, edgecolors="white", linewidths=0.5)
            handles[key] = Line2D([], [], color=color, marker=marker, linestyle="",
                                  markersize=7, label=name)
        ax.set_title(REGIME_LABELS[regime], fontsize=MIN_FONT_PT + 1)
        ax.set_xlabel(_wrap(f"{column_label(x)} (%), lower is better", 40))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{column_label(y)} (%), "
                          f"{'higher' if higher_is_better(y) else 'lower'} is better")
    ordered = [handles[k] for k in _ordered(handles)]
    fig.legend(handles=ordered, loc="outside lower center", ncols=3, frameon=False,
               fontsize=MIN_FONT_PT)
    return fig


def gt_class_maps(cams: Mapping[str, Any], positions: Sequence[int]) -> Tensor:
    """The evaluated map of a trained run for sample images `positions` of its `cams.npz`:
    Eq. 13's union of the ground-truth class's S_L and S_F (`localize.fuse_cams`: upsampled,
    min-max normalised, elementwise max; S_L alone for a one-head network). ``K x H x W`` in
    [0, 1], H x W the images' size (what `views.localize_one` calls `loc_map`)."""
    index = torch.as_tensor(list(positions), dtype=torch.long)
    labels = cams["labels"][index].long()
    size = (int(cams["images"].shape[1]), int(cams["images"].shape[2]))
    cam_last = cams["cam_last"][index, labels].float()
    feature = cams["cam_feature"]
    cam_feature = None if feature is None else feature[index, labels].float()
    return fuse_cams(cam_last, cam_feature, size)


def trivial_sample_maps(kind: str, count: int, map_hw: tuple[int, int], size: tuple[int, int],
                        sigma: float | None = None) -> Tensor:
    """The map of trivial baseline `kind` (`methods.trivial`) at the network's map size
    `map_hw`, as the evaluator sees it (`fuse_cams`: upsampled to `size`, normalised),
    ``count x H x W``; `sigma` (map cells) for the centred Gaussian."""
    h, w = map_hw
    if kind == "full_image":
        maps = full_image_maps(count, h, w)
    elif kind == GAUSSIAN:
        if sigma is None or math.isnan(sigma):
            raise ValueError("the centred Gaussian needs its sigma (the protocol frame's "
                             "`sigma` of its row, chosen on the validation split)")
        maps = center_gaussian_maps(count, h, w, sigma)
    else:
        raise ValueError(f"unknown trivial map {kind!r}; valid choices: "
                         f"{', '.join(TRIVIAL_KINDS)}")
    return fuse_cams(maps, None, size)


def _spread(count: int, total: int) -> list[int]:
    """`count` positions spread evenly over a sample of `total` images (all if fewer)."""
    if total <= count:
        return list(range(total))
    return [int(p) for p in np.linspace(0, total - 1, count).round()]


def _theta(protocol: pd.DataFrame, key: str, regime: str, seed: int) -> float:
    rows = protocol[(protocol["method"] == key) & (protocol["regime"] == regime)]
    seeded = rows[rows["seed"] == seed]
    rows = seeded if len(seeded) else rows
    return float(rows["theta"].mean()) if len(rows) else math.nan


def sample_maps(
    runs: Sequence[RunResult], protocol: pd.DataFrame, *, regime: str = "pretrained",
    seed: int = 0, count: int = 6,
) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, float]]:
    """The maps of every row of `protocol` on the same `count` test images (spread over the
    runs' saved sample, `cams.npz`), for the runs of `regime` and `seed`: the trained runs'
    `gt_class_maps`, the CAM run's post-hoc maps (`posthoc_cams.npz`), the trivial maps
    (`trivial_sample_maps`, sigma from `protocol`). Returns the sample (`images` uint8
    ``K x H x W x 3``, `boxes`, `labels`, `indices`: test-set indices), the maps by row key
    and the theta chosen on the validation split by row key.

    Raises:
        ValueError: no CAM run of `regime` and `seed`, or runs whose samples differ.
    """
    chosen = {methods.row_key(r.config): r for r in runs
              if regime_of(r.config) == regime and r.config.seed == seed}
    if BASE not in chosen:
        raise ValueError(f"no CAM run of regime {regime!r} with seed {seed} among the runs")
    cam = chosen[BASE].cams()
    positions = _spread(count, len(cam["labels"]))
    size = (int(cam["images"].shape[1]), int(cam["images"].shape[2]))
    maps: dict[str, Tensor] = {}
    keys = _ordered(set(protocol.loc[protocol["regime"] == regime, "method"]) | set(chosen))
    for key in keys:
        if key in chosen:
            cams = cam if key == BASE else chosen[key].cams()
            if not torch.equal(torch.as_tensor(cams["indices"]), torch.as_tensor(cam["indices"])):
                raise ValueError(f"the {row_label(key)} run {chosen[key].run_dir.name} saved "
                                 "other sample images than the CAM run: rerun both")
            maps[key] = gt_class_maps(cams, positions)
        elif key in POSTHOC_KINDS:
            saved = load_arrays(chosen[BASE].run_dir, "posthoc")
            maps[key] = fuse_cams(saved[key][positions].float(), None, size)
        elif key in TRIVIAL_KINDS:
            rows = protocol[(protocol["method"] == key) & (protocol["regime"] == regime)]
            maps[key] = trivial_sample_maps(key, len(positions), map_size(chosen[BASE].config),
                                            size, float(rows["sigma"].iloc[0]))
    thetas = {key: _theta(protocol, key, regime, seed) for key in maps}
    sample = {
        "images": cam["images"][positions],
        "boxes": [cam["boxes"][p] for p in positions],
        "labels": cam["labels"][positions],
        "indices": cam["indices"][positions],
    }
    return sample, maps, thetas


@house_style
def plot_method_maps(
    sample: Mapping[str, Any], maps: Mapping[str, Tensor], thetas: Mapping[str, float],
) -> Figure:
    """A row per map (`ROW_ORDER`: trivial, CAM and its post-hoc maps, the WSOL methods, CSoA),
    a column per image: the normalised map over the image (one colour bar, below), the
    ground-truth box (green) and the box of Eq. 13 at the row's chosen theta (red, dashed;
    none where theta is NaN). Column titles: test-set index and class."""
    keys = _ordered(maps)
    count = len(sample["labels"])
    label_in = 1.05
    panel = min(1.0, (COLUMN_WIDTH_IN - label_in) / max(count, 1))
    fig, axes = plt.subplots(len(keys), count, squeeze=False, layout="constrained",
                             figsize=(min(COLUMN_WIDTH_IN, label_in + panel * count),
                                      panel * len(keys) + 0.9))
    heat = None
    for row, key in enumerate(keys):
        theta = thetas.get(key, math.nan)
        for col in range(count):
            ax = axes[row, col]
            image = np.asarray(sample["images"][col])
            heat = _heat(ax, image, maps[key][col].numpy())
            _gt_boxes(ax, sample["boxes"][col])
            if not math.isnan(theta):
                _box(ax, largest_component_box(binarize(maps[key][col], theta)), PRED_COLOR,
                     dashed=True)
        axes[row, 0].set_ylabel(_wrap(row_label(key), 14), rotation=0, ha="right",
                                va="center", fontsize=MIN_FONT_PT)
    for col in range(count):
        axes[0, col].set_title(f"#{int(sample['indices'][col])}, class "
                               f"{int(sample['labels'][col])}", fontsize=MIN_FONT_PT)
    _heat_bar(fig, heat, axes, label="normalised map", location="bottom")
    fig.legend(handles=[Line2D([], [], color=GT_COLOR, label="ground truth"),
                        Line2D([], [], color=PRED_COLOR, linestyle="--",
                               label="box at the chosen θ")],
               loc="outside upper center", ncols=2, frameon=False, fontsize=MIN_FONT_PT)
    return fig
