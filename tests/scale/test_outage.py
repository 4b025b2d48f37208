"""Redis goes away under running nodes: lines stay open, and nothing is lost silently.

* Redis restarted without persistence (its data gone): the nodes recover, and
  subscribers get a ``gap`` into the new epoch, never a silent hole.
* Redis stopped (with persistence) or frozen (SIGSTOP) for a few seconds: the
  clients' lines stay open, ``/healthz`` says 503 "degraded", publishes made
  meanwhile are retried by the client, and delivery resumes with nothing lost.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from openline.hub import Client
from openline.hub.events import ClientEvent, Disconnected, Gap, Publication

from ..redis_server import RedisServer, redis_server_binary
from .nodes import (
    MS,
    TIMEOUT,
    Node,
    bounded,
    hub_client,
    need_redis_package,
    running_nodes,
    wait_for,
)

#: How long Redis stays away.
OUTAGE = 5000 * MS
TOTAL = 300
#: Seconds before the nodes give up on a Redis command.
REDIS_TIMEOUT = 1000 * MS


class Subscriber:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.items: list[Publication | Gap] = []
        self.events: list[ClientEvent] = []

    async def consume(self, sub: Any, last: int) -> None:
        async for item in sub:
            if isinstance(item, (Publication, Gap)):
                self.items.append(item)
            if isinstance(item, Publication) and item.data == last:
                return

    def numbers(self) -> list[int]:
        return [item.data for item in self.items if isinstance(item, Publication)]


def assert_no_silent_hole(items: list[Publication | Gap]) -> None:
    """Each message once, in order; a value missing only where a gap says so."""
    previous: int | None = None
    gap_since_previous = False
    for item in items:
        if isinstance(item, Gap):
            gap_since_previous = True
            continue
        number = item.data
        if previous is not None:
            assert number > previous, f"{number} after {previous}: a duplicate or a reorder"
            assert number == previous + 1 or gap_since_previous, (
                f"{previous + 1}..{number - 1} missing without a gap"
            )
        previous, gap_since_previous = number, False


async def publish_all(client: Client, total: int, progress: list[int]) -> None:
    for n in range(total):
        await client.publish("stream", n)
        progress[0] = n + 1
        await asyncio.sleep(2 * MS)


@bounded(40)
async def test_redis_restarted_without_persistence_gives_a_gap_into_a_new_epoch(
    redis_server: RedisServer,
) -> None:
    need_redis_package()
    async with running_nodes(redis_server.url, 2) as nodes:
        subscribers = [Subscriber(hub_client(node.url, f"sub{n}")) for n, node in enumerate(nodes)]
        publisher = hub_client(nodes[0].url, "publisher")
        clients = [s.client for s in subscribers] + [publisher]
        tasks: list[asyncio.Future[Any]] = []
        try:
            await asyncio.gather(*(client.start() for client in clients))
            subs = [await s.client.subscribe("stream") for s in subscribers]
            tasks = [
                asyncio.ensure_future(s.consume(sub, TOTAL - 1))
                for s, sub in zip(subscribers, subs, strict=True)
            ]
            for n in range(TOTAL // 2):
                await publisher.publish("stream", n)
            redis_server.kill()  # everything Redis held is gone
            redis_server.start()
            restarted = time.monotonic()
            for n in range(TOTAL // 2, TOTAL):
                await asyncio.wait_for(publisher.publish("stream", n), TIMEOUT)
            await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
            recovered = time.monotonic() - restarted
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(client.close() for client in clients))
    print(
        f"\nRedis restarted empty: all {TOTAL} published, and delivered, "
        f"{recovered:.2f} s after the restart"
    )
    for n, subscriber in enumerate(subscribers):
        items = subscriber.items
        assert_no_silent_hole(items)
        first_epoch = next(i.epoch for i in items if isinstance(i, Publication))
        last = items[-1]
        assert isinstance(last, Publication) and last.epoch != first_epoch, "no new epoch"
        gaps = [i for i in items if isinstance(i, Gap)]
        assert any(g.epoch == last.epoch and g.since and g.since[0] == first_epoch for g in gaps), (
            gaps
        )
        numbers = subscriber.numbers()
        print(
            f"  sub{n}: {len(numbers)} delivered, {TOTAL - len(set(numbers))} lost "
            f"(announced by {len(gaps)} gap(s)), epoch {first_epoch[:8]}… → {last.epoch[:8]}…"
        )


@pytest.mark.parametrize("outage", ["stop", "freeze"])
@bounded(40)
async def test_redis_away_for_seconds_keeps_lines_open_and_loses_nothing(outage: str) -> None:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    need_redis_package()
    with RedisServer(persist=True) as redis:
        # A hung Redis counts as down after --redis-timeout: short, to see "degraded".
        async with running_nodes(redis.url, 2, "--redis-timeout", str(REDIS_TIMEOUT)) as nodes:
            await _stream_through_an_outage(redis, nodes, outage)


async def _stream_through_an_outage(redis: RedisServer, nodes: list[Node], outage: str) -> None:
    subscribers = [Subscriber(hub_client(node.url, f"sub{n}")) for n, node in enumerate(nodes)]
    for subscriber in subscribers:
        subscriber.client._on_event = subscriber.events.append
    publisher = hub_client(nodes[0].url, "publisher")
    clients = [s.client for s in subscribers] + [publisher]
    progress = [0]
    tasks: list[asyncio.Future[Any]] = []
    statuses: list[int] = []
    try:
        await asyncio.gather(*(client.start() for client in clients))
        subs = [await s.client.subscribe("stream") for s in subscribers]
        tasks = [
            asyncio.ensure_future(s.consume(sub, TOTAL - 1))
            for s, sub in zip(subscribers, subs, strict=True)
        ]
        tasks.append(asyncio.ensure_future(publish_all(publisher, TOTAL, progress)))
        await wait_for(lambda: progress[0] >= TOTAL // 4)
        before = progress[0]
        redis.stop() if outage == "stop" else redis.freeze()
        away = time.monotonic()
        while time.monotonic() - away < OUTAGE:
            statuses.append((await nodes[1].health())[0])
            await asyncio.sleep(200 * MS)
        during = progress[0] - before
        redis.start() if outage == "stop" else redis.thaw()
        back = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
        caught_up = time.monotonic() - back
        # Before close(), which reports a Disconnected of its own.
        dropped = [[e for e in s.events if isinstance(e, Disconnected)] for s in subscribers]
        status, health = await nodes[1].health()
        deadline = time.monotonic() + TIMEOUT
        while status != 200 and time.monotonic() < deadline:
            await asyncio.sleep(50 * MS)
            status, health = await nodes[1].health()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(client.close() for client in clients))
    print(
        f"\nRedis {'stopped' if outage == 'stop' else 'frozen'} for {OUTAGE:.1f} s mid-stream: "
        f"{during} publishes acked meanwhile, caught up {caught_up:.2f} s after its return; "
        f"/healthz during: {sorted(set(statuses))}, after: {status} {health.get('engine')}"
    )
    for n, subscriber in enumerate(subscribers):
        assert not dropped[n], f"sub{n}: the line closed during the outage: {dropped[n]}"
        assert not [i for i in subscriber.items if isinstance(i, Gap)], f"sub{n}: a gap"
        assert subscriber.numbers() == list(range(TOTAL)), (
            f"sub{n}: not every message once, in order"
        )
    assert 503 in statuses, f"/healthz never said degraded: {statuses}"
    assert status == 200, f"/healthz still says {status} after Redis returned: {health}"
