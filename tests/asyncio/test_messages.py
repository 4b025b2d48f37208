"""The incoming message queue, with a fake transport that records flow control."""

from __future__ import annotations

import asyncio

import pytest

from openline.asyncio.messages import MessageQueue
from openline.exceptions import ConcurrencyError


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closing = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing


def make_queue(high: int | None = 4, low: int = 1) -> tuple[MessageQueue, FakeTransport]:
    transport = FakeTransport()
    return MessageQueue(transport, high, low), transport


async def test_get_returns_buffered_messages_in_order() -> None:
    queue, _ = make_queue()
    queue.put("a")
    queue.put(b"b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == b"b"
    assert len(queue) == 0


async def test_put_hands_message_to_waiting_reader_without_buffering() -> None:
    queue, _ = make_queue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put("direct")
    assert len(queue) == 0
    assert await reader == "direct"


async def test_reading_pauses_at_high_and_resumes_at_low() -> None:
    queue, transport = make_queue(high=4, low=1)
    for index in range(3):
        queue.put(str(index))
    assert transport.is_reading()
    queue.put("3")
    assert not transport.is_reading()
    queue.put("4")  # already paused: buffered all the same
    assert queue.get_nowait() == "0"
    assert queue.get_nowait() == "1"
    assert queue.get_nowait() == "2"
    assert not transport.is_reading()
    assert queue.get_nowait() == "3"
    assert transport.is_reading()
    assert queue.get_nowait() == "4"
    assert queue.get_nowait() is None


async def test_unbounded_queue_never_pauses() -> None:
    queue, transport = make_queue(high=None)
    for index in range(1000):
        queue.put(str(index))
    assert transport.is_reading()


class Closed(Exception):
    pass


async def test_close_raises_after_buffered_messages() -> None:
    queue, transport = make_queue(high=1)
    queue.put("last")
    assert not transport.is_reading()
    queue.close(Closed)
    assert transport.is_reading()  # the peer's close must still be read
    queue.put("late")  # the core never does this; the queue tolerates it
    assert await queue.get() == "last"
    assert await queue.get() == "late"
    with pytest.raises(Closed):
        await queue.get()


async def test_close_wakes_waiting_reader_with_exception() -> None:
    queue, _ = make_queue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.close(Closed)
    queue.close(RuntimeError)  # the first close wins
    with pytest.raises(Closed):
        await reader


async def test_second_reader_raises_concurrency_error() -> None:
    queue, _ = make_queue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(ConcurrencyError):
        await queue.get()
    queue.put("x")
    assert await reader == "x"


async def test_cancelled_reader_keeps_message_delivered_before_cancellation() -> None:
    queue, _ = make_queue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put("kept")  # fills the reader's future...
    reader.cancel()  # ...before the reader runs again
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert await queue.get() == "kept"


async def test_closing_transport_is_not_paused() -> None:
    queue, transport = make_queue(high=1)
    transport.closing = True
    queue.put("x")
    assert transport.is_reading()
