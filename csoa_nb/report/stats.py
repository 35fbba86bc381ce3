"""Differences between two methods over seeds, with a 95 % confidence interval (scipy.stats).

A verdict "A beats B" needs more than two means: with 3-5 seeds per row, the seed noise of our
benchmark is several points. `difference` takes the metric of each seed of two rows and gives
the mean difference A - B with Student's t confidence interval:

- *paired by seed* when both rows have the same seeds (same data order and initial head, so
  the seed noise they share cancels): `scipy.stats.ttest_rel`;
- otherwise unpaired, Welch's t (`scipy.stats.ttest_ind(equal_var=False)`).

The interval excludes 0 -> the difference is shown at the 95 % level; it contains 0 -> these
runs do not show a difference (which is not the same as showing there is none).

A printed table or a paragraph makes many such claims at once: with 24 comparisons at 5 %
each, one "shown" in every 20 true nulls is expected by chance. So every verdict belongs to a
*family* (the comparisons printed together), and its word comes from the family's p-values
adjusted by Holm's step-down method (`holm`; it controls the chance of any false "shown" in
the family at 5 %, whatever their dependence): `verdicts` is the one function that judges them
and `verdict_words` the one that words a verdict (each family of sentences passes its own
`Wording`: "better" / "worse", "reproduced" / "opposite", ...). A difference whose own p-value
is below 5 % but does not survive the adjustment is "suggested", with its unadjusted p. The
unadjusted t interval stays printed beside the word.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95


#: The minus sign of every printed number (U+2212), never the hyphen "-".
MINUS = "\u2212"


def signed(value: float, digits: int = 1) -> str:
    """A difference as the book prints it: "+1.2", "−1.2" (a true minus), "+0.0"."""
    return f"{value:+.{digits}f}".replace("-", MINUS)


def interval_text(low: float, high: float, digits: int = 1) -> str:
    """A confidence interval as the book prints it: "[−3.1, +0.4]"; "n/a" without one."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return f"[{signed(low, digits)}, {signed(high, digits)}]"


def difference_text(mean: float, low: float, high: float, word: str, digits: int = 1) -> str:
    """A difference in a sentence: "+1.2 points [−0.3, +2.7], *better (Holm, 24 tests)*";
    without an interval (one seed) just "+1.2 points, *one seed*"."""
    interval = interval_text(low, high, digits)
    interval = "" if interval == "n/a" else f" {interval}"
    return f"{signed(mean, digits)} points{interval}, *{word}*"


def mean_std(mean: float, std: float, n: int, digits: int | None = None) -> str:
    """"m ± s" over n seeds (a true minus), or just "m" for a single seed. `digits` None:
    one decimal for values of a point or more (percentages), two below (shares, ratios)."""
    if digits is None:
        digits = 1 if abs(mean) >= 1 else 2
    if n < 2:
        return signed(mean, digits).removeprefix("+")
    return f"{signed(mean, digits).removeprefix('+')} ± {std:.{digits}f}"


@dataclass(frozen=True)
class Difference:
    """Mean of A - B over seeds and its `LEVEL` confidence interval (NaN with < 2 seeds)."""

    mean: float
    low: float
    high: float
    n: int
    paired: bool
    #: the t test's two-sided p-value for "no difference" (NaN without an interval)
    p: float = float("nan")

    @property
    def shown(self) -> bool | None:
        """True when the interval excludes 0, False when it contains it, None if unknown."""
        if math.isnan(self.low):
            return None
        return self.low > 0 or self.high < 0

    def interval(self, digits: int = 1) -> str:
        """"[−3.1, +0.4]" (or "n/a" without an interval): `interval_text`."""
        return interval_text(self.low, self.high, digits)

    def how(self) -> str:
        """"paired over 5 seeds" / "Welch, 3 and 5 seeds"-style provenance of the interval."""
        return f"paired t over {self.n} seeds" if self.paired else f"Welch t, {self.n} runs"


