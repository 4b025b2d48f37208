"""A peer that pings without reading: bounded memory, paused reading, closed by keepalive.

The flooder is a raw TCP socket that completes the opening handshake, then
writes pre-built masked pings as fast as the kernel takes them and never reads
a byte. Kernel buffers are made small (the listening socket's ``SO_SNDBUF`` is
inherited by accepted sockets, the flooder's ``SO_RCVBUF`` is set before it
connects), so that the server's own write buffer fills within a few megabytes
of pings instead of after the kernel has swallowed tens of them. Pings carry
125 bytes, so that every pong is as large as a pong can be.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from openline.asyncio.client import connect
from openline.asyncio.connection import Connection
from openline.asyncio.server import Server, ServerConnection
from openline.exceptions import ConnectionClosed, ConnectionClosedError
from openline.hub import Hub
from openline.protocol.connection import _PONG_BURST, Side
from openline.protocol.connection import Connection as Core
from openline.protocol.events import Pong
from openline.protocol.frames import Opcode
from openline.protocol.handshake import accept_key

from .helpers import MS, TIMEOUT, port_of, raw_client, run_server, sent_close

PAYLOAD = 125
# A ping as a client sends it: FIN + opcode 9, mask bit + length, key, payload
# (masked with a zero key, so it reads as written).
MASKED_PING = bytes([0x89, 0x80 | PAYLOAD]) + b"\x00" * 4 + b"p" * PAYLOAD
# The same ping from a server: not masked.
PING = bytes([0x89, PAYLOAD]) + b"p" * PAYLOAD
# The largest pong frame we send, and how many one read can make us write.
PONG_SIZE = 2 + PAYLOAD
READ_ANSWERS = (_PONG_BURST + 1) * PONG_SIZE
# A small write limit fills quickly; the default behaves the same, only later.
WRITE_LIMIT = (16384, 4096)
# What may sit in the write buffer beyond the limit: one read's answers, a
# keepalive ping, and the headroom of a close frame.
SLACK = READ_ANSWERS + 1024
SMALL_BUFFER = 4096  # bytes, for SO_SNDBUF / SO_RCVBUF (Linux doubles it)
# The flood stops after this many frames or this long, whichever comes first.
MAX_FRAMES = 2_000_000
MAX_SECONDS = 20_000 * MS


@dataclass
class Probe:
    """What the flood did to one connection, sampled between sends."""

    connection: Connection
    max_buffered: int = 0
    paused_seen: bool = False
    samples: list[int] = field(default_factory=list)

    def sample(self) -> None:
        buffered = self.connection.buffered_amount
        self.max_buffered = max(self.max_buffered, buffered)
        self.paused_seen = self.paused_seen or self.connection.is_reading_paused
        self.samples.append(buffered)

    def report(self, label: str, frames: int) -> None:
        print(
            f"\n{label}: {frames} frames sent, write buffer at most {self.max_buffered} bytes "
            f"(limit {WRITE_LIMIT[0]} + slack {SLACK}), reading paused: "
            f"{self.connection.is_reading_paused}"
        )


class Flooder:
    """A raw WebSocket peer that sends pings as fast as the kernel takes them, never reading."""

    def __init__(self, sock: socket.socket, frame: bytes) -> None:
        self.sock = sock
        self.batch = frame * (65536 // len(frame))
        self.frame_size = len(frame)
        self.sent = 0  # bytes

    @property
    def frames(self) -> int:
        return self.sent // self.frame_size

    async def flood(self, probe: Probe, stop: Callable[[], bool], seconds: float) -> None:
        """Send pings until ``stop()``, ``MAX_FRAMES`` or ``seconds``; sample ``probe`` between."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(seconds, MAX_SECONDS)
        view = memoryview(self.batch)
        while self.frames < MAX_FRAMES and loop.time() < deadline and not stop():
            probe.sample()
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await asyncio.sleep(MS)  # the kernel is full: let the server run
                continue
            except OSError:
                return  # the server reset the connection
            self.sent += sent
            view = view[sent:] or memoryview(self.batch)
            await asyncio.sleep(0)
        probe.sample()

    def close(self) -> None:
        self.sock.close()


