"""A chat hub: every channel keeps its last 1000 messages for clients that reconnect."""

import asyncio
import contextlib
import sys

from openline.hub import Hub


async def main(port: int) -> None:
    async with Hub().serve("127.0.0.1", port) as server:
        print(f"chat hub on ws://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)
        await server.serve_forever()


with contextlib.suppress(KeyboardInterrupt):
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8766))
