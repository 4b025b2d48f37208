"""The hub: channels with history, recovery and presence over the ``openline.v1`` subprotocol.

See ``docs/protocol.md`` for the wire protocol and its guarantees.
"""

from __future__ import annotations

from ..exceptions import ClientClosed, RequestError
from .auth import Action, Authenticate, Authorize, Credentials, Identity, Reject
from .backends.base import (
    Engine,
    HistoryResult,
    Message,
    PresenceEvent,
    PresenceSnapshot,
    PresenceUser,
    PublishResult,
)
from .backends.memory import MemoryEngine
from .backends.sqlite import SqliteEngine
from .client import Client, Subscription
from .client.events import (
    Ack,
    Connected,
    Disconnected,
    Error,
    Gap,
    Join,
    Leave,
    Presence,
    Publication,
    Reconnecting,
    Resumed,
    ServerSubscribed,
    ServerUnsubscribed,
    StateChange,
)
from .hub import Hub
from .jwt_auth import ChannelClaims, JwtAuth, TokenIdentity
from .metrics import Metrics
from .wire import SUBPROTOCOL

__all__ = [
    "SUBPROTOCOL",
    "Ack",
    "Action",
    "Authenticate",
    "Authorize",
    "ChannelClaims",
    "Client",
    "ClientClosed",
    "Connected",
    "Credentials",
    "Disconnected",
    "Engine",
    "Error",
    "Gap",
    "HistoryResult",
    "Hub",
    "Identity",
    "Join",
    "JwtAuth",
    "Leave",
    "MemoryEngine",
    "Message",
    "Metrics",
    "Presence",
    "PresenceEvent",
    "PresenceSnapshot",
    "PresenceUser",
    "Publication",
    "PublishResult",
    "Reconnecting",
    "Reject",
    "RequestError",
    "Resumed",
    "ServerSubscribed",
    "ServerUnsubscribed",
    "SqliteEngine",
    "StateChange",
    "Subscription",
    "TokenIdentity",
]
