"""The wave of redials when a node stops: SIGTERM to one of two hubs, its clients move over.

Two ``openline serve`` processes (memory engine, no ticker) on free ports of
127.0.0.1, node A and node B; ``--clients`` hub clients (``openline.hub.Client``
with the default redial policy) all start on A and know B as their next URI.
Then A gets SIGTERM, and this prints

* how A closed them: the close codes, and the spread of the closes (first to last);
* when they came back on B, relative to the SIGTERM: first, median, last;
* the peak rate of arrivals on B, per 100 ms window: the wave B has to absorb;
* how long A took to exit, and its exit status.

Which code runs is whatever ``openline`` the interpreter imports (the nodes get
the same ``PYTHONPATH``): compare two trees with
``PYTHONPATH=<tree>/src python bench/drain_wave.py``. Loopback only; every wait
is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import statistics
import subprocess
import sys
import time

from openline.exceptions import ConnectionClosed
from openline.hub import Client
from openline.hub.events import ClientEvent, Connected, Disconnected

#: Seconds any single wait may take.
TIMEOUT = 60.0


async def start_node(extra: list[str]) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``openline serve`` on a free port; return the process and its port."""
    command = [sys.executable, "-m", "openline", "serve", "--port", "0", "--no-ticker"]
    command += ["--rate-limit", "off", *extra]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
        if match:
            return process, int(match.group(1))
        if not line:
            break
    raise RuntimeError("the node didn't start")


async def run(clients: int, drain_seconds: float | None) -> None:
    extra = [] if drain_seconds is None else ["--drain-seconds", str(drain_seconds)]
    node_a, port_a = await start_node(extra)
    node_b, port_b = await start_node([])
    urls = [f"ws://127.0.0.1:{port_a}/ws", f"ws://127.0.0.1:{port_b}/ws"]
    closes: list[tuple[float, int]] = []
    arrivals: list[float] = []

    sigterm_at: list[float] = []

    def record(event: ClientEvent) -> None:
        now = time.monotonic()
        if isinstance(event, Disconnected):
            error = event.error
            closes.append((now, error.code if isinstance(error, ConnectionClosed) else event.code))
        elif isinstance(event, Connected) and sigterm_at:
            arrivals.append(now)

    hub_clients = [Client(urls, on_event=record) for _ in range(clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.start() for c in hub_clients)), TIMEOUT)
        start = time.monotonic()
        sigterm_at.append(start)
        node_a.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(node_a.wait(), TIMEOUT)
        exited = time.monotonic() - start
        deadline = time.monotonic() + TIMEOUT
        while len(arrivals) < clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        closes_before_end = list(closes)
        await asyncio.gather(*(c.close() for c in hub_clients))
        closes[:] = closes_before_end
        for node in (node_a, node_b):
            if node.returncode is None:
                node.terminate()
                await node.wait()
    codes = collections.Counter(code for _, code in closes)
    close_times = sorted(t - start for t, _ in closes)
    back = sorted(t - start for t in arrivals)
    windows = collections.Counter(int(t * 10) for t in back)
    print(f"clients {clients}, drain {'-' if drain_seconds is None else drain_seconds} s")
    print(f"  node A exited with {status} after {exited:.2f} s")
    print(
        f"  close codes {dict(codes)}; closes spread over {close_times[-1] - close_times[0]:.2f} s"
    )
    print(
        f"  back on B: {len(back)}/{clients}, first {back[0]:.2f} s, "
        f"median {statistics.median(back):.2f} s, last {back[-1]:.2f} s after SIGTERM"
    )
    print(f"  peak arrivals on B: {max(windows.values())} in 100 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument(
        "--drain-seconds", type=float, default=None, help="passed to node A (omit on old trees)"
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= 2000:
        parser.error("--clients must be from 1 to 2000")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(run(args.clients, args.drain_seconds))


if __name__ == "__main__":
    main()
