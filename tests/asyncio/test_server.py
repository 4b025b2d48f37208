"""serve(): the opening handshake, limits, hooks, TLS, and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

import pytest
import trustme

from openline import serve as root_serve
from openline.asyncio.client import connect
from openline.asyncio.server import Server, ServerConnection, serve
from openline.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidMessage,
    InvalidStatus,
)
from openline.protocol.connection import Side, State
from openline.protocol.events import BinaryMessage
from openline.protocol.frames import Frame, Opcode, serialize_frame
from openline.protocol.handshake import ClientHandshake
from openline.protocol.http11 import Request, Response

from .helpers import MS, TIMEOUT, RawPeer, echo, port_of, raw_client, run_server, url_of


async def http_get(server: Server, head: bytes) -> bytes:
    """Send ``head`` as is and read the whole answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(head)
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()


# --- starting ---------------------------------------------------------------------------


async def test_serve_can_be_awaited() -> None:
    server = await serve(echo, "127.0.0.1", 0)
    assert server.is_serving()
    async with connect(url_of(server)) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    server.close()
    await server.wait_closed()
    assert not server.is_serving()


async def test_serve_is_exported_from_the_package_root() -> None:
    assert root_serve is serve


async def test_serve_forever_shuts_down_when_cancelled() -> None:
    server = await serve(echo, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve_forever())
    ws = await connect(url_of(server))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionClosedOK):
        await ws.recv()
    assert ws.close_code == 1001


# --- the opening handshake --------------------------------------------------------------


async def test_silent_client_is_dropped_after_open_timeout() -> None:
    calls: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        calls.append(ws)

    async with run_server(handler, open_timeout=20 * MS) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end
        loop = asyncio.get_running_loop()
        start = loop.time()
        with contextlib.suppress(ConnectionResetError):  # the abort may reset it
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        assert loop.time() - start >= 20 * MS * 0.9
        writer.close()
        assert not calls
        assert not server._protocols


async def test_malformed_request_gets_400() -> None:
    async with run_server() as server:
        answer = await http_get(server, b"NOT HTTP\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")


async def test_request_with_too_many_headers_gets_431() -> None:
    async with run_server(max_headers=4) as server:
        headers = b"".join(b"X-%d: y\r\n" % index for index in range(5))
        answer = await http_get(server, b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")


async def test_plain_http_request_gets_426() -> None:
    async with run_server() as server:
        answer = await http_get(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 426 ")


async def test_origin_outside_allowlist_gets_403() -> None:
    async with run_server(origins=["https://good.example"]) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url_of(server), origin="https://evil.example")
        assert info.value.status == 403
        async with connect(url_of(server), origin="https://good.example") as ws:
            await ws.send("allowed")
            assert await ws.recv() == "allowed"


async def test_process_request_answers_plain_http() -> None:
    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        if request.path == "/health":
            return Response.plain(200, "OK\n")
        if request.headers.get("Authorization") != "Bearer secret":
            return Response.plain(401, "who are you?\n")
        return None

    async with run_server(process_request=process_request) as server:
        answer = await http_get(server, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"\r\n\r\nOK\n")
        with pytest.raises(InvalidStatus) as info:
            await connect(url_of(server))
        assert info.value.status == 401
        headers = {"Authorization": "Bearer secret"}
        async with connect(url_of(server), additional_headers=headers) as ws:
            await ws.send("authorized")
            assert await ws.recv() == "authorized"


async def test_sync_process_request_is_supported() -> None:
    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        return Response.plain(403, "no\n")

    async with run_server(process_request=process_request) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url_of(server))
        assert info.value.status == 403


