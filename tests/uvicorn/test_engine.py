"""openline as uvicorn's WebSocket engine, against a real ``uvicorn.Server``.

The peers are openline's client, the ``websockets`` library and aiohttp.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
import websockets
from _pytest.logging import LogCaptureFixture
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect as websockets_connect

from openline.asyncio import connect
from openline.exceptions import ConnectionClosed, InvalidStatus

from .apps import Recorder, echo
from .conftest import TIMEOUT, run_uvicorn

pytestmark = pytest.mark.interop


@pytest.fixture
def uvicorn_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """uvicorn's error log (run_uvicorn leaves logging unconfigured, so it propagates)."""
    caplog.set_level(logging.ERROR, "uvicorn.error")
    return caplog


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_echo_text_and_binary_with_openline_client(http: str) -> None:
    async with run_uvicorn(echo, http=http) as running, connect(running.url + "/") as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\xff" * 1000)
        assert await ws.recv() == b"\x00\xff" * 1000
        # uvicorn's default headers, as with its own engines.
        response = ws.response
        assert response is not None
        assert response.headers["server"] == "uvicorn"
        assert "date" in response.headers
        assert response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")


async def test_echo_with_websockets_and_aiohttp() -> None:
    async with run_uvicorn(echo, ws_per_message_deflate=False) as running:
        async with websockets_connect(running.url + "/") as ws:
            await ws.send("text")
            assert await ws.recv() == "text"
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
        async with aiohttp.ClientSession() as session, session.ws_connect(running.url + "/") as ws:
            await ws.send_bytes(b"binary")
            assert await ws.receive_bytes() == b"binary"


async def test_scope_carries_the_request_and_root_path() -> None:
    app = Recorder()
    async with run_uvicorn(app, root_path="/api") as running:
        url = running.url + "/sub%20dir/subprotocol?q=1"
        headers = {"X-Custom": "Value"}
        async with connect(url, additional_headers=headers, subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
            assert ws.response is not None
            assert ws.response.headers["x-answer"] == "42"
    scope = app.scopes[0]
    assert scope["type"] == "websocket"
    assert scope["asgi"]["spec_version"] == "2.4"
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/sub dir/subprotocol"
    assert scope["raw_path"] == b"/api/sub%20dir/subprotocol"
    assert scope["query_string"] == b"q=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", running.port)
    assert (b"x-custom", b"Value") in scope["headers"]
    assert "websocket.http.response" in scope["extensions"]
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


async def test_close_before_accept_is_a_403() -> None:
    async with run_uvicorn(Recorder()) as running:
        with pytest.raises(InvalidStatus) as info:
            await connect(running.url + "/reject")
    assert info.value.status == 403


async def test_http_response_denial_reaches_the_client() -> None:
    async with run_uvicorn(Recorder()) as running:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets_connect(running.url + "/deny")
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["x-reason"] == "token"
    assert response.headers["content-type"] == "application/json"
    assert response.body == b'{"error":"expired"}'


async def test_server_closes_with_code_and_reason() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running, connect(running.url + "/close") as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye now"}]


async def test_client_close_code_and_reason_reach_the_app() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        async with websockets_connect(running.url + "/wait") as ws:
            await ws.close(4100, "client leaving")
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    assert app.disconnects == [
        {"type": "websocket.disconnect", "code": 4100, "reason": "client leaving"}
    ]


async def test_message_over_max_size_closes_with_1009() -> None:
    async with run_uvicorn(echo, ws_max_size=1000) as running, connect(running.url + "/") as ws:
        await ws.send(b"x" * 1000)
        assert await ws.recv() == b"x" * 1000
        await ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_peer_that_stops_answering_pings_is_closed() -> None:
    app = Recorder()
    options = {"ws_ping_interval": 0.05, "ws_ping_timeout": 0.05}
    async with run_uvicorn(app, **options) as running:
        async with aiohttp.ClientSession() as session:
            # autoping=False: aiohttp never answers the server's pings.
            ws = await session.ws_connect(running.url + "/wait", autoping=False, heartbeat=None)
            message = await ws.receive(timeout=TIMEOUT)
            assert message.type == aiohttp.WSMsgType.PING
            message = await ws.receive(timeout=TIMEOUT)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == 1011
            await ws.close()
        await asyncio.wait_for(app.done.wait(), TIMEOUT)


