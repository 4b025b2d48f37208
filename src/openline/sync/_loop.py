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
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["in_loop_thread", "run", "submit", "within"]

T = TypeVar("T")

# How long interpreter exit waits for the loop to stop, in seconds.
_STOP_TIMEOUT = 5.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid = 0
_registered = False


def _forget_after_fork() -> None:
    """In a forked child: the parent's loop thread doesn't exist here, and the lock may be held."""
    global _lock, _loop, _thread
    _lock = threading.Lock()
    _loop = _thread = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_after_fork)


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


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def submit(factory: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
    """Call ``factory`` on the loop thread and await what it returns; return a future of that.

    The awaitable is created on the loop thread, so that nothing is left
    unawaited when the call is refused.

    Raises:
        RuntimeError: Called from the loop thread itself, where waiting would deadlock.
    """
    if in_loop_thread():
        raise RuntimeError(
            "cannot call the blocking openline.sync API from its own event loop thread "
            "(from an on_event callback, for example): it would wait for itself"
        )
    return asyncio.run_coroutine_threadsafe(_call(factory), _get_loop())


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Await ``factory()`` on the loop thread and wait for its outcome, raising its exception.

    The awaitable bounds its own duration (see :func:`within`). If the waiting
    thread is interrupted (``KeyboardInterrupt``), the awaitable is cancelled.

    Raises:
        RuntimeError: Called from the loop thread itself.
    """
    future = submit(factory)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def within(
    factory: Callable[[], Awaitable[T]], timeout: float | None, what: str
) -> Callable[[], Awaitable[T]]:
    """Bound ``factory()`` to ``timeout`` seconds: return a factory for :func:`run`.

    ``None`` waits forever. Unlike ``asyncio.wait_for(aw, 0)``, a zero timeout
    still lets the awaitable take its first step, so ``recv(timeout=0)``
    returns a message already there.

    Raises:
        ValueError: ``timeout`` is negative (at once, in the caller's thread).

    The awaitable raises:
        TimeoutError: The time ran out; the awaitable was cancelled. The message
            names ``what``.
    """
    if timeout is None:
        return factory
    if not timeout >= 0:  # NaN too
        raise ValueError(f"timeout must be None or at least 0, got {timeout}")
    seconds = timeout
    return lambda: _bounded(factory(), seconds, what)


async def _bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
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
