"""Channels, offsets, acks, recovery, gaps and idempotent publish, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openline.hub import Credentials, Hub, Identity, PublishResult
from openline.hub.backends.base import Engine, HistoryResult

from .conftest import EngineFactory
from .helpers import MS, TIMEOUT, run_hub, wait_for


def offsets(messages: list[dict[str, Any]]) -> list[int]:
    return [m["offset"] for m in messages]


# --- welcome and basics -----------------------------------------------------------------


async def test_welcome_names_the_client_the_user_and_the_heartbeat(engine: Engine) -> None:
    async with run_hub(engine, ping_interval=3.0, ping_timeout=2.0) as running:
        client = await running.client()
        welcome = client.welcome
        assert isinstance(welcome["client"], str) and welcome["client"]
        assert welcome["user"] == welcome["client"]  # anonymous: the connection is the user
        assert welcome["heartbeat"] == 3.0
        assert welcome["timeout"] == 2.0
        assert welcome["limits"] == {
            "message": 65536,
            "subscriptions": 100,
            "state": 1024,
            "rate": 100.0,
            "burst": 100,
            "buffer": 2**20,
        }


async def test_ping_gets_a_pong_with_the_request_id(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.send(type="ping", rid=7)
        await client.expect("pong", rid=7)


async def test_publish_is_acked_with_epoch_and_offset(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        ack = await client.publish("news", {"n": 1}, rid="r1")
        assert ack["ch"] == "news"
        assert ack["offset"] == 1
        assert isinstance(ack["epoch"], str) and ack["epoch"]
        assert ack["duplicate"] is False
        assert ack["rid"] == "r1"
        assert "id" not in ack


async def test_offsets_increase_by_one_per_channel(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        acks: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        for ch in "abababaaab":
            acks[ch].append(await client.publish(ch, ch))
        assert offsets(acks["a"]) == [1, 2, 3, 4, 5, 6]
        assert offsets(acks["b"]) == [1, 2, 3, 4]
        for channel_acks in acks.values():
            assert len({ack["epoch"] for ack in channel_acks}) == 1


async def test_subscriber_gets_messages_from_clients_and_server_code(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        writer = await running.client()
        subscribed = await reader.subscribe("room", rid=1)
        assert subscribed == {
            "type": "subscribed",
            "ch": "room",
            "epoch": subscribed["epoch"],
            "offset": 0,
            "recovered": False,
            "missed": 0,
            "rid": 1,
        }
        await writer.publish("room", {"text": "hi"}, id="m1")
        result = await running.hub.publish("room", [1, 2, None])
        assert isinstance(result, PublishResult)
        first, second = await reader.messages(2)
        assert first == {
            "type": "message",
            "ch": "room",
            "epoch": subscribed["epoch"],
            "offset": 1,
            "user": writer.welcome["user"],
            "id": "m1",
            "data": {"text": "hi"},
        }
        assert second["offset"] == 2 and second["data"] == [1, 2, None]
        assert "user" not in second and "id" not in second


async def test_server_code_can_publish_as_a_user(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        await reader.subscribe("room")
        await running.hub.publish("room", "hello", user="system")
        await reader.expect("message", user="system", data="hello")


async def test_publisher_gets_its_own_message_when_subscribed(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.subscribe("room")
        await client.send(type="publish", ch="room", data=1, rid="p")
        received = [await client.recv(), await client.recv()]
        # No order between the ack and the echo is promised; both arrive once.
        assert sorted(m["type"] for m in received) == ["ack", "message"]


async def test_other_channels_stay_quiet(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        await reader.subscribe("a")
        await running.hub.publish("b", "not for you")
        await running.hub.publish("a", "for you")
        await reader.expect("message", ch="a", data="for you")
        await reader.silent()


async def test_unsubscribe_replies_and_stops_delivery(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        await reader.subscribe("a")
        await reader.send(type="unsubscribe", ch="a", rid="u")
        await reader.expect("unsubscribed", ch="a", rid="u")
        await running.hub.publish("a", "gone")
        await reader.silent()
        assert running.hub._channels == {}


async def test_every_subscriber_gets_every_message_in_order(engine: Engine) -> None:
    async with run_hub(engine) as running:
        readers = [await running.client() for _ in range(5)]
        for reader in readers:
            await reader.subscribe("fan")
        for n in range(20):
            await running.hub.publish("fan", n)
        for reader in readers:
            messages = await reader.messages(20)
            assert [m["data"] for m in messages] == list(range(20))
            assert offsets(messages) == list(range(1, 21))


async def test_publish_from_server_code_checks_its_arguments(engine: Engine) -> None:
    hub = Hub(engine)
    with pytest.raises(ValueError, match="channel"):
        await hub.publish("", 1)
    with pytest.raises(ValueError, match="channel"):
        await hub.publish("a\nb", 1)
    with pytest.raises(ValueError, match="id"):
        await hub.publish("a", 1, id="x" * 200)
    with pytest.raises(TypeError):
        await hub.publish("a", object())
    with pytest.raises(ValueError):
        await hub.publish("a", float("nan"))


# --- recovery ---------------------------------------------------------------------------


async def test_resume_with_since_gets_exactly_the_missed_messages_then_live(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        first = await reader.subscribe("room")
        for n in range(3):
            await running.hub.publish("room", n)
        seen = await reader.messages(3)
        await reader.close()
        for n in range(3, 7):
            await running.hub.publish("room", n)

        reader = await running.client()
        since = {"epoch": first["epoch"], "offset": seen[-1]["offset"]}
        subscribed = await reader.subscribe("room", since=since)
        assert subscribed["recovered"] is True
        assert subscribed["missed"] == 4
        assert subscribed["offset"] == 7
        replayed = await reader.messages(4)
        assert [m["data"] for m in replayed] == [3, 4, 5, 6]
        await running.hub.publish("room", 7)
        live = await reader.expect("message", offset=8, data=7)
        assert live["epoch"] == first["epoch"]
        await reader.silent()


async def test_resume_at_the_last_offset_misses_nothing(engine: Engine) -> None:
    async with run_hub(engine) as running:
        await running.hub.publish("room", "old")
        reader = await running.client()
        first = await reader.subscribe("room")
        assert first["offset"] == 1
        subscribed = await reader.subscribe(
            "other", since={"epoch": first["epoch"], "offset": 0}
        )  # another channel: its epoch differs
        assert subscribed["recovered"] is False
        await reader.send(type="unsubscribe", ch="room")
        await reader.expect("unsubscribed")
        again = await reader.subscribe("room", since={"epoch": first["epoch"], "offset": 1})
        assert again["recovered"] is True and again["missed"] == 0
        await reader.silent()


async def test_resume_with_an_unknown_epoch_gets_a_gap_then_what_is_left(engine: Engine) -> None:
    async with run_hub(engine) as running:
        await running.hub.publish("room", "a")
        await running.hub.publish("room", "b")
        reader = await running.client()
        await reader.send(type="subscribe", ch="room", since={"epoch": "nope", "offset": 1})
        gap = await reader.expect("gap", ch="room")
        assert gap["since"] == {"epoch": "nope", "offset": 1}
        assert gap["from"] == 1
        subscribed = await reader.expect("subscribed", recovered=False, missed=2, offset=2)
        assert subscribed["epoch"] == gap["epoch"]
        assert [m["data"] for m in await reader.messages(2)] == ["a", "b"]


async def test_resume_from_the_future_gets_a_gap(engine: Engine) -> None:
    async with run_hub(engine) as running:
        result = await running.hub.publish("room", "a")
        reader = await running.client()
        await reader.send(type="subscribe", ch="room", since={"epoch": result.epoch, "offset": 5})
        await reader.expect("gap", **{"from": 1})
        await reader.expect("subscribed", recovered=False, missed=1)


async def test_gap_when_the_history_size_window_doesnt_reach_back(
    make_engine: EngineFactory,
) -> None:
    async with run_hub(make_engine(history_size=3)) as running:
        results = [await running.hub.publish("room", n) for n in range(10)]
        reader = await running.client()
        since = {"epoch": results[0].epoch, "offset": 2}
        await reader.send(type="subscribe", ch="room", since=since)
        gap = await reader.expect("gap", ch="room", epoch=results[0].epoch, since=since)
        assert gap["from"] == 8
        await reader.expect("subscribed", recovered=False, missed=3, offset=10)
        assert offsets(await reader.messages(3)) == [8, 9, 10]
        # Within the window, the same channel recovers.
        other = await running.client()
        recovered = await other.subscribe("room", since={"epoch": results[0].epoch, "offset": 7})
        assert recovered["recovered"] is True
        assert offsets(await other.messages(3)) == [8, 9, 10]


async def test_gap_when_the_history_time_window_doesnt_reach_back(
    make_engine: EngineFactory,
) -> None:
    now = [1000.0]
    engine = make_engine(history_ttl=5.0, clock=lambda: now[0])
    async with run_hub(engine) as running:
        first = await running.hub.publish("room", "old 1")
        await running.hub.publish("room", "old 2")
        now[0] += 3.0
        await running.hub.publish("room", "newer")
        now[0] += 3.0  # the first two are 6 s old now, past the 5 s window
        await running.hub.publish("room", "newest")
        reader = await running.client()
        since = {"epoch": first.epoch, "offset": 1}
        await reader.send(type="subscribe", ch="room", since=since)
        await reader.expect("gap", since=since, **{"from": 3})
        await reader.expect("subscribed", missed=2, recovered=False)
        assert [m["data"] for m in await reader.messages(2)] == ["newer", "newest"]


async def test_a_restarted_engine_yields_a_new_epoch_and_a_gap(make_engine: EngineFactory) -> None:
    async with run_hub(make_engine()) as running:
        reader = await running.client()
        before = await reader.subscribe("room")
        for n in range(5):
            await running.hub.publish("room", n)
        seen = await reader.messages(5)
    # The process restarts: a new engine has lost the history.
    async with run_hub(make_engine()) as running:
        await running.hub.publish("room", "after 1")
        await running.hub.publish("room", "after 2")
        reader = await running.client()
        since = {"epoch": before["epoch"], "offset": seen[-1]["offset"]}
        await reader.send(type="subscribe", ch="room", since=since)
        gap = await reader.expect("gap", since=since, **{"from": 1})
        assert gap["epoch"] != before["epoch"]
        subscribed = await reader.expect("subscribed", epoch=gap["epoch"], recovered=False)
        assert subscribed["offset"] == 2
        replayed = await reader.messages(2)
        assert [(m["epoch"], m["offset"]) for m in replayed] == [
            (gap["epoch"], 1),
            (gap["epoch"], 2),
        ]


# --- races between history and live delivery --------------------------------------------


class Progress:
    """How far a publishing task got, to wait for a count rather than for a time."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def reach(self, count: int) -> None:
        self.count = count
        self._changed.set()

    async def wait(self, count: int) -> None:
        async def progress() -> None:
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(progress(), TIMEOUT)


