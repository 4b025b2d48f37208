"""No silent drops: every refused message gets an ``error`` reply; abuse closes with 1008."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openline.exceptions import BackendUnavailable, ConnectionClosedError
from openline.hub import Identity
from openline.hub.backends.base import Engine

from .helpers import HubClient, run_hub

LONG = "x" * 201

# (raw message, expected code, fields the error must echo)
MALFORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("not json", "bad_request", {}),
    ("{", "bad_request", {}),
    ('{"type": "ping", "x": NaN}', "bad_request", {}),
    ('{"type": "ping", "x": Infinity}', "bad_request", {}),
    ("[1, 2]", "bad_request", {}),
    ('"ping"', "bad_request", {}),
    ("42", "bad_request", {}),
    ("null", "bad_request", {}),
    ('{"rid": 1}', "bad_request", {"rid": 1}),
    ('{"type": 5, "rid": 2}', "bad_request", {"rid": 2}),
    ('{"type": "dance", "rid": 3}', "unknown_type", {"rid": 3}),
    ('{"type": "ping", "rid": {"a": 1}}', "bad_request", {}),
    ('{"type": "ping", "rid": true}', "bad_request", {}),
    ('{"type": "ping", "rid": ""}', "bad_request", {}),
    ('{"type": "subscribe", "rid": 4}', "bad_request", {"rid": 4}),
    ('{"type": "subscribe", "ch": 7, "rid": 5}', "bad_request", {"rid": 5}),
    ('{"type": "subscribe", "ch": ""}', "bad_request", {}),
    (json.dumps({"type": "subscribe", "ch": LONG}), "bad_request", {}),
    ('{"type": "subscribe", "ch": "a\\u0000b"}', "bad_request", {}),
    ('{"type": "subscribe", "ch": "\\ud800"}', "bad_request", {}),
    ('{"type": "subscribe", "ch": "a", "presence": "yes"}', "bad_request", {"ch": "a"}),
    ('{"type": "subscribe", "ch": "a", "since": 5}', "bad_request", {"ch": "a"}),
    ('{"type": "subscribe", "ch": "a", "since": {"offset": 1}}', "bad_request", {"ch": "a"}),
    ('{"type": "subscribe", "ch": "a", "since": {"epoch": "e"}}', "bad_request", {"ch": "a"}),
    (
        '{"type": "subscribe", "ch": "a", "since": {"epoch": "e", "offset": -1}}',
        "bad_request",
        {"ch": "a"},
    ),
    (
        '{"type": "subscribe", "ch": "a", "since": {"epoch": "e", "offset": 1.5}}',
        "bad_request",
        {"ch": "a"},
    ),
    (
        '{"type": "subscribe", "ch": "a", "since": {"epoch": "e", "offset": true}}',
        "bad_request",
        {"ch": "a"},
    ),
    (
        '{"type": "subscribe", "ch": "a", "since": {"epoch": 3, "offset": 1}}',
        "bad_request",
        {"ch": "a"},
    ),
    ('{"type": "unsubscribe"}', "bad_request", {}),
    ('{"type": "unsubscribe", "ch": "a", "rid": "u"}', "not_subscribed", {"ch": "a", "rid": "u"}),
    ('{"type": "publish", "ch": "a"}', "bad_request", {"ch": "a"}),
    ('{"type": "publish", "data": 1}', "bad_request", {}),
    ('{"type": "publish", "ch": "a", "data": 1, "id": 5}', "bad_request", {"ch": "a"}),
    ('{"type": "publish", "ch": "a", "data": 1, "id": ""}', "bad_request", {"ch": "a"}),
    (json.dumps({"type": "publish", "ch": "a", "data": 1, "id": LONG}), "bad_request", {"ch": "a"}),
    (
        '{"type": "publish", "ch": "a", "data": "\\udc00", "id": "m"}',
        "bad_request",
        {"ch": "a", "id": "m"},
    ),
    ('{"type": "state", "ch": "a", "state": {}}', "not_subscribed", {"ch": "a"}),
    ('{"type": "presence"}', "bad_request", {}),
]


@pytest.mark.parametrize(("raw", "code", "echo"), MALFORMED, ids=[m[0][:40] for m in MALFORMED])
async def test_a_malformed_message_gets_an_error_and_the_connection_lives_on(
    engine: Engine, raw: str, code: str, echo: dict[str, Any]
) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.send_raw(raw)
        error = await client.expect_error(code)
        assert isinstance(error["reason"], str) and error["reason"]
        for key in ("rid", "ch", "id"):
            assert error.get(key) == echo.get(key), (key, error)
        await client.send(type="ping", rid="alive")
        await client.expect("pong", rid="alive")
        assert running.hub.metrics()[f"errors.{code}"] == 1


@pytest.mark.parametrize(
    ("state", "code"),
    [([1], "bad_request"), ("typing", "bad_request"), (True, "bad_request"), (None, None)],
)
async def test_state_must_be_an_object_or_null(
    engine: Engine, state: Any, code: str | None
) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.subscribe("a")
        await client.send(type="state", ch="a", state=state, rid="s")
        if code is None:
            await client.silent()
        else:
            await client.expect_error(code, rid="s", ch="a")


async def test_state_without_the_field_is_refused(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.subscribe("a")
        await client.send(type="state", ch="a")
        await client.expect_error("bad_request", ch="a")


async def test_a_binary_frame_is_refused(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.send_raw(b'{"type": "ping"}')
        error = await client.expect_error("bad_request")
        assert "binary" in error["reason"]


async def test_a_message_over_the_size_limit_is_refused(engine: Engine) -> None:
    async with run_hub(engine, max_message_size=1000) as running:
        client = await running.client()
        big = {"type": "publish", "ch": "a", "data": "é" * 600, "rid": 1}  # 1200 bytes
        await client.send_raw(json.dumps(big, ensure_ascii=False))
        error = await client.expect_error("too_large")
        assert "1000 bytes" in error["reason"]
        fine = {"type": "publish", "ch": "a", "data": "é" * 400}  # 800 bytes
        await client.send_raw(json.dumps(fine, ensure_ascii=False))
        await client.expect("ack", offset=1)


async def test_a_message_far_over_the_size_limit_closes_with_1009(engine: Engine) -> None:
    async with run_hub(engine, max_message_size=1000) as running:
        client = await running.client()
        await client.send(type="publish", ch="a", data="x" * 5000)
        with pytest.raises(ConnectionClosedError) as caught:
            await client.recv()
        assert caught.value.code == 1009


async def test_a_state_over_the_size_limit_is_refused(engine: Engine) -> None:
    async with run_hub(engine, max_state_size=20) as running:
        client = await running.client()
        await client.subscribe("a")
        await client.send(type="state", ch="a", state={"text": "x" * 30})
        await client.expect_error("too_large", ch="a")


async def test_subscribing_twice_is_refused(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.subscribe("a")
        await client.send(type="subscribe", ch="a", rid=9)
        await client.expect_error("already_subscribed", ch="a", rid=9)


async def test_subscriptions_beyond_the_limit_are_refused(engine: Engine) -> None:
    async with run_hub(engine, max_subscriptions=2) as running:
        client = await running.client()
        await client.subscribe("a")
        await client.subscribe("b")
        await client.send(type="subscribe", ch="c")
        await client.expect_error("limit_exceeded", ch="c")
        await client.send(type="unsubscribe", ch="a")
        await client.expect("unsubscribed")
        await client.subscribe("c")


async def test_too_many_messages_per_second_are_refused(engine: Engine) -> None:
    async with run_hub(engine, rate_limit=(5, 10.0), max_errors=None) as running:
        client = await running.client()
        for n in range(5):
            await client.send(type="ping", rid=n)
        for n in range(5):
            await client.expect("pong", rid=n)
        await client.send(type="ping", rid="over")
        await client.expect_error("rate_limited")


async def test_repeated_errors_close_the_connection_with_1008(engine: Engine) -> None:
    async with run_hub(engine, max_errors=(5, 10.0)) as running:
        client = await running.client()
        for _ in range(5):
            await client.send_raw("garbage")
        for _ in range(5):
            await client.expect_error("bad_request")
        with pytest.raises(ConnectionClosedError) as caught:
            await client.recv()
        assert caught.value.code == 1008
        assert caught.value.reason == "too many errors"
        assert running.hub.metrics()["abuse_closes"] == 1


async def test_errors_spread_out_in_time_dont_close(engine: Engine) -> None:
    now = [0.0]
    async with run_hub(engine, max_errors=(3, 10.0)) as running:
        client = await running.client()
        session = next(iter(running.hub._sessions))
        # Errors 11 s apart never make three within 10 s.
        for _ in range(5):
            now[0] += 11.0
            assert session.count_error(now[0]) is False
        await client.send_raw("garbage")
        await client.expect_error("bad_request")
        await client.send(type="ping")
        await client.expect("pong")


async def test_a_failing_hook_answers_internal_and_doesnt_count_as_abuse(engine: Engine) -> None:
    def authorize(identity: Identity, action: str, ch: str) -> bool:
        raise RuntimeError("database is down")

    async with run_hub(engine, authorize=authorize, max_errors=(2, 10.0)) as running:
        client = await running.client()
        for n in range(3):
            await client.send(type="publish", ch="a", data=1, id=f"m{n}", rid=n)
            error = await client.expect_error("internal", ch="a", id=f"m{n}", rid=n)
            assert "database" not in error["reason"]  # no internals on the wire
        await client.send(type="ping")
        await client.expect("pong")


class DownEngine:
    """An engine whose store can't be reached."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("redis is down")


async def test_an_unreachable_store_answers_unavailable(engine: Engine) -> None:
    async with run_hub(DownEngine(engine)) as running:
        client = await running.client()
        await client.send(type="publish", ch="a", data=1, rid="p")
        await client.expect_error("unavailable", ch="a", rid="p")
        assert running.hub.metrics()["errors.unavailable"] == 1


async def test_error_replies_are_counted_by_code(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client: HubClient = await running.client()
        await client.send_raw("garbage")
        await client.expect_error("bad_request")
        await client.send(type="what")
        await client.expect_error("unknown_type")
        await client.send(type="ping")
        await client.expect("pong")
        metrics = running.hub.metrics()
        assert metrics["errors.bad_request"] == 1
        assert metrics["errors.unknown_type"] == 1
        assert metrics["messages_in"] == 3
        assert metrics["messages_out"] == 4  # welcome, two errors, pong
        assert metrics["connections"] == 1
        await client.close()
