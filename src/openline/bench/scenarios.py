"""The catalogue of scenarios and the metrics each one reports.

A :class:`Scenario` is plain data: it crosses into the load generator's
process as JSON. ``--quick`` shrinks every scenario with :func:`quick`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "SCENARIOS",
    "Scenario",
    "quick",
    "select",
]

Kind = Literal["echo", "fanout", "idle"]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One workload, run against every server.

    Attributes:
        name: Short identifier used on the command line and in the results.
        kind: ``echo`` (each connection sends, the server echoes), ``fanout``
            (one publisher, the server broadcasts to subscribers) or ``idle``
            (open connections and measure memory).
        title: A human description for the report.
        size: Payload bytes of each message.
        connections: Echo connections, fan-out subscribers, or idle connections.
        in_flight: Echo messages outstanding per connection.
        rate: Fan-out messages published per second.
        deflate: Negotiate permessage-deflate (RFC 7692).
    """

    name: str
    kind: Kind
    title: str
    size: int = 32
    connections: int = 100
    in_flight: int = 1
    rate: float = 0.0
    deflate: bool = False

    @property
    def primary(self) -> str:
        """The metric that ranks servers in this scenario."""
        if self.kind == "fanout":
            return "deliveries_per_s"
        if self.kind == "idle":
            return "kb_per_conn"
        return "mb_per_s" if self.size >= 4096 else "msgs_per_s"

    def to_json(self) -> dict[str, Any]:
        """The scenario as a JSON object."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        """Rebuild a scenario from :meth:`to_json`'s output."""
        return cls(**data)


#: Every metric a run may report: key -> (label, unit).
METRICS: dict[str, tuple[str, str]] = {
    "msgs_per_s": ("messages per second", "msg/s"),
    "mb_per_s": ("payload megabytes per second, one way", "MB/s"),
    "p50_ms": ("median latency", "ms"),
    "p99_ms": ("99th percentile latency", "ms"),
    "deliveries_per_s": ("messages delivered to subscribers per second", "deliveries/s"),
    "in_time_pct": ("deliveries within the deadline, of all due", "%"),
    "delivered_pct": ("deliveries received at all by the end, of all due", "%"),
    "published_per_s": ("messages published per second", "msg/s"),
    "kb_per_conn": ("server RSS growth per idle connection", "KB"),
    "handshakes_per_s": ("opening handshakes completed per second", "handshakes/s"),
    "connections": ("connections opened", ""),
    "server_us_per_msg": (
        "server CPU (user + sys) per message echoed or delivered",
        "\u00b5s/msg",
    ),
}

#: Metrics where a smaller value is better; ratios invert for them.
LOWER_IS_BETTER = frozenset({"p50_ms", "p99_ms", "kb_per_conn", "server_us_per_msg"})


def _catalogue() -> list[Scenario]:
    plain = [
        Scenario("echo-32-x1", "echo", "echo 32 B, 100 conns x 1 in flight", 32, 100, 1),
        Scenario("echo-32-x16", "echo", "echo 32 B, 100 conns x 16 in flight", 32, 100, 16),
        Scenario("echo-64k", "echo", "echo 64 KiB binary, 10 conns x 1 in flight", 65536, 10, 1),
        Scenario(
            "fanout-1k", "fanout", "fan-out to 1,000 subscribers, 100 msg/s", 32, 1000, 1, 100
        ),
        Scenario(
            "fanout-5k", "fanout", "fan-out to 5,000 subscribers, 100 msg/s", 32, 5000, 1, 100
        ),
        Scenario("idle-10k", "idle", "10,000 idle connections", 32, 10000),
    ]
    deflated = [
        dataclasses.replace(
            scenario,
            name=f"{scenario.name}+deflate",
            title=f"{scenario.title}, permessage-deflate",
            deflate=True,
        )
        for scenario in plain
        if scenario.name != "echo-32-x1"
    ]
    return plain + deflated


#: Scenarios run only when named (``-s``): fan-out capacity, with more offered
#: than any server delivers, so that deliveries/s measures the server, not the load.
_EXTRAS = [
    Scenario(
        "fanout-5k-300",
        "fanout",
        "fan-out to 5,000 subscribers, 300 msg/s (capacity)",
        32,
        5000,
        1,
        300,
    ),
]

#: Every scenario, in the order they run.
SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _catalogue() + _EXTRAS}
#: What runs when no scenario is named.
DEFAULT = [name for name in SCENARIOS if name not in {extra.name for extra in _EXTRAS}]

#: ``--quick`` sizes: few connections, so a smoke run takes seconds.
_QUICK_CONNECTIONS = {"echo": 10, "fanout": 100, "idle": 200}


def quick(scenario: Scenario) -> Scenario:
    """A scaled-down copy of ``scenario`` for smoke runs."""
    connections = min(scenario.connections, _QUICK_CONNECTIONS[scenario.kind])
    if scenario.kind == "fanout":  # keep the 1:5 proportion of the two fan-outs
        connections = max(connections, scenario.connections // 25)
    if scenario.kind == "echo" and scenario.size >= 4096:
        connections = min(connections, 2)
    return dataclasses.replace(scenario, connections=connections)


def select(names: list[str] | None) -> list[Scenario]:
    """The scenarios named (all of them for ``None``), in catalogue order.

    Raises:
        ValueError: A name is not in the catalogue.
    """
    if not names:
        return [SCENARIOS[name] for name in DEFAULT]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown scenario {unknown[0]!r}; choose from {known}")
    return [scenario for name, scenario in SCENARIOS.items() if name in names]
