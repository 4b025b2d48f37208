"""The fast path: uvicorn with openline's WebSocket engine hands the hub its ServerConnection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from openline.asyncio.server import ServerConnection
from openline.hub import Credentials, Hub, Identity
from openline.hub.asgi import CONNECTION_EXTENSION, ASGIApp

from .conftest import OPENLINE_ENGINE, serving
from .helpers import hub_client, next_publication, refused_status

# The engine lives in openline.uvicorn (issue 12, part 2).
pytest.importorskip("openline.uvicorn")


class ClaimWatcher:
    """Middleware: records what the app's claim() of the scope extension returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.offered = 0
        self.claimed: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        extension = (scope.get("extensions") or {}).get(CONNECTION_EXTENSION)
        if scope["type"] == "websocket" and extension is not None:
            self.offered += 1
            claim: Callable[[], Any] = extension["claim"]

            def watched_claim() -> Any:
                connection = claim()
                self.claimed.append(connection)
                return connection

            extensions = {**scope["extensions"], CONNECTION_EXTENSION: {"claim": watched_claim}}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


def authenticate(credentials: Credentials) -> Identity | None:
    return Identity("ann") if credentials.token == "good" else None


async def test_the_hub_serves_the_claimed_connection() -> None:
    hub = Hub(authenticate=authenticate)
    app = ClaimWatcher(hub.asgi())
    async with serving(OPENLINE_ENGINE, app) as server:
        assert await refused_status(server.url("/")) == 401
        async with (
            hub_client(server.url("/"), token="good") as one,
            hub_client(server.url("/"), token="good") as two,
        ):
            subs = [await one.subscribe("room"), await two.subscribe("room")]
            ack = await one.publish("room", "hi")
            for sub in subs:
                publication = await next_publication(sub)
                assert (publication.data, publication.offset, publication.user) == ("hi", 1, "ann")
            assert ack.offset == 1
    # Refused before accept: nothing to claim; the two clients were claimed.
    assert app.offered == 3
    assert len(app.claimed) == 2
    assert all(isinstance(connection, ServerConnection) for connection in app.claimed)
    # What the hub says about it, without a watcher: both went the fast path.
    assert hub.stats.asgi_paths == {"fast": 2}
    assert hub.metrics()["asgi_paths.fast"] == 2
