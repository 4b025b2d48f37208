"""The asyncio adapter around the sans-I/O core, shared by servers and clients.

:class:`Connection` is an :class:`asyncio.Protocol`: the event loop calls it with
bytes, it feeds them to :class:`openline.protocol.connection.Connection` (the
"core"), hands complete messages to the :class:`~.messages.MessageQueue` and
writes whatever the core wants to send, all inside ``data_received``: no task
is created per message, or per connection beyond the server's handler task.

Timers, in this order:

==================  ====================================  ===========================
phase               timer                                 when it fires
==================  ====================================  ===========================
opening handshake   ``open_timeout`` (server side)        abort the transport
open                next keepalive ping (``ping_interval``)  send a ping
open                pong deadline (``ping_timeout``)      fail with 1011
closing             ``close_timeout``                     abort the transport
==================  ====================================  ===========================

The opening and closing ones are a ``loop.call_later`` handle per connection,
one at a time. The keepalive steps of an open connection have none: a
:class:`~.keepalive.Keepalive` shared by every connection with the same settings on the
loop sweeps them periodically (a handle costs about 600 bytes per connection).

Flow control, both ways:

* sending writes to the transport at once and waits only while the transport
  is paused (its buffer is above ``write_limit``), until ``resume_writing``;
* receiving pauses the transport while ``max_queue`` messages wait for
  ``recv()``, so that TCP pushes back on the peer;
* receiving also pauses while the transport's write buffer is above
  ``write_limit``: what we read can make us write (pongs, the listener's
  answers), so a peer that doesn't read gets nothing more read from it. The
  core is told (``pause_output``) and keeps at most one pong meanwhile. With
  keepalive on, the pong to our own ping then can't be read either, so such a
  peer is failed with 1011 after ``ping_interval + ping_timeout``, and aborted
  after ``close_timeout`` if the close frame can't be delivered.

The message queue owns the transport's reading switch for both reasons, so
that neither resumes what the other paused.

See :mod:`openline.asyncio.server` and :mod:`openline.asyncio.client` for the
opening handshake of each side.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, NoReturn, cast

from ..exceptions import ConcurrencyError, ConnectionClosed, InvalidState
from ..protocol.connection import Connection as Core
from ..protocol.connection import Side, State
from ..protocol.events import BinaryMessage, Event, Pong, TextMessage
from ..protocol.extensions.base import Extension
from ..protocol.frames import CloseCode
from ..protocol.handshake import Negotiated
from ..protocol.http11 import Request, Response, parse_request, parse_response
from ..typing import Data, DataLike
from .config import Settings
from .keepalive import Keepalive, keepalive_for
from .kernel import bytes_acked, limit_send_buffer, reset_on_close, send_queue_size
from .messages import MessageQueue
from .writes import cork_for, writelines

__all__ = ["KEEPALIVE_TIMEOUT_REASON", "Connection", "is_keepalive_timeout"]

#: The reason of the 1011 close frame sent when a keepalive ping goes unanswered.
KEEPALIVE_TIMEOUT_REASON = "keepalive ping timeout"

_OPEN = State.OPEN
# How long the answer to the peer's close waits for the application to read the
# messages that came before it (see _holding_close).
_HOLD_GRACE = 1.0
_CLOSED = State.CLOSED
_BYTES_LIKE = (bytes, bytearray, memoryview)
_DATA_LIKE = (str, bytes, bytearray, memoryview)


#: Corked frames up to this many bytes in all are joined before writing.
_JOIN_BELOW = 16384


class Connection(asyncio.Protocol):
    """One WebSocket connection, either side, on top of an asyncio transport.

    Don't build it yourself: :func:`~openline.asyncio.serve` hands a
    :class:`~openline.asyncio.ServerConnection` to your handler and
    :class:`~openline.asyncio.connect` returns a
    :class:`~openline.asyncio.ClientConnection`.

    Iterate over it to receive messages until the peer closes the connection::

        async for message in ws:
            await ws.send(message)

    Attributes:
        subprotocol: The negotiated subprotocol, or ``None``.
        latency: Round-trip time of the last ping answered, in seconds; 0 before.
    """

    __slots__ = (
        "_buffer",
        "_close_armed",
        "_closed_waiter",
        "_core",
        "_corked",
        "_corked_size",
        "_dispatching",
        "_drain_waiters",
        "_id",
        "_keepalive",
        "_listener",
        "_loop",
        "_lost",
        "_messages",
        "_paused",
        "_pings",
        "_request_head",
        "_response_head",
        "_send_lock",
        "_settings",
        "_timer",
        "_transport",
        "latency",
        "subprotocol",
    )

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport
        self._core: Core | None = None  # set when the opening handshake succeeds
        self._buffer: bytearray | None = None  # bytes of the opening handshake
        self._messages = MessageQueue(None, settings.max_queue, settings.queue_low)
        self._paused = False  # whether the transport paused writing
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._send_lock: asyncio.Lock | None = None  # held while sending fragments
        # Pings awaiting their pong, oldest first: data -> (waiter, time sent).
        # The waiter is None for keepalive pings. Times come from time.monotonic():
        # uvloop's loop.time() only has millisecond resolution, too coarse for a
        # round trip on a local network.
        self._pings: dict[bytes, tuple[asyncio.Future[float] | None, float]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        # The shared keepalive timer this connection is scheduled on, if any.
        self._keepalive: Keepalive | None = None
        self._close_armed = False
        self._lost = False
        # wait_closed()'s futures: one, or a list when several wait at once.
        self._closed_waiter: asyncio.Future[None] | list[asyncio.Future[None]] | None = None
        self._id: uuid.UUID | None = None
        # The handshake messages, as bytes: a parsed request with its Headers costs
        # about ten times more, on every idle connection. See the properties.
        self._request_head: bytes | None = None
        self._response_head: bytes | None = None
        self.latency = 0.0
        self.subprotocol: str | None = None
        # The low-level API: a callback that takes messages instead of recv().
        self._listener: Callable[[Connection, Data], object] | None = None
        # True while data_received hands out messages: sends made from a
        # listener then are written together, once, when it returns (corking).
        self._dispatching = False
        # Frames written during this turn of the event loop, sent together at its
        # end (see _Cork): one system call per connection per turn, not per frame.
        self._corked: list[bytes] | None = None
        self._corked_size = 0

    # --- public properties -------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier for this connection, for logs; made on first use."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def request(self) -> Request | None:
        """The opening handshake request: sent by a client, received by a server.

        ``None`` until known. Parsed anew from the bytes on the wire at each
        access, so that idle connections don't keep parsed headers: hold on to
        the result rather than reading this in a loop.
        """
        head = self._request_head
        if head is None:
            return None
        parsed = parse_request(head, max_line=None, max_headers=None, max_size=None)
        assert parsed is not None  # it was parsed, or built, once already
        return parsed[0]

    @property
    def response(self) -> Response | None:
        """The opening handshake response; ``None`` until known.

        Parsed anew at each access, like :attr:`request`.
        """
        head = self._response_head
        if head is None:
            return None
        parsed = parse_response(head, max_line=None, max_headers=None, max_size=None)
        assert parsed is not None
        return parsed[0]

    @property
    def state(self) -> State | None:
        """The connection's state; ``None`` while the opening handshake is in progress."""
        core = self._core
        if core is None:
            return State.CLOSED if self._lost else None
        return core.state

    @property
    def close_code(self) -> int | None:
        """The close code received; 1005 if the frame had none, 1006 if none arrived.

        ``None`` while the connection is open.
        """
        core = self._core
        if core is not None and core.close_rcvd is not None:
            return core.close_rcvd.code
        return int(CloseCode.ABNORMAL_CLOSURE) if self._ended else None

    @property
    def close_reason(self) -> str | None:
        """The close reason received, ``""`` if none; ``None`` while the connection is open."""
        core = self._core
        if core is not None and core.close_rcvd is not None:
            return core.close_rcvd.reason
        return "" if self._ended else None

    @property
    def _ended(self) -> bool:
        """Whether the TCP connection ended: lost, or the peer's end of stream arrived."""
        core = self._core
        return self._lost or (core is not None and core.state is _CLOSED)

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (``(host, port)`` for IPv4)."""
        return self._transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """This end's address, as the socket reports it (``(host, port)`` for IPv4)."""
        return self._transport.get_extra_info("sockname")

    # --- public API: receiving ---------------------------------------------------------

    def recv(self) -> Coroutine[Any, Any, Data]:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Use as ``await ws.recv()``. Messages received before the connection
        closed are returned first.

        Raises:
            ConnectionClosedOK: The connection closed normally (1000 or 1001
                both ways).
            ConnectionClosedError: The connection closed otherwise; the cause is
                the peer's protocol error, if any.
            ConcurrencyError: Another coroutine is already waiting in ``recv()``.
        """
        # Not a coroutine itself: one coroutine frame less per call, and per
        # connection waiting for its next message.
        return self._messages.get()

    def __aiter__(self) -> AsyncIterator[Data]:
        """Receive messages until the connection closes.

        The iteration stops when the connection closes normally.

        Raises:
            ConnectionClosedError: The connection closed with an error.
            ConcurrencyError: Another coroutine is already waiting in ``recv()``.
        """
        # The connection is its own iterator: no async generator, and waiting
        # for the next message costs one future (see MessageQueue.get_next).
        return self

    def __anext__(self) -> Awaitable[Data]:
        """Return an awaitable of the next message, as ``async for`` needs.

        Raises:
            StopAsyncIteration: The connection closed normally.
            ConnectionClosedError: The connection closed with an error.
            ConcurrencyError: Another coroutine is already waiting in ``recv()``.
        """
        return self._messages.get_next()

    # --- public API: low level --------------------------------------------------------

    def listen(self, listener: Callable[[Connection, Data], object]) -> None:
        """Take messages through a callback instead of ``recv()``: the low-level API.

        From now on, ``listener(connection, message)`` is called for every
        message, synchronously, from the event loop's data callback: no future,
        no task switch, no queue. Messages already waiting are handed over at
        once, in order. Answer with :meth:`send_nowait`; answers sent while
        messages are being handed out are written together, in one system call.

        .. warning::
            The listener runs inside the event loop's I/O callback: it must not
            block, and it cannot ``await``. Start a task for anything slow. An
            exception it raises fails the connection with 1011.

        Choose ``recv()`` / ``async for`` for ordinary code, and ``listen`` where
        every microsecond per message counts (echo, relays, games, fan-out).

        Raises:
            ConcurrencyError: A coroutine is waiting in ``recv()``.
        """
        if self._messages.has_waiter:
            raise ConcurrencyError("cannot listen() while a coroutine waits in recv()")
        self._listener = listener
        while (message := self._messages.get_nowait()) is not None:
            self._call_listener(listener, message)

    def send_nowait(self, message: DataLike) -> None:
        """Send a message without waiting: the low-level counterpart of ``send()``.

        The frame is written at once (or, from a :meth:`listen` callback, with
        the other answers to the same read). Nothing waits for the write buffer
        to drain: check :attr:`buffered_amount` to apply backpressure yourself.
        While it is above ``write_limit``, reading pauses, so a listener that
        answers each message stops being called until the peer reads.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            InvalidState: A fragmented message is being sent.
            TypeError: ``message`` is neither ``str`` nor bytes-like.
        """
        core = self._core
        if core is None or core.state is not _OPEN:
            raise self._close_exc()
        if isinstance(message, str):
            core.send_text(message.encode())
        elif isinstance(message, _BYTES_LIKE):
            core.send_binary(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes-like")
        if not self._dispatching:
            self._flush(core)

    @property
    def is_reading_paused(self) -> bool:
        """Whether reading from the socket is paused.

        It is while ``max_queue`` messages wait for ``recv()``, and while the
        write buffer is above ``write_limit`` (a peer that doesn't read what we
        send gets nothing more read from it).
        """
        return self._messages.is_reading_paused

    @property
    def pending_messages(self) -> int:
        """Messages received and not read yet: what ``recv()`` returns without waiting."""
        return len(self._messages)

    @property
    def buffered_amount(self) -> int:
        """Bytes the network didn't take yet: the transport's write buffer.

        Frames written during the current event loop turn (at most
        ``write_limit`` bytes) go out at its end and aren't counted: a reader
        that keeps up takes them at once.
        """
        if self._lost:
            return 0
        return self._transport.get_write_buffer_size()

    # --- public API: seams for broadcast and the hub -----------------------------------

    @property
    def extensions(self) -> Sequence[Extension]:
        """The negotiated extensions, in order; empty before the opening handshake."""
        core = self._core
        return () if core is None else core.extensions

    @property
    def is_writable(self) -> bool:
        """Whether a message can be written now without waiting.

        ``False`` when the connection isn't open, or while a fragmented message
        is being sent (a frame can't be interleaved with its fragments).
        """
        core = self._core
        if core is None or core.state is not _OPEN or self._lost:
            return False
        lock = self._send_lock
        return lock is None or not lock.locked()

    def write_frame_nowait(self, frame: bytes) -> None:
        """Write an already serialized frame, unmasked, without waiting.

        For frames that many connections share (see
        :mod:`~openline.asyncio.broadcast`): the caller checks
        :attr:`is_writable` first and builds a frame valid for this connection's
        :attr:`extensions`. Nothing waits for the write buffer to drain.
        """
        corked = self._corked
        if corked is None:
            transport = self._transport
            if transport.get_write_buffer_size():
                # The kernel's queue is full, so the transport only appends to its
                # buffer: corking would add work and save no system call. In order,
                # since nothing of this turn is corked.
                transport.write(frame)
                return
            corked = self._corked = []
            cork_for(self._loop).add(self)
        corked.append(frame)
        size = self._corked_size = self._corked_size + len(frame)
        if size >= self._settings.write_high:
            # Past the write limit: let flow control see it now (as _write does).
            self._uncork()

    def write_shared(self, frame: bytes) -> int:
        """Write a frame that many connections share, if this one can take it as is.

        The hub's fan-out calls this once per subscriber and delivery, so it does
        in one call what :attr:`is_writable`, :attr:`extensions`,
        :meth:`write_frame_nowait` and :attr:`buffered_amount` would do in four.

        Returns:
            ``-1`` when nothing was written: the connection isn't writable, or it
            negotiated extensions (the caller encodes for them, see
            :class:`~openline.asyncio.broadcast.Broadcast`). Otherwise the bytes
            the transport holds unsent after the write, as
            :attr:`buffered_amount`: 0 while the reader keeps up.
        """
        core = self._core
        if core is None or core.state is not _OPEN or self._lost or core.extensions:
            return -1
        lock = self._send_lock
        if lock is not None and lock.locked():
            return -1
        self.write_frame_nowait(frame)
        return self._transport.get_write_buffer_size()

    def send_payload_nowait(self, payload: bytes, *, text: bool) -> None:
        """Encode and write one message through this connection's extensions.

        Like :meth:`send_nowait` for a payload that is already bytes: ``text``
        sends them as a text message, so they must be valid UTF-8.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        core = self._core
        if core is None or core.state is not _OPEN:
            raise self._close_exc()
        if text:
            core.send_text(payload)
        else:
            core.send_binary(payload)
        self._flush(core)

    async def wait_fragments_sent(self) -> None:
        """Wait until no fragmented message is being sent; return at once if none is."""
        lock = self._send_lock
        if lock is not None and lock.locked():
            async with lock:
                pass

    async def drain(self) -> None:
        """Wait while the transport's buffer is above ``write_limit``.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        core = self._core
        if core is None or core.state is not _OPEN or self._lost:
            await self._raise_closed()
        if self._paused:
            await self._drain()

    def outgoing_amount(self) -> int:
        """Bytes written and not yet acknowledged by the peer's TCP.

        :attr:`buffered_amount` plus the kernel's send queue, read with the
        ``SIOCOUTQ`` ioctl on Linux; elsewhere :attr:`buffered_amount` alone.
        A system call: read it when it matters, not per message.
        """
        if self._lost:
            return 0
        kernel = send_queue_size(self._transport.get_extra_info("socket"))
        return self._transport.get_write_buffer_size() + (kernel or 0)

    def acked_amount(self) -> int | None:
        """Bytes the peer's TCP acknowledged so far; ``None`` where unknown.

        It stops growing when the peer stops reading (its receive window is
        full): the sign of a stalled reader. Linux only (``TCP_INFO``).
        """
        if self._lost:
            return None
        return bytes_acked(self._transport.get_extra_info("socket"))

    def limit_send_buffer(self, size: int) -> int | None:
        """Bound the kernel's send queue (``SO_SNDBUF``) to about ``size`` bytes.

        Without it the kernel grows a socket's send buffer up to several MiB for
        a peer that doesn't read, beyond what :attr:`buffered_amount` shows.

        Returns:
            What the kernel granted (Linux reports twice the request), or
            ``None`` if the transport has no socket that takes the option.
        """
        if self._lost:
            return None
        return limit_send_buffer(self._transport.get_extra_info("socket"), size)

    def abort(self) -> None:
        """Drop the connection at once with a TCP reset (RST), without a close frame.

        ``SO_LINGER`` (1, 0) makes the kernel discard the socket's send queue
        instead of trying to deliver it to a peer that may never read: the
        memory is freed at once. Waiters see the connection closed with 1006.
        """
        if self._lost:
            return
        reset_on_close(self._transport.get_extra_info("socket"))
        self._transport.abort()

    # --- public API: sending -----------------------------------------------------------

    async def send(self, message: DataLike | Iterable[DataLike] | AsyncIterable[DataLike]) -> None:
        """Send a message: text for ``str``, binary for bytes-like objects.

        An iterable or async iterable of ``str`` (or of bytes-like objects) is
        sent as one fragmented message, a frame per item. Other sends wait until
        it is complete, so that its frames are never interleaved with theirs.

        The message is written to the transport at once; ``send`` waits only
        while the transport's buffer is above ``write_limit``.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            TypeError: ``message`` has an unsupported type, or the items of an
                iterable mix text and binary.
            Exception: Whatever iterating ``message`` raises; the connection is
                then failed with 1011 if a fragment was already sent.
            InvalidState: The opening handshake isn't complete (in ``process_request``).
        """
        if isinstance(message, _DATA_LIKE):
            lock = self._send_lock
            if lock is not None and lock.locked():
                # Queue behind the fragmented message being sent.
                async with lock:
                    await self._send_frame(message, fin=True)
                return
            # The hot path, inlined: no lock, no extra coroutine.
            core = self._core
            if core is None or core.state is not _OPEN:
                await self._raise_closed()
            if isinstance(message, str):
                core.send_text(message.encode())
            else:
                core.send_binary(message)
            # Not _flush(): a data frame changes neither the state nor a held close.
            self._write(core.data_to_send())
            if self._paused:
                await self._drain()
            return
        if isinstance(message, Mapping):
            raise TypeError("cannot send a mapping: send a str, bytes, or an iterable of them")
        if isinstance(message, Iterable):
            await self._send_fragments(_as_async(message))
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(message)
        else:
            raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes-like")

    async def ping(self, data: DataLike | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future that resolves to the latency when answered.

        A pong answers its ping and every earlier one (RFC 6455, section 5.5.3).
        Use it as ``latency = await (await ws.ping())``.

        Args:
            data: The ping's payload, at most 125 bytes; ``str`` is encoded to
                UTF-8. ``None`` picks four random bytes.

        Returns:
            A future for the round-trip time in seconds. It raises
            ``ConnectionClosed`` if the connection closes first.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            ConcurrencyError: A ping with the same payload awaits its pong.
            ValueError: ``data`` is longer than 125 bytes.
            InvalidState: The opening handshake isn't complete (in ``process_request``).
        """
        core = self._open_core()
        if core.state is not _OPEN:
            await self._raise_closed()
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        if data is None:
            payload = os.urandom(4)
            while payload in pings:  # pragma: no cover - a 1 in 2**32 collision
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in pings:
                raise ConcurrencyError("already waiting for a pong with the same data")
        core.send_ping(payload)
        waiter: asyncio.Future[float] = self._loop.create_future()
        pings[payload] = (waiter, time.monotonic())
        self._flush(core)
        return waiter

    async def pong(self, data: DataLike = b"") -> None:
        """Send an unsolicited pong, a one-way heartbeat.

        Args:
            data: The payload, at most 125 bytes; ``str`` is encoded to UTF-8.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            ValueError: ``data`` is longer than 125 bytes.
            InvalidState: The opening handshake isn't complete (in ``process_request``).
        """
        core = self._open_core()
        if core.state is not _OPEN:
            await self._raise_closed()
        core.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._flush(core)

    # --- public API: closing -----------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and wait until TCP is closed.

        Waits up to ``close_timeout`` for the peer, then aborts the connection.
        Does nothing more than wait if the connection is already closing.

        Args:
            code: The close code (RFC 6455, section 7.4).
            reason: A short explanation, at most 123 bytes in UTF-8.

        Raises:
            ValueError: ``code`` may not be sent, or ``reason`` is too long.
        """
        core = self._core
        if core is None:
            if not self._lost:
                self._transport.close()
        elif core.state is _OPEN and not self._lost:
            core.send_close(code, reason)
            self._flush(core)
        await self.wait_closed()

    def wait_closed(self) -> Awaitable[None]:
        """Wait until the TCP connection is closed: ``await ws.wait_closed()``.

        Each call gets a future of its own, so cancelling one wait (a timeout)
        leaves the others waiting. Not a coroutine: a handler that only waits
        for its connection's end (the low-level API's) costs one future, not a
        coroutine frame and a shield, on every idle connection.
        """
        future = self._loop.create_future()
        if self._lost:
            future.set_result(None)
            return future
        waiters = self._closed_waiter
        if waiters is None or (not isinstance(waiters, list) and waiters.done()):
            self._closed_waiter = future
        elif isinstance(waiters, list):
            # Forget the waits given up (cancelled): the list holds only live ones.
            waiters[:] = [waiter for waiter in waiters if not waiter.done()]
            waiters.append(future)
        else:
            self._closed_waiter = [waiters, future]
        return future

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport and set its write buffer limits."""
        settings = self._settings
        self._transport = cast(asyncio.Transport, transport)  # a stream transport
        self._transport.set_write_buffer_limits(settings.write_high, settings.write_low)
        self._messages.attach(self._transport)

    def data_received(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes to the core, dispatch its events and write its output."""
        core = self._core
        if core is None:
            self._receive_handshake(bytes(data))
            return
        core.receive_data(data)
        events = core.events_received()
        if events:
            self._dispatching = True
            try:
                self._dispatch(events)
            finally:
                self._dispatching = False
        self._flush(core)
        if self._corked is not None and not self._lost:
            # What this read made us write (pongs, a listener's answers) would go
            # out at the end of the turn, after more reads. If it takes the
            # buffer past the write limit, write it now: pause_writing then stops
            # reading before the next read, which bounds the buffer to the limit
            # plus one read's answers.
            buffered = self._transport.get_write_buffer_size()
            if buffered + self._corked_size >= self._settings.write_high:
                self._uncork()

    def eof_received(self) -> None:
        """Tell the core the peer closed its side; the transport then closes."""
        core = self._core
        if core is None:
            self._handshake_failed(None)
            return
        core.receive_eof()
        self._flush(core)
        # Returning a false value lets the transport close itself.

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake everyone who waits on this connection."""
        self._lost = True
        self._stop_keepalive()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        core = self._core
        if core is None:
            self._handshake_failed(exc)
        else:
            if core.state is not _CLOSED:
                core.receive_eof()
                core.data_to_send()  # nowhere to write it
            self._abort_waiters()
        self._messages.close(self._close_exc)
        # On Python 3.10, an SSL transport whose peer closed first stays marked
        # open and warns when collected: close it explicitly (a no-op elsewhere).
        if not self._transport.is_closing():
            self._transport.close()
        waiters = self._closed_waiter
        if waiters is not None:
            self._closed_waiter = None
            for waiter in waiters if isinstance(waiters, list) else (waiters,):
                if not waiter.done():
                    waiter.set_result(None)
        if self._settings.debug:
            self._settings.logger.debug("connection closed: %s", self._describe_close(exc))

    def pause_writing(self) -> None:
        """Make ``send()`` wait, stop reading, and hold pongs until the buffer drains."""
        self._paused = True
        core = self._core
        if core is not None:
            core.pause_output()
        self._messages.pause_for_writes()

    def resume_writing(self) -> None:
        """Let waiting ``send()`` calls return; send the pong held meanwhile; read again."""
        self._paused = False
        core = self._core
        if core is not None:
            core.resume_output()
            if core.pong_held:
                self._flush(core)
        self._messages.resume_for_writes()
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # --- private: opening (hooks for the subclasses) -----------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        raise NotImplementedError

    def _handshake_failed(self, exc: Exception | None) -> None:
        """The transport closed, or the peer sent EOF, during the opening handshake."""

    def _open(self, side: Side, negotiated: Negotiated, leftover: bytes) -> None:
        """Switch to the WebSocket protocol; ``leftover`` are bytes after the handshake."""
        settings = self._settings
        self._core = Core(
            side,
            extensions=negotiated.extensions,
            max_size=settings.max_size,
            # Let the application answer the messages that came before a
            # violation or a close; see _holding_close.
            defer_close=True,
            logger=settings.logger,
        )
        if self._paused:  # the 101 response alone filled the write buffer
            self._core.pause_output()
        self.subprotocol = negotiated.subprotocol
        self._buffer = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        interval = settings.ping_interval
        if interval is not None:
            keepalive = self._keepalive = keepalive_for(self._loop, interval, settings.ping_timeout)
            keepalive.schedule(self, interval)
        if leftover:
            self.data_received(leftover)

    # --- private: receiving ------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        messages = self._messages
        listener = self._listener
        for event in events:
            if type(event) is TextMessage or type(event) is BinaryMessage:
                if listener is None:
                    messages.put(event.data)
                else:
                    self._call_listener(listener, event.data)
            elif type(event) is Pong:
                self._receive_pong(event.data)
            # Ping: the core already queued the pong. Close: handled in _flush.

    def _call_listener(self, listener: Callable[[Connection, Data], object], data: Data) -> None:
        try:
            listener(self, data)
        except Exception:
            self._settings.logger.exception("message listener failed")
            core = self._core
            if core is not None and core.state is _OPEN:
                core.fail(CloseCode.INTERNAL_ERROR, "listener failed")
                self._messages.close(self._close_exc)
                if not self._dispatching:
                    self._flush(core)

    def _receive_pong(self, data: bytes) -> None:
        """Resolve the ping that ``data`` answers, and every earlier one."""
        pings = self._pings
        if not pings or data not in pings:
            return  # unsolicited, or answering a ping we gave up on
        now = time.monotonic()
        keepalive_sent: float | None = None
        for key in list(pings):
            waiter, sent = pings.pop(key)
            if waiter is None:
                keepalive_sent = sent
            elif not waiter.done():
                waiter.set_result(now - sent)
            if key == data:
                self.latency = now - sent
                break
        keepalive = self._keepalive
        if keepalive_sent is not None and keepalive is not None:
            # The keepalive ping was answered: replace its deadline with the next ping.
            delay = max(0.0, keepalive_sent + (self._settings.ping_interval or 0.0) - now)
            keepalive.schedule(self, delay)

    # --- private: sending --------------------------------------------------------------

    def _open_core(self) -> Core:
        core = self._core
        if core is None:
            raise InvalidState("the opening handshake isn't complete")
        return core

    async def _send_frame(self, data: DataLike, *, fin: bool, first: bool = True) -> None:
        """Send one frame of data (a whole message by default) and respect flow control."""
        core = self._open_core()
        if core.state is not _OPEN:
            await self._raise_closed()
        if not first:
            core.send_continuation(data if isinstance(data, str) else bytes(data), fin=fin)
        elif isinstance(data, str):
            core.send_text(data.encode(), fin=fin)
        else:
            core.send_binary(data, fin=fin)
        self._flush(core)
        if self._paused:
            await self._drain()

    async def _send_fragments(self, chunks: AsyncIterable[DataLike]) -> None:
        """Send the items of ``chunks`` as the frames of one message."""
        lock = self._send_lock
        if lock is None:
            lock = self._send_lock = asyncio.Lock()
        async with lock:
            text: bool | None = None
            try:
                async for chunk in chunks:
                    is_text = _check_fragment(chunk, text)
                    await self._send_frame(chunk, fin=False, first=text is None)
                    text = is_text
            except BaseException:
                # Half a message went out: nothing else can follow on this connection.
                core = self._core
                if text is not None and core is not None and core.state is _OPEN:
                    core.fail(CloseCode.INTERNAL_ERROR, "error while sending a fragmented message")
                    self._flush(core)
                raise
            if text is not None:
                await self._send_frame(b"", fin=True, first=False)

    async def _drain(self) -> None:
        """Wait until the transport resumes writing."""
        if self._lost:
            await self._raise_closed()
        waiter: asyncio.Future[None] = self._loop.create_future()
        waiters = self._drain_waiters
        if waiters is None:
            waiters = self._drain_waiters = []
        waiters.append(waiter)
        await waiter

    def _flush(self, core: Core) -> None:
        """Write what the core wants to send; follow it into the closing state."""
        output = core.data_to_send()
        if output:
            self._write(output)
        if core.state is not _OPEN:
            self._closing(core)
        elif core.close_pending:
            self._holding_close(core)

    def _write(self, chunks: list[bytes]) -> None:
        """Queue ``chunks`` to go out at the end of this event loop turn.

        A ``b""`` chunk (half-close) is written at once, after everything before it.
        """
        if b"" in chunks or self._lost:
            self._uncork()
            self._write_now(chunks)
            return
        corked = self._corked
        if corked is None:
            corked = self._corked = []
            cork_for(self._loop).add(self)
        corked.extend(chunks)
        size = self._corked_size
        for chunk in chunks:
            size += len(chunk)
        self._corked_size = size
        if size >= self._settings.write_high:
            # Past the write limit: let the transport see it now, so that flow
            # control (pause_writing) applies to a sender that never yields.
            self._uncork()

    def _uncork(self) -> None:
        """Write what this turn corked, in one call."""
        corked = self._corked
        if corked is None:
            return
        size = self._corked_size
        self._corked = None
        self._corked_size = 0
        if self._lost:
            return
        if len(corked) == 1:
            self._transport.write(corked[0])
        elif size <= _JOIN_BELOW:
            # Small frames (a fan-out's, a burst of answers): copying them into
            # one bytes costs less than the transport's writelines per chunk.
            self._transport.write(b"".join(corked))
        else:
            writelines(self._transport, corked)

    def _write_now(self, chunks: list[bytes]) -> None:
        transport = self._transport
        if len(chunks) == 1 and chunks[0]:
            transport.write(chunks[0])
            return
        pending: list[bytes] = []
        for chunk in chunks:
            if chunk:
                pending.append(chunk)
                continue
            # b"" means "half-close now", after everything queued before it.
            if pending:
                writelines(transport, pending)
                pending = []
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except OSError:
                    # The peer reset the connection first (ENOTCONN, e.g. a
                    # browser tab closing): nothing more can be sent. The loss
                    # reaches connection_lost like any other.
                    transport.abort()
            else:
                transport.close()  # TLS can't half-close; close() flushes first
        if pending:
            writelines(transport, pending)

    # --- private: keepalive ------------------------------------------------------------

    def _keepalive_due(self) -> None:
        """Called by the shared keepalive timer: send the next ping, or give up waiting."""
        pings = self._pings
        waiting = pings is not None and any(waiter is None for waiter, _ in pings.values())
        if waiting and self._settings.ping_timeout is not None:
            self._keepalive_timeout()
            return
        self._send_keepalive_ping()

    def _send_keepalive_ping(self) -> None:
        core = self._core
        keepalive = self._keepalive
        if core is None or core.state is not _OPEN or keepalive is None:
            return
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        else:
            # At most one keepalive ping in flight: forget a stale one.
            for key in [key for key, (waiter, _) in pings.items() if waiter is None]:
                del pings[key]
        payload = os.urandom(4)
        pings[payload] = (None, time.monotonic())
        core.send_ping(payload)
        self._flush(core)
        if self._keepalive is None:  # the flush closed the connection
            return
        settings = self._settings
        if settings.ping_timeout is not None:
            keepalive.schedule(self, settings.ping_timeout)
        elif settings.ping_interval is not None:
            keepalive.schedule(self, settings.ping_interval)

    def _stop_keepalive(self) -> None:
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.cancel(self)

    def _keepalive_timeout(self) -> None:
        core = self._core
        if core is None or core.state is not _OPEN:
            return
        if self._settings.debug:
            self._settings.logger.debug("keepalive ping timeout: failing the connection")
        core.fail(CloseCode.INTERNAL_ERROR, KEEPALIVE_TIMEOUT_REASON)
        # The line is presumed dead: recv() raises now rather than after close_timeout.
        self._messages.close(self._close_exc)
        self._flush(core)

    # --- private: closing --------------------------------------------------------------

    def _holding_close(self, core: Core) -> None:
        """Run once the core holds back its answer to the peer's close or violation.

        Messages that arrived before it are still delivered, and the application
        may answer them: a strict peer expects those answers before our close
        frame. The close frame goes out when the application asks for a message
        past the last one, or after a short grace (at most ``close_timeout``) if
        it doesn't, so that an application that never reads still closes promptly.
        """
        messages = self._messages
        if messages.is_closed:
            return
        messages.close(self._release_close)
        self._stop_keepalive()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        grace = _HOLD_GRACE
        if self._settings.close_timeout is not None:
            grace = min(grace, self._settings.close_timeout)
        self._timer = self._loop.call_later(grace, self._hold_timeout)

    def _release_close(self) -> Exception:
        """Send the held-back close frame; return the close exception.

        ``recv()`` calls it whenever it finds no message left, so it only acts once.
        """
        core = self._core
        if core is not None and core.close_pending:
            if self._timer is not None:  # the _hold_timeout timer
                self._timer.cancel()
                self._timer = None
            core.flush_close()
            self._flush(core)
        return self._close_exc()

    def _hold_timeout(self) -> None:
        self._timer = None
        self._release_close()

    def _closing(self, core: Core) -> None:
        """Run once the core leaves OPEN: stop keepalive, arm the close timeout."""
        if core.close_rcvd is not None or core.protocol_error is not None or core.state is _CLOSED:
            # No message can follow the peer's close frame, a failure, or the end of TCP.
            self._messages.close(self._close_exc)
        if self._close_armed or self._lost:
            return
        self._close_armed = True
        # The peer's close frame must be read even if the application stopped
        # reading messages: stop pushing back.
        self._messages.release()
        self._stop_keepalive()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self._settings.close_timeout
        if timeout is not None:
            self._timer = self._loop.call_later(timeout, self._close_timeout)

    def _close_timeout(self) -> None:
        self._timer = None
        if self._settings.debug:
            self._settings.logger.debug("closing handshake timed out: aborting")
        self._transport.abort()

    def _close_exc(self) -> Exception:
        core = self._core
        if core is None:  # pragma: no cover - recv() needs an open connection first
            return InvalidState("the opening handshake isn't complete")
        return core.close_exc

    async def _raise_closed(self) -> NoReturn:
        """Raise the exception that describes how the connection closed.

        After our own close frame, wait for the closing handshake (bounded by
        ``close_timeout``) so that the exception says how it ended.
        """
        core = self._open_core()
        if core.close_rcvd is None and core.protocol_error is None and not self._lost:
            await self.wait_closed()
        raise self._close_exc()

    def _abort_waiters(self) -> None:
        """Fail pending drains and pings with the close exception."""
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_exception(self._close_exc())
        pings, self._pings = self._pings, None
        for ping_waiter, _ in (pings or {}).values():
            if ping_waiter is not None and not ping_waiter.done():
                ping_waiter.set_exception(self._close_exc())
                # Nobody may ever await this future: don't log "never retrieved".
                ping_waiter.exception()

    def _describe_close(self, exc: Exception | None) -> str:
        core = self._core
        if core is None:
            return "during the opening handshake" + (f" ({exc})" if exc else "")
        return str(core.close_exc)


def _check_fragment(chunk: object, text: bool | None) -> bool:
    """Return whether ``chunk`` is text; check it matches the message's type.

    Raises:
        TypeError: ``chunk`` isn't str or bytes-like, or differs from the first item.
    """
    if isinstance(chunk, str):
        is_text = True
    elif isinstance(chunk, _BYTES_LIKE):
        is_text = False
    else:
        raise TypeError(f"cannot send a fragment of type {type(chunk).__name__}")
    if text is not None and is_text != text:
        raise TypeError("all fragments of a message must be str, or all bytes-like")
    return is_text


async def _as_async(items: Iterable[DataLike]) -> AsyncIterator[DataLike]:
    for item in items:
        yield item


def is_keepalive_timeout(exc: ConnectionClosed) -> bool:
    """Tell whether we closed the connection because a keepalive ping went unanswered."""
    sent = exc.sent
    return (
        sent is not None
        and sent.code == CloseCode.INTERNAL_ERROR
        and sent.reason == KEEPALIVE_TIMEOUT_REASON
    )