async def client_flooder(
    server: Server, path: str = "/", subprotocol: str | None = None
) -> Flooder:
    """Connect to ``server`` with a small receive buffer and complete the handshake."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port_of(server)))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port_of(server)}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return Flooder(sock, MASKED_PING)


def shrink_send_buffers(server: Server) -> None:
    """Make the connections ``server`` accepts from now on start with a small SO_SNDBUF."""
    for sock in server.sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)


def only_connection(server: Server) -> ServerConnection:
    (connection,) = server.connections
    return connection


async def park(ws: ServerConnection) -> None:
    """A handler that neither reads nor writes: the core still answers pings."""
    await ws.wait_closed()


def listen_echo(ws: ServerConnection) -> None:
    ws.listen(lambda connection, message: connection.send_nowait(message))


async def listening(ws: ServerConnection) -> None:
    """The low-level handler: answers from the data callback, no task per message."""
    listen_echo(ws)
    await ws.wait_closed()


async def flood_until_paused_then_more(flooder: Flooder, probe: Probe) -> None:
    """Flood until the server pauses reading, then keep trying for a while longer."""
    await flooder.flood(probe, lambda: probe.connection.is_reading_paused, MAX_SECONDS)
    assert probe.connection.is_reading_paused, f"not paused after {flooder.frames} pings"
    # The kernel takes what it can, then nothing more: the server reads no more.
    await flooder.flood(probe, lambda: False, 500 * MS)


def assert_bounded(probe: Probe) -> None:
    assert probe.paused_seen
    assert probe.connection.is_reading_paused
    assert probe.max_buffered <= WRITE_LIMIT[0] + SLACK, probe.max_buffered


# --- bounded memory, reading paused (keepalive off) -------------------------------------


async def test_echo_server_pauses_reading_under_a_ping_flood() -> None:
    async with run_server(park, ping_interval=None, write_limit=WRITE_LIMIT) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server)
        try:
            probe = Probe(only_connection(server))
            await flood_until_paused_then_more(flooder, probe)
            probe.report("echo server", flooder.frames)
            assert_bounded(probe)
            assert probe.connection.close_code is None  # still open: nothing closes it
        finally:
            flooder.close()


async def test_hub_pauses_reading_under_a_ping_flood() -> None:
    hub = Hub(ping_interval=None, ping_timeout=None)
    async with hub.serve("127.0.0.1", 0, write_limit=WRITE_LIMIT) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server, "/", "openline.v1")
        try:
            probe = Probe(only_connection(server))
            await flood_until_paused_then_more(flooder, probe)
            probe.report("hub", flooder.frames)
            assert_bounded(probe)
            assert probe.connection.close_code is None
        finally:
            flooder.close()
    await hub.close()


async def test_listen_server_pauses_reading_under_a_ping_flood() -> None:
    async with run_server(listening, ping_interval=None, write_limit=WRITE_LIMIT) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server)
        try:
            probe = Probe(only_connection(server))
            await flood_until_paused_then_more(flooder, probe)
            probe.report("listen() server", flooder.frames)
            assert_bounded(probe)
        finally:
            flooder.close()


async def test_listen_server_pauses_reading_under_a_message_flood() -> None:
    # send_nowait() never waits: without the pause, every echo would pile up.
    text = bytes([0x81, 0x80 | PAYLOAD]) + b"\x00" * 4 + b"t" * PAYLOAD
    async with run_server(listening, ping_interval=None, write_limit=WRITE_LIMIT) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server)
        flooder = Flooder(flooder.sock, text)
        try:
            probe = Probe(only_connection(server))
            await flood_until_paused_then_more(flooder, probe)
            probe.report("listen() server, text messages", flooder.frames)
            assert probe.connection.is_reading_paused
            # Echoes aren't coalesced: the bound is one read's answers, at most
            # the 256 KiB an event loop reads at once.
            assert probe.max_buffered <= WRITE_LIMIT[0] + 256 * 1024 + SLACK
        finally:
            flooder.close()


async def test_reading_resumes_and_pongs_arrive_once_the_peer_reads() -> None:
    async with run_server(park, ping_interval=None, write_limit=WRITE_LIMIT) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server)
        try:
            probe = Probe(only_connection(server))
            await flooder.flood(probe, lambda: probe.connection.is_reading_paused, MAX_SECONDS)
            assert probe.connection.is_reading_paused
            # Now read everything until the server is quiet: it drains, resumes
            # reading, reads the pings still in the kernel and answers them.
            received = await read_until_quiet(flooder.sock, probe.connection)
            resumed = not probe.connection.is_reading_paused
            assert resumed
        finally:
            flooder.close()
    reader = Core(Side.CLIENT, max_size=None)
    reader.receive_data(received)
    pongs = reader.events_received()
    print(f"\n{flooder.frames} pings sent, {len(pongs)} pongs read back")
    assert len(received) == len(pongs) * PONG_SIZE  # whole frames, nothing else
    assert 0 < len(pongs) < flooder.frames
    assert set(pongs) == {Pong(b"p" * PAYLOAD)}


async def read_until_quiet(sock: socket.socket, connection: Connection) -> bytes:
    """Read what the server sends until it is resumed, drained and silent for a while."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    deadline = loop.time() + TIMEOUT
    while loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 200 * MS)
        except asyncio.TimeoutError:
            if not connection.is_reading_paused and not connection.buffered_amount:
                return bytes(received)
            continue
        assert chunk, "the server closed the connection"
        received += chunk
    raise AssertionError("the server never resumed reading")


