"""The engine interface: where a hub keeps history and presence, and how it hears about them.

A :class:`~openline.hub.Hub` holds no channel state of its own beyond its local
subscribers: offsets, epochs, the history window, the idempotency table and
presence all live in an :class:`Engine`. The in-memory engine serves one
process; a Redis engine (Redis Streams for history, pub/sub for fan-out, keys
with a TTL for presence) serves several, behind the same interface.

Vocabulary:

* A channel's messages carry an **offset**, an ``int`` increasing by one from 1,
  within an **epoch**, an opaque ``str``. The epoch changes whenever the channel's
  offsets restart or its history is lost, so that ``(epoch, offset)`` never
  names two different messages.
* **History** is the window of recent messages an engine keeps per channel.
* **Live delivery**: after :meth:`Engine.subscribe`, the engine calls the callback
  once per message published on the channel (by any process), not once per
  subscriber; the hub fans out.

The contract every engine keeps, and the hub relies on:

1. **Stored before delivered.** A message is in history before any callback
   sees it, so a history read that starts after a message was delivered
   includes it.
2. **Ordered.** Per channel, callbacks see messages in offset order. Gaps and
   duplicates are allowed (for example across a reconnection to Redis): the hub
   de-duplicates by offset and fills gaps from history. An engine should still
   avoid them.
3. **Atomic idempotency.** Two publishes with the same ``msg_id`` on one
   channel, even concurrent ones, store one message while the id is remembered.
4. **Callbacks are cheap and synchronous.** They never block and never raise
   into the engine (an engine logs and swallows their exceptions). They may run
   inside :meth:`~Engine.publish` before it returns (the memory engine) or
   later from a reader task (Redis): the hub copes with both.
5. **Failures** to reach a store raise :class:`~openline.exceptions.BackendUnavailable`.
6. **After an outage of the live feed**, the engine delivers a :class:`Position`
   per subscribed channel, so that messages stored while the feed was down are
   read from history (or reported as a gap) without waiting for the next publish.

Optionally, an engine is also a :class:`Control` channel: the hub's server API
(:mod:`openline.hub.server_api`) sends its commands (disconnect a user,
subscribe or unsubscribe a user) through it, so that they act on every node.
An engine that isn't one serves a single process; the hub then runs commands
locally only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Callback",
    "Control",
    "ControlCallback",
    "Engine",
    "Event",
    "HistoryResult",
    "Message",
    "Position",
    "PresenceEvent",
    "PresenceSnapshot",
    "PresenceUser",
    "PublishResult",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A message in a channel's history.

    Attributes:
        ch: The channel.
        epoch: The channel's epoch when the message was stored.
        offset: The message's offset in that epoch, from 1.
        data: The payload, opaque to the engine. The hub stores the UTF-8 JSON
            text of the data as ``bytes``; an engine returns what it was given
            (``str`` is accepted too).
        meta: Small string fields kept with the message; the hub stores the
            publisher's user under ``"user"`` and the client message id under
            ``"id"``. ``None`` when there are none.
    """

    ch: str
    epoch: str
    offset: int
    data: bytes | str
    meta: Mapping[str, str] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PublishResult:
    """Where a publish landed.

    Attributes:
        epoch: The channel's epoch.
        offset: The message's offset; for a duplicate, the original's offset.
        duplicate: ``True`` when ``msg_id`` was seen already and nothing was stored.
    """

    epoch: str
    offset: int
    duplicate: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryResult:
    """The answer to :meth:`Engine.history`.

    Attributes:
        epoch: The channel's current epoch.
        last_offset: The offset of the last message published in this epoch; 0
            when there is none.
        first_offset: The oldest offset still in history; ``last_offset + 1``
            when history is empty.
        messages: Without ``since``: empty. When ``recovered``: every message
            after ``since``, in order. Otherwise: every message still in history,
            in order (the caller reports a gap before them).
        recovered: ``True`` when ``since`` was given, its epoch is the current
            one, and history still holds every message after it.
    """

    epoch: str
    last_offset: int
    first_offset: int
    messages: Sequence[Message]
    recovered: bool


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceUser:
    """One user present in a channel.

    Attributes:
        info: The user's public info, as JSON text (an object).
        clients: How many of the user's connections are in the channel.
        state: The user's ephemeral state as JSON text, or ``None``.
    """

    info: str
    clients: int
    state: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """Who is in a channel.

    Attributes:
        count: How many distinct users are present.
        users: The users, by user id; ``None`` when ``count`` exceeded the
            ``max_users`` asked for.
        seq: The sequence number of the last presence event the snapshot
            reflects (see :attr:`PresenceEvent.seq`); 0 when the engine doesn't
            number its events.
    """

    count: int
    users: Mapping[str, PresenceUser] | None
    seq: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A change in a channel's presence, delivered to the channel's callbacks.

    Attributes:
        ch: The channel.
        kind: ``"join"`` when a user's first connection arrived, ``"leave"`` when
            its last one left, ``"state"`` when its ephemeral state changed.
        user: The user.
        count: Distinct users present after the change.
        info: For ``"join"``: the user's info as JSON text.
        state: For ``"state"``: the new state as JSON text, ``None`` once cleared
            or expired.
        ttl: For ``"state"``: seconds until the state expires, ``None`` if never.
        seq: The channel's presence sequence number, increasing by one per event
            across every process; a snapshot with ``seq >= this`` already shows
            the change (an engine that delivers events later than it answers
            snapshots, like Redis, needs it). 0 when the engine doesn't number events.
    """

    ch: str
    kind: Literal["join", "leave", "state"]
    user: str
    count: int
    info: str | None = None
    state: str | None = None
    ttl: float | None = None
    seq: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a channel stands: delivered after an engine's live feed was interrupted.

    An engine whose feed was down for a while (a Redis outage) can't tell which
    messages it missed. Once the feed is back, it delivers each subscribed
    channel's head; a callback that is behind it reads history up to it, or
    reports a gap when the epoch changed or history no longer reaches back.

    Attributes:
        ch: The channel.
        epoch: The channel's current epoch.
        last_offset: The offset of the last message stored in that epoch.
    """

    ch: str
    epoch: str
    last_offset: int


