"""The hub next to a Django ASGI app, through openline.hub.asgi.route (no Channels)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(SECRET_KEY="a test secret, not a real one", USE_TZ=True)
    django.setup()

from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
from django.test.utils import override_settings
from django.urls import path

from openline.hub import Credentials, Hub, Identity
from openline.hub.asgi import route

from .conftest import http_get, serving
from .helpers import hub_client, next_publication, refused_status


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"django at {request.path}")


def login(request: HttpRequest, user: str) -> HttpResponse:
    request.session["user"] = user
    return HttpResponse(f"hello {user}")


urlpatterns = [path("hello", hello), path("login/<str:user>", login)]

ROOT = "/app"
seen: list[dict[str, Any]] = []


def from_django_session(credentials: Credentials) -> Identity | None:
    """Django's own session, from the cookie Django set; nobody without one."""
    scope: Any = credentials.scope
    seen.append({"root_path": scope["root_path"], "path": credentials.request.path})
    key = credentials.request.headers.get("Cookie", "").partition("sessionid=")[2]
    user = SessionStore(session_key=key.split(";")[0]).get("user") if key else None
    return None if user is None else Identity(user)


def requested(kind: str, target: str) -> str:
    # uvicorn takes --root-path as stripped by a proxy in front (the client asks for
    # /ws and the app sees /app/ws); hypercorn as part of the path the client asks for.
    return target if kind.startswith("uvicorn") else ROOT + target


@pytest.fixture(autouse=True)
def django_settings() -> Iterator[None]:
    """This module's URLs and sessions, whoever configured Django in this process first."""
    seen.clear()
    with override_settings(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["127.0.0.1"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        # Sessions in a signed cookie: no database for the test.
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    ):
        yield


async def test_the_hub_and_django_share_one_server(server_kind: str) -> None:
    hub = Hub(authenticate=from_django_session)
    app = route({"/ws": hub.asgi()}, fallback=get_asgi_application())
    async with serving(server_kind, app, root_path=ROOT) as server:
        status, _, body = await http_get(server.port, requested(server_kind, "/hello"))
        assert (status, body) == (200, b"django at /app/hello")
        ws_uri = server.url(requested(server_kind, "/ws"))
        assert await refused_status(ws_uri) == 401
        status, headers, _ = await http_get(server.port, requested(server_kind, "/login/bob"))
        assert status == 200
        cookie = next(c for c in headers["set-cookie"] if c.startswith("sessionid="))
        async with hub_client(ws_uri, headers={"Cookie": cookie.split(";")[0]}) as client:
            assert client.user == "bob"
            sub = await client.subscribe("room")
            await client.publish("room", "from bob")
            publication = await next_publication(sub)
            assert (publication.data, publication.user) == ("from bob", "bob")
        assert hub.is_running  # the router ran the hub's lifespan (Django has none)
    assert not hub.is_running
    # The hub saw the full path, and a root_path extended by its prefix.
    assert [entry["root_path"] for entry in seen] == ["/app/ws", "/app/ws"]
    assert all(entry["path"] == "/app/ws" for entry in seen)


async def test_paths_outside_the_routes_without_a_fallback_are_refused(server_kind: str) -> None:
    hub = Hub()
    app = route({"/ws": hub.asgi()})
    async with serving(server_kind, app) as server:
        status, _, _ = await http_get(server.port, "/other")
        assert status == 404
        assert await refused_status(server.url("/wsx")) == 404
        async with hub_client(server.url("/ws/deeper")) as client:
            assert (await client.publish("room", 1)).offset == 1
