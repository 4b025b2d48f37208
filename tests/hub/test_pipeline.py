"""Pipelined publishes: a connection's publishes go to the engine in batches while
the hub keeps reading, yet are stored, answered and delivered in the order sent,
with the idempotency and the hold after a refusal of publishing one at a time.

Each test runs on every engine. A burst is sent in one write (``send_nowait``
in one loop turn), so that the hub reads it at once; the engine is wrapped to
hold its first publish until the hub has read the whole burst (so that the
batches are certain, not a matter of timing) and to record the batches; a batch
goes to the engine's own ``publish_many`` where it has one (Redis: one
pipeline), else one publish after the other.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from openline.exceptions import BackendUnavailable
from openline.hub.backends.base import Engine, PublishResult

from .helpers import HubClient, RunningHub, run_hub, wait_for


class GatedEngine:
    """An engine whose first publish waits for :attr:`gate`; it records every batch."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.gate = asyncio.Event()
        self.batches: list[int] = []
        #: Publishes after this many fail as if the store were down; ``None``: none fail.
        self.fail_after: int | None = None
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def _wait(self) -> None:
        if self.calls == 0:
            await self.gate.wait()
        self.calls += 1

    def _down(self) -> bool:
        return self.fail_after is not None and self.calls > self.fail_after

    async def publish(self, *args: Any, **kwargs: Any) -> PublishResult:
        await self._wait()
        self.batches.append(1)
        if self._down():
            raise BackendUnavailable("the store is down")
        return await self._engine.publish(*args, **kwargs)

    async def publish_many(self, items: list[Any]) -> list[PublishResult | Exception]:
        await self._wait()
        self.batches.append(len(items))
        if self._down():
            return [BackendUnavailable("the store is down")] * len(items)
        inner = getattr(self._engine, "publish_many", None)
        if inner is not None:
            results: list[PublishResult | Exception] = await inner(items)
            return results
        return [
            await self._engine.publish(ch, data, msg_id=key, meta=meta)
            for ch, data, key, meta in items
        ]


def _burst(client: HubClient, messages: list[dict[str, Any]]) -> None:
    """Send ``messages`` in one write: the hub reads them at once."""
    for message in messages:
        client.ws.send_nowait(json.dumps(message))


async def _queued(running: RunningHub, count: int) -> None:
    """Wait until the hub read ``count`` messages behind the publish being stored."""

    def queued() -> bool:
        return any(len(s.publishes or ()) >= count for s in running.hub._sessions)

    await wait_for(queued)


async def test_a_burst_is_stored_answered_and_delivered_in_order(engine: Engine) -> None:
    gated = GatedEngine(engine)
    async with run_hub(gated) as running:  # type: ignore[arg-type]
        reader = await running.client()
        await reader.subscribe("a")
        writer = await running.client()
        sent: list[dict[str, Any]] = []
        for index in range(100):
            if index == 30:
                sent.append({"type": "ping", "rid": "ping"})
            elif index == 50:  # a retry of an earlier publish, in the same burst
                sent.append({"type": "publish", "ch": "a", "data": 10, "id": "m10", "rid": 50})
            else:
                sent.append(
                    {"type": "publish", "ch": "a", "data": index, "id": f"m{index}", "rid": index}
                )
        _burst(writer, sent)
        await _queued(running, 99)
        gated.gate.set()

        replies = [await writer.recv() for _ in sent]
        assert [reply.get("rid") for reply in replies] == [m["rid"] for m in sent]
        assert replies[30]["type"] == "pong"
        offsets = []
        for message, reply in zip(sent, replies, strict=True):
            if message["type"] != "publish":
                continue
            assert reply["type"] == "ack" and reply["id"] == message["id"], reply
            if message["rid"] == 50:  # m10 again: the eleventh publish's offset
                assert reply["duplicate"] is True and reply["offset"] == offsets[10]
            else:
                assert reply["duplicate"] is False
                offsets.append(reply["offset"])
        assert offsets == list(range(1, len(offsets) + 1))
        # Delivered once each, in the order published.
        delivered = await reader.messages(len(offsets))
        assert [m["offset"] for m in delivered] == offsets
        assert [m["data"] for m in delivered] == [i for i in range(100) if i not in (30, 50)]
        # The first publish alone, then batches that stop at the ping and at the size limit.
        assert gated.batches == [1, 29, 64, 5]


async def test_publishes_after_a_failed_batch_wait_for_its_retry(engine: Engine) -> None:
    gated = GatedEngine(engine)
    gated.fail_after = 1  # the first publish is stored; the store is down after it
    async with run_hub(gated) as running:  # type: ignore[arg-type]
        writer = await running.client()
        burst = [
            {"type": "publish", "ch": "a", "data": 1, "id": "m1", "rid": 1},
            {"type": "publish", "ch": "a", "data": 2, "id": "m2", "rid": 2},
            {"type": "publish", "ch": "a", "data": 3, "id": "m3", "rid": 3},
            {"type": "publish", "ch": "a", "data": 4, "rid": 4},
        ]
        _burst(writer, burst)
        await _queued(running, 3)
        gated.gate.set()
        await writer.expect("ack", rid=1, offset=1)
        # The first failure is the store's; the publishes after it wait for its retry,
        # exactly as when they are handled one at a time.
        first = await writer.expect_error("unavailable", rid=2, id="m2")
        assert first["reason"] == "try again later"
        for rid in (3, 4):
            held = await writer.expect_error("unavailable", rid=rid)
            assert "waiting for the retry of publish" in held["reason"]
        assert gated.batches == [1, 3]
        gated.fail_after = None
        # Retried in order: stored in order, after the first.
        assert (await writer.publish("a", 2, id="m2", rid=5))["offset"] == 2
        assert (await writer.publish("a", 3, id="m3", rid=6))["offset"] == 3
        assert (await writer.publish("a", 4, rid=7))["offset"] == 4
        # A retry of the one stored before the failure is recognised.
        again = await writer.publish("a", 1, id="m1", rid=8)
        assert again["duplicate"] is True and again["offset"] == 1


async def test_reading_waits_when_the_queue_is_full(engine: Engine) -> None:
    from openline.hub import hub as hub_module

    gated = GatedEngine(engine)
    limit = hub_module.PIPELINE_QUEUE
    async with run_hub(gated, rate_limit=None) as running:  # type: ignore[arg-type]
        writer = await running.client()
        total = limit + 50
        _burst(writer, [{"type": "publish", "ch": "a", "data": i, "rid": i} for i in range(total)])
        # The hub stops reading at the limit: the rest stays in the socket, unread.
        await _queued(running, limit)
        (session,) = [s for s in running.hub._sessions if s.publishes is not None]
        assert session.publishes is not None and len(session.publishes) == limit
        gated.gate.set()
        replies = [await writer.recv() for _ in range(total)]
        assert [reply["rid"] for reply in replies] == list(range(total))
        assert [reply["offset"] for reply in replies] == list(range(1, total + 1))


async def test_a_close_after_a_burst_is_answered_after_its_acks(engine: Engine) -> None:
    async with run_hub(engine) as running:
        writer = await running.client()
        _burst(writer, [{"type": "publish", "ch": "a", "data": i, "rid": i} for i in range(20)])
        closing = asyncio.ensure_future(writer.ws.close())
        acks = [await writer.recv() for _ in range(20)]
        await asyncio.wait_for(closing, 5)
        assert [ack["rid"] for ack in acks] == list(range(20))
        assert [ack["offset"] for ack in acks] == list(range(1, 21))
