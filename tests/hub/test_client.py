"""The resilient hub client against a real hub: redials, resumes, queues, and stops when told."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from openline.asyncio.backoff import Backoff
from openline.asyncio.server import ServerConnection, serve
from openline.exceptions import ConnectionClosedError, InvalidStatus
from openline.hub import Credentials, Hub, Identity, Reject
from openline.hub.backends.base import Engine
from openline.hub.client import Client, ClientClosed, Subscription
from openline.hub.events import (
    Ack,
    ClientEvent,
    Connected,
    Disconnected,
    Error,
    Gap,
    Item,
    Join,
    Leave,
    Presence,
    Publication,
    Reconnecting,
    Resumed,
    StateChange,
)
from openline.hub.wire import RequestError
from tests.chaos.proxy import ChaosProxy

from .conftest import EngineFactory
from .helpers import MS, TIMEOUT, RunningHub, run_hub, wait_for

#: Fast settings for tests: short heartbeats and redials.
#: The clients' heartbeat in these tests: short, but well above the loop stalls of a busy
#: 2-core machine (a 60 ms timeout gave lines up that were only slow).
HEARTBEAT_INTERVAL = 80 * MS
HEARTBEAT_TIMEOUT = 160 * MS
#: Scheduling slack on top of interval + timeout before a dead line must have been noticed.
DETECTION_SLACK = 250 * MS
FAST: dict[str, Any] = dict(
    heartbeat_interval=HEARTBEAT_INTERVAL, heartbeat_timeout=HEARTBEAT_TIMEOUT, reset_after=None
)


def port_of(running: RunningHub) -> int:
    port: int = running.server.sockets[0].getsockname()[1]
    return port


def fast_backoff(seed: int = 0) -> Backoff:
    return Backoff(2 * MS, 20 * MS, rng=random.Random(seed))


def client(uri: str, **kwargs: Any) -> Client:
    options: dict[str, Any] = {**FAST, "backoff": fast_backoff()}
    options.update(kwargs)
    return Client(uri, **options)


async def next_item(sub: Subscription) -> Item:
    return await asyncio.wait_for(sub.get(), TIMEOUT)


async def next_publication(sub: Subscription) -> Publication:
    item = await next_item(sub)
    assert isinstance(item, Publication), item
    return item


async def publications(sub: Subscription, count: int) -> list[Publication]:
    return [await next_publication(sub) for _ in range(count)]


class Recorder:
    """Collects the client's events, and lets a test wait for one of a kind."""

    def __init__(self) -> None:
        self.events: list[ClientEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ClientEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait(self, kind: type, count: int = 1) -> Any:
        async def poll() -> Any:
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()
            return self.of(kind)[count - 1]

        return await asyncio.wait_for(poll(), TIMEOUT)


class Restartable:
    """A hub process on a fixed port that a test stops and starts, each time with a new engine."""

    def __init__(self, make_engine: Callable[[], Engine], **hub_kwargs: Any) -> None:
        self.make_engine = make_engine
        self.hub_kwargs = hub_kwargs
        self.port = 0
        self.hub: Hub | None = None
        self._serving: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> Hub:
        self.hub = Hub(self.make_engine(), **self.hub_kwargs)
        self._serving = self.hub.serve("127.0.0.1", self.port, close_timeout=100 * MS)
        server = await self._serving.__aenter__()
        self.port = server.sockets[0].getsockname()[1]
        return self.hub

    async def stop(self) -> None:
        assert self.hub is not None
        await self._serving.__aexit__(None, None, None)
        await self.hub.close()
        self.hub = None


@asynccontextmanager
async def restartable(
    make_engine: Callable[[], Engine], **kwargs: Any
) -> AsyncIterator[Restartable]:
    hub = Restartable(make_engine, **kwargs)
    await hub.start()
    try:
        yield hub
    finally:
        if hub.hub is not None:
            await hub.stop()


@asynccontextmanager
async def fake_hub(
    script: Callable[[ServerConnection], Awaitable[None]],
) -> AsyncIterator[str]:
    """A server that speaks openline.v1 by a test's script: welcome, then ``script``."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "welcome", "client": "c1", "user": "u1"}))
        await script(ws)

    async with serve(handler, "127.0.0.1", 0, subprotocols=["openline.v1"]) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def request(ws: ServerConnection) -> dict[str, Any]:
    """Read client requests until one that isn't a heartbeat ping."""
    while True:
        message = json.loads(await ws.recv())
        if message["type"] != "ping":
            assert isinstance(message, dict)
            return message


# --- the basics -------------------------------------------------------------------------


async def test_client_subscribes_publishes_and_receives(engine: Engine) -> None:
    async with run_hub(engine) as running:
        recorder = Recorder()
        async with client(running.url, on_event=recorder) as hub_client:
            assert hub_client.is_connected
            sub = await hub_client.subscribe("room")
            ack = await hub_client.publish("room", {"text": "hi"})
            assert isinstance(ack, Ack)
            assert (ack.ch, ack.offset, ack.duplicate) == ("room", 1, False)
            await running.hub.publish("room", "from the server")
            first, second = await publications(sub, 2)
            assert (first.data, first.offset, first.id) == ({"text": "hi"}, 1, ack.id)
            assert first.user == hub_client.user
            assert (second.data, second.offset, second.id) == ("from the server", 2, None)
            assert sub.position == (ack.epoch, 2)
        connected = recorder.of(Connected)
        assert len(connected) == 1
        assert connected[0].client == hub_client.client_id
        assert connected[0].attempt == 1


async def test_each_publish_gets_a_unique_id_unless_given(engine: Engine) -> None:
    async with run_hub(engine) as running, client(running.url) as hub_client:
        one = await hub_client.publish("room", 1)
        two = await hub_client.publish("room", 2)
        mine = await hub_client.publish("room", 3, id="order-42")
        again = await hub_client.publish("room", 3, id="order-42")
        assert one.id != two.id
        assert mine.id == "order-42"
        assert (again.duplicate, again.offset) == (True, mine.offset)


async def test_subscribe_from_a_kept_position_replays_what_was_missed(engine: Engine) -> None:
    async with run_hub(engine) as running:
        for n in range(5):
            await running.hub.publish("room", n)
        history = await engine.history("room")
        async with client(running.url) as hub_client:
            recorder = Recorder()
            hub_client._on_event = recorder
            sub = await hub_client.subscribe("room", since=(history.epoch, 2))
            assert [p.data for p in await publications(sub, 3)] == [2, 3, 4]
            resumed = await recorder.wait(Resumed)
            assert (resumed.ch, resumed.recovered, resumed.gap) == ("room", 3, False)


async def test_subscribe_twice_to_a_channel_is_refused(engine: Engine) -> None:
    async with run_hub(engine) as running, client(running.url) as hub_client:
        await hub_client.subscribe("room")
        with pytest.raises(ValueError, match="already subscribed"):
            await hub_client.subscribe("room")


async def test_a_refused_subscribe_raises_and_is_forgotten(engine: Engine) -> None:
    def authorize(identity: Identity, action: str, ch: str) -> bool:
        return ch != "secret"

    async with run_hub(engine, authorize=authorize) as running, client(running.url) as hub_client:
        with pytest.raises(RequestError) as info:
            await hub_client.subscribe("secret")
        assert info.value.code == "forbidden"
        await hub_client.subscribe("public")  # the client goes on
        with pytest.raises(RequestError, match="forbidden"):
            await hub_client.publish("secret", "x")


async def test_unsubscribe_ends_the_iteration(engine: Engine) -> None:
    async with run_hub(engine) as running, client(running.url) as hub_client:
        sub = await hub_client.subscribe("room")
        await running.hub.publish("room", "kept")
        assert (await next_publication(sub)).data == "kept"
        await sub.unsubscribe()
        assert [item async for item in sub] == []
        await hub_client.subscribe("room")  # may subscribe again


async def test_close_ends_subscriptions_pending_calls_and_events() -> None:
    published = asyncio.Event()

    async def never_ack(ws: ServerConnection) -> None:
        assert (await request(ws))["type"] == "publish"
        published.set()
        await ws.wait_closed()

    async with fake_hub(never_ack) as url:
        hub_client = client(url)
        await hub_client.start()
        events = hub_client.events()
        pending = asyncio.ensure_future(hub_client.publish("room", 1))  # never acked
        await asyncio.wait_for(published.wait(), TIMEOUT)  # sent, waiting for its ack
        await hub_client.close()
        with pytest.raises(ClientClosed):
            await pending
        with pytest.raises(ClientClosed):
            await hub_client.publish("room", 2)
        assert [type(e) async for e in events] == [Disconnected]
        await hub_client.close()  # twice is fine


# --- presence ---------------------------------------------------------------------------


async def test_presence_snapshot_and_events_arrive_on_the_subscription(engine: Engine) -> None:
    users = iter(["alice", "bob"])

    def authenticate(credentials: Credentials) -> Identity:
        return Identity(next(users), {"name": credentials.token})

    hub_kwargs: dict[str, Any] = dict(authenticate=authenticate, state_interval=None)
    async with (
        run_hub(engine, **hub_kwargs) as running,
        client(running.url, token="Alice") as alice,
    ):
        room = await alice.subscribe("room", presence=True)
        snapshot = await next_item(room)
        assert isinstance(snapshot, Presence)
        assert snapshot.count == 1
        assert snapshot.members is not None
        assert snapshot.members["alice"].info == {"name": "Alice"}
        async with client(running.url, token="Bob") as bob:
            await bob.subscribe("room")
            join = await next_item(room)
            assert join == Join("room", "bob", {"name": "Bob"})
            assert set(room.members) == {"alice", "bob"}
            await bob.set_state("room", {"typing": True})
            change = await next_item(room)
            assert isinstance(change, StateChange)
            assert (change.user, change.state) == ("bob", {"typing": True})
            assert room.members["bob"].state == {"typing": True}
            asked = await alice.presence("room")
            assert asked.count == 2
            await bob.set_state("room", None)
            cleared = await next_item(room)
            assert isinstance(cleared, StateChange) and cleared.state is None
        assert await next_item(room) == Leave("room", "bob")
        assert set(room.members) == {"alice"}


async def test_set_state_needs_a_subscription(engine: Engine) -> None:
    async with run_hub(engine) as running, client(running.url) as hub_client:
        with pytest.raises(ValueError, match="not subscribed"):
            await hub_client.set_state("room", {"typing": True})


# --- redialling and resuming ------------------------------------------------------------


async def test_resumes_after_a_cut_without_loss_or_duplicates(engine: Engine) -> None:
    async with run_hub(engine) as running, ChaosProxy("127.0.0.1", port_of(running)) as proxy:
        recorder = Recorder()
        async with client(proxy.url(), on_event=recorder) as hub_client:
            sub = await hub_client.subscribe("room")
            for mode in ("fin", "rst", "blackhole"):
                await running.hub.publish("room", f"before {mode}")
                assert proxy.cut(mode) == 1
                await running.hub.publish("room", f"during {mode}")
                await recorder.wait(Resumed, len(recorder.of(Resumed)) + 1)
                await running.hub.publish("room", f"after {mode}")
            items = await publications(sub, 9)
            assert [p.offset for p in items] == list(range(1, 10))
            assert [p.data for p in items[:3]] == ["before fin", "during fin", "after fin"]
            assert recorder.of(Gap) == []
            assert hub_client.stats["dead_lines"] == 1
            reasons = [d.reason for d in recorder.of(Disconnected)]
            assert reasons[-1] in ("heartbeat timeout", "keepalive timeout")


async def test_a_blackholed_line_is_given_up_within_interval_plus_timeout(engine: Engine) -> None:
    async with run_hub(engine) as running, ChaosProxy("127.0.0.1", port_of(running)) as proxy:
        recorder = Recorder()
        async with client(proxy.url(), on_event=recorder) as hub_client:
            await hub_client.subscribe("room")
            proxy.cut("blackhole")
            cut_at = time.monotonic()
            lost = await recorder.wait(Disconnected)
            detected = time.monotonic() - cut_at
            assert lost.code == 1006
            # Our heartbeat, or the WebSocket keepalive: whichever noticed first.
            assert lost.reason in ("heartbeat timeout", "keepalive timeout")
            assert detected <= HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + DETECTION_SLACK
            await recorder.wait(Connected, 2)
            reconnecting = recorder.of(Reconnecting)[0]
            assert reconnecting.attempt == 2 or reconnecting.attempt == 1
            assert 0 <= reconnecting.delay <= 20 * MS


async def test_server_restart_with_the_memory_engine_gives_a_new_epoch_and_a_gap(
    make_engine: EngineFactory,
) -> None:
    async with restartable(make_engine) as hub_process:
        recorder = Recorder()
        assert hub_process.hub is not None
        async with client(hub_process.url, on_event=recorder) as hub_client:
            sub = await hub_client.subscribe("room")
            for n in range(3):
                await hub_process.hub.publish("room", n)
            before = await publications(sub, 3)
            old_epoch = before[-1].epoch
            await hub_process.stop()  # closes with 1001: the client redials
            hub = await hub_process.start()  # a new process: memory lost
            resumed = await recorder.wait(Resumed)
            assert resumed.gap is True
            await hub.publish("room", "new 1")
            await hub.publish("room", "new 2")
            gap = await next_item(sub)
            assert isinstance(gap, Gap)
            assert gap.epoch != old_epoch
            assert gap.since == (old_epoch, 3)
            assert gap.first == 1
            after = await publications(sub, 2)
            assert [(p.epoch, p.offset, p.data) for p in after] == [
                (gap.epoch, 1, "new 1"),
                (gap.epoch, 2, "new 2"),
            ]
            assert recorder.of(Gap) == [gap]
            assert recorder.of(Disconnected)[0].code == 1001


async def test_short_history_reports_a_gap_where_the_hole_is(make_engine: EngineFactory) -> None:
    engine = make_engine(history_size=2)
    async with run_hub(engine) as running, ChaosProxy("127.0.0.1", port_of(running)) as proxy:
        recorder = Recorder()
        async with client(proxy.url(), on_event=recorder) as hub_client:
            sub = await hub_client.subscribe("room")
            await running.hub.publish("room", 1)
            assert (await next_publication(sub)).offset == 1
            proxy.refuse = True
            proxy.cut("rst")
            await recorder.wait(Disconnected)
            for n in range(2, 7):
                await running.hub.publish("room", n)  # history keeps 5 and 6 only
            proxy.refuse = False
            gap = await next_item(sub)
            assert isinstance(gap, Gap)
            assert (gap.since, gap.first) == ((gap.epoch, 1), 5)
            assert [p.data for p in await publications(sub, 2)] == [5, 6]
            resumed = await recorder.wait(Resumed)
            assert (resumed.recovered, resumed.gap) == (2, True)


# --- the offline queue ------------------------------------------------------------------


async def test_publishes_queued_offline_are_flushed_in_order_and_stored_once(
    engine: Engine,
) -> None:
    async with run_hub(engine) as running:
        async with ChaosProxy("127.0.0.1", port_of(running)) as proxy:
            recorder = Recorder()
            async with client(proxy.url(), on_event=recorder) as hub_client:
                proxy.refuse = True
                proxy.cut("rst")
                await recorder.wait(Disconnected)
                assert not hub_client.is_connected
                tasks = [asyncio.ensure_future(hub_client.publish("room", n)) for n in range(20)]
                await recorder.wait(Reconnecting, 2)  # still offline, still redialling
                assert not any(task.done() for task in tasks)
                assert (await engine.history("room")).last_offset == 0
                proxy.refuse = False
                acks = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
                assert [ack.offset for ack in acks] == list(range(1, 21))
                assert not any(ack.duplicate for ack in acks)
        history = await engine.history("room", since=0, epoch=acks[0].epoch)
        assert [json.loads(m.data) for m in history.messages] == list(range(20))


async def test_a_publish_whose_ack_was_lost_is_stored_once(engine: Engine) -> None:
    async with run_hub(engine) as running:
        async with ChaosProxy("127.0.0.1", port_of(running), latency=40 * MS) as proxy:
            recorder = Recorder()
            async with client(proxy.url(), on_event=recorder, heartbeat_timeout=150 * MS) as c:
                pending = asyncio.ensure_future(c.publish("room", "once"))
                # Stored at the hub, while the ack is still on its way back: cut it.
                await wait_for(lambda: running.hub.stats.publishes == 1, TIMEOUT)
                proxy.cut("blackhole")
                ack = await asyncio.wait_for(pending, TIMEOUT)
                assert ack.duplicate is True  # sent again after the redial
                assert ack.offset == 1
                assert c.stats["dead_lines"] == 1
        assert (await engine.history("room")).last_offset == 1


async def test_publish_waits_for_room_beyond_max_queue() -> None:
    publishes: asyncio.Queue[Any] = asyncio.Queue()

    async def never_ack(ws: ServerConnection) -> None:
        while True:
            publishes.put_nowait((await request(ws))["data"])

    async with fake_hub(never_ack) as url, client(url, max_queue=2) as hub_client:
        first = asyncio.ensure_future(hub_client.publish("room", 1))
        second = asyncio.ensure_future(hub_client.publish("room", 2))
        third = asyncio.ensure_future(hub_client.publish("room", 3))
        assert await asyncio.wait_for(publishes.get(), TIMEOUT) == 1
        assert await asyncio.wait_for(publishes.get(), TIMEOUT) == 2
        assert len(hub_client._outbox) == 2  # the third waits for room
        assert not third.done() and publishes.empty()
        first.cancel()  # stops its retries and makes room
        assert await asyncio.wait_for(publishes.get(), TIMEOUT) == 3
        assert len(hub_client._outbox) == 2
        assert not third.done()
        second.cancel()
        third.cancel()
        await asyncio.gather(first, second, third, return_exceptions=True)


async def test_rate_limited_publishes_are_retried_in_order_until_acked(engine: Engine) -> None:
    # Unpaced, the client runs into the hub's limit: refusals are load, not abuse
    # (no 1008 with the default error budget), and the retries keep the order.
    limits: dict[str, Any] = dict(rate_limit=(5, 0.05))
    async with (
        run_hub(engine, **limits) as running,
        client(running.url, pace=False) as hub_client,
    ):
        acks = await asyncio.wait_for(
            asyncio.gather(*(hub_client.publish("room", n) for n in range(30))), TIMEOUT
        )
        assert [ack.offset for ack in acks] == list(range(1, 31))
        assert hub_client.stats["republished"] > 0
        assert running.hub.metrics()["abuse_closes"] == 0
    history = await engine.history("room", since=0, epoch=acks[0].epoch)
    assert [json.loads(m.data) for m in history.messages] == list(range(30))


async def test_a_paced_client_stays_below_the_announced_rate(engine: Engine) -> None:
    limits: dict[str, Any] = dict(rate_limit=(5, 0.05), max_errors=(1, 10.0))
    async with run_hub(engine, **limits) as running, client(running.url) as hub_client:
        acks = await asyncio.wait_for(
            asyncio.gather(*(hub_client.publish("room", n) for n in range(60))), TIMEOUT
        )
        assert [ack.offset for ack in acks] == list(range(1, 61))
        assert hub_client.stats["republished"] == 0
        assert running.hub.metrics().get("errors.rate_limited", 0) == 0


# --- stopping for good ------------------------------------------------------------------


async def test_401_at_the_handshake_stops_the_client(engine: Engine) -> None:
    async with run_hub(engine, authenticate=lambda credentials: None) as running:
        recorder = Recorder()
        hub_client = client(running.url, on_event=recorder)
        with pytest.raises(InvalidStatus) as info:
            async with hub_client:
                pytest.fail("the client shouldn't start")
        assert info.value.status == 401
        assert recorder.of(Reconnecting) == []
        [error] = recorder.of(Error)
        assert error.fatal and error.error is info.value
        with pytest.raises(InvalidStatus):
            await hub_client.publish("room", 1)


async def test_403_at_the_handshake_stops_the_client(engine: Engine) -> None:
    def authenticate(credentials: Credentials) -> Identity:
        if credentials.token != "good":
            raise Reject(403, "banned")
        return Identity("me")

    async with run_hub(engine, authenticate=authenticate) as running:
        with pytest.raises(InvalidStatus, match="403"):
            async with client(running.url, token="bad"):
                pass
        async with client(running.url, token="good") as hub_client:
            assert hub_client.user == "me"


async def test_1008_stops_the_client_and_raises_everywhere(engine: Engine) -> None:
    async with run_hub(
        engine, authorize=lambda identity, action, ch: False, max_errors=(3, 10.0)
    ) as running:
        recorder = Recorder()
        async with client(running.url, on_event=recorder) as hub_client:
            for _ in range(2):
                with pytest.raises(RequestError, match="forbidden"):
                    await hub_client.publish("room", "no")
            # The third refusal is abuse: the hub closes with 1008.
            with pytest.raises((RequestError, ConnectionClosedError)):
                await hub_client.publish("room", "no")
            error = await recorder.wait(Error)
            assert error.fatal
            assert isinstance(error.error, ConnectionClosedError)
            assert error.error.code == 1008
            assert recorder.of(Reconnecting) == []
            with pytest.raises(ConnectionClosedError, match="1008"):
                await hub_client.subscribe("elsewhere")


async def test_a_stop_ends_subscriptions_with_the_error() -> None:
    async def kick(ws: ServerConnection) -> None:
        subscribe = await request(ws)
        await ws.send(
            json.dumps(
                {
                    "type": "subscribed",
                    "ch": "room",
                    "epoch": "e",
                    "offset": 0,
                    "recovered": False,
                    "missed": 0,
                    "rid": subscribe["rid"],
                }
            )
        )
        await ws.close(1008, "go away")

    async with fake_hub(kick) as url, client(url) as hub_client:
        sub = await hub_client.subscribe("room")
        with pytest.raises(ConnectionClosedError, match="go away"):
            async for _ in sub:
                pass


# --- belt and braces: the client checks offsets too -------------------------------------


def message(offset: int, epoch: str = "e1") -> str:
    return json.dumps(
        {"type": "message", "ch": "room", "epoch": epoch, "offset": offset, "data": offset}
    )


async def scripted(frames: list[str]) -> Callable[[ServerConnection], Awaitable[None]]:
    async def script(ws: ServerConnection) -> None:
        subscribe = await request(ws)
        subscribed = {
            "type": "subscribed",
            "ch": "room",
            "epoch": "e1",
            "offset": 0,
            "recovered": False,
            "missed": 0,
            "rid": subscribe["rid"],
        }
        await ws.send(json.dumps(subscribed))
        for frame in frames:
            await ws.send(frame)
        await ws.wait_closed()

    return script


async def test_the_client_drops_messages_it_has_seen() -> None:
    frames = [message(1), message(2), message(2), message(1), message(3)]
    async with fake_hub(await scripted(frames)) as url, client(url) as hub_client:
        sub = await hub_client.subscribe("room")
        assert [p.offset for p in await publications(sub, 3)] == [1, 2, 3]
        assert sub.duplicates == 2
        assert hub_client.stats["duplicates"] == 2


async def test_the_client_reports_a_hole_the_hub_didnt_mention() -> None:
    frames = [message(1), message(4), message(1, epoch="e2")]
    recorder = Recorder()
    script = await scripted(frames)
    async with fake_hub(script) as url, client(url, on_event=recorder) as hub_client:
        sub = await hub_client.subscribe("room")
        items = [await next_item(sub) for _ in range(5)]
    assert items == [
        Publication("room", "e1", 1, 1),
        Gap("room", "e1", ("e1", 1), 4),
        Publication("room", "e1", 4, 4),
        Gap("room", "e2", ("e1", 4), 1),
        Publication("room", "e2", 1, 1),
    ]
    assert recorder.of(Gap) == [items[1], items[3]]


async def test_a_malformed_message_is_reported_not_fatal() -> None:
    frames = ["not json", json.dumps({"type": "message", "ch": "room"}), message(1)]
    recorder = Recorder()
    script = await scripted(frames)
    async with fake_hub(script) as url, client(url, on_event=recorder) as hub_client:
        sub = await hub_client.subscribe("room")
        assert (await next_publication(sub)).offset == 1
    errors = recorder.of(Error)
    assert len(errors) == 2
    assert not any(error.fatal for error in errors)


async def test_a_server_that_isnt_a_hub_is_retried_then_given_up() -> None:
    async def not_a_hub(ws: ServerConnection) -> None:
        await ws.send("hello")

    async with serve(not_a_hub, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        hub_client = client(url, max_attempts=2)
        with pytest.raises(Exception, match="welcome"):
            await hub_client.start()
            await asyncio.wait_for(hub_client.subscribe("room"), TIMEOUT)
        await hub_client.close()


# --- events and arguments ---------------------------------------------------------------


async def test_events_iterator_sees_the_life_of_the_connection(engine: Engine) -> None:
    async with run_hub(engine) as running, ChaosProxy("127.0.0.1", port_of(running)) as proxy:
        hub_client = client(proxy.url())
        events = hub_client.events()
        await hub_client.start()
        await hub_client.subscribe("room")
        proxy.cut("fin")
        seen: list[ClientEvent] = []
        async for event in events:
            seen.append(event)
            if isinstance(event, Resumed):
                break
        await hub_client.close()
    kinds = [type(event) for event in seen]
    assert kinds == [Connected, Disconnected, Reconnecting, Connected, Resumed]


async def test_a_failing_callback_is_logged_and_ignored(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: ClientEvent) -> None:
        raise RuntimeError("oops")

    async with run_hub(engine) as running, client(running.url, on_event=broken) as hub_client:
        await hub_client.publish("room", 1)
    assert "on_event callback failed" in caplog.text


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("heartbeat_interval", 0),
        ("heartbeat_timeout", -1),
        ("max_queue", 0),
        ("max_buffer", 0),
        ("max_events", 0),
        ("max_attempts", 0),
        ("subprotocols", ["x"]),
    ],
)
def test_client_validates_its_arguments(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=argument):
        Client("ws://localhost/", **{argument: value})


