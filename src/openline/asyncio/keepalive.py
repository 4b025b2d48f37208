"""Keepalive pings of many connections on one timer: a periodic sweep.

:func:`keepalive_for` returns the :class:`Keepalive` shared by every connection
of an event loop with the same ``ping_interval`` and ``ping_timeout``; the
connection schedules its next step there (a ping, or the end of the wait for
its pong) and the sweep calls it back when due.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

__all__ = ["Due", "Keepalive", "keepalive_for"]

_LOGGER = logging.getLogger("openline.asyncio")


class Due(Protocol):
    """What the sweep needs of a connection (``openline.asyncio.connection.Connection``)."""

    def _keepalive_due(self) -> None:
        """Take the keepalive step that is due: ping, or fail for want of a pong."""


class Keepalive:
    """One timer for the keepalive of many connections: a periodic sweep.

    A ``TimerHandle`` per connection costs about 600 bytes on every idle
    connection; here a connection costs one entry in a dict. Each connection
    has the time its next keepalive step is due (a ping, or the end of the wait
    for its pong); the sweep runs every ``tick`` seconds while any connection is
    scheduled and runs the steps that are due. A step therefore runs up to one
    tick late: an eighth of the shorter of ``ping_interval`` and ``ping_timeout``.
    """

    __slots__ = ("_due", "_handle", "_key", "_loop", "_tick")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, key: tuple[float, float | None], tick: float
    ) -> None:
        self._loop = loop
        self._key = key
        self._tick = tick
        self._due: dict[Due, float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def schedule(self, connection: Due, delay: float) -> None:
        """Run ``connection._keepalive_due()`` in ``delay`` seconds, give or take a tick."""
        self._due[connection] = self._loop.time() + delay
        if self._handle is None:
            self._handle = self._loop.call_later(self._tick, self._sweep)

    def cancel(self, connection: Due) -> None:
        """Forget ``connection``; the next sweep stops the timer if none is left."""
        self._due.pop(connection, None)

    def _sweep(self) -> None:
        self._handle = None
        # Never early (a pong deadline is a minimum), at most a tick late.
        now = self._loop.time()
        due = [connection for connection, when in self._due.items() if when <= now]
        for connection in due:
            del self._due[connection]
        for connection in due:
            try:
                connection._keepalive_due()  # may schedule() it again
            except Exception:  # pragma: no cover - a bug: don't stop everyone's keepalive
                _LOGGER.exception("keepalive failed")
        self._rearm()

    def _rearm(self) -> None:
        if self._handle is not None:
            return  # a connection was scheduled again during the sweep
        if self._due:
            self._handle = self._loop.call_later(self._tick, self._sweep)
            return
        # Nobody left: forget this timer; a connection opened later makes a new one.
        registry = _KEEPALIVES.get(self._loop)
        if registry is not None and registry.get(self._key) is self:
            del registry[self._key]


_KEEPALIVES: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[float, float | None], Keepalive]
] = weakref.WeakKeyDictionary()


def keepalive_for(
    loop: asyncio.AbstractEventLoop, interval: float, timeout: float | None
) -> Keepalive:
    """Return the shared keepalive timer for these settings on ``loop``."""
    registry = _KEEPALIVES.get(loop)
    if registry is None:
        registry = _KEEPALIVES[loop] = {}
    key = (interval, timeout)
    keepalive = registry.get(key)
    if keepalive is None:
        tick = min(interval, interval if timeout is None else timeout) / 8
        keepalive = registry[key] = Keepalive(loop, key, tick)
    return keepalive
