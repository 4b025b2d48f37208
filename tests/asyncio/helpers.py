"""Helpers for the asyncio tests: timing, servers on 127.0.0.1, and hand-driven peers.

A "raw" peer is a plain asyncio stream that completes the opening handshake and
then does only what a test tells it to, parsing what it receives with the
sans-I/O core. It plays the silent client, the peer that never answers a close,
and the server that never answers pings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from openline.asyncio.server import Server, ServerConnection, serve
from openline.exceptions import ConnectionClosed
from openline.protocol.connection import Connection as Core
from openline.protocol.connection import Side
from openline.protocol.events import Event
from openline.protocol.frames import Close, Frame, Opcode, serialize_frame
from openline.protocol.handshake import ClientHandshake, ServerHandshake
from openline.protocol.http11 import parse_request

from ..timing import MS as MS  # re-exported: the tests of this package import it from here

#: A bound for waits that should end quickly but mustn't hang the suite.
TIMEOUT = 5000 * MS


async def echo(ws: ServerConnection) -> None:
    """The handler of most tests: send every message back."""
    async for message in ws:
        await ws.send(message)


def sent_close(exc: ConnectionClosed) -> Close:
    """The close frame we sent, typed (the exception types it as ``object``)."""
    assert isinstance(exc.sent, Close)
    return exc.sent


def port_of(server: Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def url_of(server: Server, path: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{port_of(server)}{path}"


@contextlib.asynccontextmanager
async def run_server(
    handler: Callable[[ServerConnection], Awaitable[None]] = echo, **kwargs: Any
) -> AsyncIterator[Server]:
    """Serve on 127.0.0.1 with an ephemeral port."""
    async with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        yield server


class RawPeer:
    """One end of a connection driven by hand, after the opening handshake."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, side: Side):
        self.reader = reader
        self.writer = writer
        self.side = side
        self.core = Core(side, max_size=None)

    def send_frame(self, opcode: Opcode, data: bytes = b"", *, fin: bool = True) -> None:
        frame = Frame(opcode, data, fin)
        self.writer.write(serialize_frame(frame, mask=self.side is Side.CLIENT))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send_frame(Opcode.CLOSE, Close(code, reason).serialize())

    async def receive(self) -> list[Event] | None:
        """Read once; return the events parsed, or ``None`` at the end of the stream."""
        data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
        if not data:
            return None
        self.core.receive_data(data)
        self.core.data_to_send()  # never answer on our own: the test decides
        return self.core.events_received()

    async def receive_until(self, kind: type) -> Any:
        """Read until an event of type ``kind`` arrives, and return it."""
        while True:
            events = await self.receive()
            assert events is not None, f"end of stream before {kind.__name__}"
            for event in events:
                if isinstance(event, kind):
                    return event

    async def receive_eof(self) -> None:
        """Read and discard until the peer closes its side of TCP."""
        while await self.receive() is not None:
            pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def raw_client(server: Server, path: str = "/") -> RawPeer:
    """Connect to ``server`` by hand and complete the opening handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    handshake = ClientHandshake("127.0.0.1", port_of(server), path, secure=False)
    writer.write(handshake.build_request().serialize())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return RawPeer(reader, writer, Side.CLIENT)


@contextlib.asynccontextmanager
async def raw_server() -> AsyncIterator[tuple[str, asyncio.Queue[RawPeer]]]:
    """A server that completes opening handshakes and queues each peer for the test."""
    peers: asyncio.Queue[RawPeer] = asyncio.Queue()
    handshake = ServerHandshake()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        parsed = parse_request(head)
        assert parsed is not None
        result = handshake.process_request(parsed[0])
        writer.write(result.response.serialize())
        await peers.put(RawPeer(reader, writer, Side.SERVER))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/", peers
    finally:
        server.close()
        while not peers.empty():
            await peers.get_nowait().close()
        await server.wait_closed()
