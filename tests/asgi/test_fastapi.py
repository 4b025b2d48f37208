"""The hub app mounted in FastAPI: cookie sessions, and resuming across a server restart."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.sessions import SessionMiddleware

from openline.hub import Credentials, Hub, Identity, SqliteEngine
from openline.hub.events import Gap, Resumed

from .conftest import http_get, serving
from .helpers import Recorder, hub_client, next_publication, refused_status

SECRET = "a test secret, not a real one"


def fastapi_app(hub: Hub) -> FastAPI:
    """Log in over HTTP (a session cookie), then open the hub at /hub/ with that cookie."""
    app = FastAPI(lifespan=hub.lifespan)

    @app.get("/login/{user}")
    async def login(user: str, request: Request) -> dict[str, str]:
        request.session["user"] = user
        return {"user": user}

    app.mount("/hub", hub.asgi())
    app.add_middleware(SessionMiddleware, secret_key=SECRET)
    return app


def from_session(credentials: Credentials) -> Identity | None:
    """Who the app's own session says is connected; nobody without one."""
    scope: Any = credentials.scope
    assert scope is not None, "inside ASGI, authenticate sees the scope"
    user = scope.get("session", {}).get("user")
    return None if user is None else Identity(user, {"via": "session"})


async def session_cookie(port: int, user: str) -> str:
    status, headers, _ = await http_get(port, f"/login/{user}")
    assert status == 200
    (cookie,) = headers["set-cookie"]
    return cookie.split(";")[0]


async def test_authenticate_reads_the_apps_cookie_session(server_kind: str) -> None:
    hub = Hub(authenticate=from_session)
    async with serving(server_kind, fastapi_app(hub)) as server:
        uri = server.url("/hub/")
        assert await refused_status(uri) == 401
        cookie = await session_cookie(server.port, "ann")
        async with hub_client(uri, headers={"Cookie": cookie}) as client:
            assert client.user == "ann"
            sub = await client.subscribe("room")
            ack = await client.publish("room", "hi")
            publication = await next_publication(sub)
            assert (publication.data, publication.user, publication.offset) == ("hi", "ann", 1)
            assert ack.offset == 1


async def test_a_client_resumes_by_offset_after_the_server_restarts(
    server_kind: str, tmp_path: Any
) -> None:
    path = str(tmp_path / "hub.db")
    recorder = Recorder()
    hub = Hub(SqliteEngine(path))
    async with serving(server_kind, fastapi_app(hub)) as first:
        port = first.port
        client = hub_client(first.url("/hub/"), on_event=recorder)
        await client.start()
        sub = await client.subscribe("room")
        await client.publish("room", "before")
        before = await next_publication(sub)
        assert before.offset == 1
    # The server is gone (its lifespan closed the engine): a message is stored meanwhile.
    try:
        away = Hub(SqliteEngine(path))
        async with away.running():
            result = await away.publish("room", "while away")
        assert (result.epoch, result.offset) == (before.epoch, 2)
        hub = Hub(SqliteEngine(path))
        async with serving(server_kind, fastapi_app(hub), port=port):
            resumed = await recorder.wait(Resumed)
            missed = await next_publication(sub)
            await hub.publish("room", "after")
            after = await next_publication(sub)
    finally:
        await client.close()
    assert (resumed.recovered, resumed.gap) == (1, False)
    assert (missed.data, missed.epoch, missed.offset) == ("while away", before.epoch, 2)
    assert (after.data, after.epoch, after.offset) == ("after", before.epoch, 3)
    assert not recorder.of(Gap)
