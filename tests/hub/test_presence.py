"""Presence: snapshots, first-join / last-leave per user, dead connections, counts, state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from openline.hub import Credentials, Identity
from openline.hub.backends.base import Engine

from .helpers import MS, HubClient, RunningHub, run_hub


def by_token(credentials: Credentials) -> Identity:
    """Tokens look like ``user`` or ``user:display name``."""
    assert credentials.token is not None
    user, _, name = credentials.token.partition(":")
    return Identity(user, {"name": name or user})


async def connect_as(running: RunningHub, token: str, **kwargs: Any) -> HubClient:
    return await running.client(f"/?token={token}", **kwargs)


def users_of(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["user"]: entry for entry in snapshot["users"]}


async def test_subscribe_with_presence_gets_a_snapshot_after_subscribed(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        alice = await connect_as(running, "alice:Alice")
        await alice.subscribe("room")
        bob = await connect_as(running, "bob")
        await bob.subscribe("room", presence=True)
        snapshot = await bob.expect("presence", ch="room", count=2)
        assert users_of(snapshot) == {
            "alice": {"user": "alice", "info": {"name": "Alice"}, "clients": 1},
            "bob": {"user": "bob", "info": {"name": "bob"}, "clients": 1},
        }


async def test_without_presence_a_subscriber_gets_no_presence(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        alice = await connect_as(running, "alice")
        await alice.subscribe("room")
        bob = await connect_as(running, "bob")
        await bob.subscribe("room")
        await alice.silent()
        # Yet alice is present: she subscribed.
        await bob.send(type="presence", ch="room", rid=1)
        snapshot = await bob.expect("presence", count=2, rid=1)
        assert set(users_of(snapshot)) == {"alice", "bob"}


async def test_presence_is_per_user_across_connections_and_a_dead_one_leaves_in_time(
    engine: Engine,
) -> None:
    interval, timeout = 100 * MS, 100 * MS
    async with run_hub(
        engine, authenticate=by_token, ping_interval=interval, ping_timeout=timeout
    ) as running:
        # Two users, three connections: alice twice, bob once.
        alice_1 = await connect_as(running, "alice")
        await alice_1.subscribe("room", presence=True)
        await alice_1.expect("presence", count=1)
        alice_2 = await connect_as(running, "alice")
        await alice_2.subscribe("room")
        await alice_1.silent()  # alice was already there: no second join
        bob = await connect_as(running, "bob")
        await bob.subscribe("room", presence=True)
        snapshot = await bob.expect("presence", count=2)
        assert users_of(snapshot)["alice"]["clients"] == 2
        assert users_of(snapshot)["bob"]["clients"] == 1
        await alice_1.expect("join", user="bob", info={"name": "bob"})

        # alice's second connection dies without a close frame: she is still here.
        alice_2.go_silent()
        # bob's only connection vanishes too: a line into a tunnel, no FIN, no close.
        bob.go_silent()
        vanished = time.monotonic()
        leave = await alice_1.expect("leave", ch="room", user="bob")
        detected = time.monotonic() - vanished
        # Detected by the heartbeat: no later than one interval plus the timeout.
        assert detected < interval + timeout + 150 * MS, detected
        assert leave == {"type": "leave", "ch": "room", "user": "bob"}
        await alice_1.silent(100 * MS)  # no leave for alice: one connection remains
        await alice_1.send(type="presence", ch="room")
        snapshot = await alice_1.expect("presence", count=1)
        assert users_of(snapshot) == {
            "alice": {"user": "alice", "info": {"name": "alice"}, "clients": 1}
        }


async def test_a_connection_dropped_without_close_frame_leaves_at_once(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        alice = await connect_as(running, "alice")
        await alice.subscribe("room", presence=True)
        await alice.expect("presence")
        bob = await connect_as(running, "bob")
        await bob.subscribe("room")
        await alice.expect("join", user="bob")
        bob.abort()
        await alice.expect("leave", user="bob")


async def test_the_last_connection_of_a_user_leaving_is_one_leave(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("room", presence=True)
        await watcher.expect("presence")
        first = await connect_as(running, "carol")
        second = await connect_as(running, "carol")
        await first.subscribe("room")
        await second.subscribe("room")
        await watcher.expect("join", user="carol")
        await first.send(type="unsubscribe", ch="room")
        await first.expect("unsubscribed")
        await watcher.silent()
        await second.close()
        await watcher.expect("leave", user="carol")
        await watcher.silent()


async def test_counts_only_channels_send_counts_not_users(engine: Engine) -> None:
    async with run_hub(
        engine,
        authenticate=by_token,
        counts_only=lambda ch: ch.startswith("live:"),
        count_interval=30 * MS,
    ) as running:
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("live:game", presence=True)
        snapshot = await watcher.expect("presence", ch="live:game", count=1)
        assert "users" not in snapshot
        others = [await connect_as(running, f"fan{n}") for n in range(3)]
        for other in others:
            await other.subscribe("live:game")
        # Joins are coalesced into one count update per interval. On a busy machine the
        # three joins may span several intervals: then counts below 4 come first, never more
        # than one per count (1, 2, 3).
        update = await watcher.expect("presence", ch="live:game")
        for _ in range(3):
            assert "users" not in update
            if update["count"] == 4:
                break
            assert 1 <= update["count"] < 4
            update = await watcher.expect("presence", ch="live:game")
        assert "users" not in update and update["count"] == 4
        await watcher.silent(60 * MS)
        await watcher.send(type="presence", ch="live:game", rid="q")
        await watcher.expect("presence", count=4, rid="q")
        await watcher.silent()


async def test_a_channel_past_the_presence_limit_becomes_counts_only(engine: Engine) -> None:
    async with run_hub(
        engine, authenticate=by_token, presence_limit=2, count_interval=20 * MS
    ) as running:
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("room", presence=True)
        await watcher.expect("presence", count=1)
        second = await connect_as(running, "second")
        await second.subscribe("room")
        await watcher.expect("join", user="second")
        third = await connect_as(running, "third")
        await third.subscribe("room")
        update = await watcher.expect("presence", count=3)
        assert "users" not in update
        late = await connect_as(running, "late")
        await late.subscribe("room", presence=True)
        snapshot = await late.expect("presence", count=4)
        assert "users" not in snapshot


async def test_state_is_forwarded_throttled_and_the_latest_wins(engine: Engine) -> None:
    interval = 150 * MS
    async with run_hub(
        engine, authenticate=by_token, state_interval=interval, state_ttl=5.0
    ) as running:
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("room", presence=True)
        await watcher.expect("presence")
        typist = await connect_as(running, "typist")
        await typist.subscribe("room")
        await watcher.expect("join", user="typist")
        sent = time.monotonic()
        for n in range(10):
            await typist.send(type="state", ch="room", state={"typing": True, "n": n})
        await typist.send(type="state", ch="room", state={"typing": False})
        first = await watcher.expect("state", ch="room", user="typist", ttl=5.0)
        assert first["state"] == {"typing": True, "n": 0}
        # The ten others are coalesced: only the latest goes out, after the interval.
        last = await watcher.expect("state", user="typist", state={"typing": False})
        assert time.monotonic() - sent >= interval * 0.9
        assert last["ttl"] == 5.0
        await watcher.silent(interval + 50 * MS)
        # The snapshot shows the current state.
        await watcher.send(type="presence", ch="room")
        snapshot = await watcher.expect("presence")
        assert users_of(snapshot)["typist"]["state"] == {"typing": False}


async def test_state_expires_by_itself(engine: Engine) -> None:
    ttl = 100 * MS
    async with run_hub(engine, authenticate=by_token, state_ttl=ttl) as running:
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("room", presence=True)
        await watcher.expect("presence")
        typist = await connect_as(running, "typist")
        await typist.subscribe("room")
        await watcher.expect("join")
        await typist.send(type="state", ch="room", state={"typing": True})
        await watcher.expect("state", user="typist", state={"typing": True}, ttl=ttl)
        started = time.monotonic()
        expired = await watcher.expect("state", user="typist", state=None)
        assert time.monotonic() - started >= ttl * 0.8
        assert "ttl" not in expired
        await watcher.send(type="presence", ch="room")
        snapshot = await watcher.expect("presence")
        assert "state" not in users_of(snapshot)["typist"]


async def test_clearing_state_is_forwarded(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token, state_interval=None) as running:
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("room", presence=True)
        await watcher.expect("presence")
        await watcher.send(type="state", ch="room", state={"away": True})
        await watcher.expect("state", user="watcher", state={"away": True})
        await watcher.send(type="state", ch="room", state=None)
        await watcher.expect("state", user="watcher", state=None)


async def test_leaving_clears_state(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        typist = await connect_as(running, "typist")
        await typist.subscribe("room")
        await typist.send(type="state", ch="room", state={"typing": True})
        await typist.send(type="unsubscribe", ch="room")
        await typist.expect("unsubscribed")
        await typist.subscribe("room", presence=True)
        snapshot = await typist.expect("presence")
        assert "state" not in users_of(snapshot)["typist"]


async def test_a_snapshot_and_later_events_are_consistent_under_churn(engine: Engine) -> None:
    async with run_hub(engine, authenticate=by_token) as running:
        present: set[str] = set()

        async def churn() -> None:
            for n in range(30):
                client = await connect_as(running, f"u{n % 7}")
                await client.subscribe("room")
                if n % 2:
                    await client.close()
                await asyncio.sleep(MS)

        task = asyncio.create_task(churn())
        await asyncio.sleep(5 * MS)
        watcher = await connect_as(running, "watcher")
        await watcher.subscribe("room", presence=True)
        snapshot = await watcher.expect("presence")
        present = set(users_of(snapshot))
        await task
        await asyncio.sleep(20 * MS)
        # Apply every event that followed the snapshot.
        while True:
            try:
                event = await watcher.recv(timeout=50 * MS)
            except asyncio.TimeoutError:
                break
            if event["type"] == "join":
                present.add(event["user"])
            elif event["type"] == "leave":
                present.discard(event["user"])
        await watcher.send(type="presence", ch="room")
        truth = await watcher.expect("presence")
        assert present == set(users_of(truth))
