"""openline: a fast, strictly correct WebSocket stack for asyncio."""

from __future__ import annotations

from .asyncio.client import ClientConnection, connect
from .asyncio.server import Server, ServerConnection, serve
from .exceptions import ClientClosed, RequestError

__all__ = [
    "ClientClosed",
    "ClientConnection",
    "RequestError",
    "Server",
    "ServerConnection",
    "__version__",
    "connect",
    "serve",
]

#: The version of this package.
__version__ = "0.1.0"