async def test_start_twice_is_an_error() -> None:
    async with fake_hub(lambda ws: ws.wait_closed()) as url, client(url) as hub_client:
        with pytest.raises(RuntimeError, match="already started"):
            await hub_client.start()


# --- back-pressure, odd answers, and the remaining corners ------------------------------


async def test_a_slow_application_pauses_reading_without_losing_anything(engine: Engine) -> None:
    async with run_hub(engine) as running, client(running.url, max_buffer=2) as hub_client:
        sub = await hub_client.subscribe("room")
        for n in range(10):
            await running.hub.publish("room", n)
        await wait_for(lambda: hub_client._blocked)  # the buffer is full: reading waits
        await asyncio.sleep(3 * HEARTBEAT_TIMEOUT)  # longer than the heartbeat timeout: alive
        assert [p.data for p in await publications(sub, 10)] == list(range(10))
        assert hub_client.stats["dead_lines"] == 0


async def test_an_events_iterator_drops_the_oldest_beyond_max_events(engine: Engine) -> None:
    async with run_hub(engine) as running:
        hub_client = client(running.url, max_events=1)
        events = hub_client.events()
        await hub_client.start()
        await hub_client.close()
        assert [type(e) async for e in events] == [Disconnected]
        assert events.dropped == 1  # type: ignore[attr-defined]  # Connected went first
        assert [e async for e in hub_client.events()] == []  # closed: ends at once


