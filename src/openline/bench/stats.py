"""Statistics of the benchmark: medians, percentiles, latency histograms and ratios.

Ratios are computed *inside* each repetition (openline's run against the peer's
run of the same repetition, which ran minutes apart at most) and only then
summarised by their median, so that a machine that slows down between
repetitions moves both sides of every ratio together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from .scenarios import LOWER_IS_BETTER

__all__ = [
    "Histogram",
    "advantage",
    "median",
    "percentile",
    "ratios_by_repetition",
    "summarize",
]


def median(values: Iterable[float]) -> float | None:
    """The median of ``values``: the mean of the middle two for an even count.

    Returns:
        ``None`` for no values.
    """
    ordered = sorted(values)
    count = len(ordered)
    if count == 0:
        return None
    middle = count // 2
    if count % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of sorted values, by the nearest-rank method.

    The nearest rank is ``ceil(fraction * n)``: p99 of 100 values is the 99th.

    Raises:
        ValueError: ``fraction`` is outside [0, 1].
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Histogram:
    """Counts of durations in logarithmic buckets, 1 % wide.

    Millions of latencies fit in a few hundred buckets, and a quantile read from
    them is within 1 % of the exact nearest-rank value. Durations below one
    microsecond share the first bucket.
    """

    __slots__ = ("counts", "total")

    #: Buckets per factor of e; each bucket spans a ratio of e**(1/100), about 1.01.
    RESOLUTION = 100

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def add(self, seconds: float, count: int = 1) -> None:
        """Count ``count`` occurrences of a duration of ``seconds``."""
        micros = seconds * 1e6
        index = int(math.log(micros) * self.RESOLUTION) + 1 if micros >= 1 else 0
        counts = self.counts
        counts[index] = counts.get(index, 0) + count
        self.total += count

    def add_many(self, durations: Iterable[float]) -> None:
        """Count each duration in ``durations`` once."""
        log = math.log
        resolution = self.RESOLUTION
        counts = self.counts
        added = 0
        for seconds in durations:
            micros = seconds * 1e6
            index = int(log(micros) * resolution) + 1 if micros >= 1 else 0
            counts[index] = counts.get(index, 0) + 1
            added += 1
        self.total += added

    def merge(self, other: Histogram) -> None:
        """Add every count of ``other`` to this histogram."""
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total

    def quantile(self, fraction: float) -> float | None:
        """The duration in seconds below which ``fraction`` of the counts fall.

        Returns the geometric middle of the nearest-rank bucket; ``None`` when empty.

        Raises:
            ValueError: ``fraction`` is outside [0, 1].
        """
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        if self.total == 0:
            return None
        rank = max(1, math.ceil(fraction * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return self._middle(index)
        raise AssertionError("ranks never exceed the total")

    def _middle(self, index: int) -> float:
        if index == 0:
            return 0.5e-6
        return math.exp((index - 0.5) / self.RESOLUTION) / 1e6


def advantage(metric: str, ours: float | None, theirs: float | None) -> float | None:
    """How many times better ``ours`` is than ``theirs`` on ``metric``; > 1 means better.

    Throughputs divide ours by theirs; latencies and memory (see
    :data:`~.scenarios.LOWER_IS_BETTER`) divide theirs by ours.

    Returns:
        ``None`` when either value is missing or the divisor is zero.
    """
    if ours is None or theirs is None:
        return None
    numerator, denominator = (theirs, ours) if metric in LOWER_IS_BETTER else (ours, theirs)
    if denominator == 0:
        return None
    return numerator / denominator


#: Per server, the metrics of each repetition (``None`` for a failed run).
Repetitions = Mapping[str, Sequence[Mapping[str, float] | None]]


def ratios_by_repetition(runs: Repetitions, subject: str, peer: str, metric: str) -> list[float]:
    """The advantage of ``subject`` over ``peer`` on ``metric`` in each repetition.

    Repetitions where either run failed or lacks the metric are left out.
    """
    ours, theirs = runs.get(subject, ()), runs.get(peer, ())
    ratios = []
    for mine, other in zip(ours, theirs, strict=False):
        if mine is None or other is None:
            continue
        value = advantage(metric, mine.get(metric), other.get(metric))
        if value is not None:
            ratios.append(value)
    return ratios


def summarize(
    runs: Repetitions, subjects: Sequence[str]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """Medians of every metric per server, and median ratios of each subject to each peer.

    Args:
        runs: The metrics of each repetition, per server.
        subjects: The servers compared with every other (openline's variants).

    Returns:
        ``(medians, ratios)``: ``medians[server][metric]`` and
        ``ratios[subject][peer][metric]``, leaving out what no repetition measured.
    """
    medians: dict[str, dict[str, float]] = {}
    for server, repetitions in runs.items():
        metrics = sorted({key for run in repetitions if run for key in run})
        values = {}
        for metric in metrics:
            value = median(run[metric] for run in repetitions if run and metric in run)
            if value is not None:
                values[metric] = value
        medians[server] = values
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for subject in subjects:
        if subject not in runs:
            continue
        for peer in runs:
            if peer == subject:
                continue
            for metric in medians.get(subject, {}):
                value = median(ratios_by_repetition(runs, subject, peer, metric))
                if value is not None:
                    ratios.setdefault(subject, {}).setdefault(peer, {})[metric] = value
    return medians, ratios
