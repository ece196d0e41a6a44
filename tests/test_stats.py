"""measure/stats.py: the one home of the package's statistics."""
import math

import pytest

from cspnet_lab.measure import bench, gradients, stats
from cspnet_lab.lab import experiments


def test_one_home_for_every_statistic():
    # the old names are the same objects, not copies that could drift apart
    assert experiments.paired_interval is stats.paired_interval
    assert experiments.t_quantile is stats.t_quantile
    assert bench.paired_bootstrap is stats.paired_bootstrap and bench.verdict is stats.verdict
    assert gradients.mean_interval is stats.mean_interval


def test_holm_by_hand():
    # sorted p: 0.01 (vs 0.05/4 = 0.0125: reject), 0.03 (vs 0.05/3 = 0.0167: stop)
    assert stats.holm([0.01, 0.04, 0.03, 0.5]) == [True, False, False, False]
    # 0.001 < 0.0125, 0.01 < 0.0167, 0.02 < 0.025, 0.04 < 0.05: all four (Bonferroni keeps only two)
    assert stats.holm([0.04, 0.001, 0.02, 0.01]) == [True, True, True, True]
    assert stats.holm([]) == []
    with pytest.raises(ValueError, match="p_values"):
        stats.holm([0.2, 1.5])


def test_t_test_p_on_the_table():
    # t = 2.776 with 4 degrees of freedom is the 97.5 % quantile: two-sided p = 0.05
    assert stats.t_test_p(2.7764451, 1.0, 4) == pytest.approx(0.05, abs=1e-6)


def test_percent_change():
    assert stats.percent_change(75, 100) == -25.0
    with pytest.raises(ValueError, match="old"):
        stats.percent_change(1, 0)


@pytest.mark.parametrize("a, b, word", [("12", "34", "sequence"), ([1, "x"], [1, 2], "numbers"),
                                        ([True, False], [1, 2], "numbers")])
def test_paired_interval_refuses_strings_and_non_numbers(a, b, word):
    with pytest.raises(ValueError, match=word):
        stats.paired_interval(a, b)


def test_paired_interval_refuses_an_infinite_correction():
    with pytest.raises(ValueError, match="test_train_ratio"):
        stats.paired_interval([1, 2, 3], [0, 0, 0], test_train_ratio=math.inf)
