"""The ``openline.connection`` claim: openline's own fast paths on uvicorn's connections."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from openline.asyncio import ServerConnection, connect
from openline.asyncio.broadcast import broadcast

from .apps import Message, Receive, Send
from .conftest import TIMEOUT, run_uvicorn

pytestmark = pytest.mark.interop


class Room:
    """Claims every connection; a text message is broadcast to all, encoded once."""

    def __init__(self, size: int) -> None:
        self.members: list[ServerConnection] = []
        self.full = asyncio.Event()
        self.size = size
        self.outgoing: list[int] = []

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        ws = scope["extensions"]["openline.connection"]["claim"]()
        assert isinstance(ws, ServerConnection)
        self.members.append(ws)
        if len(self.members) == self.size:
            self.full.set()
        async for message in ws:
            assert isinstance(message, str)
            delivered = broadcast(self.members, message, text=True)
            self.outgoing.append(delivered)


async def test_claimed_connections_take_an_encode_once_broadcast() -> None:
    room = Room(size=3)
    async with run_uvicorn(room, ws_per_message_deflate=False) as running:
        clients = [await connect(running.url + "/room") for _ in range(3)]
        await asyncio.wait_for(room.full.wait(), TIMEOUT)
        await clients[0].send("hello, all")
        for client in clients:
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello, all"
        for client in clients:
            await client.close()
    assert room.outgoing == [3]


async def test_wss_scope_and_echo_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    schemes: list[str] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        schemes.append(scope["scheme"])
        await receive()
        await send({"type": "websocket.accept"})
        ws = scope["extensions"]["openline.connection"]["claim"]()
        async for message in ws:
            await ws.send(message)

    options = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    async with run_uvicorn(app, **options) as running:
        url = f"wss://127.0.0.1:{running.port}/"
        async with connect(url, ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
    assert schemes == ["wss"]
