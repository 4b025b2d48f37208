"""Write corking: what a connection writes in one event loop turn leaves in one call.

A connection that answers many messages from one read, or a fan-out that writes
to thousands of connections, queues its frames ("corks") and writes them at the
end of the loop turn with one ``writelines``: one system call per connection and
turn instead of one per frame. :class:`Cork` is per event loop, shared by all
its connections, so the whole turn costs one ``call_soon``.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from typing import Any, Protocol

__all__ = ["Cork", "Corked", "cork_for", "writelines"]


class Corked(Protocol):
    """What the cork needs of a connection (``openline.asyncio.connection.Connection``)."""

    def _uncork(self) -> None:
        """Write what this turn corked, in one call."""


class Cork:
    """The connections of one event loop that have corked writes this turn.

    One ``call_soon`` per loop turn flushes them all: a fan-out to thousands of
    connections costs one callback, and each connection one write per turn.
    """

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[Corked] = []
        self._scheduled = False

    def add(self, connection: Corked) -> None:
        """Have ``connection._uncork()`` called at the end of this loop turn."""
        self._pending.append(connection)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for connection in pending:
            connection._uncork()


_CORKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Cork] = weakref.WeakKeyDictionary()


# The cork asked for last: almost always the one asked for next (one loop per
# thread, usually one in all), and a global is cheaper than the weak mapping,
# which this lookup is on the path of every corked write.
_last: Cork | None = None


def cork_for(loop: asyncio.AbstractEventLoop) -> Cork:
    """Return the cork of ``loop``, made on first use."""
    global _last
    cork = _last
    if cork is not None and cork._loop is loop:
        return cork
    cork = _CORKS.get(loop)
    if cork is None:
        cork = _CORKS[loop] = Cork(loop)
    _last = cork
    return cork


# asyncio's own socket transport doesn't apply flow control in writelines() from
# Python 3.12 on (seen in 3.12.1 and 3.13.0: it never calls pause_writing), so a
# sender that never yields would buffer without bound. There, chunks are joined
# and written once; uvloop's writelines() is fine.
_WRITELINES_PAUSES: dict[type[Any], bool] = {}


def writelines(transport: asyncio.Transport, chunks: list[bytes]) -> None:
    """Write ``chunks`` in one call, with flow control on every transport."""
    kind = type(transport)
    pauses = _WRITELINES_PAUSES.get(kind)
    if pauses is None:
        stdlib = kind.__module__ == "asyncio.selector_events"
        pauses = _WRITELINES_PAUSES[kind] = sys.version_info < (3, 12) or not stdlib
    if pauses:
        transport.writelines(chunks)
    else:
        transport.write(b"".join(chunks))
