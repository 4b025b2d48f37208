"""The HTTP server API (web/api.py) and its clients (openline.api), over real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import openline
from openline.api import APIClient, APIError, AsyncAPIClient
from openline.hub import MemoryEngine
from openline.hub.publisher import publish_to_engine
from openline.protocol.http11 import MAX_REQUEST_BODY
from openline.web import App, create_app
from openline.web.app import MAX_BODY_WITHOUT_API

from .helpers import Reply

KEY = "k3y-for-tests"
TIMEOUT = 5.0


@pytest.fixture
async def app() -> AsyncIterator[tuple[App, int]]:
    app = create_app(ticker=False, api_key=KEY)
    async with app.run("127.0.0.1", 0) as server:
        yield app, server.sockets[0].getsockname()[1]


async def post(
    port: int,
    method: str,
    body: bytes | Any = None,
    *,
    key: str | None = KEY,
    verb: str = "POST",
    length: int | None = None,
) -> Reply:
    """Send one API request with a body; read the answer until the server closes.

    ``length`` announces another ``Content-Length`` than the body's.
    """
    raw = body if isinstance(body, bytes) else json.dumps({} if body is None else body).encode()
    lines = [f"{verb} /api/{method} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if key is not None:
        lines.append(f"Authorization: apikey {key}")
    announced = len(raw) if length is None else length
    lines += ["Content-Type: application/json", f"Content-Length: {announced}"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + raw)
    answer = await asyncio.wait_for(reader.read(-1), TIMEOUT)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, payload)


async def hub_client(port: int) -> Any:
    ws = await openline.connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["openline.v1"])
    welcome = json.loads(await ws.recv())
    return ws, welcome


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


async def test_publish_answers_the_offset_and_a_retry_is_stored_once(
    app: tuple[App, int],
) -> None:
    _, port = app
    ws, _ = await hub_client(port)
    await ws.send(json.dumps({"type": "subscribe", "ch": "news"}))
    await next_of(ws, "subscribed")
    body = {"ch": "news", "data": {"title": "hi"}, "id": "n-1"}
    first = await post(port, "publish", body)
    assert first.status == 200, first.body
    assert first.json()["offset"] == 1 and first.json()["duplicate"] is False
    again = await post(port, "publish", body)
    assert again.json() == {**first.json(), "duplicate": True}
    message = await next_of(ws, "message")
    assert (message["offset"], message["data"], message["id"]) == (1, {"title": "hi"}, "n-1")
    await ws.close()


async def test_reads_and_commands_over_http(app: tuple[App, int]) -> None:
    _, port = app
    ws, welcome = await hub_client(port)
    user = welcome["user"]
    for n in range(3):
        assert (await post(port, "publish", {"ch": "room", "data": n})).status == 200
    reply = await post(port, "subscribe", {"user": user, "ch": "room"})
    assert (reply.status, reply.json()) == (200, {})
    subscribed = await next_of(ws, "subscribed")
    assert (subscribed["ch"], subscribed["offset"], "rid" in subscribed) == ("room", 3, False)
    history = (await post(port, "history", {"ch": "room", "limit": 2})).json()
    assert [m["data"] for m in history["messages"]] == [1, 2]
    assert (history["offset"], history["recovered"]) == (3, True)
    paged = (await post(port, "history", {"ch": "room", "since": 0, "limit": 1})).json()
    assert [m["offset"] for m in paged["messages"]] == [1]
    presence = (await post(port, "presence", {"ch": "room"})).json()
    assert presence["count"] == 1 and presence["users"][0]["user"] == user
    assert (await post(port, "channels")).json() == {"channels": ["room"]}
    assert (await post(port, "unsubscribe", {"user": user, "ch": "room"})).status == 200
    assert (await next_of(ws, "unsubscribed"))["ch"] == "room"
    reply = await post(port, "disconnect", {"user": user, "code": 4000, "reason": "bye"})
    assert reply.status == 200
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert (ws.close_code, ws.close_reason) == (4000, "bye")


@pytest.mark.parametrize(
    ("method", "body", "error"),
    [
        ("publish", b"{not json", "the body isn't JSON"),
        ("publish", [1, 2], "must be a JSON object, got list"),
        ("publish", {"data": 1}, "missing field: ch"),
        ("publish", {"ch": "a", "data": 1, "colour": "red"}, "unknown field: 'colour'"),
        ("publish", {"ch": 5, "data": 1}, "ch must be a string"),
        ("publish", {"ch": "bad\nname", "data": 1}, "invalid channel name"),
        ("history", {"ch": "a", "limit": 5000}, "limit must be an int from 1 to 1000"),
        ("history", {"ch": "a", "since": "1"}, "since must be an integer"),
        ("disconnect", {"user": "u", "code": 1006}, "invalid close code 1006"),
        ("subscribe", {"user": "u"}, "missing field: ch"),
    ],
)
async def test_bad_input_gets_400_naming_the_problem(
    app: tuple[App, int], method: str, body: Any, error: str
) -> None:
    _, port = app
    reply = await post(port, method, body)
    assert reply.status == 400, reply.body
    assert error in reply.json()["error"]


async def test_keys_methods_and_sizes(app: tuple[App, int]) -> None:
    _, port = app
    for key in (None, "wrong", KEY + "x", ""):
        reply = await post(port, "channels", key=key)
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == "apikey"
        assert "API key" in reply.json()["error"]
    reply = await post(port, "channels", b"", verb="PUT")
    assert (reply.status, reply.headers["allow"]) == (405, "POST")
    assert (await post(port, "nothing-here")).status == 404
    # Refused from the head alone, before a byte of the body is read.
    reply = await post(port, "publish", b"{", length=MAX_REQUEST_BODY + 1)
    assert reply.status == 431
    assert b"exceeds max_body of 1048576 bytes" in reply.body


async def test_without_a_key_the_api_is_off() -> None:
    app = create_app(ticker=False)
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        for method in ("channels", "publish"):
            reply = await post(port, method, {"ch": "a", "data": 1})
            assert reply.status == 404, reply.body
        # Nothing reads bodies then: a small bound.
        reply = await post(port, "publish", b"{", length=MAX_BODY_WITHOUT_API + 1)
        assert reply.status == 431


async def test_the_async_client_publishes_and_reports_refusals(app: tuple[App, int]) -> None:
    _, port = app
    client = AsyncAPIClient(f"http://127.0.0.1:{port}", KEY)
    first = await client.publish("jobs", {"n": 1}, id="job-1")
    again = await client.publish("jobs", {"n": 1}, id="job-1")
    other = await client.publish("jobs", {"n": 2})  # a random id
    assert (first.offset, again.offset, again.duplicate, other.offset) == (1, 1, True, 2)
    assert (await client.call("channels")) == {"channels": []}
    with pytest.raises(APIError) as caught:
        await client.publish("bad\nname", 1)
    assert caught.value.status == 400 and "invalid channel name" in caught.value.error
    with pytest.raises(APIError) as caught:
        await AsyncAPIClient(f"http://127.0.0.1:{port}", "wrong").publish("a", 1)
    assert caught.value.status == 401


async def test_the_sync_client_publishes_from_a_thread(app: tuple[App, int]) -> None:
    _, port = app
    client = APIClient(f"http://127.0.0.1:{port}", KEY)
    first = await asyncio.to_thread(client.publish, "jobs", "a", id="x")
    again = await asyncio.to_thread(client.publish, "jobs", "a", id="x")
    assert (first.offset, again.duplicate) == (1, True)
    history = await asyncio.to_thread(client.call, "history", ch="jobs")
    assert [m["data"] for m in history["messages"]] == ["a"]


async def test_clients_retry_connection_errors_a_bounded_number_of_times() -> None:
    # A port that refuses: listen, note the port, close.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(APIError) as caught:
        await AsyncAPIClient(url, KEY, retries=2, backoff=(0.01, 0.02)).publish("a", 1)
    assert caught.value.status == 0
    sync = APIClient(url, KEY, retries=2, backoff=(0.01, 0.02))
    with pytest.raises(APIError):
        await asyncio.to_thread(sync.publish, "a", 1)
    elapsed = time.monotonic() - start
    print(f"two clients, 3 attempts each against a closed port: {elapsed * 1000:.1f} ms")
    assert elapsed < TIMEOUT


async def test_publishing_through_the_engine_shares_the_hubs_idempotency_scope() -> None:
    engine = MemoryEngine()
    app = create_app(engine=engine, ticker=False, api_key=KEY)
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        direct = await publish_to_engine(engine, "feed", {"n": 1}, id="same")
        via_http = await AsyncAPIClient(f"http://127.0.0.1:{port}", KEY).publish(
            "feed", {"n": 1}, id="same"
        )
        via_hub = await app.hub.publish("feed", {"n": 1}, id="same")
        assert (direct.offset, via_http.offset, via_hub.offset) == (1, 1, 1)
        assert (via_http.duplicate, via_hub.duplicate) == (True, True)
