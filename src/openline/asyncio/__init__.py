"""The asyncio transport: :class:`serve` and :class:`connect`, built on ``asyncio.Protocol``."""

from __future__ import annotations

from .client import ClientConnection, connect
from .connection import Connection
from .server import Server, ServerConnection, serve

__all__ = ["ClientConnection", "Connection", "Server", "ServerConnection", "connect", "serve"]
