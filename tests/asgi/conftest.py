"""Real ASGI servers for the hub app's tests: uvicorn and hypercorn, in process, on 127.0.0.1.

Each server gets a listening socket bound by the test (port 0 the first time),
so a test knows the address before the server runs, and connects at once: the
kernel queues the connection until the server, its lifespan startup done,
accepts it. A restart binds the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openline.hub.asgi import ASGIApp

#: uvicorn with openline's WebSocket engine: the hub app's fast path.
OPENLINE_ENGINE = "uvicorn+openline"
#: Every test runs on each; the fast path too where openline.uvicorn exists
#: (test_fast_path.py fails in CI when it doesn't).
SERVERS = ["uvicorn", "hypercorn"]
if importlib.util.find_spec("openline.uvicorn") is not None:
    SERVERS.append(OPENLINE_ENGINE)


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
async def _uvicorn(
    app: ASGIApp, sock: socket.socket, root_path: str, ws: str = "auto"
) -> AsyncIterator[None]:
    import uvicorn

    config = uvicorn.Config(
        app, lifespan="on", log_config=None, log_level="warning", root_path=root_path, ws=ws
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def _hypercorn(app: ASGIApp, sock: socket.socket, root_path: str) -> AsyncIterator[None]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    # Hypercorn closes the socket it makes from the descriptor: give it a copy.
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.graceful_timeout = 2.0
    config.accesslog = None
    config.root_path = root_path
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]  # hypercorn's own ASGI types
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def serving(
    kind: str, app: ASGIApp, port: int = 0, *, root_path: str = ""
) -> AsyncIterator[Running]:
    """Serve ``app`` with the server ``kind`` until the block ends."""
    sock = listening_socket(port)
    try:
        if kind == OPENLINE_ENGINE:
            context = _uvicorn(app, sock, root_path, "openline.uvicorn:WebSocketProtocol")
        elif kind == "uvicorn":
            context = _uvicorn(app, sock, root_path)
        else:
            context = _hypercorn(app, sock, root_path)
        async with context:
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
    if fields.get("transfer-encoding") == ["chunked"]:
        body = _dechunk(body)
    return int(status_line.split()[1]), fields, body


def _dechunk(data: bytes) -> bytes:
    """The body of a chunked transfer (RFC 9112, section 7.1), without extensions."""
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]
