"""The incoming message queue, with a fake transport that records flow control."""

from __future__ import annotations

import asyncio

import pytest

from openline.asyncio.messages import MessageQueue
from openline.exceptions import ConcurrencyError, ConnectionClosedOK
from openline.protocol.frames import Close


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


# --- two reasons to pause reading: a full queue and blocked writes ----------------------------


async def test_blocked_writes_pause_and_resume_reading() -> None:
    queue, transport = make_queue()
    queue.pause_for_writes()
    assert not transport.is_reading()
    assert queue.is_reading_paused
    queue.resume_for_writes()
    assert transport.is_reading()
    assert not queue.is_reading_paused


async def test_draining_the_queue_does_not_resume_reading_paused_for_writes() -> None:
    queue, transport = make_queue(high=2, low=0)
    queue.put("a")
    queue.put("b")  # full: paused
    queue.pause_for_writes()
    assert await queue.get() == "a"
    assert await queue.get() == "b"  # drained to the low mark...
    assert not transport.is_reading()  # ...but writes are still blocked
    queue.resume_for_writes()
    assert transport.is_reading()


async def test_unblocked_writes_do_not_resume_reading_paused_for_a_full_queue() -> None:
    queue, transport = make_queue(high=2, low=0)
    queue.pause_for_writes()
    queue.put("a")
    queue.put("b")
    queue.resume_for_writes()
    assert not transport.is_reading()  # the queue is still full
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert transport.is_reading()


async def test_release_keeps_reading_paused_for_writes() -> None:
    queue, transport = make_queue(high=1)
    queue.put("a")
    queue.pause_for_writes()
    queue.release()  # the closing handshake starts: the queue stops pausing
    assert not transport.is_reading()
    queue.resume_for_writes()
    assert transport.is_reading()


async def test_pausing_for_writes_twice_needs_one_resume() -> None:
    queue, transport = make_queue()
    queue.pause_for_writes()
    queue.pause_for_writes()
    queue.resume_for_writes()
    assert transport.is_reading()
    queue.resume_for_writes()  # nothing to undo
    assert transport.is_reading()


async def test_closing_transport_is_not_paused_for_writes() -> None:
    queue, transport = make_queue()
    transport.closing = True
    queue.pause_for_writes()
    assert transport.is_reading()
    assert not queue.is_reading_paused


# --- get_next: the awaitable behind ``async for`` ------------------------------------------


def normal_close() -> ConnectionClosedOK:
    return ConnectionClosedOK(Close(1000, ""), Close(1000, ""), rcvd_then_sent=True)


async def test_get_next_returns_buffered_then_waited_messages() -> None:
    queue, _ = make_queue()
    queue.put("a")
    assert await queue.get_next() == "a"
    reader = asyncio.ensure_future(queue.get_next())
    await asyncio.sleep(0)
    assert queue.has_waiter
    queue.put("b")
    assert await reader == "b"
    assert not queue.has_waiter


async def test_get_next_ends_the_iteration_at_a_normal_close() -> None:
    queue, _ = make_queue()
    queue.put("last")
    queue.close(normal_close)
    assert await queue.get_next() == "last"
    with pytest.raises(StopAsyncIteration):
        await queue.get_next()
    # get() raises the exception itself.
    with pytest.raises(ConnectionClosedOK):
        await queue.get()


async def test_get_next_woken_by_close() -> None:
    queue, _ = make_queue()
    stopped = asyncio.ensure_future(queue.get_next())
    await asyncio.sleep(0)
    queue.close(Closed)
    with pytest.raises(Closed):
        await stopped


async def test_get_next_while_another_reader_waits_raises_concurrency_error() -> None:
    queue, _ = make_queue()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(ConcurrencyError):
        await queue.get_next()
    queue.put("x")
    assert await reader == "x"


async def test_cancelled_get_next_keeps_message_delivered_before_cancellation() -> None:
    queue, _ = make_queue()

    async def read() -> object:
        return await queue.get_next()

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    queue.put("kept")  # fills the reader's future...
    reader.cancel()  # ...before the reader runs again
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not queue.has_waiter
    assert await queue.get_next() == "kept"


async def test_cancelled_get_next_lets_the_next_message_be_buffered() -> None:
    queue, _ = make_queue()

    async def read() -> object:
        return await queue.get_next()

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    queue.put("later")
    assert len(queue) == 1
    assert await queue.get() == "later"


async def test_get_next_abandoned_by_a_closed_coroutine_releases_the_queue() -> None:
    queue, _ = make_queue()

    async def read() -> object:
        return await queue.get_next()

    coroutine = read()
    future = coroutine.send(None)  # waits on the queue's future
    assert isinstance(future, asyncio.Future)
    assert queue.has_waiter
    coroutine.close()
    assert not queue.has_waiter
    queue.put("x")
    assert await queue.get() == "x"
