"""Helpers for the hub tests: a hub on 127.0.0.1, and a raw JSON client.

:class:`HubClient` speaks ``openline.v1`` by hand over ``openline.connect``: it
sends the JSON a test gives it and returns what the hub sends, so that the tests
check the wire protocol itself, not a client library's view of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from openline.asyncio.client import ClientConnection, connect
from openline.asyncio.server import Server
from openline.hub import Hub
from openline.hub.backends.base import Engine

from ..timing import MS as MS  # re-exported: the tests of this package import it from here

#: A bound for waits that should end quickly but mustn't hang the suite.
TIMEOUT = 5000 * MS

Json = dict[str, Any]


class HubClient:
    """A hub connection driven by the test, one JSON message at a time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: Json = {}

    async def send(self, **fields: Any) -> None:
        """Send one JSON object."""
        await self.ws.send(json.dumps(fields))

    async def send_raw(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def recv(self, timeout: float = TIMEOUT) -> Json:
        """Receive the next message, parsed."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
        message = json.loads(raw)
        assert isinstance(message, dict)
        return message

    async def expect(self, kind: str, **fields: Any) -> Json:
        """Receive the next message and check its type and fields."""
        message = await self.recv()
        assert message["type"] == kind, f"expected {kind}, got {message}"
        for key, value in fields.items():
            assert message.get(key) == value, f"{key}: expected {value!r} in {message}"
        return message

    async def expect_error(self, code: str, **fields: Any) -> Json:
        return await self.expect("error", code=code, **fields)

    async def recv_until(self, kind: str) -> tuple[Json, list[Json]]:
        """Receive until a message of type ``kind``; return it and those before it."""
        before: list[Json] = []
        while True:
            message = await self.recv()
            if message["type"] == kind:
                return message, before
            before.append(message)

    async def silent(self, duration: float = 50 * MS) -> None:
        """Check that nothing arrives for ``duration`` seconds."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), duration)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected nothing, got {message!r}")

    async def subscribe(
        self, ch: str, *, since: Json | None = None, presence: bool = False, **fields: Any
    ) -> Json:
        """Subscribe and return the ``subscribed`` reply (after a ``gap``, if any)."""
        request: Json = {"type": "subscribe", "ch": ch, **fields}
        if since is not None:
            request["since"] = since
        if presence:
            request["presence"] = True
        await self.send(**request)
        reply, before = await self.recv_until("subscribed")
        assert all(m["type"] == "gap" for m in before), before
        return reply

    async def publish(self, ch: str, data: Any, **fields: Any) -> Json:
        """Publish and return the ``ack``, skipping the echo of our own message."""
        await self.send(type="publish", ch=ch, data=data, **fields)
        ack, _ = await self.recv_until("ack")
        return ack

    async def messages(self, count: int) -> list[Json]:
        """Receive ``count`` messages of type ``message``; fail on anything else."""
        return [await self.expect("message") for _ in range(count)]

    def go_silent(self) -> None:
        """Vanish like a dead line: stop reading (so pings go unanswered), never close."""
        self.ws._transport.pause_reading()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (an RST)."""
        self.ws._transport.abort()

    async def close(self) -> None:
        if self.ws._lost:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 200 * MS)
        self.ws._transport.abort()


class RunningHub:
    """A hub serving on 127.0.0.1, and the clients a test opened to it."""

    def __init__(self, hub: Hub, server: Server) -> None:
        self.hub = hub
        self.server = server
        port = server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/"
        self.clients: list[HubClient] = []

    async def client(
        self, path: str = "/", *, subprotocols: list[str] | None = None, **kwargs: Any
    ) -> HubClient:
        """Connect a client and read the ``welcome``."""
        kwargs.setdefault("ping_interval", None)
        ws = await connect(
            self.url.rstrip("/") + path,
            subprotocols=["openline.v1"] if subprotocols is None else subprotocols,
            **kwargs,
        )
        client = HubClient(ws)
        self.clients.append(client)
        client.welcome = await client.expect("welcome")
        return client


@contextlib.asynccontextmanager
async def run_hub(
    engine: Engine, *, serve: dict[str, Any] | None = None, **hub_kwargs: Any
) -> AsyncIterator[RunningHub]:
    """Run a hub on an ephemeral port; close its clients, server and background tasks after."""
    hub = Hub(engine, **hub_kwargs)
    serve_kwargs = {"close_timeout": 500 * MS, **(serve or {})}
    async with hub.serve("127.0.0.1", 0, **serve_kwargs) as server:
        running = RunningHub(hub, server)
        try:
            yield running
        finally:
            for client in running.clients:
                await client.close()
    await hub.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; for state with no event to await."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(MS)

    await asyncio.wait_for(poll(), timeout)