def difference(a: pd.Series, b: pd.Series, level: float = LEVEL) -> Difference:
    """A - B from per-seed values `a`, `b` (Series indexed by seed).

    Paired (`ttest_rel`) when the seeds are the same, Welch (`ttest_ind`) otherwise.
    """
    a, b = a.astype(float).dropna(), b.astype(float).dropna()
    if a.empty or b.empty:
        raise ValueError("difference needs at least one value on each side")
    paired = len(a) == len(b) and set(a.index) == set(b.index)
    nan = float("nan")
    if paired:
        a, b = a.sort_index(), b.loc[a.sort_index().index]
        diffs = a.to_numpy() - b.to_numpy()
        mean = float(diffs.mean())
        if len(diffs) < 2:
            return Difference(mean, nan, nan, len(diffs), True)
        if np.allclose(diffs, diffs[0]):  # no spread at all: the interval is the point
            return Difference(mean, mean, mean, len(diffs), True, 0.0 if mean else 1.0)
        result = stats.ttest_rel(a.to_numpy(), b.to_numpy())
        ci = result.confidence_interval(level)
        return Difference(mean, float(ci.low), float(ci.high), len(diffs), True,
                          float(result.pvalue))
    mean = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return Difference(mean, nan, nan, len(a) + len(b), False)
    result = stats.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
    ci = result.confidence_interval(level)
    return Difference(mean, float(ci.low), float(ci.high), len(a) + len(b), False,
                      float(result.pvalue))


