"""Measure what an idle connection costs in Python memory, each side in its own process.

Usage: ``python bench/idle_memory.py [--connections N] [--loop asyncio|uvloop]
[--no-compression]``. The server process starts a child process that opens the
client connections; each process measures its own allocations with tracemalloc
(so memory outside Python's allocators, such as the kernel's socket buffers, is
not counted) and prints bytes per connection with the biggest contributors.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from openline import ClientConnection, ServerConnection, connect, serve


def report(side: str, before: Any, after: Any, count: int, out: TextIO) -> None:
    stats = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in stats)
    print(f"{side}: {total / count:.0f} bytes per idle connection", file=out)
    for stat in sorted(stats, key=lambda stat: -stat.size_diff)[:8]:
        if stat.size_diff / count >= 16:
            print(f"  {stat.size_diff / count:7.0f} B  {stat.traceback}", file=out)


async def handler(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def server_side(args: argparse.Namespace) -> None:
    tracemalloc.start()
    async with serve(handler, "127.0.0.1", 0, compression=args.compression) as server:
        port = server.sockets[0].getsockname()[1]
        gc.collect()
        before = tracemalloc.take_snapshot()
        command = [sys.executable, __file__, *sys.argv[1:], "--clients-of", str(port)]
        child = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert child.stdin is not None and child.stdout is not None
        await child.stdout.readline()  # the clients are connected
        while len(server.connections) < args.connections:
            await asyncio.sleep(0.01)
        gc.collect()
        after = tracemalloc.take_snapshot()
        report(f"server ({args.loop})", before, after, args.connections, sys.stdout)
        child.stdin.write(b"done\n")
        await child.stdin.drain()
        await child.wait()


async def client_side(args: argparse.Namespace) -> None:
    tracemalloc.start()
    uri = f"ws://127.0.0.1:{args.clients_of}/"
    gc.collect()
    before = tracemalloc.take_snapshot()
    clients: list[ClientConnection] = []
    for _ in range(args.connections):
        clients.append(await connect(uri, compression=args.compression))
    gc.collect()
    after = tracemalloc.take_snapshot()
    report(f"client ({args.loop})", before, after, args.connections, sys.stderr)
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for ws in clients:
        await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--no-compression", dest="compression", action="store_const", const=None)
    parser.add_argument("--clients-of", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(compression="deflate")
    args = parser.parse_args()
    side: Callable[[argparse.Namespace], Awaitable[None]]
    side = server_side if args.clients_of is None else client_side
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(side(args))
    else:
        asyncio.run(side(args))


if __name__ == "__main__":
    main()
