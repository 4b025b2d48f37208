"""Three nodes over one Redis: one hub, whichever node a client is on.

Messages published on any node reach every subscriber on every node in one
order with the same offsets, and a publish retried on another node with the
same id is stored once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from openline.asyncio.client import connect
from openline.hub import Client
from openline.hub.events import Publication

from ..redis_server import RedisServer
from .nodes import TIMEOUT, bounded, hub_client, need_redis_package, running_nodes

PER_PUBLISHER = 60


async def collect(sub: Any, count: int) -> list[Publication]:
    """The first ``count`` publications of a subscription; fail on anything else."""
    items: list[Publication] = []
    async for item in sub:
        assert isinstance(item, Publication), item
        items.append(item)
        if len(items) == count:
            return items
    raise AssertionError(f"the subscription ended after {len(items)} messages")


@bounded(30)
async def test_messages_published_on_any_node_reach_every_subscriber_in_one_order(
    redis_server: RedisServer,
) -> None:
    need_redis_package()
    async with running_nodes(redis_server.url, 3) as nodes:
        # Two subscribers on each node, one publisher on each node.
        subscribers = [
            hub_client(node.url, f"sub{i}-{n}") for n, node in enumerate(nodes) for i in (0, 1)
        ]
        publishers = [hub_client(node.url, f"pub{n}") for n, node in enumerate(nodes)]
        clients: list[Client] = subscribers + publishers
        try:
            await asyncio.gather(*(client.start() for client in clients))
            subs = await asyncio.gather(*(client.subscribe("room") for client in subscribers))
            total = PER_PUBLISHER * len(publishers)
            collecting = [asyncio.ensure_future(collect(sub, total)) for sub in subs]

            async def publish(n: int, client: Client) -> list[int]:
                offsets = []
                for i in range(PER_PUBLISHER):
                    ack = await client.publish("room", {"node": n, "i": i})
                    offsets.append(ack.offset)
                return offsets

            acked = await asyncio.wait_for(
                asyncio.gather(*(publish(n, c) for n, c in enumerate(publishers))), TIMEOUT
            )
            received = await asyncio.wait_for(asyncio.gather(*collecting), TIMEOUT)
        finally:
            await asyncio.gather(*(client.close() for client in clients))

    reference = [(p.epoch, p.offset, json.dumps(p.data)) for p in received[0]]
    for other in received[1:]:
        assert [(p.epoch, p.offset, json.dumps(p.data)) for p in other] == reference
    epochs = {epoch for epoch, _, _ in reference}
    assert len(epochs) == 1
    first = reference[0][1]
    assert [offset for _, offset, _ in reference] == list(range(first, first + total))
    # Each publisher's messages keep their order, and the acks name the offsets delivered.
    for n, offsets in enumerate(acked):
        mine = [p for p in received[0] if p.data["node"] == n]
        assert [p.data["i"] for p in mine] == list(range(PER_PUBLISHER))
        assert [p.offset for p in mine] == offsets
    print(
        f"\n3 nodes: {total} messages from 3 publishers to {len(subscribers)} subscribers, "
        f"one order, offsets {first}..{first + total - 1} in one epoch"
    )


async def raw(url: str, token: str) -> Any:
    ws = await connect(
        url, subprotocols=["openline.v1"], additional_headers={"Authorization": f"Bearer {token}"}
    )
    welcome = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert welcome["type"] == "welcome"
    return ws


async def reply(ws: Any, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (others, such as our own echo, are skipped)."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if message["type"] == kind:
            return message


@bounded(30)
async def test_a_publish_retried_on_another_node_with_the_same_id_is_stored_once(
    redis_server: RedisServer,
) -> None:
    need_redis_package()
    async with running_nodes(redis_server.url, 2) as (first, second):
        watcher = hub_client(second.url, "watcher")
        async with watcher:
            sub = await watcher.subscribe("orders")
            a = await raw(first.url, "ada")
            b = await raw(second.url, "ada")  # the same user, redialled to another node
            try:
                publish = {"type": "publish", "ch": "orders", "data": {"n": 1}, "id": "order-1"}
                await a.send(json.dumps({**publish, "rid": "r1"}))
                ack1 = await reply(a, "ack")
                await b.send(json.dumps({**publish, "rid": "r2"}))
                ack2 = await reply(b, "ack")
                await a.send(json.dumps({**publish, "id": "order-2", "data": {"n": 2}}))
                await reply(a, "ack")
            finally:
                await a.close()
                await b.close()
            assert ack1["duplicate"] is False and ack2["duplicate"] is True
            assert (ack2["epoch"], ack2["offset"]) == (ack1["epoch"], ack1["offset"])
            items = await asyncio.wait_for(collect(sub, 2), TIMEOUT)
            assert [item.data for item in items] == [{"n": 1}, {"n": 2}]
            assert items[1].offset == items[0].offset + 1
