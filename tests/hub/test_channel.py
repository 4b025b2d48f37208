"""The channel's ordering machinery: epochs changing mid-stream, queues while syncing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from openline.exceptions import BackendUnavailable, ConnectionClosed
from openline.hub.backends.base import Engine, Message
from openline.hub.channel import Sync

from .conftest import EngineFactory
from .helpers import MS, TIMEOUT, run_hub
from .test_messages import SlowHistory


def decode(frames: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in frames]


def test_a_sync_skips_duplicates_and_reports_holes_and_new_epochs() -> None:
    sync = Sync()
    sync.epoch, sync.last = "e1", 3
    assert sync.advance("c", Message("c", "e1", 2, b"1"), b"m2") == []
    assert sync.advance("c", Message("c", "e1", 4, b"1"), b"m4") == [b"m4"]
    hole = sync.advance("c", Message("c", "e1", 7, b"1"), b"m7")
    assert decode(hole[:1]) == [
        {"type": "gap", "ch": "c", "epoch": "e1", "since": {"epoch": "e1", "offset": 4}, "from": 7}
    ]
    assert hole[1:] == [b"m7"]
    reset = sync.advance("c", Message("c", "e2", 1, b"1"), b"n1")
    assert decode(reset[:1]) == [
        {"type": "gap", "ch": "c", "epoch": "e2", "since": {"epoch": "e1", "offset": 7}, "from": 1}
    ]
    assert (sync.epoch, sync.last) == ("e2", 1)


class Swappable:
    """An engine that can lose everything mid-run, like a Redis without persistence restarting.

    Subscriptions reach both stores; everything else goes to the current one.
    """

    def __init__(self, first: Engine, second: Engine) -> None:
        self.current = first
        self._all = (first, second)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)

    async def subscribe(self, ch: str, callback: Any) -> None:
        for engine in self._all:
            await engine.subscribe(ch, callback)

    async def unsubscribe(self, ch: str, callback: Any) -> None:
        for engine in self._all:
            await engine.unsubscribe(ch, callback)


async def test_live_subscribers_get_a_gap_when_the_store_loses_its_history(
    make_engine: EngineFactory,
) -> None:
    first, second = make_engine(), make_engine()
    swappable = Swappable(first, second)
    async with run_hub(swappable) as running:
        reader = await running.client()
        before = await reader.subscribe("room")
        await running.hub.publish("room", "a")
        await running.hub.publish("room", "b")
        await reader.messages(2)
        swappable.current = second  # the store restarts empty, with a new epoch
        after = await running.hub.publish("room", "c")
        assert after.epoch != before["epoch"] and after.offset == 1
        gap = await reader.expect("gap", ch="room", epoch=after.epoch, **{"from": 1})
        assert gap["since"] == {"epoch": before["epoch"], "offset": 2}
        await reader.expect("message", epoch=after.epoch, offset=1, data="c")
        await running.hub.publish("room", "d")
        await reader.expect("message", epoch=after.epoch, offset=2, data="d")
        await reader.silent()


async def test_a_subscriber_too_slow_while_syncing_is_closed(engine: Engine) -> None:
    slow = SlowHistory(engine, 20 * MS)
    async with run_hub(slow, max_buffer=20000) as running:
        first = await running.client()
        await first.subscribe("room")  # the channel is live from now on
        reader = await running.client()
        slow.read.clear()  # the first subscriber's read, if it made one
        slow.release = asyncio.Event()  # the reader's read ends when we say so
        await reader.send(type="subscribe", ch="room")
        # The history was read: messages published from now on are queued.
        await asyncio.wait_for(slow.read.wait(), TIMEOUT)
        for _ in range(10):
            await running.hub.publish("room", "z" * 5000)
        # Once the live subscriber has them all, so has the reader's queue,
        # however long the engine took to deliver them (Redis on a busy host).
        assert len(await first.messages(10)) == 10
        slow.release.set()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await reader.recv()
        assert closed.value.code == 1013
        assert running.hub.metrics()["slow_consumers"] == 1
        await first.silent()


async def test_presence_events_during_a_slow_subscribe_are_queued_not_lost(
    engine: Engine,
) -> None:
    slow = SlowHistory(engine, 10 * MS)
    async with run_hub(slow) as running:
        watcher = await running.client()
        await watcher.send(type="subscribe", ch="room", presence=True)
        await asyncio.wait_for(slow.entered.wait(), TIMEOUT)  # the subscribe is under way
        others = [await running.client() for _ in range(3)]
        for other in others:
            await other.send(type="subscribe", ch="room")
        present: set[str] = set()
        subscribed = 0
        while subscribed < 1 or len(present) < 4:
            event = await watcher.recv()
            if event["type"] == "subscribed":
                subscribed += 1
            elif event["type"] == "presence":
                present = {user["user"] for user in event["users"]}
            elif event["type"] == "join":
                present.add(event["user"])
        assert present == {watcher.welcome["user"]} | {o.welcome["user"] for o in others}


class FailingSubscribe:
    """An engine whose live feed can't be set up once."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def subscribe(self, ch: str, callback: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("redis is down")
        await self._engine.subscribe(ch, callback)


async def test_a_channel_that_cant_start_answers_unavailable_then_recovers(
    engine: Engine,
) -> None:
    async with run_hub(FailingSubscribe(engine)) as running:
        reader = await running.client()
        await reader.send(type="subscribe", ch="room", rid=1)
        await reader.expect_error("unavailable", ch="room", rid=1)
        assert running.hub._channels == {}
        await reader.subscribe("room")
        await running.hub.publish("room", "ok")
        await reader.expect("message", data="ok")


async def test_presence_of_a_counts_only_channel_nobody_here_subscribed(engine: Engine) -> None:
    async with run_hub(engine, counts_only=lambda ch: True) as running:
        await engine.presence_join("stadium", "u1", "c1", "{}")
        client = await running.client()
        await client.send(type="presence", ch="stadium")
        snapshot = await client.expect("presence", count=1)
        assert "users" not in snapshot
