"""The servers under test, each run in its own process by ``python -m openline.bench.servers``.

Every server offers the same two services on 127.0.0.1 and a free port:

* **echo** — send every message back on the connection it came from;
* **fan-out** — a connection to ``/sub`` is a subscriber; every message from
  any other connection (the publisher) goes to all subscribers, with the
  library's own fastest idiom for it.

Idle-connection scenarios use the echo service: an idle connection waits for
its next message. Keepalive pings are off everywhere, so that no server sends
anything the load generator didn't ask for; otherwise each library runs with
its defaults.

The process takes one JSON argument (``server``, ``kind``, ``deflate``,
``cpu``, ``open_files``, ``profile``), prints ``READY {json}`` with the port
once it listens, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .system import die_with_parent, pin_to_cpu, raise_open_files_limit

__all__ = ["SERVERS", "ServerSpec", "unavailable"]

HOST = "127.0.0.1"

#: What a server start function returns: the port, a description of the
#: variant that runs (for the report), and a coroutine function that stops it.
Started = tuple[int, str, Callable[[], Awaitable[None]]]


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    """A server under test.

    Attributes:
        name: Identifier on the command line and in the results.
        label: Name and version shown in the report.
        requires: The distribution that must be installed, if any.
        deflate: Whether it supports permessage-deflate.
        framing: ``False`` for the raw TCP ceiling, which has no handshake or frames.
        start: ``start(kind, deflate)`` starts listening.
    """

    name: str
    label: str
    requires: str | None
    deflate: bool
    framing: bool
    start: Callable[[str, bool], Awaitable[Started]]


# --- openline ---------------------------------------------------------------------------


async def _start_openline(kind: str, deflate: bool) -> Started:
    from .. import ServerConnection, serve
    from ..exceptions import ConnectionClosed

    try:
        helper = importlib.import_module("openline.asyncio.broadcast")
    except ImportError:  # the helper isn't there yet: a loop over send()
        helper = None
    broadcast = getattr(helper, "broadcast", None)

    subscribers: set[ServerConnection] = set()

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def fanout(ws: ServerConnection) -> None:
        request = ws.request
        if request is not None and request.path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
            return
        async for message in ws:
            if broadcast is not None:
                broadcast(subscribers, message)
                continue
            for subscriber in list(subscribers):
                with contextlib.suppress(ConnectionClosed):
                    await subscriber.send(message)

    server = await serve(
        fanout if kind == "fanout" else echo,
        HOST,
        0,
        compression="deflate" if deflate else None,
        ping_interval=None,
    )
    port = server.sockets[0].getsockname()[1]
    variant = "async for + send()"
    if kind == "fanout":
        variant = "broadcast()" if broadcast is not None else "a loop over send()"

    async def stop() -> None:
        server.close(timeout=1)
        await server.wait_closed()

    return port, variant, stop


async def _start_openline_lowlevel(kind: str, deflate: bool) -> Started:
    """openline through its low-level API: ``listen()`` callbacks and ``send_nowait()``."""
    from .. import ServerConnection, serve
    from ..asyncio.broadcast import Broadcast
    from ..asyncio.connection import Connection

    subscribers: set[Connection] = set()

    def echo_message(ws: Connection, message: str | bytes) -> None:
        ws.send_nowait(message)

    def publish_message(ws: Connection, message: str | bytes) -> None:
        prepared = Broadcast(message)
        for subscriber in subscribers:
            prepared.write(subscriber)

    async def echo(ws: ServerConnection) -> None:
        ws.listen(echo_message)
        await ws.wait_closed()

    async def fanout(ws: ServerConnection) -> None:
        request = ws.request
        if request is not None and request.path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
            return
        ws.listen(publish_message)
        await ws.wait_closed()

    server = await serve(
        fanout if kind == "fanout" else echo,
        HOST,
        0,
        compression="deflate" if deflate else None,
        ping_interval=None,
    )
    port = server.sockets[0].getsockname()[1]
    variant = "listen() + send_nowait()" if kind != "fanout" else "listen() + Broadcast.write"

    async def stop() -> None:
        server.close(timeout=1)
        await server.wait_closed()

    return port, variant, stop


# --- websockets -------------------------------------------------------------------------


async def _start_websockets(kind: str, deflate: bool) -> Started:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: set[ServerConnection] = set()

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def fanout(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
            return
        async for message in ws:
            broadcast(subscribers, message)

    server = await serve(
        fanout if kind == "fanout" else echo,
        HOST,
        0,
        compression="deflate" if deflate else None,
        ping_interval=None,
    )
    port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    variant = "broadcast()" if kind == "fanout" else "async for + send()"
    return port, variant, stop


# --- aiohttp ----------------------------------------------------------------------------


async def _start_aiohttp(kind: str, deflate: bool) -> Started:
    from aiohttp import WSMsgType, web

    subscribers: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate)
        await ws.prepare(request)
        if kind != "fanout":
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
                elif message.type is WSMsgType.TEXT:
                    await ws.send_str(message.data)
        elif request.path == "/sub":
            subscribers.add(ws)
            try:
                async for _ in ws:
                    pass
            finally:
                subscribers.discard(ws)
        else:
            async for message in ws:
                if message.type is not WSMsgType.BINARY:
                    continue
                for subscriber in list(subscribers):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await subscriber.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    variant = "a loop over send_bytes()" if kind == "fanout" else "async for + send_bytes()"
    return port, variant, runner.cleanup


# --- picows -----------------------------------------------------------------------------


async def _start_picows(kind: str, deflate: bool) -> Started:
    from picows import (
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )

    data_types = (WSMsgType.BINARY, WSMsgType.TEXT)

    def answer_close(transport: WSTransport, frame: WSFrame) -> None:
        transport.send_close(frame.get_close_code(), frame.get_close_message())
        transport.disconnect()

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type in data_types:
                transport.send(msg_type, frame.get_payload_as_memoryview())
            elif msg_type is WSMsgType.CLOSE:
                answer_close(transport, frame)

    subscribers: set[WSTransport] = set()

    class Subscriber(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            subscribers.add(transport)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            subscribers.discard(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is WSMsgType.CLOSE:
                answer_close(transport, frame)

    class Publisher(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            msg_type = frame.msg_type
            if msg_type in data_types:
                payload = frame.get_payload_as_bytes()
                for subscriber in subscribers:
                    subscriber.send(msg_type, payload)
            elif msg_type is WSMsgType.CLOSE:
                answer_close(transport, frame)

    def factory(request: WSUpgradeRequest) -> WSListener:
        if kind != "fanout":
            return Echo()
        return Subscriber() if request.path == b"/sub" else Publisher()

    server = await ws_create_server(factory, HOST, 0)
    port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()

    variant = "transport.send() per subscriber" if kind == "fanout" else "on_ws_frame + send()"
    return port, variant, stop


# --- raw TCP: the ceiling ---------------------------------------------------------------


async def _start_raw(kind: str, deflate: bool) -> Started:
    """Echo or relay bytes with no handshake and no framing: what the loop itself costs."""
    subscribers: set[asyncio.Transport] = set()

    class Echo(asyncio.Protocol):
        transport: asyncio.Transport

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    class Relay(Echo):
        # A connection is a subscriber until it sends something: then it's the publisher.
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            subscribers.add(self.transport)

        def data_received(self, data: bytes) -> None:
            subscribers.discard(self.transport)
            for subscriber in subscribers:
                subscriber.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            subscribers.discard(self.transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Relay if kind == "fanout" else Echo, HOST, 0)
    port = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()

    return port, "asyncio.Protocol, write() per subscriber" if kind == "fanout" else "", stop


# --- registry ---------------------------------------------------------------------------


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return distribution


def _registry() -> dict[str, ServerSpec]:
    specs = [
        ServerSpec("openline", _version("openline"), None, True, True, _start_openline),
        ServerSpec(
            "openline-lowlevel",
            f"{_version('openline')} (low-level)",
            None,
            True,
            True,
            _start_openline_lowlevel,
        ),
        ServerSpec(
            "websockets", _version("websockets"), "websockets", True, True, _start_websockets
        ),
        ServerSpec("aiohttp", _version("aiohttp"), "aiohttp", True, True, _start_aiohttp),
        ServerSpec("picows", _version("picows"), "picows", False, True, _start_picows),
        ServerSpec("raw", "raw TCP, no framing (ceiling)", None, False, False, _start_raw),
    ]
    return {spec.name: spec for spec in specs}


#: Every server, in the order of the report.
SERVERS: dict[str, ServerSpec] = _registry()


def unavailable(name: str) -> str | None:
    """Why server ``name`` can't run here, or ``None`` if it can."""
    spec = SERVERS[name]
    if spec.requires is not None and importlib.util.find_spec(spec.requires) is None:
        return f"{spec.requires} is not installed: pip install 'openline[bench]'"
    return None


