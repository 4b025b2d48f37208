"""The queue of incoming messages between the protocol adapter and ``recv()``.

Messages arrive whole from the sans-I/O core, so the queue holds ``str`` and
``bytes`` only. It is built for the common cases:

* a coroutine already waits in ``recv()``: the message goes straight into its
  future, without touching the buffer;
* nobody waits: the message is appended to a deque, created on first use so that
  a connection whose messages are always awaited never allocates one.

When the buffer reaches its high water mark, the queue pauses reading from the
transport, which makes TCP flow control push back on the peer; it resumes
reading once the application has drained the buffer to the low water mark.

The queue owns the transport's reading switch, and reading has two reasons to
pause: a full queue, and a write buffer above its high-water mark (the
connection calls :meth:`MessageQueue.pause_for_writes`: whatever we read could
make us write, pongs included). Each reason is a bit; reading resumes only when
neither holds, so one never un-pauses what the other paused.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Generator
from typing import Any, NoReturn

from ..exceptions import ConcurrencyError, ConnectionClosedOK
from ..typing import Data

__all__ = ["MessageQueue"]

# Why reading is paused: bits of MessageQueue._paused.
_QUEUE_FULL = 1
_WRITES_BLOCKED = 2


class MessageQueue:
    """A bounded FIFO of received messages with at most one waiting reader.

    Args:
        transport: The transport to pause and resume; set it later with
            :meth:`attach` when it is not known yet.
        high: Buffered messages that pause reading; ``None`` never pauses.
        low: Buffered messages at or below which reading resumes.
    """

    __slots__ = ("_closed", "_high", "_low", "_messages", "_paused", "_transport", "_waiter")

    def __init__(self, transport: asyncio.Transport | None, high: int | None, low: int) -> None:
        self._transport = transport
        self._high = high
        self._low = low
        self._messages: collections.deque[Data] | None = None
        self._waiter: asyncio.Future[Data | None] | None = None
        # Why reading is paused: _QUEUE_FULL and/or _WRITES_BLOCKED; 0 when reading.
        self._paused = 0
        # Once the stream ends: builds the exception get() raises when empty.
        self._closed: Callable[[], BaseException] | None = None

    def attach(self, transport: asyncio.Transport) -> None:
        """Use ``transport`` for flow control from now on."""
        self._transport = transport

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed is not None

    @property
    def is_reading_paused(self) -> bool:
        """Whether reading from the transport is paused, for either reason."""
        return self._paused != 0

    @property
    def has_waiter(self) -> bool:
        """Whether a coroutine waits in :meth:`get`."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def __len__(self) -> int:
        messages = self._messages
        return 0 if messages is None else len(messages)

    # --- producer side (the protocol adapter) ---------------------------------------------

    def put(self, message: Data) -> None:
        """Hand over a received message; pause reading if the buffer is full."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
            return
        messages = self._messages
        if messages is None:
            messages = self._messages = collections.deque()
        messages.append(message)
        high = self._high
        if high is not None and len(messages) >= high and not self._paused & _QUEUE_FULL:
            self._pause(_QUEUE_FULL)

    def close(self, exc: Callable[[], BaseException]) -> None:
        """Mark the end of the stream; once the buffer is empty, :meth:`get` raises.

        Also stops applying backpressure, so that the peer's close frame (or the
        end of the TCP stream) can still be read while messages stay buffered.

        Args:
            exc: Builds the exception to raise, when it is raised: by then it
                describes how the connection ended.
        """
        if self._closed is not None:
            return
        self._closed = exc
        self.release()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(None)

    def release(self) -> None:
        """Stop pausing the transport for a full queue, and resume it if that paused it.

        Called when the closing handshake starts: the peer's close frame must be
        read even if the application stopped reading messages. A pause for
        blocked writes stays until :meth:`resume_for_writes`: the peer that
        doesn't read what we write gets nothing more read from it either.
        """
        self._high = None
        if self._paused & _QUEUE_FULL:
            self._resume(_QUEUE_FULL)

    def pause_for_writes(self) -> None:
        """Pause reading while the transport's write buffer is above its high-water mark.

        Anything read could make us write (answers to pings, replies, echoes),
        so a peer that doesn't read our output gets nothing more read from it:
        TCP pushes back on it, and what it can make us buffer stays bounded.
        """
        if not self._paused & _WRITES_BLOCKED:
            self._pause(_WRITES_BLOCKED)

    def resume_for_writes(self) -> None:
        """Undo :meth:`pause_for_writes`; reading resumes unless the queue is full too."""
        if self._paused & _WRITES_BLOCKED:
            self._resume(_WRITES_BLOCKED)

    # --- consumer side (recv) -------------------------------------------------------------

    def get_nowait(self) -> Data | None:
        """Return the next buffered message, or ``None`` if there is none."""
        messages = self._messages
        if not messages:
            return None
        message = messages.popleft()
        if self._paused & _QUEUE_FULL and len(messages) <= self._low:
            self._resume(_QUEUE_FULL)
        return message

    async def get(self) -> Data:
        """Return the next message, waiting for one if needed.

        Raises:
            ConcurrencyError: Another coroutine is already waiting for a message.
            BaseException: What :meth:`close` was given builds, once the stream
                ended and the buffer is empty.
        """
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            raise ConcurrencyError(
                "cannot call recv() while another coroutine is already waiting for a message"
            )
        message = self.get_nowait()
        if message is not None:
            return message
        if self._closed is not None:
            raise self._closed()
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            message = await waiter
        except asyncio.CancelledError:
            # put() may have filled the future just before the task was cancelled:
            # keep that message for the next reader instead of losing it.
            if waiter.done() and not waiter.cancelled():
                message = waiter.result()
                if message is not None:
                    self._push_front(message)
            raise
        finally:
            if self._waiter is waiter:
                self._waiter = None
        if message is None:
            assert self._closed is not None  # close() woke us
            raise self._closed()
        return message

    def get_next(self) -> Awaitable[Data]:
        """Like :meth:`get`, for ``async for``: a normal close ends the iteration.

        The awaitable is a small object rather than a coroutine, and ``async
        for`` needs no async generator: waiting costs one future, which matters
        on every idle connection.

        Raises:
            ConcurrencyError: As for :meth:`get`, when awaited.
            BaseException: As for :meth:`get`, unless it is a
                ``ConnectionClosedOK``; then ``StopAsyncIteration``.
        """
        return _Next(self)

    # --- private ----------------------------------------------------------------------------

    def _push_front(self, message: Data) -> None:
        messages = self._messages
        if messages is None:
            messages = self._messages = collections.deque()
        messages.appendleft(message)

    def _pause(self, reason: int) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        was_paused = self._paused
        self._paused = was_paused | reason
        if not was_paused:
            transport.pause_reading()

    def _resume(self, reason: int) -> None:
        self._paused &= ~reason
        if self._paused:
            return  # the other reason still holds
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.resume_reading()


class _Next:
    """The awaitable of :meth:`MessageQueue.get_next`: :meth:`MessageQueue.get` as an iterator.

    It implements the generator protocol by hand (``send``, ``throw``,
    ``close``), so that awaiting it allocates no frame: the task waits on the
    future it yields.
    """

    __slots__ = ("_queue", "_waiter")

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue
        self._waiter: asyncio.Future[Data | None] | None = None

    def __await__(self) -> Generator[Any, None, Data]:
        return self

    def __iter__(self) -> _Next:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: None) -> Any:
        """Run until the next message; yield the future to wait on, if any."""
        queue = self._queue
        waiter = self._waiter
        if waiter is None:
            current = queue._waiter
            if current is not None and not current.done():
                raise ConcurrencyError(
                    "cannot call recv() while another coroutine is already waiting for a message"
                )
            message = queue.get_nowait()
            if message is not None:
                raise StopIteration(message)
            if queue._closed is not None:
                self._end(queue._closed)
            waiter = self._waiter = queue._waiter = asyncio.get_running_loop().create_future()
            # What Future.__await__ does: tell the task to wait for this future.
            waiter._asyncio_future_blocking = True
            return waiter
        if queue._waiter is waiter:
            queue._waiter = None
        message = waiter.result()  # CancelledError if it was cancelled
        if message is None:
            assert queue._closed is not None  # close() woke us
            self._end(queue._closed)
        raise StopIteration(message)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Take the task's cancellation (or another exception) while waiting."""
        if val is None:
            val = typ() if isinstance(typ, type) else typ
        queue = self._queue
        waiter = self._waiter
        if waiter is not None:
            if queue._waiter is waiter:
                queue._waiter = None
            # put() may have filled the future just before the task was cancelled:
            # keep that message for the next reader instead of losing it.
            if waiter.done() and not waiter.cancelled():
                message = waiter.result()
                if message is not None:
                    queue._push_front(message)
            elif not waiter.done():
                waiter.cancel()
        raise val

    def close(self) -> None:
        """Give up waiting (the awaiting coroutine is being closed)."""
        waiter = self._waiter
        if waiter is not None and self._queue._waiter is waiter:
            self._queue._waiter = None
            waiter.cancel()

    def _end(self, closed: Callable[[], BaseException]) -> NoReturn:
        exc = closed()
        if isinstance(exc, ConnectionClosedOK):
            raise StopAsyncIteration
        raise exc
