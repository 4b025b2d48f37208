"""``async for ws in connect(...)``: redialling a real server that stops and starts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from openline.asyncio.backoff import Backoff, Classifier
from openline.asyncio.client import ClientConnection, connect
from openline.asyncio.server import Server, ServerConnection, serve
from openline.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from openline.protocol.http11 import Headers, Request, Response

from .helpers import MS, TIMEOUT, echo, raw_server

#: Delays short enough for tests, still exercising the backoff.
FAST = Backoff(5 * MS, 20 * MS, rng=random.Random(1))


class Restartable:
    """A server on 127.0.0.1 that a test stops and starts again on the same port.

    ``dials`` counts upgrade requests; ``refuse`` answers them with an HTTP
    status instead of upgrading.
    """

    def __init__(self, handler: Callable[[ServerConnection], Awaitable[None]] = echo) -> None:
        self.handler = handler
        self.port = 0
        self.server: Server | None = None
        self.dials = 0
        self.refuse: Response | None = None
        self.dialled = asyncio.Event()

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.dials += 1
        self.dialled.set()
        return self.refuse

    async def start(self) -> None:
        self.server = await serve(
            self.handler, "127.0.0.1", self.port, process_request=self._process_request
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self, code: int = 1001) -> None:
        assert self.server is not None
        self.server.close(code)
        await self.server.wait_closed()
        self.server = None

    async def __aenter__(self) -> Restartable:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.server is not None:
            await self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def take(iterator: AsyncIterator[ClientConnection]) -> ClientConnection:
    return await asyncio.wait_for(iterator.__anext__(), TIMEOUT)


async def drained(ws: ClientConnection) -> None:
    """Read until the connection closes (which answers the server's close), then wait for TCP."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)


async def closes_with(code: int, reason: str = "") -> Callable[[ServerConnection], Awaitable[None]]:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(code, reason)

    return handler


# --- redialling -------------------------------------------------------------------------


async def test_async_for_redials_after_the_server_restarts() -> None:
    async with Restartable() as server:
        loop = connect(server.uri, backoff=FAST).__aiter__()
        ws = await take(loop)
        await ws.send("one")
        assert await ws.recv() == "one"
        stopping = asyncio.ensure_future(server.stop(1012))  # service restart
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.code == 1012
        await stopping
        await server.start()
        ws = await take(loop)
        await ws.send("two")
        assert await ws.recv() == "two"
        assert server.dials == 2
        await ws.close()


def test_the_redial_iterator_is_its_own_iterator() -> None:
    iterator = connect("ws://localhost/").__aiter__()
    assert iterator.__aiter__() is iterator


async def test_async_for_keeps_dialling_until_the_server_comes_up() -> None:
    server = Restartable()
    server.port = free_port()
    refusals: list[Exception] = []
    several = asyncio.Event()
    classifier = Classifier()

    def classify(exc: Exception) -> float | None:
        refusals.append(exc)
        if len(refusals) == 3:
            several.set()
        return classifier(exc)

    loop = connect(server.uri, backoff=itertools.repeat(10 * MS), classify=classify).__aiter__()
    pending = asyncio.ensure_future(loop.__anext__())
    await asyncio.wait_for(several.wait(), TIMEOUT)  # several refused dials
    assert all(isinstance(exc, OSError) for exc in refusals)
    assert not pending.done()
    async with server:
        ws = await asyncio.wait_for(pending, TIMEOUT)
        await ws.send("up")
        assert await ws.recv() == "up"
        await ws.close()


async def test_async_for_in_a_plain_loop_survives_restarts() -> None:
    async with Restartable() as server:
        received: list[str | bytes] = []
        async for ws in connect(server.uri, backoff=FAST):
            try:
                await ws.send(f"round {len(received)}")
                received.append(await ws.recv())
                if len(received) == 3:
                    await ws.close()
                    break
                stopping = asyncio.ensure_future(server.stop(1001))
                try:
                    await ws.recv()
                finally:
                    await stopping
                    await server.start()
            except ConnectionClosed:
                continue
        assert received == ["round 0", "round 1", "round 2"]


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013])
async def test_async_for_redials_after_a_close_code_worth_it(code: int) -> None:
    async with Restartable(await closes_with(code)) as server:
        loop = connect(server.uri, backoff=FAST).__aiter__()
        for _ in range(3):
            ws = await take(loop)
            await drained(ws)
            assert ws.close_code == code
        assert server.dials == 3


@pytest.mark.parametrize("code", [1002, 1003, 1008, 4001])
async def test_async_for_raises_after_a_close_code_not_worth_it(code: int) -> None:
    async with Restartable(await closes_with(code, "go away")) as server:
        loop = connect(server.uri, backoff=FAST).__aiter__()
        ws = await take(loop)
        await drained(ws)
        with pytest.raises(ConnectionClosedError) as info:
            await take(loop)
        assert info.value.code == code
        assert info.value.reason == "go away"
        assert server.dials == 1


async def test_async_for_body_that_catches_1008_stops_the_loop() -> None:
    async with Restartable(await closes_with(1008, "policy")) as server:
        bodies = 0
        with pytest.raises(ConnectionClosedError, match="1008"):
            async for ws in connect(server.uri, backoff=FAST):
                bodies += 1
                try:
                    await ws.recv()
                except ConnectionClosed:
                    continue
        assert bodies == 1


