"""What ``openline serve`` runs, over real sockets: pages, health, the ticker, the hub."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

import openline
from openline.exceptions import ConnectionClosed, InvalidStatus
from openline.hub import Hub, MemoryEngine
from openline.web import App, create_app
from openline.web.tokens import TokenSigner

from .helpers import request

TIMEOUT = 5.0


@pytest.fixture
async def app() -> AsyncIterator[tuple[App, int]]:
    app = create_app(ticker_interval=(0.02, 0.05))
    async with app.run("127.0.0.1", 0) as server:
        yield app, server.sockets[0].getsockname()[1]


SECRET = "the same secret on every node"


async def session(port: int, name: str, **headers: str) -> dict[str, Any]:
    """A signed token from the app's session API."""
    reply = await request(port, f"/api/session?name={name}", headers=headers)
    assert reply.status == 200, reply.body
    value: dict[str, Any] = reply.json()
    return value


@contextlib.asynccontextmanager
async def closing(ws: Any) -> AsyncIterator[Any]:
    try:
        yield ws
    finally:
        await ws.close()


async def hub_connect(port: int, token: str | None = None, **kwargs: Any) -> Any:
    offers = ["openline.v1"] + ([f"openline.token.{token}"] if token else [])
    kwargs.setdefault("subprotocols", offers)
    ws = await openline.connect(f"ws://127.0.0.1:{port}/ws", **kwargs)
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
    ws, _ = await hub_connect(app[1], (await session(app[1], "Reader"))["token"])
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


async def test_signed_tokens_name_users_the_server_chose(app: tuple[App, int]) -> None:
    given = await session(app[1], "%20%20Ada%20%09%20Lovelace%20")
    assert given["name"] == "Ada Lovelace" and given["user"].startswith("u.")
    ada, welcome = await hub_connect(app[1], given["token"])
    assert welcome["user"] == given["user"]
    async with closing(ada):
        await ada.send(json.dumps({"type": "subscribe", "ch": "room:t", "presence": True}))
        presence = await recv_type(ada, "presence")
        assert presence["users"] == [
            {"user": given["user"], "info": {"name": "Ada Lovelace"}, "clients": 1}
        ]
        await ada.send(json.dumps({"type": "publish", "ch": "room:t", "data": {"text": "hi"}}))
        message = await recv_type(ada, "message")
        assert message["user"] == given["user"]


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


def test_create_app_passes_limits_to_the_hub() -> None:
    with pytest.raises(ValueError, match="max_subscriptions"):
        create_app(max_subscriptions=0)
    with pytest.raises(ValueError, match="expected an origin like"):
        create_app(origins=["example.com"])
    with pytest.raises(ValueError, match="secret must be at least 16 bytes"):
        create_app(secret="short")
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
        assert welcome["user"].startswith("guest.")
        async with closing(ws):
            await ws.send(json.dumps(publish))
            acks.append(await recv_type(ws, "ack"))
    assert [ack["duplicate"] for ack in acks] == [False, True]
    assert acks[0]["offset"] == acks[1]["offset"]


# --- origin checks ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[int]:
    """An app with ``create_app`` options, serving on a free port: yields the port."""
    app = create_app(ticker=False, **options)
    async with app.run("127.0.0.1", 0) as server:
        yield server.sockets[0].getsockname()[1]


async def refused(port: int, status: int, **kwargs: Any) -> str:
    """Dial the hub, expect an HTTP refusal with ``status``; return its body."""
    with pytest.raises(InvalidStatus) as caught:
        await hub_connect(port, **kwargs)
    assert caught.value.status == status
    body: bytes = getattr(caught.value.response, "body", b"")
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    print(f"HTTP {status}: {body.decode().strip()}")
    return body.decode()


async def test_a_cross_origin_handshake_is_refused_with_403_and_the_reason(
    app: tuple[App, int],
) -> None:
    port = app[1]
    body = await refused(port, 403, origin="http://evil.example")
    assert body == (
        "cross-origin request refused: Origin 'http://evil.example' is neither this "
        f"server's origin (http://127.0.0.1:{port}) nor an allowed one\n"
    )
    # Another port, another scheme, or localhost for 127.0.0.1: other origins too.
    for origin in (
        f"http://127.0.0.1:{port + 1}",
        f"https://127.0.0.1:{port}",
        f"http://localhost:{port}",
        "null",
    ):
        await refused(port, 403, origin=origin)


async def test_same_origin_and_origin_less_clients_are_let_in(app: tuple[App, int]) -> None:
    port = app[1]
    ws, welcome = await hub_connect(port, origin=f"http://127.0.0.1:{port}")
    async with closing(ws):
        assert welcome["type"] == "welcome"
    ws, welcome = await hub_connect(port)  # no Origin: openline connect, hub.Client...
    async with closing(ws):
        assert welcome["type"] == "welcome"


async def test_origin_required_refuses_clients_without_origin() -> None:
    async with running(origin_required=True) as port:
        body = await refused(port, 403)
        assert body == "an Origin header is required\n"
        ws, _ = await hub_connect(port, origin=f"http://127.0.0.1:{port}")
        await ws.close()
        # The page's own session request is a same-origin fetch: it sends no
        # Origin, but its Sec-Fetch-Site says where it comes from.
        ok = await request(port, "/api/session?name=Ada", headers={"Sec-Fetch-Site": "same-origin"})
        assert ok.status == 200
        assert (await request(port, "/api/session?name=Ada")).status == 403


