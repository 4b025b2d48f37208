"""UTF-8 fails fast at a chunk's edge: a surrogate's first two bytes are enough to refuse.

CPython's incremental decoder waits for a third byte after ``ED A0``..``ED BF``;
the core must not (RFC 6455, section 8.1): these tests end the input exactly there.
"""

from __future__ import annotations

import codecs

import pytest

from openline.protocol.connection import Connection, Side
from openline.protocol.events import TextMessage
from openline.protocol.frames import Opcode
from openline.protocol.utf8 import decode_chunk

from .helpers import assert_closed_with, peer_frame

SURROGATE_START = b"\xed\xa0"  # U+D800 would follow with one more byte


@pytest.fixture(params=[Side.SERVER, Side.CLIENT], ids=lambda side: side.value)
def side(request: pytest.FixtureRequest) -> Side:
    return request.param  # type: ignore[no-any-return]


def test_decode_chunk_refuses_a_surrogate_start_without_waiting_for_its_last_byte() -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with pytest.raises(UnicodeDecodeError, match="encoded surrogate"):
        decode_chunk(decoder, b"ok" + SURROGATE_START)


@pytest.mark.parametrize("lead", [b"\xed\x9f", b"\xed", b"\xe2\x82"])
def test_decode_chunk_waits_for_the_rest_of_a_valid_sequence(lead: bytes) -> None:
    # ED 9F is the last valid prefix below the surrogates; E2 82 starts the euro sign.
    decoder = codecs.getincrementaldecoder("utf-8")()
    assert decode_chunk(decoder, b"ok" + lead) == "ok"
    assert decoder.getstate()[0] == lead


def test_fails_a_frame_whose_received_part_ends_in_a_surrogate_start(side: Side) -> None:
    payload = b"valid prefix " + SURROGATE_START + b"\x80 and more" * 50
    frame = peer_frame(side, Opcode.TEXT, payload)
    # Cut the wire bytes right after ED A0: the header is what precedes the payload.
    cut = len(frame) - len(payload) + payload.index(SURROGATE_START) + len(SURROGATE_START)
    conn = Connection(side)
    conn.receive_data(frame[:cut])
    assert conn.events_received() == []
    assert_closed_with(conn, 1007)
    assert conn.protocol_error is not None


def test_fails_a_fragment_that_ends_in_a_surrogate_start(side: Side) -> None:
    conn = Connection(side)
    conn.receive_data(peer_frame(side, Opcode.TEXT, b"first ", fin=False))
    assert conn.data_to_send() == []
    # The fragment is complete, the message isn't: its last bytes can already be refused.
    conn.receive_data(peer_frame(side, Opcode.CONT, b"second " + SURROGATE_START, fin=False))
    assert not any(isinstance(event, TextMessage) for event in conn.events_received())
    assert_closed_with(conn, 1007)


def test_accepts_a_fragment_that_ends_in_a_valid_three_byte_prefix(side: Side) -> None:
    conn = Connection(side)
    conn.receive_data(peer_frame(side, Opcode.TEXT, b"price: \xe2\x82", fin=False))
    conn.receive_data(peer_frame(side, Opcode.CONT, b"\xac 5", fin=True))
    assert conn.events_received() == [TextMessage("price: € 5")]
    assert conn.data_to_send() == []
