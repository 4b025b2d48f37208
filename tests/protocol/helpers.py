"""Helpers for core tests: bytes in, events and bytes out, no loop, no sockets."""

from __future__ import annotations

from openline.protocol.connection import Connection, Side
from openline.protocol.frames import Close, Frame, Opcode, serialize_frame
from openline.protocol.mask import apply_mask

MASK = b"\x12\x34\x56\x78"


def peer_frame(
    side: Side, opcode: Opcode, data: bytes = b"", *, fin: bool = True, **rsv: bool
) -> bytes:
    """Encode a frame as the peer of ``side`` would send it (masked toward a server)."""
    frame = Frame(opcode, data, fin, **rsv)
    return serialize_frame(frame, mask=side is Side.SERVER, mask_key=MASK)


def wire_frame(
    opcode: Opcode, data: bytes = b"", *, fin: bool = True, masked: bool, **rsv: bool
) -> bytes:
    """Encode a frame with explicit masking, to build frames that break the rules."""
    return serialize_frame(Frame(opcode, data, fin, **rsv), mask=masked, mask_key=MASK)


def parse_output(side: Side, chunks: list[bytes]) -> list[Frame | None]:
    """Decode what ``side`` wrote, as frames; ``None`` stands for the end of stream.

    The parser here is independent of the core's, so a bug in one cannot hide in the other.
    """
    frames: list[Frame | None] = []
    # Chunks are a byte stream, not frames: a large frame leaves as two chunks.
    pending = b""
    for chunk in chunks:
        if chunk == b"":
            frames.extend(_split_frames(pending, masked=side is Side.CLIENT))
            pending = b""
            frames.append(None)
            continue
        pending += chunk
    frames.extend(_split_frames(pending, masked=side is Side.CLIENT))
    return frames


def _split_frames(data: bytes, *, masked: bool) -> list[Frame]:
    frames = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        length = second & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        assert bool(second & 0x80) == masked, "masking of our own output is wrong"
        if masked:
            key = data[pos : pos + 4]
            pos += 4
            payload = apply_mask(data[pos : pos + length], key)
        else:
            payload = data[pos : pos + length]
        pos += length
        frames.append(
            Frame(
                Opcode(first & 0x0F),
                bytes(payload),
                bool(first & 0x80),
                bool(first & 0x40),
                bool(first & 0x20),
                bool(first & 0x10),
            )
        )
    return frames


def close_frame(code: int, reason: str = "") -> Frame:
    return Frame(Opcode.CLOSE, Close(code, reason).serialize())


def assert_closed_with(conn: Connection, code: int, *, eof: bool | None = None) -> None:
    """Check that ``conn`` sent exactly one close frame with ``code`` (then EOF on a server)."""
    out = parse_output(conn.side, conn.data_to_send())
    closes = [f for f in out if f is not None and f.opcode is Opcode.CLOSE]
    assert len(closes) == 1, out
    assert Close.parse(closes[0].data).code == code, out
    if eof is None:
        eof = conn.side is Side.SERVER
    assert (out[-1] is None) == eof, out