async def test_peer_that_answers_pings_stays_open() -> None:
    options = {"ws_ping_interval": 0.02, "ws_ping_timeout": TIMEOUT / 2}
    async with run_uvicorn(echo, **options) as running, connect(running.url + "/") as ws:
        # The client answers pings by itself; wait for a few of them to pass.
        for _ in range(3):
            ping = await ws.ping()
            await asyncio.wait_for(ping, TIMEOUT)
        await ws.send("still here")
        assert await ws.recv() == "still here"


async def test_should_exit_closes_open_connections_with_1012() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        ws = await connect(running.url + "/wait")
        await asyncio.wait_for(app.accepted.wait(), TIMEOUT)
        await running.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]


async def test_exception_before_accept_is_a_500(uvicorn_log: LogCaptureFixture) -> None:
    async with run_uvicorn(Recorder()) as running:
        with pytest.raises(InvalidStatus) as info:
            await connect(running.url + "/raise_before")
    assert info.value.status == 500
    assert "Exception in ASGI application" in uvicorn_log.text


async def test_exception_after_accept_closes_with_1011(uvicorn_log: LogCaptureFixture) -> None:
    async with run_uvicorn(Recorder()) as running, connect(running.url + "/raise_after") as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    assert "Exception in ASGI application" in uvicorn_log.text


async def test_return_before_accept_is_a_500(uvicorn_log: LogCaptureFixture) -> None:
    async with run_uvicorn(Recorder()) as running:
        with pytest.raises(InvalidStatus) as info:
            await connect(running.url + "/return_before")
    assert info.value.status == 500
    assert "returned without completing handshake" in uvicorn_log.text


async def test_return_after_accept_closes_with_1000() -> None:
    async with run_uvicorn(Recorder()) as running, connect(running.url + "/return_after") as ws:
        assert await ws.recv() == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


async def test_claimed_connection_echoes_on_openline() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        async with connect(running.url + "/claim?x=1", subprotocols=["chat.v1"]) as ws:
            for message in ["one", b"two", "three" * 1000]:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.close(1000, "done")
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    assert app.errors == []
    assert app.disconnects == [{"code": 1000, "reason": "done"}]


async def test_claimed_connection_is_closed_with_1012_on_shutdown() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        ws = await connect(running.url + "/claim?x=1", subprotocols=["chat.v1"])
        await ws.send("ready?")
        assert await ws.recv() == "ready?"
        await running.stop()
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1012


async def test_invalid_upgrade_is_refused_before_the_app_runs() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(
            b"GET /wait HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        status = await asyncio.wait_for(reader.readline(), TIMEOUT)
        writer.close()
    assert status.startswith(b"HTTP/1.1 400 ")
    assert app.scopes == []


async def test_server_header_settings_apply_to_the_upgrade() -> None:
    options = {"server_header": False, "date_header": False, "headers": [("x-node", "n1")]}
    async with run_uvicorn(echo, **options) as running, connect(running.url + "/") as ws:
        response = ws.response
    assert response is not None
    assert "server" not in response.headers
    assert "date" not in response.headers
    assert response.headers["x-node"] == "n1"


async def test_misuse_of_asgi_messages_raises_runtime_error() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running, connect(running.url + "/misuse") as ws:
        assert await ws.recv() == "still fine"
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1000
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    assert app.errors == []
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


async def test_misuse_of_a_denial_raises_runtime_error() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets_connect(running.url + "/deny_misuse")
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    response = info.value.response
    assert response.status_code == 418
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == b"short and stout"
    assert app.errors == []


async def test_client_leaving_before_accept() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        _, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(
            b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await asyncio.wait_for(app.started.wait(), TIMEOUT)
        writer.close()
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1006}]
    assert app.refused == [ClientDisconnected]


async def test_shutdown_before_accept_answers_500() -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        attempt = asyncio.ensure_future(connect(running.url + "/hold"))
        await asyncio.wait_for(app.started.wait(), TIMEOUT)
        await running.stop()
        with pytest.raises(InvalidStatus) as info:
            await attempt
    assert info.value.status == 500
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1006}]


async def test_send_after_the_client_left_raises_client_disconnected(
    uvicorn_log: LogCaptureFixture,
) -> None:
    app = Recorder()
    async with run_uvicorn(app) as running:
        async with connect(running.url + "/send_after_disconnect"):
            pass
        await asyncio.wait_for(app.done.wait(), TIMEOUT)
    assert app.refused == [ClientDisconnected]
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]
    # Not an application error: nothing is logged.
    assert "Exception in ASGI application" not in uvicorn_log.text
