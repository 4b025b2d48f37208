"""The chaos proxy itself: it forwards faithfully, and breaks the line exactly as told."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openline import connect, serve
from openline.asyncio.server import ServerConnection
from openline.exceptions import ConnectionClosed

from ..timing import MS
from .proxy import ChaosProxy, CutMode

TIMEOUT = 5000 * MS

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Target:
    """A plain TCP server that hands each accepted stream to the test."""

    def __init__(self) -> None:
        self.accepted: asyncio.Queue[Stream] = asyncio.Queue()
        self.streams: list[Stream] = []
        self.server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.streams.append((reader, writer))
        await self.accepted.put((reader, writer))

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def next(self) -> Stream:
        return await asyncio.wait_for(self.accepted.get(), TIMEOUT)

    async def close(self) -> None:
        for _, writer in self.streams:
            writer.transport.abort()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def chain(**kwargs: Any) -> AsyncIterator[tuple[Target, ChaosProxy]]:
    """A target server behind a proxy."""
    target = Target()
    port = await target.start()
    try:
        async with ChaosProxy("127.0.0.1", port, **kwargs) as proxy:
            yield target, proxy
    finally:
        await target.close()


@contextlib.asynccontextmanager
async def dial(proxy: ChaosProxy) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


async def read(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), TIMEOUT)


async def silent(reader: asyncio.StreamReader, duration: float = 60 * MS) -> None:
    """Check that nothing, not even EOF, arrives for ``duration`` seconds."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), duration)


# --- forwarding -------------------------------------------------------------------------


async def test_proxy_forwards_both_ways() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, writer):
        writer.write(b"ping")
        far_reader, far_writer = await target.next()
        assert await read(far_reader, 4) == b"ping"
        far_writer.write(b"pong" * 10000)
        assert await read(reader, 40000) == b"pong" * 10000
        assert proxy.stats.bytes_up == 4
        assert proxy.stats.bytes_down == 40000
        assert proxy.stats.accepted == proxy.stats.connected == 1


async def test_proxy_passes_half_close_on() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, writer):
        writer.write(b"last words")
        writer.write_eof()
        far_reader, far_writer = await target.next()
        assert await asyncio.wait_for(far_reader.read(), TIMEOUT) == b"last words"
        far_writer.write(b"reply after your FIN")
        assert await read(reader, 20) == b"reply after your FIN"
        far_writer.close()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        await asyncio.sleep(10 * MS)
        assert proxy.all_links == []


async def test_wait_connected_returns_the_link() -> None:
    async with chain() as (_, proxy), dial(proxy):
        link = await asyncio.wait_for(proxy.wait_connected(1), TIMEOUT)
        assert link.number == 1
        assert proxy.links == [link]
        assert await proxy.wait_connected(1) is link


# --- cuts -------------------------------------------------------------------------------


async def test_cut_fin_closes_both_sides_cleanly() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, _writer):
        await proxy.wait_connected(1)
        far_reader, _ = await target.next()
        assert proxy.cut("fin") == 1
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        assert await asyncio.wait_for(far_reader.read(), TIMEOUT) == b""
        assert proxy.stats.cuts == {"fin": 1, "rst": 0, "blackhole": 0}


async def test_cut_rst_resets_both_sides() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, _writer):
        await proxy.wait_connected(1)
        far_reader, _ = await target.next()
        assert proxy.cut("rst") == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), TIMEOUT)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(far_reader.read(), TIMEOUT)


async def test_cut_blackhole_drops_everything_and_tells_no_one() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, writer):
        await proxy.wait_connected(1)
        far_reader, far_writer = await target.next()
        assert proxy.cut("blackhole") == 1
        writer.write(b"into the tunnel")
        far_writer.write(b"also lost")
        await silent(reader)
        await silent(far_reader)
        assert proxy.stats.dropped == len(b"into the tunnel") + len(b"also lost")
        assert proxy.links == []  # no longer open for traffic...
        assert len(proxy.all_links) == 1  # ...but both sockets still are
        # The client gives up; the target still hears nothing.
        writer.close()
        await silent(far_reader)
        # Then the target gives up too, and the link is gone.
        far_writer.close()
        await asyncio.sleep(10 * MS)
        assert proxy.all_links == []


async def test_new_connections_work_after_a_cut() -> None:
    async with chain() as (target, proxy):
        modes: tuple[CutMode, ...] = ("fin", "rst", "blackhole")
        for number, mode in enumerate(modes, start=1):
            async with dial(proxy) as (_reader, writer):
                await proxy.wait_connected(number)
                far_reader, _far_writer = await target.next()
                writer.write(b"hi")
                assert await read(far_reader, 2) == b"hi"
                assert proxy.cut(mode) == 1
        assert proxy.stats.cuts == {"fin": 1, "rst": 1, "blackhole": 1}