async def test_close_while_offline_stops_redialling() -> None:
    async with ChaosProxy("127.0.0.1", 9) as proxy:  # nothing listens on port 9
        recorder = Recorder()
        hub_client = client(proxy.url(), on_event=recorder, backoff=[0.0, 60.0])
        await hub_client.start()  # the first dial failed: start() returns, offline
        assert not hub_client.is_connected
        await recorder.wait(Reconnecting, 2)  # now sleeping 60 s
        await asyncio.wait_for(hub_client.close(), TIMEOUT)


async def test_cancelling_subscribe_forgets_the_subscription() -> None:
    asked = asyncio.Event()

    async def silent(ws: ServerConnection) -> None:
        assert (await request(ws))["type"] == "subscribe"
        asked.set()  # and never answered
        await ws.wait_closed()

    async with fake_hub(silent) as url, client(url) as hub_client:
        pending = asyncio.ensure_future(hub_client.subscribe("room"))
        await asyncio.wait_for(asked.wait(), TIMEOUT)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert dict(hub_client.subscriptions) == {}


async def test_unsubscribe_during_subscribe_makes_it_raise() -> None:
    asked = asyncio.Event()

    async def silent(ws: ServerConnection) -> None:
        assert (await request(ws))["type"] == "subscribe"
        asked.set()  # and never answered
        await ws.wait_closed()

    async with fake_hub(silent) as url, client(url) as hub_client:
        pending = asyncio.ensure_future(hub_client.subscribe("room"))
        await asyncio.wait_for(asked.wait(), TIMEOUT)
        await hub_client.unsubscribe("room")
        await hub_client.unsubscribe("room")  # twice is fine
        with pytest.raises(ClientClosed, match="unsubscribed"):
            await pending


