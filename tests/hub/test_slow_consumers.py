"""Hundreds of subscribers that never read, beside a few that do, under a steady firehose.

The scenario of ``bench/slow_consumers.py``, scaled to the test suite: 500 raw
subscribers complete the handshake and subscribe, then never read again (with
a small receive buffer); 5 subscribers read everything; the server publishes
1,000 messages of 1 KB per second for a few seconds. Every stalled subscriber
must be evicted (1013 or a TCP reset) within a bounded time, the healthy ones
must get every message in order and in time, and the server must not keep the
stalled ones' bytes queued in its kernel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from typing import Any

import pytest

from openline.hub.backends.base import Engine

from .helpers import MS, TIMEOUT, HubClient, RunningHub, run_hub

SLOW = 500
HEALTHY = 5
RATE = 1000
SIZE = 1024
DURATION = 2.0
CHANNEL = "firehose"

# Generous bounds for a busy 2-core machine shared by several test runs (the
# hub, its 505 subscribers and the publisher share this process); the goals
# are 1 s and 100 ms, and the test prints what it measured. Before the kernel
# counted, eviction took 5-14 s and the healthy p99 was 2.6-5 s.
EVICTION_BOUND = 10_000 * MS
P99_BOUND = 6_000 * MS
# What the server may still hold in its kernel send queues once every stalled
# subscriber is gone: the healthy ones' in-flight bytes, not 500 full queues.
KERNEL_BOUND = 2_000_000


# --- raw subscribers that never read ---------------------------------------------------


def client_frame(payload: bytes) -> bytes:
    """A masked text frame, as a client sends it (RFC 6455, section 5.3)."""
    mask = os.urandom(4)
    head = struct.pack("!BB", 0x81, 0x80 | len(payload))
    assert len(payload) < 126
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_until(sock: socket.socket, marker: bytes) -> None:
    loop = asyncio.get_running_loop()
    data = b""
    while marker not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
        assert chunk, "the hub closed the connection during setup"
        data += chunk


async def stalled_subscriber(port: int) -> socket.socket:
    """Handshake and subscribe on a raw socket; the caller never reads it again."""
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


async def how_it_ended(sock: socket.socket) -> str:
    """Read what is left on a stalled subscriber's socket: ``"reset"`` or ``"closed"``."""
    loop = asyncio.get_running_loop()
    tail = b""
    try:
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
            if not chunk:
                # A close frame from the server: 0x88, then the payload with 1013.
                assert b"\x88" in tail and struct.pack("!H", 1013) in tail
                return "closed"
            tail = (tail + chunk)[-256:]
    except ConnectionResetError:
        return "reset"
    finally:
        sock.close()


# --- measurements -----------------------------------------------------------------------


def kernel_send_queue(port: int) -> int:
    """Bytes in the kernel send queues of the sockets on local ``port`` (Linux)."""
    total = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                total += int(fields[4].split(":")[0], 16)
    return total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def read_healthy(client: HubClient, count: int) -> list[tuple[int, float]]:
    """Receive ``count`` messages; return their offsets and latencies.

    Straight from ``recv()``: a timeout per message would cost a task each, and
    the readers share the hub's CPU. The caller bounds the whole read.
    """
    received = []
    while len(received) < count:
        message = json.loads(await client.ws.recv())
        assert message["type"] == "message", message
        received.append((message["offset"], time.monotonic() - message["data"]["t"]))
    return received


async def publish(running: RunningHub, count: int) -> float:
    """Publish ``count`` messages at ``RATE`` per second; return when it started.

    Each message carries the time it was due: when the hub falls behind, the
    publisher here (on the hub's loop) falls behind with it, and a publisher
    elsewhere would see that delay as latency. Publishes overlap (up to 100),
    so that an engine's round trip doesn't lower the rate.
    """
    pad = "x" * (SIZE - 40)
    pending: set[asyncio.Task[Any]] = set()
    start = time.monotonic()
    for index in range(count):
        due = start + index / RATE
        # Always yield, as a publisher on the network would: readers run meanwhile.
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(running.hub.publish(CHANNEL, {"t": due, "pad": pad}))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) >= 100:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    return start


async def record_evictions(running: RunningHub, times: list[float]) -> None:
    """Note the time of every eviction (polled: the counter has no event)."""
    while len(times) < SLOW:
        evicted = running.hub.metrics()["slow_consumers"]
        times.extend([time.monotonic()] * (evicted - len(times)))
        await asyncio.sleep(5 * MS)


# --- the test -----------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
async def test_stalled_subscribers_are_evicted_fast_and_healthy_ones_keep_up(
    engine: Engine,
) -> None:
    async with run_hub(engine, rate_limit=None) as running:
        port = running.server.sockets[0].getsockname()[1]
        stalled: list[socket.socket] = []
        for _ in range(SLOW // 50):
            stalled += await asyncio.gather(*(stalled_subscriber(port) for _ in range(50)))
        healthy = [await running.client() for _ in range(HEALTHY)]
        for client in healthy:
            await client.subscribe(CHANNEL)
        count = int(RATE * DURATION)

        evictions: list[float] = []
        recorder = asyncio.create_task(record_evictions(running, evictions))
        readers = [asyncio.create_task(read_healthy(client, count)) for client in healthy]
        start = await publish(running, count)
        results = await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT + EVICTION_BOUND)
        await asyncio.wait_for(recorder, EVICTION_BOUND)
        queued = kernel_send_queue(port)

        first, last = evictions[0] - start, evictions[-1] - start
        latencies = [latency for result in results for _, latency in result]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        metrics = running.hub.metrics()
        print(
            f"\n{SLOW} stalled subscribers evicted from {first:.3f} s to {last:.3f} s "
            f"({metrics['slow_consumer_resets']} reset); healthy latency p50 "
            f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
            f"server kernel send queue after: {queued} bytes"
        )
        assert metrics["slow_consumers"] == SLOW
        assert last < EVICTION_BOUND
        for result in results:
            assert [offset for offset, _ in result] == list(range(1, count + 1))
        assert p99 < P99_BOUND
        assert queued < KERNEL_BOUND
        endings = [await how_it_ended(sock) for sock in stalled]
        assert endings.count("reset") + endings.count("closed") == SLOW
        assert endings.count("reset") == metrics["slow_consumer_resets"]
