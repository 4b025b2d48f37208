"""The connection state machine, for both sides: bytes in, events and bytes out."""

from __future__ import annotations

import pytest

from openline.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from openline.protocol.connection import Connection, Side, State
from openline.protocol.events import BinaryMessage, Ping, Pong, TextMessage
from openline.protocol.frames import Close, Frame, Opcode

from .helpers import assert_closed_with, close_frame, parse_output, peer_frame, wire_frame

# Every test runs on the compiled and on the pure-Python frame path (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_path")

SIDES = [Side.SERVER, Side.CLIENT]


@pytest.fixture(params=SIDES, ids=lambda side: side.value)
def side(request: pytest.FixtureRequest) -> Side:
    return request.param  # type: ignore[no-any-return]


def receive(conn: Connection, *chunks: bytes) -> list[object]:
    for chunk in chunks:
        conn.receive_data(chunk)
    return list(conn.events_received())


def sent_frames(conn: Connection) -> list[Frame | None]:
    return parse_output(conn.side, conn.data_to_send())


# --- receiving messages -----------------------------------------------------------------


def test_receives_text(side: Side) -> None:
    conn = Connection(side)
    assert receive(conn, peer_frame(side, Opcode.TEXT, "café".encode())) == [TextMessage("café")]


def test_receives_binary(side: Side) -> None:
    conn = Connection(side)
    assert receive(conn, peer_frame(side, Opcode.BINARY, b"\x00\xff")) == [
        BinaryMessage(b"\x00\xff")
    ]


def test_receives_empty_messages(side: Side) -> None:
    conn = Connection(side)
    events = receive(conn, peer_frame(side, Opcode.TEXT), peer_frame(side, Opcode.BINARY))
    assert events == [TextMessage(""), BinaryMessage(b"")]


@pytest.mark.parametrize("size", [0, 125, 126, 127, 65535, 65536, 100_000])
def test_receives_every_length_encoding(side: Side, size: int) -> None:
    conn = Connection(side, max_size=None)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert receive(conn, peer_frame(side, Opcode.BINARY, data)) == [BinaryMessage(data)]


def test_receives_many_frames_in_one_chunk(side: Side) -> None:
    conn = Connection(side)
    chunk = b"".join(peer_frame(side, Opcode.TEXT, str(i).encode()) for i in range(100))
    assert receive(conn, chunk) == [TextMessage(str(i)) for i in range(100)]


def test_receives_a_frame_one_byte_at_a_time(side: Side) -> None:
    conn = Connection(side)
    data = peer_frame(side, Opcode.TEXT, "κόσμε".encode() * 30)
    events: list[object] = []
    for i in range(len(data)):
        events += receive(conn, data[i : i + 1])
        if i < len(data) - 1:
            assert events == []
    assert events == [TextMessage("κόσμε" * 30)]


def test_receives_fragmented_text(side: Side) -> None:
    conn = Connection(side)
    payload = "héllo wörld".encode()
    events = receive(
        conn,
        peer_frame(side, Opcode.TEXT, payload[:2], fin=False),  # splits "é" in two
        peer_frame(side, Opcode.CONT, payload[2:5], fin=False),
        peer_frame(side, Opcode.CONT, payload[5:], fin=True),
    )
    assert events == [TextMessage("héllo wörld")]


def test_receives_fragmented_binary(side: Side) -> None:
    conn = Connection(side)
    events = receive(
        conn,
        peer_frame(side, Opcode.BINARY, b"ab", fin=False),
        peer_frame(side, Opcode.CONT, b"", fin=False),
        peer_frame(side, Opcode.CONT, b"cd", fin=True),
    )
    assert events == [BinaryMessage(b"abcd")]


def test_receives_control_frames_inside_a_fragmented_message(side: Side) -> None:
    conn = Connection(side)
    events = receive(
        conn,
        peer_frame(side, Opcode.TEXT, b"a", fin=False),
        peer_frame(side, Opcode.PING, b"p"),
        peer_frame(side, Opcode.PONG, b"q"),
        peer_frame(side, Opcode.CONT, b"b", fin=True),
    )
    assert events == [Ping(b"p"), Pong(b"q"), TextMessage("ab")]


def test_receives_ping_and_answers_with_pong(side: Side) -> None:
    conn = Connection(side)
    assert receive(conn, peer_frame(side, Opcode.PING, b"hi")) == [Ping(b"hi")]
    assert sent_frames(conn) == [Frame(Opcode.PONG, b"hi")]


