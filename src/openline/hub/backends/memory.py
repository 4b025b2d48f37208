"""The in-memory engine: the hub's default, for one process.

Per channel it keeps a ring buffer of recent messages (the last ``history_size``
messages that are younger than ``history_ttl`` seconds), a table of recent
idempotency keys, and presence. Each channel gets a random epoch when it is
created, so that a restarted process, or a channel forgotten and created again,
can never be mistaken for the old one: resuming clients get a gap, never wrong
offsets.

Everything runs synchronously inside the engine's coroutines, on the event
loop's thread: callbacks run inside :meth:`MemoryEngine.publish`, before it returns.
"""

from __future__ import annotations

import collections
import itertools
import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Literal

from .base import (
    Callback,
    ControlCallback,
    HistoryResult,
    Message,
    PresenceSnapshot,
    PublishResult,
)
from .local import ControlCallbacks, LocalChannels
from .options import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL,
    Default,
    check_windows,
)

__all__ = ["DEFAULT_HISTORY_SIZE", "DEFAULT_HISTORY_TTL", "MemoryEngine"]


class _Channel:
    """One channel's history and idempotency table (callbacks and presence: LocalChannels)."""

    __slots__ = ("epoch", "history", "ids", "ids_order", "last", "touched")

    def __init__(self, history_size: int | None, now: float) -> None:
        # 12 random bytes: two processes never pick the same epoch.
        self.epoch = secrets.token_hex(12)
        self.last = 0
        # (time stored, message), oldest first; offsets are contiguous.
        self.history: collections.deque[tuple[float, Message]] = collections.deque(
            maxlen=history_size
        )
        # Idempotency keys -> offset, and (time, key) in arrival order for eviction.
        self.ids: dict[str, int] = {}
        self.ids_order: collections.deque[tuple[float, str]] = collections.deque()
        self.touched = now

    def first_offset(self) -> int:
        history = self.history
        return history[0][1].offset if history else self.last + 1

    def is_empty(self) -> bool:
        return not (self.history or self.ids)


