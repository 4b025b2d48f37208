"""What both example apps must do for the Python hub client: the one scenario, told once."""

from __future__ import annotations

import asyncio

import pytest

from openline import connect
from openline.exceptions import InvalidStatus
from openline.hub import Client, Publication, Subscription

from .apps import ROOM, TIMEOUT, AppProcess


def hub_client(app: AppProcess, cookie: str) -> Client:
    """A hub client that presents a logged-in browser's ``Cookie`` header."""
    return Client(app.ws_url, headers={"Cookie": cookie})


async def publications(room: Subscription, count: int) -> list[Publication]:
    """The next ``count`` publications of ``room`` (a gap fails the test)."""

    async def collect() -> list[Publication]:
        found: list[Publication] = []
        async for item in room:
            assert isinstance(item, Publication), item
            found.append(item)
            if len(found) == count:
                break
        return found

    return await asyncio.wait_for(collect(), TIMEOUT)


async def refused_status(app: AppProcess, cookie: str | None) -> int:
    """The HTTP status of a handshake to the hub with this ``Cookie`` header (or none)."""
    headers = {"Cookie": cookie} if cookie is not None else None
    with pytest.raises(InvalidStatus) as caught:
        ws = await asyncio.wait_for(
            connect(app.ws_url, subprotocols=["openline.v1"], additional_headers=headers), TIMEOUT
        )
        await ws.close()
    return caught.value.status


async def chat_across_a_restart(app: AppProcess, talker: str, listener: str) -> None:
    """Two logged-in users chat; the server is killed and started again; nothing is lost.

    Args:
        app: The running example.
        talker: The ``Cookie`` header of the user who publishes.
        listener: The ``Cookie`` header of the user who listens.
    """
    async with hub_client(app, listener) as grace, hub_client(app, talker) as ada:
        room = await grace.subscribe(ROOM)
        for n in range(3):
            await ada.publish(ROOM, {"text": f"before {n}"})
        seen = await publications(room, 3)

        await asyncio.to_thread(app.kill)
        # Published while the server is down: queued, sent after the redial, stored once.
        offline = [
            asyncio.create_task(ada.publish(ROOM, {"text": f"offline {n}"})) for n in range(2)
        ]
        await asyncio.to_thread(app.start)
        acks = await asyncio.wait_for(asyncio.gather(*offline), TIMEOUT)
        seen += await publications(room, 2)

        texts = [p.data["text"] for p in seen]
        assert texts == [*(f"before {n}" for n in range(3)), *(f"offline {n}" for n in range(2))]
        assert [p.offset for p in seen] == [1, 2, 3, 4, 5]
        assert len({p.epoch for p in seen}) == 1, "the history didn't survive the restart"
        assert [a.offset for a in acks] == [4, 5]
        assert {p.user for p in seen} == {ada.user}
        assert ada.user != grace.user

    # A newcomer reading the whole history finds every message exactly once.
    async with hub_client(app, listener) as late:
        everything = await late.subscribe(ROOM, since=(seen[0].epoch, 0))
        assert [p.data for p in await publications(everything, 5)] == [p.data for p in seen]
