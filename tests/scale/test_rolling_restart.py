"""A rolling restart of 3 nodes over Redis under load loses nothing.

One node at a time gets SIGTERM, drains (1012 with a retry hint, spread over
``--drain-seconds``), exits 0 and starts again on the same port, while a
publisher publishes throughout and subscribers spread over the nodes follow
the stream. Every subscriber ends with every message exactly once, in order,
with no gap; every redial after a 1012 waits at least its hint. Run with ``-s``
to see each node's drain time and each client's redials.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from openline.asyncio.drain import parse_retry_hint
from openline.exceptions import ConnectionClosed
from openline.hub import Client
from openline.hub.events import ClientEvent, Gap, Publication, Reconnecting

from ..redis_server import RedisServer
from .nodes import MS, TIMEOUT, Node, bounded, hub_client, need_redis_package, running_nodes

#: The nodes' drain window.
DRAIN = 1500 * MS
#: Messages published after the last node is back, so every client sees the end.
TAIL = 50
#: Subscribers per node.
PER_NODE = 2


class Follower:
    """One subscriber: what it received, and its redials."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[Publication | Gap] = []
        self.redials: list[Reconnecting] = []

    def record(self, event: ClientEvent) -> None:
        if isinstance(event, Reconnecting):
            self.redials.append(event)

    def numbers(self) -> list[Any]:
        return [item.data for item in self.items if isinstance(item, Publication)]


async def follow(sub: Any, follower: Follower) -> None:
    async for item in sub:
        if isinstance(item, (Publication, Gap)):
            follower.items.append(item)


async def publish_until(publisher: Client, done: asyncio.Event) -> int:
    """Publish 0, 1, 2... until ``done``, then :data:`TAIL` more; return how many."""
    n = 0
    while not done.is_set():
        await publisher.publish("stream", n)
        n += 1
        await asyncio.sleep(5 * MS)
    for _ in range(TAIL):
        await publisher.publish("stream", n)
        n += 1
    return n


async def restart(node: Node) -> tuple[int, float, str]:
    """SIGTERM the node, wait for it to exit, start it again; return status, seconds, log."""
    status, seconds = await node.terminate()
    log = node.log()
    await node.start()
    deadline = time.monotonic() + TIMEOUT
    while await node.ready() != 200:
        assert time.monotonic() < deadline, "the restarted node never got ready"
        await asyncio.sleep(20 * MS)
    return status, seconds, log


@bounded(120)
async def test_a_rolling_restart_under_load_delivers_everything_exactly_once(
    redis_server: RedisServer,
) -> None:
    need_redis_package()
    async with running_nodes(redis_server.url, 3, "--drain-seconds", str(DRAIN)) as nodes:
        urls = [node.url for node in nodes]
        followers: list[Follower] = []
        subscribers: list[Client] = []
        for home in range(len(nodes)):
            for i in range(PER_NODE):
                follower = Follower(f"sub{len(followers)}@node{home}")
                followers.append(follower)
                # Each client knows every node, starting with its own.
                ring = urls[home:] + urls[:home]
                subscribers.append(hub_client(ring, f"u{home}{i}", follower.record))
        publisher = hub_client(urls, "publisher")
        clients = [*subscribers, publisher]
        tasks: list[asyncio.Future[Any]] = []
        drains: list[tuple[int, float, str]] = []
        done = asyncio.Event()
        try:
            await asyncio.gather(*(client.start() for client in clients))
            subs = await asyncio.gather(*(client.subscribe("stream") for client in subscribers))
            tasks += [
                asyncio.ensure_future(follow(s, f)) for s, f in zip(subs, followers, strict=True)
            ]
            publishing = asyncio.ensure_future(publish_until(publisher, done))
            start = time.monotonic()
            await asyncio.sleep(200 * MS)  # load first
            for node in nodes:
                drains.append(await restart(node))
            done.set()
            total = await asyncio.wait_for(publishing, TIMEOUT)
            elapsed = time.monotonic() - start

            async def everything_arrived() -> None:
                while any(len(f.items) < total for f in followers):
                    await asyncio.sleep(20 * MS)

            await asyncio.wait_for(everything_arrived(), TIMEOUT)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*(client.close() for client in clients))

    print(f"\nrolling restart of 3 nodes: {total} messages published in {elapsed:.2f} s")
    for index, (status, seconds, log) in enumerate(drains):
        drained = re.search(r"drained (\d+) connections in ([\d.]+) s", log)
        print(
            f"  node{index}: exit {status} after {seconds:.2f} s (SIGTERM to exit); "
            + (f"drained {drained.group(1)} in {drained.group(2)} s" if drained else "no report")
        )
        assert status == 0, log
        assert drained is not None, log
    for follower, client in zip(followers, subscribers, strict=True):
        numbers = follower.numbers()
        gaps = [item for item in follower.items if isinstance(item, Gap)]
        hinted = [r for r in follower.redials if _hint(r.error) is not None]
        others = [str(r.error) for r in follower.redials if _hint(r.error) is None]
        print(
            f"  {follower.name}: {len(numbers)} delivered, {len(follower.redials)} redials "
            f"({len(hinted)} after a 1012 with a hint, delays "
            f"{', '.join(f'{r.delay:.2f}' for r in hinted)} s; others: {others}), "
            f"{client.stats['duplicates']} duplicates dropped by the client"
        )
        assert not gaps, gaps
        assert numbers == list(range(total)), f"{follower.name}: not every message once, in order"
        assert follower.redials, f"{follower.name} never moved"
        for redial in hinted:
            hint = _hint(redial.error)
            assert hint is not None and redial.delay >= hint


def _hint(error: Exception) -> float | None:
    """The retry hint that ended a connection, if a 1012 carried one."""
    if isinstance(error, ConnectionClosed) and error.code == 1012:
        return parse_retry_hint(error.reason)
    return None