async def test_cut_rejects_an_unknown_mode() -> None:
    async with chain() as (_, proxy):
        with pytest.raises(ValueError, match="mode"):
            proxy.cut("unplug")  # type: ignore[arg-type]  # the point of the test


async def test_a_reset_from_one_side_is_passed_on_as_a_reset() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, _):
        await proxy.wait_connected(1)
        _, far_writer = await target.next()
        far_writer.transport.abort()  # SO_LINGER isn't set: this is a FIN
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


# --- refusing ---------------------------------------------------------------------------


async def test_refuse_resets_new_connections() -> None:
    async with chain() as (_, proxy):
        proxy.refuse = True
        async with dial(proxy) as (reader, _):
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), TIMEOUT)
        assert proxy.stats.refused == 1
        assert proxy.stats.connected == 0


async def test_unreachable_target_resets_the_client() -> None:
    target = Target()
    port = await target.start()
    await target.close()  # nothing listens there any more
    async with ChaosProxy("127.0.0.1", port) as proxy, dial(proxy) as (reader, _):
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), TIMEOUT)
        assert proxy.stats.refused == 1


async def test_max_links_bounds_the_connections_served() -> None:
    async with chain(max_links=1) as (_, proxy), dial(proxy):
        await proxy.wait_connected(1)
        async with dial(proxy) as (reader, _):
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), TIMEOUT)


# --- pause and latency ------------------------------------------------------------------


async def test_pause_holds_bytes_back_until_resume() -> None:
    async with chain() as (target, proxy), dial(proxy) as (reader, writer):
        await proxy.wait_connected(1)
        far_reader, far_writer = await target.next()
        proxy.pause()
        for chunk in (b"one ", b"two ", b"three"):
            writer.write(chunk)
            await asyncio.sleep(MS)
        far_writer.write(b"down")
        await silent(far_reader)
        await silent(reader)
        proxy.resume()
        assert await read(far_reader, 13) == b"one two three"
        assert await read(reader, 4) == b"down"


async def test_pause_bounds_what_it_holds_and_pushes_back() -> None:
    async with chain(max_held=64 * 1024) as (target, proxy), dial(proxy) as (_reader, writer):
        await proxy.wait_connected(1)
        far_reader, _ = await target.next()
        proxy.pause()
        blob = os.urandom(16 * 1024 * 1024)  # more than the kernel buffers on loopback
        writer.write(blob)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), 200 * MS)
        link = proxy.all_links[0]
        assert link.client.reading_paused
        # At most one read (256 KiB in asyncio) beyond the mark.
        assert 64 * 1024 < link.up.held <= 64 * 1024 + 256 * 1024
        proxy.resume()
        assert await read(far_reader, len(blob)) == blob
        assert not link.client.reading_paused


async def test_latency_delays_each_way() -> None:
    async with chain(latency=30 * MS) as (target, proxy), dial(proxy) as (reader, writer):
        await proxy.wait_connected(1)
        far_reader, far_writer = await target.next()
        start = time.monotonic()
        writer.write(b"x")
        await read(far_reader, 1)
        far_writer.write(b"y")
        await read(reader, 1)
        assert time.monotonic() - start >= 60 * MS * 0.9


async def test_random_latency_keeps_the_order() -> None:
    async with chain(latency=(0.0, 5 * MS), seed=3) as (target, proxy), dial(proxy) as (_, w):
        await proxy.wait_connected(1)
        far_reader, _ = await target.next()
        chunks = [b"%05d" % n for n in range(300)]
        for chunk in chunks:
            w.write(chunk)
            await asyncio.sleep(0)
        assert await read(far_reader, 5 * 300) == b"".join(chunks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latency": -1.0}, "latency"),
        ({"latency": (2.0, 1.0)}, "latency"),
        ({"max_held": 0}, "max_held"),
    ],
)
def test_proxy_validates_its_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ChaosProxy("127.0.0.1", 1, **kwargs)


# --- with WebSocket endpoints -----------------------------------------------------------


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def test_websocket_keepalive_notices_a_blackhole_in_bounded_time() -> None:
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with ChaosProxy("127.0.0.1", port) as proxy:
            ws = await connect(
                proxy.url(), ping_interval=20 * MS, ping_timeout=40 * MS, close_timeout=20 * MS
            )
            await ws.send("before")
            assert await ws.recv() == "before"
            proxy.cut("blackhole")
            start = time.monotonic()
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            waited = time.monotonic() - start
            assert info.value.code == 1006
            # interval + timeout + close timeout, plus scheduling slack
            assert waited < 200 * MS
