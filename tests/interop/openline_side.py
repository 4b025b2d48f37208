"""Our side of the interop tests: openline's echo server, and the client tests.

:func:`start_echo_server` runs the shared echo handler (see ``helpers``) on
openline's server. :class:`OpenlineClientTests` holds the tests of openline's
client; each peer's module subclasses it and provides a ``peer_server`` fixture
(any object with ``url(path, conn_id)`` and ``await wait_closed(conn_id)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import pytest

from openline.asyncio import connect, serve
from openline.exceptions import ConnectionClosed

from .helpers import (
    BINARY_FRAGMENTS,
    CLIENT_SUBPROTOCOLS,
    CLOSE_CODE,
    CLOSE_REASON,
    MAX_SIZE,
    NON_ASCII,
    SERVER_PING,
    SERVER_SUBPROTOCOLS,
    SMALL_MESSAGES,
    SUBPROTOCOL,
    TEXT_FRAGMENTS,
    TIMEOUT,
    Compression,
    EchoServer,
    ServerSide,
    big_binary,
    big_text,
)


@contextlib.asynccontextmanager
async def start_echo_server(
    *,
    compression: Compression,
    ssl: ssl.SSLContext | None,
) -> AsyncIterator[EchoServer]:
    """Run the shared :class:`~.helpers.EchoServer` with openline, on 127.0.0.1:0."""
    echo = EchoServer(scheme="ws" if ssl is None else "wss", closed_errors=(ConnectionClosed,))
    async with serve(
        echo.handler,
        "127.0.0.1",
        0,
        ssl=ssl,
        compression=compression,
        subprotocols=SERVER_SUBPROTOCOLS,
        max_size=MAX_SIZE,
    ) as server:
        echo.port = server.sockets[0].getsockname()[1]
        yield echo


class PeerServer(Protocol):
    """A peer's echo server, as the client tests use it."""

    def url(self, path: str, conn_id: str) -> str: ...

    async def wait_closed(self, conn_id: str) -> ServerSide: ...


OpenClient = Callable[..., connect]


class OpenlineClientTests:
    """openline's client against ``peer_server``, a fixture each subclass provides.

    The ``compression`` and ``tls`` fixtures parametrise every test; ``peer_server``
    is expected to depend on them too.
    """

    @pytest.fixture
    def open_client(
        self,
        peer_server: PeerServer,
        conn_id: str,
        compression: Compression,
        client_ssl: ssl.SSLContext | None,
    ) -> OpenClient:
        """``open_client(path, **options)`` connects openline's client to the peer."""

        def open_client(path: str = "/echo", **options: Any) -> connect:
            return connect(
                peer_server.url(path, conn_id),
                ssl=client_ssl,
                compression=compression,
                max_size=MAX_SIZE,
                **options,
            )

        return open_client

    async def test_small_messages_round_trip(self, open_client: OpenClient) -> None:
        async with open_client() as ws:
            for name, message in SMALL_MESSAGES.items():
                await ws.send(message)
                assert await ws.recv() == message, name

    async def test_client_sends_fragmented_messages(self, open_client: OpenClient) -> None:
        async with open_client() as ws:
            await ws.send(TEXT_FRAGMENTS)
            assert await ws.recv() == "".join(TEXT_FRAGMENTS)
            await ws.send(BINARY_FRAGMENTS)
            assert await ws.recv() == b"".join(BINARY_FRAGMENTS)

    async def test_client_receives_fragmented_messages(self, open_client: OpenClient) -> None:
        async with open_client("/fragments") as ws:
            for message in (NON_ASCII, bytes(range(256))):
                await ws.send(message)
                assert await ws.recv() == message

    async def test_large_binary_message_round_trips(self, open_client: OpenClient) -> None:
        async with open_client() as ws:
            await ws.send(big_binary())
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == big_binary()

    async def test_large_text_message_round_trips(self, open_client: OpenClient) -> None:
        async with open_client() as ws:
            await ws.send(big_text())
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == big_text()

    async def test_client_ping_gets_pong(self, open_client: OpenClient) -> None:
        async with open_client() as ws:
            pong = await ws.ping(b"openline-client")
            await asyncio.wait_for(pong, TIMEOUT)

    async def test_client_answers_server_ping(self, open_client: OpenClient) -> None:
        async with open_client("/ping") as ws:
            answer = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert json.loads(answer) == {"pong": SERVER_PING.decode()}

    async def test_client_close_code_and_reason_reach_server(
        self, open_client: OpenClient, peer_server: PeerServer, conn_id: str
    ) -> None:
        async with open_client() as ws:
            await ws.close(CLOSE_CODE, CLOSE_REASON)
        server_side = await peer_server.wait_closed(conn_id)
        assert (server_side.close_code, server_side.close_reason) == (CLOSE_CODE, CLOSE_REASON)

    async def test_server_close_code_and_reason_reach_client(
        self, open_client: OpenClient, peer_server: PeerServer, conn_id: str
    ) -> None:
        async with open_client("/close") as ws:
            await ws.send(json.dumps({"code": CLOSE_CODE, "reason": CLOSE_REASON}))
            with pytest.raises(ConnectionClosed) as raised:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert (ws.close_code, ws.close_reason) == (CLOSE_CODE, CLOSE_REASON)
            assert (raised.value.code, raised.value.reason) == (CLOSE_CODE, CLOSE_REASON)
        await peer_server.wait_closed(conn_id)

    async def test_extension_negotiated_as_configured(
        self,
        open_client: OpenClient,
        peer_server: PeerServer,
        conn_id: str,
        compression: Compression,
    ) -> None:
        async with open_client() as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        server_side = await peer_server.wait_closed(conn_id)
        if compression is None:
            assert extensions is None
            assert not server_side.extensions
        else:
            assert extensions is not None
            assert extensions.startswith("permessage-deflate")
            assert server_side.extensions is not None
            assert server_side.extensions.startswith("permessage-deflate")

    async def test_subprotocol_negotiated(
        self, open_client: OpenClient, peer_server: PeerServer, conn_id: str
    ) -> None:
        async with open_client(subprotocols=CLIENT_SUBPROTOCOLS) as ws:
            assert ws.subprotocol == SUBPROTOCOL
        server_side = await peer_server.wait_closed(conn_id)
        assert server_side.subprotocol == SUBPROTOCOL
