"""The client half of the hub: :class:`Client`, its subscriptions, and what it reports.

* :mod:`.client` — :class:`Client`, the resilient hub client (redial, heartbeat,
  resume by offset, offline publish queue, pacing, in-order retries).
* :mod:`.subscription` — :class:`Subscription`, one channel's position and items.
* :mod:`.events` — the items and connection events the client reports.
* :mod:`.token_source` — ``get_token``, :class:`TokenUnavailable`, and the
  classifier that redials on an expired token.

It shares with the server half only the wire format (:mod:`openline.hub.wire`)
and the behaviour table of both clients (:mod:`openline.hub.policy`).
"""

from __future__ import annotations

from ...exceptions import ClientClosed
from .client import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_MAX_BUFFER,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_RESET_AFTER,
    Client,
)
from .events import (
    Ack,
    ClientEvent,
    Connected,
    Disconnected,
    Error,
    Gap,
    Item,
    Join,
    Leave,
    Member,
    Presence,
    Publication,
    Reconnecting,
    Resumed,
    ServerSubscribed,
    ServerUnsubscribed,
    StateChange,
)
from .subscription import Subscription
from .token_source import GetToken, TokenUnavailable

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_RESET_AFTER",
    "Ack",
    "Client",
    "ClientClosed",
    "ClientEvent",
    "Connected",
    "Disconnected",
    "Error",
    "Gap",
    "GetToken",
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
    "Subscription",
    "TokenUnavailable",
]
