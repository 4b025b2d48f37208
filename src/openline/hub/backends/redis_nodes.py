"""The Redis engine's node supervision: heartbeat, reaping dead nodes, recovery.

Every node renews its deadline in ``<prefix>:nodes`` every third of
``presence_ttl`` and reaps the nodes whose deadline passed (their presence
entries go, their users' ``leave`` is announced), but not right after an
outage, when every deadline has passed. It pings its pub/sub connection (the
feed) so that a hung Redis or a half-open connection shows. When the feed is
lost, it redials with backoff and full jitter, then has the engine subscribe
again, register its presence again and report a position per channel.

:class:`NodeSupervisor` owns the task and its state; it reaches the engine only
through :class:`Supervised`, which :mod:`.redis` implements.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from typing import Any, Protocol

from ...asyncio.backoff import Backoff
from ...exceptions import BackendUnavailable
from .redis_feed import Feed

__all__ = ["HEALTHY_AFTER", "NodeSupervisor", "Supervised"]

#: Seconds after which a recovered feed counts as healthy (the redial backoff restarts).
HEALTHY_AFTER = 5.0

logger = logging.getLogger("openline.hub")


class Supervised(Protocol):
    """What the supervisor needs of the engine."""

    @property
    def feed(self) -> Feed | None:
        """The live pub/sub connection, or ``None`` while it is lost."""

    def is_closed(self) -> bool:
        """Whether the engine was closed: the supervisor stops."""

    def is_degraded(self) -> bool:
        """Whether a failure was reported and the engine isn't back yet."""

    def drop_feed(self, feed: Feed, reason: str) -> None:
        """Give ``feed`` up, if it is still the engine's, and report the engine degraded."""

    async def open_feed(self) -> Feed:
        """Check that Redis answers, open a feed, and subscribe it to every live channel.

        Raises:
            Exception: Anything that failed; a partly opened feed is closed.
        """

    def adopt_feed(self, feed: Feed) -> None:
        """Make ``feed`` the engine's live pub/sub connection."""

    def record_error(self, exc: BaseException) -> None:
        """Count a failure and keep it as the last error."""

    def restored(self) -> None:
        """Report the engine healthy again."""

    async def ping(self) -> bool:
        """Whether Redis answers a command now."""

    async def rejoin(self) -> None:
        """After an outage: register this node's presence again, and report positions."""

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of :mod:`.redis_lua`'s scripts.

        Raises:
            BackendUnavailable: Redis failed.
        """

    def now(self) -> str:
        """The time the scripts are given: milliseconds, or empty for Redis's own clock."""


