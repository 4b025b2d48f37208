"""Engines: where a hub keeps history and presence (``base.Engine`` is the interface)."""

from __future__ import annotations

from .base import (
    Callback,
    Engine,
    Event,
    HistoryResult,
    Message,
    Position,
    PresenceEvent,
    PresenceSnapshot,
    PresenceUser,
    PublishResult,
)
from .memory import MemoryEngine
from .sqlite import SqliteEngine

__all__ = [
    "Callback",
    "Engine",
    "Event",
    "HistoryResult",
    "MemoryEngine",
    "Message",
    "Position",
    "PresenceEvent",
    "PresenceSnapshot",
    "PresenceUser",
    "PublishResult",
    "SqliteEngine",
]
