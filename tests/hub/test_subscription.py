"""The client side of one channel: position, de-duplication, gaps, presence, buffering.

The hub's messages are fed to the subscription as the client would; the items
come out through its public ``get()``. The module is found from the public
``openline.hub.Subscription``, wherever it lives.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

import openline.hub
from openline.hub import ClientClosed, Gap, Join, Leave, Presence, Publication, Resumed, StateChange

from .helpers import TIMEOUT

subscription_module = importlib.import_module(openline.hub.Subscription.__module__)
parse_presence = subscription_module.parse_presence


class Channel:
    """A subscription with what it reported, and helpers speaking the hub's messages."""

    def __init__(self, *, presence: bool = False, since: Any = None, max_buffer: Any = None):
        self.reported: list[object] = []
        self.sub = openline.hub.Subscription(
            None,  # type: ignore[arg-type]  # the client is only needed by unsubscribe()
            "room",
            presence=presence,
            since=since,
            max_buffer=max_buffer,
            report=self.reported.append,
        )

    def subscribed(self, epoch: str, offset: int, **extra: Any) -> None:
        self.sub.request("s1")
        self.sub.on_subscribed({"epoch": epoch, "offset": offset, **extra})

    def message(self, epoch: str, offset: int, data: Any = None) -> bool:
        return bool(self.sub.on_message({"epoch": epoch, "offset": offset, "data": data}))

    async def items(self, count: int) -> list[object]:
        return [await asyncio.wait_for(self.sub.get(), TIMEOUT) for _ in range(count)]


async def test_messages_come_in_order_and_move_the_position() -> None:
    channel = Channel()
    before = channel.sub.position
    channel.subscribed("e1", 0)
    assert before is None
    assert channel.sub.position == ("e1", 0)
    channel.message("e1", 1, "a")
    channel.message("e1", 2, "b")
    first, second = await channel.items(2)
    assert first == Publication("room", "e1", 1, "a")
    assert second == Publication("room", "e1", 2, "b")
    assert channel.sub.position == ("e1", 2)


async def test_a_message_seen_already_is_dropped_and_counted() -> None:
    channel = Channel()
    channel.subscribed("e1", 0)
    channel.message("e1", 1, "a")
    channel.message("e1", 1, "a again")
    channel.message("e1", 2, "b")
    assert [item.offset for item in await channel.items(2)] == [1, 2]  # type: ignore[attr-defined]
    assert channel.sub.duplicates == 1


async def test_a_hole_in_the_offsets_is_a_gap_never_silence() -> None:
    channel = Channel()
    channel.subscribed("e1", 0)
    channel.message("e1", 1)
    channel.message("e1", 4)
    items = await channel.items(3)
    assert items[1] == Gap("room", "e1", ("e1", 1), 4)
    assert isinstance(items[2], Publication) and items[2].offset == 4
    assert channel.reported == [items[1]]


async def test_a_new_epoch_is_a_gap_from_the_old_position() -> None:
    channel = Channel()
    channel.subscribed("e1", 0)
    channel.message("e1", 1)
    channel.message("e2", 1)
    items = await channel.items(3)
    assert items[1] == Gap("room", "e2", ("e1", 1), 1)


async def test_resuming_sends_the_position_and_reports_the_outcome() -> None:
    channel = Channel(since=("e1", 5))
    assert channel.sub.request("r1")["since"] == {"epoch": "e1", "offset": 5}
    channel.sub.on_subscribed({"epoch": "e1", "offset": 7, "recovered": True, "missed": 2})
    assert channel.reported == [Resumed("room", 2, gap=False)]
    assert channel.sub.confirmed


async def test_a_resume_the_hub_couldnt_recover_is_a_gap_even_unannounced() -> None:
    channel = Channel(since=("e1", 5))
    channel.sub.request("r1")
    channel.sub.on_subscribed({"epoch": "e2", "offset": 3, "recovered": False, "missed": 0})
    [gap] = await channel.items(1)
    assert gap == Gap("room", "e2", ("e1", 5), 4)
    assert channel.reported == [gap, Resumed("room", 0, gap=True)]


async def test_a_gap_message_for_what_we_have_is_ignored() -> None:
    channel = Channel()
    channel.subscribed("e1", 0)
    channel.message("e1", 1)
    assert channel.sub.on_gap({"epoch": "e1", "from": 2})
    channel.sub.on_gap({"epoch": "e1", "from": 5})
    items = await channel.items(2)
    assert items[1] == Gap("room", "e1", ("e1", 1), 5)


async def test_presence_members_are_kept_and_events_not_repeated() -> None:
    channel = Channel(presence=True)
    channel.subscribed("e1", 0)
    snapshot = parse_presence(
        {"ch": "room", "count": 1, "users": [{"user": "bob", "info": {"n": "Bob"}}]}
    )
    channel.sub.on_presence(snapshot)
    channel.sub.on_member("join", {"user": "bob", "info": {"n": "Bob"}})  # in the snapshot
    channel.sub.on_member("join", {"user": "carol"})
    channel.sub.on_member("state", {"user": "carol", "state": {"typing": True}, "ttl": 5})
    channel.sub.on_member("leave", {"user": "bob"})
    channel.sub.on_member("leave", {"user": "bob"})  # left already
    items = await channel.items(4)
    assert items == [
        snapshot,
        Join("room", "carol", {}),
        StateChange("room", "carol", {"typing": True}, 5),
        Leave("room", "bob"),
    ]
    assert set(channel.sub.members) == {"carol"}
    assert channel.sub.members["carol"].state == {"typing": True}


async def test_without_presence_no_presence_items_are_queued() -> None:
    channel = Channel(presence=False)
    channel.sub.on_presence(Presence("room", 1, None))
    channel.sub.on_member("join", {"user": "bob"})
    channel.message("e1", 1)
    [item] = await channel.items(1)
    assert isinstance(item, Publication)


def test_parse_presence_reads_counts_only_snapshots_and_refuses_broken_ones() -> None:
    assert parse_presence({"ch": "big", "count": 12345}) == Presence("big", 12345, None)
    full = parse_presence({"ch": "c", "count": 1, "users": [{"user": "u", "clients": 2}]})
    assert full.members is not None and full.members["u"].clients == 2
    with pytest.raises(KeyError):
        parse_presence({"ch": "c"})
    with pytest.raises(ValueError):
        parse_presence({"ch": "c", "count": "many"})


async def test_a_full_buffer_says_so_and_waits_for_room() -> None:
    channel = Channel(max_buffer=2)
    channel.subscribed("e1", 0)
    assert channel.message("e1", 1) is True
    assert channel.message("e1", 2) is False  # full: the client stops reading
    waiting = asyncio.ensure_future(channel.sub.wait_room())
    await asyncio.sleep(0)  # one loop turn: it waits
    assert not waiting.done()
    await channel.items(1)
    await asyncio.wait_for(waiting, TIMEOUT)


async def test_finishing_ends_the_iteration_after_the_queued_items() -> None:
    channel = Channel()
    channel.subscribed("e1", 0)
    channel.message("e1", 1, "last")
    channel.sub.finish(ClientClosed("unsubscribed"))
    assert [item async for item in channel.sub] == [Publication("room", "e1", 1, "last")]
    with pytest.raises(ClientClosed, match="unsubscribed"):
        await channel.sub.get()


async def test_finishing_before_the_answer_fails_the_subscribe() -> None:
    channel = Channel()
    channel.sub.request("r1")
    error = RuntimeError("stopped")
    channel.sub.finish(error)
    with pytest.raises(RuntimeError, match="stopped"):
        await channel.sub.get()
    assert channel.sub.confirmed
