"""One channel as a hub process sees it: ordered, exactly-once fan-out to its subscribers.

The engine calls :meth:`Channel.on_event` once per message, whatever the number
of subscribers. The channel checks the message's place in the stream before
fanning it out:

* an offset it delivered already is a duplicate and is dropped;
* the next offset is delivered: its JSON is built once and its frame written
  to every live subscriber (see :meth:`Fanout.write_all
  <openline.hub.fanout.Fanout.write_all>`);
* a later offset, or a new epoch, means the live feed skipped something: the
  channel holds live messages back, reads the missing ones from history,
  delivers them in order, then releases what it held. What history no longer
  has becomes a ``gap`` event: never a silent hole.

A new subscriber first sits in :attr:`Channel.syncing`: live messages for it
are queued while the hub sends the subscriber its history, then the queue is
flushed without the offsets history already covered, and the subscriber joins
the live set. So a message published while a client resumes reaches it exactly
once, whichever side of the history read it fell on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .backends.base import Engine, Event, HistoryResult, Message, Position, PresenceEvent
from .fanout import Fanout
from .wire import (
    encode_count,
    encode_gap,
    encode_join,
    encode_leave,
    encode_message,
    encode_state,
    encode_str,
)

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Channel", "Sync"]

logger = logging.getLogger("openline.hub")

#: Seconds a new subscriber waits at most for presence events its snapshot already shows.
PRESENCE_GRACE = 1.0


class Sync:
    """A subscription being set up: what arrived live while history was being sent.

    Attributes:
        items: Queued ``(message, frame)`` pairs; for a presence frame,
            ``message`` is the event's sequence number instead.
        size: Bytes queued.
        presence: Whether the subscriber wants presence events.
        ready: Whether history was sent; from then on, live messages go out at
            once, still checked against :attr:`epoch` and :attr:`last`.
        epoch: The epoch the subscriber is in.
        last: The last offset the subscriber has.
        presence_seq: The presence snapshot's sequence number: presence events
            numbered up to it are already in the snapshot, and are dropped.
        timer: Bounds the wait for the channel's presence events to catch up
            with the snapshot.
    """

    __slots__ = ("epoch", "items", "last", "presence", "presence_seq", "ready", "size", "timer")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[Message | int, bytes]] = collections.deque()
        self.size = 0
        self.presence = False
        self.ready = False
        self.epoch = ""
        self.last = 0
        self.presence_seq = 0
        self.timer: asyncio.TimerHandle | None = None

    def advance(self, ch: str, message: Message, frame: bytes) -> list[bytes]:
        """Return the frames that move the subscriber past ``message``: none for a duplicate."""
        if message.epoch == self.epoch:
            if message.offset <= self.last:
                return []
            frames = []
            if message.offset > self.last + 1:
                gap = encode_gap(ch, message.epoch, (self.epoch, self.last), message.offset)
                frames.append(gap)
        else:
            frames = [encode_gap(ch, message.epoch, (self.epoch, self.last), message.offset)]
            self.epoch = message.epoch
        self.last = message.offset
        frames.append(frame)
        return frames


class Channel:
    """A channel with subscribers in this process.

    The hub that owns it passes what the channel needs at construction; the
    channel knows nothing else of the hub.

    Args:
        name: The channel's name.
        engine: The hub's engine.
        fanout: The hub's one owner of sending.
        spawn: Runs a background task that the hub owns (and cancels on close).
        counts_only: Whether the channel starts with presence counts only.
        presence_limit: Above this many present users, the channel switches to
            counts only; ``None`` disables the switch.
        count_interval: Seconds between two presence counts sent, at least.
    """

    __slots__ = (
        "_count",
        "_count_interval",
        "_count_sent",
        "_count_timer",
        "_presence_limit",
        "_spawn",
        "counts_only",
        "engine",
        "epoch",
        "fanout",
        "held",
        "last",
        "live",
        "name",
        "name_json",
        "position",
        "presence_seq",
        "started",
        "syncing",
        "watchers",
    )

    def __init__(
        self,
        name: str,
        *,
        engine: Engine,
        fanout: Fanout,
        spawn: Callable[[Awaitable[Any]], None],
        counts_only: bool,
        presence_limit: int | None,
        count_interval: float,
    ) -> None:
        self.engine = engine
        #: Where the channel's frames go: the hub's one owner of sending.
        self.fanout = fanout
        self._spawn = spawn
        self._presence_limit = presence_limit
        self._count_interval = count_interval
        self.name = name
        self.name_json = encode_str(name)
        #: Subscribers that get every message as it is delivered.
        self.live: dict[Session, None] = {}
        #: The live subscribers that also get presence events.
        self.watchers: dict[Session, None] = {}
        #: Subscribers being set up.
        self.syncing: dict[Session, Sync] = {}
        #: The position of the last message delivered.
        self.epoch = ""
        self.last = 0
        #: Live messages held back while catching up with history; ``None`` otherwise.
        self.held: collections.deque[Message] | None = None
        #: A head reported by the engine while a catch-up ran: checked when it ends.
        self.position: Position | None = None
        #: The sequence number of the last presence event seen.
        self.presence_seq = 0
        #: Set by the hub: the task running :meth:`start`.
        self.started: asyncio.Future[None] | None = None
        self.counts_only = counts_only
        self._count = 0
        self._count_sent = -1
        self._count_timer: asyncio.TimerHandle | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the engine and learn the channel's position.

        Raises:
            BackendUnavailable: The engine can't reach its store.
        """
        engine = self.engine
        self.held = collections.deque()
        await engine.subscribe(self.name, self.on_event)
        try:
            result = await engine.history(self.name)
        except BaseException:
            await engine.unsubscribe(self.name, self.on_event)
            raise
        self.epoch, self.last = result.epoch, result.last_offset
        await self._catch_up(self.held)

    async def stop(self) -> None:
        """Unsubscribe from the engine, once the last subscriber left."""
        if self._count_timer is not None:
            self._count_timer.cancel()
            self._count_timer = None
        if self.started is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self.started)
        await self.engine.unsubscribe(self.name, self.on_event)

    def is_empty(self) -> bool:
        """Tell whether no subscriber of this process is left."""
        return not (self.live or self.syncing)

    # --- subscribers -------------------------------------------------------------------

    def add_syncing(self, session: Session) -> Sync:
        """Add a subscriber that doesn't want live messages yet: queue them for it."""
        sync = self.syncing[session] = Sync()
        return sync

    async def finish_sync(self, session: Session, sync: Sync, result: HistoryResult) -> None:
        """Send what was queued after the history in ``result``, then go live.

        Raises:
            ConnectionClosed: The subscriber's connection closed.
        """
        sync.epoch, sync.last = result.epoch, result.last_offset
        items = sync.items
        fanout = self.fanout
        while items:
            message, frame = items.popleft()
            sync.size -= len(frame)
            if not isinstance(message, Message):
                if not 0 < message <= sync.presence_seq:  # not in the snapshot already
                    await fanout.send(session, frame)
                continue
            for part in sync.advance(self.name, message, frame):
                await fanout.send(session, part)
        # No await from here: nothing can arrive between the last item and going live.
        if session.closing:
            return  # the slow-consumer policy removed it while we awaited
        sync.ready = True
        self._settle(session, sync)

    def remove(self, session: Session) -> None:
        """Stop sending anything to ``session``."""
        self.live.pop(session, None)
        self.watchers.pop(session, None)
        sync = self.syncing.pop(session, None)
        if sync is not None and sync.timer is not None:
            sync.timer.cancel()

    # --- live delivery -----------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """The engine's callback: one call per message or presence event."""
        if type(event) is Message:
            held = self.held
            if held is not None:
                held.append(event)
            elif not self._accept(event):
                self.held = collections.deque((event,))
                self._spawn(self._catch_up(self.held))
        elif type(event) is PresenceEvent:
            self._on_presence(event)
        elif type(event) is Position:
            self._on_position(event)

    def _on_position(self, position: Position) -> None:
        """The engine's feed was down: catch up with its head from history."""
        if position.epoch == self.epoch and position.last_offset <= self.last:
            return
        if self.held is not None:
            self.position = position  # a catch-up is running: look again when it ends
            return
        self.held = collections.deque()
        self._spawn(self._resync(self.held))

    async def _resync(self, held: collections.deque[Message]) -> None:
        """Read what was stored after our position, then deliver what arrived meanwhile."""
        try:
            result = await self.engine.history(self.name, since=self.last, epoch=self.epoch)
        except Exception:
            logger.warning("can't read the history of %r after an engine outage", self.name)
        else:
            if not result.recovered:
                self._skip_to(result.epoch, result.first_offset)
            for missing in result.messages:
                self._accept(missing)
        await self._catch_up(held)

    def _accept(self, message: Message) -> bool:
        """Deliver ``message`` if it is next, drop it if seen; ``False`` if some are missing."""
        if message.epoch != self.epoch:
            return False
        offset = message.offset
        if offset <= self.last:
            return True  # a duplicate
        if offset > self.last + 1:
            return False
        self.last = offset
        self._deliver(message)
        return True

    def _deliver(self, message: Message) -> None:
        frame = encode_message(self.name_json, message)
        # Live subscribers first: a syncing one that catches up with this message
        # joins them below, and must not get it twice.
        self.fanout.write_all(frame, self.live)
        if self.syncing:
            for session, sync in list(self.syncing.items()):
                if sync.ready:
                    for part in sync.advance(self.name, message, frame):
                        self.fanout.write(session, part)
                    self._settle(session, sync)
                else:
                    self._queue(session, sync, message, frame)

    async def _catch_up(self, held: collections.deque[Message]) -> None:
        """Deliver the held messages in order, reading what is missing from history."""
        retried = False
        while held:
            message = held[0]
            if self._accept(message):
                held.popleft()
                retried = False
                continue
            if retried:
                # History didn't have it either: say so, and move on.
                self._skip_to(message.epoch, message.offset)
                continue
            retried = True
            try:
                result = await self.engine.history(self.name, since=self.last, epoch=self.epoch)
            except Exception:
                logger.warning("can't read the history of %r to fill a hole", self.name)
                self._skip_to(message.epoch, message.offset)
                continue
            if not result.recovered:
                self._skip_to(result.epoch, result.first_offset)
            for missing in result.messages:
                self._accept(missing)
        self.held = None
        position, self.position = self.position, None
        if position is not None:
            self._on_position(position)
        if self.syncing:
            for session, sync in list(self.syncing.items()):
                if sync.ready:
                    self._settle(session, sync)

    def _skip_to(self, epoch: str, offset: int) -> None:
        """Tell live subscribers that messages before ``offset`` in ``epoch`` are lost."""
        if epoch == self.epoch and offset <= self.last + 1:
            return
        frame = encode_gap(self.name, epoch, (self.epoch, self.last), offset)
        self.epoch, self.last = epoch, offset - 1
        self.fanout.write_all(frame, self.live)

    def _stop_waiting(self, session: Session, sync: Sync) -> None:
        """The presence events didn't catch up in time (an engine outage?): go live anyway."""
        sync.presence_seq = 0
        self._settle(session, sync)

    def _queue(self, session: Session, sync: Sync, message: Message | int, frame: bytes) -> None:
        sync.items.append((message, frame))
        sync.size += len(frame)
        if self.fanout.exceeds_buffer(sync.size):
            self.fanout.evict(
                session, "slow consumer: its history queue overflowed", reason="history"
            )

    def _settle(self, session: Session, sync: Sync) -> None:
        """Make a ready subscriber live once it has caught up with the channel."""
        if self.syncing.get(session) is not sync:
            return  # removed meanwhile: a write just made it a slow consumer
        if self.held is not None or sync.epoch != self.epoch or sync.last > self.last:
            return  # the channel is behind the subscriber's history: wait for it
        if sync.presence and sync.presence_seq > self.presence_seq:
            # The snapshot is ahead of the presence events: wait for them (a
            # moment at most), so that none of those it shows is sent again.
            if sync.timer is None:
                loop = asyncio.get_running_loop()
                sync.timer = loop.call_later(PRESENCE_GRACE, self._stop_waiting, session, sync)
            return
        if sync.timer is not None:
            sync.timer.cancel()
            sync.timer = None
        if sync.last < self.last:
            # Can't happen when the engine keeps its contract; never hide it.
            self.fanout.write(
                session, encode_gap(self.name, self.epoch, (sync.epoch, sync.last), self.last + 1)
            )
        del self.syncing[session]
        self.live[session] = None
        if sync.presence:
            self.watchers[session] = None

    # --- presence ----------------------------------------------------------------------

    def _on_presence(self, event: PresenceEvent) -> None:
        seq = event.seq
        if seq > self.presence_seq:
            self.presence_seq = seq
        limit = self._presence_limit
        if not self.counts_only and limit is not None and event.count > limit:
            self.counts_only = True
        if self.counts_only:
            self._count = event.count
            if self._count_timer is None:
                loop = asyncio.get_running_loop()
                self._count_timer = loop.call_later(self._count_interval, self._send_count)
            return
        if event.kind == "join":
            frame = encode_join(self.name, event.user, event.info)
        elif event.kind == "leave":
            frame = encode_leave(self.name, event.user)
        else:
            frame = encode_state(self.name, event.user, event.state, event.ttl)
        self._send_presence(frame, seq)
        if seq and self.syncing:
            # Subscribers whose snapshot was ahead of the events may go live now.
            for session, sync in list(self.syncing.items()):
                if sync.ready and sync.timer is not None and seq >= sync.presence_seq:
                    self._settle(session, sync)

    def _send_count(self) -> None:
        self._count_timer = None
        if self._count == self._count_sent:
            return
        self._count_sent = self._count
        self._send_presence(encode_count(self.name, self._count), 0)

    def _send_presence(self, frame: bytes, seq: int) -> None:
        if self.syncing:
            for session, sync in list(self.syncing.items()):
                if not sync.presence:
                    continue
                if not sync.ready:
                    self._queue(session, sync, seq, frame)
                elif not 0 < seq <= sync.presence_seq:
                    self.fanout.write(session, frame)
        self.fanout.write_all(frame, self.watchers)
