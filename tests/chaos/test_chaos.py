"""The chaos test: a subscriber keeps every message across 100 broken lines.

A publisher (server code, ``hub.publish``) streams numbered messages while the
chaos proxy breaks the subscriber's line at random moments: half of the cuts
close or reset TCP (FIN, RST), half blackhole it like a train in a tunnel, so
that only the heartbeat can tell. The subscriber must end with every message
exactly once, in order. With a history window smaller than an outage, it must
get a ``gap`` where messages were lost, never a silent hole.

Run with ``-s`` to see the figures. Everything random is seeded
(``OPENLINE_CHAOS_SEED``); durations scale with ``OPENLINE_TEST_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import pathlib
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from openline.asyncio.backoff import Backoff
from openline.hub import Hub, MemoryEngine, SqliteEngine
from openline.hub.backends.base import Engine
from openline.hub.client import Client, Subscription
from openline.hub.events import ClientEvent, Disconnected, Gap, Publication, Reconnecting

from ..timing import MS
from .proxy import ChaosProxy, CutMode

#: One millisecond, scaled for slow machines, and for tracers (coverage) which
#: slow the loop down several times: heartbeats must stay well above its stalls.
if sys.gettrace() is not None:
    MS *= 4
SEED = int(os.environ.get("OPENLINE_CHAOS_SEED", "20240611"))

#: Short heartbeats, so that 50 blackholes take a few seconds in all, yet well above the
#: loop stalls of a busy 2-core machine (30/60 ms gave healthy lines up there).
HEARTBEAT_INTERVAL = 50 * MS
HEARTBEAT_TIMEOUT = 100 * MS
#: Scheduling slack on top of interval + timeout before a dead line must have been noticed.
DETECTION_SLACK = 300 * MS


@dataclasses.dataclass
class Run:
    """What happened during one chaos run."""

    cuts: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"fin": 0, "rst": 0, "blackhole": 0}
    )
    cut_times: list[tuple[CutMode, float]] = dataclasses.field(default_factory=list)
    events: list[tuple[float, ClientEvent]] = dataclasses.field(default_factory=list)
    items: list[Publication | Gap] = dataclasses.field(default_factory=list)
    published: int = 0
    elapsed: float = 0.0

    def record(self, event: ClientEvent) -> None:
        self.events.append((time.monotonic(), event))

    def detection_times(self) -> list[float]:
        """Seconds from each blackhole cut to the heartbeat giving the line up."""
        # A line cut during the handshake ends in a failed dial, with no Disconnected.
        lost = [t for t, e in self.events if isinstance(e, (Disconnected, Reconnecting))]
        found = []
        for mode, cut_at in self.cut_times:
            after = [t for t in lost if t >= cut_at]
            if mode == "blackhole" and after:
                found.append(after[0] - cut_at)
        return found


@asynccontextmanager
async def chaos_rig(
    engine: Engine, rng: random.Random, run: Run
) -> AsyncIterator[tuple[Hub, ChaosProxy, Client]]:
    """A hub, a proxy in front of it, and a subscriber client dialling through the proxy."""
    # The hub's own keepalive clears the sessions of blackholed connections.
    hub = Hub(engine, ping_interval=50 * MS, ping_timeout=100 * MS, rate_limit=None)
    async with hub.serve("127.0.0.1", 0, close_timeout=50 * MS) as server:
        port = server.sockets[0].getsockname()[1]
        async with ChaosProxy("127.0.0.1", port, seed=rng.randrange(2**32)) as proxy:
            client = Client(
                proxy.url(),
                backoff=Backoff(2 * MS, 20 * MS, rng=random.Random(rng.randrange(2**32))),
                reset_after=None,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                on_event=run.record,
            )
            async with client:
                yield hub, proxy, client
    await hub.close()


async def consume(sub: Subscription, run: Run, last: int) -> None:
    """Collect the subscription's items until the message numbered ``last``."""
    async for item in sub:
        assert isinstance(item, (Publication, Gap))
        run.items.append(item)
        if isinstance(item, Publication) and item.data == last:
            return


async def publish(
    hub: Hub, ch: str, total: int, cut_points: list[int], cut_done: list[asyncio.Event], run: Run
) -> None:
    """Publish ``0 .. total-1``, never running further than ``lead`` past an undone cut."""
    lead = 100
    for n in range(total):
        for point, done in zip(cut_points, cut_done, strict=True):
            if n >= point + lead and not done.is_set():
                await done.wait()
        await hub.publish(ch, n)
        run.published += 1
        if n % 10 == 9:
            await asyncio.sleep(MS)  # about ten messages per millisecond


async def cut_lines(
    proxy: ChaosProxy,
    modes: list[CutMode],
    cut_points: list[int],
    cut_done: list[asyncio.Event],
    rng: random.Random,
    run: Run,
) -> None:
    """Cut the subscriber's line once the stream reaches each cut point, while it is up."""
    for mode, point, done in zip(modes, cut_points, cut_done, strict=True):
        while run.published < point:
            await asyncio.sleep(MS)
        while True:
            # Wait for the subscriber's next connection, then a random moment in its life.
            await proxy.wait_connected(proxy.stats.connected + (0 if proxy.links else 1))
            await asyncio.sleep(rng.uniform(0, 15 * MS))
            if proxy.cut(mode):
                break
        run.cuts[mode] += 1
        run.cut_times.append((mode, time.monotonic()))
        done.set()


