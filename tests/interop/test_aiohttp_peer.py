"""openline against ``aiohttp``, as server and as client.

aiohttp's API sends every message in a single frame, both as client and as
server, so the tests where the peer fragments a message do not exist here; the
``websockets`` and Node ``ws`` pairings cover them. aiohttp answers a close frame
with 1000 rather than echoing its code, so each close test checks the side that
received the chosen code.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .helpers import (
    BIG,
    CLIENT_SUBPROTOCOLS,
    CLOSE_CODE,
    CLOSE_REASON,
    MAX_SIZE,
    NON_ASCII,
    SERVER_PING,
    SERVER_SUBPROTOCOLS,
    SMALL_MESSAGES,
    SUBPROTOCOL,
    TIMEOUT,
    Compression,
    EchoServer,
    ServerLog,
    ServerSide,
    big_binary,
    big_text,
    with_id,
)
from .openline_side import OpenlineClientTests

pytestmark = pytest.mark.interop


async def send(ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, message: Any) -> None:
    if isinstance(message, str):
        await ws.send_str(message)
    else:
        await ws.send_bytes(message)


async def receive(ws: aiohttp.ClientWebSocketResponse) -> str | bytes:
    """The next data message; anything else fails the test."""
    msg = await ws.receive(TIMEOUT)
    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
    data: str | bytes = msg.data
    return data


# --- openline server, aiohttp client -------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def open_peer_client(
    session: aiohttp.ClientSession,
    openline_server: EchoServer,
    conn_id: str,
    compression: Compression,
    client_ssl: ssl.SSLContext | None,
) -> Any:
    """``open_peer_client(path, **options)`` connects an aiohttp client to our server."""

    def open_peer_client(path: str = "/echo", **options: Any) -> Any:
        if client_ssl is not None:
            options["ssl"] = client_ssl
        return session.ws_connect(
            openline_server.url(path, conn_id),
            compress=15 if compression else 0,
            max_msg_size=MAX_SIZE,
            **options,
        )

    return open_peer_client


async def test_server_echoes_small_messages(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        for name, message in SMALL_MESSAGES.items():
            await send(ws, message)
            assert await receive(ws) == message, name


# No test_server_receives_fragmented_messages: aiohttp's client cannot send one.


async def test_server_sends_fragmented_messages(open_peer_client: Any) -> None:
    async with open_peer_client("/fragments") as ws:
        for message in (NON_ASCII, bytes(range(256))):
            await send(ws, message)
            assert await receive(ws) == message


async def test_server_echoes_large_binary_message(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        await ws.send_bytes(big_binary())
        echo = await receive(ws)
        assert len(echo) == BIG
        assert echo == big_binary()


async def test_server_echoes_large_text_message(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        await ws.send_str(big_text())
        assert await receive(ws) == big_text()


async def test_server_answers_client_ping(open_peer_client: Any) -> None:
    # Without autoping, aiohttp hands the pong to receive() instead of eating it.
    async with open_peer_client(autoping=False) as ws:
        await ws.ping(b"aiohttp-client")
        msg = await ws.receive(TIMEOUT)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"aiohttp-client")


async def test_server_ping_gets_pong(open_peer_client: Any) -> None:
    async with open_peer_client("/ping") as ws:
        assert json.loads(await receive(ws)) == {"pong": SERVER_PING.decode()}


async def test_client_close_code_and_reason_reach_server(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    async with open_peer_client() as ws:
        await ws.close(code=CLOSE_CODE, message=CLOSE_REASON.encode())
    server_side = await openline_server.wait_closed(conn_id)
    assert (server_side.close_code, server_side.close_reason) == (CLOSE_CODE, CLOSE_REASON)


async def test_server_close_code_and_reason_reach_client(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    async with open_peer_client("/close") as ws:
        await ws.send_str(json.dumps({"code": CLOSE_CODE, "reason": CLOSE_REASON}))
        msg = await ws.receive(TIMEOUT)
        assert (msg.type, msg.data, msg.extra) == (
            aiohttp.WSMsgType.CLOSE,
            CLOSE_CODE,
            CLOSE_REASON,
        )
        assert ws.close_code == CLOSE_CODE
    await openline_server.wait_closed(conn_id)


async def test_server_negotiates_extension_as_configured(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str, compression: Compression
) -> None:
    async with open_peer_client() as ws:
        window_bits = ws.compress  # 0 when permessage-deflate was not negotiated
    server_side = await openline_server.wait_closed(conn_id)
    if compression is None:
        assert window_bits == 0
        assert server_side.extensions is None
    else:
        assert window_bits > 0
        assert server_side.extensions is not None
        assert server_side.extensions.startswith("permessage-deflate")


async def test_server_negotiates_subprotocol(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    async with open_peer_client(protocols=CLIENT_SUBPROTOCOLS) as ws:
        assert ws.protocol == SUBPROTOCOL
    server_side = await openline_server.wait_closed(conn_id)
    assert server_side.subprotocol == SUBPROTOCOL


# --- openline client, aiohttp server -------------------------------------------------


class AiohttpEchoServer:
    """An aiohttp server behaving like the shared echo handler, minus fragmentation."""

    def __init__(self, *, scheme: str, compress: bool) -> None:
        self.scheme = scheme
        self.compress = compress
        self.port = 0
        self.log = ServerLog()

    def url(self, path: str, conn_id: str) -> str:
        return with_id(f"{self.scheme}://127.0.0.1:{self.port}{path}", conn_id)

    async def wait_closed(self, conn_id: str) -> ServerSide:
        return await self.log.wait(conn_id)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        # Without autoping, pongs reach receive(), which the /ping path needs.
        ws = web.WebSocketResponse(
            compress=self.compress,
            protocols=SERVER_SUBPROTOCOLS,
            max_msg_size=MAX_SIZE,
            autoping=False,
        )
        await ws.prepare(request)
        close_code, close_reason = await self._serve(ws, request.path)
        self.log.record(
            request.query.get("id", ""),
            ServerSide(
                path=request.path,
                extensions=ws.headers.get("Sec-WebSocket-Extensions"),
                subprotocol=ws.ws_protocol,
                close_code=close_code,
                close_reason=close_reason,
            ),
        )
        return ws

    async def _serve(self, ws: web.WebSocketResponse, path: str) -> tuple[int | None, str | None]:
        """Run the behaviour of ``path``; return the close code and reason received."""
        if path == "/ping":
            await ws.ping(SERVER_PING)
        while True:
            msg = await ws.receive(TIMEOUT)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return msg.data, msg.extra
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code, None
            if msg.type is aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is aiohttp.WSMsgType.PONG:
                await ws.send_str(json.dumps({"pong": msg.data.decode()}))
            elif path == "/close":
                request = json.loads(msg.data)
                await ws.close(code=request["code"], message=request["reason"].encode())
                return ws.close_code, None
            else:
                await send(ws, msg.data)


class TestOpenlineClient(OpenlineClientTests):
    # aiohttp's server cannot send a fragmented message: no such test in this pairing.
    test_client_receives_fragmented_messages = None  # type: ignore[assignment]  # uncollects it

    @pytest.fixture
    async def peer_server(
        self, compression: Compression, server_ssl: ssl.SSLContext | None
    ) -> AsyncIterator[AiohttpEchoServer]:
        scheme = "ws" if server_ssl is None else "wss"
        echo = AiohttpEchoServer(scheme=scheme, compress=compression is not None)
        app = web.Application()
        app.router.add_get("/{path:.*}", echo.handler)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        echo.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock, ssl_context=server_ssl)
        await site.start()
        try:
            yield echo
        finally:
            await runner.cleanup()
            sock.close()
