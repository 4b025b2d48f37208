"""The Redis engine's own behaviour: several nodes on one Redis, outages, dead nodes.

The engine contract itself runs against Redis in test_engine.py (``make_engine``
is parametrised); these tests are what only a shared, remote store has. Each
test starts its own ``redis-server`` (tests/redis_server.py), so that it may
stop, restart or freeze it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from openline.exceptions import BackendUnavailable
from openline.hub.backends.base import Event, Message, Position, PresenceEvent
from openline.hub.backends.redis import RedisEngine
from openline.hub.backends.redis_feed import RespError, _Incomplete, parse, parse_endpoint

from ..redis_server import RedisServer
from .helpers import MS, TIMEOUT

_names = itertools.count()

EngineMaker = Callable[..., RedisEngine]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.arrived.set()

    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[EngineMaker]:
    """Engines on the test's own Redis, sharing one prefix: nodes of one hub."""
    engines: list[RedisEngine] = []
    prefix = f"n{next(_names)}"

    def make(**kwargs: Any) -> RedisEngine:
        kwargs.setdefault("retry_base", 0.05)
        kwargs.setdefault("retry_cap", 0.2)
        kwargs.setdefault("timeout", 1.0)
        engine = RedisEngine(redis_server.url, prefix=prefix, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await asyncio.wait_for(engine.close(), 10)


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(10 * MS)


# --- several nodes ----------------------------------------------------------------------


async def test_nodes_share_offsets_and_deliver_each_others_messages(nodes: EngineMaker) -> None:
    one, two, three = nodes(), nodes(), nodes()
    heard = {name: Recorder() for name in ("one", "two", "three")}
    for name, engine in (("one", one), ("two", two), ("three", three)):
        await engine.subscribe("ch", heard[name])
    results = []
    for n in range(30):
        engine = (one, two, three)[n % 3]
        results.append(await engine.publish("ch", f"m{n}".encode(), meta={"user": "u"}))
    assert [r.offset for r in results] == list(range(1, 31))
    assert len({r.epoch for r in results}) == 1
    for recorder in heard.values():
        await recorder.until(lambda r=recorder: len(r.messages()) == 30)  # type: ignore[misc]
        assert [(m.offset, m.data) for m in recorder.messages()] == [
            (n + 1, f"m{n}".encode()) for n in range(30)
        ]
        assert recorder.messages()[0].meta == {"user": "u"}
    # Every node reads the same history.
    histories = [await e.history("ch", since=10, epoch=results[0].epoch) for e in (one, two, three)]
    assert all(
        h.recovered and [m.offset for m in h.messages] == list(range(11, 31)) for h in histories
    )


async def test_a_retry_on_another_node_is_stored_once(nodes: EngineMaker) -> None:
    one, two = nodes(), nodes()
    heard = Recorder()
    await one.subscribe("ch", heard)
    first = await one.publish("ch", b"x", msg_id="retry-me")
    again = await two.publish("ch", b"x", msg_id="retry-me")
    assert (again.offset, again.duplicate, again.epoch) == (first.offset, True, first.epoch)
    # Concurrent publishes of one id from two nodes: one is stored.
    both = await asyncio.gather(
        one.publish("ch", b"y", msg_id="race"), two.publish("ch", b"y", msg_id="race")
    )
    assert sorted(r.duplicate for r in both) == [False, True]
    assert both[0].offset == both[1].offset
    await one.publish("ch", b"end")
    await heard.until(lambda: any(m.data == b"end" for m in heard.messages()))
    assert [m.data for m in heard.messages()] == [b"x", b"y", b"end"]


async def test_each_node_subscribes_once_per_channel(
    nodes: EngineMaker, redis_server: RedisServer
) -> None:
    engine = nodes()
    recorders = [Recorder() for _ in range(50)]
    for recorder in recorders:
        await engine.subscribe("busy", recorder)
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        counts = await client.pubsub_numsub(f"{engine._prefix}:ch:busy:live")
    finally:
        await client.aclose()
    assert counts[0][1] == 1  # one pub/sub subscription, whatever the subscribers
    await engine.publish("busy", b"x")
    for recorder in recorders:
        await recorder.until(lambda r=recorder: len(r.messages()) == 1)  # type: ignore[misc]


async def test_presence_is_shared_across_nodes(nodes: EngineMaker) -> None:
    one, two = nodes(), nodes()
    heard = Recorder()
    await two.subscribe("room", heard)
    assert await one.presence_join("room", "alice", "c1", '{"n":1}') is True
    assert await two.presence_join("room", "alice", "c2", '{"n":2}') is False
    assert await two.presence_join("room", "bob", "c3", "{}") is True
    snapshot = await one.presence_snapshot("room")
    assert snapshot.count == 2 and snapshot.users is not None
    assert snapshot.users["alice"].clients == 2
    assert (
        await two.presence_leave("room", "alice", "c1") is False
    )  # c1 isn't two's, yet it is alice's
    assert await one.presence_leave("room", "alice", "c2") is True
    await heard.until(lambda: len(heard.of(PresenceEvent)) == 3)
    events = heard.of(PresenceEvent)
    assert [(e.kind, e.user, e.count) for e in events] == [
        ("join", "alice", 1),
        ("join", "bob", 2),
        ("leave", "alice", 1),
    ]
    assert [e.seq for e in events] == [1, 2, 3]
    assert (await two.presence_snapshot("room")).seq == 3


async def test_a_dead_nodes_users_leave_within_the_presence_ttl(nodes: EngineMaker) -> None:
    ttl = 300 * MS
    doomed, survivor = nodes(presence_ttl=ttl), nodes(presence_ttl=ttl)
    heard = Recorder()
    await survivor.subscribe("room", heard)
    await doomed.presence_join("room", "ghost", "c-ghost", "{}")
    await survivor.presence_join("room", "alive", "c-alive", "{}")
    await heard.until(lambda: len(heard.of(PresenceEvent)) == 2)
    # The node dies without a word: its heartbeat stops, its sockets stay open.
    assert doomed._supervisor is not None
    doomed._supervisor.cancel()
    died = asyncio.get_running_loop().time()
    await heard.until(lambda: any(e.kind == "leave" for e in heard.of(PresenceEvent)), 10 * ttl)
    took = asyncio.get_running_loop().time() - died
    leave = [e for e in heard.of(PresenceEvent) if e.kind == "leave"]
    assert [(e.user, e.count) for e in leave] == [("ghost", 1)]
    assert took < ttl + ttl / 3 + 500 * MS  # its ttl, one heartbeat of the survivor, slack
    snapshot = await survivor.presence_snapshot("room")
    assert snapshot.users is not None and set(snapshot.users) == {"alive"}
    assert survivor.health()["reaped_nodes"] == 1
    doomed._present.clear()  # it is dead: nothing to leave at close


# --- outages ----------------------------------------------------------------------------


async def test_redis_stopped_and_back_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "openline.hub")
    with RedisServer(persist=True) as server:
        reader = RedisEngine(server.url, prefix="o", timeout=1.0, retry_base=0.05, retry_cap=0.2)
        writer = RedisEngine(server.url, prefix="o", timeout=1.0, retry_base=0.05, retry_cap=0.2)
        try:
            heard = Recorder()
            await reader.subscribe("ch", heard)
            first = await writer.publish("ch", b"before")
            await heard.until(lambda: len(heard.messages()) == 1)
            server.stop()
            with pytest.raises(BackendUnavailable):
                await writer.publish("ch", b"lost?")
            await eventually(lambda: reader.health()["status"] == "degraded")
            assert reader.health()["errors"] >= 1
            server.start()
            # Published while the reader's feed is still down, or just back.
            second = await _publish_until_stored(writer, b"during")
            await eventually(lambda: reader.health()["status"] == "ok", 5 * TIMEOUT)
            await heard.until(lambda: bool(heard.of(Position)) or len(heard.messages()) == 2)
            assert second.epoch == first.epoch and second.offset == 2  # persisted: same epoch
            positions = heard.of(Position)
            if positions:
                assert (positions[-1].epoch, positions[-1].last_offset) >= (first.epoch, 1)
            assert reader.health()["reconnects"] >= 1
            assert "Redis engine degraded" in caplog.text and "Redis engine back" in caplog.text
            third = await writer.publish("ch", b"after")
            await heard.until(lambda: any(m.offset == third.offset for m in heard.messages()))
        finally:
            await reader.close()
            await writer.close()


