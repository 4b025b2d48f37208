"""Prometheus metrics of a hub: ``GET /metrics``.

The hub counts with plain integers on its hot path (:class:`~openline.hub.Metrics`);
nothing here runs per message. A scrape builds the metric families from those
counters through a custom collector registered in a
:class:`prometheus_client.CollectorRegistry` of its own (never the global
one), so that several hubs in one process, and tests, don't collide.

``prometheus_client`` is imported lazily: it is the ``openline[server]``
extra. Without it, :func:`render_metrics` raises :class:`ImportError` naming
the extra and ``/metrics`` answers 501 saying the same; the rest of the
server works.

Mount it in any server with :class:`MetricsEndpoint` (a ``process_request``
style answer) or take the text yourself with :func:`render_metrics`.
``docs/operations.md`` lists every metric.
"""

from __future__ import annotations

import collections
import hmac
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..asyncio.server import Server
from ..hub import Hub
from ..hub.metrics import Timings
from ..protocol.http11 import Request, Response
from .static import ALLOWED_METHODS, http_response, method_not_allowed

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["METRICS_PATH", "HubCollector", "MetricsEndpoint", "render_metrics"]

#: Where ``openline serve`` answers with the metrics.
METRICS_PATH = "/metrics"

_MISSING = "prometheus_client is missing: pip install 'openline[server]'"

# Handshakes the server refused before the hub saw them, by status.
_SERVER_REFUSALS = {503: "unavailable"}