# --- closed by keepalive ----------------------------------------------------------------

INTERVAL = 300 * MS
CLOSE_TIMEOUT = 300 * MS
# ping_interval + ping_timeout + close_timeout, up to two keepalive ticks late,
# and a generous margin for a busy machine.
CLOSE_BOUND = 2 * INTERVAL + CLOSE_TIMEOUT + 2 * INTERVAL / 8 + 5000 * MS


async def flood_until_closed(flooder: Flooder, probe: Probe) -> float:
    """Flood until the server's connection is gone; return how long that took."""
    start = time.monotonic()
    lost = asyncio.ensure_future(probe.connection.wait_closed())
    try:
        await flooder.flood(probe, lost.done, CLOSE_BOUND)
        await asyncio.wait_for(lost, TIMEOUT)
    finally:
        lost.cancel()
    return time.monotonic() - start


async def test_keepalive_closes_a_peer_that_floods_without_reading() -> None:
    errors: list[ConnectionClosed] = []

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            errors.append(exc)

    async with run_server(
        handler,
        ping_interval=INTERVAL,
        ping_timeout=INTERVAL,
        close_timeout=CLOSE_TIMEOUT,
        write_limit=WRITE_LIMIT,
    ) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server)
        try:
            probe = Probe(only_connection(server))
            elapsed = await flood_until_closed(flooder, probe)
        finally:
            flooder.close()
    print(
        f"\nkeepalive: closed after {elapsed:.2f} s (bound {CLOSE_BOUND:.2f} s), "
        f"{flooder.frames} pings, write buffer at most {probe.max_buffered} bytes"
    )
    assert probe.paused_seen
    assert probe.max_buffered <= WRITE_LIMIT[0] + SLACK
    assert 2 * INTERVAL <= elapsed <= CLOSE_BOUND
    (exc,) = errors
    assert isinstance(exc, ConnectionClosedError)
    assert sent_close(exc).code == 1011
    assert exc.rcvd is None  # the flooder never answered: aborted by close_timeout


