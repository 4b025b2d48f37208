"""Ephemeral presence state (such as "typing"): throttled per user and channel.

A user who types sends many updates; the hub forwards at most one per user per
channel per ``interval`` seconds. Updates inside the interval aren't dropped:
the latest one replaces the earlier ones and goes out when the interval ends,
so the last word ("stopped typing") always arrives. Each state carries a ``ttl``
after which the engine clears it, so a client that vanishes mid-sentence
doesn't type forever.

Throttling is per process: a user connected to two processes of a Redis-backed
hub may get one update per interval from each.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Literal

from .backends.base import Engine

__all__ = ["StateThrottle"]


class _Nothing(enum.Enum):
    TOKEN = 0


_NOTHING = _Nothing.TOKEN


class _Entry:
    __slots__ = ("pending", "timer")

    def __init__(self) -> None:
        self.pending: str | Literal[_Nothing.TOKEN] | None = _NOTHING
        self.timer: asyncio.TimerHandle | None = None


class StateThrottle:
    """Forward state updates to the engine, at most one per user and channel per interval.

    Args:
        engine: Where states are stored and fanned out.
        interval: Seconds between two updates of one user on one channel;
            ``None`` disables throttling.
        ttl: Seconds before a state expires unless renewed.
        spawn: Runs a coroutine in the background (the hub tracks its tasks).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float | None,
        ttl: float | None,
        spawn: Callable[[Awaitable[None]], None],
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._ttl = ttl
        self._spawn = spawn
        self._entries: dict[tuple[str, str], _Entry] = {}

    async def update(self, ch: str, user: str, state: str | None) -> None:
        """Forward ``state`` now, or when the user's interval on ``ch`` ends.

        Raises:
            BackendUnavailable: The engine can't reach its store.
        """
        interval = self._interval
        if interval is None:
            await self._send(ch, user, state)
            return
        key = (ch, user)
        entry = self._entries.get(key)
        if entry is not None:
            entry.pending = state  # the latest update wins
            return
        entry = self._entries[key] = _Entry()
        entry.timer = asyncio.get_running_loop().call_later(interval, self._tick, key)
        await self._send(ch, user, state)

    def forget(self, ch: str, user: str) -> None:
        """Drop a pending update, when the user left the channel."""
        entry = self._entries.pop((ch, user), None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()

    def close(self) -> None:
        """Cancel every timer."""
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
        self._entries.clear()

    def _tick(self, key: tuple[str, str]) -> None:
        """The interval ended: send the update that waited, or forget the user."""
        entry = self._entries.get(key)
        if entry is None:
            return
        state, entry.pending = entry.pending, _NOTHING
        if state is _NOTHING:
            del self._entries[key]
            entry.timer = None
            return
        assert self._interval is not None
        entry.timer = asyncio.get_running_loop().call_later(self._interval, self._tick, key)
        self._spawn(self._send(key[0], key[1], state))

    async def _send(self, ch: str, user: str, state: str | None) -> None:
        ttl = None if state is None else self._ttl
        await self._engine.presence_state(ch, user, state, ttl)
