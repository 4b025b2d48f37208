"""The hub app mounted in FastAPI, on every server of conftest.SERVERS.

Cookie sessions, resuming across a server restart, refusals as HTTP statuses,
the slow-consumer policy, and a shutdown that clients resume from. On uvicorn
with openline's engine every connection must take the fast path, which
``hub.stats.asgi_paths`` shows; on the other servers the plain one.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client.parser import text_string_to_metric_families
from starlette.middleware.sessions import SessionMiddleware

from openline.asyncio.client import connect
from openline.hub import Credentials, Hub, Identity, SqliteEngine
from openline.hub.events import Disconnected, Gap, Resumed
from openline.hub.metrics import Metrics
from openline.web.metrics import render_metrics

from .conftest import OPENLINE_ENGINE, http_get, serving
from .helpers import Recorder, hub_client, next_publication, refused_status

SECRET = "a test secret, not a real one"


def fastapi_app(hub: Hub) -> FastAPI:
    """Log in over HTTP (a session cookie), then open the hub at /hub/ with that cookie."""
    app = FastAPI(lifespan=hub.lifespan)

    @app.get("/login/{user}")
    async def login(user: str, request: Request) -> dict[str, str]:
        request.session["user"] = user
        return {"user": user}

    @app.get("/metrics")
    async def metrics() -> Response:
        content_type, body = render_metrics(hub)
        return Response(body, media_type=content_type)

    app.mount("/hub", hub.asgi())
    app.add_middleware(SessionMiddleware, secret_key=SECRET)
    return app


def from_session(credentials: Credentials) -> Identity | None:
    """Who the app's own session says is connected; nobody without one."""
    scope: Any = credentials.scope
    assert scope is not None, "inside ASGI, authenticate sees the scope"
    user = scope.get("session", {}).get("user")
    return None if user is None else Identity(user, {"via": "session"})


def path_taken(kind: str) -> str:
    """The path the hub app must serve connections on under the server ``kind``."""
    return "fast" if kind == OPENLINE_ENGINE else "plain"


def assert_paths(stats: Metrics, kind: str, count: int) -> None:
    """Every one of the ``count`` accepted connections took ``kind``'s path."""
    assert dict(stats.asgi_paths) == {path_taken(kind): count}
    assert stats.as_dict()[f"asgi_paths.{path_taken(kind)}"] == count


async def scraped_paths(port: int) -> dict[str, float]:
    """``openline_asgi_connections_total`` by path, from the app's own /metrics route."""
    status, headers, body = await http_get(port, "/metrics")
    assert status == 200 and headers["content-type"][0].startswith("text/plain")
    (family,) = (
        family
        for family in text_string_to_metric_families(body.decode())
        if family.name == "openline_asgi_connections"
    )
    return {s.labels["path"]: s.value for s in family.samples if s.name.endswith("_total")}


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
        assert await scraped_paths(server.port) == {path_taken(server_kind): 1}
    assert_paths(hub.stats, server_kind, 1)


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
    assert_paths(hub.stats, server_kind, 1)


async def test_refusals_are_http_statuses(server_kind: str) -> None:
    hub = Hub(authenticate=from_session)
    async with serving(server_kind, fastapi_app(hub)) as server:
        uri = server.url("/hub/")
        cookie = await session_cookie(server.port, "ann")
        assert await refused_status(uri) == 401
        assert (
            await refused_status(uri, subprotocols=["chat"], additional_headers={"Cookie": cookie})
            == 400
        )
        assert (
            await refused_status(
                uri, additional_headers={"Cookie": cookie, "Origin": "http://elsewhere.example"}
            )
            == 403
        )
        status, _, body = await http_get(server.port, "/hub/")
        assert (status, body.startswith(b"this is an openline hub")) == (426, True)
        # None of them reached a path; the client that may connect does.
        assert not hub.stats.asgi_paths
        async with hub_client(uri, headers={"Cookie": cookie}) as client:
            assert client.user == "ann"
    assert hub.stats.handshakes["unauthorized"] == 1
    assert hub.stats.handshakes["bad_subprotocol"] == 1
    assert hub.stats.handshakes["origin"] == 1
    assert_paths(hub.stats, server_kind, 1)


#: The most messages the slow-consumer test publishes before it must have seen an eviction.
MAX_MESSAGES = 400
#: Incompressible, in case a server and client agree on permessage-deflate anyway.
FLOOD = os.urandom(16384).hex()


async def test_a_slow_subscriber_is_evicted_and_the_others_keep_receiving(
    server_kind: str,
) -> None:
    hub = Hub(max_buffer=256 * 1024, slow_consumer_timeout=None)
    async with serving(server_kind, fastapi_app(hub)) as server:
        uri = server.url("/hub/")
        # A small receive buffer and a client that stops reading once subscribed.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        slow = await connect(
            uri, sock=sock, subprotocols=["openline.v1"], max_queue=1, compression=None
        ).__aenter__()
        try:
            assert json.loads(await slow.recv())["type"] == "welcome"
            await slow.send(json.dumps({"type": "subscribe", "ch": "flood", "rid": "s"}))
            assert json.loads(await slow.recv())["type"] == "subscribed"
            async with hub_client(uri) as one, hub_client(uri) as two:
                subs = [await one.subscribe("flood"), await two.subscribe("flood")]
                published = 0
                while not hub.stats.slow_consumers and published < MAX_MESSAGES:
                    await hub.publish("flood", f"{published} {FLOOD}")
                    published += 1
                    # The healthy subscribers read everything, in order, as it comes.
                    for sub in subs:
                        publication = await next_publication(sub)
                        assert publication.offset == published
                        assert publication.data.startswith(f"{published - 1} ")
                assert hub.stats.slow_consumers == 1, f"no eviction after {published} messages"
                assert hub.stats.evictions["buffer"] == 1
                # After the eviction the healthy ones are served as before.
                await hub.publish("flood", "after")
                for sub in subs:
                    assert (await next_publication(sub)).data == "after"
        finally:
            slow.abort()
    assert_paths(hub.stats, server_kind, 3)


async def test_shutdown_closes_the_clients_and_they_resume(server_kind: str, tmp_path: Any) -> None:
    path = str(tmp_path / "hub.db")
    recorder = Recorder()
    hub = Hub(SqliteEngine(path))
    async with serving(server_kind, fastapi_app(hub)) as first:
        port = first.port
        client = hub_client(first.url("/hub/"), on_event=recorder)
        await client.start()
        sub = await client.subscribe("room")
        await hub.publish("room", "before")
        before = await next_publication(sub)
        # The server's shutdown closes the connection before the lifespan ends.
    try:
        disconnected = await recorder.wait(Disconnected)
        again = Hub(SqliteEngine(path))
        async with serving(server_kind, fastapi_app(again), port=port):
            resumed = await recorder.wait(Resumed)
            await again.publish("room", "after")
            after = await next_publication(sub)
    finally:
        await client.close()
    # uvicorn (either engine) says the service restarts; hypercorn cancels the app
    # and closes with 1011. The client resumes either way.
    if server_kind != "hypercorn":
        assert disconnected.code == 1012, disconnected
    assert (resumed.recovered, resumed.gap) == (0, False)
    assert (after.data, after.epoch, after.offset) == ("after", before.epoch, 2)
    assert not recorder.of(Gap)
    assert_paths(hub.stats, server_kind, 1)
    assert_paths(again.stats, server_kind, 1)
