"""The one owner of sending to hub clients: buffers, fan-out, and slow consumers.

:class:`Fanout` writes a frame, encoded once, to any number of sessions without
waiting (a publish never waits for a subscriber), and keeps every byte a
subscriber makes the server hold bounded, the kernel's part included:

* :meth:`Fanout.attach` bounds each connection's kernel send queue
  (``SO_SNDBUF``, ``send_buffer`` bytes requested; Linux grants twice that,
  and counts its bookkeeping in it). Without it, the kernel autotunes the buffer
  of a peer that doesn't read up to 4 MiB, which the transport's buffer never
  shows.
* After each write it reads the transport's buffer: non-empty means the
  kernel's queue is full and the subscriber *fell behind*. Those subscribers
  are watched by a sweep every :data:`SWEEP_INTERVAL` seconds at most, which
  reads the kernel's queue (``SIOCOUTQ``) and the bytes the peer acknowledged
  (``TCP_INFO``). A subscriber is evicted when

  - its transport buffer plus kernel queue passes ``max_buffer`` (checked at
    each write, with the kernel's size from the last sweep), or
  - it is *stalled*: behind for ``slow_consumer_timeout`` seconds during which
    its TCP acknowledged no byte (where ``TCP_INFO`` is unknown: its transport
    buffer didn't shrink).

  A subscriber that catches up (its transport buffer empties) stops being watched.
* Eviction removes the session from every channel at once, counts it in
  ``slow_consumers``, and closes the connection: with a close frame
  (``slow_consumer_code``, 1013 by default) if the transport's buffer is empty,
  since the frame can then reach the kernel; otherwise, or if the closing
  handshake doesn't end within :data:`CLOSE_GRACE` seconds, with a TCP reset,
  which discards the kernel's queue at once (counted in ``slow_consumer_resets``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..asyncio.broadcast import Broadcast
from ..asyncio.config import check_count, check_timeout
from ..protocol.frames import Close
from ..typing import LoggerLike
from .metrics import Metrics
from .peer import Peer

if TYPE_CHECKING:
    from .session import Roster, Session

__all__ = ["CLOSE_GRACE", "SWEEP_INTERVAL", "Fanout"]

#: Seconds between two looks at the subscribers that fell behind, at most.
SWEEP_INTERVAL = 0.1
#: Seconds an evicted subscriber has to answer the close frame before a reset.
CLOSE_GRACE = 1.0


class _Behind:
    """What the sweep knows about a subscriber whose transport buffer isn't empty."""

    __slots__ = ("acked", "buffered", "kernel", "since")

    def __init__(self, since: float, acked: int | None, buffered: int, kernel: int) -> None:
        #: When it last made progress (or fell behind).
        self.since = since
        #: Bytes its TCP acknowledged at the last look; ``None`` where unknown.
        self.acked = acked
        #: Its transport buffer at the last look.
        self.buffered = buffered
        #: Its kernel send queue at the last look.
        self.kernel = kernel


