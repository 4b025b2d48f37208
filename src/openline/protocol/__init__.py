"""The sans-I/O protocol core: bytes in, events out. Standard library only.

The names most code needs to drive the core itself are here; each submodule
(``frames``, ``handshake``, ``http11``...) exports the rest of its API.
"""

from __future__ import annotations

from .connection import Connection, Side, State
from .events import BinaryMessage, Event, Ping, Pong, TextMessage
from .frames import Close, CloseCode, Frame, Opcode
from .handshake import ClientHandshake, Negotiated, ServerHandshake
from .http11 import Headers, Request, Response
from .uri import WebSocketURI, parse_uri

__all__ = [
    "BinaryMessage",
    "ClientHandshake",
    "Close",
    "CloseCode",
    "Connection",
    "Event",
    "Frame",
    "Headers",
    "Negotiated",
    "Opcode",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "ServerHandshake",
    "Side",
    "State",
    "TextMessage",
    "WebSocketURI",
    "parse_uri",
]
