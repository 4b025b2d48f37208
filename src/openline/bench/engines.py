"""What a publish costs on each engine: ``openline bench --engines``.

For each engine (memory; sqlite on a file in a temporary directory; Redis on a
private ``redis-server`` when one is installed) it measures two paths:

* ``engine``: ``N`` sequential calls of the engine's ``publish()``, each with a
  message id (as the clients send), the way the hub calls it;
* ``engine x64``: the same ``N`` calls from 64 tasks at once, as 64 busy
  connections would make them (the sqlite engine commits them in batches);
* ``hub``: ``N`` publishes through one WebSocket connection to a hub on
  127.0.0.1, pipelined, timed until the last ``ack`` arrived.

Each path reports microseconds per publish (the mean) and publishes per second,
and the table goes to stdout. Everything runs in this process on one event loop
(uvloop when installed), so the numbers compare engines, not machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ..hub.backends.base import Engine
from .redis_server import RedisServer, redis_server_binary

__all__ = ["Result", "run"]

#: The payload of each publish, as the hub stores it (JSON text).
PAYLOAD = b'{"text":"hello from the engine benchmark"}'


@dataclasses.dataclass(frozen=True)
class Result:
    """One engine on one path.

    Attributes:
        engine: ``memory``, ``sqlite`` or ``redis``.
        path: ``engine`` (``publish()`` directly), ``engine x64`` (from 64
            tasks at once) or ``hub`` (through a connection).
        count: Publishes measured.
        seconds: Wall time of them all.
    """

    engine: str
    path: str
    count: int
    seconds: float

    @property
    def us_per_publish(self) -> float:
        """Mean microseconds per publish."""
        return self.seconds / self.count * 1e6

    @property
    def per_second(self) -> float:
        """Publishes per second."""
        return self.count / self.seconds


def run(count: int = 5000, *, redis: bool = True) -> list[Result]:
    """Measure every engine and print the table.

    Args:
        count: Publishes per engine and path.
        redis: Include Redis when ``redis-server`` and the ``redis`` package are installed.

    Raises:
        ValueError: ``count`` is below 1.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    with contextlib.ExitStack() as stack:
        factories = _factories(stack, redis=redis)
        results = _loop_run(_measure_all(factories, count))
    print(format_table(results), flush=True)
    return results


def format_table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| engine | path | publishes | µs per publish | publishes/s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.engine} | {r.path} | {r.count} | {r.us_per_publish:.1f} | {r.per_second:,.0f} |"
        )
    return "\n".join(lines)


# --- private ----------------------------------------------------------------------------

Factory = Callable[[str], Engine]


def _factories(stack: contextlib.ExitStack, *, redis: bool) -> dict[str, Factory]:
    """A new-engine function per engine kind; ``stack`` cleans up their files and servers."""
    from ..hub import MemoryEngine
    from ..hub.backends.sqlite import SqliteEngine

    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openline-bench-")))
    factories: dict[str, Factory] = {
        "memory": lambda name: MemoryEngine(),
        "sqlite": lambda name: SqliteEngine(str(directory / f"{name}.db")),
    }
    if redis and redis_server_binary() is not None and _has_redis_package():
        from ..hub.backends.redis import RedisEngine

        server = RedisServer(orphan=False)
        server.start()
        stack.callback(server.stop)
        factories["redis"] = lambda name: RedisEngine(server.url, prefix=f"bench-{name}")
    else:
        print("redis: skipped (needs redis-server and the redis package)", flush=True)
    return factories


def _has_redis_package() -> bool:
    import importlib.util

    return importlib.util.find_spec("redis") is not None


def _loop_run(coro: Any) -> list[Result]:
    try:
        import uvloop
    except ImportError:
        results: list[Result] = asyncio.run(coro)
        return results
    measured: list[Result] = uvloop.run(coro)
    return measured


async def _measure_all(factories: dict[str, Factory], count: int) -> list[Result]:
    results = []
    for kind, factory in factories.items():
        results.append(await _measure_engine(kind, factory("engine"), count))
        results.append(await _measure_engine(kind, factory("concurrent"), count, tasks=64))
        results.append(await _measure_hub(kind, factory("hub"), count))
    return results


async def _measure_engine(kind: str, engine: Engine, count: int, *, tasks: int = 1) -> Result:
    async def publish_some(task: int) -> None:
        for n in range(task, count, tasks):
            await engine.publish(f"bench{task % 8}", PAYLOAD, msg_id=f"m{n}")

    try:
        await _start(engine)
        for n in range(min(count, 100)):  # warm-up: connections, caches, the file
            await engine.publish("warmup", PAYLOAD, msg_id=f"w{n}")
        started = time.perf_counter()
        await asyncio.gather(*(publish_some(task) for task in range(tasks)))
        path = "engine" if tasks == 1 else f"engine x{tasks}"
        return Result(kind, path, count, time.perf_counter() - started)
    finally:
        await engine.close()


async def _measure_hub(kind: str, engine: Engine, count: int) -> Result:
    from ..asyncio.client import connect
    from ..hub import Hub

    await _start(engine)
    hub = Hub(engine, rate_limit=None, max_errors=None, ping_interval=None)
    try:
        async with _serving(hub) as port:
            ws = await connect(f"ws://127.0.0.1:{port}/", subprotocols=["openline.v1"])
            try:
                await ws.recv()  # welcome
                started = time.perf_counter()
                await _publish_and_await_acks(ws, count)
                seconds = time.perf_counter() - started
            finally:
                await ws.close()
    finally:
        await hub.close()
        await engine.close()
    return Result(kind, "hub", count, seconds)


@contextlib.asynccontextmanager
async def _serving(hub: Any) -> AsyncIterator[int]:
    async with hub.serve("127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


async def _publish_and_await_acks(ws: Any, count: int) -> None:
    """Send ``count`` publishes without waiting, then read until the last one's ack."""
    data = json.loads(PAYLOAD)

    async def send_all() -> None:
        for n in range(count):
            await ws.send(
                json.dumps({"type": "publish", "ch": "bench", "data": data, "id": f"m{n}"})
            )

    sender = asyncio.create_task(send_all())
    acks = 0
    try:
        while acks < count:
            frame = json.loads(await ws.recv())
            if frame["type"] == "ack":
                acks += 1
            elif frame["type"] == "error":
                raise RuntimeError(f"the hub refused a publish: {frame}")
    finally:
        await sender


async def _start(engine: Engine) -> None:
    start = getattr(engine, "start", None)
    if start is not None:
        await start()
