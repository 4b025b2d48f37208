"""connect(): dialling, the client side of the opening handshake, and its failures."""

from __future__ import annotations

import asyncio
import base64
import socket
from typing import Any

import pytest

from openline import connect as root_connect
from openline.asyncio.client import connect
from openline.asyncio.server import ServerConnection
from openline.exceptions import InvalidHeader, InvalidMessage, InvalidStatus, InvalidURI
from openline.protocol.frames import Frame, Opcode, serialize_frame
from openline.protocol.handshake import ServerHandshake
from openline.protocol.http11 import parse_request

from .helpers import MS, TIMEOUT, run_server, url_of


async def fake_server(answer: bytes | None) -> tuple[asyncio.Server, str]:
    """A TCP server that reads a request, writes ``answer`` (unless None), and closes."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is None:
            await reader.read()  # silent until the client gives up
        else:
            writer.write(answer)
        writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_connect_can_be_awaited() -> None:
    assert root_connect is connect
    async with run_server() as server:
        ws = await connect(url_of(server))
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.close()


async def test_connect_dials_host_and_port_overrides() -> None:
    async with run_server() as server:
        port = server.sockets[0].getsockname()[1]
        async with connect("ws://example.invalid/", host="127.0.0.1", port=port) as ws:
            assert ws.request is not None
            assert ws.request.headers["Host"] == "example.invalid"
            await ws.send("via override")
            assert await ws.recv() == "via override"


async def test_connect_uses_given_socket() -> None:
    async with run_server() as server:
        sock = socket.create_connection(("127.0.0.1", server.sockets[0].getsockname()[1]))
        async with connect("ws://localhost/", sock=sock) as ws:
            await ws.send("via socket")
            assert await ws.recv() == "via socket"


async def test_user_info_becomes_basic_authorization() -> None:
    seen: list[str | None] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.headers.get("Authorization"))

    async with run_server(handler) as server:
        uri = url_of(server).replace("ws://", "ws://user:pa%3Ass@")
        async with connect(uri) as ws:
            await ws.wait_closed()
    assert seen == ["Basic " + base64.b64encode(b"user:pa:ss").decode()]


async def test_refused_upgrade_raises_invalid_status_with_response() -> None:
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"
    server, uri = await fake_server(answer)
    async with server:
        with pytest.raises(InvalidStatus) as info:
            await connect(uri)
        assert info.value.status == 404
        assert info.value.response.body == b"nope"  # type: ignore[attr-defined]


async def test_wrong_accept_key_raises_invalid_header() -> None:
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
    )
    server, uri = await fake_server(answer)
    async with server:
        with pytest.raises(InvalidHeader):
            await connect(uri)


async def test_server_closing_during_handshake_raises_invalid_message() -> None:
    server, uri = await fake_server(b"")
    async with server:
        with pytest.raises(InvalidMessage, match="connection closed during the opening handshake"):
            await connect(uri)


async def test_silent_server_raises_timeout_error_after_open_timeout() -> None:
    server, uri = await fake_server(None)
    async with server:
        with pytest.raises(TimeoutError, match="opening handshake"):
            await connect(uri, open_timeout=20 * MS)


async def test_refused_tcp_connection_raises_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OSError):
        await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/"), TIMEOUT)


def test_connect_rejects_invalid_uri() -> None:
    with pytest.raises(InvalidURI):
        connect("http://example.com/")


def test_connect_rejects_ssl_with_ws_uri() -> None:
    import ssl

    with pytest.raises(ValueError, match="ssl"):
        connect("ws://example.com/", ssl=ssl.create_default_context())


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_size", "big"),
        ("max_queue", -1),
        ("write_limit", (10, 20)),
        ("ping_interval", -5),
        ("ping_timeout", 0),
        ("open_timeout", float("nan")),
        ("close_timeout", 0),
        ("compression", "brotli"),
    ],
)
def test_connect_validates_limits(argument: str, value: Any) -> None:
    arguments: dict[str, Any] = {argument: value}
    with pytest.raises(ValueError, match=argument):
        connect("ws://example.com/", **arguments)


async def test_response_arriving_in_pieces_with_a_first_frame() -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        parsed = parse_request(head)
        assert parsed is not None
        response = ServerHandshake().process_request(parsed[0]).response.serialize()
        frame = serialize_frame(Frame(Opcode.TEXT, b"welcome"), mask=False)
        writer.write(response[:20])
        await asyncio.sleep(MS)
        writer.write(response[20:] + frame)
        await reader.read()
        writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=20 * MS)
        assert await ws.recv() == "welcome"
        await ws.close()
