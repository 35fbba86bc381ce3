"""Differences between two methods over seeds, with a 95 % confidence interval (scipy.stats).

A verdict "A beats B" needs more than two means: with 3-5 seeds per row, the seed noise of our
benchmark is several points. `difference` takes the metric of each seed of two rows and gives
the mean difference A - B with Student's t confidence interval:

- *paired by seed* when both rows have the same seeds (same data order and initial head, so
  the seed noise they share cancels): `scipy.stats.ttest_rel`;
- otherwise unpaired, Welch's t (`scipy.stats.ttest_ind(equal_var=False)`).

The interval excludes 0 -> the difference is shown at the 95 % level; it contains 0 -> these
runs do not show a difference (which is not the same as showing there is none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Difference:
    """Mean of A - B over seeds and its `LEVEL` confidence interval (NaN with < 2 seeds)."""

    mean: float
    low: float
    high: float
    n: int
    paired: bool

    @property
    def shown(self) -> bool | None:
        """True when the interval excludes 0, False when it contains it, None if unknown."""
        if math.isnan(self.low):
            return None
        return self.low > 0 or self.high < 0

    def interval(self, digits: int = 1) -> str:
        """"[-3.1, 0.4]" (or "n/a" without an interval)."""
        if math.isnan(self.low):
            return "n/a"
        return f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

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
            return Difference(mean, mean, mean, len(diffs), True)
        ci = stats.ttest_rel(a.to_numpy(), b.to_numpy()).confidence_interval(level)
        return Difference(mean, float(ci.low), float(ci.high), len(diffs), True)
    mean = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return Difference(mean, nan, nan, len(a) + len(b), False)
    result = stats.ttest_ind(a.to_numpy(), b.to_numpy(), equal_var=False)
    ci = result.confidence_interval(level)
    return Difference(mean, float(ci.low), float(ci.high), len(a) + len(b), False)


def mean_interval(values: pd.Series, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of `values` and its t confidence interval (NaN bounds with fewer than 2 values)."""
    values = values.astype(float).dropna()
    mean = float(values.mean())
    if len(values) < 2 or float(values.std(ddof=1)) == 0.0:
        spread = float("nan") if len(values) < 2 else 0.0
        return mean, mean - spread, mean + spread
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)
