"""What an idle openline connection costs, part by part: ``openline bench --breakdown``.

The ``idle-10k`` scenario measures the server's RSS growth, which says how
much but not where. Here both sides run openline with ``tracemalloc``: the
server in this process, the clients in a child process. Each side prints the
bytes per idle connection that Python allocated, by source file and by
source line. Memory outside Python's allocators (the kernel's socket buffers)
is not counted; uvloop allocates through them, and its part shows up under the
line that runs the event loop.

The server side runs twice: with keepalive on (the default) and off (as in
``openline bench``, where no server sends pings).
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import tracemalloc
from typing import Any, Literal, TextIO

__all__ = ["report", "run"]

#: Lines shown per grouping, and the smallest share worth a line.
_TOP = 10
_MIN_BYTES = 16


def report(
    side: str, before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int, out: TextIO
) -> float:
    """Print what was allocated between two snapshots, per connection; return the total."""
    by_file = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in by_file) / count
    print(f"{side}: {total:.0f} bytes of Python memory per idle connection", file=out)
    for title, stats in (("by file", by_file), ("by line", after.compare_to(before, "lineno"))):
        print(f"  {title}:", file=out)
        for stat in sorted(stats, key=lambda stat: -stat.size_diff)[:_TOP]:
            share = stat.size_diff / count
            if share >= _MIN_BYTES:
                print(f"    {share:7.0f} B  {stat.traceback}", file=out)
    return total


async def _handler(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _server_side(
    connections: int, compression: Literal["deflate"] | None, keepalive: bool, out: TextIO
) -> float:
    from .. import serve
    from ..asyncio.config import DEFAULT_PING_INTERVAL

    tracemalloc.start()
    interval = DEFAULT_PING_INTERVAL if keepalive else None
    async with serve(
        _handler, "127.0.0.1", 0, compression=compression, ping_interval=interval
    ) as server:
        port = server.sockets[0].getsockname()[1]
        gc.collect()
        before = tracemalloc.take_snapshot()
        config = {"port": port, "connections": connections, "compression": compression}
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "openline.bench.breakdown",
            json.dumps(config),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            await asyncio.wait_for(child.stdout.readline(), 120)  # the clients are connected
            while len(server.connections) < connections:
                await asyncio.sleep(0.01)
            gc.collect()
            after = tracemalloc.take_snapshot()
            side = f"server, keepalive {'on' if keepalive else 'off'}"
            total = report(side, before, after, connections, out)
            child.stdin.write(b"done\n")
            await child.stdin.drain()
            await asyncio.wait_for(child.wait(), 60)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    tracemalloc.stop()
    return total


async def _client_side(config: dict[str, Any]) -> None:
    from .. import ClientConnection, connect

    tracemalloc.start()
    uri = f"ws://127.0.0.1:{config['port']}/"
    gc.collect()
    before = tracemalloc.take_snapshot()
    clients: list[ClientConnection] = []
    for _ in range(config["connections"]):
        clients.append(await connect(uri, compression=config["compression"]))
    gc.collect()
    after = tracemalloc.take_snapshot()
    report("client", before, after, config["connections"], sys.stderr)
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for ws in clients:
        await ws.close()


def run(
    connections: int, *, compression: Literal["deflate"] | None, out: TextIO = sys.stdout
) -> float:
    """Open ``connections`` idle connections on uvloop; print both sides' breakdowns.

    Returns:
        The server's Python memory per connection with keepalive on (the
        default), in bytes.
    """
    from .system import raise_open_files_limit

    raise_open_files_limit(connections + 256)
    import uvloop

    total = uvloop.run(_server_side(connections, compression, True, out))
    uvloop.run(_server_side(connections, compression, False, out))
    return total


def main(argv: list[str]) -> None:
    """The client process: ``python -m openline.bench.breakdown '{json}'``."""
    from .system import die_with_parent, raise_open_files_limit

    config = json.loads(argv[0])
    die_with_parent()
    raise_open_files_limit(config["connections"] + 256)
    import uvloop

    uvloop.run(_client_side(config))


if __name__ == "__main__":
    main(sys.argv[1:])
