"""Figures of results (our runs beside the paper's): method bars, theta curves, paper vs ours,
rankings.

Each is a matplotlib `Figure`, not registered with pyplot, so a notebook cell that ends with
one shows it once, without ``%matplotlib inline``: the first one enables the inline backend's
display where the kernel uses it, as the runbook and ipykernel set it. Each returns through
`csoa_nb.report.style.fit_to_column` (the house style: at most the text column's width, no
text below 9 pt), and is laid out for that width: panels that would not fit side by side are
stacked, legends of many methods go below the axes. Figures of maps are in
`csoa_nb.report.plots`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from csoa_nb import methods
from csoa_nb.report.style import COLUMN_WIDTH_IN, fit_to_column
from csoa_nb.report.tables import check_metrics, numeric, order_key, select
from csoa_nb.report.vocabulary import (
    MISSING,
    REGIME_LABELS,
    REGIME_ORDER,
    column_label,
    higher_is_better,
    row_label,
)

# -------------------------------------------------------------------------------- figures
#: A colour per table row, the same in every figure (`csoa_nb.methods`).
METHOD_COLORS = {key: row.color for key, row in methods.ROWS.items()}
REGIME_COLORS = {"pretrained": "#1f77b4", "scratch": "#ff7f0e"}
#: The least height, in points, of the axis of the paper's Table 3 panel (`plot_theta`): its
#: three errors lie within 1.5 points, which a tight axis would draw as a deep valley.
PAPER_SPAN = 10.0
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
    """`csoa_nb.report.style.fit_to_column`: the house style's width, fonts and dpi; and a kernel
    that can show the figure (`_enable_inline_display`)."""
    _enable_inline_display()
    return fit_to_column(fig, width=COLUMN_WIDTH_IN)


def _enable_inline_display() -> None:
    """Let an IPython kernel show this module's figures, which pyplot does not manage: the inline
    backend registers its PNG formatter when imported, and matplotlib imports it only for a
    pyplot figure. Nothing happens outside IPython or under another ``MPLBACKEND``."""
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
    check_metrics(selected, metrics)
    keys = sorted(selected[rows].unique(), key=lambda k: order_key(rows, k))
    hues = [None] if hue is None else sorted(selected[hue].unique(),
                                             key=lambda k: order_key(hue, k))
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
    check_metrics(selected, [metric])
    panels = 2 if paper is not None else 1
    keys = selected[hue].nunique()
    fig, axes = _figure(panels, width=COLUMN_WIDTH_IN / panels,
                        height=3.4 + 0.22 * math.ceil(keys / 2))
    if paper is not None:
        ax = axes[0]
        thetas, values = paper.index.astype(float), paper[paper_column].astype(float)
        ax.plot(thetas, values, "o-", color="k")
        for theta, value in zip(thetas, values, strict=True):
            ax.annotate(f"{value:.2f}", (theta, value), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize="small")
        # at least PAPER_SPAN points of axis, so that a gap of one point looks like one
        middle, span = (values.max() + values.min()) / 2, values.max() - values.min()
        half = max(span * 0.6, PAPER_SPAN / 2)
        ax.set_ylim(middle - half, middle + half)
        ax.set_title(_wrap(paper.attrs.get("label", "paper"), 30), fontsize="medium")
        ax.set_xlabel("θ")
        ax.set_ylabel(f"{paper_column} (%)")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    keys = sorted(selected[hue].unique(), key=lambda k: order_key(hue, k))
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


def forest_plot(cells: pd.DataFrame, theta: float) -> Figure:
    """Every Table 1 row − CAM with its 95 % t interval, a panel per metric of `cells`
    (`csoa_nb.report.abstract.forest_cells`), a colour per regime; a filled marker where the
    difference is shown after Holm's adjustment, a hollow one where it is not. The dashed
    line is CAM."""
    metrics = list(dict.fromkeys(cells["metric"]))
    rows = list(dict.fromkeys(cells["row"]))
    regimes = [r for r in REGIME_ORDER if r in set(cells["regime"])]
    fig = Figure(figsize=(COLUMN_WIDTH_IN, 0.45 * len(rows) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for k, regime in enumerate(regimes):
            offset = 0.18 * (k - (len(regimes) - 1) / 2)
            for y, row in enumerate(rows):
                found = cells[(cells["row"] == row) & (cells["metric"] == metric)
                              & (cells["regime"] == regime)]
                if found.empty:
                    continue
                cell = found.iloc[0]
                color = REGIME_COLORS[regime]
                ax.plot([cell["low"], cell["high"]], [y + offset] * 2, color=color, lw=1.5)
                ax.plot(cell["mean"], y + offset, "o", color=color, ms=6,
                        mfc=color if cell["strength"] == "shown" else "white",
                        label=REGIME_LABELS[regime] if y == 0 else None)
        ax.axvline(0, color="#555555", ls="--", lw=1)
        better = "→ better" if metric == "max_box_acc_v2" else "← better"
        where = f" at θ = {theta:g}" if metric == "top1_loc_err" else ""
        ax.set_xlabel(f"{column_label(metric)}{where}\nrow − CAM (points; {better})")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), [methods.label(r) for r in rows])
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(regimes), frameon=False)
    return _to_column(fig)
