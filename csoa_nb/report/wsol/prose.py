"""Chapter 14's sentences, written from `csoa_nb.report.wsol.frames.differences` (never typed
numbers): the verdict paragraph of each regime and the one-sentence headline of the book's first
and last pages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from csoa_nb.report.vocabulary import REGIME_LABELS, metric_prose
from csoa_nb.report.wsol.frames import BASE, HEADLINE_METRICS, VERDICT_WORDS, row_label
from csoa_nb.report.wsol.tables import difference_text


# ------------------------------------------------------------------------------ sentences
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
            parts = [f"{metric_prose(line.metric)} {difference_text(line, digits)}"
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
    stands = "; ".join(f"{row_label(line.method)} {difference_text(line, digits)}"
                       for line in part[part["method"].isin(ours)].itertuples())
    return (f"on {metric_prose(metric)}, shown better than {base}: {_names(better)}; shown "
            f"worse: {_names(worse)} ({_family(diffs)}); {stands} (points, unadjusted 95 % CI)")


