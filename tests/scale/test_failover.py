"""A node dies (SIGKILL) while a publisher streams: its clients resume on another node.

Every subscriber ends with every message exactly once, in order, and no gap;
a user who was only on the dead node leaves presence within the presence TTL.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from openline.asyncio.client import connect
from openline.hub import Client
from openline.hub.events import ClientEvent, Connected, Gap, Publication, Resumed

from ..redis_server import RedisServer
from .nodes import MS, PRESENCE_TTL, TIMEOUT, bounded, hub_client, need_redis_package, running_nodes

TOTAL = 600
KILL_AT = 200
#: Beyond the TTL: the engine's sweep period and a loaded machine.
PRESENCE_SLACK = 2500 * MS


class Recorder:
    """A subscriber's items and events, with the time of each event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[Publication | Gap] = []
        self.events: list[tuple[float, ClientEvent]] = []

    def record(self, event: ClientEvent) -> None:
        self.events.append((time.monotonic(), event))

    def resumed_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first resumed subscription after it."""
        times = [t for t, e in self.events if isinstance(e, Resumed) and t > moment]
        return times[0] - moment if times else None

    def reconnected_after(self, moment: float) -> bool:
        return any(isinstance(e, Connected) and t > moment for t, e in self.events)


async def consume(sub: Any, recorder: Recorder) -> None:
    async for item in sub:
        if isinstance(item, (Publication, Gap)):
            recorder.items.append(item)
        if isinstance(item, Publication) and item.data == TOTAL - 1:
            return


async def presence_watch(url: str, leaves: dict[str, float]) -> None:
    """Watch ``lobby``'s presence from a raw connection; note when each user leaves."""
    async with connect(url, subprotocols=["openline.v1"]) as ws:
        await ws.send(json.dumps({"type": "subscribe", "ch": "lobby", "presence": True}))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "leave":
                leaves[message["user"]] = time.monotonic()


@bounded(40)
async def test_clients_of_a_killed_node_resume_on_another_exactly_once(
    redis_server: RedisServer,
) -> None:
    need_redis_package()
    async with running_nodes(redis_server.url, 3) as (doomed, second, third):
        everyone = [doomed.url, second.url, third.url]
        # Two subscribers on the doomed node, one on each of the others: each client
        # knows every node, starting with its own.
        homes = [0, 0, 1, 2]
        recorders = [Recorder(f"sub{i}@node{home}") for i, home in enumerate(homes)]
        subscribers = [
            hub_client(everyone[home:] + everyone[:home], f"sub{i}", recorder.record)
            for i, (home, recorder) in enumerate(zip(homes, recorders, strict=True))
        ]
        publisher = hub_client([second.url, third.url], "publisher")
        clients: list[Client] = [*subscribers, publisher]
        leaves: dict[str, float] = {}
        watcher = asyncio.ensure_future(presence_watch(third.url, leaves))
        # A user present only on the doomed node, who never comes back.
        ghost = await connect(
            doomed.url,
            subprotocols=["openline.v1"],
            additional_headers={"Authorization": "Bearer ghost"},
        )
        tasks: list[asyncio.Future[Any]] = [watcher]
        try:
            await ghost.send(json.dumps({"type": "subscribe", "ch": "lobby"}))
            await asyncio.gather(*(client.start() for client in clients))
            subs = await asyncio.gather(*(client.subscribe("stream") for client in subscribers))
            tasks += [
                asyncio.ensure_future(consume(s, r)) for s, r in zip(subs, recorders, strict=True)
            ]
            published = 0
            killed_at = 0.0
            start = time.monotonic()
            for n in range(TOTAL):
                if n == KILL_AT:
                    doomed.kill()
                    killed_at = time.monotonic()
                await publisher.publish("stream", n)
                published += 1
                if n % 20 == 19:
                    await asyncio.sleep(2 * MS)
            await asyncio.wait_for(asyncio.gather(*tasks[1:]), TIMEOUT)
            elapsed = time.monotonic() - start
            # The ghost's presence outlives its node by at most the TTL (and a sweep).
            left_after = max(0.0, await _wait_leave(leaves, "ghost", killed_at) - killed_at)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(client.close() for client in clients))
            ghost._transport.abort()

    print(
        f"\nfailover: node killed (SIGKILL) after {KILL_AT} of {TOTAL} messages, "
        f"{published} published in {elapsed:.2f} s"
    )
    for recorder, client in zip(recorders, subscribers, strict=True):
        numbers = [i.data for i in recorder.items if isinstance(i, Publication)]
        gaps = [i for i in recorder.items if isinstance(i, Gap)]
        lost = TOTAL - len(set(numbers))
        resumed = recorder.resumed_after(killed_at)
        moved = recorder.reconnected_after(killed_at)
        print(
            f"  {recorder.name}: {len(numbers)} delivered, {lost} lost, "
            f"{len(numbers) - len(set(numbers))} duplicates delivered "
            f"({client.stats['duplicates']} dropped by the client), {len(gaps)} gaps"
            + (
                f", resumed on another node {resumed * 1000:.0f} ms after the kill"
                if moved and resumed
                else ""
            )
        )
        assert not gaps, gaps
        assert numbers == list(range(TOTAL)), f"{recorder.name}: not every message once, in order"
        if recorder.name.endswith("@node0"):
            assert moved and resumed is not None
    print(
        f"  presence: the dead node's user left {left_after * 1000:.0f} ms after the kill "
        f"(presence TTL {PRESENCE_TTL * 1000:.0f} ms)"
    )
    assert left_after <= PRESENCE_TTL + PRESENCE_SLACK


async def _wait_leave(leaves: dict[str, float], user: str, since: float) -> float:
    deadline = since + PRESENCE_TTL + PRESENCE_SLACK + 1
    while user not in leaves:
        assert time.monotonic() < deadline, f"{user} never left presence"
        await asyncio.sleep(10 * MS)
    return leaves[user]