async def test_publish_rejects_a_bad_id_and_data_at_once(engine: Engine) -> None:
    async with run_hub(engine) as running, client(running.url) as hub_client:
        with pytest.raises(ValueError, match="id must have"):
            await hub_client.publish("room", 1, id="x" * 129)
        with pytest.raises(TypeError):
            await hub_client.publish("room", object())
        with pytest.raises(ValueError):
            await hub_client.publish("room", float("nan"))
        assert hub_client._outbox == {}


async def test_requests_made_offline_go_out_once_connected(engine: Engine) -> None:
    async with run_hub(engine) as running, ChaosProxy("127.0.0.1", port_of(running)) as proxy:
        recorder = Recorder()
        proxy.refuse = True
        async with client(proxy.url(), on_event=recorder) as hub_client:
            assert not hub_client.is_connected
            subscribing = asyncio.ensure_future(hub_client.subscribe("room", presence=True))
            asking = asyncio.ensure_future(hub_client.presence("room"))
            publishing = asyncio.ensure_future(hub_client.publish("room", "hello"))
            await recorder.wait(Reconnecting, 2)
            proxy.refuse = False
            sub = await asyncio.wait_for(subscribing, TIMEOUT)
            snapshot = await asyncio.wait_for(asking, TIMEOUT)
            assert snapshot.count in (0, 1)
            ack = await asyncio.wait_for(publishing, TIMEOUT)
            assert ack.offset == 1
            assert isinstance(await next_item(sub), Presence)