class SlowHistory:
    """An engine whose history reads take a while: publishes land on both sides of them."""

    def __init__(self, engine: Engine, delay: float) -> None:
        self._engine = engine
        self._delay = delay
        #: Set when a history read starts, and once it has read the store.
        self.entered = asyncio.Event()
        self.read = asyncio.Event()
        #: When set, a read that has read the store waits for this instead of
        #: ``delay``: the test decides how long "published now" lasts.
        self.release: asyncio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def history(self, ch: str, **kwargs: Any) -> HistoryResult:
        self.entered.set()
        await asyncio.sleep(self._delay)  # published now: delivered live and in history
        result = await self._engine.history(ch, **kwargs)
        self.read.set()
        # Published now: delivered live only.
        if self.release is None:
            await asyncio.sleep(self._delay)
        else:
            await asyncio.wait_for(self.release.wait(), TIMEOUT)
        return result


async def test_resume_is_exactly_once_while_publishes_race_the_resubscribe(
    engine: Engine,
) -> None:
    slow = SlowHistory(engine, 5 * MS)
    async with run_hub(slow) as running:
        total = 300
        done = asyncio.Event()

        async def publish_all() -> None:
            for n in range(total):
                await running.hub.publish("race", n)
                await asyncio.sleep(0.3 * MS if n % 3 else 0)
            done.set()

        reader = await running.client()
        start = await reader.subscribe("race")
        position: dict[str, Any] = {"epoch": start["epoch"], "offset": 0}
        await reader.close()
        publisher = asyncio.create_task(publish_all())
        received: list[dict[str, Any]] = []
        redials = 0
        while len(received) < total:
            reader = await running.client()
            subscribed = await reader.subscribe("race", since=position)
            assert subscribed["recovered"] is True
            # Read a few messages, then drop the line.
            for _ in range(40):
                if len(received) == total:
                    break
                message = await reader.expect("message")
                received.append(message)
                position = {"epoch": message["epoch"], "offset": message["offset"]}
            await reader.close()
            redials += 1
        await publisher
        assert done.is_set()
        assert [m["data"] for m in received] == list(range(total))
        assert offsets(received) == list(range(1, total + 1))
        assert redials >= 5