class Fanout:
    """Sends frames to sessions and applies the slow-consumer policy.

    Args:
        stats: The hub's counters: ``messages_out``, ``slow_consumers`` and
            ``slow_consumer_resets`` are updated here.
        channels: The hub's channels by name, to remove an evicted session from.
        spawn: Runs a coroutine in the background, owned by the hub.
        leave: The hub's coroutine that makes a session leave its channels
            (presence included).
        logger: Where to log evictions.
        max_buffer: Bytes a connection may hold unsent, its transport buffer
            and kernel send queue together; ``None`` disables the check.
        slow_consumer_code: The close code of an eviction.
        slow_consumer_timeout: Seconds a subscriber may stay behind without its
            TCP acknowledging a byte; ``None`` disables the check.
        send_buffer: ``SO_SNDBUF`` requested for each connection; ``None``
            leaves the kernel's autotuning alone.

    Raises:
        ValueError: An argument is out of range; the message names it.
    """

    __slots__ = (
        "_behind",
        "_channels",
        "_code",
        "_leave",
        "_logger",
        "_max_buffer",
        "_send_buffer",
        "_spawn",
        "_sweep_handle",
        "_timeout",
        "stats",
    )

    def __init__(
        self,
        stats: Metrics,
        *,
        channels: Mapping[str, Roster],
        spawn: Callable[[Awaitable[Any]], None],
        leave: Callable[[Session], Awaitable[None]],
        logger: LoggerLike,
        max_buffer: int | None,
        slow_consumer_code: int,
        slow_consumer_timeout: float | None,
        send_buffer: int | None,
    ) -> None:
        self.stats = stats
        self._channels = channels
        self._spawn = spawn
        self._leave = leave
        self._logger = logger
        self._max_buffer = check_count("max_buffer", max_buffer, minimum=1)
        Close(slow_consumer_code, "").check()
        self._code = slow_consumer_code
        self._timeout = check_timeout("slow_consumer_timeout", slow_consumer_timeout)
        self._send_buffer = check_count("send_buffer", send_buffer, minimum=4096)
        self._behind: dict[Session, _Behind] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None

    # --- public API --------------------------------------------------------------------

    @property
    def max_buffer(self) -> int | None:
        """Bytes held unsent for one subscriber before it is evicted; ``None``: no limit."""
        return self._max_buffer

    def attach(self, ws: Peer) -> None:
        """Bound the kernel's send queue of a new connection."""
        if self._send_buffer is not None:
            ws.limit_send_buffer(self._send_buffer)

    def exceeds_buffer(self, size: int) -> bool:
        """Tell whether ``size`` bytes held for one session pass ``max_buffer``."""
        return self._max_buffer is not None and size > self._max_buffer

    async def send(self, session: Session, frame: bytes) -> None:
        """Send a frame to one session, waiting for the connection's flow control.

        For replies and history, which are sent in order before the session
        goes live.

        Raises:
            ConnectionClosed: The connection is closed.
        """
        await Broadcast(frame, text=True).send(session.ws)
        self.stats.messages_out += 1
        self.stats.bytes_out += len(frame)

    def write(self, session: Session, frame: bytes) -> None:
        """Write one frame to one session without waiting, under the policy."""
        self.write_all(frame, (session,))

    def write_all(
        self, frame: bytes, sessions: Mapping[Session, None] | tuple[Session, ...]
    ) -> None:
        """Write one frame, encoded once, to many sessions, without waiting."""
        if not sessions:
            return
        prepared = Broadcast(frame, text=True)
        shared = prepared.frame
        watch = self._max_buffer is not None or self._timeout is not None
        written = 0
        behind: list[tuple[Session, int]] | None = None
        # This loop runs once per delivery: one call per subscriber (write_shared
        # checks, writes and reports the buffer), since the four calls it replaces
        # were most of a 5,000-subscriber fan-out's Python time.
        for session in sessions:
            ws = session.ws
            buffered = ws.write_shared(shared)
            if buffered < 0:
                # Not writable, or compressed: per parameters, or per connection.
                if not prepared.write(ws):
                    continue
                buffered = ws.buffered_amount
            written += 1
            # Non-zero only once the kernel refused bytes: its queue is full.
            if buffered and watch:
                if behind is None:
                    behind = []
                behind.append((session, buffered))
        self.stats.messages_out += written
        self.stats.bytes_out += written * len(frame)
        if behind is not None:
            # After the loop: evicting changes the channel's sets being iterated.
            for session, buffered in behind:
                self._check_behind(session, buffered)

    def evict(
        self, session: Session, why: str = "slow consumer", *, reason: str = "buffer"
    ) -> None:
        """Stop all sending to ``session`` and close its connection (see the module).

        Args:
            session: The subscriber.
            why: Logged.
            reason: Counted in the hub's ``evictions``: ``buffer``, ``stalled``
                or ``history``.
        """
        if session.closing:
            return
        session.closing = True
        self._behind.pop(session, None)
        self.stats.slow_consumers += 1
        self.stats.evictions[reason] += 1
        self._logger.info("closing %s: %s", session.client, why)
        for ch in session.subs:
            channel = self._channels.get(ch)
            if channel is not None:
                channel.remove(session)
        ws = session.ws
        if ws.buffered_amount:
            # The close frame would wait behind a full kernel queue, maybe forever.
            self._reset(ws)
        else:
            self._spawn(self._close(ws))
        self._spawn(self._leave(session))

    # --- private: watching subscribers that fell behind --------------------------------

    def _check_behind(self, session: Session, buffered: int) -> None:
        """Called after a write left ``buffered`` bytes in the transport's buffer."""
        entry = self._behind.get(session)
        if entry is None:
            ws = session.ws
            kernel = ws.outgoing_amount() - buffered
            entry = _Behind(time.monotonic(), ws.acked_amount(), buffered, kernel)
            self._behind[session] = entry
            if self._sweep_handle is None:
                self._schedule_sweep()
        if self.exceeds_buffer(buffered + entry.kernel):
            self.evict(session, f"slow consumer: {buffered + entry.kernel} bytes unsent")

    def _schedule_sweep(self) -> None:
        interval = SWEEP_INTERVAL
        if self._timeout is not None:
            interval = min(interval, self._timeout / 4)
        loop = asyncio.get_running_loop()
        self._sweep_handle = loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = time.monotonic()
        for session, entry in list(self._behind.items()):
            ws = session.ws
            buffered = ws.buffered_amount
            if session.closing or not buffered or not ws.is_writable:
                del self._behind[session]  # caught up, or gone
                continue
            acked = ws.acked_amount()
            if acked is None or entry.acked is None:
                progressed = buffered < entry.buffered
            else:
                progressed = acked > entry.acked
            entry.acked, entry.buffered = acked, buffered
            entry.kernel = ws.outgoing_amount() - buffered
            if progressed:
                entry.since = now
            unsent = buffered + entry.kernel
            if self.exceeds_buffer(unsent):
                self.evict(session, f"slow consumer: {unsent} bytes unsent")
            elif self._timeout is not None and now - entry.since >= self._timeout:
                self.evict(
                    session,
                    f"slow consumer: stalled for {now - entry.since:.2f} s",
                    reason="stalled",
                )
        if self._behind:
            self._schedule_sweep()

    # --- private: closing --------------------------------------------------------------

    async def _close(self, ws: Peer) -> None:
        try:
            await asyncio.wait_for(ws.close(self._code, "slow consumer"), CLOSE_GRACE)
        except asyncio.TimeoutError:
            self._reset(ws)

    def _reset(self, ws: Peer) -> None:
        self.stats.slow_consumer_resets += 1
        ws.abort()
