"""Confidence intervals of differences between methods (csoa_nb.report.stats), on hand-worked
cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from csoa_nb.report.stats import difference, mean_interval

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
    assert d.interval(2) == "[-0.48, +4.48]"


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
