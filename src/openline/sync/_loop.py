"""The event loop thread behind :mod:`openline.sync`.

One daemon thread per process runs an asyncio event loop; the blocking API
hands coroutines to it and waits for their outcome. The thread starts with the
first call that needs it, stops at interpreter exit, and starts again in a
forked child (where the parent's thread doesn't exist), so that a pre-forking
worker pool such as Celery's can publish from each child.

Timeouts are applied on the loop, not by the waiting thread: a coroutine that
runs out of time is cancelled there, and the asyncio layer puts back what it
had half taken (a message that arrived during the cancellation), so a timeout
never loses data.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

__all__ = ["in_loop_thread", "run", "submit", "within"]

T = TypeVar("T")

# How long interpreter exit waits for the loop to stop, in seconds.
_STOP_TIMEOUT = 5.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid = 0
_registered = False


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        # Whatever is still running belongs to connections abandoned at exit.
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()


def _get_loop() -> asyncio.AbstractEventLoop:
    """Return the running loop of the thread, starting the thread if needed."""
    global _loop, _thread, _pid, _registered
    with _lock:
        thread = _thread
        if _loop is not None and _pid == os.getpid() and thread is not None and thread.is_alive():
            return _loop
        loop = asyncio.new_event_loop()
        started = threading.Event()
        thread = threading.Thread(
            target=_serve, args=(loop, started), name="openline-sync", daemon=True
        )
        thread.start()
        # Bounded: the thread sets it from its first loop iteration.
        if not started.wait(_STOP_TIMEOUT):  # pragma: no cover - a starved machine
            raise RuntimeError("the openline.sync event loop thread didn't start")
        _loop, _thread, _pid = loop, thread, os.getpid()
        if not _registered:
            atexit.register(_stop)
            _registered = True
        return loop


def _stop() -> None:
    """Stop the loop thread, at interpreter exit."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or thread is None or _pid != os.getpid() or not thread.is_alive():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(_STOP_TIMEOUT)


def in_loop_thread() -> bool:
    """Whether the caller runs on the loop thread, where blocking would deadlock."""
    thread = _thread
    return thread is not None and threading.current_thread() is thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the loop thread; return a future of its outcome."""
    if in_loop_thread():
        coro.close()
        raise RuntimeError(
            "cannot call the blocking openline.sync API from its own event loop thread "
            "(from an on_event callback, for example): it would wait for itself"
        )
    return asyncio.run_coroutine_threadsafe(coro, _get_loop())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the loop thread and wait for its outcome, raising its exception.

    The coroutine bounds its own duration (see :func:`within`). If the waiting
    thread is interrupted (``KeyboardInterrupt``), the coroutine is cancelled.
    """
    future = submit(coro)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


async def within(awaitable: Awaitable[T], timeout: float | None, what: str) -> T:
    """Await ``awaitable`` for at most ``timeout`` seconds; ``None`` waits forever.

    Unlike ``asyncio.wait_for(aw, 0)``, a zero timeout still lets the awaitable
    take its first step, so ``recv(timeout=0)`` returns a message already there.

    Raises:
        TimeoutError: The time ran out; the awaitable was cancelled. The message
            says which ``what`` timed out.
    """
    if timeout is None:
        return await awaitable
    if timeout < 0:
        raise ValueError(f"timeout must be None or at least 0, got {timeout}")
    task = asyncio.ensure_future(awaitable)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = task.cancel()

    # call_later, even with 0, runs after the task's first step, which call_soon queued.
    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await task
    except asyncio.CancelledError:
        # Only the timer cancelled the task: the waiting thread's own cancellation
        # (an interrupted wait) has nobody left to read a TimeoutError.
        if expired:
            raise TimeoutError(f"{what} timed out after {timeout:g} s") from None
        raise
    finally:
        timer.cancel()
