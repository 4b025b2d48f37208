"""The redial loop both reconnecting clients share: dial, hand over, wait, back off.

``async for ws in connect(...)`` (:class:`~openline.asyncio.client.Redial`) and
the hub's :class:`~openline.hub.client.Client` both redial the same way: count
the dial, open a connection, note when it opened and when it ended, and after
any failure ask the :class:`~openline.asyncio.backoff.Schedule` how long to wait
(or to raise), say so, and sleep. :class:`Redialer` is that loop, written once;
each client keeps what differs (what it does with an open connection, what it
reports while waiting).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .backoff import Schedule

__all__ = ["Redialer"]

_T = TypeVar("_T")


class Redialer(Generic[_T]):
    """One redial loop over a :class:`~openline.asyncio.backoff.Schedule`.

    Args:
        schedule: The dials so far and the backoff; the redialer drives it.
        dial: Opens one connection, or raises why it couldn't.
        on_retry: Called before each wait with the failure, the delay in
            seconds, and whether the failure ended an open connection (rather
            than a dial).
        stopped: Asked after each failure; when it says ``True``, the loop ends
            without waiting. ``None`` never stops.
    """

    __slots__ = ("_dial", "_on_retry", "_stopped", "attempt", "schedule")

    def __init__(
        self,
        schedule: Schedule,
        dial: Callable[[], Awaitable[_T]],
        *,
        on_retry: Callable[[Exception, float, bool], None],
        stopped: Callable[[], bool] | None = None,
    ) -> None:
        self.schedule = schedule
        self._dial = dial
        self._on_retry = on_retry
        self._stopped = stopped
        #: The attempts the schedule had counted when the last connection was dialled.
        self.attempt = 0

    async def next(self, ended: Exception | None = None) -> _T | None:
        """Return the next open connection, waiting as the schedule says.

        Args:
            ended: How the previous connection ended, or ``None`` if there was none.

        Returns:
            The connection, or ``None`` once ``stopped`` says so.

        Raises:
            Exception: The failure the classifier won't retry, or the last one
                when the attempts or the delays ran out.
        """
        schedule = self.schedule
        error = ended
        was_open = ended is not None
        if was_open:
            schedule.closed(time.monotonic())
        while True:
            if error is not None:
                if self._stopped is not None and self._stopped():
                    return None
                delay = schedule.next_delay(error)
                self._on_retry(error, delay, was_open)
                await asyncio.sleep(delay)
                was_open = False
            schedule.dialled()
            self.attempt = schedule.attempts
            try:
                connection = await self._dial()
            except Exception as exc:
                error = exc
                continue
            schedule.opened(time.monotonic())
            return connection