#: What live delivery hands to a callback.
Event = Message | PresenceEvent | Position
#: A callback for live delivery: synchronous, non-blocking, never raising.
Callback = Callable[[Event], None]
#: A callback for control commands: synchronous, non-blocking, never raising.
ControlCallback = Callable[[bytes], None]


@runtime_checkable
class Control(Protocol):
    """An engine's control channel: commands that reach every node, and who is where.

    Delivery is at most once and unordered with respect to messages: a node
    whose live feed is down when a command is sent misses it (the sender
    can't tell). The memory engine delivers to the callbacks of its own process.
    """

    async def send_control(self, payload: bytes) -> None:
        """Deliver ``payload`` to every node's control callbacks, this one's included.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def subscribe_control(self, callback: ControlCallback) -> None:
        """Start calling ``callback`` with every control payload; twice does nothing.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def unsubscribe_control(self, callback: ControlCallback) -> None:
        """Stop calling ``callback``; does nothing if it isn't subscribed."""
        ...

    async def present_channels(self, limit: int) -> list[str]:
        """Channels where some user is present, on any node, at most ``limit`` of them.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...


class Engine(Protocol):
    """History, live delivery and presence for a hub; see the module docstring."""

    # --- messages ----------------------------------------------------------------------

    async def publish(
        self,
        ch: str,
        data: bytes | str,
        *,
        msg_id: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PublishResult:
        """Store a message at the next offset and deliver it to the channel's callbacks.

        Args:
            ch: The channel.
            data: The payload, stored as given.
            msg_id: An idempotency key: while the engine remembers it (at least
                as long as the history window), a publish with the same key on
                the same channel stores nothing and returns the original offset
                with ``duplicate=True``. ``None`` disables the check.
            meta: Stored with the message and returned with it.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def history(
        self, ch: str, *, since: int | None = None, epoch: str | None = None
    ) -> HistoryResult:
        """Read the channel's position, and the messages after ``since``.

        Reading a channel creates it when it doesn't exist, with a new epoch, so
        that the epoch returned is the one the next publish uses.

        Args:
            ch: The channel.
            since: The last offset the caller has; ``None`` reads the position only.
            epoch: The epoch ``since`` belongs to.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def subscribe(self, ch: str, callback: Callback) -> None:
        """Start calling ``callback`` with the channel's messages and presence events.

        When this returns, delivery is active: every message published later
        reaches ``callback``. Several callbacks per channel are allowed
        (several hubs may share an engine); subscribing the same callback twice
        does nothing.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def unsubscribe(self, ch: str, callback: Callback) -> None:
        """Stop calling ``callback`` for the channel; does nothing if it isn't subscribed."""
        ...

    # --- presence ----------------------------------------------------------------------

    async def presence_join(self, ch: str, user: str, client: str, info: str) -> bool:
        """Add a connection of ``user`` to the channel's presence.

        Args:
            ch: The channel.
            user: The user id.
            client: The connection's id, unique across processes.
            info: The user's public info as JSON text; the latest join's wins.

        Returns:
            ``True`` when it is the user's first connection in the channel; a
            ``"join"`` event was then delivered.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def presence_leave(self, ch: str, user: str, client: str) -> bool:
        """Remove a connection from the channel's presence.

        Returns:
            ``True`` when it was the user's last connection in the channel; a
            ``"leave"`` event was then delivered and the user's state cleared.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def presence_state(
        self, ch: str, user: str, state: str | None, ttl: float | None
    ) -> None:
        """Set or clear a present user's ephemeral state and deliver a ``"state"`` event.

        The engine clears the state after ``ttl`` seconds unless it is set again,
        and delivers a ``"state"`` event with ``state=None`` then (best effort: a
        crashed process may miss it, but snapshots never show an expired state).
        Does nothing when the user isn't present.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    async def presence_snapshot(self, ch: str, *, max_users: int | None = None) -> PresenceSnapshot:
        """Read who is in the channel.

        Args:
            ch: The channel.
            max_users: Return only the count when more users than this are
                present; ``None`` always returns the users.

        Raises:
            BackendUnavailable: The store can't be reached.
        """
        ...

    # --- lifecycle ---------------------------------------------------------------------

    async def close(self) -> None:
        """Release the engine's resources; it can't be used afterwards."""
        ...
