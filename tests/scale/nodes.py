"""Hub nodes for the multi-node tests: ``openline serve --redis`` as real processes.

A :class:`Node` is what an operator runs on each machine behind a load
balancer, started the same way (``python -m openline serve``) on a free port
of 127.0.0.1, with short heartbeats and a short presence TTL so that failures
show within a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from openline.asyncio.backoff import Backoff
from openline.hub import Client
from openline.hub.events import ClientEvent

from ..timing import MS as MS  # re-exported: the tests of this package import it from here

#: A bound for waits that should end quickly but mustn't hang the suite.
TIMEOUT = 20000 * MS

#: The nodes' WebSocket keepalive: a dead client is noticed within about a second.
PING_INTERVAL = 300 * MS
PING_TIMEOUT = 600 * MS
#: Seconds before a dead node's users leave presence.
PRESENCE_TTL = 1500 * MS
#: The clients' heartbeat.
HEARTBEAT_INTERVAL = 200 * MS
HEARTBEAT_TIMEOUT = 400 * MS

CLI = [sys.executable, "-m", "openline"]


def need_redis_package() -> None:
    """Skip (a failure in CI) without the ``redis`` package: the nodes need it."""
    pytest.importorskip("redis", reason="the redis package is not installed: openline[redis]")


def die_with_parent() -> None:
    """In a child process: get SIGKILL when the test process dies (Linux), no orphans."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


class Node:
    """One ``openline serve --redis URL`` process on 127.0.0.1.

    Args:
        redis_url: The Redis every node shares.
        args: More flags for ``openline serve``.
    """

    def __init__(self, redis_url: str, *args: str) -> None:
        self.redis_url = redis_url
        self.args = list(args)
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._drains: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        """The hub endpoint, ``ws://127.0.0.1:PORT/ws``."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the process (again, on the same port once it has one); wait for its URL."""
        self.stdout.clear()  # a restarted node's output starts over
        self.stderr.clear()
        command = [*CLI, "serve", "--redis", self.redis_url, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--no-ticker", "--rate-limit", "off"]
        command += ["--ping-interval", str(PING_INTERVAL), "--ping-timeout", str(PING_TIMEOUT)]
        command += ["--presence-ttl", str(PRESENCE_TTL), *self.args]
        self.process = process = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent
        )
        assert process.stdout is not None and process.stderr is not None
        # Read both pipes to their end from the start, so that their transports close.
        self._drains.append(asyncio.ensure_future(self._drain(process.stdout, self.stdout)))
        self._drains.append(asyncio.ensure_future(self._drain(process.stderr, self.stderr)))
        deadline = time.monotonic() + TIMEOUT
        while (match := re.search(rb"ws://127\.0\.0\.1:(\d+)/ws", self.stdout)) is None:
            if process.returncode is not None:
                raise AssertionError(f"the node exited with {process.returncode}: {self.log()}")
            assert time.monotonic() < deadline, f"the node didn't start: {self.log()}"
            await asyncio.sleep(10 * MS)
        self.port = int(match.group(1))

    def kill(self) -> None:
        """Kill the node at once (SIGKILL): no close frames, no presence cleanup."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def stop(self) -> int:
        """Stop the node as an operator would (SIGINT); return its exit status."""
        process = self.process
        if process is None:
            return 0
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), TIMEOUT)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self._drains:  # the pipes end with the process
            await asyncio.wait(self._drains, timeout=TIMEOUT)
        for task in self._drains:
            task.cancel()
        self._drains.clear()
        assert process.returncode is not None
        return process.returncode

    async def terminate(self) -> tuple[int, float]:
        """Stop the node as an orchestrator would (SIGTERM: it drains).

        Returns:
            Its exit status and the seconds it took to exit.
        """
        process = self.process
        assert process is not None and process.returncode is None
        start = time.monotonic()
        process.terminate()
        await asyncio.wait_for(process.wait(), TIMEOUT)
        elapsed = time.monotonic() - start
        await asyncio.wait(self._drains, timeout=TIMEOUT)  # the pipes end with the process
        self._drains.clear()
        return process.returncode, elapsed

    async def ready(self) -> int:
        """``GET /readyz``: the status."""

        def fetch() -> int:
            try:
                with urllib.request.urlopen(self.http + "/readyz", timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code

        return await asyncio.to_thread(fetch)

    def log(self) -> str:
        """What the node wrote on stderr (its end)."""
        return self.stderr[-3000:].decode(errors="replace")

    async def health(self) -> tuple[int, dict[str, Any]]:
        """``GET /healthz``: the status and the JSON body."""

        def fetch() -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=5) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                with exc:
                    return exc.code, json.loads(exc.read())

        return await asyncio.to_thread(fetch)

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into += chunk
            if len(into) > 1 << 20:  # a node that logs in a loop: keep the end
                del into[: -(1 << 16)]


@contextlib.asynccontextmanager
async def running_nodes(redis_url: str, count: int, *args: str) -> AsyncIterator[list[Node]]:
    """Start ``count`` nodes sharing ``redis_url``; stop (or reap) them all after."""
    nodes = [Node(redis_url, *args) for _ in range(count)]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        yield nodes
    finally:
        await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)


def hub_client(
    urls: str | Sequence[str],
    token: str | None = None,
    on_event: Callable[[ClientEvent], None] | None = None,
    **kwargs: Any,
) -> Client:
    """A resilient client with short heartbeats and a short backoff."""
    kwargs.setdefault("backoff", Backoff(10 * MS, 100 * MS))
    return Client(
        urls,
        token=token,
        reset_after=None,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        on_event=on_event,
        max_buffer=None,
        **kwargs,
    )


async def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> float:
    """Poll ``predicate`` until it holds; return how long it took.

    Raises:
        AssertionError: It didn't hold within ``timeout`` seconds.
    """
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout:.1f} s")
        await asyncio.sleep(10 * MS)
    return time.monotonic() - start


def bounded(seconds: float) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Any]]:
    """Fail a test that runs longer than ``seconds``, rather than hang the suite."""

    def decorate(test: Callable[..., Awaitable[None]]) -> Callable[..., Any]:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            try:
                await asyncio.wait_for(test(*args, **kwargs), seconds)
            except asyncio.TimeoutError:
                raise AssertionError(f"{test.__name__} took more than {seconds:.0f} s") from None

        return run

    return decorate
