"""An echo server: every message a client sends comes back to it."""

import asyncio
import contextlib
import sys

from openline import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:  # ends when the client closes
        await ws.send(message)  # str goes back as text, bytes as binary


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port) as server:
        print(f"echo server on ws://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)
        await server.serve_forever()


with contextlib.suppress(KeyboardInterrupt):
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8767))
