"""``GET /metrics`` after real traffic, parsed as Prometheus parses it, on every engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from openline.asyncio.client import connect
from openline.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from openline.hub import Credentials, Hub, Identity, MemoryEngine, Reject
from openline.hub.backends.base import Engine
from openline.hub.metrics import Timings
from openline.protocol.http11 import Headers, Request
from openline.web import App
from openline.web.metrics import MetricsEndpoint, render_metrics

from ..hub.helpers import MS, TIMEOUT, HubClient, wait_for
from .helpers import Reply, request

#: A small kernel send queue, so that a reader that stops fills it quickly.
SMALL_SEND_BUFFER = 16384


@pytest.fixture(params=["memory", "redis"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    """An empty engine of each kind (Redis: a real server, a prefix of our own)."""
    made: Engine
    if request.param == "memory":
        made = MemoryEngine()
    else:
        from openline.hub.backends.redis import RedisEngine

        url = request.getfixturevalue("redis_server_session").url
        made = RedisEngine(url, prefix=f"metrics{os.getpid()}-{id(request)}")
    yield made
    await made.close()


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[int]:
    async with app.run("127.0.0.1", 0, close_timeout=500 * MS) as server:
        yield server.sockets[0].getsockname()[1]


async def client(port: int, **kwargs: Any) -> HubClient:
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("subprotocols", ["openline.v1"])
    ws = await connect(f"ws://127.0.0.1:{port}/ws", **kwargs)
    hub_client = HubClient(ws)
    hub_client.welcome = await hub_client.expect("welcome")
    return hub_client


async def stalled_client(port: int) -> HubClient:
    """A client whose socket has a small receive buffer; ``go_silent()`` stops it reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await client(port, sock=sock)


class Scrape:
    """The families of one ``/metrics`` answer, by name."""

    def __init__(self, reply: Reply) -> None:
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        self.families = {
            family.name: family for family in text_string_to_metric_families(reply.body.decode())
        }

    def type_of(self, name: str) -> str:
        return str(self.families[name].type)

    def samples(self, name: str) -> Iterator[Sample]:
        return iter(self.families[name].samples)

    def value(self, name: str, sample: str | None = None, **labels: str) -> float:
        """The value of the one sample called ``sample`` (default: the family's) with ``labels``."""
        wanted = sample or name
        found = [s.value for s in self.samples(name) if s.name == wanted and s.labels == labels]
        assert len(found) == 1, (wanted, labels, list(self.samples(name)))
        return found[0]

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {s.labels[label]: s.value for s in self.samples(name) if s.name == name + "_total"}


async def scrape(port: int, **headers: str) -> Scrape:
    return Scrape(await request(port, "/metrics", headers=headers))


# --- the counters after traffic ----------------------------------------------------------