# --- the server process -----------------------------------------------------------------


async def _serve(config: dict[str, Any]) -> None:
    spec = SERVERS[config["server"]]
    port, variant, stop = await spec.start(config["kind"], config["deflate"])
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()

    def stop_soon() -> None:
        if not stopping.done():
            stopping.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_soon)
    print("READY " + json.dumps({"port": port, "variant": variant}), flush=True)
    await stopping
    with contextlib.suppress(Exception):
        await asyncio.wait_for(stop(), 2)


def _run(config: dict[str, Any]) -> None:
    import uvloop

    profile = config.get("profile")
    if not profile:
        uvloop.run(_serve(config))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        uvloop.run(_serve(config))
    finally:
        profiler.disable()
        profiler.dump_stats(profile)
        with open(profile + ".txt", "w", encoding="utf-8") as out:
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(40)


def main(argv: list[str]) -> None:
    """The server process: ``python -m openline.bench.servers '{json}'``."""
    config = json.loads(argv[0])
    die_with_parent()
    pin_to_cpu(config.get("cpu"))
    raise_open_files_limit(config.get("open_files", 1024))
    # Errors go to stderr, which the runner keeps in a log file; a reset
    # connection at the end of a run is not worth a line per connection.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    _run(config)


if __name__ == "__main__":
    main(sys.argv[1:])
