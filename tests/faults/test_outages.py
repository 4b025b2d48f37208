"""A publisher that outlives ordinary outages loses nothing, and is never taken for an abuser.

Faults from outside the happy path, with the real timers (the hub's 10 s / 10 s
keepalive, the client's 10 s / 10 s heartbeat and its default redial table):

* the network stops for 5, 30 or 60 s (the chaos proxy holds every byte back,
  as a blackholed route does while TCP retransmits, then delivers them) while
  the client publishes at 40-80 % of the hub's rate limit; what it queued, and
  what the network delivers in one burst when it comes back, must not earn a
  1008;
* the server restarts (3 s away) under a publisher at half the rate limit;
* token-less publishers (a new guest on every connection) through connection
  resets, so that acks are lost and publishes retried on a new connection.

Each run reads the channel back from the engine and reports lost, duplicated
and reordered messages: all must be 0. Run with ``-s`` to see the figures.
The rate limit is 20 messages per second so that the queues are long (hundreds
of publishes against a burst of 20) while the runs stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openline.hub import Client, Hub
from openline.hub.backends.base import Engine
from openline.hub.events import ClientEvent, Disconnected, Error
from openline.web import create_app
from tests.chaos.proxy import ChaosProxy

from ..timing import SCALE

#: Scales every duration on slow machines.
#: The hub's rate limit in these tests: (burst, seconds).
RATE = (20, 1.0)
CH = "orders"


@dataclasses.dataclass
class Tally:
    """What a run published, what the engine stored, and how it went."""

    published: int = 0
    acked: int = 0
    failed: list[str] = dataclasses.field(default_factory=list)
    events: list[ClientEvent] = dataclasses.field(default_factory=list)
    most_queued: int = 0
    #: Acks that said ``duplicate``: a retry of a publish the hub had stored already.
    duplicate_acks: int = 0

    def record(self, event: ClientEvent) -> None:
        self.events.append(event)

    def closes(self, code: int) -> int:
        return sum(1 for e in self.events if isinstance(e, Disconnected) and e.code == code)

    def fatal(self) -> list[ClientEvent]:
        return [e for e in self.events if isinstance(e, Error) and e.fatal]


async def stored(engine: Engine, ch: str, label: str = "p") -> list[int]:
    """The numbers ``label`` published that ``ch``'s history holds, in offset order."""
    result = await engine.history(ch, since=0, epoch=(await engine.history(ch)).epoch)
    assert result.recovered, "the history window is too small for this test"
    values = [json.loads(m.data) for m in result.messages]
    return [n for who, n in values if who == label]


def judge(values: list[int], published: int, label: str) -> dict[str, int]:
    """Lost, duplicated and reordered among the stored numbers 0..published-1."""
    seen: set[int] = set()
    firsts: list[int] = []
    duplicated = 0
    for value in values:
        if value in seen:
            duplicated += 1
        else:
            seen.add(value)
            firsts.append(value)
    lost = sum(1 for n in range(published) if n not in seen)
    reordered = sum(1 for a, b in itertools.pairwise(firsts) if b < a)
    report = {"lost": lost, "duplicated": duplicated, "reordered": reordered}
    print(f"{label}: published {published}, stored {len(values)}, {report}")
    return report


