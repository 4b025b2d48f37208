"""The low-level API: ``listen()`` callbacks and ``send_nowait()``."""

from __future__ import annotations

import asyncio

import pytest

from openline.asyncio.client import connect
from openline.asyncio.connection import Connection
from openline.asyncio.server import ServerConnection
from openline.exceptions import ConcurrencyError, ConnectionClosed, ConnectionClosedError
from openline.typing import Data

from .helpers import TIMEOUT, run_server, url_of


def echo_listener(ws: Connection, message: Data) -> None:
    ws.send_nowait(message)


async def listening_echo(ws: ServerConnection) -> None:
    ws.listen(echo_listener)
    await ws.wait_closed()


async def test_listener_echoes_text_and_binary() -> None:
    async with run_server(listening_echo) as server, connect(url_of(server)) as ws:
        await ws.send("héllo")
        await ws.send(b"\x00\x01")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "héllo"
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\x01"


async def test_answers_to_one_read_are_written_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    original = Connection._write

    def counting(self: Connection, chunks: list[bytes]) -> None:
        if isinstance(self, ServerConnection):
            writes.append(len(chunks))
        original(self, chunks)

    monkeypatch.setattr(Connection, "_write", counting)
    async with run_server(listening_echo) as server, connect(url_of(server)) as ws:
        # Sixteen messages in one write from the client arrive in one read.
        core = ws._core
        assert core is not None
        for i in range(16):
            core.send_text(str(i).encode())
        ws._flush(core)
        got = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(16)]
        assert got == [str(i) for i in range(16)]
    # The sixteen answers left in a single write (one writelines call).
    assert 16 in writes


async def test_listen_hands_over_messages_already_queued() -> None:
    received: list[Data] = []
    queued = asyncio.Event()
    all_three = asyncio.Event()

    def listener(_ws: object, message: Data) -> None:
        received.append(message)
        if len(received) == 3:
            all_three.set()

    async def late(ws: ServerConnection) -> None:
        await queued.wait()
        assert len(ws._messages) == 2
        ws.listen(listener)
        await ws.wait_closed()

    async with run_server(late) as server, connect(url_of(server)) as ws:
        await ws.send("one")
        await ws.send("two")
        # The server reads frames in order: once the pong is back, it has queued both.
        await asyncio.wait_for(await ws.ping(), TIMEOUT)
        queued.set()
        await ws.send("three")
        await asyncio.wait_for(all_three.wait(), TIMEOUT)
    assert received == ["one", "two", "three"]


async def test_listen_refuses_while_recv_waits() -> None:
    result: list[BaseException] = []

    async def both(ws: ServerConnection) -> None:
        task = asyncio.ensure_future(ws.recv())
        await asyncio.sleep(0)  # one loop turn: the task starts and waits in recv()
        try:
            ws.listen(echo_listener)
        except ConcurrencyError as exc:
            result.append(exc)
        task.cancel()
        await ws.close()

    async with run_server(both) as server, connect(url_of(server)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert len(result) == 1


async def test_listener_exception_fails_with_1011() -> None:
    def broken(ws: Connection, message: Data) -> None:
        raise RuntimeError("boom")

    async def handler(ws: ServerConnection) -> None:
        ws.listen(broken)
        await ws.wait_closed()

    async with run_server(handler) as server, connect(url_of(server)) as ws:
        await ws.send("x")
        with pytest.raises(ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert info.value.code == 1011


async def test_send_nowait_after_close_raises() -> None:
    async with run_server(listening_echo) as server:
        ws = await connect(url_of(server))
        await ws.close()
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("late")


async def test_send_nowait_rejects_other_types() -> None:
    async with run_server(listening_echo) as server, connect(url_of(server)) as ws:
        with pytest.raises(TypeError, match="cannot send int"):
            ws.send_nowait(42)  # type: ignore[arg-type]
        assert ws.buffered_amount == 0
