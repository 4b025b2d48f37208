"""Counters a hub keeps about itself, for dashboards and tests.

Everything here is a plain ``int`` (or a small list of them) updated in place
on the event loop's thread: the hot path pays an addition, never a lock or a
call into a metrics library. Exporters (``openline.web.metrics``) read these
values when they are scraped.
"""

from __future__ import annotations

import bisect
import collections

__all__ = ["DEFAULT_BUCKETS", "Metrics", "Timings"]

#: Upper bounds, in seconds, of the latency buckets: 0.1 ms to 2.5 s.
DEFAULT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Timings:
    """A latency histogram with fixed buckets: counts, their sum, no samples kept.

    Args:
        buckets: Increasing upper bounds in seconds; an implicit ``+Inf`` follows.

    Raises:
        ValueError: ``buckets`` is empty or not strictly increasing.
    """

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        if not buckets or any(b >= a for a, b in zip(buckets[1:], buckets, strict=False)):
            raise ValueError(f"buckets must be strictly increasing, got {buckets!r}")
        self.buckets = buckets
        #: Observations per bucket (not cumulative); the last one is ``+Inf``.
        self.counts = [0] * (len(buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one duration."""
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """Return ``(upper bound, observations at or below it)``, ending with ``+Inf``."""
        total = 0
        rows = []
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            rows.append((bound, total))
        return rows


class Metrics:
    """Plain counters, updated in place on the event loop's thread.

    Attributes:
        connections: Hub connections open now.
        connections_total: Hub connections opened since the hub started.
        handshakes: Upgrade requests the hub answered, by result: ``accepted``,
            ``bad_subprotocol`` (400), ``unauthorized`` (401), ``forbidden``
            (403) or ``refused`` (another status from the authentication hook).
        messages_in: WebSocket messages received from clients.
        messages_out: WebSocket messages written to clients (a broadcast to n
            subscribers counts n).
        bytes_in: Payload bytes of the messages received (frame headers excluded).
        bytes_out: Payload bytes of the messages written (a broadcast of b bytes
            to n subscribers counts n * b).
        publishes: Messages stored, from clients and from server code; duplicates
            of an idempotent publish don't count.
        publish_latency: Seconds each publish spent in the engine (stored,
            duplicates and failures alike).
        resumes_recovered: Subscribes with a position that got every missed
            message from history.
        resumes_gap: Subscribes with a position that got a ``gap`` instead.
        slow_consumers: Connections evicted by the slow-consumer policy: what
            they held unsent passed ``max_buffer``, or they stalled for
            ``slow_consumer_timeout``.
        evictions: The same evictions by reason: ``buffer`` (``max_buffer``
            passed), ``stalled`` (nothing acknowledged for
            ``slow_consumer_timeout``) or ``history`` (the queue built while its
            history was sent overflowed).
        slow_consumer_resets: Evicted connections dropped with a TCP reset
            because their close frame couldn't get through.
        abuse_closes: Connections closed with 1008 for too many errors.
        keepalive_timeouts: Connections failed with 1011 because a keepalive
            ping went unanswered for ``ping_timeout``.
        errors: ``error`` replies sent, by code.
        asgi_paths: Connections the hub's ASGI app (``hub.asgi()``) accepted,
            by the path that served them: ``fast`` (the server's engine is
            openline's and the app claimed its ``ServerConnection``) or
            ``plain`` (ASGI messages through an ``AsgiLink``).
    """

    __slots__ = (
        "abuse_closes",
        "asgi_paths",
        "bytes_in",
        "bytes_out",
        "connections",
        "connections_total",
        "errors",
        "evictions",
        "handshakes",
        "keepalive_timeouts",
        "messages_in",
        "messages_out",
        "publish_latency",
        "publishes",
        "resumes_gap",
        "resumes_recovered",
        "slow_consumer_resets",
        "slow_consumers",
    )

    def __init__(self) -> None:
        self.connections = 0
        self.connections_total = 0
        self.handshakes: collections.Counter[str] = collections.Counter()
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.publishes = 0
        self.publish_latency = Timings()
        self.resumes_recovered = 0
        self.resumes_gap = 0
        self.slow_consumers = 0
        self.evictions: collections.Counter[str] = collections.Counter()
        self.slow_consumer_resets = 0
        self.abuse_closes = 0
        self.keepalive_timeouts = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.asgi_paths: collections.Counter[str] = collections.Counter()

    def as_dict(self) -> dict[str, int]:
        """Return every counter; error counts appear as ``errors.<code>``, ASGI paths as
        ``asgi_paths.<path>`` once one was taken."""
        counters = {
            "connections": self.connections,
            "connections_total": self.connections_total,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "publishes": self.publishes,
            "resumes_recovered": self.resumes_recovered,
            "resumes_gap": self.resumes_gap,
            "slow_consumers": self.slow_consumers,
            "slow_consumer_resets": self.slow_consumer_resets,
            "abuse_closes": self.abuse_closes,
            "keepalive_timeouts": self.keepalive_timeouts,
        }
        for result, count in sorted(self.handshakes.items()):
            counters[f"handshakes.{result}"] = count
        for code, count in sorted(self.errors.items()):
            counters[f"errors.{code}"] = count
        for path, count in sorted(self.asgi_paths.items()):
            counters[f"asgi_paths.{path}"] = count
        return counters
