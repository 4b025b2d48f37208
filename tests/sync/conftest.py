"""Real peers for the blocking clients, each on an event loop thread of its own.

The servers never share the loop of :mod:`openline.sync`: the clients under
test block their caller's thread while the servers run elsewhere, as in an
application talking to a remote server.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import queue
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

import pytest
import websockets.exceptions
import websockets.sync.server

import openline
from openline.exceptions import ConnectionClosed
from openline.hub import Hub, SqliteEngine

from ..timing import MS

T = TypeVar("T")

#: How long a test waits for anything at most; reaching it is a failure, never a pass.
TIMEOUT = 10_000 * MS


class LoopThread:
    """An event loop running in a daemon thread, for servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()
        self.loop.close()


@pytest.fixture
def loop_thread() -> Generator[LoopThread, None, None]:
    thread = LoopThread()
    yield thread
    thread.stop()


class Peer:
    """A test server driven by the request path, recording how each connection closed.

    ``/echo`` echoes; ``/send/a,b`` sends ``a`` and ``b`` then closes with 1000;
    ``/pair/a,b`` (openline only) writes ``a`` and ``b`` in one system call;
    ``/close/4000/why`` closes with 4000 and the reason ``why``.
    """

    def __init__(self) -> None:
        self.port = 0
        #: ``(code, reason)`` received from each client, in order.
        self.closes: queue.Queue[tuple[int | None, str | None]] = queue.Queue()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def _route(path: str) -> tuple[str, list[str]]:
    _, action, *rest = path.split("/", 2)
    return action, rest[0].split(",") if rest else []


async def _openline_handler(peer: Peer, ws: openline.ServerConnection) -> None:
    assert ws.request is not None
    action, args = _route(ws.request.path)
    if action == "echo":
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)
    elif action == "send":
        for message in args:
            await ws.send(message)
        await ws.close()
    elif action == "pair":
        # In one event loop turn: the writes go out together, in one system call.
        for message in args:
            ws.send_nowait(message)
        await ws.wait_closed()
    elif action == "close":
        code, _, reason = args[0].partition("/") if args else ("1000", "", "")
        await ws.close(int(code), reason)
    await ws.wait_closed()
    peer.closes.put((ws.close_code, ws.close_reason))


@pytest.fixture
def openline_peer(loop_thread: LoopThread) -> Generator[Peer, None, None]:
    """An openline server."""
    peer = Peer()

    async def start() -> openline.Server:
        return await openline.serve(
            lambda ws: _openline_handler(peer, ws),
            "127.0.0.1",
            0,
            subprotocols=["chat"],
        )

    server = loop_thread.call(start())
    peer.port = server.sockets[0].getsockname()[1]
    yield peer

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    loop_thread.call(stop())


def _websockets_handler(peer: Peer, ws: websockets.sync.server.ServerConnection) -> None:
    action, args = _route(ws.request.path if ws.request is not None else "/")
    if action == "echo":
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            for message in ws:
                ws.send(message)
    elif action == "send":
        for message in args:
            ws.send(message)
        ws.close()
    elif action == "close":
        code, _, reason = args[0].partition("/") if args else ("1000", "", "")
        ws.close(int(code), reason)
    # The sync server of websockets returns from the handler only after the close.
    ws.close()
    rcvd = ws.protocol.close_rcvd
    peer.closes.put((None, None) if rcvd is None else (rcvd.code, rcvd.reason))


@pytest.fixture
def websockets_peer() -> Generator[Peer, None, None]:
    """A server of the ``websockets`` library: a peer nobody here wrote."""
    peer = Peer()
    server = websockets.sync.server.serve(
        lambda ws: _websockets_handler(peer, ws),
        "127.0.0.1",
        0,
        subprotocols=[websockets.Subprotocol("chat")],
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    peer.port = server.socket.getsockname()[1]
    yield peer
    server.shutdown()
    thread.join(TIMEOUT)


@pytest.fixture(params=["openline", "websockets"])
def peer(request: pytest.FixtureRequest) -> Peer:
    """Each plain-client test runs against both servers."""
    return request.getfixturevalue(f"{request.param}_peer")  # type: ignore[no-any-return]


class HubNode:
    """A hub on a fixed loopback port, stopped and started again with the same database."""

    def __init__(self, loop_thread: LoopThread, path: pathlib.Path, **hub_kwargs: Any) -> None:
        self._loop_thread = loop_thread
        self._path = path
        self._hub_kwargs = hub_kwargs
        self.port = 0
        self.hub: Hub | None = None
        self._serving: Any = None
        self._engine: SqliteEngine | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        async def start() -> None:
            self._engine = SqliteEngine(str(self._path))
            self.hub = Hub(self._engine, **self._hub_kwargs)
            self._serving = self.hub.serve("127.0.0.1", self.port, close_timeout=500 * MS)
            server = await self._serving.__aenter__()
            self.port = server.sockets[0].getsockname()[1]

        self._loop_thread.call(start())
        self.starts += 1

    def stop(self) -> None:
        async def stop() -> None:
            assert self.hub is not None
            await self._serving.__aexit__(None, None, None)
            await self.hub.close()
            assert self._engine is not None
            await self._engine.close()  # the hub doesn't own its engine
            self.hub = None

        self._loop_thread.call(stop())

    def publish(self, ch: str, data: Any) -> None:
        """Publish from the server side."""
        assert self.hub is not None
        self._loop_thread.call(self.hub.publish(ch, data))


@pytest.fixture
def make_hub(
    loop_thread: LoopThread, tmp_path: pathlib.Path
) -> Generator[Callable[..., HubNode], None, None]:
    """Start a hub (sqlite engine, so that a restart keeps the history) with ``Hub`` options."""
    nodes: list[HubNode] = []

    def factory(**hub_kwargs: Any) -> HubNode:
        node = HubNode(loop_thread, tmp_path / f"hub{len(nodes)}.db", **hub_kwargs)
        node.start()
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        if node.hub is not None:
            node.stop()
