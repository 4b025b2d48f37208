"""The plain ASGI path: its send queue keeps the slow-consumer policy, and closes are clean."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

from openline.asyncio.client import connect
from openline.hub import Hub
from openline.hub.client import Subscription
from openline.hub.events import Join, Leave
from tests.hub.helpers import TIMEOUT

from .conftest import serving
from .helpers import hub_client, next_publication

#: The most messages the slow-consumer test publishes before it must have seen an eviction.
MAX_MESSAGES = 400
#: Incompressible, in case a server and client agree on permessage-deflate anyway.
MESSAGE = os.urandom(32768).hex()


async def next_item(sub: Subscription, kind: type) -> Any:
    """The next item of ``kind``, skipping the presence snapshot and others."""
    while True:
        item = await asyncio.wait_for(sub.get(), TIMEOUT)
        if isinstance(item, kind):
            return item


async def test_a_subscriber_that_stops_reading_is_evicted_at_max_buffer(server_kind: str) -> None:
    max_buffer = 256 * 1024
    hub = Hub(max_buffer=max_buffer, slow_consumer_timeout=None)
    async with serving(server_kind, hub.asgi()) as server:
        # A small receive buffer, and a client that stops reading after one message:
        # the kernel's queues fill, the server's send blocks, the hub's queue grows.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        slow = await connect(
            server.url("/"), sock=sock, subprotocols=["openline.v1"], max_queue=1, compression=None
        ).__aenter__()
        try:
            assert json.loads(await slow.recv())["type"] == "welcome"
            await slow.send(json.dumps({"type": "subscribe", "ch": "flood", "rid": "s"}))
            assert json.loads(await slow.recv())["type"] == "subscribed"
            async with hub_client(server.url("/")) as healthy:
                sub = await healthy.subscribe("other")
                published = 0
                while not hub.stats.slow_consumers and published < MAX_MESSAGES:
                    await hub.publish("flood", MESSAGE)
                    published += 1
                    await asyncio.sleep(0)  # let the links' writer tasks run
                assert hub.stats.slow_consumers == 1, f"no eviction after {published} messages"
                assert hub.stats.evictions["buffer"] == 1
                # Everyone else is served as before.
                await hub.publish("other", "still here")
                assert (await next_publication(sub)).data == "still here"
                assert "flood" not in await hub.channels()
        finally:
            slow.abort()


async def test_a_client_that_closes_leaves_presence(server_kind: str) -> None:
    hub = Hub()
    async with serving(server_kind, hub.asgi()) as server, hub_client(server.url("/")) as watcher:
        sub = await watcher.subscribe("room", presence=True)
        async with hub_client(server.url("/")) as leaver:
            await leaver.subscribe("room", presence=True)
            join = await next_item(sub, Join)
            assert join.user == leaver.user
        # The hub hears the disconnect and removes the user from presence.
        leave = await next_item(sub, Leave)
        assert leave.user == join.user
        assert hub.metrics()["connections"] == 1


async def test_the_hub_closes_a_client_with_its_code_and_reason(server_kind: str) -> None:
    hub = Hub()
    async with (
        serving(server_kind, hub.asgi()) as server,
        connect(server.url("/"), subprotocols=["openline.v1"]) as ws,
    ):
        welcome = json.loads(await ws.recv())
        await hub.disconnect(welcome["user"], code=4003, reason="bye")
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 4003
        assert ws.close_reason == "bye"
