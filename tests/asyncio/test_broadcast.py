"""broadcast(): one encoding for many connections, whatever their compression."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openline.asyncio.broadcast import Broadcast, broadcast, buffered_amount
from openline.asyncio.client import connect
from openline.asyncio.server import ServerConnection
from openline.exceptions import ConnectionClosed
from openline.protocol import frames

from .helpers import TIMEOUT, run_server, url_of


class Joined(list[ServerConnection]):
    """The connections that reached the handler, with an event for each arrival."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived = asyncio.Event()

    def append(self, ws: ServerConnection) -> None:
        super().append(ws)
        self._arrived.set()

    async def wait_for(self, count: int) -> None:
        async def arrivals() -> None:
            while len(self) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrivals(), TIMEOUT)


async def collect(joined: Joined, count: int) -> None:
    """Wait until ``count`` connections reached the handler."""
    await joined.wait_for(count)


async def test_broadcast_writes_one_frame_to_every_open_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    joined = Joined()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    serialized = 0
    serialize = frames.serialize_frame

    def counting(*args: object, **kwargs: object) -> bytes:
        nonlocal serialized
        serialized += 1
        return serialize(*args, **kwargs)  # type: ignore[arg-type]

    async with run_server(handler, compression=None) as server:
        clients = [await connect(url_of(server), compression=None) for _ in range(4)]
        await collect(joined, 4)
        monkeypatch.setattr("openline.asyncio.broadcast.serialize_frame", counting)
        assert broadcast(joined, "hello") == 4
        assert broadcast(joined, b"\x00\x01") == 4
        assert broadcast(joined, "caf\xe9".encode(), text=True) == 4
        assert serialized == 3
        for client in clients:
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello"
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"\x00\x01"
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "café"
            await client.close()


async def test_broadcast_skips_closed_connections() -> None:
    joined = Joined()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    async with run_server(handler) as server:
        gone = await connect(url_of(server))
        await collect(joined, 1)
        await gone.close()
        await joined[0].wait_closed()
        assert broadcast(joined, "anyone?") == 0
        assert buffered_amount(joined[0]) == 0
        with pytest.raises(ConnectionClosed):
            await Broadcast("anyone?").send(joined[0])


async def test_broadcast_goes_through_the_core_with_context_takeover() -> None:
    joined = Joined()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    async with run_server(handler, compression="deflate") as server:
        client = await connect(url_of(server), compression="deflate")
        await collect(joined, 1)
        assert joined[0]._core is not None and joined[0]._core.extensions
        for n in range(3):
            assert broadcast(joined, f"message {n} " * 20) == 1
        for n in range(3):
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == f"message {n} " * 20
        await client.close()


async def test_broadcast_waits_for_nothing_but_send_respects_a_fragmented_message() -> None:
    joined = Joined()
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    async def fragments() -> AsyncIterator[str]:
        yield "frag"
        started.set()  # send() asks for the next fragment: the first one is out
        await release.wait()
        yield "ment"

    async with run_server(handler) as server:
        client = await connect(url_of(server))
        await collect(joined, 1)
        ws = joined[0]
        sending = asyncio.create_task(ws.send(fragments()))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        # In the middle of a fragmented message: broadcast skips it, send() queues.
        assert broadcast([ws], "skipped") == 0
        queued = asyncio.create_task(Broadcast("after").send(ws))
        await asyncio.sleep(0)  # one loop turn: the send starts and queues behind the fragments
        assert not queued.done()
        release.set()
        await sending
        await queued
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "fragment"
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "after"
        await client.close()


async def test_buffered_amount_grows_when_the_peer_stops_reading() -> None:
    joined = Joined()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    async with run_server(handler, compression=None) as server:
        client = await connect(url_of(server), compression=None)
        await collect(joined, 1)
        client._transport.pause_reading()
        prepared = Broadcast("x" * 65536)
        while buffered_amount(joined[0]) == 0:
            assert prepared.write(joined[0])
        assert buffered_amount(joined[0]) > 0
        client._transport.abort()


async def test_write_shared_writes_a_plain_frame_once_per_turn_and_reports_the_buffer() -> None:
    joined = Joined()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    async with run_server(handler, compression=None) as server:
        client = await connect(url_of(server), compression=None)
        await collect(joined, 1)
        ws = joined[0]
        first, second = Broadcast("one").frame, Broadcast("two").frame
        # Both corked in this turn: nothing is in the transport's buffer yet.
        assert ws.write_shared(first) == 0
        assert ws.write_shared(second) == 0
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "one"
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "two"
        # A frame past the write limit goes to the transport at once.
        client._transport.pause_reading()
        big = Broadcast("x" * 65536).frame
        while (buffered := ws.write_shared(big)) == 0:
            pass
        assert buffered == ws.buffered_amount > 0
        # The kernel's queue is full: written straight through, the buffer grows.
        assert ws.write_shared(first) == buffered + len(first)
        client._transport.abort()
        await ws.wait_closed()
        assert ws.write_shared(first) == -1


async def test_write_shared_leaves_compressed_and_fragmented_connections_to_the_caller() -> None:
    joined = Joined()
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        joined.append(ws)
        async for _ in ws:  # read, so that the client's close is answered
            pass

    async def fragments() -> AsyncIterator[str]:
        yield "frag"
        started.set()
        await release.wait()
        yield "ment"

    async with run_server(handler, compression="deflate") as server:
        deflated = await connect(url_of(server), compression="deflate")
        plain = await connect(url_of(server), compression=None)
        await collect(joined, 2)
        by_extensions = {bool(ws.extensions): ws for ws in joined}
        frame = Broadcast("shared").frame
        assert by_extensions[True].write_shared(frame) == -1
        ws = by_extensions[False]
        sending = asyncio.create_task(ws.send(fragments()))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        assert ws.write_shared(frame) == -1  # can't interleave with the fragments
        release.set()
        await sending
        assert ws.write_shared(frame) == 0
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "fragment"
        assert await asyncio.wait_for(plain.recv(), TIMEOUT) == "shared"
        await deflated.close()
        await plain.close()