async def test_process_request_failure_gets_500(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(ws: ServerConnection, request: Request) -> Response | None:
        raise RuntimeError("boom")

    async with run_server(process_request=process_request) as server:
        with pytest.raises(InvalidStatus) as info:
            await connect(url_of(server))
        assert info.value.status == 500
    assert "opening handshake failed" in caplog.text


async def test_connections_beyond_max_connections_get_503() -> None:
    async with run_server(max_connections=1) as server, connect(url_of(server)) as ws:
        await ws.send("one")
        assert await ws.recv() == "one"
        with pytest.raises(InvalidStatus) as info:
            await connect(url_of(server))
        assert info.value.status == 503
        assert len(server.connections) == 1


async def test_subprotocol_is_negotiated() -> None:
    seen: list[str | None] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws.subprotocol)

    async with run_server(handler, subprotocols=["chat", "superchat"]) as server:
        async with connect(url_of(server), subprotocols=["superchat", "other"]) as ws:
            assert ws.subprotocol == "superchat"
            await ws.wait_closed()
        async with connect(url_of(server), subprotocols=["other"]) as ws:
            assert ws.subprotocol is None
            await ws.wait_closed()
    assert seen == ["superchat", None]


@pytest.mark.parametrize(
    ("server_compression", "client_compression", "negotiated"),
    [("deflate", "deflate", True), (None, "deflate", False), ("deflate", None, False)],
)
async def test_compression_is_on_by_default_and_can_be_disabled(
    server_compression: Any, client_compression: Any, negotiated: bool
) -> None:
    async with (
        run_server(compression=server_compression) as server,
        connect(url_of(server), compression=client_compression) as ws,
    ):
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in extensions) is negotiated
        message = "compressible " * 1000
        await ws.send(message)
        assert await ws.recv() == message


async def test_compression_defaults_to_deflate() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") == "permessage-deflate"


# --- the handler ------------------------------------------------------------------------


async def test_handler_exception_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: ServerConnection) -> None:
        raise RuntimeError("handler bug")

    caplog.set_level(logging.ERROR, logger="openline.server")
    async with run_server(handler) as server, connect(url_of(server)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
    assert "connection handler failed" in caplog.text
    assert "handler bug" in caplog.text


async def test_handler_return_closes_with_1000() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("bye")

    async with run_server(handler) as server, connect(url_of(server)) as ws:
        assert [message async for message in ws] == ["bye"]
        assert ws.close_code == 1000


async def test_handler_sees_client_disconnect_as_connection_closed() -> None:
    stopped = asyncio.Event()
    raised: list[BaseException] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except BaseException as exc:
            raised.append(exc)
            raise
        finally:
            stopped.set()

    async with run_server(handler) as server:
        peer = await raw_client(server)
        peer.writer.transport.abort()
        await asyncio.wait_for(stopped.wait(), TIMEOUT)
    [exc] = raised
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 1006  # no close frame: the TCP connection just went away


# --- shutting down ----------------------------------------------------------------------


async def test_server_close_sends_1001_to_every_client() -> None:
    server = await serve(echo, "127.0.0.1", 0)
    clients = [await connect(url_of(server)) for _ in range(3)]
    server.close()
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1001
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    assert not server.connections


async def test_server_close_aborts_a_client_that_ignores_it_within_timeout() -> None:
    server = await serve(echo, "127.0.0.1", 0)
    peer = await raw_client(server)  # never answers the close frame
    polite = await connect(url_of(server))
    loop = asyncio.get_running_loop()
    start = loop.time()
    server.close(timeout=50 * MS)
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    elapsed = loop.time() - start
    assert 50 * MS * 0.9 <= elapsed < 50 * MS + 500 * MS
    assert polite.close_code == 1001
    await peer.close()


async def test_server_close_cancels_a_handler_that_does_not_return() -> None:
    cancelled = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        try:
            await asyncio.sleep(TIMEOUT)
        finally:
            cancelled.set()

    server = await serve(handler, "127.0.0.1", 0)
    ws = await connect(url_of(server))
    server.close(timeout=20 * MS)
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    assert cancelled.is_set()
    await ws.wait_closed()
    assert ws.close_code == 1001


async def test_server_close_rejects_invalid_arguments() -> None:
    async with run_server() as server:
        with pytest.raises(ValueError, match="timeout"):
            server.close(timeout=-1)
        with pytest.raises(ValueError, match="close code"):
            server.close(code=1005)


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_tls_echo(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    async with (
        run_server(ssl=server_context) as server,
        connect(url_of(server, scheme="wss"), ssl=client_context) as ws,
    ):
        await ws.send("secret")
        assert await ws.recv() == "secret"
        assert ws._transport.get_extra_info("ssl_object") is not None
    assert ws.close_code == 1000


async def test_tls_server_closes_cleanly(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    certificate_authority.configure_trust(client_context)
    server = await serve(echo, "127.0.0.1", 0, ssl=server_context)
    uri = f"wss://localhost:{port_of(server)}/"
    ws = await connect(uri, ssl=client_context, host="127.0.0.1")
    server.close()
    with pytest.raises(ConnectionClosedOK):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)


# --- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_size", -1),
        ("max_queue", 0),
        ("max_queue", (4, 8)),
        ("write_limit", -1),
        ("write_limit", (1, 2, 3)),
        ("ping_interval", 0),
        ("ping_timeout", float("inf")),
        ("open_timeout", -1.0),
        ("close_timeout", True),
        ("max_connections", 0),
        ("max_header_line", 0),
        ("max_headers", 1.5),
        ("compression", "gzip"),
    ],
)
def test_serve_validates_limits(argument: str, value: Any) -> None:
    arguments: dict[str, Any] = {argument: value}
    with pytest.raises(ValueError, match=argument):
        serve(echo, "127.0.0.1", 0, **arguments)


