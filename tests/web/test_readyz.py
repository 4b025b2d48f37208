"""``/readyz``: 200 while ready, 503 while draining or while the engine is degraded."""

from __future__ import annotations

import asyncio
from typing import Any

from openline.hub import MemoryEngine
from openline.web import create_app

from .helpers import request

#: Long enough that the drain's linger outlasts the test's requests.
LINGER = 30.0


class _ReportingEngine(MemoryEngine):
    """A memory engine whose health report the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] = {"engine": "fake", "status": "ok"}

    def health(self) -> dict[str, Any]:
        return dict(self.report)


async def test_readyz_is_200_then_503_while_the_server_drains() -> None:
    app = create_app(ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        reply = await request(port, "/readyz")
        assert (reply.status, reply.json()) == (200, {"status": "ready"})
        drain = asyncio.ensure_future(server.drain(0, linger=LINGER))
        await asyncio.sleep(0)
        reply = await request(port, "/readyz")
        assert (reply.status, reply.json()) == (503, {"status": "draining"})
        head = await request(port, "/readyz", method="HEAD")
        assert head.status == 503 and head.body == b""
        # Liveness stays fine: the process works, it just wants no new clients.
        assert (await request(port, "/healthz")).status == 200
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)


async def test_readyz_is_503_while_the_engine_is_degraded() -> None:
    engine = _ReportingEngine()
    app = create_app(engine=engine, ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        engine.report = {"engine": "fake", "status": "degraded"}
        reply = await request(port, "/readyz")
        assert (reply.status, reply.json()) == (503, {"status": "degraded"})
        engine.report = {"engine": "fake", "status": "ok"}
        assert (await request(port, "/readyz")).status == 200


async def test_readyz_refuses_other_methods() -> None:
    app = create_app(ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        reply = await request(server.sockets[0].getsockname()[1], "/readyz", method="POST")
    assert reply.status == 405