async def test_rate_limited_subscribes_and_queries_are_retried(engine: Engine) -> None:
    limits: dict[str, Any] = dict(rate_limit=(2, 0.1))
    async with run_hub(engine, **limits) as running, client(running.url, pace=False) as hub_client:
        subs = await asyncio.wait_for(
            asyncio.gather(*(hub_client.subscribe(f"room{n}") for n in range(6))), TIMEOUT
        )
        assert [sub.ch for sub in subs] == [f"room{n}" for n in range(6)]
        snapshots = await asyncio.wait_for(
            asyncio.gather(*(hub_client.presence(f"room{n}") for n in range(4))), TIMEOUT
        )
        assert all(snapshot.count == 1 for snapshot in snapshots)


async def test_a_finite_backoff_still_paces_retries_after_refusals(engine: Engine) -> None:
    limits: dict[str, Any] = dict(rate_limit=(2, 0.05))
    async with (
        run_hub(engine, **limits) as running,
        client(running.url, backoff=[MS], pace=False) as c,
    ):
        acks = await asyncio.wait_for(
            asyncio.gather(*(c.publish("room", n) for n in range(8))), TIMEOUT
        )
        assert len({ack.offset for ack in acks}) == 8


async def test_without_heartbeat_the_client_still_works(engine: Engine) -> None:
    quiet: dict[str, Any] = dict(heartbeat_interval=None, heartbeat_timeout=None)
    async with run_hub(engine) as running, client(running.url, **quiet) as hub_client:
        assert (await hub_client.publish("room", 1)).offset == 1


