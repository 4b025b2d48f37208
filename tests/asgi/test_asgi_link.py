"""AsgiLink's own checks: frames it takes from broadcasts, and its arguments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openline.asyncio.broadcast import Broadcast
from openline.exceptions import ConnectionClosed
from openline.hub.asgi import request_from_scope
from openline.hub.asgi_link import AsgiLink
from openline.protocol.frames import Frame, Opcode, serialize_frame
from openline.protocol.http11 import Headers, Request


async def never(*args: Any) -> Any:
    raise AssertionError("the link must not talk to the server before start()")


def link(**kwargs: Any) -> AsgiLink:
    return AsgiLink(never, never, Request("/", Headers()), None, **kwargs)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 100_000])
async def test_a_broadcast_frame_of_any_length_is_queued_as_its_payload(size: int) -> None:
    ws = link()
    assert Broadcast(b"x" * size, text=True).write(ws)
    assert ws.buffered_amount == size == ws.outgoing_amount()
    assert ws.acked_amount() == 0  # nothing taken by the server's send yet


async def test_write_shared_queues_the_payload_and_returns_what_is_queued() -> None:
    ws = link()
    frame = Broadcast(b"shared", text=True).frame
    assert ws.write_shared(frame) == 6
    assert ws.write_shared(frame) == 12 == ws.buffered_amount
    ws.abort()
    assert ws.write_shared(frame) == -1


@pytest.mark.parametrize(
    "frame",
    [
        b"\x81",  # too short
        serialize_frame(Frame(Opcode.TEXT, b"hi", fin=False), mask=False),
        serialize_frame(Frame(Opcode.PING, b""), mask=False),
        serialize_frame(Frame(Opcode.TEXT, b"hi"), mask=True),
    ],
    ids=["short", "fragment", "ping", "masked"],
)
async def test_a_frame_other_than_one_whole_unmasked_message_is_refused(frame: bytes) -> None:
    with pytest.raises(ValueError, match="expected"):
        link().write_frame_nowait(frame)


async def test_write_limit_and_close_timeout_are_checked() -> None:
    with pytest.raises(ValueError, match="write_limit"):
        link(write_limit=(10, 20))
    with pytest.raises(ValueError, match="close_timeout"):
        link(close_timeout=0)
    assert link(write_limit=1000).buffered_amount == 0


async def test_abort_drops_the_queue_and_closes_with_1013() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    ws = AsgiLink(never, send, Request("/", Headers()), None)
    ws.send_payload_nowait(b"queued", text=True)
    ws.abort()
    assert (ws.is_writable, ws.buffered_amount) == (False, 0)
    with pytest.raises(ConnectionClosed):
        ws.send_payload_nowait(b"late", text=True)
    with pytest.raises(ConnectionClosed):
        await ws.drain()
    await ws.close()  # returns once the close has left
    await ws.finish()
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": "slow consumer"}]


def test_the_request_is_rebuilt_from_the_scope() -> None:
    scope = {
        "type": "websocket",
        "path": "/app/ws",
        "raw_path": b"/app/ws",
        "query_string": b"token=abc",
        "headers": [(b"host", b"example.com"), (b"cookie", b"a=1")],
    }
    request = request_from_scope(scope)
    assert request.path == "/app/ws?token=abc"
    assert request.headers["Cookie"] == "a=1"
    # Without raw_path, the decoded path is quoted back.
    request = request_from_scope({"path": "/a b", "headers": []})
    assert request.path == "/a%20b"


class GatedSend:
    """An ASGI ``send`` that holds ``websocket.send`` events until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await self.gate.wait()
        self.sent.append(message)


async def test_a_reply_waits_for_room_in_the_queue() -> None:
    send = GatedSend()
    ws = AsgiLink(never, send, Request("/", Headers()), None, write_limit=(100, 10))
    ws.start()
    with pytest.raises(RuntimeError, match="started already"):
        ws.start()
    ws.send_payload_nowait(b"x" * 200, text=False)
    replied = asyncio.ensure_future(Broadcast(b"reply", text=True).send(ws))
    await asyncio.sleep(0)
    assert not replied.done()  # 205 bytes queued, above the high mark
    send.gate.set()
    await asyncio.wait_for(replied, 5)
    await ws.close(1000, "é" * 100)  # a reason longer than a close frame holds
    await ws.finish()
    assert send.sent[0] == {"type": "websocket.send", "bytes": b"x" * 200}
    assert send.sent[1] == {"type": "websocket.send", "text": "reply"}
    close = send.sent[2]
    assert (close["type"], close["code"]) == ("websocket.close", 1000)
    assert close["reason"] == "é" * 61  # 122 bytes: a whole character fits no more


async def test_a_close_stuck_behind_a_blocked_send_aborts() -> None:
    send = GatedSend()
    ws = AsgiLink(never, send, Request("/", Headers()), None, close_timeout=0.01)
    ws.start()
    ws.send_payload_nowait(b"never taken", text=True)
    await ws.close(1000, "bye")
    await ws.finish()
    # The queued message was dropped; the close went out as an abort's.
    assert send.sent == [{"type": "websocket.close", "code": 1013, "reason": "slow consumer"}]


class StepSend:
    """A server's send that takes one message each time the test allows it."""

    def __init__(self) -> None:
        self.allowed = asyncio.Semaphore(0)
        self.taken = asyncio.Queue[Any]()

    async def __call__(self, message: Any) -> None:
        await self.allowed.acquire()
        await self.taken.put(message)


async def test_progress_is_what_the_server_took_though_the_queue_never_shrinks() -> None:
    # A subscriber that reads everything while each broadcast refills its queue: the
    # queue holds one message at every look, and only what the server took grows.
    send = StepSend()
    ws = AsgiLink(never, send, Request("/", Headers()), None)
    ws.start()
    Broadcast(b"m0", text=True).write(ws)
    seen = [(ws.buffered_amount, ws.acked_amount())]
    for index in range(1, 4):
        Broadcast(b"m%d" % index, text=True).write(ws)
        send.allowed.release()
        taken = await asyncio.wait_for(send.taken.get(), 5)
        assert taken == {"type": "websocket.send", "text": f"m{index - 1}"}
        seen.append((ws.buffered_amount, ws.acked_amount()))
    assert seen == [(2, 0), (2, 2), (2, 4), (2, 6)]
    ws.abort()
    for _ in range(10):
        send.allowed.release()
    await ws.finish()
