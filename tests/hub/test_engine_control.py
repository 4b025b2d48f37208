"""The optional control channel of the engines (``backends.base.Control``), on every engine."""

from __future__ import annotations

import asyncio

from openline.hub.backends.base import Control, Engine

from .helpers import TIMEOUT


class Seen(list[bytes]):
    """Payloads received by a control callback (``seen.append``), with an event per arrival."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def append(self, payload: bytes) -> None:
        super().append(payload)
        self.arrived.set()


async def received(seen: Seen, count: int) -> list[bytes]:
    async def wait() -> None:
        while len(seen) < count:
            seen.arrived.clear()
            await seen.arrived.wait()

    await asyncio.wait_for(wait(), TIMEOUT)
    return seen


async def test_control_payloads_reach_every_control_callback(engine: Engine) -> None:
    assert isinstance(engine, Control)
    first = Seen()
    second = Seen()
    await engine.subscribe_control(first.append)
    await engine.subscribe_control(first.append)  # twice: once
    await engine.subscribe_control(second.append)
    await engine.send_control(b'{"op":"x"}')
    assert await received(first, 1) == [b'{"op":"x"}']
    assert await received(second, 1) == [b'{"op":"x"}']
    await engine.unsubscribe_control(first.append)
    await engine.send_control(b"2")
    assert await received(second, 2) == [b'{"op":"x"}', b"2"]
    assert first == [b'{"op":"x"}']


async def test_present_channels_lists_channels_with_someone_present(engine: Engine) -> None:
    assert isinstance(engine, Control)
    for ch in ("b", "a:pu", "c"):
        await engine.presence_join(ch, "user", "client-1", "{}")
    await engine.publish("history-only", b"1")
    assert await engine.present_channels(10) == ["a:pu", "b", "c"]
    assert len(await engine.present_channels(2)) == 2
    await engine.presence_leave("b", "user", "client-1")
    assert await engine.present_channels(10) == ["a:pu", "c"]
