"""``openline serve``'s app in a background thread, for tests driven by a synchronous browser.

Playwright's synchronous API owns the test's thread, so the server runs on its
own event loop in another thread. :class:`ServerThread` starts it, stops it,
restarts it on the same port with the same engine (history and offsets carry
on, as with a persistent engine), and runs coroutines on its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from openline.asyncio.drain import DrainReport
from openline.hub import Hub, MemoryEngine
from openline.web import App, create_app

T = TypeVar("T")

#: Seconds to wait for the server thread to do something.
TIMEOUT = 10.0


class ServerThread:
    """An event loop in a thread that serves :func:`openline.web.create_app`.

    Args:
        engine: Arguments of the :class:`MemoryEngine` (``history_size``...).
        engine_class: The engine's class: :class:`MemoryEngine` or a subclass
            that a test instruments.
        **options: Passed to ``create_app`` on every start (``ticker``,
            ``ticker_interval``, hub limits...).
    """

    def __init__(
        self,
        *,
        engine: dict[str, Any] | None = None,
        engine_class: type[MemoryEngine] = MemoryEngine,
        **options: Any,
    ) -> None:
        self.options = options
        self._engine_options = engine or {}
        self._engine_class = engine_class
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.engine = self.call(lambda: self._make_engine(**self._engine_options))
        # Publishes from the test go through a hub of their own over the same
        # engine: it outlives the restarts of the serving one.
        self.publisher = Hub(self.engine)
        self.app: App | None = None
        self.port = 0
        self._stack: contextlib.AsyncExitStack | None = None

    async def _make_engine(self, **options: Any) -> MemoryEngine:
        return self._engine_class(**options)

    # --- control -------------------------------------------------------------------------

    def call(self, func: Callable[[], Awaitable[T]], timeout: float = TIMEOUT) -> T:
        """Run ``func()`` on the server's loop and return its result."""

        async def run() -> T:
            return await func()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def start(self) -> None:
        """Start serving, on the port used before if any (0 picks one the first time)."""
        self.call(self._start)

    def stop(self) -> None:
        """Stop serving: every client gets a 1001 close, the engine keeps its history."""
        self.call(self._stop)

    def drain(self, seconds: float, **options: Any) -> DrainReport:
        """Drain (:meth:`Server.drain`: 1012 with a retry hint), then stop serving."""
        assert self.app is not None and self.app.server is not None, "not serving"
        server = self.app.server
        report = self.call(lambda: server.drain(seconds, **options))
        self.stop()
        return report

    def replace_engine(self) -> None:
        """Swap in a fresh, empty engine while stopped: what restarting an in-memory server does.

        Every channel starts a new epoch; history and idempotency keys are gone.
        """
        assert self._stack is None, "stop serving first"
        self.call(self.engine.close)
        self.engine = self.call(lambda: self._make_engine(**self._engine_options))
        self.publisher = Hub(self.engine)

    def close(self) -> None:
        """Stop serving and end the thread."""
        if self._stack is not None:
            self.stop()
        self.call(self.engine.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()

    def publish(self, ch: str, data: Any, *, user: str | None = None) -> int:
        """Publish from server code; return the offset."""
        result = self.call(lambda: self.publisher.publish(ch, data, user=user))
        return result.offset

    def history(self, ch: str) -> list[Any]:
        """Every message of ``ch`` still in the engine's history, in offset order."""

        async def read() -> list[Any]:
            # A position in no epoch: the engine answers with all it holds.
            result = await self.engine.history(ch, since=0, epoch="none")
            return [json.loads(message.data) for message in result.messages]

        return self.call(read)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- on the loop ---------------------------------------------------------------------

    async def _start(self) -> None:
        assert self._stack is None, "already serving"
        self.app = create_app(engine=self.engine, **self.options)
        stack = contextlib.AsyncExitStack()
        server = await stack.enter_async_context(self.app.run("127.0.0.1", self.port))
        self.port = server.sockets[0].getsockname()[1]
        self._stack = stack

    async def _stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
