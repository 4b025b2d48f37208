"""Send a few messages to an echo server and print what comes back."""

import asyncio
import sys

from openline import connect


async def main(uri: str) -> None:
    async with connect(uri) as ws:  # closes with 1000 on the way out
        await ws.send("hello")
        print(await ws.recv())
        await ws.send(b"\x00\x01")
        print(await ws.recv())
        latency = await (await ws.ping())
        print(f"ping answered in {latency * 1000:.1f} ms")


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8767/"))
