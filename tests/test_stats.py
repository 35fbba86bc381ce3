"""Confidence intervals of differences between methods (csoa_nb.report.stats), on hand-worked
cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from csoa_nb.report.stats import (
    Difference,
    bootstrap_difference,
    difference,
    holm,
    mean_interval,
    verdicts,
)

T_975_2 = 4.302652729749464  # Student's t, 97.5 % quantile, 2 degrees of freedom


def test_paired_difference_by_hand():
    # A - B per seed = [1, 2, 3]: mean 2, sample sd 1, se 1/sqrt(3); 95 % CI 2 -+ t * se
    a = pd.Series([11.0, 22.0, 33.0], index=[0, 1, 2])
    b = pd.Series([10.0, 20.0, 30.0], index=[0, 1, 2])
    d = difference(a, b)
    half = T_975_2 / math.sqrt(3)
    assert d.paired and d.n == 3
    assert d.mean == pytest.approx(2.0)
    assert (d.low, d.high) == pytest.approx((2.0 - half, 2.0 + half))
    assert d.shown is False  # [-0.48, 4.48] contains 0
    assert d.interval(2) == "[−0.48, +4.48]"


def test_pairing_follows_the_seeds_not_the_order():
    a = pd.Series([33.0, 11.0, 22.0], index=[2, 0, 1])
    b = pd.Series([10.0, 20.0, 30.0], index=[0, 1, 2])
    assert difference(a, b).mean == pytest.approx(2.0)
    assert difference(a, b).high == pytest.approx(2.0 + T_975_2 / math.sqrt(3))


def test_paired_removes_shared_seed_noise():
    # the seeds move both rows alike: unpaired, the spread hides a constant gap of 1 point
    a = pd.Series([41.0, 51.0, 61.0, 46.0], index=[0, 1, 2, 3])
    b = pd.Series([40.0, 50.0, 60.0, 45.0], index=[0, 1, 2, 3])
    assert difference(a, b).shown is True  # every diff is 1: the interval is [1, 1]
    unpaired = difference(a, b.set_axis([4, 5, 6, 7]))
    assert not unpaired.paired and unpaired.shown is False


def test_welch_by_hand():
    # a = [1, 2, 3], b = [4, 6]: means 2 and 5, variances 1 and 2; se^2 = 1/3 + 2/2 = 4/3;
    # Welch-Satterthwaite df = (4/3)^2 / ((1/3)^2 / 2 + 1^2 / 1) = 1.6842
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([4.0, 6.0], index=[0, 1])
    d = difference(a, b)
    from scipy import stats

    df = (4 / 3) ** 2 / ((1 / 3) ** 2 / 2 + 1.0)
    half = stats.t.ppf(0.975, df) * math.sqrt(4 / 3)
    assert not d.paired
    assert (d.mean, d.low, d.high) == pytest.approx((-3.0, -3.0 - half, -3.0 + half))


def test_one_seed_has_no_interval():
    d = difference(pd.Series([1.0], index=[0]), pd.Series([3.0], index=[0]))
    assert d.mean == -2.0 and d.shown is None and d.interval() == "n/a"


def test_mean_interval_by_hand():
    mean, low, high = mean_interval(pd.Series([1.0, 2.0, 3.0]))
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - T_975_2 / math.sqrt(3),
                                               2.0 + T_975_2 / math.sqrt(3)))


# ------------------------------------------------------------------------- families (Holm)
def test_holm_step_down_on_hand_computed_p_values():
    """m = 4 tests (NaN: no test, not counted): sorted 0.01, 0.03, 0.04, 0.20 give
    4 x 0.01 = 0.04, 3 x 0.03 = 0.09, max(0.09, 2 x 0.04 = 0.08) = 0.09, max(0.09, 0.20)."""
    adjusted = holm([0.01, 0.04, 0.03, 0.20, float("nan")])
    assert np.allclose(adjusted[:4], [0.04, 0.09, 0.09, 0.20])
    assert math.isnan(adjusted[4])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1


def test_a_verdict_is_adjusted_within_its_family():
    def diff(mean: float, p: float) -> Difference:
        return Difference(mean, mean - 1, mean + 1, 5, True, p)

    family = [diff(2.0, 0.01), diff(-3.0, 0.03), diff(1.0, 0.04), diff(0.5, 0.20),
              Difference(1.0, float("nan"), float("nan"), 1, True)]
    judged = verdicts(family, [True, True, False, True, True])
    assert [v.strength for v in judged] == ["shown", "suggested", "suggested", "not shown",
                                            "one seed"]
    assert [v.family for v in judged] == [4] * 5
    assert judged[0].word() == "better (Holm, 4 tests)"
    assert judged[1].word() == "suggested worse (unadjusted p = 0.030)"
    assert judged[2].word() == "suggested worse (unadjusted p = 0.040)"  # lower is better
    assert judged[3].word() == "not shown" and judged[4].word() == "one seed"
    assert judged[1].p_adjusted == pytest.approx(0.09)
    # alone, the same difference is its own family: the plain t test decides
    (alone,) = verdicts([family[1]], [True])
    assert alone.word() == "worse"


def test_difference_carries_the_t_tests_p_value():
    a = pd.Series([60.0, 62.0, 61.0, 65.0, 63.0], index=range(5))
    b = pd.Series([58.0, 59.5, 60.0, 61.0, 60.5], index=range(5))
    paired = difference(a, b)
    assert paired.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert (paired.p < 0.05) == bool(paired.shown)  # the interval and the test agree
    welch = difference(a, b.iloc[:4])
    assert not welch.paired
    assert welch.p == pytest.approx(stats.ttest_ind(a, b.iloc[:4], equal_var=False).pvalue)


# ------------------------------------------------------------------------- bootstrap
def test_hierarchical_bootstrap_on_constructed_hits():
    """Every image of a seed hits alike, so images add no spread and the replicates are the
    means of drawn seeds: seed 0 gives A − B = 100 − 0, seed 1 gives 50 − 0 (half the IoU
    levels hit); the interval runs from the all-seed-1 to the all-seed-0 draw (each has
    chance 1/4, far beyond the 2.5 % tails)."""
    full = np.ones((10, 2, 3), dtype=bool)
    half = full.copy()
    half[:, 1] = False  # the second IoU level never hits: MaxBoxAccV2 50
    none = np.zeros_like(full)
    boot = bootstrap_difference({0: full, 1: half}, {0: none, 1: none}, replicates=400)
    assert boot.mean == pytest.approx(75.0)
    assert (boot.low, boot.high) == (50.0, 100.0)
    same = bootstrap_difference({0: full, 1: half}, {0: full, 1: half}, replicates=50)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)


def test_bootstrap_resamples_the_images_of_one_seed():
    """One seed, 4 images of which A hits 2 and B none: A − B = 50; drawing the images with
    replacement spreads it (an all-miss draw gives 0, an all-hit draw 100)."""
    a = np.zeros((4, 1, 1), dtype=bool)
    a[:2] = True
    boot = bootstrap_difference({0: a}, {0: np.zeros_like(a)}, replicates=2000, seed=1)
    assert boot.mean == pytest.approx(50.0)
    assert 0.0 <= boot.low <= 25.0 and 75.0 <= boot.high <= 100.0