async def test_a_leave_during_an_outage_is_done_when_redis_is_back() -> None:
    with RedisServer(persist=True) as server:
        node = RedisEngine(server.url, prefix="l", timeout=1.0, retry_base=0.05, retry_cap=0.2)
        other = RedisEngine(server.url, prefix="l", timeout=1.0, retry_base=0.05, retry_cap=0.2)
        try:
            await node.presence_join("room", "alice", "c1", "{}")
            await node.presence_join("room", "bob", "c2", "{}")
            server.stop()
            with pytest.raises(BackendUnavailable):
                await node.presence_leave("room", "alice", "c1")
            server.start()
            await eventually(lambda: node.health()["status"] == "ok", 5 * TIMEOUT)

            async def present() -> set[str]:
                snapshot = await other.presence_snapshot("room")
                return set(snapshot.users or ())

            async with asyncio.timeout(TIMEOUT):
                while True:
                    try:
                        if await present() == {"bob"}:
                            break
                    except BackendUnavailable:
                        pass
                    await asyncio.sleep(20 * MS)
        finally:
            await node.close()
            await other.close()


async def test_redis_restarted_empty_gives_a_new_epoch(redis_server: RedisServer) -> None:
    reader = RedisEngine(redis_server.url, prefix="r", timeout=1.0, retry_base=0.05, retry_cap=0.2)
    writer = RedisEngine(redis_server.url, prefix="r", timeout=1.0, retry_base=0.05, retry_cap=0.2)
    try:
        heard = Recorder()
        await reader.subscribe("ch", heard)
        old = await writer.publish("ch", b"old")
        await heard.until(lambda: len(heard.messages()) == 1)
        redis_server.kill()
        redis_server.start()  # no persistence: everything is gone
        await heard.until(lambda: bool(heard.of(Position)), 5 * TIMEOUT)
        position = heard.of(Position)[-1]
        assert position.epoch != old.epoch and position.last_offset == 0
        new = await _publish_until_stored(writer, b"new")
        assert (new.epoch, new.offset) == (position.epoch, 1)
        history = await writer.history("ch", since=1, epoch=old.epoch)
        assert history.recovered is False  # the resuming client gets a gap
        await heard.until(lambda: any(m.epoch == new.epoch for m in heard.messages()))
    finally:
        await reader.close()
        await writer.close()


