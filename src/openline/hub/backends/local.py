"""Callbacks and presence kept in this process, for engines that serve one process.

The memory engine and the sqlite engine (which stores history on disk) both keep
live delivery and presence here: both are ephemeral (a restarted process has no
connections, so nobody is present), and one process owns the channels.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from .base import (
    Callback,
    ControlCallback,
    Event,
    PresenceEvent,
    PresenceSnapshot,
    PresenceUser,
)

__all__ = ["LocalChannels"]

logger = logging.getLogger("openline.hub")


class _User:
    """A user present in a channel."""

    __slots__ = ("_clients", "info", "state", "timer")

    def __init__(self, info: str) -> None:
        self.info = info
        # Its connections: one id alone (the usual case: a set costs over 200
        # bytes per present user), a set from the second on.
        self._clients: str | set[str] | None = None
        self.state: str | None = None
        self.timer: asyncio.TimerHandle | None = None

    def __contains__(self, client: str) -> bool:
        clients = self._clients
        if isinstance(clients, str):
            return client == clients
        return clients is not None and client in clients

    def __len__(self) -> int:
        """How many connections the user has in the channel."""
        clients = self._clients
        return (1 if isinstance(clients, str) else len(clients)) if clients is not None else 0

    def add(self, client: str) -> None:
        clients = self._clients
        if clients is None:
            self._clients = client
        elif isinstance(clients, str):
            if client != clients:
                self._clients = {clients, client}
        else:
            clients.add(client)

    def discard(self, client: str) -> None:
        clients = self._clients
        if isinstance(clients, str):
            if client == clients:
                self._clients = None
        elif clients is not None:
            clients.discard(client)


class _Local:
    """One channel's callbacks and presence."""

    __slots__ = ("callbacks", "presence_seq", "users")

    def __init__(self) -> None:
        self.callbacks: list[Callback] = []
        self.users: dict[str, _User] = {}
        self.presence_seq = 0

    def is_idle(self) -> bool:
        return not (self.callbacks or self.users)


class LocalChannels:
    """Live delivery and presence of channels in this process's memory.

    Channels with neither callbacks nor present users are forgotten at once, so
    the table holds only channels in use.
    """

    def __init__(self) -> None:
        self._channels: dict[str, _Local] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def is_active(self, ch: str) -> bool:
        """Whether the channel has callbacks or present users in this process."""
        return ch in self._channels

    # --- delivery ----------------------------------------------------------------------

    def add_callback(self, ch: str, callback: Callback) -> None:
        """Deliver the channel's events to ``callback``; adding it twice does nothing."""
        local = self._channels.setdefault(ch, _Local())
        if callback not in local.callbacks:
            local.callbacks.append(callback)

    def remove_callback(self, ch: str, callback: Callback) -> None:
        """Stop delivering to ``callback``; does nothing if it isn't there."""
        local = self._channels.get(ch)
        if local is not None and callback in local.callbacks:
            local.callbacks.remove(callback)
            self._forget_if_idle(ch, local)

    def notify(self, ch: str, event: Event) -> None:
        """Call the channel's callbacks with ``event``; log and swallow their exceptions."""
        local = self._channels.get(ch)
        if local is None:
            return
        for callback in list(local.callbacks):
            try:
                callback(event)
            except Exception:
                logger.exception("engine callback failed for channel %r", ch)

    # --- presence ----------------------------------------------------------------------

    def join(self, ch: str, user: str, client: str, info: str) -> bool:
        """Add a connection; see :meth:`.base.Engine.presence_join`."""
        local = self._channels.setdefault(ch, _Local())
        entry = local.users.get(user)
        first = entry is None
        if entry is None:
            entry = local.users[user] = _User(info)
        entry.info = info
        entry.add(client)
        if first:
            local.presence_seq += 1
            count = len(local.users)
            self.notify(
                ch, PresenceEvent(ch, "join", user, count, info=info, seq=local.presence_seq)
            )
        return first

    def leave(self, ch: str, user: str, client: str) -> bool:
        """Remove a connection; see :meth:`.base.Engine.presence_leave`."""
        local = self._channels.get(ch)
        entry = None if local is None else local.users.get(user)
        if local is None or entry is None or client not in entry:
            return False
        entry.discard(client)
        if len(entry):
            return False
        del local.users[user]
        if entry.timer is not None:
            entry.timer.cancel()
        local.presence_seq += 1
        self.notify(ch, PresenceEvent(ch, "leave", user, len(local.users), seq=local.presence_seq))
        self._forget_if_idle(ch, local)
        return True

    def set_state(self, ch: str, user: str, state: str | None, ttl: float | None) -> None:
        """Set or clear a user's state; see :meth:`.base.Engine.presence_state`."""
        local = self._channels.get(ch)
        entry = None if local is None else local.users.get(user)
        if local is None or entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.state = state
        if state is not None and ttl is not None:
            loop = asyncio.get_running_loop()
            entry.timer = loop.call_later(ttl, self._expire_state, local, ch, user, entry)
        local.presence_seq += 1
        event = PresenceEvent(
            ch, "state", user, len(local.users), state=state, ttl=ttl, seq=local.presence_seq
        )
        self.notify(ch, event)

    def snapshot(self, ch: str, max_users: int | None) -> PresenceSnapshot:
        """Read who is in the channel; see :meth:`.base.Engine.presence_snapshot`."""
        local = self._channels.get(ch)
        if local is None:
            return PresenceSnapshot(0, {})
        count, seq = len(local.users), local.presence_seq
        if max_users is not None and count > max_users:
            return PresenceSnapshot(count, None, seq)
        users = {
            user: PresenceUser(entry.info, len(entry), entry.state)
            for user, entry in local.users.items()
        }
        return PresenceSnapshot(count, users, seq)

    def present(self, limit: int) -> list[str]:
        """Channels where some user is present, sorted, at most ``limit`` of them."""
        names = (ch for ch, local in self._channels.items() if local.users)
        return sorted(itertools.islice(names, limit))

    def clear(self) -> None:
        """Forget every channel and cancel the state timers."""
        for local in self._channels.values():
            for entry in local.users.values():
                if entry.timer is not None:
                    entry.timer.cancel()
        self._channels.clear()

    # --- private -----------------------------------------------------------------------

    def _forget_if_idle(self, ch: str, local: _Local) -> None:
        # The presence sequence restarts with the channel; snapshots and events
        # restart together, so no reader can mix the two numberings.
        if local.is_idle() and self._channels.get(ch) is local:
            del self._channels[ch]

    def _expire_state(self, local: _Local, ch: str, user: str, entry: _User) -> None:
        entry.timer = None
        if local.users.get(user) is not entry or entry.state is None:
            return
        entry.state = None
        local.presence_seq += 1
        event = PresenceEvent(ch, "state", user, len(local.users), seq=local.presence_seq)
        self.notify(ch, event)


class ControlCallbacks:
    """The control callbacks of an engine whose commands stay in this process.

    The memory engine and the sqlite engine (one process per file) both use it:
    a command sent is run at once by every callback here.
    """

    __slots__ = ("_callbacks",)

    def __init__(self) -> None:
        self._callbacks: list[ControlCallback] = []

    def add(self, callback: ControlCallback) -> None:
        """Start calling ``callback``; twice does nothing."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def remove(self, callback: ControlCallback) -> None:
        """Stop calling ``callback``; does nothing if it isn't added."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def run(self, payload: bytes) -> None:
        """Call every callback with ``payload``; one that fails is logged, not raised."""
        for callback in list(self._callbacks):
            try:
                callback(payload)
            except Exception:
                logger.exception("control callback failed")
