"""``openline bench --check``: a short run compared with the committed results.

The figures in ``bench/results/results.json`` drift as the code changes; this
tells which of openline's ratios to its peers moved since they were measured,
in a few minutes. It runs a few scenarios with short windows, then compares
every ratio the two documents share (openline's and openline-lowlevel's
advantage over each peer, on each scenario's main metric and on the server's
CPU per message) and reports those that moved by more than the noise.

**The noise** of a ratio is taken from its repetitions: half the spread
(max - min) of the per-repetition ratios, relative to their median, in
whichever of the two documents spreads more, and never less than
:data:`MIN_NOISE`. A ratio *moved* when the new median differs from the
committed one by more than that. With one repetition on either side there is
no spread to read, and the floor alone applies.

The check is informative, not a gate: the machine it runs on is rarely the one
of the committed figures. It exits non-zero only with ``--fail-on-change``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from .report import TIMES
from .runner import SUBJECTS, Options, run
from .scenarios import METRICS
from .stats import median, ratios_by_repetition

__all__ = ["MIN_NOISE", "Change", "compare", "default_options", "format_changes"]

#: The smallest relative noise assumed for a ratio (2 %): timer and scheduling jitter.
MIN_NOISE = 0.02
#: What ``--check`` runs unless told otherwise: one echo and one fan-out, full size.
CHECK_SCENARIOS = ["echo-32-x16", "fanout-1k"]
#: The metrics compared besides each scenario's primary one.
_EXTRA_METRICS = ("server_us_per_msg",)


@dataclasses.dataclass(frozen=True)
class Change:
    """One ratio, committed and now.

    Attributes:
        scenario: The scenario's name.
        subject: openline's variant.
        peer: The server it is compared with.
        metric: The metric of the ratio.
        before: The committed median ratio.
        after: The new median ratio.
        noise: The relative noise allowed (0.05 is 5 %).
    """

    scenario: str
    subject: str
    peer: str
    metric: str
    before: float
    after: float
    noise: float

    @property
    def moved(self) -> float:
        """The relative change: ``after / before - 1``."""
        return self.after / self.before - 1

    @property
    def significant(self) -> bool:
        """Whether the change is larger than the noise."""
        return abs(self.moved) > self.noise


def spread(values: list[float]) -> float | None:
    """Half the range of ``values`` relative to their median; ``None`` for fewer than two."""
    middle = median(values)
    if len(values) < 2 or not middle:
        return None
    return (max(values) - min(values)) / 2 / abs(middle)


def _repetitions(scenario: dict[str, Any]) -> dict[str, list[dict[str, float] | None]]:
    return {
        server: [
            run["metrics"] if run and "error" not in run and "metrics" in run else None
            for run in runs
        ]
        for server, runs in scenario["runs"].items()
    }


def _pairs(scenario: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    metrics = (scenario["primary"], *_EXTRA_METRICS)
    for subject, peers in scenario.get("ratios", {}).items():
        for peer, values in peers.items():
            for metric in metrics:
                if metric in values:
                    yield subject, peer, metric


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Every ratio that both results documents measured, committed and new.

    Scenarios are matched by name; one run with other sizes (``--quick``) is
    not comparable and its scenarios must not share names with the committed ones.
    """
    old = {scenario["name"]: scenario for scenario in before["scenarios"]}
    changes = []
    for scenario in after["scenarios"]:
        base = old.get(scenario["name"])
        if base is None or base["connections"] != scenario["connections"]:
            continue
        new_runs, old_runs = _repetitions(scenario), _repetitions(base)
        for subject, peer, metric in _pairs(scenario):
            was = base.get("ratios", {}).get(subject, {}).get(peer, {}).get(metric)
            now = scenario["ratios"][subject][peer][metric]
            if not was or not now:
                continue
            spreads = [
                spread(ratios_by_repetition(runs, subject, peer, metric))
                for runs in (old_runs, new_runs)
            ]
            noise = max([MIN_NOISE, *(value for value in spreads if value is not None)])
            changes.append(Change(scenario["name"], subject, peer, metric, was, now, noise))
    return changes


def format_changes(changes: list[Change], stream: TextIO) -> None:
    """Print every compared ratio, the moved ones first."""
    if not changes:
        stream.write("no ratio in common with the committed results\n")
        return
    moved = [change for change in changes if change.significant]
    steady = [change for change in changes if not change.significant]
    stream.write(
        f"{len(moved)} of {len(changes)} ratios moved by more than their noise "
        "(> 1 means openline is better):\n"
    )
    for title, group in (("moved", moved), ("within the noise", steady)):
        if not group:
            continue
        stream.write(f"\n{title}:\n")
        for change in sorted(group, key=lambda c: -abs(c.moved)):
            unit = METRICS[change.metric][1] or change.metric
            stream.write(
                f"  {change.scenario:<14} {change.subject} vs {change.peer:<12} {unit:<13} "
                f"{change.before:.2f}{TIMES} -> {change.after:.2f}{TIMES} "
                f"({change.moved:+.0%}, noise {change.noise:.0%})\n"
            )


def default_options(options: Options) -> Options:
    """``options`` with the check's short defaults where nothing was asked."""
    return dataclasses.replace(
        options,
        scenarios=options.scenarios or list(CHECK_SCENARIOS),
        repetitions=options.repetitions or 3,
        window=options.window or 2.0,
        warmup=options.warmup if options.warmup is not None else 0.5,
        output=options.output or "bench/results/check",
    )


def check(
    options: Options,
    against: pathlib.Path,
    *,
    fail_on_change: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Run the check; return the exit status (1 only for a moved ratio with ``fail_on_change``).

    Raises:
        ValueError: ``options`` is invalid, or ``against`` is not a results document.
        OSError: ``against`` can't be read.
    """
    stream = sys.stderr if stream is None else stream
    before = json.loads(against.read_text())
    if "scenarios" not in before:
        raise ValueError(f"{against} is not a results.json of openline bench")
    options = default_options(options)
    if options.servers:
        servers = set(options.servers) | set(SUBJECTS)
        options = dataclasses.replace(options, servers=sorted(servers))
    after = run(options, stream)
    changes = compare(before, after)
    stream.write(f"\ncompared with {against}:\n")
    format_changes(changes, stream)
    if fail_on_change and any(change.significant for change in changes):
        return 1
    return 0
