"""What the hub needs of a client connection: the :class:`Peer` protocol.

The hub serves two kinds of connection through the same code
(:meth:`~openline.hub.Hub.handle`, :class:`~openline.hub.session.Session`,
:class:`~openline.hub.fanout.Fanout`, :mod:`~openline.hub.refresh`):

* :class:`openline.asyncio.ServerConnection`, from ``hub.serve()`` or, inside
  an ASGI app, claimed from a server whose WebSocket engine is openline's (the
  fast path): frames encoded once for all subscribers, the kernel's send queue
  counted in the slow-consumer policy;
* :class:`~openline.hub.asgi_link.AsgiLink`, over the ``receive`` and ``send``
  callables of any ASGI server (the plain path), which counts the bytes queued
  in itself instead.

Both have every member below; nothing in the hub asks which one it holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..asyncio.broadcast import Writable
from ..protocol.http11 import Request
from ..typing import Data

__all__ = ["Peer"]


class Peer(Writable, Protocol):
    """A hub client's connection, as the hub uses it.

    Besides :class:`~openline.asyncio.broadcast.Writable` (how frames go out):
    who it is, how to read from it, close it, and measure what it holds unsent.
    """

    @property
    def id(self) -> Any:
        """A unique id for logs and presence (its ``str()`` is used)."""

    @property
    def request(self) -> Request | None:
        """The opening handshake request; ``None`` before it is known."""

    @property
    def remote_address(self) -> Any:
        """The client's address, such as ``("127.0.0.1", 50000)``, or ``None``."""

    @property
    def pending_messages(self) -> int:
        """Messages received and not read yet (the hub reads ahead only what has arrived)."""

    @property
    def buffered_amount(self) -> int:
        """Bytes written and not yet handed to the network (or the ASGI server)."""

    def write_shared(self, frame: bytes) -> int:
        """Write a frame many peers share if this one takes it as is (no extensions).

        Returns ``-1`` when nothing was written (not writable, or extensions to
        encode for), otherwise :attr:`buffered_amount` after the write.
        """

    def outgoing_amount(self) -> int:
        """:attr:`buffered_amount` plus what the kernel still holds, where known."""

    def acked_amount(self) -> int | None:
        """Bytes the peer's TCP acknowledged (over ASGI: the server's ``send`` took);
        ``None`` where unknown."""

    def limit_send_buffer(self, size: int) -> int | None:
        """Bound the kernel's send queue; ``None`` where that isn't possible."""

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over incoming messages until the connection closes normally."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``."""

    def abort(self) -> None:
        """Drop what is unsent and end the connection now."""