async def test_a_subscriber_joining_mid_stream_gets_each_later_message_once(
    engine: Engine,
) -> None:
    slow = SlowHistory(engine, 3 * MS)
    async with run_hub(slow) as running:
        stop = asyncio.Event()
        published = Progress()

        async def publish_until_stopped() -> None:
            n = 0
            while not stop.is_set():
                await running.hub.publish("race", n)
                n += 1
                published.reach(n)
                await asyncio.sleep(0.2 * MS)  # pacing, not waiting for anything

        publisher = asyncio.create_task(publish_until_stopped())
        await published.wait(10)  # the stream is flowing
        readers = [await running.client() for _ in range(3)]
        starts = [(await reader.subscribe("race"))["offset"] for reader in readers]
        await published.wait(max(starts) + 50)  # live messages after every subscribe
        stop.set()
        await publisher
        last = (await running.hub.publish("race", "end")).offset
        for reader, start in zip(readers, starts, strict=True):
            messages = await reader.messages(last - start)
            assert offsets(messages) == list(range(start + 1, last + 1))


# --- idempotent publish -----------------------------------------------------------------


async def test_a_retried_publish_is_stored_once_and_acked_as_a_duplicate(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        await reader.subscribe("room")
        writer = await running.client()
        first = await writer.publish("room", "hello", id="msg-1")
        await writer.close()
        # The writer redials and retries: same id.
        writer = await running.client()
        second = await writer.publish("room", "hello", id="msg-1", rid=2)
        assert first["duplicate"] is False
        assert second["duplicate"] is True
        assert (second["epoch"], second["offset"], second["id"], second["rid"]) == (
            first["epoch"],
            first["offset"],
            "msg-1",
            2,
        )
        await reader.expect("message", offset=1, id="msg-1")
        await reader.silent()
        third = await writer.publish("room", "hello", id="msg-2")
        assert third["offset"] == 2 and third["duplicate"] is False
        assert running.hub.metrics()["publishes"] == 2


async def test_message_ids_are_scoped_per_authenticated_user(engine: Engine) -> None:
    def authenticate(credentials: Credentials) -> Identity:
        assert credentials.token is not None
        return Identity(credentials.token)

    async with run_hub(engine, authenticate=authenticate) as running:
        alice = await running.client("/?token=alice")
        mallory = await running.client("/?token=mallory")
        # Another user reusing the id must not swallow alice's message.
        await mallory.publish("room", "first", id="same")
        ack = await alice.publish("room", "mine", id="same")
        assert ack["duplicate"] is False and ack["offset"] == 2


async def test_server_code_publish_is_idempotent_too(engine: Engine) -> None:
    hub = Hub(engine)
    first = await hub.publish("room", 1, id="job-7")
    again = await hub.publish("room", 1, id="job-7")
    assert again == PublishResult(first.epoch, first.offset, duplicate=True)


# --- live delivery that skips or repeats ------------------------------------------------


class UnreliableFeed:
    """An engine whose live feed drops some deliveries and repeats others, like a flaky link."""

    def __init__(self, engine: Engine, *, drop: set[int], repeat: set[int]) -> None:
        self._engine = engine
        self._drop = drop
        self._repeat = repeat

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def subscribe(self, ch: str, callback: Any) -> None:
        def flaky(event: Any) -> None:
            offset = getattr(event, "offset", None)
            if offset in self._drop:
                return
            callback(event)
            if offset in self._repeat:
                callback(event)

        self._wrapped = flaky
        await self._engine.subscribe(ch, flaky)

    async def unsubscribe(self, ch: str, callback: Any) -> None:
        await self._engine.unsubscribe(ch, self._wrapped)


async def test_the_hub_repairs_a_live_feed_that_skips_and_repeats(engine: Engine) -> None:
    flaky = UnreliableFeed(engine, drop={3, 4, 8}, repeat={2, 6})
    async with run_hub(flaky) as running:
        reader = await running.client()
        await reader.subscribe("room")
        for n in range(10):
            await running.hub.publish("room", n)
        messages = await reader.messages(10)
        assert offsets(messages) == list(range(1, 11))
        await reader.silent()


async def test_a_hole_history_cant_fill_becomes_a_gap(make_engine: EngineFactory) -> None:
    flaky = UnreliableFeed(make_engine(history_size=1), drop={2, 3}, repeat=set())
    async with run_hub(flaky) as running:
        reader = await running.client()
        await reader.subscribe("room")
        await running.hub.publish("room", 1)
        await reader.expect("message", offset=1)
        await running.hub.publish("room", 2)
        await running.hub.publish("room", 3)
        await running.hub.publish("room", 4)  # history now holds only 4
        gap = await reader.expect("gap")
        assert gap["since"]["offset"] == 1 and gap["from"] == 4
        await reader.expect("message", offset=4)


# --- several processes ------------------------------------------------------------------


async def test_two_hubs_sharing_an_engine_serve_one_channel(engine: Engine) -> None:
    async with run_hub(engine) as one, run_hub(engine) as two:
        reader = await one.client()
        await reader.subscribe("room", presence=True)
        await reader.expect("presence", count=1)
        writer = await two.client()
        await writer.subscribe("room")
        await reader.expect("join", user=writer.welcome["user"])
        ack = await writer.publish("room", "across")
        await reader.expect("message", offset=ack["offset"], data="across")


async def test_the_hub_forgets_a_channel_when_its_last_subscriber_leaves(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        await reader.subscribe("room")
        assert list(running.hub._channels) == ["room"]
        await reader.close()
        await wait_for(lambda: not running.hub._channels)


class LaggingFeed:
    """An engine whose live feed lags behind history, as Redis pub/sub can."""

    def __init__(self, engine: Engine, lag: float) -> None:
        self._engine = engine
        self._lag = lag
        self._wrapped: dict[Any, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def subscribe(self, ch: str, callback: Any) -> None:
        loop = asyncio.get_running_loop()

        def later(event: Any) -> None:
            loop.call_later(self._lag, callback, event)

        self._wrapped[callback] = later
        await self._engine.subscribe(ch, later)

    async def unsubscribe(self, ch: str, callback: Any) -> None:
        await self._engine.unsubscribe(ch, self._wrapped.pop(callback))


async def test_subscribers_ahead_of_a_lagging_feed_get_each_message_once(
    engine: Engine,
) -> None:
    lagging = LaggingFeed(engine, 10 * MS)
    async with run_hub(lagging) as running:
        first = await running.client()
        start = await first.subscribe("room")
        stop = asyncio.Event()
        published = Progress()

        async def publish_until_stopped() -> None:
            n = 0
            while not stop.is_set():
                await running.hub.publish("room", n)
                n += 1
                published.reach(n)
                await asyncio.sleep(MS)  # pacing, not waiting for anything

        publisher = asyncio.create_task(publish_until_stopped())
        await published.wait(10)
        # History is ahead of the live feed now: this subscriber must skip what it replays.
        late = await running.client()
        since = {"epoch": start["epoch"], "offset": 0}
        subscribed = await late.subscribe("room", since=since)
        assert subscribed["recovered"] is True
        await published.wait(subscribed["offset"] + 10)  # and more while it is live
        stop.set()
        await publisher
        last = (await running.hub.publish("room", "end")).offset
        for reader in (first, late):
            assert offsets(await reader.messages(last)) == list(range(1, last + 1))
            await reader.silent(30 * MS)
