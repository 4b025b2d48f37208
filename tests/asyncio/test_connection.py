"""Messages, pings, flow control and closing, between openline's client and server."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openline.asyncio.client import connect
from openline.asyncio.server import ServerConnection
from openline.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from openline.protocol.connection import Side, State
from openline.protocol.events import Close, Ping, TextMessage
from openline.protocol.frames import Frame, Opcode, serialize_frame
from openline.protocol.handshake import ClientHandshake

from .helpers import (
    MS,
    TIMEOUT,
    RawPeer,
    raw_client,
    raw_server,
    run_server,
    sent_close,
    url_of,
)

# --- messages -------------------------------------------------------------------------


async def test_client_receives_echoed_text_and_binary() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        await ws.send("café")
        assert await ws.recv() == "café"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        await ws.send(bytearray(b"array"))
        assert await ws.recv() == b"array"
        await ws.send(memoryview(b"view"))
        assert await ws.recv() == b"view"


async def test_client_sends_fragmented_message_from_iterable() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        await ws.send(["fra", "gmen", "ted"])
        assert await ws.recv() == "fragmented"
        await ws.send([b"a", bytearray(b"b"), memoryview(b"c")])
        assert await ws.recv() == b"abc"


async def test_client_sends_fragmented_message_from_async_iterable() -> None:
    async def chunks() -> AsyncIterator[str]:
        for chunk in ("as", "ync"):
            await asyncio.sleep(0)
            yield chunk

    async with run_server() as server, connect(url_of(server)) as ws:
        await ws.send(chunks())
        assert await ws.recv() == "async"


async def test_empty_iterable_sends_nothing() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        await ws.send([])
        await ws.send("after")
        assert await ws.recv() == "after"


async def test_plain_send_waits_for_fragmented_message_in_progress() -> None:
    release = asyncio.Event()

    async def chunks() -> AsyncIterator[str]:
        yield "first "
        await release.wait()
        yield "second"

    async with run_server() as server, connect(url_of(server)) as ws:
        fragmented = asyncio.create_task(ws.send(chunks()))
        await asyncio.sleep(0)
        plain = asyncio.create_task(ws.send("plain"))
        await asyncio.sleep(0)
        assert not plain.done()
        release.set()
        await asyncio.wait_for(asyncio.gather(fragmented, plain), TIMEOUT)
        assert await ws.recv() == "first second"
        assert await ws.recv() == "plain"


async def test_fragments_of_mixed_types_raise_type_error_and_fail_connection() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        with pytest.raises(TypeError, match="all fragments"):
            await ws.send(["text", b"bytes"])
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert sent_close(info.value).code == 1011


@pytest.mark.parametrize("message", [42, {"a": "b"}, [1, 2]])
async def test_send_rejects_unsupported_types(message: object) -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        with pytest.raises(TypeError):
            await ws.send(message)  # type: ignore[arg-type]
        await ws.send("still open")
        assert await ws.recv() == "still open"


async def test_16_mib_message_round_trips_when_max_size_allows() -> None:
    message = os.urandom(16 * 2**20)
    async with (
        run_server(max_size=2**25, compression=None) as server,
        connect(url_of(server), max_size=2**25, compression=None) as ws,
    ):
        await ws.send(message)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message


async def test_message_over_max_size_closes_with_1009() -> None:
    async with run_server(max_size=1024) as server, connect(url_of(server)) as ws:
        await ws.send(b"x" * 1024)
        assert await ws.recv() == b"x" * 1024
        await ws.send(b"x" * 1025)
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert info.value.code == 1009
        assert ws.close_code == 1009


async def test_messages_received_before_close_are_delivered() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one")
        await ws.send("two")

    async with run_server(handler) as server, connect(url_of(server)) as ws:
        await ws.wait_closed()
        assert [message async for message in ws] == ["one", "two"]


async def test_concurrent_recv_raises_concurrency_error() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        first = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(ConcurrencyError):
            await ws.recv()
        await ws.send("done")
        assert await asyncio.wait_for(first, TIMEOUT) == "done"


async def test_cancelled_recv_loses_no_message() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        for _ in range(3):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 5 * MS)
        await ws.send("kept")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "kept"


# --- pings ----------------------------------------------------------------------------


async def test_ping_returns_latency() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        waiter = await ws.ping()
        latency = await asyncio.wait_for(waiter, TIMEOUT)
        assert 0 < latency < TIMEOUT
        assert ws.latency == latency
        assert await asyncio.wait_for(await ws.ping("custom"), TIMEOUT) > 0


async def test_pong_answers_every_earlier_ping() -> None:
    async with raw_server() as (uri, peers), connect(uri, ping_interval=None) as ws:
        peer = await peers.get()
        first, second = await ws.ping(b"1"), await ws.ping(b"2")
        with pytest.raises(ConcurrencyError):
            await ws.ping(b"2")
        pings: list[bytes] = []
        while len(pings) < 2:
            events = await peer.receive()
            assert events is not None
            pings += [event.data for event in events if isinstance(event, Ping)]
        assert pings == [b"1", b"2"]
        peer.send_frame(Opcode.PONG, b"2")
        await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)
        assert first.result() >= second.result() > 0
        await peer.close()


async def test_pending_ping_fails_when_connection_closes() -> None:
    async with raw_server() as (uri, peers):
        ws = await connect(uri, ping_interval=None)
        peer = await peers.get()
        waiter = await ws.ping()
        await peer.close()
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(waiter, TIMEOUT)


async def test_unsolicited_pong_is_sent_and_ignored() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        await ws.pong(b"heartbeat")
        await ws.send("after")
        assert await ws.recv() == "after"


# --- keepalive ------------------------------------------------------------------------


async def test_keepalive_keeps_an_idle_connection_open() -> None:
    settings: dict[str, Any] = {"ping_interval": 10 * MS, "ping_timeout": 50 * MS}
    async with run_server(**settings) as server, connect(url_of(server), **settings) as ws:
        await asyncio.sleep(100 * MS)  # ten keepalive rounds
        assert ws.state is State.OPEN
        assert ws.latency > 0


async def test_server_fails_silent_client_with_1011_after_keepalive_timeout() -> None:
    closed: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            closed.set_result(exc)

    settings: dict[str, Any] = {
        "ping_interval": 10 * MS,
        "ping_timeout": 20 * MS,
        "close_timeout": 20 * MS,
    }
    async with run_server(handler, **settings) as server:
        peer = await raw_client(server)  # never reads, never answers
        exc = await asyncio.wait_for(closed, TIMEOUT)
        assert isinstance(exc, ConnectionClosedError)
        assert (sent_close(exc).code, sent_close(exc).reason) == (1011, "keepalive ping timeout")
        await peer.close()


async def test_client_fails_silent_server_with_1011_after_keepalive_timeout() -> None:
    async with raw_server() as (uri, peers):
        ws = await connect(uri, ping_interval=10 * MS, ping_timeout=20 * MS, close_timeout=20 * MS)
        peer = await peers.get()
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert sent_close(info.value).code == 1011
        # The silent server never closes TCP: the client aborts after close_timeout.
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        await peer.close()


# --- flow control ---------------------------------------------------------------------


async def test_send_waits_when_client_does_not_read() -> None:
    write_limit = 65536
    result: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        chunk = os.urandom(65536)
        for sent in range(1024):  # 64 MiB: more than any socket buffer
            try:
                await asyncio.wait_for(ws.send(chunk), 100 * MS)
            except asyncio.TimeoutError:
                result.set_result((sent, ws._transport.get_write_buffer_size()))
                return
        result.set_result((1024, ws._transport.get_write_buffer_size()))

    async with run_server(handler, write_limit=write_limit, compression=None) as server:
        peer = await raw_client(server)  # never reads
        sent, buffered = await asyncio.wait_for(result, TIMEOUT)
        assert sent < 1024
        assert buffered <= write_limit + 65536 + 16  # the mark plus the last frame
        await peer.close()


async def test_client_pauses_reading_above_max_queue() -> None:
    async def handler(ws: ServerConnection) -> None:
        for index in range(100):
            await ws.send(str(index))
        await ws.recv()

    async with run_server(handler) as server, connect(url_of(server), max_queue=4) as ws:
        first = await ws.recv()
        transport = ws._transport
        while transport.is_reading():
            await asyncio.sleep(MS)
        assert 4 <= len(ws._messages) < 100
        received = [first] + [await ws.recv() for _ in range(99)]
        assert received == [str(index) for index in range(100)]
        assert transport.is_reading()


# --- closing --------------------------------------------------------------------------


async def test_client_initiated_close_is_ok_on_both_ends() -> None:
    closed: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            closed.set_result(exc)

    async with run_server(handler) as server:
        ws = await connect(url_of(server))
        await ws.close(1000, "bye")
        assert ws.state is State.CLOSED
        assert (ws.close_code, ws.close_reason) == (1000, "")
        exc = await asyncio.wait_for(closed, TIMEOUT)
        assert isinstance(exc, ConnectionClosedOK)
        assert (exc.code, exc.reason, exc.rcvd_then_sent) == (1000, "bye", True)
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.rcvd_then_sent is False


async def test_server_initiated_close_is_ok_on_both_ends() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1001, "restarting")
        assert ws.close_code == 1001

    async with run_server(handler) as server, connect(url_of(server)) as ws:
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert (info.value.code, info.value.reason) == (1001, "restarting")
        await ws.wait_closed()
        assert ws.close_code == 1001


async def test_server_closes_tcp_first_after_client_close() -> None:
    async with run_server() as server:
        peer = await raw_client(server)
        peer.send_close(1000)
        close = await peer.receive_until(Close)
        assert close.code == 1000
        await peer.receive_eof()  # the server closed TCP while we kept ours open
        await peer.close()


async def test_server_closes_tcp_first_after_handler_returns() -> None:
    async def handler(ws: ServerConnection) -> None:
        pass

    async with run_server(handler) as server:
        peer = await raw_client(server)
        close = await peer.receive_until(Close)
        assert close.code == 1000
        peer.send_close(1000)
        await peer.receive_eof()
        await peer.close()


async def test_close_aborts_after_close_timeout_when_peer_ignores_it() -> None:
    async with raw_server() as (uri, peers):
        ws = await connect(uri, close_timeout=20 * MS)
        peer = await peers.get()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(ws.close(), TIMEOUT)
        assert loop.time() - start >= 20 * MS * 0.9
        assert ws.close_code == 1006
        await peer.close()


async def test_send_and_ping_after_close_raise_connection_closed() -> None:
    async with run_server() as server:
        ws = await connect(url_of(server))
        await ws.close()
        with pytest.raises(ConnectionClosedOK):
            await ws.send("late")
        with pytest.raises(ConnectionClosedOK):
            await ws.send(["late"])
        with pytest.raises(ConnectionClosedOK):
            await ws.ping()
        with pytest.raises(ConnectionClosedOK):
            await ws.pong()
        await ws.close()  # closing again does nothing


async def test_connection_lost_without_close_frame_is_an_error() -> None:
    async with raw_server() as (uri, peers):
        ws = await connect(uri)
        peer = await peers.get()
        peer.writer.transport.abort()
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1006
        assert ws.close_code == 1006
        assert ws.close_reason == ""


async def test_protocol_error_from_peer_closes_with_1002() -> None:
    async with raw_server() as (uri, peers):
        ws = await connect(uri)
        peer = await peers.get()
        peer.send_frame(Opcode.CONT, b"no message to continue")
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert sent_close(info.value).code == 1002
        assert info.value.__cause__ is not None
        close = await peer.receive_until(Close)
        assert close.code == 1002
        await peer.close()  # the server closes TCP; the client waits for that
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


# --- attributes -----------------------------------------------------------------------


async def test_connection_attributes() -> None:
    seen: dict[str, object] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.update(
            path=ws.request.path,
            remote=ws.remote_address,
            local=ws.local_address,
            id=ws.id,
            same_id=ws.id == ws.id,
        )
        await ws.send("ready")
        await ws.recv()

    async with run_server(handler) as server, connect(url_of(server, "/room?x=1")) as ws:
        assert await ws.recv() == "ready"
        assert seen["path"] == "/room?x=1"
        assert seen["remote"] == ws.local_address
        assert seen["local"] == ws.remote_address
        assert seen["same_id"]
        assert seen["id"] != ws.id
        assert ws.state is State.OPEN
        assert ws.close_code is None and ws.close_reason is None
        assert ws.response is not None and ws.response.status == 101
        await ws.send("done")


# --- less travelled paths -------------------------------------------------------------


async def test_debug_logging_covers_a_whole_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="openline")  # before serve(): the level is cached
    async with run_server() as server, connect(url_of(server)) as ws:
        await ws.send("logged")
        assert await ws.recv() == "logged"
    assert "connection closed: sent 1000 (OK); then received 1000 (OK)" in caplog.text
    assert "connection closed: received 1000 (OK); then sent 1000 (OK)" in caplog.text


async def test_send_waiting_for_drain_raises_when_connection_is_lost() -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
    blocked = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        chunk = os.urandom(65536)
        try:
            while True:
                sending = asyncio.create_task(ws.send(chunk))
                done, _ = await asyncio.wait([sending], timeout=50 * MS)
                if not done:
                    blocked.set()
                await sending
        except ConnectionClosed as exc:
            outcome.set_result(exc)

    async with run_server(handler, compression=None) as server:
        peer = await raw_client(server)  # never reads
        await asyncio.wait_for(blocked.wait(), TIMEOUT)
        peer.writer.transport.abort()
        exc = await asyncio.wait_for(outcome, TIMEOUT)
        assert isinstance(exc, ConnectionClosedError)


async def test_send_after_own_close_waits_for_the_closing_handshake() -> None:
    async with run_server() as server:
        ws = await connect(url_of(server))
        closing = asyncio.create_task(ws.close())
        await asyncio.sleep(0)
        assert ws.state is State.CLOSING
        with pytest.raises(ConnectionClosedOK):  # not Error: it waited for the answer
            await ws.send("too late")
        await closing


async def test_keepalive_without_ping_timeout_keeps_one_ping_in_flight() -> None:
    async with raw_server() as (uri, peers):
        ws = await connect(uri, ping_interval=5 * MS, ping_timeout=None)
        peer = await peers.get()
        pings = 0
        while pings < 4:
            events = await peer.receive()
            assert events is not None
            pings += sum(isinstance(event, Ping) for event in events)
        assert ws.state is State.OPEN
        assert ws._pings is not None and len(ws._pings) <= 1
        await peer.close()
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_frames_pipelined_after_the_upgrade_request_are_received() -> None:
    async with run_server() as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        handshake = ClientHandshake("127.0.0.1", 80, "/", secure=False)
        frame = serialize_frame(Frame(Opcode.TEXT, b"early"), mask=True)
        request = handshake.build_request().serialize()
        writer.write(request[:10])
        await asyncio.sleep(MS)
        writer.write(request[10:] + frame)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        peer = RawPeer(reader, writer, Side.CLIENT)
        message = await peer.receive_until(TextMessage)
        assert message.data == "early"
        await peer.close()


# --- protocol violations ----------------------------------------------------------------


async def test_messages_before_a_violation_are_answered_before_the_close() -> None:
    async with run_server() as server:
        peer = await raw_client(server)
        text = serialize_frame(Frame(Opcode.TEXT, b"first"), mask=True)
        bad = serialize_frame(Frame(Opcode.TEXT, b"bad", rsv2=True), mask=True)
        peer.writer.write(text + bad)  # one read on the server: message, then violation
        events: list[object] = []
        while not any(isinstance(event, Close) for event in events):
            received = await peer.receive()
            assert received is not None
            events += received
        assert events == [TextMessage("first"), Close(1002, "reserved bits must be 0")]
        await peer.receive_eof()
        await peer.close()


async def test_violation_fails_after_close_timeout_when_the_app_does_not_read() -> None:
    async def handler(ws: ServerConnection) -> None:
        await asyncio.sleep(TIMEOUT)  # never reads

    async with run_server(handler, close_timeout=20 * MS) as server:
        peer = await raw_client(server)
        peer.send_frame(Opcode.CONT, b"nothing to continue")
        close = await peer.receive_until(Close)
        assert close.code == 1002
        await peer.close()


# --- one keepalive timer for many connections ---------------------------------------------


async def test_connections_with_the_same_keepalive_share_one_timer() -> None:
    from openline.asyncio import keepalive as adapter

    settings: dict[str, Any] = {"ping_interval": 10 * MS, "ping_timeout": 50 * MS}
    loop = asyncio.get_running_loop()
    async with run_server(**settings) as server:
        clients = [await connect(url_of(server), **settings) for _ in range(3)]
        registry = adapter._KEEPALIVES[loop]
        (keepalive,) = registry.values()  # clients and server ends alike
        assert len(keepalive._due) == 6
        await asyncio.sleep(60 * MS)  # several pings answered
        assert all(ws.latency > 0 for ws in clients)
        assert all(ws._timer is None for ws in clients)  # no handle per connection
        for ws in clients:
            await ws.close()
        while server.connections:
            await asyncio.sleep(MS)
        assert not keepalive._due
        while keepalive._handle is not None:  # the next sweep finds nobody and stops
            await asyncio.sleep(MS)
        assert not adapter._KEEPALIVES[loop]


async def test_async_for_needs_no_async_generator() -> None:
    async with run_server() as server, connect(url_of(server)) as ws:
        assert aiter(ws) is ws
        await ws.send("one")
        async for message in ws:
            assert message == "one"
            break
        await ws.send("two")
        assert await anext(ws) == "two"


# --- wait_closed ----------------------------------------------------------------------


async def test_wait_closed_wakes_every_waiter_and_a_cancelled_wait_is_forgotten() -> None:
    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with run_server(handler) as server:
        ws = await connect(url_of(server))
        first, second = ws.wait_closed(), ws.wait_closed()
        # Given up with a timeout: the others keep waiting, and it isn't kept.
        for _ in range(3):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), MS)
        third = ws.wait_closed()
        assert isinstance(ws._closed_waiter, list) and len(ws._closed_waiter) == 3
        await ws.close()
        await asyncio.wait_for(asyncio.gather(first, second, third), TIMEOUT)
        assert ws._closed_waiter is None
        # After the end, it returns at once.
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def test_a_single_wait_closed_given_up_is_replaced_by_the_next() -> None:
    async def handler(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with run_server(handler) as server:
        ws = await connect(url_of(server))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), MS)
        waiting = ws.wait_closed()
        assert ws._closed_waiter is waiting
        await ws.close()
        await asyncio.wait_for(waiting, TIMEOUT)
