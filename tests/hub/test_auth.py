"""Authentication at the handshake (401/403) and per-channel permissions (forbidden)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from openline.asyncio.client import connect
from openline.asyncio.server import ServerConnection
from openline.exceptions import InvalidStatus
from openline.hub import Action, Credentials, Identity, Reject
from openline.hub.backends.base import Engine
from openline.protocol.http11 import Request, Response

from .helpers import RunningHub, run_hub

TOKENS = {"t-alice": "alice", "t-bob": "bob", "t-banned": "eve"}


async def authenticate(credentials: Credentials) -> Identity | None:
    await asyncio.sleep(0)  # an async hook, as a database lookup would be
    if "room" in credentials.query:
        assert credentials.query["room"] == ["1"]
        assert credentials.remote_address[0] == "127.0.0.1"
    user = TOKENS.get(credentials.token or "")
    if user is None:
        return None
    if user == "eve":
        raise Reject(403, "banned")
    return Identity(user, {"name": user.title()})


async def refused(running: RunningHub, path: str = "/", **kwargs: Any) -> InvalidStatus:
    kwargs.setdefault("subprotocols", ["openline.v1"])
    with pytest.raises(InvalidStatus) as caught:
        await connect(running.url.rstrip("/") + path, **kwargs)
    return caught.value


async def test_no_token_is_refused_with_401(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate) as running:
        error = await refused(running)
        assert error.status == 401
        response = error.response
        assert isinstance(response, Response)
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_an_unknown_token_is_refused_with_401(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate) as running:
        assert (await refused(running, "/?token=nope")).status == 401


async def test_a_rejected_user_is_refused_with_the_hooks_status(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate) as running:
        error = await refused(running, "/?token=t-banned")
        assert error.status == 403
        assert isinstance(error.response, Response)
        assert error.response.body == b"banned\n"


@pytest.mark.parametrize("where", ["header", "query", "subprotocol"])
async def test_the_token_can_come_from_a_header_the_query_or_a_subprotocol(
    engine: Engine, where: str
) -> None:
    async with run_hub(engine, authenticate=authenticate) as running:
        if where == "header":
            client = await running.client(additional_headers={"Authorization": "Bearer t-alice"})
        elif where == "query":
            client = await running.client("/?room=1&token=t-alice")
        else:
            client = await running.client(subprotocols=["openline.v1", "openline.token.t-alice"])
            # The token offer is never chosen: the hub speaks openline.v1.
            assert client.ws.subprotocol == "openline.v1"
        assert client.welcome["user"] == "alice"
        assert client.welcome["client"] != "alice"


async def test_the_identity_info_is_shown_in_presence(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate) as running:
        client = await running.client("/?token=t-alice")
        await client.subscribe("room", presence=True)
        snapshot = await client.expect("presence")
        assert snapshot["users"] == [{"user": "alice", "info": {"name": "Alice"}, "clients": 1}]


async def test_a_client_that_doesnt_offer_the_subprotocol_is_refused_with_400(
    engine: Engine,
) -> None:
    async with run_hub(engine) as running:
        assert (await refused(running, subprotocols=None)).status == 400
        assert (await refused(running, subprotocols=["chat"])).status == 400


async def test_a_process_request_hook_runs_first(engine: Engine) -> None:
    def health(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/health":
            return Response.plain(200, "ok\n")
        return None

    async with run_hub(engine, serve={"process_request": health}) as running:
        error = await refused(running, "/health")
        assert error.status == 200
        client = await running.client()
        assert client.welcome["type"] == "welcome"


async def test_a_failing_authenticate_hook_answers_500(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(credentials: Credentials) -> Identity:
        raise RuntimeError("oops")

    caplog.set_level(logging.CRITICAL, logger="openline.server")
    async with run_hub(engine, authenticate=broken) as running:
        assert (await refused(running, "/?token=x")).status == 500


async def test_an_identity_without_a_user_is_a_server_error(engine: Engine) -> None:
    async with run_hub(engine, authenticate=lambda credentials: Identity("")) as running:
        logging.getLogger("openline.server").disabled = True
        try:
            assert (await refused(running, "/?token=x")).status == 500
        finally:
            logging.getLogger("openline.server").disabled = False


def only_own_rooms(identity: Identity, action: Action, ch: str) -> bool:
    """alice may use rooms starting with "alice" and read (not publish to) "news"."""
    if ch == "news":
        return action == "subscribe"
    if ch == "lobby":
        return action != "presence"
    return ch.startswith(identity.user)


async def test_a_refused_subscribe_is_answered_forbidden(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate, authorize=only_own_rooms) as running:
        alice = await running.client("/?token=t-alice")
        await alice.send(type="subscribe", ch="bob-room", rid=1)
        await alice.expect_error("forbidden", ch="bob-room", rid=1)
        await alice.subscribe("alice-room")
        await alice.subscribe("news")


async def test_a_refused_publish_is_answered_forbidden_with_its_id(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate, authorize=only_own_rooms) as running:
        alice = await running.client("/?token=t-alice")
        await alice.subscribe("news")
        await alice.send(type="publish", ch="news", data="spam", id="m1", rid=2)
        await alice.expect_error("forbidden", ch="news", id="m1", rid=2)
        await alice.silent()  # and nothing was published


async def test_refused_presence_is_answered_forbidden(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate, authorize=only_own_rooms) as running:
        alice = await running.client("/?token=t-alice")
        await alice.send(type="subscribe", ch="lobby", presence=True, rid=3)
        await alice.expect_error("forbidden", ch="lobby", rid=3)
        await alice.subscribe("lobby")
        await alice.send(type="presence", ch="lobby", rid=4)
        await alice.expect_error("forbidden", ch="lobby", rid=4)
        await alice.send(type="state", ch="lobby", state={"typing": True}, rid=5)
        await alice.expect_error("forbidden", ch="lobby", rid=5)


async def test_the_authorize_hook_sees_each_action(engine: Engine) -> None:
    seen: list[tuple[str, str, str]] = []

    async def record(identity: Identity, action: Action, ch: str) -> bool:
        seen.append((identity.user, action, ch))
        return True

    async with run_hub(engine, authenticate=authenticate, authorize=record) as running:
        bob = await running.client("/?token=t-bob")
        await bob.subscribe("r", presence=True)
        await bob.expect("presence")
        await bob.publish("r", 1)
        await bob.send(type="state", ch="r", state={})
        # bob watches presence: he sees his own state (and, in no fixed order
        # with the ack, his own message).
        state, _ = await bob.recv_until("state")
        assert state["user"] == "bob"
        await bob.send(type="presence", ch="r")
        await bob.expect("presence")
        assert seen == [
            ("bob", "subscribe", "r"),
            ("bob", "presence", "r"),
            ("bob", "publish", "r"),
            ("bob", "presence", "r"),
            ("bob", "presence", "r"),
        ]


def test_reject_wants_a_4xx_status() -> None:
    with pytest.raises(ValueError, match="4xx"):
        Reject(500)
    assert str(Reject(401, "who are you")) == "HTTP 401: who are you"


async def test_identities_of_failed_handshakes_are_forgotten(engine: Engine) -> None:
    async with run_hub(engine, authenticate=authenticate) as running:
        # A handshake that passes the hook, then fails in the WebSocket checks.
        port = running.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /?token=t-alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: openline.v1\r\n\r\n"  # no key: a 400
        )
        assert (await reader.read()).startswith(b"HTTP/1.1 400")  # read to the server's EOF
        writer.close()
        await writer.wait_closed()
        # Stored by the hook, not yet swept: the next handshake sweeps it.
        assert len(running.hub._identities) == 1
        await running.client("/?token=t-bob")
        assert running.hub._identities == {}
