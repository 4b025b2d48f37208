"""The sqlite engine: one process whose history survives its restarts.

History, offsets, epochs and idempotency ids live in one sqlite file
(:mod:`.sqlite_store`), so a process that stops, cleanly or killed, and starts
again on the same file answers with the same epoch and offsets: clients resume
with nothing lost, and a publish retried across the restart is stored once.
Live delivery and presence are ephemeral and stay in memory
(:class:`.local.LocalChannels`): a restarted process starts with nobody present.

sqlite3 blocks, so every call runs on one dedicated thread
(:mod:`.sqlite_writer`), which owns the one connection; the event loop never
waits on the disk. That thread runs calls in the order they were made, so
offsets are assigned in publish order, commits the calls that queued up while
it was busy in one transaction, and hands each stored message back to the loop
in order after the commit: stored before delivered, delivered in offset order.
Callbacks run on the loop before :meth:`SqliteEngine.publish` returns.

The windows are trimmed on every publish (by size and time) and by a sweep
every ``min(history_ttl, 60)`` seconds, which also forgets empty channels
unused for ``channel_ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from ...asyncio.config import check_timeout
from ...exceptions import BackendUnavailable
from .base import (
    Callback,
    ControlCallback,
    HistoryResult,
    Message,
    PresenceSnapshot,
    PublishResult,
)
from .local import ControlCallbacks, LocalChannels
from .options import DEFAULT_HISTORY_SIZE, DEFAULT_HISTORY_TTL, Default, check_windows
from .sqlite_store import Store, check_database
from .sqlite_writer import Writer

__all__ = [
    "DEFAULT_CHANNEL_TTL",
    "DEFAULT_DATA_FILE",
    "SqliteEngine",
    "check_database",
    "data_file",
]

#: Seconds after its last use at which an empty channel is forgotten.
DEFAULT_CHANNEL_TTL = 86400.0
#: The file name used when ``--data`` names a directory.
DEFAULT_DATA_FILE = "openline.db"
#: Seconds between sweeps at most.
_SWEEP_EVERY = 60.0

logger = logging.getLogger("openline.hub")

T = TypeVar("T")


def data_file(path: str) -> str:
    """The database file that ``path`` names, creating the directories it needs.

    A path ending with a separator, or naming an existing directory, means
    :data:`DEFAULT_DATA_FILE` in that directory.

    Raises:
        OSError: A directory can't be created.
    """
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        _make_directory(path)
        return os.path.join(path, DEFAULT_DATA_FILE)
    parent = os.path.dirname(path)
    if parent:
        _make_directory(parent)
    return path


def _make_directory(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:  # a file is in the way, here or above
        raise OSError(f"cannot create directory {path}: a file is in the way") from None


class SqliteEngine:
    """History in an sqlite file, live delivery and presence in this process.

    Only one process may use a file at a time (a second one gets
    :class:`~openline.exceptions.BackendUnavailable` naming the lock).

    Args:
        path: The database file, created when missing.
        history_size: Messages kept per channel; ``None`` keeps any number
            (bounded by ``history_ttl`` then); 0 keeps none.
        history_ttl: Seconds a message stays in history; ``None``: until
            ``history_size`` pushes it out.
        id_size: Idempotency keys remembered per channel: the ids of its last
            ``id_size`` messages; ``history_size`` (or 1000) by default.
        id_ttl: Seconds an idempotency key is remembered; ``history_ttl`` by default.
        channel_ttl: Seconds after its last publish or read at which a channel
            with nothing left in its windows is forgotten (its next use starts a
            new epoch); ``None``: never.
        clock: Seconds for the windows; wall-clock by default, so that they
            keep their meaning across restarts (tests inject a clock).

    Raises:
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        path: str,
        *,
        # limits
        history_size: int | None = DEFAULT_HISTORY_SIZE,
        history_ttl: float | None = DEFAULT_HISTORY_TTL,
        id_size: int | Literal[Default.TOKEN] | None = Default.TOKEN,
        id_ttl: float | Literal[Default.TOKEN] | None = Default.TOKEN,
        channel_ttl: float | None = DEFAULT_CHANNEL_TTL,
        # advanced
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(path, str) or not path:
            raise ValueError(f"path must be a non-empty str, got {path!r}")
        windows = check_windows(history_size, history_ttl, id_size, id_ttl)
        channel_ttl = check_timeout("channel_ttl", channel_ttl)
        self._store = Store(path, windows, channel_ttl, clock)
        self._sweep_every = min(
            windows[1] or _SWEEP_EVERY, windows[3] or _SWEEP_EVERY, _SWEEP_EVERY
        )
        # One thread, one connection: calls run in the order they were made.
        self._writer = Writer(self._store)
        self._local = LocalChannels()
        self._control = ControlCallbacks()
        self._sweeper: asyncio.Task[None] | None = None
        self._status: Literal["starting", "ok", "degraded", "closed"] = "starting"
        self._errors = 0
        self._last_error: str | None = None

    @property
    def path(self) -> str:
        """The database file."""
        return self._store.path

    # --- messages ----------------------------------------------------------------------

    async def publish(
        self,
        ch: str,
        data: bytes | str,
        *,
        msg_id: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> PublishResult:
        """Store a message and deliver it; see :meth:`.base.Engine.publish`."""
        call = functools.partial(self._store.publish, ch, data, msg_id, meta)
        result, _ = await self._call(call, self._deliver)
        return result

    async def history(
        self, ch: str, *, since: int | None = None, epoch: str | None = None
    ) -> HistoryResult:
        """Read the position and the messages after ``since``; see :meth:`.base.Engine.history`."""
        return await self._call(functools.partial(self._store.history, ch, since, epoch))

    async def subscribe(self, ch: str, callback: Callback) -> None:
        """Deliver the channel's events to ``callback``; see :meth:`.base.Engine.subscribe`."""
        self._check_open()
        self._local.add_callback(ch, callback)

    async def unsubscribe(self, ch: str, callback: Callback) -> None:
        """Stop delivering to ``callback``; see :meth:`.base.Engine.unsubscribe`."""
        self._local.remove_callback(ch, callback)

    # --- presence ----------------------------------------------------------------------

    async def presence_join(self, ch: str, user: str, client: str, info: str) -> bool:
        """Add a connection; see :meth:`.base.Engine.presence_join`."""
        self._check_open()
        return self._local.join(ch, user, client, info)

    async def presence_leave(self, ch: str, user: str, client: str) -> bool:
        """Remove a connection; see :meth:`.base.Engine.presence_leave`."""
        return self._local.leave(ch, user, client)

    async def presence_state(
        self, ch: str, user: str, state: str | None, ttl: float | None
    ) -> None:
        """Set or clear a user's state; see :meth:`.base.Engine.presence_state`."""
        self._local.set_state(ch, user, state, ttl)

    async def presence_snapshot(self, ch: str, *, max_users: int | None = None) -> PresenceSnapshot:
        """Read who is in the channel; see :meth:`.base.Engine.presence_snapshot`."""
        return self._local.snapshot(ch, max_users)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file now rather than at the first call, so that a bad file shows at once.

        Raises:
            BackendUnavailable: The file can't be opened, isn't an openline
                database, or another process uses it.
        """
        await self._call(_nothing)

    async def sweep(self) -> int:
        """Trim every channel to its windows now; forget channels idle for ``channel_ttl``.

        The engine sweeps by itself every ``min(history_ttl, id_ttl, 60)``
        seconds; a channel with callbacks or presence here is never forgotten.

        Returns:
            How many channels were forgotten.

        Raises:
            BackendUnavailable: The file can't be read or written.
        """
        return await self._call(functools.partial(self._store.sweep, self._is_active_from_thread))

    # --- control (one process per file: commands stay in this process) --------------

    async def send_control(self, payload: bytes) -> None:
        """Run this process's control callbacks; see :meth:`.base.Control.send_control`."""
        self._control.run(payload)

    async def subscribe_control(self, callback: ControlCallback) -> None:
        """Add a control callback; see :meth:`.base.Control.subscribe_control`."""
        self._control.add(callback)

    async def unsubscribe_control(self, callback: ControlCallback) -> None:
        """Remove a control callback; see :meth:`.base.Control.unsubscribe_control`."""
        self._control.remove(callback)

    async def present_channels(self, limit: int) -> list[str]:
        """Channels with present users; see :meth:`.base.Control.present_channels`."""
        return self._local.present(limit)

    def health(self) -> dict[str, Any]:
        """The engine's state and counters, for ``/healthz``."""
        return {
            "engine": "sqlite",
            "status": self._status,
            "path": self.path,
            "live_channels": len(self._local),
            "errors": self._errors,
            "last_error": self._last_error,
        }

    async def close(self) -> None:
        """Stop the sweep, forget presence, and close the file (its WAL is checkpointed)."""
        if self._status == "closed":
            return
        self._status = "closed"
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper])
        self._local.clear()
        with contextlib.suppress(sqlite3.Error):
            await self._writer.close()

    # --- private -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._status == "closed":
            raise RuntimeError("the engine is closed")

    async def _call(self, function: Callable[[], T], then: Callable[[T], None] | None = None) -> T:
        """Run ``function`` on the engine's thread; map sqlite's errors to BackendUnavailable."""
        self._check_open()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="openline-sqlite-sweep")
        try:
            result = await self._writer.call(function, then)
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._status = "degraded"
            logger.warning("sqlite engine: %s", self._last_error)
            raise BackendUnavailable(f"sqlite {self.path}: {exc}") from exc
        if self._status != "closed":
            self._status = "ok"
        return result

    def _deliver(self, outcome: tuple[PublishResult, Message | None]) -> None:
        """On the loop, once the publish is committed: hand the message to the callbacks."""
        message = outcome[1]
        if message is not None and self._status != "closed":
            self._local.notify(message.ch, message)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every)
            with contextlib.suppress(BackendUnavailable):  # logged and counted; next time
                forgotten = await self.sweep()
                if forgotten:
                    logger.debug("sqlite engine: forgot %d idle channels", forgotten)

    def _is_active_from_thread(self, ch: str) -> bool:
        # Reading a dict from another thread is safe under the GIL; a channel
        # that becomes active meanwhile gets a new epoch, which clients handle.
        return self._local.is_active(ch)


def _nothing() -> None:
    """A call that only makes the writer open the file."""