async def test_a_forbidden_presence_query_raises(engine: Engine) -> None:
    def authorize(identity: Identity, action: str, ch: str) -> bool:
        return action != "presence"

    async with run_hub(engine, authorize=authorize) as running, client(running.url) as c:
        with pytest.raises(RequestError, match="forbidden"):
            await c.presence("room")


def hub_frame(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


async def test_odd_answers_from_the_hub_are_tolerated() -> None:
    async def script(ws: ServerConnection) -> None:
        publish = await request(ws)
        ack = hub_frame("ack", ch="room", epoch="e", offset=1, rid=publish["rid"])
        await ws.send(ack)
        await ws.send(ack)  # a second ack for the same request
        await ws.send(message(1))  # a message for a channel we didn't subscribe to
        await ws.send(hub_frame("error", code="internal", reason="?", rid="nobody"))
        await ws.send(hub_frame("presence", ch="room", count=0, rid="nobody"))
        await ws.send(hub_frame("pong"))
        await ws.send(hub_frame("from-the-future", x=1))
        await ws.wait_closed()

    recorder = Recorder()
    async with fake_hub(script) as url, client(url, on_event=recorder) as hub_client:
        assert (await hub_client.publish("room", "x")).offset == 1
        error = await recorder.wait(Error)
        assert isinstance(error.error, RequestError) and not error.fatal
        assert error.error.code == "internal"


async def test_a_subscription_refused_after_a_redial_ends_with_the_error() -> None:
    connections = 0

    async def script(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        subscribe = await request(ws)
        if connections == 1:
            subscribed = hub_frame(
                "subscribed",
                ch="room",
                epoch="e",
                offset=0,
                recovered=False,
                missed=0,
                rid=subscribe["rid"],
            )
            await ws.send(subscribed)
            await ws.close(1012)
        elif connections == 2:
            # Busy: the client tries again, on the same connection.
            await ws.send(
                hub_frame("error", code="unavailable", reason="busy", rid=subscribe["rid"])
            )
            subscribe = await request(ws)
            await ws.send(hub_frame("error", code="forbidden", reason="no", rid=subscribe["rid"]))
            await ws.wait_closed()

    recorder = Recorder()
    async with fake_hub(script) as url, client(url, on_event=recorder) as hub_client:
        sub = await hub_client.subscribe("room")
        with pytest.raises(RequestError, match="forbidden"):
            await next_item(sub)
        assert "room" not in hub_client.subscriptions
        assert any(isinstance(e.error, RequestError) for e in recorder.of(Error))


async def test_presence_events_that_repeat_the_snapshot_are_applied_once() -> None:
    async def script(ws: ServerConnection) -> None:
        subscribe = await request(ws)
        await ws.send(
            hub_frame(
                "subscribed",
                ch="room",
                epoch="e",
                offset=0,
                recovered=False,
                missed=0,
                rid=subscribe["rid"],
            )
        )
        users = [{"user": "ann", "info": {}, "clients": 2, "state": {"typing": True}}]
        await ws.send(hub_frame("presence", ch="room", count=1, users=users))
        await ws.send(hub_frame("join", ch="room", user="ann", info={"name": "Ann"}))
        await ws.send(hub_frame("leave", ch="bob", user="bob"))  # not subscribed: ignored
        await ws.send(hub_frame("leave", ch="room", user="bob"))  # not listed: nothing
        await ws.send(hub_frame("join", ch="room", user="bob", info={}))
        query = await request(ws)
        await ws.send(hub_frame("presence", ch="room", count=7))  # now counts only
        await ws.send(hub_frame("presence", ch="room", count=7, rid=query["rid"]))
        await ws.wait_closed()

    async with fake_hub(script) as url, client(url) as hub_client:
        room = await hub_client.subscribe("room", presence=True)
        snapshot = await next_item(room)
        assert isinstance(snapshot, Presence) and snapshot.count == 1
        assert await next_item(room) == Join("room", "bob", {})
        ann = room.members.get("ann")
        assert set(room.members) == {"ann", "bob"}
        assert (await hub_client.presence("room")).count == 7
        counts = await next_item(room)
        assert isinstance(counts, Presence) and counts.members is None and counts.count == 7
        assert room.members == {}
    assert ann is not None
    assert (ann.info, ann.clients, ann.state) == ({"name": "Ann"}, 2, {"typing": True})


async def test_a_publish_over_the_announced_limit_is_refused_by_the_client(
    engine: Engine,
) -> None:
    running_hub = run_hub(engine, max_message_size=200)
    async with running_hub as running, ChaosProxy("127.0.0.1", port_of(running)) as proxy:
        recorder = Recorder()
        async with client(proxy.url(), on_event=recorder) as hub_client:
            with pytest.raises(RequestError, match="too_large"):
                await hub_client.publish("room", "x" * 300)
            sub = await hub_client.subscribe("room")
            with pytest.raises(RequestError, match="too_large"):
                await hub_client.set_state("room", {"note": "y" * 300})
            # Queued offline before the limit applied, then refused on reconnect.
            proxy.refuse = True
            proxy.cut("rst")
            await recorder.wait(Disconnected)
            hub_client._max_message = None  # as if no welcome had said it yet
            big = asyncio.ensure_future(hub_client.publish("room", "z" * 300))
            small = asyncio.ensure_future(hub_client.publish("room", "ok"))
            await recorder.wait(Reconnecting, 2)
            proxy.refuse = False
            with pytest.raises(RequestError, match="too_large"):
                await asyncio.wait_for(big, TIMEOUT)
            assert (await asyncio.wait_for(small, TIMEOUT)).offset == 1
            assert (await next_publication(sub)).data == "ok"
