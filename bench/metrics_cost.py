"""What the hub's counting costs on its hot paths: publish, and fan-out to many subscribers.

``PYTHONPATH=src python bench/metrics_cost.py --subscribers 200 --messages 1000 --runs 5``

Two measurements in one process, each repeated ``--runs`` times (the median is printed):

* **publish**: ``hub.publish()`` on the memory engine with nobody subscribed, timed over
  ``--publishes`` calls: the engine call, the publish latency histogram and the counters.
* **fan-out**: ``--subscribers`` real WebSocket clients on 127.0.0.1 subscribe to one
  channel; ``--messages`` messages of 100 bytes are published and the clock stops when every
  subscriber has every message. Reported as CPU microseconds of this process (hub and
  clients together) per delivered message, and wall time.

Run it on two checkouts to compare them (``PYTHONPATH=<other>/src``); the numbers of a
busy machine are noisy, so compare medians of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from openline import connect
from openline.hub import Hub


async def publish_cost(publishes: int) -> float:
    """Microseconds per ``hub.publish()`` with no subscriber."""
    hub = Hub()
    try:
        started = time.perf_counter()
        for n in range(publishes):
            await hub.publish("bench", n)
        return (time.perf_counter() - started) / publishes * 1e6
    finally:
        await hub.close()


async def fanout_cost(subscribers: int, messages: int) -> tuple[float, float]:
    """CPU microseconds per delivered message, and wall seconds, for one fan-out run."""
    hub = Hub(ping_interval=None, ping_timeout=None, rate_limit=None)
    async with hub.serve("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        done = asyncio.get_running_loop().create_future()
        wanted = subscribers * messages
        received = 0

        def on_message(ws: Any, message: Any) -> None:
            nonlocal received
            if b'"message"' in (message if isinstance(message, bytes) else message.encode()):
                received += 1
                if received == wanted and not done.done():
                    done.set_result(None)

        clients = []
        for _ in range(subscribers):
            ws = await connect(
                f"ws://127.0.0.1:{port}/", subprotocols=["openline.v1"], ping_interval=None
            )
            await ws.recv()  # welcome
            await ws.send(json.dumps({"type": "subscribe", "ch": "fan"}))
            await ws.recv()  # subscribed
            clients.append(ws)
        for ws in clients:
            ws.listen(on_message)
        payload = "x" * 100
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(messages):
            await hub.publish("fan", payload)
            await asyncio.sleep(0)
        await asyncio.wait_for(done, 30)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        for ws in clients:
            ws._transport.abort()
    await hub.close()
    return cpu / wanted * 1e6, wall


async def main_async(args: argparse.Namespace) -> None:
    publish = [await publish_cost(args.publishes) for _ in range(args.runs)]
    fanout = [await fanout_cost(args.subscribers, args.messages) for _ in range(args.runs)]
    print(
        f"publish: {statistics.median(publish):.2f} us per call (runs: "
        + ", ".join(f"{value:.2f}" for value in publish)
        + ")"
    )
    print(
        f"fan-out: {statistics.median(v[0] for v in fanout):.2f} CPU us per delivered message, "
        f"{statistics.median(v[1] for v in fanout):.3f} s wall for "
        f"{args.subscribers} x {args.messages} (runs: "
        + ", ".join(f"{v[0]:.2f}" for v in fanout)
        + ")"
    )


def main() -> None:
    """Parse the arguments and print both measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
