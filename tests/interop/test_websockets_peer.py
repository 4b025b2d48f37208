"""openline against the ``websockets`` library, as server and as client.

``websockets`` can send a fragmented message (``send`` of an iterable) and can
show the fragments it receives (``recv_streaming``), so this pairing checks
fragmentation frame by frame in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import websockets
from websockets import Subprotocol
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websockets_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

from openline.asyncio import connect

from .helpers import (
    BIG,
    BINARY_FRAGMENTS,
    CLIENT_SUBPROTOCOLS,
    CLOSE_CODE,
    CLOSE_REASON,
    MAX_SIZE,
    NON_ASCII,
    SERVER_PING,
    SERVER_SUBPROTOCOLS,
    SMALL_MESSAGES,
    SPLIT_UTF8_FRAGMENTS,
    SUBPROTOCOL,
    TEXT_FRAGMENTS,
    TIMEOUT,
    Compression,
    EchoServer,
    assert_deflate_parameters,
    big_binary,
    big_text,
    deflate_messages,
    deflate_variants,
    split_in_three,
)
from .openline_side import OpenlineClientTests, start_echo_server

pytestmark = pytest.mark.interop


# --- openline server, websockets client ----------------------------------------------


@pytest.fixture
def open_peer_client(
    openline_server: EchoServer,
    conn_id: str,
    compression: Compression,
    client_ssl: ssl.SSLContext | None,
) -> Any:
    """``open_peer_client(path, **options)`` connects a websockets client to our server."""

    def open_peer_client(
        path: str = "/echo", **options: Any
    ) -> contextlib.AbstractAsyncContextManager[ClientConnection]:
        return websockets_client(
            openline_server.url(path, conn_id),
            ssl=client_ssl,
            compression=compression,
            max_size=MAX_SIZE,
            **options,
        )

    return open_peer_client


@contextlib.asynccontextmanager
async def websockets_client(uri: str, **options: Any) -> AsyncIterator[ClientConnection]:
    """``websockets.asyncio.client.connect``, closing its transport at the end.

    On Python 3.10, when the server closes a TLS connection first (as it should),
    websockets leaves its TLS transport marked open, and it warns "unclosed
    transport" when collected. Closing it again is harmless on every version.
    """
    async with websockets_connect(uri, **options) as ws:
        yield ws
    ws.transport.close()


async def test_server_echoes_small_messages(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        for name, message in SMALL_MESSAGES.items():
            await ws.send(message)
            assert await ws.recv() == message, name


async def test_server_receives_fragmented_messages(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        await ws.send(TEXT_FRAGMENTS)
        assert await ws.recv() == "".join(TEXT_FRAGMENTS)
        await ws.send(BINARY_FRAGMENTS)
        assert await ws.recv() == b"".join(BINARY_FRAGMENTS)
        # Text fragments that cut characters in two, as RFC 6455 allows.
        await ws.send(SPLIT_UTF8_FRAGMENTS, text=True)
        assert await ws.recv() == NON_ASCII


async def _receive_fragments(ws: ClientConnection) -> list[Any]:
    return [fragment async for fragment in ws.recv_streaming()]


async def test_server_sends_fragmented_messages(open_peer_client: Any) -> None:
    async with open_peer_client("/fragments") as ws:
        for message in (NON_ASCII, bytes(range(256))):
            await ws.send(message)
            fragments = await asyncio.wait_for(_receive_fragments(ws), TIMEOUT)
            # Like websockets, openline ends a message sent from an iterable with
            # an empty final frame, since it cannot know which piece is the last.
            assert [fragment for fragment in fragments if fragment] == split_in_three(message)


async def test_server_echoes_large_binary_message(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        await ws.send(big_binary())
        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert len(echo) == BIG
        assert echo == big_binary()


async def test_server_echoes_large_text_message(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        await ws.send(big_text())
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == big_text()


async def test_server_answers_client_ping(open_peer_client: Any) -> None:
    async with open_peer_client() as ws:
        pong = await ws.ping(b"websockets-client")
        await asyncio.wait_for(pong, TIMEOUT)


async def test_server_ping_gets_pong(open_peer_client: Any) -> None:
    async with open_peer_client("/ping") as ws:
        answer = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert json.loads(answer) == {"pong": SERVER_PING.decode()}


async def test_client_close_code_and_reason_reach_server(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    async with open_peer_client() as ws:
        await ws.close(CLOSE_CODE, CLOSE_REASON)
    server_side = await openline_server.wait_closed(conn_id)
    assert (server_side.close_code, server_side.close_reason) == (CLOSE_CODE, CLOSE_REASON)


async def test_server_close_code_and_reason_reach_client(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    async with open_peer_client("/close") as ws:
        await ws.send(json.dumps({"code": CLOSE_CODE, "reason": CLOSE_REASON}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (CLOSE_CODE, CLOSE_REASON)
    await openline_server.wait_closed(conn_id)


async def test_server_negotiates_extension_as_configured(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str, compression: Compression
) -> None:
    async with open_peer_client() as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
    server_side = await openline_server.wait_closed(conn_id)
    assert extensions == server_side.extensions
    if compression is None:
        assert extensions is None
    else:
        assert extensions is not None
        assert extensions.startswith("permessage-deflate")


async def test_server_negotiates_subprotocol(
    open_peer_client: Any, openline_server: EchoServer, conn_id: str
) -> None:
    async with open_peer_client(subprotocols=CLIENT_SUBPROTOCOLS) as ws:
        assert ws.subprotocol == SUBPROTOCOL
    server_side = await openline_server.wait_closed(conn_id)
    assert server_side.subprotocol == SUBPROTOCOL


@pytest.mark.parametrize(
    "params", deflate_variants("server").values(), ids=deflate_variants("server").keys()
)
async def test_server_compresses_with_parameters_the_client_asks_for(
    params: dict[str, Any], conn_id: str
) -> None:
    async with (
        start_echo_server(compression="deflate", ssl=None) as server,
        websockets_client(
            server.url("/echo", conn_id),
            compression=None,
            extensions=[ClientPerMessageDeflateFactory(**params)],
            max_size=MAX_SIZE,
        ) as ws,
    ):
        assert ws.response is not None
        assert_deflate_parameters(ws.response.headers.get("Sec-WebSocket-Extensions"), params)
        for message in deflate_messages():
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


# --- openline client, websockets server ----------------------------------------------


def select_subprotocol(ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return next((Subprotocol(name) for name in SERVER_SUBPROTOCOLS if name in offered), None)


class TestOpenlineClient(OpenlineClientTests):
    @pytest.fixture
    async def peer_server(
        self, compression: Compression, server_ssl: ssl.SSLContext | None
    ) -> AsyncIterator[EchoServer]:
        scheme = "ws" if server_ssl is None else "wss"
        echo = EchoServer(scheme=scheme, closed_errors=(websockets.ConnectionClosed,))
        async with websockets_serve(
            echo.handler,
            "127.0.0.1",
            0,
            ssl=server_ssl,
            compression=compression,
            subprotocols=[Subprotocol(name) for name in SERVER_SUBPROTOCOLS],
            # By default, websockets refuses clients that offer no subprotocol.
            select_subprotocol=select_subprotocol,
            max_size=MAX_SIZE,
        ) as server:
            echo.port = next(iter(server.sockets)).getsockname()[1]
            yield echo


@pytest.mark.parametrize(
    "params", deflate_variants("client").values(), ids=deflate_variants("client").keys()
)
async def test_client_compresses_with_parameters_the_server_asks_for(
    params: dict[str, Any], conn_id: str
) -> None:
    echo = EchoServer(scheme="ws", closed_errors=(websockets.ConnectionClosed,))
    async with websockets_serve(
        echo.handler,
        "127.0.0.1",
        0,
        compression=None,
        extensions=[ServerPerMessageDeflateFactory(**params)],
        max_size=MAX_SIZE,
    ) as server:
        echo.port = next(iter(server.sockets)).getsockname()[1]
        async with connect(echo.url("/echo", conn_id), max_size=MAX_SIZE) as ws:
            assert ws.response is not None
            assert_deflate_parameters(ws.response.headers.get("Sec-WebSocket-Extensions"), params)
            for message in deflate_messages():
                await ws.send(message)
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
