"""Ablation statistics against values computed by hand and by textbook tables."""

from __future__ import annotations

import math

import pytest

from nas.stats import StatsError, paired_comparison, summarize


def test_summary_matches_hand_computation() -> None:
    # values 1..5: mean 3, sample variance 2.5, t(0.975, df=4) = 2.776445 (table value)
    s = summarize([1, 2, 3, 4, 5])
    assert s.mean == pytest.approx(3.0)
    assert s.std == pytest.approx(math.sqrt(2.5))
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert s.ci_low == pytest.approx(3.0 - half, rel=1e-6)
    assert s.ci_high == pytest.approx(3.0 + half, rel=1e-6)


def test_summary_three_seeds_t_quantile() -> None:
    # three seeds: t(0.975, df=2) = 4.302653
    s = summarize([0.97, 0.98, 0.99])
    assert s.std == pytest.approx(0.01)
    assert s.half_width == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)


def test_summary_single_value_has_undefined_interval() -> None:
    s = summarize([0.5])
    assert s.mean == 0.5 and s.std == 0.0
    assert math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_paired_t_test_known_value() -> None:
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1/sqrt 3) = 3.4641; two-sided p (df 2) = 0.07418
    cmp = paired_comparison([2, 4, 6], [1, 2, 3])
    assert cmp.mean_diff == pytest.approx(2.0)
    assert cmp.std_diff == pytest.approx(1.0)
    assert cmp.p_value == pytest.approx(0.074180, abs=1e-5)
    assert cmp.ci_low == pytest.approx(2 - 4.302653 / math.sqrt(3), rel=1e-6)


def test_paired_constant_difference() -> None:
    assert paired_comparison([2, 3, 4], [1, 2, 3]).p_value == 0.0
    assert paired_comparison([1, 2, 3], [1, 2, 3]).p_value == 1.0


def test_errors_are_specific() -> None:
    with pytest.raises(StatsError, match="empty"):
        summarize([])
    with pytest.raises(StatsError, match="3 vs 2"):
        paired_comparison([1, 2, 3], [1, 2])
    with pytest.raises(StatsError, match="at least 2"):
        paired_comparison([1], [1])
