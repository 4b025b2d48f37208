"""The sqlite engine's one thread: it owns the connection and commits calls in batches.

A commit is what a publish costs on sqlite (about 200 µs of the 250 µs a
publish takes on a loaded machine: writing the pages to the WAL), so calls that
arrive while the thread is busy are run together, up to :data:`MAX_BATCH`, in
one transaction, each in a savepoint of its own: one call failing doesn't undo
the others, and one commit pays for them all. Calls run in the order they were
made, so offsets are assigned in publish order.

Results go back to the event loop after the commit, in call order, through
``call_soon_threadsafe``: whatever runs on the loop then (the engine delivers a
published message to its callbacks) sees committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .sqlite_store import Store

__all__ = ["MAX_BATCH", "Writer"]

#: Most calls committed in one transaction.
MAX_BATCH = 256

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class _Call(Generic[T]):
    function: Callable[[], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    # Runs on the loop with the result, before the caller resumes, even if the
    # caller was cancelled meanwhile.
    then: Callable[[T], None] | None


class Writer:
    """Runs calls on a :class:`.sqlite_store.Store` from one thread, committing in batches.

    Args:
        store: The store; only this thread touches it once the writer runs.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="openline-sqlite", daemon=True)
        self._closed = False

    async def call(self, function: Callable[[], T], then: Callable[[T], None] | None = None) -> T:
        """Run ``function`` on the thread, inside a transaction, and return its result.

        Args:
            function: Reads or writes the store.
            then: Called on the loop with the result once it is committed.

        Raises:
            RuntimeError: The writer is closed.
            Exception: What ``function``, opening the file, or the commit raised.
        """
        if self._closed:
            raise RuntimeError("the engine is closed")
        if not self._thread.is_alive():
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(function, loop, future, then))
        return await future

    async def close(self) -> None:
        """Finish the calls queued, close the file, and stop the thread."""
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            self._store.close()
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    # --- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[_Call[Any]] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            stopping = item is None
            if batch:
                self._run_batch(batch)
        self._store.close()

    def _run_batch(self, batch: list[_Call[Any]]) -> None:
        outcomes: list[tuple[Any, BaseException | None]]
        try:
            self._store.open()
            self._store.begin()
            outcomes = [self._run_one(call) for call in batch]
            self._store.commit()
        except Exception as failure:  # opening, BEGIN or COMMIT: nothing of the batch is stored
            self._store.rollback()
            outcomes = [(None, failure)] * len(batch)
        for call, (value, error) in zip(batch, outcomes, strict=True):
            # A closed loop raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                call.loop.call_soon_threadsafe(_settle, call, value, error)

    def _run_one(self, call: _Call[Any]) -> tuple[Any, BaseException | None]:
        self._store.savepoint()
        try:
            value = call.function()
        except Exception as exc:
            self._store.rollback_savepoint()
            return None, exc
        self._store.release_savepoint()
        return value, None


def _settle(call: _Call[Any], value: Any, exc: BaseException | None) -> None:
    """On the loop: hand the result over, in call order."""
    if exc is None and call.then is not None:
        call.then(value)
    if call.future.done():  # the caller was cancelled
        return
    if exc is not None:
        call.future.set_exception(exc)
    else:
        call.future.set_result(value)