async def test_added_origins_are_allowed_and_star_allows_any() -> None:
    async with running(origins=["http://localhost:3000"]) as port:
        ws, _ = await hub_connect(port, origin="http://localhost:3000")
        await ws.close()
        await refused(port, 403, origin="http://localhost:3001")
    async with running(origins=["*"]) as port:
        ws, _ = await hub_connect(port, origin="http://evil.example")
        await ws.close()


async def test_over_tls_our_origin_is_https(tmp_path: Any) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app = create_app(ticker=False)
    async with app.run("127.0.0.1", 0, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        uri = f"wss://127.0.0.1:{port}/ws"
        offers = ["openline.v1"]
        async with openline.connect(
            uri, ssl=client_context, subprotocols=offers, origin=f"https://127.0.0.1:{port}"
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
        with pytest.raises(InvalidStatus) as caught:
            await openline.connect(
                uri, ssl=client_context, subprotocols=offers, origin=f"http://127.0.0.1:{port}"
            )
        assert caught.value.status == 403


# --- the session API and signed tokens ----------------------------------------------


async def test_session_api_issues_tokens_and_a_renewal_keeps_the_user(
    app: tuple[App, int],
) -> None:
    port = app[1]
    first = await session(port, "Ada")
    assert set(first) == {"token", "user", "name", "expires"} and first["name"] == "Ada"
    other = await session(port, "Ada")
    assert other["user"] != first["user"]  # the server picks ids, a name is no id
    renamed = await session(port, "Ada%20L.", Authorization=f"Bearer {first['token']}")
    assert renamed["user"] == first["user"] and renamed["name"] == "Ada L."
    reply = await request(port, "/api/session?name=Ada")
    assert reply.headers["cache-control"] == "no-store"


async def test_session_api_refuses_bad_requests(app: tuple[App, int]) -> None:
    port = app[1]
    token = (await session(port, "Ada"))["token"]
    header, body, signature = token.split(".")
    bad = await request(
        port,
        "/api/session?name=Ada",
        headers={"Authorization": f"Bearer {header}.{body}x.{signature}"},
    )
    assert bad.status == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert bad.json() == {
        "error": "invalid token: bad signature: forged, altered, or signed with another key"
    }
    for path in ("/api/session", "/api/session?name=", "/api/session?name=%00%20"):
        reply = await request(port, path)
        assert reply.status == 400 and "a name is required" in reply.json()["error"]
    post = await request(port, "/api/session?name=Ada", method="POST")
    assert post.status == 405 and post.headers["allow"] == "GET"


async def test_session_api_refuses_cross_origin_requests(app: tuple[App, int]) -> None:
    port = app[1]
    own = "127.0.0.1:{port}"
    evil = await request(port, "/api/session?name=Eve", headers={"Origin": "http://evil.example"})
    assert evil.status == 403 and evil.body.startswith(b"cross-origin request refused")
    print(f"GET /api/session from http://evil.example: HTTP 403 {evil.body.decode().strip()}")
    sneaky = await request(port, "/api/session?name=Eve", headers={"Sec-Fetch-Site": "cross-site"})
    assert sneaky.status == 403
    headers = {"Origin": f"http://127.0.0.1:{port}"}
    assert (await request(port, "/api/session?name=Ada", headers=headers, host=own)).status == 200


async def test_forged_tampered_and_expired_tokens_get_401() -> None:
    async with running(secret=SECRET) as port:
        token = (await session(port, "Ada"))["token"]
        header, body, signature = token.split(".")
        claims = json.loads(base64url_decode(body))
        claims["sub"] = "u.0123456789abcdef"
        forged_body = base64url_encode(json.dumps(claims).encode())
        expired = TokenSigner(SECRET, clock=lambda: 1_000_000_000.0).issue("Ada").token
        cases = {
            "tampered": f"{header}.{forged_body}.{signature}",
            "forged": TokenSigner("not the server's secret!").issue("Ada").token,
            "expired": expired,
            "unsigned": "eyJpZCI6ICJ2aWN0aW0tMTIzNCIsICJuYW1lIjogIlZpY3RpbSJ9",
        }
        for what, bad in cases.items():
            reason = await refused(port, 401, subprotocols=["openline.v1", f"openline.token.{bad}"])
            assert reason.startswith("invalid token: "), what
        reason = await refused(
            port,
            401,
            subprotocols=["openline.v1"],
            additional_headers={"Authorization": f"Bearer {expired}"},
        )
        assert "token expired" in reason


async def test_two_processes_with_one_secret_accept_each_others_tokens() -> None:
    async with running(secret=SECRET) as first, running(secret=SECRET) as second:
        given = await session(first, "Ada")
        ws, welcome = await hub_connect(second, given["token"])
        async with closing(ws):
            assert welcome["user"] == given["user"]
        # And a renewal on the second keeps the user the first chose.
        again = await session(second, "Ada", Authorization=f"Bearer {given['token']}")
        assert again["user"] == given["user"]
    async with running(secret="another node's secret") as other_key:
        await refused(
            other_key, 401, subprotocols=["openline.v1", f"openline.token.{given['token']}"]
        )
        reply = await request(
            other_key,
            "/api/session?name=Ada",
            headers={"Authorization": f"Bearer {given['token']}"},
        )
        assert reply.status == 401  # the page then asks again without it


def base64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def base64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
