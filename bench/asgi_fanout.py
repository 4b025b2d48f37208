"""What the plain ASGI path costs: one hub's fan-out under ``hub.serve`` and inside ASGI servers.

One hub (memory engine) serves ``--subscribers`` raw ``openline.v1``
connections on 127.0.0.1, all subscribed to one channel; server code then
publishes ``--messages`` messages of ``--size`` bytes, and this measures the
time until every subscriber has received every message: deliveries per second.
Runs, one after the other, in this process:

* ``serve``: ``hub.serve()``, openline's own server (the fast path's code);
* ``uvicorn``: ``hub.asgi()`` under uvicorn's default WebSocket engine (the
  plain path), permessage-deflate off on both sides;
* ``hypercorn``: the same under hypercorn;
* ``uvicorn+openline``: ``hub.asgi()`` under uvicorn with openline's engine
  (the fast path), where ``openline.uvicorn`` exists.

The subscribers run in a child process; the hub, the server and the publishing
share this one, on one core, like a server process does. The numbers compare
the paths to each other on this machine. Loopback only; every wait is bounded.

    PYTHONPATH=src python bench/asgi_fanout.py --subscribers 50 --messages 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from openline.asyncio.client import ClientConnection, connect
from openline.hub import Hub

#: Seconds any single run may take.
TIMEOUT = 120.0
#: uvicorn with openline's WebSocket engine: the hub app's fast path, where it exists.
FAST_PATH = "uvicorn+openline"


@contextlib.asynccontextmanager
async def served(kind: str, hub: Hub) -> AsyncIterator[int]:
    """Serve ``hub`` the ``kind`` way on a free port of 127.0.0.1; yield the port."""
    if kind == "serve":
        async with hub.serve("127.0.0.1", 0) as server:
            yield server.sockets[0].getsockname()[1]
        return
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    stop = asyncio.Event()
    task: asyncio.Future[Any]
    if kind.startswith("uvicorn"):
        import uvicorn

        engine = "openline.uvicorn:WebSocketProtocol" if kind == FAST_PATH else "auto"
        config = uvicorn.Config(
            hub.asgi(),
            log_config=None,
            log_level="warning",
            ws=engine,
            ws_per_message_deflate=False,
        )
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
    else:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        hyper = Config()
        hyper.bind = [f"fd://{os.dup(sock.fileno())}"]
        hyper.accesslog = None
        hyper.errorlog = None
        task = asyncio.ensure_future(serve(hub.asgi(), hyper, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        yield sock.getsockname()[1]
    finally:
        if kind.startswith("uvicorn"):
            server.should_exit = True
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        sock.close()


async def subscriber(port: int, ch: str) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/", subprotocols=["openline.v1"], compression=None
    ).__aenter__()
    await ws.recv()  # welcome
    await ws.send(json.dumps({"type": "subscribe", "ch": ch, "rid": "s"}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def receive(ws: ClientConnection, count: int) -> None:
    received = 0
    while received < count:
        if json.loads(await ws.recv())["type"] == "message":
            received += 1


async def subscribers_process(port: int, subscribers: int, messages: int) -> None:
    """The child: connect, say ``ready``, receive everything, say ``done``."""
    clients = [await subscriber(port, "bench") for _ in range(subscribers)]
    print("ready", flush=True)
    await asyncio.wait_for(asyncio.gather(*(receive(ws, messages) for ws in clients)), TIMEOUT)
    print("done", flush=True)
    for ws in clients:
        ws.abort()


async def run(kind: str, subscribers: int, messages: int, size: int) -> float:
    """Deliveries per second of one run, the subscribers in a child process."""
    # No eviction and no rate limit: this measures throughput, not the policies.
    hub = Hub(rate_limit=None, max_buffer=None, slow_consumer_timeout=None)
    # Under an ASGI server the hub app answers the lifespan scope: the server runs the hub.
    async with served(kind, hub) as port:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            str(port),
            "--subscribers",
            str(subscribers),
            "--messages",
            str(messages),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
        assert line == b"ready\n", line
        payload = "x" * size
        started = time.perf_counter()
        for _ in range(messages):
            await hub.publish("bench", payload)
            await asyncio.sleep(0)  # let the writers (and the server) run
        line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
        elapsed = time.perf_counter() - started
        assert line == b"done\n", line
        await asyncio.wait_for(child.wait(), TIMEOUT)
    if kind == "serve":
        await hub.close()
    return subscribers * messages / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        await subscribers_process(args.child, args.subscribers, args.messages)
        return
    results: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        kinds = ["serve", "uvicorn", "hypercorn"]
        if importlib.util.find_spec("openline.uvicorn") is not None:
            kinds.append(FAST_PATH)
        for kind in kinds:
            rate = await run(kind, args.subscribers, args.messages, args.size)
            results.setdefault(kind, []).append(rate)
    base = statistics.median(results["serve"])
    print(f"{args.subscribers} subscribers x {args.messages} messages of {args.size} bytes")
    for kind, rates in results.items():
        median = statistics.median(rates)
        print(f"{kind:17} {median:12,.0f} deliveries/s  ({median / base:.2f} x serve)")


if __name__ == "__main__":
    asyncio.run(main())