async def test_a_frozen_redis_degrades_then_recovers(redis_server: RedisServer) -> None:
    engine = RedisEngine(redis_server.url, prefix="f", timeout=0.3, retry_base=0.05, retry_cap=0.2)
    try:
        heard = Recorder()
        await engine.subscribe("ch", heard)
        redis_server.freeze()
        try:
            with pytest.raises(BackendUnavailable):
                await engine.publish("ch", b"x")
            assert engine.health()["status"] == "degraded"
        finally:
            redis_server.thaw()
        await eventually(lambda: engine.health()["status"] == "ok", 5 * TIMEOUT)
        result = await _publish_until_stored(engine, b"y")
        await heard.until(lambda: any(m.offset == result.offset for m in heard.messages()))
    finally:
        await engine.close()


async def test_an_unreachable_redis_is_a_clear_error() -> None:
    from ..redis_server import free_port

    engine = RedisEngine(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    with pytest.raises(BackendUnavailable, match="can't reach Redis"):
        await engine.start()
    with pytest.raises(BackendUnavailable):
        await engine.publish("ch", b"x")
    await engine.close()


async def test_state_expires_across_nodes(nodes: EngineMaker) -> None:
    one, two = nodes(), nodes()
    heard = Recorder()
    await two.subscribe("room", heard)
    await one.presence_join("room", "alice", "c1", "{}")
    await one.presence_state("room", "alice", '{"typing":true}', 80 * MS)
    snapshot = await two.presence_snapshot("room")
    assert snapshot.users is not None and snapshot.users["alice"].state == '{"typing":true}'
    await heard.until(
        lambda: (
            [e.state for e in heard.of(PresenceEvent) if e.kind == "state"]
            == ['{"typing":true}', None]
        )
    )
    snapshot = await two.presence_snapshot("room")
    assert snapshot.users is not None and snapshot.users["alice"].state is None


# --- arguments and parsing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"history_size": -1}, "history_size"),
        ({"history_size": None, "history_ttl": None}, "history_size"),
        ({"presence_ttl": 0}, "presence_ttl"),
        ({"timeout": -1}, "timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"prefix": ""}, "prefix"),
        ({"node": "a\nb"}, "node"),
    ],
)
def test_the_redis_engine_checks_its_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RedisEngine(**kwargs)


def test_redis_urls() -> None:
    e = parse_endpoint("redis://user:p%40ss@example.com:6380/2")
    assert (e.host, e.port, e.username, e.password, e.tls) == (
        "example.com",
        6380,
        "user",
        "p@ss",
        False,
    )
    assert parse_endpoint("rediss://h").tls is True
    assert parse_endpoint("unix:///run/redis.sock").path == "/run/redis.sock"
    for bad in ("http://h", "unix://", "redis://h:port"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)
    with pytest.raises(ValueError, match="Redis URL"):
        RedisEngine("http://nowhere")


def test_the_resp_parser() -> None:
    data = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\na\r\nbc\r\n:42\r\n+OK\r\n-ERR no\r\n$-1\r\n"
    value, pos = parse(data, 0)
    assert value == [b"message", b"ch", b"a\r\nbc"]
    value, pos = parse(data, pos)
    assert value == 42
    value, pos = parse(data, pos)
    assert value == b"OK"
    value, pos = parse(data, pos)
    assert isinstance(value, RespError) and str(value) == "ERR no"
    value, pos = parse(data, pos)
    assert value is None and pos == len(data)
    # Any prefix of a value is incomplete, never wrong.
    whole = b"*2\r\n$3\r\nabc\r\n$0\r\n\r\n"
    for cut in range(len(whole)):
        with pytest.raises(_Incomplete):
            parse(whole[:cut], 0)
    with pytest.raises(ValueError):
        parse(b"?what\r\n", 0)


async def _publish_until_stored(engine: RedisEngine, data: bytes) -> Any:
    """Publish, retrying while Redis comes back (as the hub's clients do)."""
    async with asyncio.timeout(5 * TIMEOUT):
        while True:
            try:
                return await engine.publish("ch", data)
            except BackendUnavailable:
                await asyncio.sleep(20 * MS)
