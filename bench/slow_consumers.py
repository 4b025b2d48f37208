"""Slow consumers beside healthy ones: eviction time, healthy latency, kernel memory.

The scenario: a hub in a subprocess (the memory engine, no rate limit), ``--slow``
raw subscribers that complete the handshake and subscribe, then never read
again, ``--healthy`` subscribers that read everything, and one publisher
sending ``--rate`` messages per second of ``--size`` bytes for ``--duration``
seconds. It prints

* when the hub evicted the slow subscribers (the hub's ``slow_consumers``
  counter, polled every 10 ms in the hub process), relative to the first publish;
* the healthy subscribers' latency (publish to receive), p50 / p99 / max,
  and whether each received every message in order;
* the server's kernel send queue: the sum of ``tx_queue`` in ``/proc/net/tcp``
  over the hub port's sockets, orphans included (Linux only), at its peak and
  until it falls under 1 MB.

Which code runs is whatever ``openline`` the interpreter imports: compare two
trees with ``PYTHONPATH=<tree>/src python bench/slow_consumers.py``. Loopback
only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import time
from typing import Any

CHANNEL = "firehose"


# --- the hub process ------------------------------------------------------------------


class EvictionReasons(logging.Handler):
    """Counts the hub's "closing <client>: <reason>" log lines by reason."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "closing %s: %s" and isinstance(record.args, tuple):
            reason = str(record.args[1])
            # "slow consumer: 1068207 bytes unsent" -> "slow consumer: N bytes unsent"
            self.reasons[re.sub(r"[0-9.]+", "N", reason)] += 1


