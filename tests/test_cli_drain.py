"""``openline serve`` drains on SIGTERM: 1012 with a retry hint over --drain-seconds, exit 0."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import pytest

import openline
from openline.asyncio.drain import parse_retry_hint
from openline.exceptions import ConnectionClosed

CLI = [sys.executable, "-m", "openline"]
TIMEOUT = 30
CLIENTS = 4


async def test_sigterm_drains_every_connection_with_1012_and_a_hint_then_exits_0() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", "0", "--no-ticker", "--drain-seconds", "0.8",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        uri = f"ws://127.0.0.1:{match.group(1)}/ws"
        clients = [
            await openline.connect(uri, subprotocols=["openline.v1"]) for _ in range(CLIENTS)
        ]
        for ws in clients:
            await ws.recv()  # the welcome

        async def closed(ws: openline.ClientConnection) -> tuple[float, int, str]:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            return time.monotonic(), info.value.code, info.value.reason

        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*(closed(ws) for ws in clients))
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        exited = time.monotonic() - start
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    times = sorted(at - start for at, _, _ in results)
    print(f"\nclosed at {[f'{t:.2f}' for t in times]} s; exited after {exited:.2f} s; {err!r}")
    assert {code for _, code, _ in results} == {1012}
    assert all(parse_retry_hint(reason) is not None for _, _, reason in results)
    assert f"drained {CLIENTS} connections" in err


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "4000", "soon"])
def test_a_bad_drain_seconds_prints_one_line(value: str) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--port", "0", "--drain-seconds", value],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--drain-seconds" in lines[0], result.stderr


def test_serve_help_shows_the_drain_flags() -> None:
    result = subprocess.run(
        [*CLI, "serve", "--help"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert "--drain-seconds" in result.stdout and "--drain-linger" in result.stdout