async def test_async_for_redials_after_a_dead_line() -> None:
    async with raw_server() as (uri, peers):
        loop = connect(
            uri, backoff=FAST, ping_interval=20 * MS, ping_timeout=20 * MS, close_timeout=20 * MS
        ).__aiter__()
        ws = await take(loop)
        peer = await asyncio.wait_for(peers.get(), TIMEOUT)  # never answers pings, nor a close
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1006
        second = await take(loop)
        assert second is not ws
        await second.close()  # the raw peer won't answer: aborted after close_timeout
        await peer.close()


async def test_async_for_closes_a_connection_the_body_left_open() -> None:
    async with Restartable() as server:
        loop = connect(server.uri, backoff=FAST).__aiter__()
        first = await take(loop)
        second = await take(loop)
        assert first.close_code == 1000
        await second.send("fresh")
        assert await second.recv() == "fresh"
        assert server.dials == 2
        await second.close()


async def test_break_leaves_the_connection_open_for_the_caller() -> None:
    async with Restartable() as server:
        async for ws in connect(server.uri):  # noqa: B007 - ws is used after the loop
            break
        await asyncio.sleep(0)
        await ws.send("still here")
        assert await ws.recv() == "still here"
        await ws.close()


# --- giving up --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_async_for_raises_a_refusal_at_once(status: int) -> None:
    async with Restartable() as server:
        server.refuse = Response.plain(status, "no")
        with pytest.raises(InvalidStatus) as info:
            async for _ in connect(server.uri, backoff=FAST):
                pytest.fail("no connection should open")
        assert info.value.status == status
        assert server.dials == 1


async def test_async_for_retries_503_and_honours_retry_after() -> None:
    async with Restartable() as server:
        server.refuse = Response.plain(503, "busy", Headers({"Retry-After": "3600"}))
        cap = 60 * MS
        loop = connect(
            server.uri, backoff=itertools.repeat(0.0), classify=Classifier(max_retry_after=cap)
        ).__aiter__()
        pending = asyncio.ensure_future(loop.__anext__())
        await asyncio.wait_for(server.dialled.wait(), TIMEOUT)
        start = asyncio.get_running_loop().time()
        server.refuse = None
        ws = await asyncio.wait_for(pending, TIMEOUT)
        # Backoff says 0 s; Retry-After (cut down to the cap) says wait.
        assert asyncio.get_running_loop().time() - start >= cap * 0.9
        assert server.dials == 2
        await ws.close()


async def test_async_for_gives_up_after_max_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openline.client")
    uri = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(OSError):
        async for _ in connect(uri, backoff=FAST, max_attempts=4):
            pytest.fail("no connection should open")
    retries = [r for r in caplog.records if "redialling in" in r.getMessage()]
    assert len(retries) == 3  # one INFO line per retry: 4 dials
    assert all(r.levelno == logging.INFO for r in retries)
    assert "(attempt 4)" in retries[-1].getMessage()


async def test_async_for_gives_up_when_the_backoff_runs_out() -> None:
    uri = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(OSError):
        async for _ in connect(uri, backoff=[0.0, 0.0]):
            pytest.fail("no connection should open")


async def test_short_connections_count_as_attempts_until_max_attempts() -> None:
    async with Restartable(await closes_with(1013)) as server:
        loop = connect(server.uri, backoff=FAST, max_attempts=3, reset_after=60.0).__aiter__()
        for _ in range(3):
            await drained(await take(loop))
        with pytest.raises(ConnectionClosedError) as info:
            await take(loop)
        assert info.value.code == 1013
        assert server.dials == 3


async def test_healthy_connections_restart_the_backoff() -> None:
    async with Restartable(await closes_with(1013)) as server:
        # reset_after=None: every open proves health, so max_attempts never runs out.
        loop = connect(server.uri, backoff=FAST, max_attempts=2, reset_after=None).__aiter__()
        for _ in range(5):
            await drained(await take(loop))
        assert server.dials == 5


async def test_logged_delays_follow_the_seeded_jitter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openline.client")
    uri = f"ws://127.0.0.1:{free_port()}/"
    with pytest.raises(OSError):
        async for _ in connect(
            uri, backoff=Backoff(MS, 8 * MS, rng=random.Random(99)), max_attempts=6
        ):
            pass
    expected = list(itertools.islice(Backoff(MS, 8 * MS, rng=random.Random(99)), 5))
    logged = [r.getMessage() for r in caplog.records if "redialling in" in r.getMessage()]
    assert len(logged) == 5
    for line, delay in zip(logged, expected, strict=True):
        assert f"redialling in {delay:.3f} s" in line
    assert all(line.startswith("connection failed: ") for line in logged)


# --- cancellation -----------------------------------------------------------------------


async def test_cancelling_during_the_backoff_propagates() -> None:
    uri = f"ws://127.0.0.1:{free_port()}/"
    loop = connect(uri, backoff=itertools.repeat(10.0)).__aiter__()
    task = asyncio.ensure_future(loop.__anext__())
    await asyncio.sleep(20 * MS)  # first dial refused; now sleeping 10 s
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_during_a_dial_propagates() -> None:
    silent: list[asyncio.StreamWriter] = []  # accepts, then never answers the upgrade
    request = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        request.set()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        loop = connect(f"ws://127.0.0.1:{port}/", backoff=FAST).__aiter__()
        task = asyncio.ensure_future(loop.__anext__())
        # The upgrade request is in: the dial waits for a response that never comes.
        await asyncio.wait_for(request.wait(), TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for writer in silent:
            writer.close()
            await writer.wait_closed()


# --- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"), [("max_attempts", 0), ("reset_after", -1.0), ("max_attempts", "3")]
)
def test_connect_validates_redial_arguments(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=argument):
        connect("ws://localhost/", **{argument: value})
