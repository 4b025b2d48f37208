"""The load generator's own, minimal WebSocket client pieces (RFC 6455 and 7692).

The generator must cost less than any server it measures, so it uses no
WebSocket library: frames are built once, masked once with a fixed key, and
written again and again; the upgrade request is a constant; received frames
are located, not validated. None of this is fit for a real client.

A fixed, non-zero masking key is legal for the server to accept (it can't
tell) and keeps masking out of the generator's per-message cost; it is not
zero so that no server can skip unmasking.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

__all__ = [
    "MASK_KEY",
    "SEQ",
    "FrameError",
    "HandshakeFailed",
    "Inflater",
    "Negotiated",
    "client_frame",
    "compress",
    "mask",
    "parse_upgrade_response",
    "scan_frames",
    "server_frame_header",
    "upgrade_request",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
FIN, RSV1, MASKED = 0x80, 0x40, 0x80

#: The fixed masking key of the frames the load generator sends: masking costs the
#: same whatever the key, and a fixed one lets frames be built once.
MASK_KEY = b"\x5a\xc3\x3c\xa5"
#: A fan-out message starts with its sequence number.
SEQ = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")

#: Any valid key will do: the server only echoes its hash (RFC 6455, section 4.2.2).
_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
#: Each message is compressed on its own, so that it can also be inflated on its own.
DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
_MAX_HEAD = 16384


class HandshakeFailed(Exception):
    """The server did not switch protocols as asked."""


class FrameError(Exception):
    """The server sent something the generator did not expect."""


@dataclasses.dataclass(frozen=True)
class Negotiated:
    """What the server's handshake response agreed to."""

    deflate: bool = False
    #: Whether every server message can be inflated on its own.
    server_no_context_takeover: bool = False


def upgrade_request(
    host: str, port: int, path: str, *, deflate: bool, subprotocol: str | None = None
) -> bytes:
    """The opening handshake request (RFC 6455, section 4.1), as bytes.

    ``subprotocol`` is offered in ``Sec-WebSocket-Protocol`` (section 1.9) when not ``None``.
    """
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {_KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:
        lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}")
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_upgrade_response(head: bytes) -> Negotiated:
    """Check the response head (up to and without its blank line) and read the extensions.

    Raises:
        HandshakeFailed: The status isn't 101.
    """
    status_line, _, rest = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"101":
        raise HandshakeFailed(f"expected status 101, got {status_line[:80]!r}")
    extensions = [
        line.split(b":", 1)[1].decode("latin-1").lower()
        for line in rest.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions:")
    ]
    offered = ",".join(extensions)
    return Negotiated(
        deflate="permessage-deflate" in offered,
        server_no_context_takeover="server_no_context_takeover" in offered,
    )


def find_head_end(buffer: bytes | bytearray) -> int:
    """The index just past the response head's blank line, or -1 if it isn't complete.

    Raises:
        HandshakeFailed: The head is longer than 16 KiB.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > _MAX_HEAD:
            raise HandshakeFailed(f"response head longer than {_MAX_HEAD} bytes")
        return -1
    return end + 4


def mask(data: bytes, key: bytes = MASK_KEY) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455, section 5.3)."""
    size = len(data)
    if size == 0:
        return b""
    pad = key * (size // 4 + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad[:size], "little")).to_bytes(
        size, "little"
    )


def _length_field(size: int, flag: int) -> bytes:
    if size < 126:
        return bytes([flag | size])
    if size < 65536:
        return bytes([flag | 126]) + _U16.pack(size)
    return bytes([flag | 127]) + _U64.pack(size)


def client_frame(
    payload: bytes, opcode: int = OP_BINARY, *, rsv1: bool = False, key: bytes = MASK_KEY
) -> bytes:
    """A complete, masked client frame with ``payload`` (RFC 6455, section 5.2)."""
    first = FIN | (RSV1 if rsv1 else 0) | opcode
    return bytes([first]) + _length_field(len(payload), MASKED) + key + mask(payload, key)


def server_frame_header(size: int, opcode: int = OP_BINARY) -> bytes:
    """The header of an unmasked, final, uncompressed server frame of ``size`` bytes."""
    return bytes([FIN | opcode]) + _length_field(size, 0)


def scan_frames(
    data: bytes | bytearray | memoryview, start: int, end: int
) -> tuple[list[tuple[int, int, int, bytes | None]], int]:
    """Locate the complete frames in ``data[start:end]`` without copying payloads.

    Returns:
        ``(frames, stop)``: for each complete frame its first byte, the start
        and end of its payload in ``data``, and its masking key (``None`` if
        unmasked); ``stop`` is where the first incomplete frame begins.

    Raises:
        FrameError: A 64-bit length has its most significant bit set.
    """
    frames: list[tuple[int, int, int, bytes | None]] = []
    position = start
    while end - position >= 2:
        first, second = data[position], data[position + 1]
        length = second & 0x7F
        header = 2
        if length == 126:
            if end - position < 4:
                break
            length = _U16.unpack_from(data, position + 2)[0]
            header = 4
        elif length == 127:
            if end - position < 10:
                break
            length = _U64.unpack_from(data, position + 2)[0]
            if length >> 63:
                raise FrameError("64-bit payload length with the most significant bit set")
            header = 10
        key = None
        if second & MASKED:
            if end - position < header + 4:
                break
            key = bytes(data[position + header : position + header + 4])
            header += 4
        payload_start = position + header
        payload_end = payload_start + length
        if payload_end > end:
            break
        frames.append((first, payload_start, payload_end, key))
        position = payload_end
    return frames, position


def compress(payload: bytes) -> bytes:
    """Compress one message on its own, as permessage-deflate sends it (RFC 7692, 7.2.1)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


class Inflater:
    """Inflate a server's compressed messages (RFC 7692, section 7.2.2).

    Args:
        takeover: Whether the server keeps its compression context between
            messages; then every message must go through :meth:`inflate`, in
            order. Without it, any single message can be inflated on its own.
    """

    __slots__ = ("_decompressor", "takeover")

    def __init__(self, takeover: bool) -> None:
        self.takeover = takeover
        self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)

    def inflate(self, data: bytes | memoryview) -> bytes:
        """The message that ``data``, its compressed payload, encodes.

        Raises:
            zlib.error: ``data`` isn't valid compressed data.
        """
        if not self.takeover:
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._decompressor.decompress(bytes(data) + b"\x00\x00\xff\xff")