class MemoryEngine:
    """History, live delivery and presence in this process's memory.

    Args:
        history_size: Messages kept per channel; ``None`` keeps any number
            (bounded by ``history_ttl`` then). 0 keeps none: every resume gets a gap.
        history_ttl: Seconds a message stays in history; ``None`` keeps messages
            until ``history_size`` pushes them out.
        id_size: Idempotency keys remembered per channel; ``history_size`` (or
            1000 when that is ``None``) by default. ``None`` disables the bound.
        id_ttl: Seconds an idempotency key is remembered; ``history_ttl`` by
            default. ``None`` disables the bound.
        clock: A monotonic clock in seconds, for the time windows; tests inject one.

    Raises:
        ValueError: An argument is out of range, or both bounds of history (or of
            the idempotency table) are ``None``.
    """

    def __init__(
        self,
        *,
        # limits
        history_size: int | None = DEFAULT_HISTORY_SIZE,
        history_ttl: float | None = DEFAULT_HISTORY_TTL,
        id_size: int | Literal[Default.TOKEN] | None = Default.TOKEN,
        id_ttl: float | Literal[Default.TOKEN] | None = Default.TOKEN,
        # advanced
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        windows = check_windows(history_size, history_ttl, id_size, id_ttl)
        self._history_size, self._history_ttl, self._id_size, self._id_ttl = windows
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        # Callbacks and presence, as the sqlite engine keeps them too.
        self._local = LocalChannels()
        self._control = ControlCallbacks()
        # Channels with nothing left are forgotten by a sweep, at most this often.
        self._sweep_every = min(self._history_ttl or 60.0, self._id_ttl or 60.0, 60.0)
        self._next_sweep = clock() + self._sweep_every
        self._closed = False

    # --- messages ----------------------------------------------------------------------

    async def publish(
        self,
        ch: str,
        data: bytes | str,
        *,
        msg_id: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PublishResult:
        """Store a message and deliver it; see :meth:`.base.Engine.publish`."""
        now = self._clock()
        channel = self._channel(ch, now)
        if msg_id is not None:
            self._trim_ids(channel, now)
            offset = channel.ids.get(msg_id)
            if offset is not None:
                return PublishResult(channel.epoch, offset, duplicate=True)
        channel.last += 1
        message = Message(ch, channel.epoch, channel.last, data, meta)
        channel.history.append((now, message))  # maxlen drops the oldest
        self._trim_history(channel, now)
        if msg_id is not None:
            channel.ids[msg_id] = message.offset
            channel.ids_order.append((now, msg_id))
            self._trim_ids(channel, now)
        self._local.notify(ch, message)
        return PublishResult(channel.epoch, message.offset)

    async def history(
        self, ch: str, *, since: int | None = None, epoch: str | None = None
    ) -> HistoryResult:
        """Read the position and the messages after ``since``; see :meth:`.base.Engine.history`."""
        now = self._clock()
        channel = self._channel(ch, now)
        self._trim_history(channel, now)
        first, last = channel.first_offset(), channel.last
        if since is None:
            return HistoryResult(channel.epoch, last, first, (), recovered=False)
        if epoch == channel.epoch and first - 1 <= since <= last:
            start = since + 1 - first
            messages = [m for _, m in itertools.islice(channel.history, start, None)]
            return HistoryResult(channel.epoch, last, first, messages, recovered=True)
        messages = [m for _, m in channel.history]
        return HistoryResult(channel.epoch, last, first, messages, recovered=False)

    async def subscribe(self, ch: str, callback: Callback) -> None:
        """Deliver the channel's events to ``callback``; see :meth:`.base.Engine.subscribe`."""
        self._channel(ch, self._clock())
        self._local.add_callback(ch, callback)

    async def unsubscribe(self, ch: str, callback: Callback) -> None:
        """Stop delivering to ``callback``; see :meth:`.base.Engine.unsubscribe`."""
        self._local.remove_callback(ch, callback)

    # --- control -----------------------------------------------------------------------

    async def send_control(self, payload: bytes) -> None:
        """Run this process's control callbacks; see :meth:`.base.Control.send_control`."""
        self._control.run(payload)

    async def subscribe_control(self, callback: ControlCallback) -> None:
        """Add a control callback; see :meth:`.base.Control.subscribe_control`."""
        self._control.add(callback)

    async def unsubscribe_control(self, callback: ControlCallback) -> None:
        """Remove a control callback; see :meth:`.base.Control.unsubscribe_control`."""
        self._control.remove(callback)

    async def present_channels(self, limit: int) -> list[str]:
        """Channels with present users; see :meth:`.base.Control.present_channels`."""
        return self._local.present(limit)

    # --- presence ----------------------------------------------------------------------

    async def presence_join(self, ch: str, user: str, client: str, info: str) -> bool:
        """Add a connection; see :meth:`.base.Engine.presence_join`."""
        self._channel(ch, self._clock())
        return self._local.join(ch, user, client, info)

    async def presence_leave(self, ch: str, user: str, client: str) -> bool:
        """Remove a connection; see :meth:`.base.Engine.presence_leave`."""
        channel = self._channels.get(ch)
        if channel is not None:
            channel.touched = self._clock()
        return self._local.leave(ch, user, client)

    async def presence_state(
        self, ch: str, user: str, state: str | None, ttl: float | None
    ) -> None:
        """Set or clear a user's state; see :meth:`.base.Engine.presence_state`."""
        self._local.set_state(ch, user, state, ttl)

    async def presence_snapshot(self, ch: str, *, max_users: int | None = None) -> PresenceSnapshot:
        """Read who is in the channel; see :meth:`.base.Engine.presence_snapshot`."""
        return self._local.snapshot(ch, max_users)

    # --- lifecycle ---------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """The engine's state, for ``/healthz``: always ``ok`` while open."""
        return {
            "engine": "memory",
            "status": "closed" if self._closed else "ok",
            "channels": len(self._channels),
        }

    async def close(self) -> None:
        """Forget everything and cancel the state timers."""
        self._closed = True
        self._local.clear()
        self._channels.clear()

    # --- private -----------------------------------------------------------------------

    def _channel(self, ch: str, now: float) -> _Channel:
        if self._closed:
            raise RuntimeError("the engine is closed")
        if now >= self._next_sweep:
            self._sweep(now)
        channel = self._channels.get(ch)
        if channel is None:
            channel = self._channels[ch] = _Channel(self._history_size, now)
        channel.touched = now
        return channel

    def _trim_history(self, channel: _Channel, now: float) -> None:
        ttl = self._history_ttl
        if ttl is None:
            return
        history = channel.history
        oldest = now - ttl
        while history and history[0][0] <= oldest:
            history.popleft()

    def _trim_ids(self, channel: _Channel, now: float) -> None:
        order, ids = channel.ids_order, channel.ids
        size, ttl = self._id_size, self._id_ttl
        oldest = -math.inf if ttl is None else now - ttl
        while order and (order[0][0] <= oldest or (size is not None and len(order) > size)):
            _, key = order.popleft()
            del ids[key]

    def _sweep(self, now: float) -> None:
        """Forget channels with no callbacks, no presence, and nothing left in history.

        Their offsets restart under a new epoch if they are used again: a
        client resuming them gets a gap, which is true, since their history is gone.
        """
        self._next_sweep = now + self._sweep_every
        idle_for = self._sweep_every
        for ch, channel in list(self._channels.items()):
            self._trim_history(channel, now)
            self._trim_ids(channel, now)
            idle = channel.is_empty() and not self._local.is_active(ch)
            if idle and now - channel.touched >= idle_for:
                del self._channels[ch]