@contextlib.asynccontextmanager
async def hub_behind_proxy(
    engine: Engine, **hub_kwargs: Any
) -> AsyncIterator[tuple[Hub, ChaosProxy]]:
    hub = Hub(engine, rate_limit=RATE, **hub_kwargs)
    async with hub.serve("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with ChaosProxy("127.0.0.1", port) as proxy:
            yield hub, proxy
    await hub.close()


async def publish_at(
    client: Client,
    tally: Tally,
    rate: float,
    seconds: float,
    tasks: list[asyncio.Task[Any]],
    label: str = "p",
) -> None:
    """Publish ``[label, n]`` at ``rate`` per second for ``seconds``, without waiting for acks.

    The client gives each publish a random id of its own, as an application would.
    """

    async def one(n: int) -> None:
        try:
            ack = await client.publish(CH, [label, n])
            tally.acked += 1
            tally.duplicate_acks += ack.duplicate
        except Exception as exc:
            tally.failed.append(f"{n}: {exc!r}")

    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1
        while tally.published < due:
            tasks.append(asyncio.ensure_future(one(tally.published)))
            tally.published += 1
        tally.most_queued = max(tally.most_queued, tally.published - tally.acked)
        await asyncio.sleep(0.02)


async def settle(tasks: list[asyncio.Task[Any]], timeout: float) -> float:
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    return time.monotonic() - started


OUTAGES = [
    pytest.param("memory", 60.0, 0.4, id="memory-60s-at-40%"),
    pytest.param("redis", 30.0, 0.6, id="redis-30s-at-60%"),
    pytest.param("memory", 5.0, 0.8, id="memory-5s-at-80%"),
    pytest.param("redis", 5.0, 0.8, id="redis-5s-at-80%"),
]


@pytest.mark.parametrize(("make_engine", "outage", "share"), OUTAGES, indirect=["make_engine"])
async def test_a_publisher_outlives_a_network_outage(
    make_engine: Any, outage: float, share: float
) -> None:
    engine = make_engine()
    tally = Tally()
    rate = RATE[0] / RATE[1] * share
    tasks: list[asyncio.Task[Any]] = []
    async with hub_behind_proxy(engine) as (hub, proxy):
        async with Client(proxy.url(), on_event=tally.record) as client:
            await publish_at(client, tally, rate, 2.0, tasks)
            proxy.pause()  # the route is gone: every byte waits, both ways
            await publish_at(client, tally, rate, outage * SCALE, tasks)
            proxy.resume()
            # Publish on for a moment, then let the queue drain at the paced rate.
            await publish_at(client, tally, rate, 1.0, tasks)
            queued = tally.published - tally.acked
            drained = await settle(tasks, 60.0 * SCALE + outage * share / 0.9 * 2)
            stats = dict(client.stats)
        values = await stored(engine, CH)
        metrics = hub.metrics()
    report = judge(values, tally.published, f"{outage:.0f} s outage at {share:.0%}")
    print(
        f"  most queued {tally.most_queued}, queued at the end {queued},"
        f" drained in {drained:.1f} s,"
        f" client {stats}, rate_limited {metrics.get('errors.rate_limited', 0)},"
        f" abuse closes {metrics['abuse_closes']}"
    )
    assert tally.failed == []
    assert tally.acked == tally.published
    assert report == {"lost": 0, "duplicated": 0, "reordered": 0}
    assert metrics["abuse_closes"] == 0
    assert tally.closes(1008) == 0 and tally.fatal() == []


async def test_a_publisher_outlives_a_server_restart_under_load(engine: Engine) -> None:
    tally = Tally()
    rate = RATE[0] / RATE[1] * 0.5
    tasks: list[asyncio.Task[Any]] = []
    hub = Hub(engine, rate_limit=RATE)
    server = await hub.serve("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client(f"ws://127.0.0.1:{port}/", on_event=tally.record) as client:
            await publish_at(client, tally, rate, 2.0, tasks)
            server.close()  # the process stops: 1001 to everyone
            await server.wait_closed()
            await publish_at(client, tally, rate, 3.0 * SCALE, tasks)
            server = await hub.serve("127.0.0.1", port)  # back, with the same store
            await publish_at(client, tally, rate, 2.0, tasks)
            drained = await settle(tasks, 60.0 * SCALE)
            stats = dict(client.stats)
    finally:
        server.close()
        await server.wait_closed()
        await hub.close()
    values = await stored(engine, CH)
    report = judge(values, tally.published, "3 s restart at 50%")
    print(f"  most queued {tally.most_queued}, drained in {drained:.1f} s, client {stats}")
    assert tally.failed == []
    assert report == {"lost": 0, "duplicated": 0, "reordered": 0}
    assert hub.metrics()["abuse_closes"] == 0
    assert tally.fatal() == []


async def test_token_less_publishers_are_stored_once_through_resets(engine: Engine) -> None:
    # openline serve's app: every token-less connection is a new guest.
    app = create_app(engine=engine, ticker=False, rate_limit=RATE)
    tallies = [Tally(), Tally()]
    tasks: list[asyncio.Task[Any]] = []
    async with app.run("127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        # Latency keeps acks on the wire when a reset comes: publishes stored
        # whose acks are lost, which the clients send again on a new connection.
        async with ChaosProxy("127.0.0.1", port, latency=(0.08, 0.15)) as proxy:
            clients = [Client(proxy.url("/ws"), on_event=t.record) for t in tallies]
            async with clients[0], clients[1]:

                async def cut_now_and_then() -> int:
                    cuts = 0
                    for _ in range(10):
                        await asyncio.sleep(0.6)
                        cuts += proxy.cut("rst")
                    return cuts

                cutter = asyncio.ensure_future(cut_now_and_then())
                await asyncio.gather(
                    *(
                        publish_at(c, t, 8.0, 6.5, tasks, label=f"guest{k}")
                        for k, (c, t) in enumerate(zip(clients, tallies, strict=True))
                    )
                )
                cuts = await cutter
                await settle(tasks, 60.0 * SCALE)
                republished = sum(c.stats["republished"] for c in clients)
                users = {c.user for c in clients}
    retried = sum(t.duplicate_acks for t in tallies)
    print(f"  {cuts} resets, {republished} refused publishes sent again, {retried} retries deduped")
    assert cuts >= 4
    reports = []
    for k, tally in enumerate(tallies):
        values = await stored(engine, CH, label=f"guest{k}")
        reports.append(judge(values, tally.published, f"token-less publisher {k}"))
    assert all(t.failed == [] for t in tallies)
    assert reports == [{"lost": 0, "duplicated": 0, "reordered": 0}] * 2
    # The resets did cost acks, and the hub recognised the retries on new connections.
    assert retried > 0
    assert all(user is not None and user.startswith("guest.") for user in users)
