"""The WebSocket state machine after the opening handshake (RFC 6455, sections 5-8).

:class:`Connection` is sans-I/O: the I/O layer feeds it bytes with
:meth:`~Connection.receive_data` and :meth:`~Connection.receive_eof`, gives it
commands with the ``send_*`` methods, and then drains
:meth:`~Connection.events_received` and :meth:`~Connection.data_to_send`.

States and transitions (every transition of the connection lives in this module):

=========  ==========================================  =========
from       on                                          to
=========  ==========================================  =========
OPEN       ``send_close()`` or ``fail()``              CLOSING
OPEN       close frame received (we answer it)         CLOSING
CLOSING    close frame received after ours             CLOSING
OPEN       end of stream received                      CLOSED
CLOSING    end of stream received                      CLOSED
=========  ==========================================  =========

In CLOSING, the server closes the TCP connection as soon as both close frames
have crossed (or at once after failing), and the client waits for the server to
do so; :meth:`~Connection.close_expected` tells the I/O layer when to arm its
close timeout. An empty ``bytes`` in :meth:`~Connection.data_to_send` means
"half-close the TCP connection now".

Receiving never raises for anything the peer sends: a violation queues the
right close frame and is kept in :attr:`~Connection.protocol_error` for the I/O
layer to re-raise. Local misuse, such as sending after closing, raises
:class:`~openline.exceptions.InvalidState` at once.

Answers to pings are bounded: while the I/O layer reports that it can't write
(:meth:`~Connection.pause_output`), or while many chunks already wait in
:meth:`~Connection.data_to_send` (one read full of pings), the core keeps only
the pong for the most recent ping (RFC 6455, section 5.5.3) and queues it once
output is possible again. A peer that pings without reading therefore costs a
constant amount of memory here, whatever its number of pings.
"""

from __future__ import annotations

import codecs
import enum
import logging
import os
import struct
from collections.abc import Sequence
from typing import Any

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from .events import BinaryMessage, Event, Ping, Pong, TextMessage
from .extensions.base import Extension
from .frames import (
    MAX_CONTROL_PAYLOAD,
    Close,
    CloseCode,
    Frame,
    Opcode,
    encode_frame,
    encode_header,
    frame_head,
)
from .mask import apply_mask, parse_frames
from .utf8 import IncrementalUtf8Decoder, decode_chunk

__all__ = ["Connection", "Side", "State"]

#: The default limit on the size of an incoming message, after decompression.
DEFAULT_MAX_SIZE = 2**20

_UNPACK_H = struct.Struct("!H").unpack_from
_UNPACK_Q = struct.Struct("!Q").unpack_from

_TEXT = int(Opcode.TEXT)
_BINARY = int(Opcode.BINARY)
_CONT = int(Opcode.CONT)
_CLOSE = int(Opcode.CLOSE)
_PING = int(Opcode.PING)
_PONG = int(Opcode.PONG)
_KNOWN_OPCODES = frozenset((_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG))

# Compressed data can be a little larger than the message it holds (stored
# blocks add a few bytes per 64 KiB); this slack bounds the wire size of a
# compressed frame while the decompressed size is checked exactly.
_COMPRESSED_SLACK = 1024

_MASK_POOL_SIZE = 4096
# From this payload size, a frame leaves as two chunks, header and payload, rather
# than one: joining them would copy the payload once more, and the transport
# writes both with one writev. Never 0: an empty chunk means "half-close".
_SPLIT_FRAME_SIZE = 16384
# Once this many chunks wait in data_to_send(), answers to further pings are
# coalesced into one (section 5.5.3): one read full of pings then costs at most
# this many pongs plus one, not a pong per ping. A peer that pings a few times in
# a row still gets every answer.
_PONG_BURST = 32


class Side(enum.Enum):
    """Which end of the connection this is."""

    SERVER = "server"
    CLIENT = "client"


