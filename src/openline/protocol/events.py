"""Events that :class:`~openline.protocol.connection.Connection` hands to the I/O layer.

Messages arrive whole: the core reassembles fragments, checks UTF-8 and runs
extensions, so an event is always a complete message or a control frame. The
close frame is delivered as :class:`~openline.protocol.frames.Close`.
"""

from __future__ import annotations

import dataclasses

from .frames import Close

__all__ = ["BinaryMessage", "Close", "Event", "Ping", "Pong", "TextMessage"]


@dataclasses.dataclass(frozen=True, slots=True)
class TextMessage:
    """A complete text message, decoded from UTF-8."""

    data: str


@dataclasses.dataclass(frozen=True, slots=True)
class BinaryMessage:
    """A complete binary message."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """A ping was received; the core has already queued the matching pong."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Pong:
    """A pong was received."""

    data: bytes


Event = TextMessage | BinaryMessage | Ping | Pong | Close
