"""Frames and close payloads of RFC 6455: opcodes, close codes, parsing, serializing.

See `RFC 6455, section 5 <https://datatracker.ietf.org/doc/html/rfc6455#section-5>`_.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import struct

from ..exceptions import ProtocolError
from .mask import apply_mask, c_encode_frame
from .utf8 import decode_utf8

__all__ = [
    "CLOSE_CODES_ALLOWED_ON_WIRE",
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "Close",
    "CloseCode",
    "Frame",
    "Opcode",
    "encode_frame",
    "encode_header",
    "is_valid_close_code",
    "serialize_frame",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455, section 5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: Opcodes of data frames (RFC 6455, section 5.6).
DATA_OPCODES = frozenset((Opcode.CONT, Opcode.TEXT, Opcode.BINARY))
#: Opcodes of control frames (RFC 6455, section 5.5).
CONTROL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
_OPCODES = {int(op): op for op in Opcode}


class CloseCode(enum.IntEnum):
    """Close codes (RFC 6455, section 7.4.1, and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved.
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


#: Codes an endpoint may put in a close frame. 1004 is reserved; 1005, 1006 and
#: 1015 "MUST NOT be set as a status code in a Close control frame" (section 7.4.1).
CLOSE_CODES_ALLOWED_ON_WIRE = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)

# Control frames carry at most 125 bytes of payload (section 5.5).
MAX_CONTROL_PAYLOAD = 125

_CLOSE_NAMES = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "connection closed abnormally [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS failure [internal]",
}


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame on the wire.

    Registered codes from :data:`CLOSE_CODES_ALLOWED_ON_WIRE`, and the ranges
    3000-3999 (libraries, frameworks) and 4000-4999 (private use).
    """
    return code in CLOSE_CODES_ALLOWED_ON_WIRE or 3000 <= code <= 4999


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One WebSocket frame, unmasked.

    Attributes:
        opcode: The frame's opcode.
        data: The payload, after unmasking (and before any extension decodes it).
        fin: Whether this is the final fragment of a message.
        rsv1: The first reserved bit, owned by permessage-deflate.
        rsv2: The second reserved bit.
        rsv3: The third reserved bit.
    """

    opcode: Opcode
    data: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def __str__(self) -> str:
        size = len(self.data)
        flags = "".join(
            name
            for name, on in (("F", self.fin), ("1", self.rsv1), ("2", self.rsv2), ("3", self.rsv3))
            if on
        )
        return f"{self.opcode.name} [{flags or '-'}] {size} bytes"


_PACK_BB = struct.Struct("!BB").pack
_PACK_BBH = struct.Struct("!BBH").pack
_PACK_BBQ = struct.Struct("!BBQ").pack


def encode_header(head: int, length: int, mask_key: bytes | None = None) -> bytes:
    """Encode a frame header (RFC 6455, section 5.2): the one header encoder.

    Args:
        head: The first byte: FIN, the RSV bits and the opcode.
        length: The payload length.
        mask_key: The masking key, appended after the length; ``None`` for an
            unmasked frame.
    """
    mask_bit = 0 if mask_key is None else 0x80
    if length < 126:
        header = _PACK_BB(head, mask_bit | length)
    elif length < 0x10000:
        header = _PACK_BBH(head, mask_bit | 126, length)
    else:
        header = _PACK_BBQ(head, mask_bit | 127, length)
    return header if mask_key is None else header + mask_key


def _encode_frame(head: int, data: bytes | bytearray | memoryview, mask_key: bytes | None) -> bytes:
    """Pure-Python :func:`encode_frame`, the fallback of the compiled one."""
    if mask_key is None:
        return encode_header(head, len(data)) + data
    if len(mask_key) != 4:
        raise ValueError(f"mask must be 4 bytes, got {len(mask_key)} bytes")
    return encode_header(head, len(data), mask_key) + apply_mask(data, mask_key)


#: ``encode_frame(head, data, mask_key)``: a whole frame, header, masking key if
#: any (4 bytes, or ``None``) and payload, in one ``bytes``. Compiled when
#: ``_speedups`` is built; see :mod:`~openline.protocol.mask`.
encode_frame = _encode_frame if c_encode_frame is None else c_encode_frame


def frame_head(frame: Frame) -> int:
    """Return the first byte of ``frame``'s header: FIN, RSV bits and opcode."""
    return (
        (0x80 if frame.fin else 0)
        | (0x40 if frame.rsv1 else 0)
        | (0x20 if frame.rsv2 else 0)
        | (0x10 if frame.rsv3 else 0)
        | frame.opcode
    )


def serialize_frame(frame: Frame, *, mask: bool, mask_key: bytes | None = None) -> bytes:
    """Encode ``frame`` for the wire (RFC 6455, section 5.2).

    Args:
        frame: The frame to encode.
        mask: Whether to mask the payload; clients must, servers must not (section 5.1).
        mask_key: Four bytes to mask with; random by default. Tests pass a fixed key.

    Returns:
        The encoded frame.
    """
    if not mask:
        return encode_frame(frame_head(frame), frame.data, None)
    if mask_key is None:
        mask_key = os.urandom(4)
    return encode_frame(frame_head(frame), frame.data, mask_key)


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """The payload of a close frame (RFC 6455, section 5.5.1).

    Attributes:
        code: The close code; 1005 stands for "no code in the frame".
        reason: The close reason, possibly empty.
    """

    code: int
    reason: str = ""

    def __str__(self) -> str:
        if 3000 <= self.code < 4000:
            explanation = "registered"
        elif 4000 <= self.code < 5000:
            explanation = "private use"
        else:
            explanation = _CLOSE_NAMES.get(self.code, "unknown")
        text = f"{self.code} ({explanation})"
        if self.reason:
            text += f" {self.reason}"
        return text

    @classmethod
    def parse(cls, data: bytes) -> Close:
        """Decode the payload of a close frame.

        Raises:
            ProtocolError: The payload is one byte long, carries a code that may not
                appear on the wire (code 1002), or its reason is not UTF-8 (code 1007).
        """
        if len(data) >= 2:
            (code,) = struct.unpack("!H", data[:2])
            if not is_valid_close_code(code):
                raise ProtocolError(f"invalid close code {code}", 1002)
            try:
                reason = decode_utf8(data[2:])
            except UnicodeDecodeError as exc:
                raise ProtocolError("close reason isn't valid UTF-8", 1007) from exc
            return cls(code, reason)
        if len(data) == 0:
            return cls(CloseCode.NO_STATUS_RCVD, "")
        # Section 5.5.1: a body, when present, starts with a two-byte code.
        raise ProtocolError("close frame payload of 1 byte is too short", 1002)

    def serialize(self) -> bytes:
        """Encode for a close frame's payload; 1005 encodes as an empty payload."""
        if self.code == CloseCode.NO_STATUS_RCVD:
            return b""
        return struct.pack("!H", self.code) + self.reason.encode()

    def check(self) -> None:
        """Check that this close payload may be sent.

        Raises:
            ValueError: The code may not be sent or the payload exceeds 125 bytes.
        """
        if not is_valid_close_code(self.code):
            raise ValueError(f"close code {self.code} may not be sent on the wire")
        if len(self.serialize()) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"close reason of {len(self.reason.encode())} bytes exceeds 123 bytes")


def opcode_from_int(value: int) -> Opcode | None:
    """Map a 4-bit opcode to :class:`Opcode`, or ``None`` when it is unknown."""
    return _OPCODES.get(value)