async def test_metrics_count_real_traffic(engine: Engine) -> None:
    hub = Hub(engine, max_errors=(3, 10.0), max_buffer=65536, send_buffer=SMALL_SEND_BUFFER)
    async with serving(App(hub)) as port:
        # Handshakes: accepted, wrong subprotocol, foreign origin, malformed upgrade.
        reader = await client(port)
        with pytest.raises(InvalidStatus):
            await connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat"])
        with pytest.raises(InvalidStatus):
            await connect(f"ws://127.0.0.1:{port}/ws", origin="https://elsewhere.example")
        # No key, no version: the hub lets it through, the server refuses it.
        upgrade = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Protocol": "openline.v1",
        }
        assert (await request(port, "/ws", headers=upgrade)).status >= 400

        # Messages and publishes: the reader gets three, the publisher three acks.
        first = await reader.subscribe("room")
        publisher = await client(port)
        for n in range(3):
            await publisher.publish("room", {"n": n})
        await reader.messages(3)

        # Resumes: one from history, one with an unknown epoch (a gap).
        resumer = await client(port)
        await resumer.subscribe("room", since={"epoch": first["epoch"], "offset": 1})
        await resumer.messages(2)
        gapped = await client(port)
        await gapped.subscribe("room", since={"epoch": "gone", "offset": 1})

        # A slow consumer: stops reading while the channel is busy.
        slow = await stalled_client(port)
        await slow.subscribe("firehose")
        slow.go_silent()
        payload = "x" * 4000
        published = 0
        while hub.stats.slow_consumers == 0:
            await asyncio.wait_for(publisher.publish("firehose", payload), TIMEOUT)
            published += 1
            assert published < 5000, "the slow consumer was never evicted"

        # Abuse: three malformed messages close with 1008.
        rogue = await client(port)
        for _ in range(3):
            await rogue.send_raw("garbage")
        with pytest.raises(ConnectionClosedError) as caught:
            while True:
                await rogue.recv()
        assert caught.value.code == 1008
        await wait_for(lambda: hub.stats.connections == 4)  # reader, publisher, resumer, gapped

        metrics = await scrape(port)
        stats = hub.stats
        print(
            f"\n{published} publishes evicted the slow consumer;",
            f"{stats.bytes_in} bytes in, {stats.bytes_out} bytes out,",
            f"publish mean {stats.publish_latency.sum / stats.publish_latency.count * 1e3:.3f} ms",
        )

        assert metrics.type_of("openline_connections") == "gauge"
        assert metrics.value("openline_connections") == 4
        assert metrics.type_of("openline_handshakes") == "counter"
        assert metrics.by_label("openline_handshakes", "result") == {
            "accepted": 6,
            "bad_subprotocol": 1,
            "origin": 1,
            "invalid": 1,
        }
        assert (
            metrics.value("openline_connections_opened", "openline_connections_opened_total") == 6
        )

        publishes = 3 + published
        assert metrics.value("openline_publishes", "openline_publishes_total") == publishes
        assert metrics.value("openline_messages_received", "openline_messages_received_total") == (
            stats.messages_in
        )
        # Every subscribe and publish, the three bad messages; nothing else was sent.
        assert stats.messages_in == 1 + 3 + 1 + 1 + 1 + published + 3
        assert metrics.value("openline_received_bytes", "openline_received_bytes_total") == (
            stats.bytes_in
        )
        assert stats.bytes_in > published * len(payload)
        sent = metrics.value("openline_sent_bytes", "openline_sent_bytes_total")
        assert sent == stats.bytes_out
        # The firehose went to the publisher's acks at least; the reader got 3 messages.
        assert sent > published * 50
        assert metrics.value("openline_messages_sent", "openline_messages_sent_total") == (
            stats.messages_out
        )

        name = "openline_publish_duration_seconds"
        assert metrics.type_of(name) == "histogram"
        assert metrics.value(name, name + "_count") == publishes
        assert metrics.value(name, name + "_bucket", le="+Inf") == publishes
        assert 0 < metrics.value(name, name + "_sum") < publishes * TIMEOUT

        # reader, resumer and gapped are in "room"; the publisher subscribed nowhere.
        assert metrics.type_of("openline_subscriptions") == "gauge"
        assert metrics.value("openline_subscriptions") == 3
        assert metrics.value("openline_channels") == 1
        assert metrics.by_label("openline_resumes", "result") == {"recovered": 1, "gap": 1}

        evictions = metrics.by_label("openline_slow_consumer_evictions", "reason")
        assert sum(evictions.values()) == 1 and set(evictions) <= {"buffer", "stalled"}
        assert metrics.value("openline_abuse_closes", "openline_abuse_closes_total") == 1
        assert metrics.by_label("openline_errors", "code") == {"bad_request": 3}
        assert (
            metrics.value("openline_keepalive_timeouts", "openline_keepalive_timeouts_total") == 0
        )

        kind = "memory" if isinstance(engine, MemoryEngine) else "redis"
        assert metrics.type_of("openline_engine_up") == "gauge"
        assert metrics.value("openline_engine_up", engine=kind) == 1
        trips = "openline_redis_round_trip_seconds"
        if kind == "memory":
            assert trips not in metrics.families
        else:
            assert metrics.type_of(trips) == "histogram"
            # Each publish is one PUBLISH script, duplicates and failures included.
            assert metrics.value(trips, trips + "_count", script="PUBLISH") == publishes
            scripts = {s.labels["script"] for s in metrics.samples(trips)}
            assert {"PUBLISH", "HISTORY"} <= scripts
        for hub_client in (reader, publisher, resumer, gapped, slow, rogue):
            await hub_client.close()


async def test_a_keepalive_timeout_is_counted() -> None:
    hub = Hub(ping_interval=50 * MS, ping_timeout=50 * MS)
    async with serving(App(hub)) as port:
        silent = await client(port)
        silent.go_silent()
        await wait_for(lambda: hub.stats.keepalive_timeouts == 1)
        metrics = await scrape(port)
        assert (
            metrics.value("openline_keepalive_timeouts", "openline_keepalive_timeouts_total") == 1
        )
        assert metrics.value("openline_connections") == 0
        with contextlib.suppress(ConnectionClosed):
            await silent.close()


