"""``Client`` with several URIs: it moves to the next node when a dial fails or a line ends.

In-process hubs sharing one memory engine stand for nodes sharing Redis, so
these run without Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from openline.asyncio.backoff import Backoff
from openline.hub import Client, Hub, MemoryEngine
from openline.hub.events import Connected, Publication

from ..redis_server import free_port
from .nodes import MS, TIMEOUT


def client(uris: list[str], events: list[object]) -> Client:
    return Client(uris, backoff=Backoff(MS, 10 * MS), reset_after=None, on_event=events.append)


async def test_a_client_redials_the_next_uri_and_resumes_where_it_was() -> None:
    engine = MemoryEngine()
    first, second = Hub(engine), Hub(engine)
    async with second.serve("127.0.0.1", 0) as server2:
        url2 = f"ws://127.0.0.1:{server2.sockets[0].getsockname()[1]}/"
        server1 = await first.serve("127.0.0.1", 0)
        url1 = f"ws://127.0.0.1:{server1.sockets[0].getsockname()[1]}/"
        events: list[object] = []
        async with client([url1, url2], events) as sub_client:
            sub = await sub_client.subscribe("room")
            for n in range(5):
                await first.publish("room", n)
            server1.close()  # the node goes away: 1001
            await server1.wait_closed()
            for n in range(5, 10):
                await second.publish("room", n)
            numbers = []
            async for item in sub:
                assert isinstance(item, Publication), item
                numbers.append(item.data)
                if item.data == 9:
                    break
        await first.close()
    await second.close()
    assert numbers == list(range(10))
    assert sum(isinstance(event, Connected) for event in events) == 2


async def test_a_client_whose_first_uri_is_down_connects_to_the_next() -> None:
    hub = Hub()
    async with hub.serve("127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        events: list[object] = []
        async with client([f"ws://127.0.0.1:{free_port()}/", url], events) as hub_client:
            ack = await asyncio.wait_for(hub_client.publish("room", "hello"), TIMEOUT)
            assert ack.offset == 1
    await hub.close()


def test_a_client_needs_at_least_one_uri() -> None:
    with pytest.raises(ValueError, match="uri must name at least one hub"):
        Client([])