def plan(rng: random.Random, total: int, cuts: int) -> tuple[list[CutMode], list[int]]:
    """Half FIN/RST, half blackhole, shuffled; cut points spread over the stream."""
    quarter = cuts // 4
    modes: list[CutMode] = ["fin"] * quarter
    modes += ["rst"] * quarter
    modes += ["blackhole"] * (cuts - 2 * quarter)
    rng.shuffle(modes)
    points = sorted(rng.sample(range(total // 50, total - total // 50), cuts))
    return modes, points


async def chaos(engine: Engine, total: int, cuts: int, seed: int) -> tuple[Run, dict[str, int]]:
    rng = random.Random(seed)
    modes, points = plan(rng, total, cuts)
    done = [asyncio.Event() for _ in points]
    run = Run()
    start = time.monotonic()
    async with chaos_rig(engine, rng, run) as (hub, proxy, client):
        sub = await client.subscribe("stream")
        consumer = asyncio.ensure_future(consume(sub, run, total - 1))
        publisher = asyncio.ensure_future(publish(hub, "stream", total, points, done, run))
        cutter = asyncio.ensure_future(cut_lines(proxy, modes, points, done, rng, run))
        try:
            await asyncio.wait_for(asyncio.gather(publisher, cutter, consumer), 60 + 20000 * MS)
        except BaseException:
            kinds = collections.Counter(type(event).__name__ for _, event in run.events)
            print(f"\nunfinished: {run.published} published, {len(run.items)} items received,")
            print(f"  cuts {run.cuts}, events {dict(kinds)}, client {client.stats}")
            raise
        finally:
            for task in (publisher, cutter, consumer):
                task.cancel()
        run.elapsed = time.monotonic() - start
        stats = dict(client.stats)
    return run, stats


def report(title: str, run: Run, stats: dict[str, int], total: int) -> dict[str, float]:
    """Print the run's figures (visible with ``pytest -s``) and return them."""
    numbers = [item.data for item in run.items if isinstance(item, Publication)]
    gaps = [item for item in run.items if isinstance(item, Gap)]
    delivered = len(numbers)
    duplicates = delivered - len(set(numbers))
    lost_in_gaps = sum(g.first - 1 - (g.since[1] if g.since else 0) for g in gaps)
    detection = run.detection_times()
    figures = {
        "cuts": sum(run.cuts.values()),
        "fin": run.cuts["fin"],
        "rst": run.cuts["rst"],
        "blackhole": run.cuts["blackhole"],
        "published": run.published,
        "delivered": delivered,
        "duplicates delivered": duplicates,
        "duplicates dropped by the client": stats["duplicates"],
        "lost (reported by gaps)": lost_in_gaps,
        "lost silently": total - delivered - lost_in_gaps,
        "gaps": len(gaps),
        "connections": stats["connects"],
        "dead lines found (heartbeat, keepalive)": stats["dead_lines"],
        "detection mean (ms)": round(1000 * statistics.fmean(detection), 1) if detection else 0,
        "detection max (ms)": round(1000 * max(detection), 1) if detection else 0,
        "elapsed (s)": round(run.elapsed, 2),
    }
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"\n--- {title} (seed {SEED}, {loop} loop) ---")
    for key, value in figures.items():
        print(f"  {key:40} {value}")
    return figures


@pytest.mark.chaos
async def test_subscriber_gets_every_message_once_in_order_through_100_cuts() -> None:
    total, cuts = 10_000, 100
    engine = MemoryEngine(history_size=2 * total)
    run, stats = await chaos(engine, total, cuts, SEED)
    figures = report("chaos: 10,000 messages, 100 cuts", run, stats, total)
    numbers = [item.data for item in run.items if isinstance(item, Publication)]
    assert numbers == list(range(total))  # every message, exactly once, in order
    assert [item for item in run.items if isinstance(item, Gap)] == []
    offsets = [item.offset for item in run.items if isinstance(item, Publication)]
    assert offsets == list(range(1, total + 1))
    assert run.cuts == {"fin": 25, "rst": 25, "blackhole": 50}
    # Each blackhole is found by the heartbeat (or by open_timeout, during a handshake).
    # A dead line is found within interval + timeout, plus scheduling slack.
    assert figures["detection max (ms)"] <= 1000 * (
        HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + DETECTION_SLACK
    )


@pytest.mark.chaos
async def test_with_a_short_history_outages_become_gaps_never_silent_holes() -> None:
    total, cuts = 3_000, 30
    engine = MemoryEngine(history_size=25)  # smaller than what a blackhole outage misses
    run, stats = await chaos(engine, total, cuts, SEED + 1)
    figures = report(
        "chaos: short history (25 messages), 3,000 messages, 30 cuts", run, stats, total
    )
    # Replay the stream: each message follows the previous one, or a gap that names the hole.
    expected = 1
    for item in run.items:
        if isinstance(item, Gap):
            assert item.first > expected, f"a gap that hides nothing: {item}"
            assert item.since is not None and item.since[1] == expected - 1
            expected = item.first
        else:
            assert item.offset == expected, f"silent hole before offset {item.offset}"
            expected += 1
    assert expected == total + 1
    assert figures["gaps"] > 0
    assert figures["lost silently"] == 0
    assert figures["duplicates delivered"] == 0


@pytest.mark.chaos
async def test_on_the_sqlite_engine_every_message_arrives_once_in_order_through_30_cuts(
    tmp_path: pathlib.Path,
) -> None:
    total, cuts = 3_000, 30
    engine = SqliteEngine(str(tmp_path / "chaos.db"), history_size=2 * total)
    try:
        run, stats = await chaos(engine, total, cuts, SEED + 2)
    finally:
        await engine.close()
    report("chaos on sqlite: 3,000 messages, 30 cuts", run, stats, total)
    numbers = [item.data for item in run.items if isinstance(item, Publication)]
    assert numbers == list(range(total))  # every message, exactly once, in order
    assert [item for item in run.items if isinstance(item, Gap)] == []