def test_receives_pong(side: Side) -> None:
    conn = Connection(side)
    assert receive(conn, peer_frame(side, Opcode.PONG, b"x")) == [Pong(b"x")]
    assert conn.data_to_send() == []


def test_receives_control_frame_of_125_bytes(side: Side) -> None:
    conn = Connection(side)
    assert receive(conn, peer_frame(side, Opcode.PING, b"x" * 125)) == [Ping(b"x" * 125)]


# --- framing violations -----------------------------------------------------------------

VIOLATIONS = [
    ("rsv1", lambda s: peer_frame(s, Opcode.TEXT, b"x", rsv1=True), 1002),
    ("rsv2", lambda s: peer_frame(s, Opcode.TEXT, b"x", rsv2=True), 1002),
    ("rsv3", lambda s: peer_frame(s, Opcode.BINARY, b"x", rsv3=True), 1002),
    ("opcode 3", lambda s: _raw_opcode(s, 3), 1002),
    ("opcode 7", lambda s: _raw_opcode(s, 7), 1002),
    ("opcode 11", lambda s: _raw_opcode(s, 11), 1002),
    ("opcode 15", lambda s: _raw_opcode(s, 15), 1002),
    ("fragmented ping", lambda s: peer_frame(s, Opcode.PING, b"x", fin=False), 1002),
    ("fragmented close", lambda s: peer_frame(s, Opcode.CLOSE, b"", fin=False), 1002),
    ("ping of 126 bytes", lambda s: peer_frame(s, Opcode.PING, b"x" * 126), 1002),
    ("pong of 126 bytes", lambda s: peer_frame(s, Opcode.PONG, b"x" * 126), 1002),
    ("close of 126 bytes", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xe8" + b"x" * 124), 1002),
    ("lone continuation", lambda s: peer_frame(s, Opcode.CONT, b"x"), 1002),
    (
        "text inside a message",
        lambda s: peer_frame(s, Opcode.TEXT, b"a", fin=False) + peer_frame(s, Opcode.TEXT, b"b"),
        1002,
    ),
    (
        "binary inside a message",
        lambda s: (
            peer_frame(s, Opcode.BINARY, b"a", fin=False) + peer_frame(s, Opcode.BINARY, b"b")
        ),
        1002,
    ),
    ("invalid utf-8", lambda s: peer_frame(s, Opcode.TEXT, b"\xff"), 1007),
    ("surrogate", lambda s: peer_frame(s, Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    ("over U+10FFFF", lambda s: peer_frame(s, Opcode.TEXT, b"\xf4\x90\x80\x80"), 1007),
    ("overlong", lambda s: peer_frame(s, Opcode.TEXT, b"\xc0\xaf"), 1007),
    ("truncated utf-8 at the end", lambda s: peer_frame(s, Opcode.TEXT, b"\xe2\x82"), 1007),
    (
        "truncated utf-8 across fragments",
        lambda s: peer_frame(s, Opcode.TEXT, b"a", fin=False) + peer_frame(s, Opcode.CONT, b"\xe2"),
        1007,
    ),
    ("one-byte close", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03"), 1002),
    ("close code 999", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xe7"), 1002),
    ("close code 1004", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xec"), 1002),
    ("close code 1005", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xed"), 1002),
    ("close code 1006", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xee"), 1002),
    ("close code 1015", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xf7"), 1002),
    ("close code 1016", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xf8"), 1002),
    ("close code 2999", lambda s: peer_frame(s, Opcode.CLOSE, b"\x0b\xb7"), 1002),
    ("close code 5000", lambda s: peer_frame(s, Opcode.CLOSE, b"\x13\x88"), 1002),
    ("close code 65535", lambda s: peer_frame(s, Opcode.CLOSE, b"\xff\xff"), 1002),
    ("close reason not utf-8", lambda s: peer_frame(s, Opcode.CLOSE, b"\x03\xe8\xff"), 1007),
]


def _raw_opcode(side: Side, opcode: int) -> bytes:
    frame = bytearray(peer_frame(side, Opcode.BINARY, b"x"))
    frame[0] = 0x80 | opcode
    return bytes(frame)


@pytest.mark.parametrize(
    ("build", "code"), [(b, c) for _, b, c in VIOLATIONS], ids=[name for name, _, _ in VIOLATIONS]
)
def test_fails_on_violation(side: Side, build: object, code: int) -> None:
    conn = Connection(side)
    events = receive(conn, build(side))  # type: ignore[operator]
    assert not any(isinstance(e, Close) for e in events)
    assert_closed_with(conn, code)
    assert isinstance(conn.protocol_error, ProtocolError)
    assert conn.protocol_error.code == code
    assert conn.state is State.CLOSING
    assert conn.close_expected()


def test_server_fails_unmasked_frame() -> None:
    conn = Connection(Side.SERVER)
    receive(conn, wire_frame(Opcode.TEXT, b"x", masked=False))
    assert_closed_with(conn, 1002)
    assert str(conn.protocol_error) == "unmasked frame"


def test_client_fails_masked_frame() -> None:
    conn = Connection(Side.CLIENT)
    receive(conn, wire_frame(Opcode.TEXT, b"x", masked=True))
    assert_closed_with(conn, 1002)
    assert str(conn.protocol_error) == "masked frame from the server"


def test_fails_64_bit_length_with_top_bit_set(side: Side) -> None:
    conn = Connection(side, max_size=None)
    mask_bit = 0x80 if side is Side.SERVER else 0
    receive(conn, bytes([0x82, mask_bit | 127]) + b"\x80" + b"\x00" * 7)
    assert_closed_with(conn, 1002)


def test_fails_header_violations_before_the_payload_arrives(side: Side) -> None:
    conn = Connection(side)
    frame = peer_frame(side, Opcode.PING, b"x" * 200)
    receive(conn, frame[:6])  # the header only
    assert_closed_with(conn, 1002)


def test_ignores_everything_after_failing(side: Side) -> None:
    conn = Connection(side)
    receive(conn, _raw_opcode(side, 3))
    conn.data_to_send()
    assert receive(conn, peer_frame(side, Opcode.TEXT, b"ignored")) == []
    assert conn.data_to_send() == []


def test_delivers_messages_before_the_violation(side: Side) -> None:
    conn = Connection(side)
    events = receive(conn, peer_frame(side, Opcode.TEXT, b"ok") + _raw_opcode(side, 3))
    assert events == [TextMessage("ok")]
    assert_closed_with(conn, 1002)


# --- UTF-8 fails fast -------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b"\xf4\x90", b"\xed\xa0", b"\xc0", b"\xff", b"\xe0\x80"],
    ids=["above-max", "surrogate", "overlong-start", "ff", "overlong-3"],
)
def test_fails_invalid_utf8_before_the_frame_is_complete(side: Side, bad: bytes) -> None:
    conn = Connection(side)
    frame = peer_frame(side, Opcode.TEXT, b"valid prefix " + bad + b" rest" * 100)
    cut = frame.index(b"rest") if side is Side.CLIENT else len(frame) - 400
    receive(conn, frame[:cut])
    assert_closed_with(conn, 1007)


def test_fails_invalid_utf8_in_a_later_fragment_at_once(side: Side) -> None:
    conn = Connection(side)
    receive(conn, peer_frame(side, Opcode.TEXT, "κόσμε".encode(), fin=False))
    assert conn.data_to_send() == []
    receive(conn, peer_frame(side, Opcode.CONT, b"\xf4\x90\x80\x80", fin=False))
    assert_closed_with(conn, 1007)


def test_accepts_utf8_split_across_partial_chunks(side: Side) -> None:
    conn = Connection(side)
    text = "𝄞 music κόσμε" * 20
    frame = peer_frame(side, Opcode.TEXT, text.encode())
    events: list[object] = []
    for i in range(0, len(frame), 7):
        events += receive(conn, frame[i : i + 7])
    assert events == [TextMessage(text)]
    assert conn.data_to_send() == []


def test_partial_utf8_check_works_across_fragments(side: Side) -> None:
    conn = Connection(side)
    first = peer_frame(side, Opcode.TEXT, "ab€".encode()[:3], fin=False)
    second = peer_frame(side, Opcode.CONT, "€cd".encode()[1:] + b"x" * 50, fin=True)
    events = receive(conn, first, second[:10], second[10:30], second[30:])
    assert events == [TextMessage("ab€cd" + "x" * 50)]


# --- size limits ------------------------------------------------------------------------


def test_fails_frame_over_max_size_from_its_header(side: Side) -> None:
    conn = Connection(side, max_size=1000)
    frame = peer_frame(side, Opcode.BINARY, b"x" * 1001)
    receive(conn, frame[:14])
    assert_closed_with(conn, 1009)
    assert isinstance(conn.protocol_error, PayloadTooBig)
    assert str(conn.protocol_error) == "message of 1001 bytes exceeds max_size of 1000 bytes"


def test_fails_fragmented_message_over_max_size(side: Side) -> None:
    conn = Connection(side, max_size=1000)
    events = receive(
        conn,
        peer_frame(side, Opcode.TEXT, b"x" * 600, fin=False),
        peer_frame(side, Opcode.CONT, b"x" * 401, fin=True),
    )
    assert events == []
    assert_closed_with(conn, 1009)


def test_accepts_message_of_exactly_max_size(side: Side) -> None:
    conn = Connection(side, max_size=1000)
    events = receive(
        conn,
        peer_frame(side, Opcode.BINARY, b"x" * 600, fin=False),
        peer_frame(side, Opcode.CONT, b"x" * 400, fin=True),
    )
    assert events == [BinaryMessage(b"x" * 1000)]


def test_max_size_counts_each_message_afresh(side: Side) -> None:
    conn = Connection(side, max_size=10)
    events = receive(conn, *(peer_frame(side, Opcode.BINARY, b"x" * 10) for _ in range(3)))
    assert len(events) == 3


def test_max_size_none_disables_the_limit(side: Side) -> None:
    conn = Connection(side, max_size=None)
    data = b"x" * (2**20 + 1)
    assert receive(conn, peer_frame(side, Opcode.BINARY, data)) == [BinaryMessage(data)]


def test_rejects_negative_max_size() -> None:
    with pytest.raises(ValueError, match="max_size must be >= 0 or None, got -1"):
        Connection(Side.SERVER, max_size=-1)


# --- sending ----------------------------------------------------------------------------


def test_sends_text(side: Side) -> None:
    conn = Connection(side)
    conn.send_text("café")
    assert sent_frames(conn) == [Frame(Opcode.TEXT, "café".encode())]


def test_sends_text_given_as_bytes(side: Side) -> None:
    conn = Connection(side)
    conn.send_text(b"abc")
    assert sent_frames(conn) == [Frame(Opcode.TEXT, b"abc")]


def test_sends_binary(side: Side) -> None:
    conn = Connection(side)
    conn.send_binary(bytearray(b"\x00\x01"))
    assert sent_frames(conn) == [Frame(Opcode.BINARY, b"\x00\x01")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_sends_every_length_encoding(side: Side, size: int) -> None:
    conn = Connection(side)
    conn.send_binary(b"y" * size)
    assert sent_frames(conn) == [Frame(Opcode.BINARY, b"y" * size)]


def test_client_masks_with_a_fresh_key_per_frame() -> None:
    conn = Connection(Side.CLIENT)
    conn.send_text("same")
    conn.send_text("same")
    first, second = conn.data_to_send()
    assert first[1] & 0x80 and second[1] & 0x80
    assert first[2:6] != second[2:6]


def test_server_does_not_mask() -> None:
    conn = Connection(Side.SERVER)
    conn.send_text("x")
    assert conn.data_to_send() == [b"\x81\x01x"]


def test_sends_fragmented_message(side: Side) -> None:
    conn = Connection(side)
    conn.send_text("a", fin=False)
    conn.send_ping(b"p")
    conn.send_continuation("b", fin=False)
    conn.send_continuation(b"c", fin=True)
    conn.send_binary(b"next")
    assert sent_frames(conn) == [
        Frame(Opcode.TEXT, b"a", fin=False),
        Frame(Opcode.PING, b"p"),
        Frame(Opcode.CONT, b"b", fin=False),
        Frame(Opcode.CONT, b"c", fin=True),
        Frame(Opcode.BINARY, b"next"),
    ]


def test_refuses_new_message_during_a_fragmented_one(side: Side) -> None:
    conn = Connection(side)
    conn.send_binary(b"a", fin=False)
    with pytest.raises(InvalidState, match="fragmented message is in progress"):
        conn.send_text("b")
    with pytest.raises(InvalidState):
        conn.send_binary(b"b")


def test_refuses_continuation_without_a_message(side: Side) -> None:
    conn = Connection(side)
    with pytest.raises(InvalidState, match="no fragmented message to continue"):
        conn.send_continuation(b"x", fin=True)


def test_sends_ping_and_pong(side: Side) -> None:
    conn = Connection(side)
    conn.send_ping(b"1")
    conn.send_pong(b"2")
    assert sent_frames(conn) == [Frame(Opcode.PING, b"1"), Frame(Opcode.PONG, b"2")]


@pytest.mark.parametrize("method", ["send_ping", "send_pong"])
def test_refuses_control_payload_over_125_bytes(side: Side, method: str) -> None:
    conn = Connection(side)
    with pytest.raises(ValueError, match="control frame payload of 126 bytes exceeds 125 bytes"):
        getattr(conn, method)(b"x" * 126)


# --- closing handshake ------------------------------------------------------------------


def test_server_initiated_close() -> None:
    server = Connection(Side.SERVER)
    server.send_close(1000, "bye")
    assert sent_frames(server) == [close_frame(1000, "bye")]
    assert server.state is State.CLOSING and server.close_expected()
    # The client echoes; the server then closes the TCP connection first.
    events = receive(server, peer_frame(Side.SERVER, Opcode.CLOSE, Close(1000, "bye").serialize()))
    assert events == [Close(1000, "bye")]
    assert sent_frames(server) == [None]
    assert server.close_rcvd_then_sent is False
    server.receive_eof()
    assert server.state is State.CLOSED
    assert isinstance(server.close_exc, ConnectionClosedOK)


def test_client_initiated_close() -> None:
    client = Connection(Side.CLIENT)
    client.send_close(1001)
    assert sent_frames(client) == [close_frame(1001)]
    receive(client, peer_frame(Side.CLIENT, Opcode.CLOSE, Close(1001).serialize()))
    # The client waits for the server to close TCP, then closes its side.
    assert client.data_to_send() == []
    assert client.close_expected()
    client.receive_eof()
    assert client.data_to_send() == [b""]
    assert client.state is State.CLOSED
    exc = client.close_exc
    assert isinstance(exc, ConnectionClosedOK)
    assert exc.code == 1001


def test_server_answers_close_then_closes_tcp() -> None:
    server = Connection(Side.SERVER)
    receive(server, peer_frame(Side.SERVER, Opcode.CLOSE, Close(1000, "done").serialize()))
    # Section 5.5.1: echo the status code; the reason need not be echoed.
    assert sent_frames(server) == [close_frame(1000), None]
    assert server.close_rcvd_then_sent is True


def test_client_answers_close_and_waits_for_the_server() -> None:
    client = Connection(Side.CLIENT)
    receive(client, peer_frame(Side.CLIENT, Opcode.CLOSE, Close(4000, "x").serialize()))
    assert sent_frames(client) == [close_frame(4000)]
    assert not client.eof_sent
    assert client.close_expected()


def test_answers_empty_close_with_empty_close(side: Side) -> None:
    conn = Connection(side)
    events = receive(conn, peer_frame(side, Opcode.CLOSE, b""))
    assert events == [Close(1005)]
    frames = sent_frames(conn)
    assert frames[0] == Frame(Opcode.CLOSE, b"")
    assert conn.close_code == 1005
    assert isinstance(conn.close_exc, ConnectionClosedOK)


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999])
def test_accepts_valid_close_codes(side: Side, code: int) -> None:
    conn = Connection(side)
    assert receive(conn, peer_frame(side, Opcode.CLOSE, Close(code).serialize())) == [Close(code)]
    assert sent_frames(conn)[0] == close_frame(code)


def test_ignores_data_after_the_close_frame(side: Side) -> None:
    conn = Connection(side)
    events = receive(
        conn,
        peer_frame(side, Opcode.CLOSE, Close(1000).serialize())
        + peer_frame(side, Opcode.TEXT, b"x"),
    )
    assert events == [Close(1000)]


def test_does_not_answer_ping_after_sending_close(side: Side) -> None:
    conn = Connection(side)
    conn.send_close()
    conn.data_to_send()
    assert receive(conn, peer_frame(side, Opcode.PING, b"x")) == [Ping(b"x")]
    assert conn.data_to_send() == []


def test_refuses_to_send_after_close(side: Side) -> None:
    conn = Connection(side)
    conn.send_close()
    for call in (
        lambda: conn.send_text("x"),
        lambda: conn.send_binary(b"x"),
        lambda: conn.send_ping(),
        lambda: conn.send_pong(),
        conn.send_close,
    ):
        with pytest.raises(InvalidState):
            call()


@pytest.mark.parametrize(
    ("code", "reason", "message"),
    [
        (1005, "", "close code 1005 may not be sent on the wire"),
        (1006, "", "close code 1006 may not be sent on the wire"),
        (999, "", "close code 999 may not be sent on the wire"),
        (5000, "", "close code 5000 may not be sent on the wire"),
        (1000, "x" * 124, "close reason of 124 bytes exceeds 123 bytes"),
        (None, "why", "a close reason requires a close code"),
    ],
)
def test_refuses_to_send_invalid_close(code: int | None, reason: str, message: str) -> None:
    conn = Connection(Side.SERVER)
    with pytest.raises(ValueError, match=message):
        conn.send_close(code, reason)
    assert conn.state is State.OPEN


def test_sends_close_without_code() -> None:
    conn = Connection(Side.CLIENT)
    conn.send_close(None)
    assert sent_frames(conn) == [Frame(Opcode.CLOSE, b"")]


def test_eof_without_close_is_abnormal(side: Side) -> None:
    conn = Connection(side)
    conn.receive_eof()
    assert conn.state is State.CLOSED
    assert conn.close_code == 1006
    exc = conn.close_exc
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 1006
    assert str(exc) == "no close frame received or sent"


def test_eof_in_the_middle_of_a_frame(side: Side) -> None:
    conn = Connection(side)
    receive(conn, peer_frame(side, Opcode.BINARY, b"abc")[:3])
    conn.receive_eof()
    assert conn.protocol_error is not None and conn.protocol_error.code == 1006


def test_refuses_data_after_eof(side: Side) -> None:
    conn = Connection(side)
    conn.receive_eof()
    with pytest.raises(InvalidState, match="data received after end of stream"):
        conn.receive_data(b"x")
    with pytest.raises(InvalidState, match="end of stream received twice"):
        conn.receive_eof()


def test_server_eof_is_not_repeated_by_client_when_already_sent() -> None:
    client = Connection(Side.CLIENT)
    client.fail(1002)
    client.data_to_send()
    client.receive_eof()
    assert client.data_to_send() == [b""]


def test_fail_sends_close_and_server_drops_tcp() -> None:
    server = Connection(Side.SERVER)
    server.fail(1011, "oops")
    assert sent_frames(server) == [close_frame(1011, "oops"), None]
    # Our own failure is not the peer's protocol error.
    assert server.protocol_error is None


def test_fail_after_close_sent_does_not_send_another() -> None:
    client = Connection(Side.CLIENT)
    client.send_close()
    client.data_to_send()
    client.fail(1011)
    assert client.data_to_send() == []


def test_fail_after_eof_does_nothing() -> None:
    server = Connection(Side.SERVER)
    server.receive_eof()
    server.fail(1002)
    assert server.data_to_send() == []


def test_close_exc_describes_the_order(side: Side) -> None:
    conn = Connection(side)
    conn.send_close(1000)
    receive(conn, peer_frame(side, Opcode.CLOSE, Close(1000).serialize()))
    assert str(conn.close_exc) == "sent 1000 (OK); then received 1000 (OK)"
    other = Connection(side)
    receive(other, peer_frame(side, Opcode.CLOSE, Close(1001, "bye").serialize()))
    assert str(other.close_exc) == "received 1001 (going away) bye; then sent 1001 (going away)"


def test_close_exc_chains_the_protocol_error(side: Side) -> None:
    conn = Connection(side)
    receive(conn, _raw_opcode(side, 3))
    exc = conn.close_exc
    assert isinstance(exc, ConnectionClosedError)
    assert exc.__cause__ is conn.protocol_error
    assert str(exc) == "sent 1002 (protocol error) unknown opcode 3; no close frame received"


# --- deferred failures ------------------------------------------------------------------


def test_deferred_failure_waits_for_flush(side: Side) -> None:
    conn = Connection(side, defer_close=True)
    events = receive(conn, peer_frame(side, Opcode.TEXT, b"first") + _raw_opcode(side, 3))
    assert events == [TextMessage("first")]
    assert conn.close_pending
    assert conn.data_to_send() == []
    # The application may still answer what arrived before the violation.
    conn.send_text("echo")
    assert sent_frames(conn) == [Frame(Opcode.TEXT, b"echo")]
    # Input after the violation is discarded meanwhile.
    assert receive(conn, peer_frame(side, Opcode.TEXT, b"later")) == []
    conn.flush_close()
    assert not conn.close_pending
    assert_closed_with(conn, 1002)
    conn.flush_close()  # nothing pending: does nothing
    assert conn.data_to_send() == []


def test_deferred_failure_overrides_the_applications_close(side: Side) -> None:
    conn = Connection(side, defer_close=True)
    receive(conn, peer_frame(side, Opcode.TEXT, b"\xff"))
    conn.send_close(1000)
    assert_closed_with(conn, 1007)


def test_deferred_failure_is_flushed_by_fail(side: Side) -> None:
    conn = Connection(side, defer_close=True)
    receive(conn, peer_frame(side, Opcode.PING, b"x", fin=False))
    conn.fail(1011)
    assert_closed_with(conn, 1002)


def test_deferred_failure_is_flushed_at_eof(side: Side) -> None:
    conn = Connection(side, defer_close=True, max_size=10)
    receive(conn, peer_frame(side, Opcode.BINARY, b"x" * 11))
    conn.receive_eof()
    frames = sent_frames(conn)
    assert frames[0] == close_frame(1009, "message exceeds 10 bytes")
    assert isinstance(conn.protocol_error, PayloadTooBig)


def test_failure_is_not_deferred_once_closing(side: Side) -> None:
    conn = Connection(side, defer_close=True)
    conn.send_close()
    conn.data_to_send()
    receive(conn, _raw_opcode(side, 3))
    assert not conn.close_pending


def test_deferred_close_reply_lets_the_app_answer_first(side: Side) -> None:
    conn = Connection(side, defer_close=True)
    events = receive(
        conn,
        peer_frame(side, Opcode.TEXT, b"last words")
        + peer_frame(side, Opcode.CLOSE, Close(1000).serialize()),
    )
    assert events == [TextMessage("last words"), Close(1000)]
    assert conn.close_pending
    assert conn.data_to_send() == []
    conn.send_text("answer")
    conn.flush_close()
    frames = sent_frames(conn)
    assert frames[:2] == [Frame(Opcode.TEXT, b"answer"), close_frame(1000)]
    assert (frames[-1] is None) == (side is Side.SERVER)
    assert conn.close_rcvd_then_sent is True
    assert isinstance(conn.close_exc, ConnectionClosedOK)


def test_deferred_close_reply_wins_over_the_applications_code(side: Side) -> None:
    conn = Connection(side, defer_close=True)
    receive(conn, peer_frame(side, Opcode.CLOSE, Close(4001).serialize()))
    conn.send_close(1000)
    assert sent_frames(conn)[0] == close_frame(4001)


# --- large frames leave as header and payload; reads are parsed in place ------------------


@pytest.mark.parametrize("size", [16383, 16384, 65535, 65536, 100_000])
@pytest.mark.parametrize("side", [Side.CLIENT, Side.SERVER])
def test_large_frames_leave_as_header_and_payload(side: Side, size: int) -> None:
    sender = Connection(side)
    receiver = Connection(Side.SERVER if side is Side.CLIENT else Side.CLIENT)
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sender.send_binary(payload, fin=False)
    sender.send_continuation(payload, fin=True)
    output = sender.data_to_send()
    assert len(output) == (4 if size >= 16384 else 2)
    assert all(output)  # never b"": that would mean "half-close"
    if side is Side.SERVER:
        first = wire_frame(Opcode.BINARY, payload, fin=False, masked=False)
        assert b"".join(output).startswith(first)
    receiver.receive_data(b"".join(output))
    assert receiver.events_received() == [BinaryMessage(payload * 2)]


@pytest.mark.parametrize("split", [1, 2, 5, 6, 100, 1000])
def test_reads_split_anywhere_give_the_same_messages(split: int) -> None:
    frames = b"".join(
        peer_frame(Side.SERVER, opcode, data, fin=fin)
        for opcode, data, fin in [
            (Opcode.TEXT, "café ".encode() * 50, False),
            (Opcode.CONT, "déjà".encode(), True),
            (Opcode.BINARY, b"\x00" * 300, True),
            (Opcode.PING, b"p", True),
        ]
    )
    conn = Connection(Side.SERVER)
    for start in range(0, len(frames), split):
        conn.receive_data(frames[start : start + split])
    assert conn.events_received() == [
        TextMessage("café " * 50 + "déjà"),
        BinaryMessage(b"\x00" * 300),
        Ping(b"p"),
    ]
    # Nothing is kept once every frame is complete.
    assert (conn._buffer, conn._msg_chunks) == (None, None)
