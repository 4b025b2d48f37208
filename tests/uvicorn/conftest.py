"""A real ``uvicorn.Server`` with openline's engine, in-process on a free loopback port.

The listening socket is bound and listening before uvicorn starts, so a client
may connect at once: the kernel queues it until uvicorn accepts. No polling
for "started" is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from openline.uvicorn import WebSocketProtocol

#: Upper bound for any single wait in these tests, in seconds.
TIMEOUT = 10.0


class Running:
    """A uvicorn server being served: its ``Server`` and base ``ws://`` URL."""

    def __init__(self, server: uvicorn.Server, port: int, task: asyncio.Task[None]) -> None:
        self.server = server
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"
        self.task = task

    async def stop(self) -> None:
        """Ask uvicorn to exit, as Ctrl-C does, and wait until it has."""
        self.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self.task), TIMEOUT)


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any, **options: Any) -> AsyncIterator[Running]:
    """Serve ``app`` with uvicorn and openline's engine until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    options.setdefault("lifespan", "off")
    options.setdefault("log_level", "warning")
    # uvicorn leaves logging alone: records propagate to pytest's caplog.
    options.setdefault("log_config", None)
    options.setdefault("ws", WebSocketProtocol)
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    # serve() installs signal handlers in the main thread and restores them.
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    running = Running(server, port, task)
    try:
        yield running
    finally:
        if not task.done():
            await running.stop()
        sock.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
