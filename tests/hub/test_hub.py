"""The Hub object: arguments, serving, closing, metrics and the public names."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from openline.hub import Hub, MemoryEngine
from openline.hub.backends.base import Engine

from .helpers import run_hub, wait_for


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"presence_limit": -1}, "presence_limit"),
        ({"count_interval": 0}, "count_interval"),
        ({"state_interval": -1}, "state_interval"),
        ({"state_ttl": float("nan")}, "state_ttl"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"max_state_size": 1}, "max_state_size"),
        ({"max_channel_length": 0}, "max_channel_length"),
        ({"max_subscriptions": 0}, "max_subscriptions"),
        ({"rate_limit": (0, 1.0)}, "rate_limit"),
        ({"rate_limit": (10, 0)}, "rate_limit"),
        ({"rate_limit": 10}, "rate_limit"),
        ({"max_errors": (1, 2.0, 3)}, "max_errors"),
        ({"max_buffer": 0}, "max_buffer"),
        ({"ping_interval": 0}, "ping_interval"),
        ({"ping_timeout": -2}, "ping_timeout"),
    ],
)
def test_the_hub_checks_its_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Hub(MemoryEngine(), **kwargs)


def test_the_slow_consumer_code_must_be_sendable() -> None:
    with pytest.raises(ValueError):
        Hub(MemoryEngine(), slow_consumer_code=1006)


@pytest.mark.parametrize(
    "name", ["subprotocols", "select_subprotocol", "ping_interval", "ping_timeout"]
)
def test_serve_refuses_what_the_hub_decides(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Hub(MemoryEngine()).serve("127.0.0.1", 0, **{name: None})


async def test_a_hub_without_an_engine_owns_a_memory_engine() -> None:
    hub = Hub()
    assert isinstance(hub.engine, MemoryEngine)
    await hub.publish("a", 1)
    await hub.close()
    with pytest.raises(RuntimeError, match="closed"):
        await hub.publish("a", 1)


async def test_a_hub_leaves_a_given_engine_open(engine: Engine) -> None:
    hub = Hub(engine)
    await hub.close()
    assert (await engine.publish("a", b"1")).offset == 1


async def test_metrics_count_connections_and_messages(engine: Engine) -> None:
    async with run_hub(engine) as running:
        reader = await running.client()
        await reader.subscribe("a")
        writer = await running.client()
        await writer.publish("a", 1)
        await reader.expect("message")
        metrics = running.hub.metrics()
        sent = [{"type": "subscribe", "ch": "a"}, {"type": "publish", "ch": "a", "data": 1}]
        assert metrics.pop("bytes_out") > 0
        assert metrics == {
            "connections": 2,
            "connections_total": 2,
            "handshakes.accepted": 2,
            "messages_in": 2,
            "bytes_in": sum(len(json.dumps(message)) for message in sent),
            # two welcomes, subscribed, ack, message
            "messages_out": 5,
            "publishes": 1,
            "resumes_recovered": 0,
            "resumes_gap": 0,
            "slow_consumers": 0,
            "slow_consumer_resets": 0,
            "abuse_closes": 0,
            "keepalive_timeouts": 0,
        }
        assert running.hub.stats.publish_latency.count == 1
        await writer.close()
        await wait_for(lambda: running.hub.metrics()["connections"] == 1)


async def test_closing_the_server_removes_everyone_from_presence(engine: Engine) -> None:
    async with run_hub(engine) as running:
        client = await running.client()
        await client.subscribe("room")
    snapshot = await engine.presence_snapshot("room")
    assert snapshot.count == 0


async def test_state_updates_waiting_at_close_are_dropped_quietly(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="openline")
    # Record the throttle's timers as the real loop makes them. The one holding
    # {"n": 2} must be cancelled by the time the hub is closed (when the client's
    # connection closes, or by Hub.close()): otherwise it fires after the engine
    # is gone, long after this test ended, where no assertion could see it.
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    call_later = loop.call_later

    def recording_call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        handle = call_later(delay, callback, *args)
        if getattr(callback, "__qualname__", "") == "StateThrottle._tick":
            timers.append(handle)
        return handle

    monkeypatch.setattr(loop, "call_later", recording_call_later)
    async with run_hub(engine, state_interval=1.0) as running:
        watcher = await running.client()
        await watcher.subscribe("room", presence=True)
        client = await running.client()
        await client.subscribe("room")
        await client.send(type="state", ch="room", state={"n": 1})
        await client.send(type="state", ch="room", state={"n": 2})  # waits for the interval
        await client.send(type="ping")
        await client.expect("pong")
        first, _ = await watcher.recv_until("state")
        assert first["state"] == {"n": 1}
        assert len(timers) == 1 and not timers[0].cancelled()
    # The hub closed with {"n": 2} still waiting: nothing is left scheduled, and
    # nothing is logged as an error.
    assert timers[0].cancelled()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
