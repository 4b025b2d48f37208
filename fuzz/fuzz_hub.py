"""Fuzz the hub's dispatch: client messages through a real Hub, in process, no sockets.

One :class:`openline.hub.Hub` (memory engine, its default limits) serves every
input. Each input is one connection: a real :class:`ServerConnection` of the
hub's server, attached to an in-memory transport (:class:`MemoryTransport`)
through the ``asyncio.Protocol`` interface, so that the handshake hook, the
session, the parser, every request handler and fan-out run as in production.

Input: client messages separated by ``\\n`` (at most :data:`MAX_MESSAGES`); a
message starting with ``\\x00`` goes as a binary frame. A final ``ping`` with
``rid: "end"`` marks the end: the hub handles a connection's messages in
order, so its ``pong`` (or the connection closing) says everything was handled.

The contract (docs/protocol.md): every server message is a JSON object of a
documented ``type``; every ``error`` has a documented code and never
``internal`` (that would be a failure inside the hub); the hub logs no error;
the connection closes only as documented (1000 when the client closes, 1008
after too many errors), and only after answering every message unless too
many were errors; and it finishes within :data:`DEADLINE` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from harness import instrumented, main

with instrumented(__name__):
    from openline.asyncio.server import ServerConnection
    from openline.hub import Hub
    from openline.protocol.connection import Connection, Side
    from openline.protocol.events import TextMessage
    from openline.protocol.frames import Close

MAX_MESSAGES = 32
DEADLINE = 5.0
SERVER_TYPES = frozenset(
    {"welcome", "subscribed", "gap", "message", "ack", "unsubscribed", "presence"}
    | {"join", "leave", "state", "pong", "error"}
)
ERROR_CODES = frozenset(
    {"bad_request", "unknown_type", "forbidden", "not_subscribed", "already_subscribed"}
    | {"too_large", "rate_limited", "limit_exceeded", "unavailable"}
)
CLOSE_CODES = frozenset({1000, 1008})
#: The hub's default max_errors: this many errors close the connection.
ABUSE_ERRORS = 20
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: openline.v1\r\n\r\n"
)
END = '{"type":"ping","rid":"end"}'


class MemoryTransport(asyncio.Transport):
    """A transport that keeps what is written and ends like a socket would."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.written = bytearray()
        self.closing = False
        self.lost = loop.create_future()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self._end()

    def abort(self) -> None:
        self._end()

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._end()

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def _end(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self._lose)

    def _lose(self) -> None:
        self.protocol.connection_lost(None)
        self.lost.set_result(None)


class ErrorLog(logging.Handler):
    """Keeps every record of level ERROR or above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


LOOP = asyncio.new_event_loop()
HUB = Hub()
SERVER = HUB.serve().server  # not awaited: nothing listens
ERRORS = ErrorLog()
logging.getLogger("openline").addHandler(ERRORS)


def client_stream(messages: list[bytes]) -> bytes:
    """Encode the messages as a client's masked frames, then the end marker and a close."""
    client = Connection(Side.CLIENT, max_size=None)
    for message in [*messages, END.encode()]:
        if message.startswith(b"\x00"):
            client.send_binary(message[1:])
        else:
            client.send_text(message.decode(errors="replace"))
    client.send_close(1000)
    return b"".join(client.data_to_send())


def replies(written: bytes) -> tuple[list[dict[str, Any]], Close | None]:
    """Decode what the hub wrote after its 101: messages, and its close frame."""
    head, sep, frames = written.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 ") or not sep:
        raise AssertionError(f"handshake refused: {head[:200]!r}")
    reader = Connection(Side.CLIENT, max_size=None)
    reader.receive_data(frames)
    messages, close = [], None
    for event in reader.events_received():
        if isinstance(event, TextMessage):
            messages.append(json.loads(event.data))
        elif isinstance(event, Close):
            close = event
        else:
            raise AssertionError(f"unexpected frame from the hub: {event!r}")
    return messages, close


async def serve_one(stream: bytes) -> bytes:
    """Run one connection through the hub; return everything it wrote."""
    loop = asyncio.get_running_loop()
    connection = ServerConnection(SERVER)
    transport = MemoryTransport(loop, connection)
    connection.connection_made(transport)
    connection.data_received(UPGRADE)
    connection.data_received(stream)
    await asyncio.wait_for(transport.lost, DEADLINE)
    for _ in range(5):  # let the handler's cleanup (leaving channels) run
        await asyncio.sleep(0)
    return bytes(transport.written)


def check_replies(messages: list[dict[str, Any]], close: Close | None) -> None:
    """Fail on any reply or close that docs/protocol.md doesn't allow."""
    for message in messages:
        kind = message.get("type")
        if kind not in SERVER_TYPES:
            raise AssertionError(f"undocumented message type: {message!r}")
        if kind == "error" and message.get("code") not in ERROR_CODES:
            raise AssertionError(f"undocumented or internal error: {message!r}")
    if close is None or close.code not in CLOSE_CODES:
        raise AssertionError(f"undocumented close: {close!r}")
    errors = sum(message.get("type") == "error" for message in messages)
    if messages[-1] != {"type": "pong", "rid": "end"} and errors < ABUSE_ERRORS:
        # Only the abuse limit stops the hub before the end (the client's own close
        # frame may already be in, so the code is then 1000 as often as 1008).
        raise AssertionError(f"stopped after {errors} errors, before the end: {messages[-1]!r}")


def check(data: bytes) -> None:
    """Send the input's messages to the hub; fail on anything undocumented."""
    messages = data.split(b"\n")[:MAX_MESSAGES]
    ERRORS.records.clear()
    written = LOOP.run_until_complete(serve_one(client_stream(messages)))
    if ERRORS.records:
        record = ERRORS.records[0]
        raise AssertionError(f"the hub logged an error: {record.getMessage()}") from (
            record.exc_info[1] if record.exc_info else None
        )
    check_replies(*replies(written))


if __name__ == "__main__":
    main("hub", check)
