"""What the ASGI tests share: a fast hub client, an event recorder, a raw handshake."""

from __future__ import annotations

import asyncio
import random
from collections.abc import MutableMapping
from typing import Any

import pytest

from openline.asyncio.backoff import Backoff
from openline.asyncio.client import connect
from openline.exceptions import InvalidStatus
from openline.hub import Client
from openline.hub.asgi import ASGIApp
from openline.hub.client import Subscription
from openline.hub.events import ClientEvent, Item, Publication
from tests.hub.helpers import MS, TIMEOUT

FAST: dict[str, Any] = dict(
    heartbeat_interval=200 * MS,
    heartbeat_timeout=400 * MS,
    reset_after=None,
)


def hub_client(uri: str, **kwargs: Any) -> Client:
    options: dict[str, Any] = {**FAST, "backoff": Backoff(5 * MS, 50 * MS, rng=random.Random(0))}
    options.update(kwargs)
    return Client(uri, **options)


async def next_publication(sub: Subscription) -> Publication:
    item: Item = await asyncio.wait_for(sub.get(), TIMEOUT)
    assert isinstance(item, Publication), item
    return item


class Recorder:
    """Collects a client's events; a test waits for one of a kind."""

    def __init__(self) -> None:
        self.events: list[ClientEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ClientEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait(self, kind: type, count: int = 1) -> Any:
        async def poll() -> Any:
            while len(self.of(kind)) < count:
                self._changed.clear()
                await self._changed.wait()
            return self.of(kind)[count - 1]

        return await asyncio.wait_for(poll(), TIMEOUT)


async def refused_status(uri: str, **kwargs: Any) -> int:
    """Open a handshake that the server must refuse; return the HTTP status it answered."""
    kwargs.setdefault("subprotocols", ["openline.v1"])
    with pytest.raises(InvalidStatus) as caught:
        async with connect(uri, open_timeout=TIMEOUT, **kwargs):
            pass
    return caught.value.status


class WithoutHttpResponse:
    """Middleware: hides the ``websocket.http.response`` extension, records what the app sends.

    It stands for the servers that don't offer the extension: the app must then
    refuse with ``websocket.close`` before accepting, which the server turns into 403.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sent: list[MutableMapping[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            extensions = dict(scope.get("extensions") or {})
            extensions.pop("websocket.http.response", None)
            scope = {**scope, "extensions": extensions}

        async def recording_send(message: MutableMapping[str, Any]) -> None:
            self.sent.append(message)
            await send(message)

        await self.app(scope, receive, recording_send)
