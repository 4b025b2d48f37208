"""Chat from the terminal: lines you type are published; everyone's messages are printed."""

import asyncio
import contextlib
import sys

from openline.hub import Client, Gap, Publication


def explain(gap: Gap) -> str:
    """Say what a gap means: history lost in a restart, or too old to recover."""
    if gap.since is None or gap.since[0] != gap.epoch:
        return "(the hub restarted without its history: the last messages may be missing)"
    return f"({gap.first - 1 - gap.since[1]} messages were too old to recover)"


async def main(name: str, uri: str) -> None:
    async with Client(uri) as client:
        room = await client.subscribe("lobby")

        async def show() -> None:
            async for item in room:  # resumes by offset after every redial
                if isinstance(item, Publication):
                    print(f"{item.data['from']}: {item.data['text']}", flush=True)
                elif isinstance(item, Gap):  # never silent
                    print(explain(item), flush=True)

        printer = asyncio.ensure_future(show())
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            await client.publish("lobby", {"from": name, "text": line.strip()})  # queued offline
        printer.cancel()


args = sys.argv[1:] + ["anonymous", "ws://127.0.0.1:8766/"][len(sys.argv) - 1 :]
with contextlib.suppress(KeyboardInterrupt):
    asyncio.run(main(args[0], args[1]))
