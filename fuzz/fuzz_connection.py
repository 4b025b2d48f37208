"""Fuzz the core: arbitrary bytes into a Connection of either side.

The contract (docs/architecture.md, "The core's contract"): receiving never
raises for peer input. A violation becomes a close frame and
``protocol_error``, whose code is one of :data:`ALLOWED_CLOSE_CODES`; no
message is larger than ``max_size``; text messages are ``str``.

Input layout: byte 0 picks the setup (bit 0: server or client side; bit 1:
permessage-deflate negotiated; bit 2: the peer resets its compressor; bit 3:
``defer_close``; bits 4-6: the peer's window bits, 8 + n), byte 1 the chunk
size in which the rest is fed (1 to 256 bytes).

Where the compiled frame path is built, every input runs twice, on the compiled
and on the pure-Python path (``frame_path.select``), and both must end the same: the
same events, the same bytes written (their lengths on the client side, whose
masking keys are random), the same close code and the same protocol error.

Run ``python fuzz/fuzz_connection.py -max_total_time=20`` (see fuzz/README.md).
"""

from __future__ import annotations

from typing import Any

from harness import instrumented, main

with instrumented(__name__):
    from openline.protocol.connection import Connection, Side
    from openline.protocol.events import BinaryMessage, TextMessage
    from openline.protocol.extensions.deflate import PerMessageDeflate
    from openline.protocol.frame_path import select as select_frame_path

#: 1002 framing, 1006 stream cut mid-frame, 1007 bad UTF-8 or compressed data, 1009 too big.
ALLOWED_CLOSE_CODES = frozenset({1002, 1006, 1007, 1009})
MAX_SIZE = 4096


def build(setup: int) -> Connection:
    """Return the connection that the setup byte describes."""
    side = Side.SERVER if setup & 1 else Side.CLIENT
    extensions = []
    if setup & 2:
        remote_bits = 8 + ((setup >> 4) & 7)
        extensions.append(PerMessageDeflate(bool(setup & 4), False, remote_bits, 15))
    return Connection(side, extensions=extensions, max_size=MAX_SIZE, defer_close=bool(setup & 8))


#: Whether the compiled frame path is built; if so, each input runs on both paths.
BOTH_PATHS = select_frame_path(True)


def run(data: bytes) -> tuple[Connection, list[Any], list[bytes]]:
    """Feed ``data`` to the connection it describes; return it, its events and its output."""
    conn = build(data[0])
    step = data[1] + 1
    for i in range(2, len(data), step):
        conn.receive_data(data[i : i + step])
    conn.flush_close()
    conn.receive_eof()
    return conn, conn.events_received(), conn.data_to_send()


def outcome(conn: Connection, events: list[Any], output: list[bytes]) -> tuple[object, ...]:
    """What both frame paths must agree on."""
    error = conn.protocol_error
    written: list[object] = list(output) if conn.side is Side.SERVER else [len(c) for c in output]
    return (
        events,
        written,
        conn.close_code,
        conn.state,
        None if error is None else (type(error), str(error), error.code),
    )


def check(data: bytes) -> None:
    """Feed ``data`` to a connection; fail on anything the contract doesn't allow."""
    if len(data) < 2:
        return
    conn, events, output = run(data)
    if BOTH_PATHS:
        select_frame_path(False)
        try:
            pure = run(data)
        finally:
            select_frame_path(True)
        if outcome(conn, events, output) != outcome(*pure):
            raise AssertionError("the compiled and the pure-Python frame paths disagree")
    for event in events:
        if isinstance(event, TextMessage):
            size = len(event.data.encode())
        elif isinstance(event, BinaryMessage):
            size = len(event.data)
        else:
            continue
        if size > MAX_SIZE:
            raise AssertionError(f"message of {size} bytes passed max_size of {MAX_SIZE}")
    error = conn.protocol_error
    if error is None:
        return
    if error.code not in ALLOWED_CLOSE_CODES:
        raise AssertionError(f"undocumented close code {error.code}: {error}")
    if error.code != 1006 and not output:
        raise AssertionError(f"protocol error without a close frame: {error}")


if __name__ == "__main__":
    main("connection", check)