async def serve_hub(args: argparse.Namespace) -> None:
    """Run a hub on 127.0.0.1:0, print its port, report evictions until stdin closes."""
    from openline.hub import Hub

    reasons = EvictionReasons()
    hub_logger = logging.getLogger("openline.hub")
    hub_logger.addHandler(reasons)
    hub_logger.setLevel(logging.INFO)
    hub_logger.propagate = False
    options: dict[str, Any] = json.loads(args.hub_options)
    hub = Hub(rate_limit=None, max_errors=None, **options)
    async with hub.serve("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        loop = asyncio.get_running_loop()
        stdin_closed = loop.run_in_executor(None, sys.stdin.read)
        seen = 0
        while not stdin_closed.done():
            count = hub.metrics()["slow_consumers"]
            if count != seen:
                seen = count
                print(json.dumps({"evicted": count, "at": time.monotonic()}), flush=True)
            await asyncio.sleep(0.01)
    await hub.close()
    print(json.dumps({"reasons": dict(reasons.reasons)}), flush=True)


# --- raw clients ----------------------------------------------------------------------


def client_frame(payload: bytes) -> bytes:
    """A masked text frame, as a client must send it (RFC 6455, section 5.3)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x81, 0x80 | length)
    else:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


async def slow_subscriber(port: int) -> socket.socket:
    """Handshake and subscribe on a raw socket, then never read again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: openline.v1\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    await read_until(sock, b'"welcome"')
    subscribe = json.dumps({"type": "subscribe", "ch": CHANNEL}).encode()
    await loop.sock_sendall(sock, client_frame(subscribe))
    await read_until(sock, b'"subscribed"')
    return sock


async def read_until(sock: socket.socket, marker: bytes, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(limit):
        while marker not in data:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise ConnectionError("closed during setup")
            data += chunk


async def healthy_subscriber(port: int, ready: asyncio.Event, count: int) -> dict[str, Any]:
    """Read every message; return latencies and whether offsets were complete."""
    from openline import connect

    latencies: list[float] = []
    offsets: list[int] = []
    async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["openline.v1"]) as ws:
        await ws.send(json.dumps({"type": "subscribe", "ch": CHANNEL}))
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "subscribed":
                break
        ready.set()
        try:
            async with asyncio.timeout(60):
                while len(offsets) < count:
                    message = json.loads(await ws.recv())
                    if message["type"] != "message":
                        continue
                    latencies.append(time.monotonic() - message["data"]["t"])
                    offsets.append(message["offset"])
        except Exception as exc:
            return {"latencies": latencies, "complete": False, "error": repr(exc)}
    complete = offsets == list(range(offsets[0], offsets[0] + count)) if offsets else False
    return {"latencies": latencies, "complete": complete}


async def publisher(port: int, rate: int, size: int, duration: float) -> tuple[float, int]:
    """Publish ``rate`` messages per second for ``duration`` seconds; return (start, count)."""
    from openline import connect

    total = int(rate * duration)
    pad = "x" * max(0, size - 40)
    async with connect(f"ws://127.0.0.1:{port}/", subprotocols=["openline.v1"]) as ws:

        async def drain_acks() -> None:
            acks = 0
            while acks < total:
                if json.loads(await ws.recv())["type"] == "ack":
                    acks += 1

        reader = asyncio.create_task(drain_acks())
        start = time.monotonic()
        for index in range(total):
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            data = {"t": time.monotonic(), "pad": pad}
            await ws.send(json.dumps({"type": "publish", "ch": CHANNEL, "data": data}))
        async with asyncio.timeout(60):
            await reader
    return start, total


# --- kernel memory --------------------------------------------------------------------


def kernel_send_queue(port: int) -> int:
    """Bytes in the send queues of the sockets on local ``port`` (orphans too)."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port:
                        total += int(fields[4].split(":")[0], 16)
        except FileNotFoundError:
            continue
    return total


async def watch_kernel(port: int, stop: asyncio.Event, samples: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        samples.append((time.monotonic(), kernel_send_queue(port)))
        # Not more often: parsing /proc/net/tcp takes CPU from the healthy readers.
        await asyncio.sleep(0.25)


# --- the scenario ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    hub = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-hub",
        "--hub-options",
        args.hub_options,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert hub.stdout is not None and hub.stdin is not None
    port = json.loads(await hub.stdout.readline())["port"]
    evictions: list[tuple[int, float]] = []
    reasons: dict[str, int] = {}

    async def read_hub() -> None:
        assert hub.stdout is not None
        while line := await hub.stdout.readline():
            report = json.loads(line)
            if "reasons" in report:
                reasons.update(report["reasons"])
            else:
                evictions.append((report["evicted"], report["at"]))

    hub_reader = asyncio.create_task(read_hub())
    slow: list[socket.socket] = []
    for _ in range(0, args.slow, 50):
        batch = min(50, args.slow - len(slow))
        slow += await asyncio.gather(*(slow_subscriber(port) for _ in range(batch)))
    count = int(args.rate * args.duration)
    ready = [asyncio.Event() for _ in range(args.healthy)]
    healthy = [asyncio.create_task(healthy_subscriber(port, event, count)) for event in ready]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 30)
    print(f"{len(slow)} slow and {args.healthy} healthy subscribers on port {port}")

    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_kernel(port, stop, samples))
    cpu_before = cpu_seconds(hub.pid)
    start, published = await publisher(port, args.rate, args.size, args.duration)
    results = await asyncio.gather(*healthy)
    hub_cpu = cpu_seconds(hub.pid) - cpu_before
    end_publish = time.monotonic()
    # Watch the kernel's queue drain, for at most --linger seconds.
    deadline = end_publish + args.linger
    stop.set()
    await watcher
    while time.monotonic() < deadline:
        samples.append((time.monotonic(), kernel_send_queue(port)))
        if samples[-1][1] < 1_000_000:
            break
        await asyncio.sleep(0.1)
    hub.stdin.close()
    await asyncio.wait_for(hub.wait(), 30)
    await hub_reader
    for sock in slow:
        sock.close()

    load = os.getloadavg()[0]
    print(
        f"published {published} messages of {args.size} bytes at {args.rate}/s; "
        f"the hub used {hub_cpu:.2f} s of CPU meanwhile (load average {load:.1f})"
    )
    if evictions:
        first = evictions[0][1] - start
        last = evictions[-1][1] - start
        print(
            f"evicted: {evictions[-1][0]} of {args.slow}; "
            f"first at {first:.2f} s, last at {last:.2f} s"
        )
    else:
        print(f"evicted: 0 of {args.slow}")
    for reason, count in sorted(reasons.items()):
        print(f"  {count} x {reason}")
    latencies = [value for result in results for value in result["latencies"]]
    complete = sum(1 for result in results if result["complete"])
    if latencies:
        print(
            f"healthy latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
            f"{complete} of {len(results)} received every message in order"
        )
    for result in results:
        if "error" in result:
            print(f"  a healthy subscriber stopped: {result['error']}")
    peak_time, peak = max(samples, key=lambda sample: sample[1])
    print(f"kernel send queue of the hub: peak {peak / 1e6:.1f} MB at {peak_time - start:.2f} s")
    under = [when for when, size in samples if when >= peak_time and size < 1_000_000]
    if under:
        print(f"  under 1 MB again at {under[0] - start:.2f} s")
    else:
        final_time, final = samples[-1]
        print(f"  still {final / 1e6:.1f} MB at {final_time - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=500, help="subscribers that never read")
    parser.add_argument("--healthy", type=int, default=5, help="subscribers that read")
    parser.add_argument("--rate", type=int, default=1000, help="messages per second")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of publishing")
    parser.add_argument(
        "--linger", type=float, default=45.0, help="seconds to watch the kernel queue drain"
    )
    parser.add_argument(
        "--hub-options",
        default="{}",
        help="extra Hub() arguments as JSON, e.g. '{\"slow_consumer_timeout\": 0.25}'",
    )
    parser.add_argument("--serve-hub", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_hub:
        asyncio.run(serve_hub(args))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
