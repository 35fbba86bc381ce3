"""The book's answer in a few lines: the abstract that opens page 00 and chapter 15 and closes
chapter 16 (its forest plot is `csoa_nb.report.charts.forest_plot` of `forest_cells`).

Both read `findings.versus_cells`, the numbers and verdicts of chapter 15's row-vs-CAM tables
(one family per regime, Holm over its cells), so a comparison has one number and one word on
every page that states it. The sentences are built from those cells: no result is typed here.
"""

from __future__ import annotations

import pandas as pd

from csoa_nb import methods
from csoa_nb.report.findings import versus_cells
from csoa_nb.report.stats import difference_text
from csoa_nb.report.vocabulary import REGIME_LABELS, REGIME_ORDER, metric_prose

#: The comparisons the abstract states: CSoA as the paper writes it and with our Eq. 10 fix.
ABSTRACT_ROWS = ("csoa", "csoa_fix")
#: Its metrics: Choe et al.'s threshold-free MaxBoxAccV2 (the verdict), then the paper's top-1
#: loc. error at its fixed theta.
ABSTRACT_METRICS = ("max_box_acc_v2", "top1_loc_err")
#: The regime of the paper's protocol, which the abstract's verdict is about.
ABSTRACT_REGIME = "pretrained"


def run_theta(frame: pd.DataFrame) -> float:
    """The one threshold theta at which the runs of `frame` score their top-1 loc. error.

    Raises:
        ValueError: the runs use several thresholds (their errors are not comparable).
    """
    thetas = sorted(set(frame["theta"].astype(float)))
    if len(thetas) != 1:
        raise ValueError(f"the runs use the thresholds {thetas}, not one: select one theta")
    return thetas[0]


def forest_cells(frame: pd.DataFrame, metrics: tuple[str, ...] = ABSTRACT_METRICS
                 ) -> pd.DataFrame:
    """`findings.versus_cells` of every regime in `frame` (each regime its own family, as in
    chapter 15), kept to `metrics`."""
    regimes = [r for r in REGIME_ORDER if r in set(frame["regime"])]
    cells = pd.concat([versus_cells(frame, regime) for regime in regimes], ignore_index=True)
    return cells[cells["metric"].isin(metrics)].reset_index(drop=True)


def _cell(cells: pd.DataFrame, row: str, metric: str, regime: str) -> pd.Series:
    found = cells[(cells["row"] == row) & (cells["metric"] == metric)
                  & (cells["regime"] == regime)]
    if found.empty:
        raise ValueError(f"no {row!r} − CAM cell for {metric!r} in regime {regime!r}")
    return found.iloc[0]


def _number(cell: pd.Series, metric: str, theta: float) -> str:
    where = f" at θ = {theta:g}" if metric == "top1_loc_err" else ""
    return (f"{metric_prose(metric)}{where} "
            f"{difference_text(cell['mean'], cell['low'], cell['high'], cell['word'])}")


def _phrase(cell: pd.Series) -> str:
    """How the verdict on MaxBoxAccV2 reads in the lead sentence."""
    better = cell["mean"] > 0
    if cell["strength"] == "shown":
        return "localizes better than CAM" if better else "localizes worse than CAM"
    if cell["strength"] == "suggested":
        side = "better" if better else "worse"
        return f"may localize {side} than CAM (not shown after Holm's adjustment)"
    if cell["strength"] == "not shown":
        return "cannot be told apart from CAM"
    return "has too few seeds for a verdict"


def abstract_markdown(frame: pd.DataFrame) -> str:
    """The abstract, as Markdown: the verdict on CSoA as written and with our fix against CAM
    by MaxBoxAccV2 (fine-tuned, the paper's protocol), each with its numbers, why, and how sure.
    `frame`: `results.runs_frame` of Table 1's sweep (its errors at one theta, `run_theta`)."""
    theta = run_theta(frame)
    cells = versus_cells(frame, ABSTRACT_REGIME)
    box = "max_box_acc_v2"
    lead = [_cell(cells, row, box, ABSTRACT_REGIME) for row in ABSTRACT_ROWS]
    seeds = int(lead[0]["seeds"])
    lines = [
        f"**The answer.** On our synthetic benchmark, fine-tuned as the paper trains, "
        f"**{methods.label(ABSTRACT_ROWS[0])} {_phrase(lead[0])}**, while "
        f"**{methods.label(ABSTRACT_ROWS[1])} {_phrase(lead[1])}**, by the threshold-free "
        f"{metric_prose(box)} ({seeds} seed{'s' if seeds != 1 else ''} each):",
        "",
    ]
    for row in ABSTRACT_ROWS:
        numbers = "; ".join(_number(_cell(cells, row, metric, ABSTRACT_REGIME), metric, theta)
                            for metric in ABSTRACT_METRICS)
        lines.append(f"- {methods.label(row)} − CAM: {numbers}.")
    lines += [
        "",
        "**Why.** As printed, Eq. 10's confident background makes a map that is exactly an "
        "object smaller than half the image pay a full background term, while the saturated "
        "map S ≡ 1 pays none ({prf:ref}`prop-04-flaw`): CoAug rewards maps that localize "
        "nothing. Our reading of Eq. 10 (ours) gives every binary map a zero background term "
        "({prf:ref}`prop-04-fix`, {doc}`04_coaug`).",
        "",
        f"**How sure.** Each difference is paired by seed, with its 95 % t interval; the "
        f"verdicts are Holm-adjusted over the {len(cells)} cells of chapter 15's fine-tuned "
        "row-vs-CAM table. {doc}`15_results` adds a bootstrap over seeds and test images and "
        "every other claim; the benchmark is synthetic ({doc}`01_data`), not CUB.",
    ]
    return "\n".join(lines)


def takeaway(frame: pd.DataFrame, regime: str = ABSTRACT_REGIME,
             rows: tuple[str, ...] = ABSTRACT_ROWS,
             metrics: tuple[str, ...] = ABSTRACT_METRICS) -> str:
    """One sentence for a chapter's summary: each of `rows` − CAM in `regime` on `metrics`,
    with the numbers and words of chapter 15's row-vs-CAM table (`findings.versus_cells`)."""
    theta = run_theta(frame[frame["regime"] == regime])
    cells = versus_cells(frame, regime)
    parts = ["; ".join(_number(_cell(cells, row, metric, regime), metric, theta)
                       for metric in metrics) for row in rows]
    said = " ".join(f"{methods.label(row)} − CAM: {part}." for row, part in zip(
        rows, parts, strict=True))
    return f"{REGIME_LABELS[regime].capitalize()}, against CAM ({{doc}}`15_results`). {said}"
