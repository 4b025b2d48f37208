"""Answers to pings under flow control: coalesced while output is blocked (RFC 6455, 5.5.3)."""

from __future__ import annotations

import pytest

from openline.protocol.connection import _PONG_BURST, Connection, Side
from openline.protocol.events import Ping, TextMessage
from openline.protocol.frames import Close, Frame, Opcode

from .helpers import parse_output, peer_frame

# Every test runs on the compiled and on the pure-Python frame path (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_path")

SIDES = [Side.SERVER, Side.CLIENT]


@pytest.fixture(params=SIDES, ids=lambda side: side.value)
def side(request: pytest.FixtureRequest) -> Side:
    return request.param  # type: ignore[no-any-return]


def pings(side: Side, count: int, start: int = 0) -> bytes:
    return b"".join(peer_frame(side, Opcode.PING, b"%d" % i) for i in range(start, start + count))


def sent_frames(conn: Connection) -> list[Frame | None]:
    return parse_output(conn.side, conn.data_to_send())


def test_answers_every_ping_of_a_short_burst(side: Side) -> None:
    conn = Connection(side)
    conn.receive_data(pings(side, 10))
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"%d" % i) for i in range(10)]


def test_answers_pings_one_read_at_a_time(side: Side) -> None:
    conn = Connection(side)
    for i in range(3 * _PONG_BURST):
        conn.receive_data(peer_frame(side, Opcode.PING, b"%d" % i))
        assert sent_frames(conn) == [Frame(Opcode.PONG, b"%d" % i)]


def test_coalesces_pongs_of_one_read_full_of_pings(side: Side) -> None:
    conn = Connection(side)
    conn.receive_data(pings(side, 10_000))
    assert len(conn.events_received()) == 10_000
    frames = sent_frames(conn)
    expected = [Frame(Opcode.PONG, b"%d" % i) for i in range(_PONG_BURST)]
    # The first pongs of the burst, then one for the most recent ping.
    assert frames == [*expected, Frame(Opcode.PONG, b"9999")]
    assert not conn.pong_held


def test_holds_one_pong_while_output_is_paused(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    paused = conn.output_paused
    assert paused
    events = []
    for start in range(0, 1000, 100):
        conn.receive_data(pings(side, 100, start))
        events += conn.events_received()
        assert conn.data_to_send() == []
        assert conn.pong_held
    assert events == [Ping(b"%d" % i) for i in range(1000)]
    conn.resume_output()
    assert not conn.output_paused
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"999")]
    assert not conn.pong_held
    assert conn.data_to_send() == []


def test_sends_data_while_output_is_paused(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    conn.receive_data(peer_frame(side, Opcode.PING, b"p"))
    conn.send_text("hello")
    assert sent_frames(conn) == [Frame(Opcode.TEXT, b"hello")]
    conn.resume_output()
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"p")]


def test_answers_at_once_again_after_resuming(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    conn.receive_data(pings(side, 5))
    conn.resume_output()
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"4")]
    conn.receive_data(pings(side, 2, 5))
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"5"), Frame(Opcode.PONG, b"6")]


def test_sends_held_pong_before_its_close_frame(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    conn.receive_data(pings(side, 3))
    conn.send_close(1001)
    frames = sent_frames(conn)
    assert frames[:2] == [Frame(Opcode.PONG, b"2"), Frame(Opcode.CLOSE, Close(1001).serialize())]
    assert not conn.pong_held


def test_sends_held_pong_before_failing(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    conn.receive_data(pings(side, 3))
    conn.fail(1011, "keepalive ping timeout")
    close = Frame(Opcode.CLOSE, Close(1011, "keepalive ping timeout").serialize())
    end = [None] if side is Side.SERVER else []
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"2"), close, *end]


def test_sends_held_pong_before_answering_a_close(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    conn.receive_data(pings(side, 3) + peer_frame(side, Opcode.CLOSE, Close(1000).serialize()))
    frames = sent_frames(conn)
    assert frames[:2] == [Frame(Opcode.PONG, b"2"), Frame(Opcode.CLOSE, Close(1000).serialize())]


def test_client_sends_held_pong_before_its_end_of_stream() -> None:
    conn = Connection(Side.CLIENT)
    conn.pause_output()
    conn.receive_data(pings(Side.CLIENT, 3))
    conn.receive_eof()
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"2"), None]


def test_does_not_hold_pongs_after_sending_close(side: Side) -> None:
    conn = Connection(side)
    conn.send_close()
    conn.data_to_send()
    conn.pause_output()
    conn.receive_data(pings(side, 3))
    assert not conn.pong_held
    conn.resume_output()
    assert conn.data_to_send() == []


def test_delivers_messages_between_coalesced_pings(side: Side) -> None:
    conn = Connection(side)
    conn.pause_output()
    data = pings(side, 2) + peer_frame(side, Opcode.TEXT, b"hi") + pings(side, 2, 2)
    conn.receive_data(data)
    expected = [Ping(b"0"), Ping(b"1"), TextMessage("hi"), Ping(b"2"), Ping(b"3")]
    assert conn.events_received() == expected
    conn.resume_output()
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"3")]