# --- less travelled paths -------------------------------------------------------------


async def test_server_object_is_an_async_context_manager() -> None:
    async with await serve(echo, "127.0.0.1", 0) as server, connect(url_of(server)) as ws:
        await ws.send("ok")
        assert await ws.recv() == "ok"
    server.close()  # closing again does nothing
    await server.wait_closed()


async def test_serve_and_connect_over_a_unix_socket(tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    async with serve(echo, sock=listener):
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        async with connect("ws://localhost/", sock=client) as ws:
            await ws.send("unix")
            assert await ws.recv() == "unix"


async def test_shutdown_drops_connections_still_in_their_handshake() -> None:
    started = asyncio.Event()

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        started.set()
        await asyncio.sleep(TIMEOUT)
        return None

    server = await serve(echo, "127.0.0.1", 0, process_request=process_request)
    pending = asyncio.ensure_future(connect(url_of(server)))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    partial = await asyncio.open_connection("127.0.0.1", port_of(server))
    partial[1].write(b"GET / HTTP/1.1\r\n")
    server.close(timeout=50 * MS)
    await asyncio.wait_for(server.wait_closed(), TIMEOUT)
    with pytest.raises(InvalidMessage):
        await pending
    partial[1].close()


async def test_upgrade_during_shutdown_gets_503() -> None:
    release = asyncio.Event()

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        await release.wait()
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()

    server = await serve(handler, "127.0.0.1", 0, process_request=process_request)
    first = asyncio.ensure_future(connect(url_of(server)))
    while not server._tasks:
        await asyncio.sleep(MS)
    server._closing = True  # the state of a server shutting down, as seen by a handshake
    release.set()
    with pytest.raises(InvalidStatus) as info:
        await first
    assert info.value.status == 503
    server.close()
    await server.wait_closed()


async def test_client_gone_during_process_request_is_forgotten() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        started.set()
        await release.wait()
        return None

    async with run_server(process_request=process_request) as server:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        writer.write(ClientHandshake("127.0.0.1", 80, secure=False).build_request().serialize())
        await asyncio.wait_for(started.wait(), TIMEOUT)
        writer.transport.abort()
        while server._protocols:
            await asyncio.sleep(MS)
        release.set()
        while server._tasks:
            await asyncio.sleep(MS)
        assert not server.connections


async def test_debug_logging_of_rejections(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="openline.server")
    async with run_server(open_timeout=20 * MS) as server:
        assert (await http_get(server, b"BAD\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        assert (await http_get(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 426 "
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    assert "invalid upgrade request" in caplog.text
    assert "rejected upgrade request" in caplog.text
    assert "opening handshake timed out" in caplog.text


async def test_early_data_beyond_limit_pauses_reading_until_the_upgrade() -> None:
    release = asyncio.Event()

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        await release.wait()
        return None

    async with run_server(process_request=process_request, compression=None) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        request = ClientHandshake("127.0.0.1", 80, secure=False).build_request().serialize()
        payload = bytes(range(256)) * 256  # 64 KiB per frame
        frame = serialize_frame(Frame(Opcode.BINARY, payload), mask=True)
        writer.write(request + frame * 3)
        await writer.drain()
        (connection,) = server._protocols
        while connection._transport.is_reading():
            await asyncio.sleep(MS)
        release.set()
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        peer = RawPeer(reader, writer, Side.CLIENT)
        for _ in range(3):
            message = await peer.receive_until(BinaryMessage)
            assert message.data == payload
        await peer.close()


async def test_process_request_sees_connection_in_its_opening_handshake() -> None:
    seen: dict[str, object] = {}

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        assert ws.request is not None
        seen.update(state=ws.state, path=ws.request.path, response=ws.response)
        await ws.close()  # drops the connection: no response at all
        seen["after"] = ws.state
        return None

    async with run_server(process_request=process_request) as server:
        with pytest.raises(InvalidMessage):
            await connect(url_of(server, "/hook"))
    assert seen == {"state": None, "path": "/hook", "response": None, "after": State.CLOSED}


# --- the handler task and what an open connection keeps ----------------------------------


async def test_handler_may_return_any_awaitable() -> None:
    async def reply(ws: ServerConnection) -> None:
        await ws.send("from an awaitable")

    def handler(ws: ServerConnection) -> asyncio.Future[None]:
        return asyncio.ensure_future(reply(ws))

    async with run_server(handler) as server, connect(url_of(server)) as ws:
        assert [message async for message in ws] == ["from an awaitable"]
        assert ws.close_code == 1000


async def test_handler_failing_before_its_first_await_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(ws: ServerConnection) -> asyncio.Future[None]:
        raise RuntimeError("not even a coroutine")

    caplog.set_level(logging.ERROR, logger="openline.server")
    async with run_server(handler) as server, connect(url_of(server)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1011
    assert "not even a coroutine" in caplog.text


async def test_handler_stopped_by_connection_closed_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        finally:
            stopped.set()

    caplog.set_level(logging.ERROR, logger="openline.server")
    async with run_server(handler) as server:
        async with connect(url_of(server)):
            pass
        await asyncio.wait_for(stopped.wait(), TIMEOUT)
        while server._tasks:
            await asyncio.sleep(MS)
    assert "connection handler failed" not in caplog.text


async def test_open_connection_rebuilds_its_response_on_access() -> None:
    seen: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        assert ws._response_head is None  # not kept while the connection is open
        seen.set_result(ws.response)
        await ws.recv()

    async with (
        run_server(handler, compression=None, subprotocols=["chat"]) as server,
        connect(url_of(server), subprotocols=["chat"]) as ws,
    ):
        response = await asyncio.wait_for(seen, TIMEOUT)
        assert response is not None
        assert response == ws.response  # what the client received


async def test_response_with_extensions_is_kept() -> None:
    seen: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        seen.set_result(ws.response)
        await ws.recv()

    async with run_server(handler) as server, connect(url_of(server)) as ws:
        response = await asyncio.wait_for(seen, TIMEOUT)
        assert response is not None
        assert "permessage-deflate" in response.headers["Sec-WebSocket-Extensions"]
        assert response == ws.response
