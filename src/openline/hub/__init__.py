"""The hub: channels with history, recovery and presence over the ``openline.v1`` subprotocol.

See ``docs/protocol.md`` for the wire protocol and its guarantees.
"""

from __future__ import annotations

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
from .hub import Hub
from .metrics import Metrics
from .wire import SUBPROTOCOL

__all__ = [
    "SUBPROTOCOL",
    "Action",
    "Authenticate",
    "Authorize",
    "Credentials",
    "Engine",
    "HistoryResult",
    "Hub",
    "Identity",
    "MemoryEngine",
    "Message",
    "Metrics",
    "PresenceEvent",
    "PresenceSnapshot",
    "PresenceUser",
    "PublishResult",
    "Reject",
]
