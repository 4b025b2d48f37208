"""What ``openline serve`` runs, over real sockets: pages, health, the ticker, the hub."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import openline
from openline.exceptions import ConnectionClosed, InvalidStatus
from openline.hub import Credentials, Hub, MemoryEngine
from openline.protocol.http11 import Headers, Request
from openline.web import App, create_app
from openline.web.app import authenticate

from .helpers import request

TIMEOUT = 5.0


@pytest.fixture
async def app() -> AsyncIterator[tuple[App, int]]:
    app = create_app(ticker_interval=(0.02, 0.05))
    async with app.run("127.0.0.1", 0) as server:
        yield app, server.sockets[0].getsockname()[1]


def demo_token(user: str, name: str) -> str:
    raw = json.dumps({"id": user, "name": name}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@contextlib.asynccontextmanager
async def closing(ws: Any) -> AsyncIterator[Any]:
    try:
        yield ws
    finally:
        await ws.close()


async def hub_connect(port: int, token: str | None = None) -> Any:
    offers = ["openline.v1"] + ([f"openline.token.{token}"] if token else [])
    ws = await openline.connect(f"ws://127.0.0.1:{port}/ws", subprotocols=offers)
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    return ws, welcome


async def recv_type(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message["type"] == kind:
            return message


# --- plain HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        ("/", "text/html", b"<title>openline"),
        ("/index.html", "text/html", b"<title>openline"),
        ("/openline.js", "text/javascript", b"export class Client"),
        ("/demo.js", "text/javascript", b'from "/openline.js"'),
        ("/demo.css", "text/css", b":root"),
        ("/favicon.svg", "image/svg+xml", b"<svg"),
    ],
)
async def test_static_files_are_served_to_browsers(
    app: tuple[App, int], path: str, content_type: str, needle: bytes
) -> None:
    reply = await request(app[1], path)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith(content_type)
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert needle in reply.body


async def test_the_page_forbids_foreign_scripts_and_framing(app: tuple[App, int]) -> None:
    policy = (await request(app[1], "/")).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


async def test_a_cached_page_is_revalidated_with_its_etag(app: tuple[App, int]) -> None:
    first = await request(app[1], "/openline.js?v=1")
    again = await request(app[1], "/openline.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b""


async def test_head_and_other_methods(app: tuple[App, int]) -> None:
    head = await request(app[1], "/", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0
    for path in ("/", "/healthz", "/api/ticker"):
        reply = await request(app[1], path, method="POST")
        assert reply.status == 405, path
        assert reply.headers["allow"] == "GET, HEAD"


async def test_unknown_paths_get_404(app: tuple[App, int]) -> None:
    reply = await request(app[1], "/../etc/passwd")
    assert reply.status == 404
    assert (await request(app[1], "/web/app.py")).status == 404


async def test_the_hub_endpoint_asks_plain_http_to_upgrade(app: tuple[App, int]) -> None:
    reply = await request(app[1], "/ws")
    assert reply.status == 426
    assert reply.headers["upgrade"] == "websocket"
    assert b"openline.v1" in reply.body


async def test_healthz_reports_the_hub_and_the_ticker(app: tuple[App, int]) -> None:
    ws, _ = await hub_connect(app[1])
    async with closing(ws):
        reply = await request(app[1], "/healthz")
    assert reply.status == 200
    assert reply.headers["cache-control"] == "no-store"
    health = reply.json()
    assert health["status"] == "ok"
    assert health["version"] == openline.__version__
    assert health["hub"]["connections"] == 1
    assert health["ticker"]["channel"] == "ticker" and health["ticker"]["running"]
    assert health["uptime"] >= 0
    head = await request(app[1], "/healthz", method="HEAD")
    assert head.status == 200 and head.body == b""


class _ReportingEngine(MemoryEngine):
    """A memory engine whose health report the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] = {"engine": "fake", "status": "ok"}

    def health(self) -> dict[str, Any]:
        return dict(self.report)