async def test_the_engine_reads_down_when_redis_is_gone(redis_server: Any) -> None:
    from openline.hub.backends.redis import RedisEngine

    engine = RedisEngine(redis_server.url, prefix="down", timeout=500 * MS)
    hub = Hub(engine)
    try:
        async with serving(App(hub)) as port:
            publisher = await client(port)
            await publisher.publish("room", 1)
            assert (await scrape(port)).value("openline_engine_up", engine="redis") == 1
            redis_server.stop()
            await publisher.send(type="publish", ch="room", data=2)
            await publisher.expect_error("unavailable")
            metrics = await scrape(port)
            assert metrics.value("openline_engine_up", engine="redis") == 0
            assert metrics.by_label("openline_errors", "code") == {"unavailable": 1}
            trips = "openline_redis_round_trip_seconds"
            # The failed round trip is timed too.
            assert metrics.value(trips, trips + "_count", script="PUBLISH") == 2
            await publisher.close()
    finally:
        await engine.close()


async def test_refused_handshakes_are_counted_by_result() -> None:
    def authenticate(credentials: Credentials) -> Identity:
        token = credentials.token
        if token == "banned":
            raise Reject(403, "banned")
        if token == "later":
            raise Reject(429, "too many attempts")
        if token is None:
            raise Reject(401, "who are you?")
        return Identity(token)

    hub = Hub(authenticate=authenticate)
    async with App(hub).run("127.0.0.1", 0, max_connections=1) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ws"
        for token in (None, "banned", "later"):
            offers = ["openline.v1"] + ([f"openline.token.{token}"] if token else [])
            with pytest.raises(InvalidStatus):
                await connect(url, subprotocols=offers)
        ada = await client(port, subprotocols=["openline.v1", "openline.token.ada"])
        with pytest.raises(InvalidStatus) as caught:
            await connect(url, subprotocols=["openline.v1", "openline.token.bob"])
        assert caught.value.status == 503  # max_connections
        metrics = await scrape(port)
        assert metrics.by_label("openline_handshakes", "result") == {
            "accepted": 1,
            "unauthorized": 1,
            "forbidden": 1,
            "refused": 1,
            "unavailable": 1,
        }
        await ada.close()


def test_without_prometheus_client_metrics_answer_501(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail, as when the package is missing.
    for name in [name for name in sys.modules if name.startswith("prometheus_client")]:
        monkeypatch.setitem(sys.modules, name, None)
    hub = Hub()
    with pytest.raises(ImportError, match=r"openline\[server\]"):
        render_metrics(hub)
    request = Request("/metrics", Headers([("Host", "example")]))
    reply = MetricsEndpoint(hub).respond(request)
    assert reply.status == 501 and b"openline[server]" in reply.body


# --- the endpoint ------------------------------------------------------------------------


async def test_a_metrics_key_is_required_when_set() -> None:
    hub = Hub()
    async with serving(App(hub, metrics=MetricsEndpoint(hub, key="scrape-me"))) as port:
        refused = await request(port, "/metrics")
        assert refused.status == 401 and refused.headers["www-authenticate"] == "Bearer"
        wrong = await request(port, "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        metrics = await scrape(port, Authorization="Bearer scrape-me")
        assert metrics.value("openline_connections") == 0
        assert (await request(port, "/metrics", method="POST")).status == 405
        head = await request(
            port, "/metrics", method="HEAD", headers={"Authorization": "Bearer scrape-me"}
        )
        assert head.status == 200 and head.body == b""


def test_an_empty_metrics_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key must not be empty"):
        MetricsEndpoint(Hub(), key=" ")


def test_hubs_in_one_process_have_their_own_metrics() -> None:
    one, two = Hub(), Hub()
    one.stats.publishes = 5
    for hub, expected in ((one, 5), (two, 0)):
        content_type, body = render_metrics(hub)
        assert content_type.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert families["openline_publishes"].samples[0].value == expected


def test_timings_fill_cumulative_buckets() -> None:
    timings = Timings((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 3.0):
        timings.observe(seconds)
    assert timings.cumulative() == [(0.001, 2), (0.01, 3), (float("inf"), 4)]
    assert timings.count == 4 and timings.sum == pytest.approx(3.0065)
    with pytest.raises(ValueError, match="strictly increasing"):
        Timings((0.1, 0.1))
