"""python-socketio, the hub's Python peer in ``openline bench --hub``: one node per process.

``python -m openline.bench.sionode '{json}'`` serves a ``socketio.AsyncServer``
as an ASGI app under uvicorn (uvloop, its default WebSocket implementation) on
127.0.0.1 and a free port. With ``"redis": URL`` the server uses
``AsyncRedisManager`` on that Redis, so that nodes on the same URL and channel
form one Socket.IO cluster; otherwise the default in-process manager.

The application is the smallest one that does what the hub does in the
benchmark, in Socket.IO's terms:

* ``join``: the connection enters the room ``bench`` and is told ``joined``
  (the hub's ``subscribe`` / ``subscribed``);
* ``publish``: its argument is emitted to the room as ``msg`` (the hub's
  ``publish`` / ``message``), encoded once for every member, as
  python-socketio does without callbacks.

Everything else is python-socketio's defaults (Engine.IO pings every 25 s,
which the generator answers). It prints ``READY {"port": N}`` once it listens
and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from typing import Any

from .system import die_with_parent, pin_to_cpu, raise_open_files_limit

__all__ = ["ROOM", "main"]

HOST = "127.0.0.1"
#: The one room of the benchmark.
ROOM = "bench"


def _app(config: dict[str, Any]) -> Any:
    import socketio  # type: ignore[import-untyped]

    manager = None
    if config.get("redis"):
        manager = socketio.AsyncRedisManager(config["redis"], channel=config.get("prefix", "sio"))
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, logger=False)

    async def join(sid: str, *_: Any) -> None:
        await sio.enter_room(sid, ROOM)
        await sio.emit("joined", to=sid)

    async def publish(sid: str, data: Any) -> None:
        await sio.emit("msg", data, room=ROOM)

    sio.on("join", join)
    sio.on("publish", publish)
    return socketio.ASGIApp(sio)


async def _serve(config: dict[str, Any]) -> None:
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            _app(config),
            loop="none",
            log_level="error",
            access_log=False,
            lifespan="off",
            backlog=4096,
            ws_ping_interval=None,
            ws_ping_timeout=None,
        )
    )
    loop = asyncio.get_running_loop()
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():
        await serving  # raises what stopped it
        return

    def stop_soon() -> None:
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_soon)
    print("READY " + json.dumps({"port": port}), flush=True)
    await serving


def main(argv: list[str]) -> None:
    """The node process: ``python -m openline.bench.sionode '{json}'``."""
    config = json.loads(argv[0])
    die_with_parent()
    pin_to_cpu(config.get("cpu"))
    raise_open_files_limit(config.get("open_files", 1024))
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    import uvloop

    uvloop.run(_serve(config))


if __name__ == "__main__":
    main(sys.argv[1:])