async def test_healthz_includes_the_engines_health() -> None:
    engine = _ReportingEngine()
    engine.report = {"engine": "fake", "status": "ok", "node": "n1"}
    app = create_app(engine=engine, ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        reply = await request(server.sockets[0].getsockname()[1], "/healthz")
    assert reply.status == 200
    assert reply.json()["status"] == "ok"
    assert reply.json()["engine"] == {"engine": "fake", "status": "ok", "node": "n1"}


async def test_healthz_is_503_while_the_engine_is_degraded() -> None:
    engine = _ReportingEngine()
    app = create_app(engine=engine, ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        engine.report = {"engine": "fake", "status": "degraded", "errors": 3}
        reply = await request(port, "/healthz")
        assert reply.status == 503
        assert reply.json()["status"] == "degraded"
        assert reply.json()["engine"]["errors"] == 3
        head = await request(port, "/healthz", method="HEAD")
        assert head.status == 503 and head.body == b""
        engine.report = {"engine": "fake", "status": "ok"}
        assert (await request(port, "/healthz")).status == 200


async def test_healthz_without_an_engine_report_says_none() -> None:
    class Quiet(MemoryEngine):
        health = None  # an engine written before health() existed

    app = create_app(engine=Quiet(), ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        reply = await request(server.sockets[0].getsockname()[1], "/healthz")
    assert reply.status == 200 and reply.json()["engine"] is None


async def test_api_ticker_returns_the_latest_tick_with_the_server_time(
    app: tuple[App, int],
) -> None:
    first = (await request(app[1], "/api/ticker")).json()
    assert set(first) == {"ch", "symbol", "price", "change", "seq", "ts", "now"}
    assert first["ch"] == "ticker" and first["now"] >= first["ts"]
    await asyncio.sleep(0.2)
    later = (await request(app[1], "/api/ticker")).json()
    assert later["seq"] > first["seq"] and later["ts"] >= first["ts"]


async def test_api_ticker_is_404_without_a_ticker() -> None:
    app = create_app(ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        reply = await request(port, "/api/ticker")
        assert reply.status == 404 and reply.json() == {"error": "the ticker is off"}
        assert (await request(port, "/healthz")).json()["ticker"] is None


# --- the hub behind it ---------------------------------------------------------------


async def test_the_ticker_is_pushed_and_read_only(app: tuple[App, int]) -> None:
    ws, _ = await hub_connect(app[1], demo_token("reader1", "Reader"))
    async with closing(ws):
        await ws.send(json.dumps({"type": "subscribe", "ch": "ticker", "presence": True}))
        await recv_type(ws, "subscribed")
        presence = await recv_type(ws, "presence")
        assert presence["count"] == 1 and "users" not in presence  # counts only
        tick = await recv_type(ws, "message")
        assert tick["ch"] == "ticker" and "user" not in tick
        assert {"price", "seq", "ts"} <= set(tick["data"])
        await ws.send(json.dumps({"type": "publish", "ch": "ticker", "data": 1, "rid": 1}))
        error = await recv_type(ws, "error")
        assert error["code"] == "forbidden" and error["rid"] == 1


async def test_demo_tokens_name_users_in_presence(app: tuple[App, int]) -> None:
    ada, welcome = await hub_connect(app[1], demo_token("ada-tab-1", "  Ada \t Lovelace "))
    assert welcome["user"] == "ada-tab-1"
    async with closing(ada):
        await ada.send(json.dumps({"type": "subscribe", "ch": "room:t", "presence": True}))
        presence = await recv_type(ada, "presence")
        assert presence["users"] == [
            {"user": "ada-tab-1", "info": {"name": "Ada Lovelace"}, "clients": 1}
        ]
        await ada.send(json.dumps({"type": "publish", "ch": "room:t", "data": {"text": "hi"}}))
        message = await recv_type(ada, "message")
        assert message["user"] == "ada-tab-1"


async def test_the_hub_answers_upgrades_on_any_path_but_wants_its_subprotocol(
    app: tuple[App, int],
) -> None:
    async with openline.connect(f"ws://127.0.0.1:{app[1]}/", subprotocols=["openline.v1"]) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    with pytest.raises(InvalidStatus) as caught:
        await openline.connect(f"ws://127.0.0.1:{app[1]}/ws")
    assert getattr(caught.value.response, "status", None) == 400


async def test_leaving_run_closes_clients_with_1001_and_keeps_a_given_engine() -> None:
    engine = MemoryEngine()
    app = create_app(engine=engine, ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        ws, _ = await hub_connect(server.sockets[0].getsockname()[1])
        await ws.send(json.dumps({"type": "publish", "ch": "room:x", "data": 1, "rid": 1}))
        await recv_type(ws, "ack")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 1001
    # The engine outlives the server: a restart with it continues the offsets.
    again = create_app(engine=engine, ticker=False)
    assert (await again.hub.publish("room:x", 2)).offset == 2
    await again.hub.close()
    await engine.close()


# --- the demo's identity hook --------------------------------------------------------


def credentials(token: str | None) -> Credentials:
    return Credentials(token, Request("/ws", Headers()), ("127.0.0.1", 1))


@pytest.mark.parametrize(
    ("token", "user", "info"),
    [
        (demo_token("abcdef", "Grace"), "abcdef", {"name": "Grace"}),
        (demo_token("abcdef", "\x00\x1b[2J"), "abcdef", {"name": "[2J"}),
        (demo_token("abcdef", ""), "abcdef", {"name": "guest"}),
        (demo_token("abcdef", "x" * 100), "abcdef", {"name": "x" * 32}),
        # Not a demo token: the token is the user, and the name.
        (demo_token("bad id!", "Grace"), None, None),
        ("ada", "ada", {"name": "ada"}),
        (base64.urlsafe_b64encode(b"[1, 2]").decode(), None, None),
    ],
)
def test_authenticate_reads_demo_tokens_and_plain_ones(
    token: str, user: str | None, info: dict[str, str] | None
) -> None:
    identity = authenticate(credentials(token))
    assert identity.user == (token if user is None else user)
    assert dict(identity.info) == (info or {"name": token[:32]})


def test_authenticate_without_a_token_makes_a_guest() -> None:
    first, second = authenticate(credentials(None)), authenticate(credentials(None))
    assert first.user.startswith("guest-") and first.user != second.user
    assert dict(first.info) == {}


def test_create_app_passes_limits_to_the_hub() -> None:
    with pytest.raises(ValueError, match="max_subscriptions"):
        create_app(max_subscriptions=0)
    app = create_app(ticker=False, max_message_size=1024)
    assert isinstance(app.hub, Hub) and app.ticker is None


async def test_a_guest_publish_retried_on_a_new_connection_is_stored_once(
    app: tuple[App, int],
) -> None:
    # Token-less connections are a new guest each time; a redial must not
    # turn the retry of a publish into a second stored message.
    publish = {"type": "publish", "ch": "room", "data": "hi", "id": "7f3c9a1e-retry", "rid": 1}
    acks = []
    for _ in range(2):
        ws, welcome = await hub_connect(app[1])
        assert welcome["user"].startswith("guest-")
        async with closing(ws):
            await ws.send(json.dumps(publish))
            acks.append(await recv_type(ws, "ack"))
    assert [ack["duplicate"] for ack in acks] == [False, True]
    assert acks[0]["offset"] == acks[1]["offset"]