class HubCollector:
    """A Prometheus collector reading a hub's counters at scrape time.

    Args:
        hub: The hub to describe.
        server: The server running it, for the upgrades it refused before the
            hub saw them (too many connections, shutting down, malformed);
            ``None`` leaves those out. May be set later.
    """

    def __init__(self, hub: Hub, server: Server | None = None) -> None:
        self.hub = hub
        self.server = server

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (called by the registry on each scrape)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        hub, stats = self.hub, self.hub.stats
        info = GaugeMetricFamily("openline_build_info", "Always 1.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(
            "openline_connections", "Hub connections open now.", value=stats.connections
        )
        yield CounterMetricFamily(
            "openline_connections_opened",
            "Hub connections opened since the hub started.",
            value=stats.connections_total,
        )
        handshakes = self._handshakes()
        yield _labelled(
            "openline_handshakes", "Upgrade requests answered, by result.", "result", handshakes
        )
        yield from _counters(
            ("openline_messages_received", "WebSocket messages from clients.", stats.messages_in),
            ("openline_messages_sent", "WebSocket messages to clients.", stats.messages_out),
            ("openline_received_bytes", "Payload bytes of messages from clients.", stats.bytes_in),
            ("openline_sent_bytes", "Payload bytes of messages to clients.", stats.bytes_out),
            ("openline_publishes", "Messages stored (duplicates excluded).", stats.publishes),
            ("openline_abuse_closes", "Connections closed with 1008.", stats.abuse_closes),
            (
                "openline_keepalive_timeouts",
                "Connections failed with 1011: a keepalive ping went unanswered.",
                stats.keepalive_timeouts,
            ),
            (
                "openline_slow_consumer_resets",
                "Evicted connections dropped with a TCP reset.",
                stats.slow_consumer_resets,
            ),
        )
        yield _histogram(
            "openline_publish_duration_seconds",
            "Seconds a publish spent in the engine.",
            {(): stats.publish_latency},
        )
        yield GaugeMetricFamily(
            "openline_subscriptions",
            "Channel subscriptions of this process's connections.",
            value=hub.subscription_count,
        )
        yield GaugeMetricFamily(
            "openline_channels",
            "Channels with a subscriber in this process.",
            value=hub.channel_count,
        )
        resumes = {"recovered": stats.resumes_recovered, "gap": stats.resumes_gap}
        yield _labelled(
            "openline_resumes", "Subscribes with a position, by outcome.", "result", resumes
        )
        yield _labelled(
            "openline_slow_consumer_evictions",
            "Connections evicted by the slow-consumer policy, by reason.",
            "reason",
            stats.evictions,
        )
        yield _labelled("openline_errors", "Error replies sent, by code.", "code", stats.errors)
        yield _labelled(
            "openline_asgi_connections",
            "Connections the hub's ASGI app accepted, by path: fast (openline's engine) or plain.",
            "path",
            stats.asgi_paths,
        )
        yield from self._engine()

    def _handshakes(self) -> Mapping[str, int]:
        counts = collections.Counter(self.hub.stats.handshakes)
        server = self.server
        if server is not None:
            for status, count in server.refusals.items():
                counts[_SERVER_REFUSALS.get(status, "invalid")] += count
        return counts

    def _engine(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        engine = self.hub.engine
        report = getattr(engine, "health", None)
        health = report() if callable(report) else None
        status = health.get("status") if isinstance(health, Mapping) else None
        kind = health.get("engine") if isinstance(health, Mapping) else None
        up = GaugeMetricFamily(
            "openline_engine_up",
            "1 unless the engine reports itself degraded or closed.",
            labels=["engine"],
        )
        up.add_metric([str(kind or type(engine).__name__)], 0 if status in _DOWN else 1)
        yield up
        round_trips = getattr(engine, "round_trips", None)
        if isinstance(round_trips, Mapping):
            yield _histogram(
                "openline_redis_round_trip_seconds",
                "Seconds each Redis script took, failures included.",
                {(script,): timings for script, timings in sorted(round_trips.items())},
                labels=["script"],
            )


_DOWN = ("degraded", "closed")


def render_metrics(hub: Hub, server: Server | None = None) -> tuple[str, bytes]:
    """Render the metrics of ``hub`` in the Prometheus text format.

    Builds a registry for this call only; :class:`MetricsEndpoint` keeps one.

    Returns:
        The ``Content-Type`` value and the body.

    Raises:
        ImportError: ``prometheus_client`` is missing (the ``openline[server]`` extra).
    """
    return _render(_registry(HubCollector(hub, server)))


class MetricsEndpoint:
    """``GET /metrics`` for one hub, optionally behind a key.

    Args:
        hub: The hub to describe.
        key: A secret scrapers must send as ``Authorization: Bearer <key>``;
            ``None`` leaves the endpoint open to anyone who can reach the port.
        server: See :class:`HubCollector`; may be set later through :attr:`collector`.

    Raises:
        ValueError: ``key`` is empty.
    """

    def __init__(self, hub: Hub, *, key: str | None = None, server: Server | None = None) -> None:
        if key is not None and not key.strip():
            raise ValueError("key must not be empty; pass None for an open endpoint")
        self.collector = HubCollector(hub, server)
        self._key = key
        self._registry: CollectorRegistry | None = None

    def respond(self, request: Request) -> Response:
        """Answer a request for the metrics: 200, 401 (key), 405 or 501 (no library)."""
        if request.method not in ALLOWED_METHODS:
            return method_not_allowed()
        head = request.method == "HEAD"
        if self._key is not None and not _has_key(request, self._key):
            headers = [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", "Bearer"),
            ]
            return http_response(401, b"metrics need Authorization: Bearer <key>\n", headers)
        try:
            if self._registry is None:
                self._registry = _registry(self.collector)
            content_type, body = _render(self._registry)
        except ImportError:
            text = f"metrics are off: {_MISSING}\n".encode()
            return http_response(501, text, [("Content-Type", "text/plain; charset=utf-8")])
        headers = [("Content-Type", content_type), ("Cache-Control", "no-store")]
        return http_response(200, body, headers, head=head)


# --- private: building families ----------------------------------------------------------


def _registry(collector: HubCollector) -> CollectorRegistry:
    try:
        from prometheus_client import CollectorRegistry
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # any object with collect() will do
    return registry


def _render(registry: CollectorRegistry) -> tuple[str, bytes]:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    return CONTENT_TYPE_PLAIN_0_0_4, generate_latest(registry)


def _counters(*rows: tuple[str, str, int]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily

    for name, documentation, value in rows:
        yield CounterMetricFamily(name, documentation, value=value)


def _labelled(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def _histogram(
    name: str,
    documentation: str,
    series: Mapping[tuple[str, ...], Timings],
    labels: list[str] | None = None,
) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, timings in series.items():
        buckets: list[Any] = [
            ("+Inf" if math.isinf(bound) else repr(bound), count)
            for bound, count in timings.cumulative()
        ]
        family.add_metric(list(values), buckets, sum_value=timings.sum)
    return family


def _has_key(request: Request, key: str) -> bool:
    for value in request.headers.get_all("Authorization")[:1]:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(token.strip().encode(), key.encode())
    return False
