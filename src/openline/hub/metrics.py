"""Counters a hub keeps about itself, for dashboards and tests."""

from __future__ import annotations

import collections

__all__ = ["Metrics"]


class Metrics:
    """Plain counters, updated in place on the event loop's thread.

    Attributes:
        connections: Hub connections open now.
        connections_total: Hub connections opened since the hub started.
        messages_in: WebSocket messages received from clients.
        messages_out: WebSocket messages written to clients (a broadcast to n
            subscribers counts n).
        publishes: Messages stored, from clients and from server code; duplicates
            of an idempotent publish don't count.
        slow_consumers: Connections evicted by the slow-consumer policy: what
            they held unsent passed ``max_buffer``, or they stalled for
            ``slow_consumer_timeout``.
        slow_consumer_resets: Evicted connections dropped with a TCP reset
            because their close frame couldn't get through.
        abuse_closes: Connections closed with 1008 for too many errors.
        errors: ``error`` replies sent, by code.
    """

    __slots__ = (
        "abuse_closes",
        "connections",
        "connections_total",
        "errors",
        "messages_in",
        "messages_out",
        "publishes",
        "slow_consumer_resets",
        "slow_consumers",
    )

    def __init__(self) -> None:
        self.connections = 0
        self.connections_total = 0
        self.messages_in = 0
        self.messages_out = 0
        self.publishes = 0
        self.slow_consumers = 0
        self.slow_consumer_resets = 0
        self.abuse_closes = 0
        self.errors: collections.Counter[str] = collections.Counter()

    def as_dict(self) -> dict[str, int]:
        """Return every counter; error counts appear as ``errors.<code>``."""
        counters = {
            "connections": self.connections,
            "connections_total": self.connections_total,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "publishes": self.publishes,
            "slow_consumers": self.slow_consumers,
            "slow_consumer_resets": self.slow_consumer_resets,
            "abuse_closes": self.abuse_closes,
        }
        for code, count in sorted(self.errors.items()):
            counters[f"errors.{code}"] = count
        return counters