class NodeSupervisor:
    """The heartbeat, reaping and recovery of one node.

    Args:
        engine: The engine supervised.
        node: This node's name.
        prefix: The engine's key prefix.
        presence_ttl: Seconds a node's presence outlives its last heartbeat.
        node_ttl_ms: The same in milliseconds, as the scripts take it.
        timeout: Seconds a Redis command or connection attempt may take.
        backoff: The redial delays.

    Attributes:
        reconnects: Recoveries after an outage.
        reaped: Dead nodes whose users this node removed.
    """

    def __init__(
        self,
        engine: Supervised,
        *,
        node: str,
        prefix: str,
        presence_ttl: float,
        node_ttl_ms: int,
        timeout: float,
        backoff: Backoff,
    ) -> None:
        self._engine = engine
        self._node = node
        self._prefix = prefix
        self._nodes_key = f"{prefix}:nodes"
        self._presence_ttl = presence_ttl
        self._node_ttl_ms = node_ttl_ms
        self._timeout = timeout
        self._backoff = backoff
        self._delays = iter(backoff)
        # loop.time() of the last recovery, and before which no node is reaped.
        self._recovered_at = -math.inf
        self._reap_after = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self.reconnects = 0
        self.reaped = 0

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran."""
        return self._task is not None

    def start(self) -> None:
        """Start supervising, in a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    def wake(self) -> None:
        """Look at the engine now rather than at the next duty: something went wrong."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def cancel(self) -> None:
        """Stop at once, without waiting: the heartbeat stops as if the node died."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Stop, waiting for the task at most ``timeout`` seconds.

        Bounded: a client library may swallow a cancellation while it redials;
        the task also stops by itself once the engine is closed.
        """
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait((self._task,), timeout=self._timeout)

    # --- the node registry -------------------------------------------------------------

    async def beat(self) -> None:
        """Renew this node's deadline and reap the nodes whose deadline passed."""
        try:
            dead = await self._engine.run_script(
                "BEAT", [self._nodes_key], [self._node, self._engine.now(), self._node_ttl_ms]
            )
        except BackendUnavailable:
            return
        if dead and asyncio.get_running_loop().time() < self._reap_after:
            return
        for name in dead:
            node = name.decode()
            if node == self._node:
                continue
            try:
                if await self.reap(node):
                    self.reaped += 1
                    logger.warning("node %s missed its heartbeat: its users left", node)
            except BackendUnavailable:
                return

    async def reap(self, node: str, *, force: bool = False) -> bool:
        """Remove a node's presence entries; ``False`` if it turned out alive.

        Raises:
            BackendUnavailable: Redis failed.
        """
        key = f"{self._prefix}:node:{node}"
        for _ in range(10_000):
            left = await self._engine.run_script(
                "REAP",
                [self._nodes_key, key],
                [node, self._engine.now(), self._prefix, "1" if force else "0"],
            )
            if left < 0:
                return False
            if left == 0:
                return True
        return True

    # --- the task ----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Heartbeat, reap dead nodes, ping the feed, and redial Redis after an outage."""
        engine = self._engine
        loop = asyncio.get_running_loop()
        beat_every = self._presence_ttl / 3
        ping_every = min(beat_every, self._timeout, 5.0)
        next_beat = loop.time() + beat_every
        while not engine.is_closed():
            if engine.feed is None:
                await self._recover()
                next_beat = loop.time() + beat_every
            now = loop.time()
            if now >= next_beat:
                next_beat = now + beat_every
                await self.beat()
            feed = engine.feed
            if feed is not None and loop.time() - feed.last_seen >= ping_every:
                try:
                    await asyncio.wait_for(feed.ping(), self._timeout)
                except (BackendUnavailable, asyncio.TimeoutError) as exc:
                    engine.drop_feed(feed, f"the pub/sub connection didn't answer a ping ({exc!r})")
                    continue
            # Commands failed while the feed stayed up: back once they work.
            if engine.is_degraded() and engine.feed is not None and await engine.ping():
                engine.restored()
            # Sleep until the next duty, or until something goes wrong.
            wake = self._wake = loop.create_future()
            timeout = max(0.01, min(ping_every, next_beat - loop.time()))
            await asyncio.wait((wake,), timeout=timeout)
            self._wake = None

    async def _recover(self) -> None:
        """Redial until Redis answers, then resubscribe and catch up."""
        engine = self._engine
        loop = asyncio.get_running_loop()
        if loop.time() - self._recovered_at < HEALTHY_AFTER:
            # The feed was lost again soon after the last recovery: don't
            # redial in a tight loop; keep backing off.
            await asyncio.sleep(next(self._delays))
        else:
            self._delays = iter(self._backoff)
        for attempt in itertools.count(1):
            if engine.is_closed():
                return
            try:
                feed = await engine.open_feed()
            except Exception as exc:  # anything: keep trying, say what
                engine.record_error(exc)
                log = logger.warning if attempt in (1, 10) or attempt % 60 == 0 else logger.debug
                delay = next(self._delays)
                log(
                    "Redis still unreachable (attempt %d): %r; next try in %.2f s",
                    attempt,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if engine.is_closed():
                feed.close()
                return
            engine.adopt_feed(feed)
            break
        self.reconnects += 1
        self._recovered_at = loop.time()
        # Every node's deadline passed during a long outage: give the live ones
        # time to beat again before anyone is reaped as dead.
        self._reap_after = loop.time() + self._presence_ttl
        engine.restored()
        await self.beat()
        await engine.rejoin()
