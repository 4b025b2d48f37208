"""Load is refused with a retry hint, never punished; refused publishes keep their order.

docs/protocol.md, "Errors, limits and abuse" and "Pacing and retries": the hub
announces its rate limit in ``welcome``, a ``rate_limited`` or ``too_large``
reply names the request it refuses, and after a retryable refusal of a publish
the later publishes of that connection wait for its retry.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from openline.exceptions import BackendUnavailable, ConnectionClosedError
from openline.hub import hub as hub_module
from openline.hub.backends.base import Engine

from .helpers import MS, run_hub


async def test_welcome_omits_the_rate_when_there_is_no_rate_limit(engine: Engine) -> None:
    async with run_hub(engine, rate_limit=None, max_buffer=None) as running:
        client = await running.client()
        limits = client.welcome["limits"]
        assert "rate" not in limits and "burst" not in limits and "buffer" not in limits


async def test_welcome_announces_a_fractional_rate(engine: Engine) -> None:
    async with run_hub(engine, rate_limit=(30, 60.0)) as running:
        client = await running.client()
        assert client.welcome["limits"]["rate"] == 0.5
        assert client.welcome["limits"]["burst"] == 30


async def test_a_rate_limited_publish_is_named_and_told_when_to_retry(engine: Engine) -> None:
    # Buckets refill slowly in these tests, so that a busy machine's delays between
    # two sends can't refill them and change the outcome.
    async with run_hub(engine, rate_limit=(2, 10.0)) as running:
        client = await running.client()
        for n in range(3):
            await client.send(type="publish", ch="a", data=n, id=f"m{n}", rid=n)
        await client.expect("ack", rid=0)
        await client.expect("ack", rid=1)
        error = await client.expect_error("rate_limited", rid=2, ch="a", id="m2")
        # Two per 10 s: one message's worth comes back within 5 s.
        assert 0 < error["retry_after"] <= 5.0


async def test_a_publish_after_a_refused_one_waits_for_its_retry(engine: Engine) -> None:
    async with run_hub(engine, rate_limit=(1, 1.0)) as running:
        client = await running.client()
        await client.send(type="publish", ch="a", data=1, id="m1", rid=1)
        await client.send(type="publish", ch="a", data=2, id="m2", rid=2)
        await client.expect("ack", rid=1, offset=1)
        refused = await client.expect_error("rate_limited", id="m2")
        await asyncio.sleep(refused["retry_after"] + 20 * MS)
        # m3 would find room, but m2 must come first: m3 is held.
        await client.send(type="publish", ch="a", data=3, id="m3", rid=3)
        held = await client.expect_error("rate_limited", rid=3, id="m3")
        assert "m2" in held["reason"]
        await client.send(type="publish", ch="a", data=2, id="m2", rid=4)
        await client.expect("ack", rid=4, offset=2, duplicate=False)
        await asyncio.sleep(1.0 + 20 * MS)
        await client.send(type="publish", ch="a", data=3, id="m3", rid=5)
        await client.expect("ack", rid=5, offset=3)
        assert running.hub.metrics()["publishes"] == 3


async def test_a_hold_lapses_when_the_refused_publish_never_comes_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "HOLD_SECONDS", 0.2)
    async with run_hub(engine, rate_limit=(1, 1.0)) as running:
        client = await running.client()
        await client.send(type="publish", ch="a", data=1, id="m1")
        await client.send(type="publish", ch="a", data=2, id="m2")
        await client.expect("ack", id="m1")
        refused = await client.expect_error("rate_limited", id="m2")
        # Past the hold, and the bucket has room again: m3 goes through without m2.
        await asyncio.sleep(max(0.25, refused["retry_after"] + 20 * MS))
        ack = await client.publish("a", 3, id="m3")
        assert ack["offset"] == 2


async def test_load_is_not_abuse(engine: Engine) -> None:
    async with run_hub(engine, rate_limit=(5, 10.0), max_errors=(3, 10.0)) as running:
        client = await running.client()
        for n in range(100):
            await client.send(type="publish", ch="a", data=n, id=f"m{n}", rid=n)
        replies = [await client.recv() for _ in range(100)]
        codes = [r["type"] if r["type"] != "error" else r["code"] for r in replies]
        # The burst, then m5 refused and every later one held behind it.
        assert codes == ["ack"] * 5 + ["rate_limited"] * 95
        # Still open: the client waits as told and goes on from m5.
        await asyncio.sleep(replies[5]["retry_after"] + 20 * MS)
        await client.send(type="publish", ch="a", data=5, id="m5", rid="again")
        await client.expect("ack", rid="again")
        assert running.hub.metrics()["abuse_closes"] == 0


async def test_a_message_over_the_size_limit_is_named_and_is_not_abuse(engine: Engine) -> None:
    async with run_hub(engine, max_message_size=1000, max_errors=(2, 10.0)) as running:
        client = await running.client()
        for n in range(4):
            await client.send(type="publish", ch="a", data="x" * 1500, id=f"big{n}", rid=n)
            await client.expect_error("too_large", rid=n, ch="a", id=f"big{n}")
        await client.send(type="ping", rid="alive")
        await client.expect("pong", rid="alive")


async def test_a_flood_that_ignores_retry_after_closes_with_1008(engine: Engine) -> None:
    grace = hub_module.FLOOD_GRACE
    async with run_hub(engine, rate_limit=(1, 100.0), max_errors=(5, 10.0)) as running:
        client = await running.client()
        await client.send(type="ping")
        await client.expect("pong")
        started = time.monotonic()
        closed: ConnectionClosedError | None = None
        # Bounded: one ping every 50 ms, for at most the grace and 5 s more.
        for _ in range(int((grace + 5.0) / 0.05)):
            try:
                await client.send(type="ping")
                while True:
                    reply = await client.recv(timeout=50 * MS)
                    assert reply["code"] == "rate_limited"
            except TimeoutError:
                continue
            except ConnectionClosedError as exc:
                closed = exc
                break
        assert closed is not None and closed.code == 1008
        elapsed = time.monotonic() - started
        assert elapsed > grace
        print(f"flood closed with 1008 after {elapsed:.2f} s (grace {grace} s)")


class FlakyEngine:
    """An engine whose store can be cut off and restored."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise BackendUnavailable("the store is down")
        return await self._engine.publish(*args, **kwargs)


async def test_publishes_after_an_unavailable_one_wait_for_its_retry(engine: Engine) -> None:
    flaky = FlakyEngine(engine)
    async with run_hub(flaky) as running:  # type: ignore[arg-type]
        client = await running.client()
        flaky.down = True
        await client.send(type="publish", ch="a", data=1, id="m1", rid=1)
        await client.expect_error("unavailable", rid=1, id="m1")
        flaky.down = False
        await client.send(type="publish", ch="a", data=2, id="m2", rid=2)
        await client.expect_error("unavailable", rid=2, id="m2")
        assert (await client.publish("a", 1, id="m1"))["offset"] == 1
        assert (await client.publish("a", 2, id="m2"))["offset"] == 2
