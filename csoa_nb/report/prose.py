"""Sentences generated from our runs, so that the book's prose never states a result its runs
did not produce.

`compare(frame, a, b, metric)` writes "The top-1 loc. error of CSoA is lower than that of CAM
(base) by ..." from the numbers, with a verdict against the seed spread; `compare_all` writes
the sentences of one paragraph, whose comparisons are one family (their verdicts adjusted
together, Holm: `csoa_nb.report.stats.verdicts`); `table1_findings` strings several together;
`ranking_summary` says which method ranks first under how many metrics; `orders_beside`
orders the methods of one of the paper's tables and ours that stand for each other, and counts
the pairs of methods on which the two orders agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

import pandas as pd

from csoa_nb.report.stats import (
    Difference,
    Verdict,
    Wording,
    difference,
    mean_std,
    signed,
    verdict_words,
    verdicts,
)
from csoa_nb.report.tables import check_metrics, formatted, numeric, ours_table, select
from csoa_nb.report.vocabulary import column_label, higher_is_better, metric_prose, prose_label


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


def orders_beside(paper_df: pd.DataFrame, ours_df: pd.DataFrame, metric: str,
                  row_map: Mapping[Any, str], *, digits: int = 2) -> str:
    """The methods that stand in both the paper's table and ours, ordered by `metric` in each
    (best first), and on how many pairs of them the two orders agree.

    Only the order can be set beside the paper's: its numbers and ours come from different data
    and networks. A pair of methods agrees when both tables put the same one ahead; a tie on
    either side does not agree.

    Args:
        paper_df: the paper's table (`csoa_nb.report.paper.paper_table`).
        ours_df: an `ours_table` (its means in `.attrs["mean"]`), rows named by our labels.
        metric: a metric key (e.g. "top1_loc_err"); its column (`column_label`) must be in both.
        row_map: the paper's row name -> our row label (`vocabulary.paper_row_map(table)`).
            Rows missing from either table, or without a number in the paper's (a "–"),
            are left out.
        digits: decimals of our means (the paper's numbers are printed as the paper prints them).

    Returns:
        E.g. "By top-1 loc. error, best first: the paper's rows CSoA (as written) 37.69,
        ADL 47.64, ACoL 54.08, CAM (base) 55.85; ours CSoA (as written) 30.00, ...
        The two orders agree on 5 of the 6 pairs of methods."
    """
    column = column_label(metric)
    if column not in paper_df.columns:
        raise ValueError(f"the paper's table has no column {column!r} (metric {metric!r}); "
                         f"it has {list(paper_df.columns)}")
    ours = numeric(ours_df)
    if column not in ours.columns:
        raise ValueError(f"our table has no column {column!r} (metric {metric!r}); it has "
                         f"{list(ours.columns)}")
    printed = formatted(paper_df[[column]])[column]
    paper_values = paper_df[column].astype(float)
    pairs = [(row_map[row], row) for row in paper_df.index
             if row in row_map and row_map[row] in ours.index
             and not pd.isna(paper_values[row])]
    name = metric_prose(metric)
    if len(pairs) < 2:
        stands = ", ".join(label for label, _ in pairs) or "no method"
        return (f"By {name}, only {stands} stands in both the paper's table and ours: there is "
                "no order to compare.")
    paper = {label: float(paper_values[row]) for label, row in pairs}
    mine = {label: float(ours.loc[label, column]) for label, _ in pairs}
    sign = -1.0 if higher_is_better(metric) else 1.0

    def ranked(values: dict[str, float]) -> list[str]:
        return sorted(values, key=lambda label: sign * values[label])

    agree = sum(
        1 for a, b in combinations(paper, 2)
        if (paper[a] - paper[b]) * (mine[a] - mine[b]) > 0
    )
    total = len(pairs) * (len(pairs) - 1) // 2
    by_row = dict(pairs)
    paper_order = ", ".join(f"{label} {printed[by_row[label]]}" for label in ranked(paper))
    our_order = ", ".join(f"{label} {mine[label]:.{digits}f}" for label in ranked(mine))
    verdict = ("The two orders are the same" if agree == total else
               f"The two orders agree on {agree} of the {total} pairs of methods")
    return (f"By {name}, best first: the paper's rows {paper_order}; ours {our_order}. "
            f"{verdict}.")


# ---------------------------------------------------------------------------- sentences
#: A comparison's verdict in a sentence (`Comparison.verdict`): "better (Holm, 10 tests)",
#: "suggested worse (unadjusted p = 0.031)", "no difference shown", "one seed".
PROSE_WORDS = Wording(not_shown="no difference shown")


#: Metrics that are no percentage: shares and ratios (no unit) and times (seconds).
_UNITS = {"box_mass_ratio": "", "fg_saturated": "", "cam_nonpositive": "", "wall_time_s": " s"}


def _unit(metric: str) -> str:
    """The unit a difference of `metric` is printed with: " points" for percentages."""
    return _UNITS.get(metric, " points")


@dataclass(frozen=True)
class Comparison:
    """Mean ± std of one metric for two rows of a sweep, the 95 % confidence interval of
    their difference (`csoa_nb.report.stats.difference`: paired by seed where the seeds match)
    and the verdict within its family (`judged`; a comparison alone is a family of one).

    `shown` is True when the difference is shown after the family's adjustment, False when it
    is not (or only suggested), None with a single seed (no interval).
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
    judged: Verdict | None = None

    @property
    def verdict_in_family(self) -> Verdict:
        """`judged`, or this comparison as a family of one."""
        if self.judged is not None:
            return self.judged
        return verdicts([self.diff], [higher_is_better(self.metric)])[0]

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
        strength = self.verdict_in_family.strength
        return None if strength == "one seed" else strength == "shown"

    @property
    def a_better_shown(self) -> bool:
        """True only when a is better and the 95 % interval of the difference excludes 0."""
        return bool(self.a_is_better and self.shown)

    @property
    def verdict(self) -> str:
        """"better"/"worse", "suggested ..." (unadjusted p), "no difference shown" or "one seed"."""
        return verdict_words(self.verdict_in_family, PROSE_WORDS)

    def sentence(self, digits: int = 2) -> str:
        name = metric_prose(self.metric)
        unit = _unit(self.metric)
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
        judged = self.verdict_in_family
        interval = f"{self.diff.interval(digits)}{unit} ({self.diff.how()})"
        family = "" if judged.family <= 1 else f", Holm over the {judged.family} comparisons"
        if judged.strength == "one seed":
            verdict = ("a single seed, so there is no confidence interval and no difference can "
                       "be told apart from noise")
        elif judged.strength == "shown":
            verdict = f"the difference is shown{family}, its 95 % CI is {interval}"
        elif judged.strength == "suggested":
            verdict = (f"the difference is suggested, not shown: its 95 % CI {interval} excludes "
                       f"0 (p = {judged.p:.3f}), but not after Holm's adjustment over the "
                       f"{judged.family} comparisons")
        else:
            verdict = (f"these runs do not show a difference, its 95 % CI {interval} "
                       "contains 0")
        return f"{head} ({detail}): {verdict}."

    def short(self, digits: int = 1) -> str:
        """"CSoA-4-5 − CSoA-3-5, MaxBoxAccV2: −3.9 points [−7.0, −0.7], suggested worse
        (unadjusted p = 0.027)": the difference, its interval and the verdict in its family."""
        return (f"{self.label_a} − {self.label_b}, {metric_prose(self.metric)}: "
                f"{signed(self.difference, digits)}{_unit(self.metric)} "
                f"{self.diff.interval(digits)}, {self.verdict}")

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
    check_metrics(selected, [metric])
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


def as_family(comparisons: list[Comparison]) -> list[Comparison]:
    """The `comparisons` (of any metrics) as one family, the claims of one paragraph: each
    with its verdict adjusted over all of them (Holm, `stats.verdicts`)."""
    judged = verdicts([c.diff for c in comparisons],
                      [higher_is_better(c.metric) for c in comparisons])
    return [replace(c, judged=v) for c, v in zip(comparisons, judged, strict=True)]


def family_summary(comparisons: list[Comparison]) -> str:
    """A family (`as_family`) in one sentence: how many of its comparisons are shown after
    Holm's adjustment, and each shown or suggested one in short (`Comparison.short`)."""
    if all(c.verdict_in_family.strength == "one seed" for c in comparisons):
        what = ("This comparison has one seed" if len(comparisons) == 1
                else f"These {len(comparisons)} comparisons have one seed each")
        return f"{what}: no interval, no verdict."
    shown = [c for c in comparisons if c.verdict_in_family.strength == "shown"]
    hinted = [c for c in comparisons if c.verdict_in_family.strength == "suggested"]
    head = (f"Of these {len(comparisons)} comparisons (Holm over them), "
            + ("none is shown" if not shown else f"{len(shown)} "
               + ("is" if len(shown) == 1 else "are") + " shown: "
               + "; ".join(c.short() for c in shown)))
    if hinted:
        head += ("; suggested, not shown after the adjustment: "
                 + "; ".join(c.short() for c in hinted))
    return head + "."


def compare_all(
    frame: pd.DataFrame, pairs: list[tuple[Any, Any]], metric: str, *, by: str = "method",
    **where: Any,
) -> list[Comparison]:
    """`compare_runs` for each `(a, b)` of `pairs`, as one family (`as_family`)."""
    return as_family([compare_runs(frame, a, b, metric, by=by, **where) for a, b in pairs])


def compare(frame: pd.DataFrame, a: Any, b: Any, metric: str, *, by: str = "method",
            **where: Any) -> str:
    """`metric` of `a` vs `b` in words: difference, both means, its 95 % CI and paired test."""
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
    """What each step between Table 1's rows of one regime adds, as Markdown bullets written
    from the numbers: the inner loss of Eq. 5 (ConfSeg against the two-head union without it),
    CoAug on top of ConfSeg (CSoA against ConfSeg), and our reading of Eq. 10 (CoAug+fix
    against CoAug, CSoA+fix against CSoA), where the frame has both rows. The steps are one
    family (`compare_all`: Holm over them); each sentence names its metric. Every row against
    CAM is chapter 15's table (`findings.versus_cells`), not repeated here with other words.
    """
    selected = select(frame, regime=regime)
    present = set(selected["method"])
    pairs = [("confseg", "twohead"), ("csoa", "confseg"), ("coaug_fix", "coaug"),
             ("csoa_fix", "csoa")]
    found = compare_all(selected, [(a, b) for a, b in pairs if a in present and b in present],
                        metric)
    lines = [f"- Best first by {metric_prose(metric)}: {ordering(selected, metric, digits=1)}."]
    lines += ["- " + c.sentence(digits=1) for c in found]
    return "\n".join(lines)
