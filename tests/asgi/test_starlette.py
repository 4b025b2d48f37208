"""The hub app inside Starlette, and alone, under uvicorn and hypercorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute

from openline.hub import Credentials, Hub, Identity, Reject
from openline.hub.events import Ack

from .conftest import http_get, serving
from .helpers import WithoutHttpResponse, hub_client, next_publication, refused_status


def starlette_app(hub: Hub, **asgi_options: Any) -> tuple[Starlette, list[str]]:
    """An app with a page, the hub at /ws, and its own lifespan around the hub's."""
    steps: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        steps.append("app started")
        async with hub.running():
            steps.append("hub running")
            yield
        steps.append("hub stopped")

    async def home(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse("home")

    routes = [Route("/", home), WebSocketRoute("/ws", hub.asgi(**asgi_options))]
    return Starlette(routes=routes, lifespan=lifespan), steps


async def test_client_subscribes_publishes_and_gets_acks(server_kind: str) -> None:
    hub = Hub()
    app, steps = starlette_app(hub)
    async with serving(server_kind, app) as server:
        async with hub_client(server.url("/ws")) as client:
            sub = await client.subscribe("room")
            ack = await client.publish("room", {"text": "hi"})
            assert isinstance(ack, Ack)
            assert (ack.ch, ack.offset, ack.duplicate) == ("room", 1, False)
            await hub.publish("room", "from the server")
            first = await next_publication(sub)
            second = await next_publication(sub)
            assert (first.data, first.offset, first.id) == ({"text": "hi"}, 1, ack.id)
            assert (second.data, second.offset) == ("from the server", 2)
        status, _, body = await http_get(server.port, "/")
        assert (status, body) == (200, b"home")
        assert hub.is_running
    # The app's own lifespan ran around the hub's, and ended it.
    assert steps == ["app started", "hub running", "hub stopped"]
    assert not hub.is_running


async def test_a_broadcast_reaches_every_subscriber_in_order(server_kind: str) -> None:
    hub = Hub()
    app, _ = starlette_app(hub)
    async with (
        serving(server_kind, app) as server,
        hub_client(server.url("/ws")) as one,
        hub_client(server.url("/ws")) as two,
    ):
        subs = [await one.subscribe("news"), await two.subscribe("news")]
        for n in range(50):
            await hub.publish("news", n)
        for sub in subs:
            assert [(await next_publication(sub)).data for _ in range(50)] == list(range(50))


async def test_the_hub_app_alone_runs_its_own_lifespan(server_kind: str) -> None:
    hub = Hub()
    async with serving(server_kind, hub.asgi()) as server:
        async with hub_client(server.url("/")) as client:
            await client.subscribe("room")
            ack = await client.publish("room", "hello")
            assert ack.offset == 1
        assert hub.is_running
    assert not hub.is_running


async def test_plain_http_gets_426(server_kind: str) -> None:
    hub = Hub()
    async with serving(server_kind, hub.asgi()) as server:
        status, headers, body = await http_get(server.port, "/")
    assert status == 426
    assert headers["upgrade"] == ["websocket"]
    assert body == (
        b"this is an openline hub: connect with WebSocket and the openline.v1 subprotocol\n"
    )


def authenticate(credentials: Credentials) -> Identity | None:
    if credentials.token == "good":
        return Identity("ann")
    if credentials.token == "banned":
        raise Reject(403, "banned")
    return None


async def test_refusals_are_http_responses_where_the_server_supports_them(
    server_kind: str,
) -> None:
    hub = Hub(authenticate=authenticate)
    app, _ = starlette_app(hub)
    async with serving(server_kind, app) as server:
        uri = server.url("/ws")
        assert await refused_status(uri, subprotocols=["chat"]) == 400
        assert await refused_status(uri, origin="https://evil.example") == 403
        assert await refused_status(uri) == 401
        assert await refused_status(uri + "?token=banned") == 403
        async with hub_client(uri, token="good") as client:
            assert client.user == "ann"
    handshakes = hub.stats.handshakes
    assert (handshakes["bad_subprotocol"], handshakes["origin"]) == (1, 1)
    assert (handshakes["unauthorized"], handshakes["forbidden"]) == (1, 1)


async def test_refusals_are_closes_before_accept_without_the_extension(server_kind: str) -> None:
    hub = Hub(authenticate=authenticate)
    app = WithoutHttpResponse(hub.asgi())
    async with serving(server_kind, app) as server:
        uri = server.url("/")
        # The server answers every close before accept with 403 ...
        assert await refused_status(uri, subprotocols=["chat"]) == 403
        assert await refused_status(uri, origin="https://evil.example") == 403
        assert await refused_status(uri) == 403
        assert await refused_status(uri + "?token=banned") == 403
    # ... and the app closed with 4000 + the status, and the reason.
    closes = [(m["code"], m["reason"]) for m in app.sent if m["type"] == "websocket.close"]
    assert [code for code, _ in closes] == [4400, 4403, 4401, 4403]
    assert closes[2][1] == "authentication required"
    assert closes[3][1] == "banned"
    assert not [m for m in app.sent if m["type"] == "websocket.accept"]


async def test_a_mounted_hub_without_lifespan_refuses_with_503(server_kind: str) -> None:
    hub = Hub()
    # Starlette's Mount forwards no lifespan: nothing starts the hub.
    app = Starlette(routes=[Mount("/hub", hub.asgi())])
    async with serving(server_kind, app) as server:
        assert await refused_status(server.url("/hub/")) == 503
    assert hub.stats.handshakes["not_running"] == 1


async def test_mounted_with_the_hub_lifespan_it_serves(server_kind: str) -> None:
    hub = Hub()
    app = Starlette(routes=[Mount("/hub", hub.asgi())], lifespan=hub.lifespan)
    async with serving(server_kind, app) as server, hub_client(server.url("/hub/")) as client:
        sub = await client.subscribe("room")
        await hub.publish("room", 1)
        assert (await next_publication(sub)).data == 1
