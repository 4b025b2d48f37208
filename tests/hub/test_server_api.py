"""The hub's server API (hub/server_api.py): reads and commands, on each engine and node."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from openline.hub import Credentials, Hub, Identity
from openline.hub.backends.base import Engine

from .helpers import TIMEOUT, HubClient, RunningHub, run_hub


def by_token(credentials: Credentials) -> Identity:
    assert credentials.token is not None
    return Identity(credentials.token)


async def connect_as(running: RunningHub, user: str) -> HubClient:
    return await running.client(f"/?token={user}")


async def closed_with(client: HubClient) -> tuple[int | None, str | None]:
    await asyncio.wait_for(client.ws.wait_closed(), TIMEOUT)
    return client.ws.close_code, client.ws.close_reason


async def test_presence_history_and_channels_read_the_engine(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        hub = running.hub
        alice = await connect_as(running, "alice")
        await alice.subscribe("room")
        snapshot = await hub.presence("room")
        assert snapshot.count == 1
        assert snapshot.users is not None and set(snapshot.users) == {"alice"}
        results = [await hub.publish("room", n, user="server") for n in range(5)]
        newest = await hub.history("room", limit=3)
        assert [m.offset for m in newest.messages] == [3, 4, 5]
        assert (newest.epoch, newest.last_offset, newest.recovered) == (results[0].epoch, 5, True)
        page = await hub.history("room", since=1, limit=2)
        assert [m.offset for m in page.messages] == [2, 3]
        assert page.recovered is True
        lost = await hub.history("room", since=1, epoch="another-epoch")
        assert lost.recovered is False
        assert [m.offset for m in lost.messages] == [1, 2, 3, 4, 5]
        assert await hub.channels() == ["room"]
        assert [m["data"] for m in await alice.messages(5)] == [0, 1, 2, 3, 4]
        await alice.send(type="unsubscribe", ch="room")
        await alice.expect("unsubscribed", ch="room")
        assert await hub.channels() == []
        assert (await hub.presence("room")).count == 0


async def test_the_server_api_refuses_bad_arguments(engine: Engine) -> None:
    hub = Hub(engine)
    try:
        for call in (
            hub.presence(""),
            hub.history("room", limit=0),
            hub.history("room", limit=1001),
            hub.history("room", since=-1),
            hub.disconnect("alice", code=1006),
            hub.disconnect("alice", code=2000),
            hub.disconnect("alice", reason="x" * 124),
            hub.disconnect(""),
            hub.subscribe("alice", "bad\nname"),
            hub.unsubscribe("", "room"),
        ):
            with pytest.raises(ValueError):
                await call
    finally:
        await hub.close()


async def test_disconnect_closes_every_connection_of_the_user(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        phone = await connect_as(running, "alice")
        laptop = await connect_as(running, "alice")
        bob = await connect_as(running, "bob")
        await running.hub.disconnect("alice", code=4001, reason="banned")
        assert await closed_with(phone) == (4001, "banned")
        assert await closed_with(laptop) == (4001, "banned")
        await bob.send(type="ping", rid=1)
        await bob.expect("pong", rid=1)


async def test_server_subscribe_and_unsubscribe_as_if_the_client_had_asked(
    engine: Engine,
) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        hub = running.hub
        alice = await connect_as(running, "alice")
        bob = await connect_as(running, "bob")
        first = await hub.publish("news", "before")
        await hub.subscribe("alice", "news")
        subscribed = await alice.expect("subscribed", ch="news", offset=1, epoch=first.epoch)
        assert "rid" not in subscribed
        await hub.subscribe("alice", "news")  # already subscribed: nothing more
        await hub.publish("news", "after")
        message = await alice.expect("message", ch="news", offset=2, data="after")
        assert message["epoch"] == first.epoch
        await bob.silent()
        await hub.unsubscribe("alice", "news")
        unsubscribed = await alice.expect("unsubscribed", ch="news")
        assert "rid" not in unsubscribed
        await hub.publish("news", "gone")
        await alice.silent()
        # The client may subscribe again by itself.
        await alice.subscribe("news")


async def test_commands_on_node_a_reach_the_user_on_node_b(redis_server_session: Any) -> None:
    from openline.hub.backends.redis import RedisEngine

    prefix = f"api{os.getpid()}"
    url = redis_server_session.url
    node_a, node_b = RedisEngine(url, prefix=prefix), RedisEngine(url, prefix=prefix)
    try:
        async with (
            run_hub(node_a, authenticate=by_token) as a,
            run_hub(node_b, authenticate=by_token) as b,
        ):
            await connect_as(a, "someone")  # node A hears commands once it serves someone
            alice = await connect_as(b, "alice")
            mallory = await connect_as(b, "mallory")
            await mallory.subscribe("lobby")
            await a.hub.subscribe("alice", "news")
            await alice.expect("subscribed", ch="news", offset=0)
            await a.hub.publish("news", "from A")
            await alice.expect("message", ch="news", offset=1, data="from A")
            assert await a.hub.channels() == ["lobby", "news"]
            snapshot = await a.hub.presence("news")
            assert snapshot.users is not None and set(snapshot.users) == {"alice"}
            await a.hub.unsubscribe("alice", "news")
            await alice.expect("unsubscribed", ch="news")
            await a.hub.disconnect("mallory", code=4003, reason="banned on every node")
            assert await closed_with(mallory) == (4003, "banned on every node")
            await alice.send(type="ping", rid=2)
            await alice.expect("pong", rid=2)
    finally:
        await node_a.close()
        await node_b.close()
