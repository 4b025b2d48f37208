"""Real ASGI servers for the hub app's tests: uvicorn and hypercorn, in process, on 127.0.0.1.

Each server gets a listening socket bound by the test (port 0 the first time),
so a test knows the address before the server runs, and connects at once: the
kernel queues the connection until the server, its lifespan startup done,
accepts it. A restart binds the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openline.hub.asgi import ASGIApp

SERVERS = ["uvicorn", "hypercorn"]


def listening_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Running:
    """A server serving an app; :attr:`port` stays the same across restarts."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.port = port

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def _uvicorn(app: ASGIApp, sock: socket.socket) -> AsyncIterator[None]:
    import uvicorn

    config = uvicorn.Config(app, lifespan="on", log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def _hypercorn(app: ASGIApp, sock: socket.socket) -> AsyncIterator[None]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    # Hypercorn closes the socket it makes from the descriptor: give it a copy.
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.graceful_timeout = 2.0
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]  # hypercorn's own ASGI types
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def serving(kind: str, app: ASGIApp, port: int = 0) -> AsyncIterator[Running]:
    """Serve ``app`` with the server ``kind`` until the block ends."""
    sock = listening_socket(port)
    server = _uvicorn if kind == "uvicorn" else _hypercorn
    try:
        async with server(app, sock):
            yield Running(kind, sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture(params=SERVERS)
def server_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


async def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> Any:
    """One HTTP/1.1 GET on 127.0.0.1; returns ``(status, headers, body)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), fields, body
