"""``openline serve --api-key`` / ``OPENLINE_API_KEY``: the server API of a real server process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest

from openline.api import APIClient, APIError

CLI = [sys.executable, "-m", "openline"]
TIMEOUT = 30


async def start(
    *args: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        "0",
        "--no-ticker",
        *args,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, line
    return proc, match.group(0)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0


@pytest.mark.parametrize("source", ["flag", "env"])
async def test_serve_with_an_api_key_answers_the_server_api(source: str) -> None:
    key = "a-key-from-the-" + source
    if source == "flag":
        proc, url = await start("--api-key", key)
    else:
        proc, url = await start(env={"OPENLINE_API_KEY": key})
    try:
        client = APIClient(url, key)
        first = await asyncio.to_thread(client.publish, "news", {"n": 1}, id="n1")
        again = await asyncio.to_thread(client.publish, "news", {"n": 1}, id="n1")
        assert (first.offset, again.offset, again.duplicate) == (1, 1, True)
        history = await asyncio.to_thread(client.call, "history", ch="news")
        assert [m["data"] for m in history["messages"]] == [{"n": 1}]
        with pytest.raises(APIError) as caught:
            await asyncio.to_thread(APIClient(url, "wrong", retries=0).publish, "news", 1)
        assert caught.value.status == 401
    finally:
        await stop(proc)


async def test_serve_without_a_key_has_no_api() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENLINE_API_KEY"}
    proc, url = await start(env=env)
    try:
        with pytest.raises(APIError) as caught:
            await asyncio.to_thread(APIClient(url, "any", retries=0).publish, "news", 1)
        assert caught.value.status == 404
    finally:
        await stop(proc)


def test_serve_help_shows_the_api_key_and_echo_refuses_it() -> None:
    help_text = subprocess.run(
        [*CLI, "serve", "--help"], capture_output=True, text=True, timeout=TIMEOUT
    ).stdout
    assert "--api-key" in help_text and "OPENLINE_API_KEY" in help_text
    echo = subprocess.run(
        [*CLI, "serve", "--echo", "--api-key", "k"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert echo.returncode == 2 and "--api-key" in echo.stderr
