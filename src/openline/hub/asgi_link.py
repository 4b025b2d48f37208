"""A hub connection over plain ASGI messages: :class:`AsgiLink`.

On an ASGI server whose WebSocket engine isn't openline's, the hub app only has
the ``receive`` and ``send`` callables of the scope. :class:`AsgiLink` gives
the hub what it needs of a connection (:class:`~openline.hub.peer.Peer`) on top
of them:

* incoming ``websocket.receive`` events are the messages of ``async for``;
* outgoing messages go into a bounded queue that **one writer task** empties
  with ``websocket.send``, in order; ``close`` queues ``websocket.close``
  behind them;
* :attr:`~AsgiLink.buffered_amount` counts the bytes in that queue, the
  message being sent included, so the hub's slow-consumer policy
  (:mod:`~openline.hub.fanout`) applies: a subscriber whose server doesn't
  take its messages fast enough passes ``max_buffer`` here and is evicted.

What the plain path can't do, and costs (``docs/asgi.md``): every message is
a ``websocket.send`` event, which the server encodes for each subscriber (no
frame encoded once for all); the server's own buffer and the kernel's send
queue are invisible, so only the bytes held here count toward ``max_buffer``,
and a stalled reader is seen only once the server stops taking messages; the
ASGI server does keepalive and limits message sizes its own way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from ..exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from ..protocol.extensions.base import Extension
from ..protocol.frames import Close, CloseCode, Opcode
from ..protocol.http11 import Request
from ..typing import Data, LoggerLike

__all__ = ["ABORT_CODE", "DEFAULT_CLOSE_TIMEOUT", "DEFAULT_WRITE_LIMIT", "AsgiLink"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: ``(high, low)`` bytes queued at which a reply waits, and at which it goes on.
DEFAULT_WRITE_LIMIT = (64 * 1024, 16 * 1024)
#: Seconds ``close()`` waits for ``websocket.close`` to leave before it aborts.
DEFAULT_CLOSE_TIMEOUT = 10.0
#: The close code of :meth:`AsgiLink.abort` (try again later): ASGI can't reset
#: a TCP connection, so the queue is dropped and the close goes out at once.
ABORT_CODE = 1013

# Close codes of a normal end (RFC 6455, section 7.4.1), 1005 being "no code".
_NORMAL = frozenset((CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, 1005))
# A close reason fits in a control frame: 125 bytes minus the code's 2 (section 5.5).
_MAX_REASON = 123


class _State(enum.Enum):
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class AsgiLink:
    """One hub client over ASGI ``receive`` and ``send`` (see the module).

    Call :meth:`start` after ``websocket.accept``, and :meth:`finish` once the
    hub is done with the connection.

    Args:
        receive: The ASGI ``receive`` callable of the connection.
        send: The ASGI ``send`` callable.
        request: The upgrade request, rebuilt from the scope.
        remote_address: The scope's ``client``, or ``None``.
        write_limit: ``(high, low)``, or ``high`` with ``low = high // 4``:
            bytes queued above which a reply (not a broadcast, which never
            waits) waits until the queue is back at ``low``.
        close_timeout: Seconds :meth:`close` waits for its close to leave
            before it aborts; ``None`` waits forever.
        logger: Where to log a ``send`` that failed.

    Raises:
        ValueError: ``write_limit`` or ``close_timeout`` is out of range.
    """

    __slots__ = (
        "_close",
        "_close_sent",
        "_close_timeout",
        "_drained",
        "_high",
        "_id",
        "_logger",
        "_low",
        "_queue",
        "_queued",
        "_rcvd",
        "_receive",
        "_send",
        "_state",
        "_taken",
        "_wake",
        "_writer",
        "remote_address",
        "request",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        request: Request,
        remote_address: Any,
        *,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        logger: LoggerLike | None = None,
    ) -> None:
        high, low = (write_limit, write_limit // 4) if isinstance(write_limit, int) else write_limit
        if not 0 <= low <= high:
            raise ValueError(
                f"write_limit must be (high, low) with 0 <= low <= high, got {write_limit}"
            )
        if close_timeout is not None and close_timeout <= 0:
            raise ValueError(f"close_timeout must be positive or None, got {close_timeout}")
        self._receive = receive
        self._send = send
        self.request: Request | None = request
        self.remote_address = remote_address
        self._high, self._low = high, low
        self._close_timeout = close_timeout
        self._logger: LoggerLike = logger or logging.getLogger("openline.hub")
        self._id: uuid.UUID | None = None
        self._state = _State.OPEN
        # Payloads with their kind, then at most one close, in sending order.
        self._queue: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._queued = 0
        # Bytes of messages the server's send took: the link's progress.
        self._taken = 0
        self._close: Close | None = None
        self._rcvd: Close | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._close_sent = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    # --- lifetime ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task; call it once, after ``websocket.accept``."""
        if self._writer is not None:
            raise RuntimeError("the link is started already")
        self._writer = asyncio.ensure_future(self._write_loop())

    async def finish(self) -> None:
        """Close if the hub didn't, then end the writer task.

        A close that an abort sent gets ``close_timeout`` to leave first.
        """
        if self._state is _State.OPEN:
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")
        writer = self._writer
        if writer is None or writer.done():
            return
        if self._state is _State.CLOSING:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._close_sent.wait(), self._close_timeout)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    # --- Peer: identity ----------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique id for this connection, made on first use."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def extensions(self) -> Sequence[Extension]:
        """None: the ASGI server negotiates and applies its own."""
        return ()

    # --- Peer: sending -----------------------------------------------------------------

    @property
    def is_writable(self) -> bool:
        """Whether a message can be queued: the connection is open."""
        return self._state is _State.OPEN

    @property
    def buffered_amount(self) -> int:
        """Bytes queued here and not yet taken by the server's ``send``."""
        return self._queued

    def outgoing_amount(self) -> int:
        """The same as :attr:`buffered_amount`: the server's buffers aren't visible."""
        return self._queued

    def acked_amount(self) -> int:
        """Payload bytes the server's ``send`` has taken so far: the nearest thing to TCP
        acknowledgements over ASGI.

        The slow-consumer sweep judges progress by it. Judged by the queue shrinking
        instead, a subscriber that reads everything looks stalled whenever each
        broadcast refills its queue before the sweep comes back.
        """
        return self._taken

    def limit_send_buffer(self, size: int) -> None:
        """Not possible over ASGI: does nothing and returns ``None``."""
        return None

    def write_frame_nowait(self, frame: bytes) -> None:
        """Queue the message of a serialized, unmasked, unfragmented server frame.

        The hub shares such frames among the connections of a broadcast; this
        link sends their payload as a ``websocket.send`` event.

        Raises:
            ValueError: ``frame`` isn't one unmasked text or binary frame.
        """
        payload, text = _unframe(frame)
        self._enqueue(payload, text)

    def write_shared(self, frame: bytes) -> int:
        """Queue a shared frame's message if the connection is open (see :class:`Peer`).

        Returns:
            ``-1`` when the connection isn't open, otherwise :attr:`buffered_amount`.
        """
        if self._state is not _State.OPEN:
            return -1
        self.write_frame_nowait(frame)
        return self._queued

    def send_payload_nowait(self, payload: bytes, *, text: bool) -> None:
        """Queue one message; ``text`` payloads must be valid UTF-8.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self._state is not _State.OPEN:
            raise self._closed_exc()
        self._enqueue(payload, text)

    async def wait_fragments_sent(self) -> None:
        """Return at once: messages are never fragmented here."""

    async def drain(self) -> None:
        """Wait while more than the high-water mark of ``write_limit`` is queued.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self._state is not _State.OPEN:
            raise self._closed_exc()
        if self._queued > self._high:
            self._drained.clear()
            await self._drained.wait()
            if self._state is not _State.OPEN:
                raise self._closed_exc()

    # --- Peer: receiving ---------------------------------------------------------------

    @property
    def pending_messages(self) -> int:
        """Always 0: what the server holds for ``receive`` isn't visible, and nothing is
        read ahead here, so the hub answers what it has before it reads more."""
        return 0

    def __aiter__(self) -> AsyncIterator[Data]:
        """Messages until the client goes; a close other than 1000/1001 raises.

        Raises:
            ConnectionClosedError: The connection ended abnormally.
        """
        return self._messages()

    async def _messages(self) -> AsyncIterator[Data]:
        while self._state is not _State.CLOSED:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                yield text if text is not None else bytes(message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                self._disconnected(message)
        exc = self._closed_exc()
        if isinstance(exc, ConnectionClosedError):
            raise exc

    # --- Peer: closing -----------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send ``websocket.close`` after what is queued; abort if it takes too long."""
        if self._state is _State.OPEN:
            self._state = _State.CLOSING
            self._close = Close(code, _truncate(reason))
            self._wake.set()
            self._drained.set()  # repliers waiting for room give up: see drain()
        if self._state is _State.CLOSED:
            return
        try:
            await asyncio.wait_for(self._close_sent.wait(), self._close_timeout)
        except asyncio.TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop what is queued, and close with :data:`ABORT_CODE` at once."""
        if self._state is _State.CLOSED or self._close_sent.is_set():
            return
        self._state = _State.CLOSING
        self._queue.clear()
        self._queued = 0
        self._close = Close(ABORT_CODE, "slow consumer")
        self._drained.set()
        writer = self._writer
        if writer is not None:
            writer.cancel()  # it may be stuck in a send that never returns
        self._writer = asyncio.ensure_future(self._send_close())

    # --- private -----------------------------------------------------------------------

    def _enqueue(self, payload: bytes, text: bool) -> None:
        self._queue.append((payload, text))
        self._queued += len(payload)
        self._wake.set()

    async def _write_loop(self) -> None:
        queue = self._queue
        while True:
            while not queue and self._close is None:
                self._wake.clear()
                await self._wake.wait()
            if not queue:
                await self._send_close()
                return
            payload, text = queue[0]
            event: Message = {"type": "websocket.send"}
            if text:
                event["text"] = payload.decode()
            else:
                event["bytes"] = payload
            try:
                await self._send(event)
            except Exception as exc:  # the server lost the client: stop sending
                self._logger.debug("ASGI send failed: %r", exc)
                self._gone()
                return
            queue.popleft()
            self._queued -= len(payload)
            self._taken += len(payload)
            if self._queued <= self._low:
                self._drained.set()

    async def _send_close(self) -> None:
        close = self._close
        assert close is not None
        try:
            if self._state is not _State.CLOSED:
                await self._send(
                    {"type": "websocket.close", "code": close.code, "reason": close.reason}
                )
        except Exception as exc:
            self._logger.debug("ASGI close failed: %r", exc)
        finally:
            self._close_sent.set()

    def _disconnected(self, message: Mapping[str, Any]) -> None:
        code = int(message.get("code", 1005))
        if code != CloseCode.ABNORMAL_CLOSURE:
            self._rcvd = Close(code, str(message.get("reason") or ""))
        self._gone()

    def _gone(self) -> None:
        """The client is gone: nothing more is sent."""
        self._state = _State.CLOSED
        self._queue.clear()
        self._queued = 0
        self._drained.set()
        self._close_sent.set()
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()

    def _closed_exc(self) -> ConnectionClosed:
        rcvd = self._rcvd
        sent = self._close if self._close_sent.is_set() else None
        codes = [close.code for close in (rcvd, sent) if close is not None]
        normal = bool(codes) and all(code in _NORMAL for code in codes)
        return (ConnectionClosedOK if normal else ConnectionClosedError)(rcvd, sent)


def _unframe(frame: bytes) -> tuple[bytes, bool]:
    """The payload of one unmasked server frame, and whether it is text.

    RFC 6455, section 5.2: FIN and the opcode in the first byte, then a 7-bit
    length, or 126 and a 16-bit one, or 127 and a 64-bit one; no mask here.
    """
    if len(frame) < 2 or frame[0] & 0x80 == 0 or frame[1] & 0x80:
        raise ValueError("expected one unmasked, unfragmented frame")
    opcode = frame[0] & 0x0F
    if opcode not in (Opcode.TEXT, Opcode.BINARY):
        raise ValueError(f"expected a text or binary frame, got opcode {opcode}")
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[start:], opcode == Opcode.TEXT


def _truncate(reason: str) -> str:
    """A close reason cut to what a close frame carries, on a character boundary."""
    data = reason.encode()
    if len(data) <= _MAX_REASON:
        return reason
    return data[:_MAX_REASON].decode(errors="ignore")
