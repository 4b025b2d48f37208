"""What :class:`~openline.hub.client.Client` tells the application: items and events.

Two streams, both of frozen, slotted dataclasses, made for ``match``:

* A :class:`~openline.hub.client.Subscription` yields the channel's items in
  order: :class:`Publication` for each message, :class:`Gap` exactly where
  messages were lost, and, for a subscription with ``presence=True``,
  :class:`Presence` snapshots and :class:`Join`, :class:`Leave` and
  :class:`StateChange` events.
* ``Client.events()`` (and the ``on_event`` callback) report the connection's
  life: :class:`Connected`, :class:`Disconnected`, :class:`Reconnecting`,
  :class:`Resumed`, :class:`Gap` (again, for monitoring) and :class:`Error`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Ack",
    "ClientEvent",
    "Connected",
    "Disconnected",
    "Error",
    "Gap",
    "Item",
    "Join",
    "Leave",
    "Member",
    "Presence",
    "Publication",
    "Reconnecting",
    "Resumed",
    "ServerSubscribed",
    "ServerUnsubscribed",
    "StateChange",
]


# --- subscription items -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """A message published on a channel, as delivered to a subscriber.

    Attributes:
        ch: The channel.
        epoch: The channel's epoch.
        offset: The message's offset in the epoch: one more than the previous one's.
        data: The payload, decoded from JSON.
        id: The publisher's client message id, if it gave one.
        user: The publisher's user, if known.
    """

    ch: str
    epoch: str
    offset: int
    data: Any
    id: str | None = None
    user: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    """Messages were lost: history no longer reaches back far enough.

    The messages after ``since`` and before ``first`` in ``epoch`` will never
    be delivered; when ``since`` is in another epoch (the channel's history was
    reset, for example by a server restart), everything after ``since`` is
    lost. Reload the channel's state from its source of truth.

    Attributes:
        ch: The channel.
        epoch: The epoch delivery continues in.
        since: The last position the client had, or ``None``.
        first: The offset of the next message delivered.
    """

    ch: str
    epoch: str
    since: tuple[str, int] | None
    first: int


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """A user present in a channel.

    Attributes:
        user: The user id.
        info: The user's public info.
        clients: How many of the user's connections are in the channel.
        state: The user's ephemeral state (e.g. ``{"typing": True}``), or ``None``.
    """

    user: str
    info: Mapping[str, Any]
    clients: int = 1
    state: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class Presence:
    """Who is in a channel: a snapshot.

    Attributes:
        ch: The channel.
        count: How many distinct users are present.
        members: The users by id; ``None`` for a counts-only channel.
    """

    ch: str
    count: int
    members: Mapping[str, Member] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """A user's first connection joined the channel."""

    ch: str
    user: str
    info: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Leave:
    """A user's last connection left the channel."""

    ch: str
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class StateChange:
    """A user's ephemeral state changed; ``state`` is ``None`` once cleared or expired.

    Attributes:
        ttl: Seconds until the state expires unless renewed, or ``None``.
    """

    ch: str
    user: str
    state: Any
    ttl: float | None = None


#: What a subscription yields.
Item = Publication | Gap | Presence | Join | Leave | StateChange


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """The hub stored a publish.

    Attributes:
        ch: The channel.
        epoch: The channel's epoch.
        offset: The message's offset; for a duplicate, the original's.
        id: The client message id.
        duplicate: ``True`` when the hub had stored this id already (a retry).
    """

    ch: str
    epoch: str
    offset: int
    id: str
    duplicate: bool = False


# --- client events ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Connected:
    """A connection opened and the hub welcomed it.

    Attributes:
        client: The connection's id at the hub.
        user: Who the hub says we are.
        attempt: Dials it took, counted since the backoff last started over.
    """

    client: str
    user: str
    attempt: int


@dataclasses.dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended.

    Attributes:
        code: The close code: the hub's, or 1006 when none arrived (a dead line,
            a reset).
        reason: The close reason, or what the client noticed (``"heartbeat
            timeout"``).
        error: The exception that ended the connection.
    """

    code: int
    reason: str
    error: Exception | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Reconnecting:
    """The client will dial again after ``delay`` seconds.

    Attributes:
        attempt: The number of the coming dial, since the backoff last started over.
        delay: Seconds until then.
        error: Why: the failed dial, or how the connection ended.
    """

    attempt: int
    delay: float
    error: Exception


@dataclasses.dataclass(frozen=True, slots=True)
class Resumed:
    """A subscription was renewed after a redial.

    Attributes:
        ch: The channel.
        recovered: Messages replayed from history, sent while the client was away.
        gap: Whether history didn't reach back far enough (a :class:`Gap` came first).
    """

    ch: str
    recovered: int
    gap: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong.

    Attributes:
        error: What.
        fatal: ``True`` when the client stopped for good (for example a 401 at
            the handshake or a 1008 close): every pending call raises ``error``.
    """

    error: Exception
    fatal: bool = False


#: What ``Client.events()`` yields.
@dataclasses.dataclass(frozen=True, slots=True)
class ServerSubscribed:
    """The server subscribed this client to a channel it hadn't asked for.

    The client adopts the subscription: it resumes it after a redial like its
    own, and the application reads it like one (``client.subscriptions[ch]``).

    Attributes:
        ch: The channel.
    """

    ch: str


@dataclasses.dataclass(frozen=True, slots=True)
class ServerUnsubscribed:
    """The server unsubscribed this client from a channel.

    The subscription's iteration ends with ``ClientClosed("unsubscribed by the server")``.

    Attributes:
        ch: The channel.
    """

    ch: str


#: Every connection event the client reports through ``events()``.
ClientEvent = (
    Connected
    | Disconnected
    | Reconnecting
    | Resumed
    | Gap
    | Error
    | ServerSubscribed
    | ServerUnsubscribed
)
