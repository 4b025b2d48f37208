"""The engine contract (backends/base.py), checked against every engine."""

from __future__ import annotations

import asyncio

import pytest

from openline.hub import MemoryEngine
from openline.hub.backends.base import Event, Message, PresenceEvent, PresenceUser, PublishResult

from .conftest import EngineFactory
from .helpers import MS, TIMEOUT


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    def presence(self) -> list[PresenceEvent]:
        return [e for e in self.events if isinstance(e, PresenceEvent)]

    async def wait_messages(self, count: int, timeout: float = TIMEOUT) -> list[Message]:
        """Wait until ``count`` messages arrived (an engine may deliver after publish returns)."""

        async def arrivals() -> None:
            while len(self.messages()) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrivals(), timeout)
        return self.messages()


async def test_offsets_start_at_one_and_increase_by_one_per_channel(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    a = [await engine.publish("a", b"1"), await engine.publish("a", b"2")]
    b = await engine.publish("b", b"1")
    a.append(await engine.publish("a", "3"))
    assert [r.offset for r in a] == [1, 2, 3]
    assert b.offset == 1
    assert len({r.epoch for r in a}) == 1
    assert not any(r.duplicate for r in a)


async def test_history_reads_the_position_and_creates_the_channel(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    empty = await engine.history("new")
    assert (empty.last_offset, empty.first_offset, list(empty.messages)) == (0, 1, [])
    assert empty.recovered is False
    first = await engine.publish("new", b"x")
    assert first.epoch == empty.epoch  # the epoch read is the one publishing uses


async def test_history_returns_exactly_the_messages_after_since(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    results = [await engine.publish("a", str(n), meta={"user": "u"}) for n in range(5)]
    epoch = results[0].epoch
    history = await engine.history("a", since=2, epoch=epoch)
    assert history.recovered is True
    assert [(m.offset, m.data, m.meta) for m in history.messages] == [
        (3, "2", {"user": "u"}),
        (4, "3", {"user": "u"}),
        (5, "4", {"user": "u"}),
    ]
    assert all(m.ch == "a" and m.epoch == epoch for m in history.messages)
    assert (await engine.history("a", since=5, epoch=epoch)).messages == []
    assert (await engine.history("a", since=0, epoch=epoch)).recovered is True


async def test_history_reports_what_it_cant_recover(make_engine: EngineFactory) -> None:
    engine = make_engine(history_size=2)
    results = [await engine.publish("a", str(n)) for n in range(5)]
    epoch = results[0].epoch
    trimmed = await engine.history("a", since=1, epoch=epoch)
    assert trimmed.recovered is False
    assert (trimmed.first_offset, trimmed.last_offset) == (4, 5)
    assert [m.offset for m in trimmed.messages] == [4, 5]
    # Exactly at the edge of the window: recoverable.
    assert (await engine.history("a", since=3, epoch=epoch)).recovered is True
    other_epoch = await engine.history("a", since=4, epoch="other")
    assert other_epoch.recovered is False and len(other_epoch.messages) == 2
    ahead = await engine.history("a", since=9, epoch=epoch)
    assert ahead.recovered is False


async def test_history_ages_out_after_the_time_window(make_engine: EngineFactory) -> None:
    now = [0.0]
    engine = make_engine(history_size=None, history_ttl=10.0, clock=lambda: now[0])
    epoch = (await engine.publish("a", "old")).epoch
    now[0] = 5.0
    await engine.publish("a", "new")
    now[0] = 10.5
    result = await engine.history("a", since=0, epoch=epoch)
    assert result.recovered is False
    assert [m.data for m in result.messages] == ["new"]
    now[0] = 16.0
    result = await engine.history("a", since=2, epoch=epoch)
    assert result.recovered is True  # nothing missed, though history is now empty
    assert (result.first_offset, result.last_offset) == (3, 2)


async def test_a_history_size_of_zero_keeps_nothing(make_engine: EngineFactory) -> None:
    engine = make_engine(history_size=0)
    first = await engine.publish("a", "x")
    await engine.publish("a", "y")
    result = await engine.history("a", since=1, epoch=first.epoch)
    assert result.recovered is False and result.messages == []
    # Idempotency still works.
    assert (await engine.publish("a", "z", msg_id="k")).duplicate is False
    assert (await engine.publish("a", "z", msg_id="k")).duplicate is True


async def test_two_engines_never_share_an_epoch(make_engine: EngineFactory) -> None:
    one, two = make_engine(), make_engine()
    assert (await one.publish("a", "x")).epoch != (await two.publish("a", "x")).epoch


async def test_a_publish_with_a_known_id_is_stored_once(make_engine: EngineFactory) -> None:
    engine = make_engine()
    recorder = Recorder()
    await engine.subscribe("a", recorder)
    first = await engine.publish("a", "x", msg_id="k")
    await engine.publish("a", "y")
    again = await engine.publish("a", "x", msg_id="k")
    assert again == PublishResult(first.epoch, first.offset, duplicate=True)
    # A message after the duplicate fences the feed (Redis delivers after publish()
    # returns, in order): had the duplicate been delivered, it would come before it.
    await engine.publish("a", "fence")
    assert [(m.offset, m.data) for m in await recorder.wait_messages(3)] == [
        (1, "x"),
        (2, "y"),
        (3, "fence"),
    ]
    # Ids are per channel.
    assert (await engine.publish("b", "x", msg_id="k")).duplicate is False


async def test_the_idempotency_table_is_bounded(make_engine: EngineFactory) -> None:
    engine = make_engine(history_size=10, id_size=3)
    for n in range(5):
        await engine.publish("a", "x", msg_id=f"k{n}")
    assert (await engine.publish("a", "x", msg_id="k4")).duplicate is True
    assert (await engine.publish("a", "x", msg_id="k0")).duplicate is False  # forgotten


async def test_the_idempotency_table_forgets_after_its_time_window(
    make_engine: EngineFactory,
) -> None:
    now = [0.0]
    engine = make_engine(history_ttl=10.0, clock=lambda: now[0])
    await engine.publish("a", "x", msg_id="k")
    now[0] = 9.0
    assert (await engine.publish("a", "x", msg_id="k")).duplicate is True
    now[0] = 10.5
    assert (await engine.publish("a", "x", msg_id="k")).duplicate is False


async def test_callbacks_get_each_message_once_per_channel(make_engine: EngineFactory) -> None:
    engine = make_engine()
    first, second, other = Recorder(), Recorder(), Recorder()
    await engine.subscribe("a", first)
    await engine.subscribe("a", first)  # twice: still once
    await engine.subscribe("a", second)
    await engine.subscribe("b", other)
    await engine.publish("a", "x")
    # With Redis the feed may deliver after publish() returned: wait, don't race it.
    await second.wait_messages(1)
    await engine.unsubscribe("a", second)
    await engine.unsubscribe("a", second)  # not subscribed any more: nothing happens
    await engine.unsubscribe("nowhere", second)
    await engine.publish("a", "y")
    assert [m.data for m in await first.wait_messages(2)] == ["x", "y"]
    assert [m.data for m in second.messages()] == ["x"]
    assert other.events == []


async def test_a_failing_callback_doesnt_stop_the_others(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine()
    recorder = Recorder()

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    await engine.subscribe("a", broken)
    await engine.subscribe("a", recorder)
    result = await engine.publish("a", "x")
    assert result.offset == 1
    assert len(await recorder.wait_messages(1)) == 1
    assert "callback failed" in caplog.text


async def test_presence_joins_and_leaves_per_user(make_engine: EngineFactory) -> None:
    engine = make_engine()
    recorder = Recorder()
    await engine.subscribe("room", recorder)
    assert await engine.presence_join("room", "alice", "c1", '{"n":1}') is True
    assert await engine.presence_join("room", "alice", "c2", '{"n":2}') is False
    assert await engine.presence_join("room", "bob", "c3", "{}") is True
    snapshot = await engine.presence_snapshot("room")
    assert snapshot.count == 2
    assert snapshot.users == {
        "alice": PresenceUser('{"n":2}', 2),
        "bob": PresenceUser("{}", 1),
    }
    assert await engine.presence_leave("room", "alice", "c1") is False
    assert await engine.presence_leave("room", "alice", "c1") is False  # already gone
    assert await engine.presence_leave("room", "alice", "c2") is True
    assert await engine.presence_leave("room", "nobody", "c9") is False
    assert await engine.presence_leave("elsewhere", "bob", "c3") is False
    assert [(e.kind, e.user, e.count) for e in recorder.presence()] == [
        ("join", "alice", 1),
        ("join", "bob", 2),
        ("leave", "alice", 1),
    ]
    assert recorder.presence()[0].info == '{"n":1}'


async def test_a_snapshot_beyond_max_users_is_a_count(make_engine: EngineFactory) -> None:
    engine = make_engine()
    for n in range(3):
        await engine.presence_join("room", f"u{n}", f"c{n}", "{}")
    assert (await engine.presence_snapshot("room", max_users=2)).users is None
    assert (await engine.presence_snapshot("room", max_users=2)).count == 3
    full = await engine.presence_snapshot("room", max_users=3)
    assert full.users is not None and len(full.users) == 3
    assert (await engine.presence_snapshot("empty")).count == 0


async def test_state_is_set_cleared_and_expires(make_engine: EngineFactory) -> None:
    engine = make_engine()
    recorder = Recorder()
    await engine.subscribe("room", recorder)
    await engine.presence_join("room", "alice", "c1", "{}")
    await engine.presence_state("room", "alice", '{"typing":true}', 50 * MS)
    snapshot = await engine.presence_snapshot("room")
    assert snapshot.users is not None
    assert snapshot.users["alice"].state == '{"typing":true}'
    await asyncio.sleep(80 * MS)
    snapshot = await engine.presence_snapshot("room")
    assert snapshot.users is not None and snapshot.users["alice"].state is None
    states = [(e.state, e.ttl) for e in recorder.presence() if e.kind == "state"]
    assert states == [('{"typing":true}', 50 * MS), (None, None)]
    # Renewing pushes the expiry back; a state without ttl stays.
    await engine.presence_state("room", "alice", '{"a":1}', None)
    await asyncio.sleep(20 * MS)
    snapshot = await engine.presence_snapshot("room")
    assert snapshot.users is not None and snapshot.users["alice"].state == '{"a":1}'
    # A user who isn't present has no state.
    await engine.presence_state("room", "ghost", "{}", None)
    await engine.presence_state("nowhere", "ghost", "{}", None)
    snapshot = await engine.presence_snapshot("room")
    assert snapshot.users is not None and set(snapshot.users) == {"alice"}


async def test_leaving_cancels_a_pending_expiry(make_engine: EngineFactory) -> None:
    engine = make_engine()
    recorder = Recorder()
    await engine.subscribe("room", recorder)
    await engine.presence_join("room", "alice", "c1", "{}")
    await engine.presence_state("room", "alice", "{}", 20 * MS)
    await engine.presence_leave("room", "alice", "c1")
    await asyncio.sleep(40 * MS)
    assert [e.kind for e in recorder.presence()] == ["join", "state", "leave"]


# --- the memory engine's own behaviour --------------------------------------------------


async def test_idle_channels_are_forgotten_and_come_back_with_a_new_epoch() -> None:
    now = [0.0]
    engine = MemoryEngine(history_ttl=10.0, clock=lambda: now[0])
    first = await engine.publish("a", "x")
    now[0] = 100.0
    await engine.publish("b", "sweep")  # any access sweeps, at most every 10 s
    assert "a" not in engine._channels
    again = await engine.publish("a", "y")
    assert (again.epoch != first.epoch, again.offset) == (True, 1)
    await engine.close()


async def test_channels_in_use_are_kept() -> None:
    now = [0.0]
    engine = MemoryEngine(history_ttl=10.0, clock=lambda: now[0])
    recorder = Recorder()
    await engine.subscribe("a", recorder)
    await engine.presence_join("p", "u", "c", "{}")
    now[0] = 100.0
    await engine.publish("b", "sweep")
    assert {"a", "p"} <= set(engine._channels)
    await engine.close()


async def test_a_closed_engine_refuses_work() -> None:
    engine = MemoryEngine()
    await engine.presence_join("room", "alice", "c1", "{}")
    await engine.presence_state("room", "alice", "{}", 10.0)
    await engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        await engine.publish("a", "x")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"history_size": -1}, "history_size"),
        ({"history_size": True}, "history_size"),
        ({"history_ttl": 0}, "history_ttl"),
        ({"history_ttl": float("inf")}, "history_ttl"),
        ({"history_size": None, "history_ttl": None}, "history_size"),
        ({"id_size": None, "id_ttl": None}, "id_size"),
        ({"id_size": 1.5}, "id_size"),
        ({"id_ttl": -1}, "id_ttl"),
    ],
)
def test_the_memory_engine_checks_its_arguments(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        MemoryEngine(**kwargs)  # type: ignore[arg-type]