class State(enum.Enum):
    """The connection's state after the opening handshake."""

    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Connection:
    """One WebSocket connection's protocol state, for either side.

    Args:
        side: Whether this is the server or the client end.
        extensions: The extensions negotiated in the opening handshake, in order.
        max_size: The largest incoming message accepted, in bytes, measured after
            decompression; ``None`` disables the limit. A larger message fails the
            connection with close code 1009.
        defer_close: Hold back the close frame that answers the peer (its close
            frame, or its protocol violation) until :meth:`flush_close` is
            called, instead of queueing it at once. Input after the peer's close
            or violation is discarded either way. An I/O layer uses this to let
            the application finish with the messages that arrived before, and
            answer them, before the connection closes: the order a strict peer
            expects, and what RFC 6455 section 5.5.1 allows ("an endpoint MAY
            delay sending a Close frame until its current message is sent").
        logger: Where to log protocol events; ``openline.protocol`` by default.

    Raises:
        ValueError: ``max_size`` is negative.
    """

    # Slots: an idle connection is one of thousands; a __dict__ would double its size.
    __slots__ = (
        "_buffer",
        "_decoder",
        "_decoders",
        "_discarding",
        "_eof_received",
        "_eof_sent",
        "_events",
        "_held_pong",
        "_is_client",
        "_mask_pool",
        "_mask_pos",
        "_msg_chunks",
        "_msg_compressed",
        "_msg_opcode",
        "_msg_size",
        "_output",
        "_output_paused",
        "_partial_checked",
        "_pending_close",
        "_pending_is_failure",
        "_rsv_allowed",
        "_send_opcode",
        "_state",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "debug",
        "defer_close",
        "extensions",
        "logger",
        "max_size",
        "protocol_error",
    )

    def __init__(
        self,
        side: Side,
        *,
        extensions: Sequence[Extension] = (),
        max_size: int | None = DEFAULT_MAX_SIZE,
        defer_close: bool = False,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0 or None, got {max_size}")
        self.extensions = tuple(extensions)
        self.max_size = max_size
        self.defer_close = defer_close
        self.logger = logger if logger is not None else logging.getLogger("openline.protocol")
        self.debug = self.logger.isEnabledFor(logging.DEBUG)

        self._is_client = side is Side.CLIENT
        # RSV1 belongs to permessage-deflate; no extension here uses RSV2 or RSV3.
        self._rsv_allowed = 0x40 if any(e.name == "permessage-deflate" for e in extensions) else 0
        self._decoders = tuple(reversed(self.extensions))

        self._state = State.OPEN
        # These start as None and are made on first use: an idle connection then
        # holds no empty containers (each would cost 56 bytes or more).
        self._events: list[Event] | None = None
        self._output: list[bytes] | None = None
        self._buffer: bytearray | None = None  # bytes of an incomplete frame
        self._discarding = False  # after a close frame or a failure: ignore input
        self._eof_received = False
        self._eof_sent = False
        # Flow control of our answers to pings (see pause_output): the payload of
        # the most recent ping not answered yet, while pongs are coalesced.
        self._output_paused = False
        self._held_pong: bytes | None = None

        # The message being received.
        self._msg_opcode = 0  # 0: none; _TEXT or _BINARY while one is in progress
        self._msg_compressed = False
        self._msg_size = 0
        # Earlier frames of the message: bytes for binary, str for text (decoded).
        self._msg_chunks: list[Any] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None  # made for the first text frame
        # Bytes of the frame at the head of the buffer already checked as UTF-8.
        self._partial_checked = 0

        # The message being sent, when it is fragmented.
        self._send_opcode = 0

        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        #: The peer's protocol violation, if any; the I/O layer re-raises it.
        self.protocol_error: ProtocolError | None = None
        self._pending_close: Close | None = None
        self._pending_is_failure = False

        self._mask_pool = b""
        self._mask_pos = 0

    # --- public state ---------------------------------------------------------------------

    @property
    def side(self) -> Side:
        """Whether this is the server or the client end."""
        # A property over _is_client rather than a slot of its own: every slot
        # counts on thousands of idle connections.
        return Side.CLIENT if self._is_client else Side.SERVER

    @property
    def state(self) -> State:
        """The connection's state."""
        return self._state

    @property
    def eof_sent(self) -> bool:
        """Whether the end of stream was queued in :meth:`data_to_send`."""
        return self._eof_sent

    @property
    def output_paused(self) -> bool:
        """Whether the I/O layer reported that it can't write (:meth:`pause_output`)."""
        return self._output_paused

    @property
    def pong_held(self) -> bool:
        """Whether the answer to a ping waits until output is possible (:meth:`pause_output`)."""
        return self._held_pong is not None

    @property
    def close_pending(self) -> bool:
        """Whether our close frame is held back until :meth:`flush_close` (``defer_close``)."""
        return self._pending_close is not None

    @property
    def close_code(self) -> int:
        """The close code received, 1005 when the frame had none, 1006 when none arrived."""
        if self.close_rcvd is None:
            return CloseCode.ABNORMAL_CLOSURE
        return self.close_rcvd.code

    @property
    def close_exc(self) -> ConnectionClosed:
        """The exception to raise when the application uses a closed connection.

        :class:`ConnectionClosedOK` when both close frames crossed with 1000,
        1001 or no code (1005); :class:`ConnectionClosedError` otherwise.
        """
        rcvd, sent = self.close_rcvd, self.close_sent
        # A close frame without a code (1005) is a clean close too.
        ok = (1000, 1001, 1005)
        exc_type: type[ConnectionClosed]
        if rcvd is not None and sent is not None and rcvd.code in ok and sent.code in ok:
            exc_type = ConnectionClosedOK
        else:
            exc_type = ConnectionClosedError
        exc = exc_type(rcvd, sent, self.close_rcvd_then_sent)
        exc.__cause__ = self.protocol_error
        return exc

    # --- public input ---------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the network.

        Raises:
            InvalidState: The end of stream was already received.
        """
        if self._eof_received:
            raise InvalidState("data received after end of stream")
        if self._discarding:
            return
        buffer = self._buffer
        if buffer is None:
            # Nothing left over from earlier calls: parse ``data`` where it is, and
            # copy only an incomplete frame at its end (usually nothing).
            pos = self._parse(data)
            if pos < len(data) and not self._discarding:
                self._buffer = bytearray(memoryview(data)[pos:])
            return
        buffer += data
        pos = self._parse(buffer)
        if self._discarding or pos == len(buffer):
            self._buffer = None
        elif pos:
            del buffer[:pos]

    def receive_eof(self) -> None:
        """Record that the peer closed its side of the TCP connection.

        Raises:
            InvalidState: The end of stream was already received.
        """
        if self._eof_received:
            raise InvalidState("end of stream received twice")
        self._eof_received = True
        self.flush_close()
        self._state = State.CLOSED
        if self._buffer and not self._discarding and self.protocol_error is None:
            # A frame was cut short: the connection closed abnormally (1006).
            self.protocol_error = ProtocolError("connection closed in the middle of a frame", 1006)
        self._buffer = None
        # Section 7.1.1: a client answers the server's TCP close with its own.
        if self._is_client and not self._eof_sent:
            self._send_eof()

    # --- public commands ------------------------------------------------------------------

    def send_text(self, data: str | bytes, *, fin: bool = True) -> None:
        """Send a text message, or its first fragment when ``fin`` is false.

        ``bytes`` must already be UTF-8; they are sent as they are.

        Raises:
            InvalidState: The connection is closing, or a fragmented message is
                in progress.
        """
        if isinstance(data, str):
            data = data.encode()
        if (
            fin
            and self.close_sent is None
            and not self._eof_sent
            and not self._send_opcode
            and not self.extensions
            and len(data) < _SPLIT_FRAME_SIZE
        ):
            # The hot path: a whole message, no extension, one chunk.
            frame = encode_frame(0x81, data, self._next_mask() if self._is_client else None)
            output = self._output
            if output is None:
                self._output = [frame]
            else:
                output.append(frame)
            return
        self._check_new_message()
        self._send_data(_TEXT, data, fin)

    def send_binary(self, data: bytes | bytearray | memoryview, *, fin: bool = True) -> None:
        """Send a binary message, or its first fragment when ``fin`` is false.

        Raises:
            InvalidState: The connection is closing, or a fragmented message is
                in progress.
        """
        if (
            fin
            and self.close_sent is None
            and not self._eof_sent
            and not self._send_opcode
            and not self.extensions
            and len(data) < _SPLIT_FRAME_SIZE
        ):
            # The hot path: encode_frame copies ``data`` once, into the frame.
            frame = encode_frame(0x82, data, self._next_mask() if self._is_client else None)
            output = self._output
            if output is None:
                self._output = [frame]
            else:
                output.append(frame)
            return
        self._check_new_message()
        self._send_data(_BINARY, bytes(data), fin)

    def send_continuation(self, data: str | bytes, *, fin: bool) -> None:
        """Send the next fragment of the message started by ``send_text/binary``.

        Raises:
            InvalidState: No fragmented message is in progress, or the connection
                is closing.
        """
        self._check_sendable()
        if not self._send_opcode:
            raise InvalidState("no fragmented message to continue")
        if isinstance(data, str):
            data = data.encode()
        self._send_data(_CONT, bytes(data), fin)

    def send_ping(self, data: bytes = b"") -> None:
        """Send a ping; the peer answers with a pong carrying the same data.

        Raises:
            ValueError: ``data`` exceeds 125 bytes.
            InvalidState: The connection is closing.
        """
        self._check_sendable()
        self._send_control(_PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong, a one-way heartbeat (section 5.5.3).

        Raises:
            ValueError: ``data`` exceeds 125 bytes.
            InvalidState: The connection is closing.
        """
        self._check_sendable()
        self._send_control(_PONG, data)

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake, or answer the peer's close frame.

        Args:
            code: The close code; ``None`` sends a close frame without one.
            reason: A short explanation, at most 123 bytes in UTF-8.

        Raises:
            ValueError: ``code`` may not be sent, or ``reason`` is too long, or a
                reason is given without a code.
            InvalidState: A close frame was already sent.
        """
        if self.close_sent is not None or self._eof_sent:
            raise InvalidState("close frame already sent")
        if self._pending_close is not None:
            # The peer's close or violation decides the close code, not the application.
            self.flush_close()
            return
        if code is None:
            if reason:
                raise ValueError("a close reason requires a close code")
            close = Close(CloseCode.NO_STATUS_RCVD)
        else:
            close = Close(code, reason)
            close.check()
        self._send_close_frame(close)

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the WebSocket connection (section 7.1.7): close now, ignore the rest.

        Sends a close frame with ``code`` unless one was sent already; then the
        server closes the TCP connection at once while the client waits for it.

        Raises:
            ValueError: ``code`` may not be sent or ``reason`` is too long.
        """
        close = Close(code, reason)
        close.check()
        self.flush_close()
        self._fail(close)

    def flush_close(self) -> None:
        """Send the close frame held back by ``defer_close``.

        Does nothing when none is pending.
        """
        close, self._pending_close = self._pending_close, None
        if close is None:
            return
        if self._pending_is_failure:
            self._fail(close)
        else:
            self.close_rcvd_then_sent = True
            self._send_close_frame(close)

    def pause_output(self) -> None:
        """Tell the core that its output can't be written for now.

        The I/O layer calls this when its write buffer is above its high-water
        mark. Until :meth:`resume_output`, pings are answered with at most one
        pong, for the most recent ping, which :meth:`data_to_send` returns once
        output resumes (RFC 6455, section 5.5.3: a pong may answer only the most
        recent ping). Data frames and close frames are queued as usual: their
        flow control belongs to the application.
        """
        self._output_paused = True

    def resume_output(self) -> None:
        """Tell the core that its output can be written again; see :meth:`pause_output`.

        The pong held back meanwhile, if any, comes with the next :meth:`data_to_send`.
        """
        self._output_paused = False

    # --- public output --------------------------------------------------------------------

    def events_received(self) -> list[Event]:
        """Return the events received since the last call, in order."""
        events, self._events = self._events, None
        return [] if events is None else events

    def data_to_send(self) -> list[bytes]:
        """Return the bytes to write since the last call; ``b""`` means half-close.

        The chunks are to be written in order as one stream; they needn't be
        whole frames (a large frame comes as its header and its payload).
        A pong held back (see :meth:`pause_output`) comes last, unless output
        is paused.
        """
        if self._held_pong is not None and not self._output_paused:
            self._release_pong()
        output, self._output = self._output, None
        return [] if output is None else output

    def close_expected(self) -> bool:
        """Tell whether the TCP connection is expected to close soon.

        The I/O layer arms its close timeout when this becomes true, and aborts
        the TCP connection if it has not closed by then.
        """
        return self._state is not State.OPEN

    # --- private: parsing -----------------------------------------------------------------

    def _parse(self, buffer: bytes | bytearray | memoryview) -> int:
        """Handle every complete frame at the head of ``buffer``; return the bytes used."""
        pos = 0
        end = len(buffer)
        # The compiled parser takes runs of whole unfragmented messages between
        # frames of any other kind, which this loop handles one at a time. It
        # runs only between messages (nothing reassembled or partly checked)
        # and without extensions, whose frames this loop decodes.
        fast = None if self._decoders else parse_frames
        while not self._discarding:
            if fast is not None and not self._msg_opcode and self._msg_chunks is None:
                events = self._events
                if events is None:
                    events = self._events = []
                pos = fast(
                    buffer, pos, self._is_client, self.max_size, events, TextMessage, BinaryMessage
                )
                if not events:
                    self._events = None
            if end - pos < 2:
                break
            first = buffer[pos]
            second = buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                (length,) = _UNPACK_H(buffer, pos + 2)
                header = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = _UNPACK_Q(buffer, pos + 2)
                header = 10
            masked = second & 0x80
            if masked:
                header += 4
            error = self._check_header(first, second, length)
            if error is not None:
                self._fail_peer(error)
                break
            if end - pos < header:
                break
            frame_end = pos + header + length
            if frame_end > end:
                self._check_partial_text(buffer, first, pos, header, end)
                break
            if masked:
                mask_key = bytes(buffer[pos + header - 4 : pos + header])
                with memoryview(buffer) as view:
                    payload = apply_mask(view[pos + header : frame_end], mask_key)
            else:
                payload = bytes(buffer[pos + header : frame_end])
            pos = frame_end
            self._process_frame(first, payload)
        return pos

    def _check_header(self, first: int, second: int, length: int) -> Close | None:
        """Validate a frame header before its payload arrives; return the close to fail with."""
        opcode = first & 0x0F
        # Section 5.2: reserved bits must be 0 unless an extension defines them.
        if first & 0x70 & ~self._rsv_allowed:
            return Close(CloseCode.PROTOCOL_ERROR, "reserved bits must be 0")
        if opcode not in _KNOWN_OPCODES:
            return Close(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
        # Section 5.1: a server fails unmasked frames, a client fails masked ones.
        if bool(second & 0x80) == self._is_client:
            what = "masked frame from the server" if self._is_client else "unmasked frame"
            return Close(CloseCode.PROTOCOL_ERROR, what)
        if opcode >= 8:
            # Section 5.5: control frames are never fragmented and carry <= 125 bytes.
            if not first & 0x80:
                return Close(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
            if length > MAX_CONTROL_PAYLOAD:
                reason = f"control frame of {length} bytes exceeds 125 bytes"
                return Close(CloseCode.PROTOCOL_ERROR, reason)
            if first & 0x40:
                return Close(CloseCode.PROTOCOL_ERROR, "reserved bit 1 set on a control frame")
            return None
        # Section 5.4: continuation frames only inside a message, new ones outside.
        if opcode == _CONT:
            if not self._msg_opcode:
                return Close(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
            if first & 0x40:
                return Close(CloseCode.PROTOCOL_ERROR, "reserved bit 1 set on a continuation frame")
        elif self._msg_opcode:
            return Close(CloseCode.PROTOCOL_ERROR, "new message before the previous one ended")
        if length >> 63:
            # Section 5.2: the most significant bit of a 64-bit length must be 0.
            return Close(CloseCode.PROTOCOL_ERROR, "frame length has its most significant bit set")
        max_size = self.max_size
        if max_size is not None:
            compressed = bool(first & 0x40) or (opcode == _CONT and self._msg_compressed)
            limit = max_size + _COMPRESSED_SLACK if compressed else max_size
            size = (0 if opcode != _CONT else self._msg_size) + length
            if size > limit:
                self.protocol_error = PayloadTooBig(size, max_size)
                return Close(CloseCode.MESSAGE_TOO_BIG, f"message exceeds {max_size} bytes")
        return None

    def _check_partial_text(
        self, buffer: bytes | bytearray | memoryview, first: int, pos: int, header: int, end: int
    ) -> None:
        """Check the UTF-8 of a text frame that has only partly arrived (section 8.1).

        Invalid text fails the connection as soon as the first bad byte arrives,
        not when the whole frame has: a peer cannot park megabytes of garbage.
        """
        opcode = first & 0x0F
        in_text = opcode == _TEXT or (opcode == _CONT and self._msg_opcode == _TEXT)
        if not in_text or first & 0x40 or self._msg_compressed:
            return
        start = pos + header + self._partial_checked
        if end <= start:
            return
        chunk = bytes(buffer[start:end])
        if self._is_client is False:
            key = bytes(buffer[pos + header - 4 : pos + header])
            shift = self._partial_checked % 4
            chunk = apply_mask(chunk, key[shift:] + key[:shift])
        try:
            text = decode_chunk(self._utf8_decoder(), chunk)
        except UnicodeDecodeError:
            self._fail_peer(Close(CloseCode.INVALID_DATA, "invalid UTF-8 in text message"))
            return
        self._add_text(text)
        self._partial_checked += len(chunk)

    def _process_frame(self, first: int, payload: bytes) -> None:
        """Handle one complete frame whose header already passed ``_check_header``."""
        opcode = first & 0x0F
        if opcode >= 8:
            self._process_control(opcode, payload)
            return
        fin = bool(first & 0x80)
        if opcode != _CONT and self._msg_opcode == 0:
            self._start_message(opcode, compressed=bool(first & 0x40))
        if self._decoders:
            frame = Frame(Opcode(opcode), payload, fin, bool(first & 0x40))
            try:
                for extension in self._decoders:
                    frame = extension.decode(frame, max_size=self._remaining())
            except ProtocolError as exc:
                self.protocol_error = exc
                if isinstance(exc, PayloadTooBig) and self.max_size is not None:
                    # The extension measured against the remaining budget: report totals.
                    reason = f"message exceeds {self.max_size} bytes"
                    self.protocol_error = PayloadTooBig(self._msg_size + exc.size, self.max_size)
                else:
                    reason = _truncate_reason(exc.msg)
                self._fail_peer(Close(exc.code, reason))
                return
            payload = frame.data
        self._msg_size += len(payload)
        if self._msg_opcode == _TEXT:
            checked, self._partial_checked = self._partial_checked, 0
            try:
                if fin and not checked and self._msg_chunks is None:
                    # A whole message in one frame: no decoder state to carry.
                    text = payload.decode("utf-8")
                else:
                    decoder = self._utf8_decoder()
                    text = decode_chunk(decoder, payload[checked:] if checked else payload, fin)
            except UnicodeDecodeError:
                self._fail_peer(Close(CloseCode.INVALID_DATA, "invalid UTF-8 in text message"))
                return
            if fin:
                parts = self._msg_chunks
                if parts is not None:
                    parts.append(text)
                    text = "".join(parts)
                self._emit(TextMessage(text))
                self._end_message()
            else:
                self._add_text(text)
        elif fin:
            parts_b = self._msg_chunks
            if parts_b is not None:
                parts_b.append(payload)
                payload = b"".join(parts_b)
            self._emit(BinaryMessage(payload))
            self._end_message()
        elif self._msg_chunks is None:
            self._msg_chunks = [payload]
        else:
            self._msg_chunks.append(payload)

    def _utf8_decoder(self) -> codecs.IncrementalDecoder:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = IncrementalUtf8Decoder()
        return decoder

    def _add_text(self, text: str) -> None:
        if self._msg_chunks is None:
            self._msg_chunks = [text]
        else:
            self._msg_chunks.append(text)

    def _emit(self, event: Event) -> None:
        events = self._events
        if events is None:
            self._events = [event]
        else:
            events.append(event)

    def _queue(self, data: bytes) -> None:
        output = self._output
        if output is None:
            self._output = [data]
        else:
            output.append(data)

    def _remaining(self) -> int | None:
        """How many more bytes the current message may hold."""
        if self.max_size is None:
            return None
        return self.max_size - self._msg_size

    def _start_message(self, opcode: int, *, compressed: bool) -> None:
        self._msg_opcode = opcode
        self._msg_compressed = compressed
        self._msg_size = 0

    def _end_message(self) -> None:
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_size = 0
        self._msg_chunks = None
        # Made again for the next fragmented or partly received text message.
        self._decoder = None

    def _process_control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            self._emit(Ping(payload))
            # Section 5.5.2: answer a ping with a pong carrying the same data,
            # unless our close frame already went out.
            if self.close_sent is None:
                self._answer_ping(payload)
        elif opcode == _PONG:
            self._emit(Pong(payload))
        elif opcode == _CLOSE:
            self._process_close(payload)
        else:  # pragma: no cover - _check_header refused other control opcodes
            raise AssertionError(f"unexpected control opcode {opcode}")

    def _process_close(self, payload: bytes) -> None:
        try:
            close = Close.parse(payload)
        except ProtocolError as exc:
            self.protocol_error = exc
            self._fail_peer(Close(exc.code, "invalid close frame"))
            return
        self.close_rcvd = close
        self._emit(close)
        # Section 5.5.1: after a close frame, nothing more is expected.
        self._discarding = True
        if self.close_sent is None:
            # Section 5.5.1: answer with a close frame, echoing the code.
            echo = Close(close.code) if close.code != CloseCode.NO_STATUS_RCVD else close
            if self.defer_close:
                self._pending_close = echo
                self._pending_is_failure = False
            else:
                self.close_rcvd_then_sent = True
                self._send_close_frame(echo)
        else:
            self.close_rcvd_then_sent = False
            self._state = State.CLOSING
            if not self._is_client:
                self._send_eof()

    def _answer_ping(self, payload: bytes) -> None:
        """Queue the pong for a ping, or hold it while output is blocked or piling up.

        Section 5.5.3: when several pings are unanswered, answering only the most
        recent one is enough. Holding at most one pong bounds what a peer that
        pings without reading can make us keep.
        """
        output = self._output
        if (
            self._output_paused
            or self._held_pong is not None
            or (output is not None and len(output) >= _PONG_BURST)
        ):
            self._held_pong = payload
            return
        self._send_control(_PONG, payload)

    def _release_pong(self) -> None:
        """Queue the held pong, if any: before a close frame or the end of stream, or on resume."""
        payload, self._held_pong = self._held_pong, None
        if payload is not None:
            self._queue(self._encode(_PONG | 0x80, payload))

    # --- private: sending -----------------------------------------------------------------

    def _check_sendable(self) -> None:
        if self.close_sent is not None or self._eof_sent:
            raise InvalidState(f"connection is {self._state.name.lower()}: cannot send")

    def _check_new_message(self) -> None:
        self._check_sendable()
        if self._send_opcode:
            raise InvalidState("a fragmented message is in progress: send its continuation first")

    def _send_data(self, opcode: int, data: bytes, fin: bool) -> None:
        if opcode != _CONT:
            self._send_opcode = opcode
        if fin:
            self._send_opcode = 0
        key = self._next_mask() if self._is_client else None
        if self.extensions:
            frame = Frame(Opcode(opcode), data, fin)
            for extension in self.extensions:
                frame = extension.encode(frame)
            self._queue(encode_frame(frame_head(frame), frame.data, key))
            return
        head = opcode | (0x80 if fin else 0)
        if len(data) >= _SPLIT_FRAME_SIZE:
            # Header and payload as two chunks: joining them would copy the payload.
            self._queue(encode_header(head, len(data), key))
            self._queue(data if key is None else apply_mask(data, key))
            return
        self._queue(encode_frame(head, data, key))

    def _send_control(self, opcode: int, data: bytes) -> None:
        if len(data) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame payload of {len(data)} bytes exceeds 125 bytes")
        self._queue(self._encode(opcode | 0x80, bytes(data)))

    def _encode(self, head: int, data: bytes) -> bytes:
        """Serialize a frame without extensions, masked on the client side."""
        return encode_frame(head, data, self._next_mask() if self._is_client else None)

    def _next_mask(self) -> bytes:
        """Return a fresh random masking key (section 5.3: strong entropy).

        Keys come from one ``os.urandom`` call per 1024 frames rather than one
        system call per frame.
        """
        pos = self._mask_pos
        if pos >= len(self._mask_pool):
            self._mask_pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._mask_pos = pos + 4
        return self._mask_pool[pos : pos + 4]

    def _send_close_frame(self, close: Close) -> None:
        self._release_pong()  # nothing may follow our close frame (section 5.5.1)
        self.close_sent = close
        self._state = State.CLOSING
        self._queue(self._encode(_CLOSE | 0x80, close.serialize()))
        # Section 7.1.1: the server closes the TCP connection once both close
        # frames have crossed; the client waits for the server to do so.
        if not self._is_client and self.close_rcvd is not None:
            self._send_eof()

    def _fail_peer(self, close: Close) -> None:
        """Fail because of the peer's input: at once, or later with ``defer_close``."""
        if self.protocol_error is None:
            self.protocol_error = ProtocolError(close.reason, close.code)
        if not self.defer_close or self.close_sent is not None or self._eof_sent:
            self._fail(close)
            return
        self._pending_close = close
        self._pending_is_failure = True
        self._discarding = True
        self._buffer = None

    def _fail(self, close: Close) -> None:
        """Fail the connection: send ``close`` unless a close frame went out; stop reading."""
        self._discarding = True
        self._buffer = None
        if self._state is State.CLOSED:
            return
        if self.close_sent is None and not self._eof_sent:
            self._release_pong()  # nothing may follow our close frame (section 5.5.1)
            self.close_sent = close
            self._queue(self._encode(_CLOSE | 0x80, close.serialize()))
        self._state = State.CLOSING
        # Section 7.1.7: after failing, the server drops the TCP connection at once.
        if not self._is_client and not self._eof_sent:
            self._send_eof()

    def _send_eof(self) -> None:
        self._release_pong()
        self._eof_sent = True
        self._queue(b"")


def _truncate_reason(text: str) -> str:
    """Fit ``text`` in a close frame: at most 123 bytes of UTF-8 (section 5.5)."""
    encoded = text.encode()
    if len(encoded) <= 123:
        return text
    return encoded[:120].decode(errors="ignore") + "..."
