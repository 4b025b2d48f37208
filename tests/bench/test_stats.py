"""The benchmark's statistics: medians, percentiles, histograms, ratios."""

from __future__ import annotations

import math
import random

import pytest

from openline.bench.stats import (
    Histogram,
    advantage,
    median,
    percentile,
    ratios_by_repetition,
    summarize,
)


def test_median_of_an_odd_count_is_the_middle_value() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_nothing_is_none() -> None:
    assert median([]) is None


@pytest.mark.parametrize(
    ("fraction", "expected"), [(0.0, 1), (0.01, 1), (0.5, 50), (0.99, 99), (0.995, 100), (1.0, 100)]
)
def test_percentile_uses_the_nearest_rank(fraction: float, expected: int) -> None:
    assert percentile([float(value) for value in range(1, 101)], fraction) == expected


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 0.5) is None


def test_percentile_rejects_a_fraction_above_one() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        percentile([1.0], 1.5)


def test_histogram_quantiles_are_within_one_percent_of_the_exact_ones() -> None:
    generator = random.Random(7)
    values = [generator.lognormvariate(math.log(0.002), 1.0) for _ in range(20000)]
    histogram = Histogram()
    histogram.add_many(values)
    ordered = sorted(values)
    for fraction in (0.5, 0.9, 0.99, 0.999):
        exact = percentile(ordered, fraction)
        approximate = histogram.quantile(fraction)
        assert exact is not None and approximate is not None
        assert abs(approximate - exact) / exact < 0.01


def test_histogram_add_with_a_count_equals_repeated_adds() -> None:
    once, repeated = Histogram(), Histogram()
    once.add(0.005, count=3)
    for _ in range(3):
        repeated.add(0.005)
    assert once.counts == repeated.counts
    assert once.total == repeated.total == 3


def test_histogram_puts_durations_under_a_microsecond_in_the_first_bucket() -> None:
    histogram = Histogram()
    histogram.add_many([0.0, 1e-7])
    assert histogram.counts == {0: 2}
    assert histogram.quantile(1.0) == 0.5e-6


def test_histogram_merge_adds_counts() -> None:
    first, second = Histogram(), Histogram()
    first.add_many([0.001, 0.002])
    second.add_many([0.002, 0.004])
    first.merge(second)
    assert first.total == 4
    assert first.quantile(1.0) == pytest.approx(0.004, rel=0.01)


def test_empty_histogram_has_no_quantile() -> None:
    assert Histogram().quantile(0.5) is None


def test_histogram_rejects_a_negative_fraction() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Histogram().quantile(-0.1)


def test_advantage_divides_throughputs_ours_by_theirs() -> None:
    assert advantage("msgs_per_s", 300.0, 100.0) == 3.0


@pytest.mark.parametrize("metric", ["p50_ms", "p99_ms", "kb_per_conn"])
def test_advantage_divides_theirs_by_ours_where_lower_is_better(metric: str) -> None:
    assert advantage(metric, 2.0, 8.0) == 4.0


@pytest.mark.parametrize(("ours", "theirs"), [(None, 1.0), (1.0, None), (1.0, 0.0)])
def test_advantage_is_none_without_two_usable_values(
    ours: float | None, theirs: float | None
) -> None:
    assert advantage("msgs_per_s", ours, theirs) is None


def test_ratios_are_paired_by_repetition_and_skip_failed_runs() -> None:
    runs = {
        "openline": [{"msgs_per_s": 100.0}, None, {"msgs_per_s": 300.0}],
        "peer": [{"msgs_per_s": 50.0}, {"msgs_per_s": 10.0}, {"msgs_per_s": 100.0}],
    }
    assert ratios_by_repetition(runs, "openline", "peer", "msgs_per_s") == [2.0, 3.0]


def test_summary_takes_the_median_of_ratios_not_the_ratio_of_medians() -> None:
    runs = {
        "openline": [{"msgs_per_s": 100.0}, {"msgs_per_s": 200.0}, {"msgs_per_s": 300.0}],
        "peer": [{"msgs_per_s": 100.0}, {"msgs_per_s": 100.0}, {"msgs_per_s": 600.0}],
    }
    medians, ratios = summarize(runs, ["openline"])
    assert medians["openline"]["msgs_per_s"] == 200.0
    assert medians["peer"]["msgs_per_s"] == 100.0
    # Per repetition: 1.0, 2.0, 0.5; the ratio of the medians would say 2.0.
    assert ratios["openline"]["peer"]["msgs_per_s"] == 1.0


def test_summary_compares_each_subject_with_every_other_server() -> None:
    runs = {
        "openline": [{"kb_per_conn": 2.0}],
        "fast": [{"kb_per_conn": 4.0}],
        "slow": [{"kb_per_conn": 8.0}],
    }
    _, ratios = summarize(runs, ["openline", "missing"])
    assert ratios == {"openline": {"fast": {"kb_per_conn": 2.0}, "slow": {"kb_per_conn": 4.0}}}


def test_summary_leaves_out_a_server_whose_every_run_failed() -> None:
    medians, ratios = summarize({"openline": [{"msgs_per_s": 1.0}], "peer": [None]}, ["openline"])
    assert medians["peer"] == {}
    assert ratios == {}
