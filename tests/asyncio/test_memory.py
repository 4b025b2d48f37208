"""Idle connections stay cheap: no parsed headers kept, a few KB per connection.

The budget is loose on purpose (Python versions and event loops differ); it
catches gross regressions such as a task, a buffer or parsed headers kept per
connection. ``docs`` has the measured numbers, one side per process.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

from openline.asyncio.client import ClientConnection, connect
from openline.protocol.http11 import Headers

from .helpers import run_server, url_of

CONNECTIONS = 100
#: Bytes per idle connection, client and server ends together, as tracemalloc sees them.
BUDGET = 24_000


def count_headers() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is Headers)


async def test_idle_connections_keep_no_parsed_headers() -> None:
    async with run_server() as server:
        baseline = count_headers()
        clients = [await connect(url_of(server)) for _ in range(10)]
        await asyncio.sleep(0)
        assert count_headers() == baseline
        # The handshake messages are still available, parsed on demand.
        assert clients[0].request is not None
        assert clients[0].request.headers["Upgrade"] == "websocket"
        (server_side,) = [
            ws for ws in server.connections if ws.remote_address == clients[0].local_address
        ]
        assert server_side.request is not None
        assert server_side.request.headers["Sec-WebSocket-Version"] == "13"
        for ws in clients:
            await ws.close()


async def test_idle_connection_costs_a_few_kilobytes() -> None:
    async with run_server() as server:
        clients: list[ClientConnection] = [await connect(url_of(server))]  # warm up caches
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(CONNECTIONS):
                clients.append(await connect(url_of(server)))
            while len(server.connections) < len(clients):
                await asyncio.sleep(0)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert size / CONNECTIONS < BUDGET, f"{size / CONNECTIONS:.0f} bytes per connection"
        for ws in clients:
            await ws.close()
