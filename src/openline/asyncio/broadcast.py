"""Send one message to many connections, encoding its frame once.

Server frames are not masked (RFC 6455, section 5.1), so the bytes of a frame
don't depend on the connection: :class:`Broadcast` serializes a message once and
writes the same ``bytes`` object to every transport. Compression changes that:

* a connection without extensions gets the shared plain frame;
* a connection that negotiated permessage-deflate with *server no context
  takeover* resets its compressor after every message, so its compressed frame
  depends only on the compression parameters: it is compressed once per set of
  parameters and shared too;
* any other extension state (deflate with context takeover) is per connection:
  the message goes through that connection's core, which compresses it.

Writing never waits: a slow reader's transport buffer grows instead. Callers
bound it themselves by reading :func:`buffered_amount` after writing (the hub's
:mod:`~openline.hub.fanout` does this, with the kernel's queue too).

Only the public seams of :class:`~openline.asyncio.connection.Connection` are
used: :attr:`~.Connection.is_writable`, :attr:`~.Connection.extensions`,
:meth:`~.Connection.write_frame_nowait`, :meth:`~.Connection.send_payload_nowait`,
:meth:`~.Connection.wait_fragments_sent` and :meth:`~.Connection.drain`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from ..protocol.extensions.base import Extension
from ..protocol.extensions.deflate import PerMessageDeflate
from ..protocol.frames import Frame, Opcode, serialize_frame
from ..typing import DataLike
from .connection import Connection

__all__ = ["Broadcast", "Writable", "broadcast", "buffered_amount"]

#: The compression parameters that decide a no-context-takeover frame's bytes.
_DeflateKey = tuple[int, int, int, int]


class Writable(Protocol):
    """What :class:`Broadcast` needs of a connection.

    :class:`~openline.asyncio.connection.Connection` has all of it; so may
    another front-end (the hub's plain ASGI link, for one) that takes whole
    frames or payloads and sends them its own way.
    """

    @property
    def is_writable(self) -> bool: ...

    @property
    def extensions(self) -> Sequence[Extension]: ...

    def write_frame_nowait(self, frame: bytes) -> None: ...

    def send_payload_nowait(self, payload: bytes, *, text: bool) -> None: ...

    async def wait_fragments_sent(self) -> None: ...

    async def drain(self) -> None: ...


class Broadcast:
    """A message prepared once, to write to any number of server connections.

    Args:
        message: ``str`` for a text message, bytes-like for binary.
        text: Send bytes as a text message; they must be valid UTF-8 already.
            Ignored for ``str``.

    Example::

        prepared = Broadcast('{"type": "tick"}')
        for ws in server.connections:
            prepared.write(ws)
    """

    __slots__ = ("_compressed", "_frame", "_opcode", "payload")

    def __init__(self, message: DataLike, *, text: bool = False) -> None:
        if isinstance(message, str):
            self.payload = message.encode()
            self._opcode = Opcode.TEXT
        else:
            self.payload = bytes(message)
            self._opcode = Opcode.TEXT if text else Opcode.BINARY
        self._frame: bytes | None = None
        self._compressed: dict[_DeflateKey, bytes] | None = None

    @property
    def frame(self) -> bytes:
        """The uncompressed server frame, serialized on first use."""
        frame = self._frame
        if frame is None:
            frame = self._frame = serialize_frame(Frame(self._opcode, self.payload), mask=False)
        return frame

    def write(self, connection: Writable) -> bool:
        """Write the message to ``connection`` without waiting.

        Returns:
            ``False`` when nothing was written: the connection isn't open, or it
            is in the middle of sending a fragmented message (the frame can't be
            interleaved with its fragments); ``True`` otherwise.
        """
        if not connection.is_writable:
            return False
        self._write(connection)
        return True

    async def send(self, connection: Writable) -> None:
        """Write the message to ``connection`` and respect its flow control.

        Like ``connection.send()``: queues behind a fragmented message being
        sent, and waits while the transport's buffer is above the connection's
        ``write_limit``.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        await connection.wait_fragments_sent()
        if connection.is_writable:
            self._write(connection)
        await connection.drain()  # raises ConnectionClosed if it wasn't writable

    def _write(self, connection: Writable) -> None:
        extensions = connection.extensions
        if not extensions:
            connection.write_frame_nowait(self.frame)
            return
        shared = _shared_deflate(extensions)
        if shared is None:
            # Per-connection compression state: only this connection's core can encode it.
            connection.send_payload_nowait(self.payload, text=self._opcode is Opcode.TEXT)
            return
        connection.write_frame_nowait(self._compressed_frame(*shared))

    def _compressed_frame(self, key: _DeflateKey, extension: PerMessageDeflate) -> bytes:
        cache = self._compressed
        if cache is None:
            cache = self._compressed = {}
        frame = cache.get(key)
        if frame is None:
            # With local_no_context_takeover the extension resets its compressor
            # after each message, so encoding through any connection's extension
            # gives bytes that every connection with the same parameters can use,
            # and leaves that extension's state as it was.
            encoded = extension.encode(Frame(self._opcode, self.payload))
            frame = cache[key] = serialize_frame(encoded, mask=False)
        return frame


def broadcast(connections: Iterable[Connection], message: DataLike, *, text: bool = False) -> int:
    """Write ``message`` to every open connection in ``connections``, without waiting.

    The frame is encoded once (see the module's docstring for compression).
    Connections that are closing, or in the middle of a fragmented message, are
    skipped.

    Args:
        connections: Server connections.
        message: ``str`` for a text message, bytes-like for binary.
        text: Send bytes as a text message; they must be valid UTF-8 already.

    Returns:
        How many connections the message was written to.
    """
    prepared = Broadcast(message, text=text)
    return sum(1 for connection in connections if prepared.write(connection))


def buffered_amount(connection: Connection) -> int:
    """Bytes written to ``connection`` that haven't reached the network yet.

    Returns 0 before the connection is made and after it is lost.
    """
    try:
        return connection.buffered_amount
    except AttributeError:  # connection_made hasn't run
        return 0


def _shared_deflate(
    extensions: Sequence[Extension],
) -> tuple[_DeflateKey, PerMessageDeflate] | None:
    """The extension whose compressed frames can be shared, with their cache key."""
    if len(extensions) != 1:
        return None
    extension = extensions[0]
    if not isinstance(extension, PerMessageDeflate) or not extension.local_no_context_takeover:
        return None
    key = (
        extension.local_max_window_bits,
        extension._level,
        extension._mem_level,
        extension._strategy,
    )
    return key, extension
