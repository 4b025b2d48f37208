"""The Python client adopts subscriptions the server makes, and ends those it ends."""

from __future__ import annotations

import asyncio

import pytest

from openline.hub.backends.base import Engine
from openline.hub.client import ClientClosed
from openline.hub.events import Publication, ServerSubscribed, ServerUnsubscribed

from .helpers import TIMEOUT, run_hub
from .test_client import client


async def test_the_client_adopts_a_server_subscription_and_keeps_it_across_redials(
    engine: Engine,
) -> None:
    async with run_hub(engine) as running:
        hub = running.hub
        async with client(running.url) as hub_client:
            events = hub_client.events()
            await hub.publish("news", "old")
            await hub.subscribe(hub_client.user, "news")
            event = await asyncio.wait_for(anext(events), TIMEOUT)
            assert event == ServerSubscribed("news")
            sub = hub_client.subscriptions["news"]
            assert sub.position is not None and sub.position[1] == 1
            await hub.publish("news", "new")
            item = await asyncio.wait_for(sub.get(), TIMEOUT)
            assert isinstance(item, Publication) and (item.offset, item.data) == (2, "new")
            # After a redial the client resumes it like its own.
            for session_ws in list(running.server.connections):
                await session_ws.close(1012, "restart")
            await hub.publish("news", "while away")
            item = await asyncio.wait_for(sub.get(), TIMEOUT)
            assert isinstance(item, Publication) and (item.offset, item.data) == (3, "while away")
            await hub.unsubscribe(hub_client.user, "news")
            while (event := await asyncio.wait_for(anext(events), TIMEOUT)) != ServerUnsubscribed(
                "news"
            ):
                pass
            assert "news" not in hub_client.subscriptions
            with pytest.raises(ClientClosed, match="unsubscribed by the server"):
                await asyncio.wait_for(sub.get(), TIMEOUT)


async def test_a_server_subscribe_answers_the_clients_own_subscribe_in_flight(
    engine: Engine,
) -> None:
    async with run_hub(engine) as running, client(running.url) as hub_client:
        server_side = asyncio.ensure_future(running.hub.subscribe(hub_client.user, "room"))
        sub = await asyncio.wait_for(hub_client.subscribe("room"), TIMEOUT)
        await server_side
        await running.hub.publish("room", 1)
        item = await asyncio.wait_for(sub.get(), TIMEOUT)
        assert isinstance(item, Publication) and item.data == 1