def mean_interval(values: pd.Series, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of `values` and its t confidence interval (NaN bounds with fewer than 2 values)."""
    values = values.astype(float).dropna()
    mean = float(values.mean())
    if len(values) < 2 or float(values.std(ddof=1)) == 0.0:
        spread = float("nan") if len(values) < 2 else 0.0
        return mean, mean - spread, mean + spread
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def one_sample(values: pd.Series, level: float = LEVEL) -> Difference:
    """The mean of per-seed differences from a fixed value and its one-sample t interval
    and p-value (`scipy.stats.ttest_1samp`)."""
    values = values.astype(float).dropna()
    mean, low, high = mean_interval(values, level)
    if len(values) < 2:
        p = float("nan")
    elif low == high:  # no spread: the interval is the point
        p = 0.0 if mean else 1.0
    else:
        p = float(stats.ttest_1samp(values.to_numpy(), 0.0).pvalue)
    return Difference(mean, low, high, len(values), False, p)


# ---------------------------------------------------------------------------- families
def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of one family's p-values (Holm 1979), in their order.

    With the m finite p-values sorted, p_(1) <= ... <= p_(m), the adjusted value of p_(k) is
    max_{j <= k} min(1, (m - j + 1) p_(j)): a difference is shown at level alpha, with the
    chance of any false "shown" in the family at most alpha, when its adjusted p is below
    alpha. NaN (no test: one seed) stays NaN and is not counted in m. Written here rather than
    taken from statsmodels (`multipletests(method="holm")`, the same numbers) to keep the
    book's dependencies as they are; `tests/test_stats.py` checks it on hand-computed values.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


@dataclass(frozen=True)
class Wording:
    """The words of one family's verdicts (`verdict_words`).

    A shown difference is `positive` or `negative` by its direction, followed by "(Holm, N
    tests)" in a family of several tests when `holm`; a suggested one is the template
    `suggested`, with `{side}` (`suggested_sides`, by default the two directions) and `{p}`
    (the unadjusted p-value); `not_shown` and `one_seed` (also: no verdict at all) as they are.
    """

    positive: str = "better"
    negative: str = "worse"
    holm: bool = True
    suggested: str = "suggested {side} (unadjusted p = {p:.3f})"
    suggested_sides: tuple[str, str] | None = None
    not_shown: str = "not shown"
    one_seed: str = "one seed"


#: "better (Holm, 24 tests)", "suggested worse (unadjusted p = 0.031)", "not shown",
#: "one seed": the words of a row against a base (`Verdict.word`).
BETTER_WORSE = Wording()


@dataclass(frozen=True)
class Verdict:
    """What one comparison of a family shows: `strength` is "shown" (the Holm-adjusted p
    below 1 - LEVEL), "suggested" (only the unadjusted p is), "not shown", or "one seed" (no
    test); `sign` +1 or -1 is the direction of the difference; `family` the number of tests
    in the family; `p` and `p_adjusted` the two p-values."""

    strength: str
    sign: int
    family: int
    p: float
    p_adjusted: float

    def word(self, wording: Wording = BETTER_WORSE) -> str:
        """The verdict in words (`verdict_words`), e.g. "better (Holm, 24 tests)"."""
        return verdict_words(self, wording)


def verdict_words(judged: Verdict | None, wording: Wording = BETTER_WORSE) -> str:
    """The one place a verdict becomes words, in the `wording` of its family: e.g.
    "better (Holm, 24 tests)", "suggested worse (unadjusted p = 0.031)", "not shown",
    "one seed" (`BETTER_WORSE`). None (nothing measured) reads as `wording.one_seed`."""
    if judged is None or judged.strength == "one seed":
        return wording.one_seed
    if judged.strength == "not shown":
        return wording.not_shown
    if judged.strength == "suggested":
        sides = wording.suggested_sides or (wording.positive, wording.negative)
        return wording.suggested.format(side=sides[0] if judged.sign > 0 else sides[1],
                                        p=judged.p)
    side = wording.positive if judged.sign > 0 else wording.negative
    if wording.holm and judged.family != 1:
        return f"{side} (Holm, {judged.family} tests)"
    return side


ALPHA = 1 - LEVEL


def verdicts(differences: Sequence[Difference], positive: Sequence[bool]) -> list[Verdict]:
    """The verdicts of one family of differences, in their order: the p-values adjusted
    together (`holm`). `positive[i]`: whether a positive mean of difference i is the
    direction called `Wording.positive` (e.g. "better": a higher metric, or a lower error)."""
    adjusted = holm([d.p for d in differences])
    size = int(np.sum(~np.isnan([d.p for d in differences])))
    out = []
    for diff, up, p_adj in zip(differences, positive, adjusted, strict=True):
        sign = 1 if (diff.mean > 0) == up else -1
        if math.isnan(diff.p):
            strength = "one seed"
        elif p_adj < ALPHA:
            strength = "shown"
        elif diff.p < ALPHA:
            strength = "suggested"
        else:
            strength = "not shown"
        out.append(Verdict(strength, sign, size, diff.p, float(p_adj)))
    return out


# ---------------------------------------------------------------------------- bootstrap
def box_acc_v2(curve: np.ndarray) -> np.ndarray:
    """MaxBoxAccV2 in % (Choe et al., CVPR 2020) of BoxAcc fractions ``... x IoUs x thresholds``."""
    return 100.0 * curve.max(axis=-1).mean(axis=-1)


def bootstrap_difference(
    hits_a: dict[int, np.ndarray], hits_b: dict[int, np.ndarray], *, level: float = LEVEL,
    replicates: int = 2000, seed: int = 0,
) -> Difference:
    """MaxBoxAccV2 of A − B with a hierarchical bootstrap interval over seeds and test images.

    `hits_a[s]`, `hits_b[s]`: the per-image BoxAcc hits of seed s (`engine.evaluate.box_hits`,
    ``N x IoU levels x thresholds``, the same N test images for both). Each replicate draws
    the seeds with replacement, then, within each drawn seed, the test images with replacement
    (the same draw for A and B: paired by seed and by image), and takes the mean over drawn
    seeds of MaxBoxAccV2(A) − MaxBoxAccV2(B). The interval is the replicates' percentile
    interval; it carries the image sampling that the t interval over seeds ignores. `mean` is
    the observed difference; `p` is NaN (no test: this interval sits beside the t test's).
    """
    seeds = sorted(set(hits_a) & set(hits_b))
    if not seeds:
        raise ValueError("bootstrap_difference needs at least one seed on both sides")
    flat = {s: (hits_a[s].reshape(len(hits_a[s]), -1).astype(np.float32),
                hits_b[s].reshape(len(hits_b[s]), -1).astype(np.float32)) for s in seeds}
    shape = hits_a[seeds[0]].shape[1:]
    observed = float(np.mean([box_acc_v2(a.mean(0).reshape(shape))
                              - box_acc_v2(b.mean(0).reshape(shape)) for a, b in flat.values()]))
    rng = np.random.default_rng(seed)
    out = np.empty(replicates)
    for r in range(replicates):
        drawn = rng.choice(len(seeds), size=len(seeds), replace=True)
        diffs = []
        for k in drawn:
            a, b = flat[seeds[k]]
            weights = rng.multinomial(len(a), np.full(len(a), 1.0 / len(a))) / len(a)
            pair = np.stack([weights @ a, weights @ b]).reshape(2, *shape)
            diffs.append(box_acc_v2(pair[0]) - box_acc_v2(pair[1]))
        out[r] = np.mean(diffs)
    tail = (1 - level) / 2
    low, high = np.quantile(out, [tail, 1 - tail])
    return Difference(observed, float(low), float(high), len(seeds), True)
