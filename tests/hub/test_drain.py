"""The Python hub client honours a draining hub's retry hint, and resumes on another node."""

from __future__ import annotations

import asyncio
import random
import time

from openline.asyncio.backoff import Backoff
from openline.hub import Hub, MemoryEngine
from openline.hub.client import Client
from openline.hub.events import ClientEvent, Connected, Disconnected, Reconnecting

from .helpers import MS, TIMEOUT

#: The hint the drain sends: well above the client's backoff (at most 20 ms).
HINT = 600 * MS


async def test_the_client_waits_the_hint_then_redials_the_next_node() -> None:
    engine = MemoryEngine()  # both "nodes" share it, as nodes share Redis
    events: list[tuple[float, ClientEvent]] = []
    connected_again = asyncio.Event()

    def record(event: ClientEvent) -> None:
        events.append((time.monotonic(), event))
        if sum(isinstance(e, Connected) for _, e in events) == 2:
            connected_again.set()

    first, second = Hub(engine), Hub(engine)
    async with first.serve("127.0.0.1", 0) as one, second.serve("127.0.0.1", 0) as two:
        urls = [f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}/ws" for s in (one, two)]
        client = Client(urls, backoff=Backoff(20 * MS, 20 * MS), on_event=record)
        async with client:
            report = await asyncio.wait_for(
                one.drain(0, retry_after=(HINT, HINT), rng=random.Random(3)), TIMEOUT
            )
            assert report.connections == 1

            await asyncio.wait_for(connected_again.wait(), TIMEOUT)
    # The first of each: closing the client at the end reports a disconnection too.
    lost_at, lost = next((t, e) for t, e in events if isinstance(e, Disconnected))
    redial = next(e for _, e in events if isinstance(e, Reconnecting))
    back_at = [t for t, e in events if isinstance(e, Connected)][1]
    print(
        f"\nclosed with {lost.code} {lost.reason!r}; redial delay {redial.delay:.3f} s; "
        f"back after {back_at - lost_at:.3f} s"
    )
    assert lost.code == 1012 and lost.reason.startswith("retry-after=")
    assert redial.delay >= HINT
    assert back_at - lost_at >= HINT
    await first.close()
    await second.close()
