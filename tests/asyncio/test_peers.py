"""Smoke tests against peers nobody here wrote; tests/interop/ holds the full suite."""

from __future__ import annotations

import aiohttp
import pytest
import websockets.asyncio.client
import websockets.asyncio.server

from openline.asyncio.client import connect
from openline.exceptions import ConnectionClosedOK

from .helpers import run_server, url_of

pytestmark = pytest.mark.interop


async def test_websockets_client_talks_to_openline_server() -> None:
    async with (
        run_server() as server,
        websockets.asyncio.client.connect(url_of(server)) as ws,
    ):
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x01\x02")
        assert await ws.recv() == b"\x01\x02"
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    assert ws.close_code == 1000


async def test_aiohttp_client_talks_to_openline_server() -> None:
    async with (
        run_server() as server,
        aiohttp.ClientSession() as session,
        session.ws_connect(url_of(server), compress=15) as ws,
    ):
        await ws.send_str("hello")
        assert await ws.receive_str() == "hello"
        await ws.send_bytes(b"\x01\x02")
        assert await ws.receive_bytes() == b"\x01\x02"
        assert ws.compress == 15
        await ws.close()
        assert ws.close_code == 1000


async def test_openline_client_talks_to_websockets_server() -> None:
    async def echo(ws: websockets.asyncio.server.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(["frag", "mented"])
            assert await ws.recv() == "fragmented"
            assert await (await ws.ping()) > 0
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
