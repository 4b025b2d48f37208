"""``openline serve --workers N``: SIGTERM to the supervisor drains every worker, then exit 0."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import pytest

import openline
from openline.asyncio.drain import parse_retry_hint
from openline.exceptions import ConnectionClosed

from ..redis_server import RedisServer
from .nodes import CLI, TIMEOUT, bounded, die_with_parent, need_redis_package

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")

CLIENTS = 6


@bounded(40)
async def test_sigterm_to_the_supervisor_drains_every_worker(redis_server: RedisServer) -> None:
    need_redis_package()
    process = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--redis", redis_server.url, "--port", "0", "--workers", "2",
        "--no-ticker", "--drain-seconds", "0.6",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        out = ""
        while "workers" not in out:
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
            assert line, f"the supervisor exited: {out}"
            out += line.decode()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", out)
        assert match, out
        clients = [
            await openline.connect(match.group(0), subprotocols=["openline.v1"])
            for _ in range(CLIENTS)
        ]
        process.send_signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            codes.append((info.value.code, parse_retry_hint(info.value.reason)))
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    err = (await process.stderr.read()).decode()
    drained = [int(n) for n in re.findall(r"drained (\d+) connections", err)]
    print(f"\nclose codes and hints: {codes}; workers drained {drained}")
    assert all(code == 1012 and hint is not None for code, hint in codes)
    assert len(drained) == 2 and sum(drained) == CLIENTS, err
