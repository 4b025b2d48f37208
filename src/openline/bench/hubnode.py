"""One hub node of the cluster benchmark: ``python -m openline.bench.hubnode '{json}'``.

A node is :class:`openline.hub.Hub` served on 127.0.0.1 and a free port, with
the memory engine or :class:`~openline.hub.backends.redis.RedisEngine`; nodes
given the same Redis URL and prefix form one hub. The configuration is the
library's defaults except for what a benchmark must not measure:

* no keepalive pings (as in every other server of ``openline bench``), so that
  the load generator receives nothing it didn't ask for;
* no per-connection rate limit, so that the publisher's catch-up bursts (when
  its loop was late) are never refused.

With ``"envelope": "compact"`` the node delivers messages in a compact
envelope, a prototype measured by ``openline bench --hub`` and not part of the
protocol: ``[ch, offset, user, data]`` (``user`` null when absent) instead of
``{"type":"message","ch":..,"epoch":..,"offset":..,"user":..,"data":..}``;
the epoch, which subscribers learn from ``subscribed``, is left out.

With ``"server"`` other than ``serve`` (the default: ``hub.serve()``), the
same hub is mounted at ``/hub`` in a FastAPI app (``app.mount("/hub",
hub.asgi())``, ``lifespan=hub.lifespan``) and served by an ASGI server in the
process, on the same loop (uvloop):

* ``uvicorn-openline``: uvicorn with openline's WebSocket engine
  (``ws="openline.uvicorn:WebSocketProtocol"``): the hub app's fast path;
* ``uvicorn``: uvicorn with its default engine (``ws="auto"``: websockets'
  sans-I/O implementation when websockets is installed; the plain path);
* ``hypercorn``: hypercorn, whose WebSocket side is wsproto (the plain path).

Like the hub, the servers send no keepalive pings and negotiate no compression.

The process takes one JSON argument (``engine``: ``memory`` or ``redis``,
``url``, ``prefix``, ``envelope``, ``server``, ``cpu``, ``open_files``),
prints ``READY {json}`` with the port once it listens and the hub runs (after
reaching Redis, for the Redis engine), and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from ..hub.backends.base import Message
from ..hub.wire import encode_str
from .system import die_with_parent, pin_to_cpu, raise_open_files_limit

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ASGI_SERVERS", "MOUNT", "main"]

HOST = "127.0.0.1"
#: The ASGI servers a node can mount the hub under, besides ``serve`` (``hub.serve()``).
ASGI_SERVERS = ("uvicorn-openline", "uvicorn", "hypercorn")
#: Where the FastAPI app mounts the hub.
MOUNT = "/hub"
#: Connections the listening socket queues while the server starts and accepts.
BACKLOG = 4096


def encode_compact(ch_json: bytes, message: Message) -> bytes:
    """The compact envelope prototype: ``[ch, offset, user, data]``."""
    data = message.data
    if isinstance(data, str):
        data = data.encode()
    user = (message.meta or {}).get("user")
    return b"[%b,%d,%b,%b]" % (
        ch_json,
        message.offset,
        b"null" if user is None else encode_str(user),
        data,
    )


async def _serve(config: dict[str, Any]) -> None:
    from ..hub import Hub, MemoryEngine, channel
    from ..hub.backends.base import Engine

    if config.get("envelope") == "compact":
        setattr(channel, "encode_message", encode_compact)  # noqa: B010 (a bench-only patch)

    engine: Engine
    if config["engine"] == "redis":
        from ..hub.backends.redis import RedisEngine

        redis = RedisEngine(config["url"], prefix=config["prefix"])
        await redis.start()  # fail now, not at the first subscriber
        engine = redis
    else:
        engine = MemoryEngine()
    hub = Hub(engine, rate_limit=None, ping_interval=None, ping_timeout=None)
    server_kind = config.get("server", "serve")
    if server_kind != "serve":
        await _serve_asgi(hub, server_kind)
        return
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()

    def stop_soon() -> None:
        if not stopping.done():
            stopping.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_soon)
    try:
        async with hub.serve(HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            print("READY " + json.dumps({"port": port}), flush=True)
            await stopping
            server.close(timeout=1)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(hub.close(), 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(engine.close(), 2)


def _fastapi_app(hub: Hub) -> Any:
    from fastapi import FastAPI

    app = FastAPI(lifespan=hub.lifespan)
    app.mount(MOUNT, hub.asgi())
    return app


async def _serve_asgi(hub: Hub, kind: str) -> None:
    """Serve the hub mounted in FastAPI under the ASGI server ``kind`` until a signal."""
    if kind not in ASGI_SERVERS:
        raise ValueError(f"unknown server {kind!r}; choose from serve, {', '.join(ASGI_SERVERS)}")
    app = _fastapi_app(hub)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    serving: asyncio.Future[Any]
    if kind == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config as HypercornConfig

        hypercorn_config = HypercornConfig()
        # hypercorn closes the socket it makes from the descriptor: it gets a copy.
        hypercorn_config.bind = [f"fd://{os.dup(listener.fileno())}"]
        hypercorn_config.backlog = BACKLOG
        hypercorn_config.accesslog = None
        hypercorn_config.graceful_timeout = 1.0
        serving = asyncio.ensure_future(
            serve(app, hypercorn_config, shutdown_trigger=stopping.wait)
        )
    else:
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(
                app,
                loop="none",
                log_level="error",
                access_log=False,
                lifespan="on",
                backlog=BACKLOG,
                ws="openline.uvicorn:WebSocketProtocol" if kind == "uvicorn-openline" else "auto",
                ws_ping_interval=None,
                ws_ping_timeout=None,
                ws_per_message_deflate=False,
            )
        )
        serving = asyncio.ensure_future(server.serve(sockets=[listener]))

        async def stop() -> None:
            await stopping.wait()
            server.should_exit = True

        stopper = asyncio.ensure_future(stop())
        serving.add_done_callback(lambda _: stopper.cancel())
    # Ready once the lifespan started the hub: connections queue in the backlog until then.
    for _ in range(1000):
        if hub.is_running or serving.done():
            break
        await asyncio.sleep(0.02)
    if not hub.is_running:
        stopping.set()
        await serving  # raises what stopped it
        raise RuntimeError(f"{kind} did not start the hub within 20 s")
    print("READY " + json.dumps({"port": port}), flush=True)
    await serving


def main(argv: list[str]) -> None:
    """The node process: ``python -m openline.bench.hubnode '{json}'``."""
    config = json.loads(argv[0])
    die_with_parent()
    pin_to_cpu(config.get("cpu"))
    raise_open_files_limit(config.get("open_files", 1024))
    # Errors go to stderr, which the runner keeps in a log file.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    import uvloop

    uvloop.run(_serve(config))


if __name__ == "__main__":
    main(sys.argv[1:])
