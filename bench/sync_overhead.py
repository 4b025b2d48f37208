"""What the blocking client costs over the asyncio one: echo round trips, one at a time.

An openline echo server runs on its own event loop thread; the same number of
sequential round trips (send, then wait for the echo) goes through
``openline.connect`` in a loop of this thread and through ``openline.sync.connect``,
whose calls hop to the loop thread of :mod:`openline.sync` and back. Prints
the median and 99th percentile per round trip and their ratio. Also times a
hub publish (ack awaited) both ways, against a memory-engine hub.

Loopback only; on a shared machine read the ratios, not the absolutes::

    PYTHONPATH=src python bench/sync_overhead.py --count 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import openline
import openline.sync
import openline.sync.hub
from openline.hub import Client, Hub, MemoryEngine

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)


async def _echo(ws: openline.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def _summary(name: str, samples: list[float]) -> float:
    samples.sort()
    median = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(f"{name:<28} median {median * 1e6:8.1f} µs   p99 {p99 * 1e6:8.1f} µs")
    return median


def _timed(count: int, step: Callable[[], None]) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        step()
        samples.append(time.perf_counter() - began)
    return samples


async def _async_echo(url: str, count: int) -> list[float]:
    samples = []
    async with openline.connect(url) as ws:
        for _ in range(count):
            began = time.perf_counter()
            await ws.send("x" * 32)
            await ws.recv()
            samples.append(time.perf_counter() - began)
    return samples


async def _async_publish(url: str, count: int) -> list[float]:
    samples = []
    async with Client(url, heartbeat_interval=None) as client:
        for i in range(count):
            began = time.perf_counter()
            await client.publish("bench", i)
            samples.append(time.perf_counter() - began)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="round trips per variant")
    args = parser.parse_args()
    servers = LoopThread()

    async def start() -> tuple[str, str]:
        echo = await openline.serve(_echo, "127.0.0.1", 0)
        hub = Hub(MemoryEngine(), rate_limit=None)
        hub_server = await hub.serve("127.0.0.1", 0)
        ports = echo.sockets[0].getsockname()[1], hub_server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{ports[0]}/", f"ws://127.0.0.1:{ports[1]}/"

    echo_url, hub_url = servers.call(start())
    print(f"{args.count} sequential round trips each, loopback\n")
    a = _summary("asyncio echo", asyncio.run(_async_echo(echo_url, args.count)))
    with openline.sync.connect(echo_url) as ws:

        def echo_once() -> None:
            ws.send("x" * 32)
            ws.recv()

        s = _summary("sync echo", _timed(args.count, echo_once))
    print(f"{'sync / asyncio':<28} {s / a:.2f}x\n")
    a = _summary("asyncio hub publish", asyncio.run(_async_publish(hub_url, args.count)))
    with openline.sync.hub.connect(hub_url, heartbeat_interval=None) as client:
        s = _summary("sync hub publish", _timed(args.count, lambda: client.publish("bench", 0)))
    print(f"{'sync / asyncio':<28} {s / a:.2f}x")


if __name__ == "__main__":
    main()