async def test_hub_keepalive_closes_a_peer_that_floods_without_reading() -> None:
    hub = Hub(ping_interval=INTERVAL, ping_timeout=INTERVAL)
    async with hub.serve(
        "127.0.0.1", 0, close_timeout=CLOSE_TIMEOUT, write_limit=WRITE_LIMIT
    ) as server:
        shrink_send_buffers(server)
        flooder = await client_flooder(server, "/", "openline.v1")
        try:
            probe = Probe(only_connection(server))
            elapsed = await flood_until_closed(flooder, probe)
        finally:
            flooder.close()
    await hub.close()
    print(
        f"\nhub keepalive: closed after {elapsed:.2f} s (bound {CLOSE_BOUND:.2f} s), "
        f"{flooder.frames} pings, write buffer at most {probe.max_buffered} bytes"
    )
    assert probe.paused_seen
    assert probe.max_buffered <= WRITE_LIMIT[0] + SLACK
    assert 2 * INTERVAL <= elapsed <= CLOSE_BOUND
    assert probe.connection.close_code == 1006  # no close frame from the flooder


# --- the client side --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def flooding_server() -> AsyncIterator[tuple[int, asyncio.Future[Flooder]]]:
    """A raw server that answers one opening handshake, then floods the client with pings."""
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    accepted: asyncio.Future[Flooder] = loop.create_future()

    async def accept() -> None:
        sock, _ = await loop.sock_accept(listener)
        sock.setblocking(False)
        head = b""
        while b"\r\n\r\n" not in head:
            head += await loop.sock_recv(sock, 4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key.decode())}\r\n\r\n"
        )
        await loop.sock_sendall(sock, response.encode())
        accepted.set_result(Flooder(sock, PING))

    task = asyncio.ensure_future(accept())
    try:
        yield listener.getsockname()[1], accepted
    finally:
        task.cancel()
        listener.close()
        if accepted.done():
            accepted.result().close()


async def test_client_pauses_reading_under_a_ping_flood() -> None:
    async with flooding_server() as (port, accepted):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        async with connect(
            f"ws://127.0.0.1:{port}/",
            sock=sock,
            ping_interval=None,
            write_limit=WRITE_LIMIT,
            close_timeout=CLOSE_TIMEOUT,  # our close frame can't be delivered either
        ) as ws:
            flooder = await asyncio.wait_for(accepted, TIMEOUT)
            probe = Probe(ws)
            await flood_until_paused_then_more(flooder, probe)
            probe.report("client", flooder.frames)
            assert_bounded(probe)
            assert ws.close_code is None


# --- no coalescing without pressure -----------------------------------------------------


async def test_a_peer_that_reads_gets_every_pong() -> None:
    async with run_server(park, ping_interval=None) as server:
        peer = await raw_client(server)
        try:
            for i in range(200):
                peer.send_frame(Opcode.PING, b"%d" % i)
                pong = await peer.receive_until(Pong)
                assert pong == Pong(b"%d" % i)
            # A burst in one write: each ping still gets its own pong.
            for i in range(20):
                peer.send_frame(Opcode.PING, b"burst %d" % i)
            pongs: list[Pong] = []
            while len(pongs) < 20:
                events = await peer.receive()
                assert events is not None
                pongs += [event for event in events if isinstance(event, Pong)]
            assert pongs == [Pong(b"burst %d" % i) for i in range(20)]
        finally:
            await peer.close()


async def test_client_keepalive_closes_a_server_that_floods_without_reading() -> None:
    async with flooding_server() as (port, accepted):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        ws = await connect(
            f"ws://127.0.0.1:{port}/",
            sock=sock,
            ping_interval=INTERVAL,
            ping_timeout=INTERVAL,
            close_timeout=CLOSE_TIMEOUT,
            write_limit=WRITE_LIMIT,
        )
        flooder = await asyncio.wait_for(accepted, TIMEOUT)
        probe = Probe(ws)
        elapsed = await flood_until_closed(flooder, probe)
        print(
            f"\nclient keepalive: closed after {elapsed:.2f} s (bound {CLOSE_BOUND:.2f} s), "
            f"{flooder.frames} pings, write buffer at most {probe.max_buffered} bytes"
        )
        assert probe.paused_seen
        assert probe.max_buffered <= WRITE_LIMIT[0] + SLACK
        assert 2 * INTERVAL <= elapsed <= CLOSE_BOUND
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
        assert sent_close(info.value).code == 1011
        assert info.value.rcvd is None  # the flooder never answered: aborted by close_timeout
