"""What the hub client tells the application; it lives in :mod:`openline.hub.client.events`.

This module keeps the import path of earlier releases working.
"""

from __future__ import annotations

from .client.events import (
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
