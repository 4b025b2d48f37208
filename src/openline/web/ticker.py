"""A price-like ticker that the server publishes on its own schedule.

It keeps the demo page alive with nobody typing, and gives the "push versus
polling" panel something to compare: the same value is pushed on the hub's
``ticker`` channel and served over HTTP at ``/api/ticker``.

Each tick is a JSON object::

    {"symbol": "OPL", "price": 101.37, "change": 0.12, "seq": 42, "ts": 1767225600123}

``seq`` counts ticks from 1 (a poller can tell how many it missed), ``ts`` is
the server's wall clock in milliseconds when the tick was made (a client can
tell how old the value it shows is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from ..exceptions import BackendUnavailable
from ..hub import Hub

__all__ = ["DEFAULT_TICKER_CHANNEL", "DEFAULT_TICKER_INTERVAL", "Ticker"]

#: The channel the ticker publishes to.
DEFAULT_TICKER_CHANNEL = "ticker"
#: Seconds between two ticks: drawn uniformly from this range.
DEFAULT_TICKER_INTERVAL = (0.25, 1.0)

logger = logging.getLogger("openline.web")


class Ticker:
    """Publish a random walk to a hub channel at random intervals.

    Args:
        hub: Where to publish.
        ch: The channel.
        interval: ``(shortest, longest)`` seconds between ticks; each wait is
            drawn uniformly from the range. Equal bounds tick regularly.
        symbol: A name shown with the price.
        start: The first price.
        volatility: The standard deviation of one step, relative to the price.
        rng: The random source; a private :class:`random.Random` by default.
        clock: Wall-clock time in seconds, for the ``ts`` field.

    Raises:
        ValueError: ``interval`` isn't two positive numbers in order, or
            ``start`` or ``volatility`` isn't a positive number.
    """

    def __init__(
        self,
        hub: Hub,
        ch: str = DEFAULT_TICKER_CHANNEL,
        *,
        interval: tuple[float, float] = DEFAULT_TICKER_INTERVAL,
        symbol: str = "OPL",
        start: float = 100.0,
        volatility: float = 0.002,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        low, high = interval
        if not (_positive(low) and _positive(high) and low <= high):
            raise ValueError(f"interval must be two positive seconds, low first, got {interval!r}")
        if not _positive(start):
            raise ValueError(f"start must be a positive number, got {start!r}")
        if not _positive(volatility):
            raise ValueError(f"volatility must be a positive number, got {volatility!r}")
        self.hub = hub
        self.ch = ch
        self.interval = (float(low), float(high))
        self.symbol = symbol
        self._price = float(start)
        self._volatility = float(volatility)
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        #: The last tick published, or ``None`` before the first.
        self.latest: dict[str, Any] | None = None

    @property
    def is_running(self) -> bool:
        """Whether the ticker publishes on its schedule."""
        return self._task is not None and not self._task.done()

    async def tick(self) -> dict[str, Any]:
        """Make the next value, publish it, and return it.

        Raises:
            BackendUnavailable: The hub's engine can't store it.
        """
        previous = self._price
        # A geometric random walk: relative steps, so the price stays positive.
        self._price = previous * math.exp(self._rng.gauss(0.0, self._volatility))
        self._seq += 1
        price = round(self._price, 2)
        value = {
            "symbol": self.symbol,
            "price": price,
            "change": round(price - round(previous, 2), 2),
            "seq": self._seq,
            "ts": round(self._clock() * 1000),
        }
        await self.hub.publish(self.ch, value)
        # Only now: a poller never sees a value that subscribers didn't get.
        self.latest = value
        return value

    def start(self) -> None:
        """Start ticking in the background: the first tick now, then on schedule.

        Raises:
            RuntimeError: The ticker is running already.
        """
        if self.is_running:
            raise RuntimeError("the ticker is already running")
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop ticking; does nothing when stopped."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        low, high = self.interval
        while True:
            try:
                await self.tick()
            except BackendUnavailable as exc:
                logger.warning("ticker: can't publish: %s", exc)
            await asyncio.sleep(self._rng.uniform(low, high))


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
