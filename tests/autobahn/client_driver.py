"""openline's client under Autobahn|Testsuite's fuzzingserver: echo every case.

Usage: ``python tests/autobahn/client_driver.py --url ws://127.0.0.1:PORT``
(run.py fills in the URL). Exits non-zero only if the driver itself breaks:
how each case went is judged by wstest's report, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import openline
from openline.exceptions import OpenlineError

AGENT = "openline"
MAX_SIZE = 2**25  # section 9 sends messages of up to 16 MiB


async def case_count(url: str) -> int:
    async with openline.connect(f"{url}/getCaseCount") as ws:
        return int(await ws.recv())


async def run_case(url: str, case: int) -> None:
    uri = f"{url}/runCase?case={case}&agent={AGENT}"
    with contextlib.suppress(OpenlineError, OSError):
        async with openline.connect(uri, max_size=MAX_SIZE, ping_interval=None) as ws:
            async for message in ws:
                await ws.send(message)


async def main(url: str) -> int:
    count = await case_count(url)
    for case in range(1, count + 1):
        await asyncio.wait_for(run_case(url, case), timeout=120)
    async with openline.connect(f"{url}/updateReports?agent={AGENT}") as ws:
        with contextlib.suppress(OpenlineError):
            await ws.recv()
    print(f"ran {count} cases")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    sys.exit(asyncio.run(main(parser.parse_args().url)))
