"""Server.drain(): stop accepting, close with 1012 and a retry hint, spread over a window."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from openline.asyncio.backoff import Classifier, Schedule
from openline.asyncio.client import ClientConnection, connect
from openline.asyncio.drain import (
    MAX_RETRY_HINT,
    check_retry_hint,
    drain_schedule,
    format_retry_hint,
    parse_retry_hint,
)
from openline.asyncio.server import ServerConnection, serve
from openline.exceptions import ConnectionClosed

from .helpers import MS, TIMEOUT, port_of, url_of

#: Clients per drain test.
CLIENTS = 8


async def wait_forever(ws: ServerConnection) -> None:
    await ws.wait_closed()


async def read_all(ws: ServerConnection) -> None:
    # Reading lets the server answer a client's close at once: a handler that
    # doesn't read holds the answer back for up to a second (connection.py).
    async for _ in ws:
        pass


async def closed_at(ws: ClientConnection) -> tuple[float, int, str]:
    """Wait until the server closes ``ws``; return when, and its code and reason."""
    try:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed as exc:
        return time.monotonic(), exc.code, exc.reason
    raise AssertionError("a message arrived instead of a close")


# --- the schedule and the hint ------------------------------------------------------------


def test_drain_schedule_puts_one_close_in_each_slot_of_the_window() -> None:
    times = drain_schedule(5, 10.0, random.Random(1))
    assert times == sorted(times)
    for index, at in enumerate(times):
        assert 2.0 * index <= at < 2.0 * (index + 1)


def test_drain_schedule_of_no_connections_or_no_window() -> None:
    assert drain_schedule(0, 10.0, random.Random()) == []
    assert drain_schedule(3, 0.0, random.Random()) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("count", "seconds"), [(-1, 1.0), (1, -1.0), (1, float("nan"))])
def test_drain_schedule_refuses_bad_arguments(count: int, seconds: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        drain_schedule(count, seconds, random.Random())


@pytest.mark.parametrize("seconds", [0.0, 0.5, 1.25, 2.0, 299.999])
def test_a_retry_hint_reads_back_as_written(seconds: float) -> None:
    reason = format_retry_hint(seconds)
    assert reason.startswith("retry-after=")
    assert parse_retry_hint(reason) == pytest.approx(seconds, abs=0.001)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("retry-after=1.25", 1.25),
        ("retry-after=3", 3.0),
        ("retry-after=2; node restarting", 2.0),
        ("retry-after=100000", MAX_RETRY_HINT),
        ("", None),
        ("going away", None),
        ("retry-after=", None),
        ("retry-after=-1", None),
        ("retry-after=1e3", None),
        ("retry-after=nan", None),
        ("retry-after=1.2.3", None),
        (" retry-after=1", None),
    ],
)
def test_parse_retry_hint(reason: str, expected: float | None) -> None:
    assert parse_retry_hint(reason) == expected


@pytest.mark.parametrize("value", [(2.0, 1.0), (-1.0, 1.0), (0.0, 301.0), (1.0,), "1-2"])
def test_a_bad_hint_range_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="retry_after must be"):
        check_retry_hint(value)  # type: ignore[arg-type]  # bad input on purpose


# --- the classifier honours the hint ---------------------------------------------------------


async def test_the_classifier_waits_at_least_the_hint_of_a_1012() -> None:
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        ws = await connect(url_of(server))
        [connection] = server.connections
        await connection.close(1012, "retry-after=1.5")
        _, code, reason = await closed_at(ws)
    assert (code, reason) == (1012, "retry-after=1.5")
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    schedule = Schedule(
        backoff=[0.1], classify=Classifier(max_retry_after=None), max_attempts=None, reset_after=0
    )
    assert schedule.next_delay(info.value) == 1.5
    assert Classifier(max_retry_after=1.0)(info.value) == 1.0


async def test_the_classifier_ignores_a_hint_after_a_normal_close() -> None:
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        ws = await connect(url_of(server))
        [connection] = server.connections
        await connection.close(1000, "retry-after=9")
        await closed_at(ws)
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert Classifier()(info.value) == 0.0


# --- draining a server ---------------------------------------------------------------------


async def test_drain_closes_every_connection_with_1012_and_a_hint_over_the_window() -> None:
    window = 600 * MS
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        clients = [await connect(url_of(server)) for _ in range(CLIENTS)]
        watchers = [asyncio.ensure_future(closed_at(ws)) for ws in clients]
        start = time.monotonic()
        report = await asyncio.wait_for(
            server.drain(window, retry_after=(0.5, 2.0), rng=random.Random(7)), TIMEOUT
        )
        results = await asyncio.gather(*watchers)
    times = sorted(at - start for at, _, _ in results)
    hints = [parse_retry_hint(reason) for _, _, reason in results]
    print(f"\ndrain of {CLIENTS} over {window:.3f} s: {report}")
    print("closes at", [f"{t:.3f}" for t in times])
    print("hints:", hints)
    assert report.connections == CLIENTS
    assert {code for _, code, _ in results} == {1012}
    assert all(hint is not None and 0.5 <= hint <= 2.0 for hint in hints)
    assert len(set(hints)) == CLIENTS  # each connection got its own
    # Spread: the first and the last close lie apart by a good part of the window.
    assert times[-1] - times[0] >= window / 3
    assert times[-1] < TIMEOUT
    assert not server.is_serving() and server.is_draining


async def test_a_draining_server_accepts_no_new_connection() -> None:
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        port = port_of(server)
        ws = await connect(url_of(server))
        drain = asyncio.ensure_future(server.drain(2000 * MS))
        await asyncio.sleep(0)  # the drain starts: the listener closes at once
        assert server.is_draining and not server.is_serving()
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
        assert drain.cancelled()
        await ws.close()


async def test_drain_with_linger_refuses_upgrades_with_503_before_closing() -> None:
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        url = url_of(server)
        drain = asyncio.ensure_future(server.drain(0, linger=5000 * MS))
        await asyncio.sleep(0)
        assert server.is_draining and server.is_serving()  # still listening
        with pytest.raises(Exception) as info:
            await connect(url)
        assert getattr(info.value, "status", None) == 503, info.value
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
        assert drain.cancelled()


async def test_a_second_drain_waits_for_the_first() -> None:
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        ws = await connect(url_of(server))
        first = asyncio.ensure_future(server.drain(100 * MS))
        await asyncio.sleep(0)
        second = await asyncio.wait_for(server.drain(100 * MS), TIMEOUT)
        assert second.connections == 0
        assert (await first).connections == 1
        await closed_at(ws)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seconds": -1}, "seconds"),
        ({"seconds": 1, "linger": float("inf")}, "linger"),
        ({"seconds": 1, "retry_after": (3.0, 1.0)}, "retry_after"),
        ({"seconds": 1, "code": 1006}, "1006"),
    ],
)
async def test_drain_refuses_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    async with serve(wait_forever, "127.0.0.1", 0) as server:
        with pytest.raises(ValueError, match=match):
            await server.drain(**kwargs)  # type: ignore[arg-type]  # bad input on purpose
        assert not server.is_draining


class _Late(random.Random):
    """Randomness that puts every close near the end of its slot."""

    def random(self) -> float:
        return 0.99


def test_a_hint_beyond_the_maximum_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds 300 s"):
        format_retry_hint(MAX_RETRY_HINT + 1)
    assert check_retry_hint(None) is None


async def test_drain_without_a_hint_and_a_client_that_leaves_first() -> None:
    async with serve(read_all, "127.0.0.1", 0) as server:
        staying = await connect(url_of(server))
        leaving = await connect(url_of(server))
        watcher = asyncio.ensure_future(closed_at(staying))
        # Two slots of 400 ms, each close at the end of its slot: the client that
        # leaves at once is gone before its turn comes, whichever it is.
        drain = asyncio.ensure_future(server.drain(800 * MS, retry_after=None, rng=_Late()))
        await leaving.close()
        report = await asyncio.wait_for(drain, TIMEOUT)
        _, code, reason = await watcher
    print(f"\n{report}")
    assert (code, reason) == (1012, "")
    assert report.connections == 1
