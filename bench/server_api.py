"""Measure the server API: parsing cost, publish latency over HTTP, and a disconnect across nodes.

``PYTHONPATH=src python bench/server_api.py [--publishes 300] [--redis-server PATH]``

Prints, each on one line:

* ``parse_request`` on a typical upgrade request (µs per call, best of 5 runs),
  to show that the body support costs the upgrade path nothing measurable; run it
  on two checkouts to compare;
* ``hub.publish`` in-process, then ``POST /api/publish`` through the sync and the
  async client (one HTTP connection per call), as median and p99 ms per publish,
  against ``create_app`` on 127.0.0.1;
* with ``redis-server`` on the PATH: ms from ``hub_a.disconnect(user)`` to the
  close of that user's connection on node B (two hubs sharing one Redis prefix),
  median of 20.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.redis_server

import openline
from openline.protocol.http11 import parse_request

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: openline.v1\r\nOrigin: http://127.0.0.1:8765\r\n"
    b"User-Agent: bench\r\n\r\n"
)


def bench_parse() -> None:
    runs = timeit.repeat(lambda: parse_request(UPGRADE), number=20_000, repeat=5)
    print(f"parse_request(upgrade): {min(runs) / 20_000 * 1e6:.2f} µs per call (best of 5)")


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered) * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"


async def bench_publish(count: int) -> None:
    from openline.api import APIClient, AsyncAPIClient
    from openline.web import create_app

    app = create_app(ticker=False, api_key="bench-key")
    async with app.run("127.0.0.1", 0) as server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        samples: list[float] = []
        for n in range(count):
            start = time.perf_counter()
            await app.hub.publish("bench", n)
            samples.append(time.perf_counter() - start)
        print(f"hub.publish in-process, {count}: {summary(samples)}")
        client = AsyncAPIClient(url, "bench-key")
        samples = []
        for n in range(count):
            start = time.perf_counter()
            await client.publish("bench", n)
            samples.append(time.perf_counter() - start)
        print(f"AsyncAPIClient.publish over HTTP, {count}: {summary(samples)}")
        sync = APIClient(url, "bench-key")

        def run_sync() -> list[float]:
            found = []
            for n in range(count):
                start = time.perf_counter()
                sync.publish("bench", n)
                found.append(time.perf_counter() - start)
            return found

        print(f"APIClient.publish over HTTP, {count}: {summary(await asyncio.to_thread(run_sync))}")


async def bench_disconnect(rounds: int) -> None:
    from openline.hub import Hub, Identity
    from openline.hub.backends.redis import RedisEngine
    from tests.redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        print("disconnect across nodes: skipped (no redis-server)")
        return
    with RedisServer() as redis:
        engines = [RedisEngine(redis.url, prefix="bench"), RedisEngine(redis.url, prefix="bench")]
        hubs = [Hub(engine, authenticate=lambda c: Identity(c.token or "x")) for engine in engines]
        async with hubs[0].serve("127.0.0.1", 0) as a, hubs[1].serve("127.0.0.1", 0) as b:
            port_a, port_b = (s.sockets[0].getsockname()[1] for s in (a, b))
            keep = await openline.connect(
                f"ws://127.0.0.1:{port_a}/?token=keep", subprotocols=["openline.v1"]
            )
            await keep.recv()
            samples = []
            for n in range(rounds):
                ws = await openline.connect(
                    f"ws://127.0.0.1:{port_b}/?token=u{n}", subprotocols=["openline.v1"]
                )
                await ws.recv()  # welcome
                start = time.perf_counter()
                await hubs[0].disconnect(f"u{n}", code=4001, reason="bench")
                # Read: a client that isn't reading answers the close frame only
                # when it does (the server then waits for its close_timeout).
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except openline.exceptions.ConnectionClosed:
                    samples.append(time.perf_counter() - start)
                await ws.wait_closed()
                assert ws.close_code == 4001
            await keep.close()
        for hub in hubs:
            await hub.close()
        for engine in engines:
            await engine.close()
    print(f"disconnect on node A -> close on node B over Redis, {rounds}: {summary(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=300)
    args = parser.parse_args()
    bench_parse()
    asyncio.run(bench_publish(args.publishes))
    asyncio.run(bench_disconnect(20))


if __name__ == "__main__":
    main()
