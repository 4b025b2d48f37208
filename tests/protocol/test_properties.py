"""Properties of the core that must hold for every input (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openline.protocol.connection import Connection, Side
from openline.protocol.events import BinaryMessage, Ping, Pong, TextMessage
from openline.protocol.frames import Close, Frame, Opcode, serialize_frame

from .helpers import _split_frames

# Every test runs on the compiled and on the pure-Python frame path (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_path")

sides = st.sampled_from([Side.SERVER, Side.CLIENT])

frames = st.builds(
    Frame,
    opcode=st.sampled_from(list(Opcode)),
    data=st.binary(max_size=70_000).filter(lambda d: True),
    fin=st.booleans(),
    rsv1=st.booleans(),
    rsv2=st.booleans(),
    rsv3=st.booleans(),
)

messages = st.one_of(
    st.text(max_size=300).map(TextMessage),
    st.binary(max_size=300).map(BinaryMessage),
    st.binary(max_size=125).map(Ping),
    st.binary(max_size=125).map(Pong),
)


@given(frame=frames, mask=st.booleans(), key=st.binary(min_size=4, max_size=4))
@settings(max_examples=200)
def test_parse_of_serialize_is_identity(frame: Frame, mask: bool, key: bytes) -> None:
    encoded = serialize_frame(frame, mask=mask, mask_key=key)
    assert _split_frames(encoded, masked=mask) == [frame]


def _encode(side: Side, message: object, fragment: int) -> bytes:
    """Encode ``message`` as the peer of ``side`` would, fragmenting data messages."""
    mask = side is Side.SERVER
    if isinstance(message, Ping | Pong):
        opcode = Opcode.PING if isinstance(message, Ping) else Opcode.PONG
        return serialize_frame(Frame(opcode, message.data), mask=mask)
    if isinstance(message, TextMessage):
        opcode, data = Opcode.TEXT, message.data.encode()
    else:
        assert isinstance(message, BinaryMessage)
        opcode, data = Opcode.BINARY, message.data
    pieces = [data[i : i + fragment] for i in range(0, len(data), fragment)] or [b""]
    out = []
    for index, piece in enumerate(pieces):
        frame = Frame(opcode if index == 0 else Opcode.CONT, piece, index == len(pieces) - 1)
        out.append(serialize_frame(frame, mask=mask))
    return b"".join(out)


@given(
    side=sides,
    events=st.lists(messages, max_size=12),
    fragment=st.integers(min_value=1, max_value=50),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
@settings(max_examples=200)
def test_any_split_of_the_stream_gives_the_same_events(
    side: Side, events: list[object], fragment: int, cuts: list[int]
) -> None:
    stream = b"".join(_encode(side, event, fragment) for event in events)
    conn = Connection(side)
    points = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    received: list[object] = []
    for start, end in itertools.pairwise(points):
        conn.receive_data(stream[start:end])
        received += conn.events_received()
    assert received == events
    assert conn.protocol_error is None


@given(side=sides, data=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=64))
@settings(max_examples=500)
def test_random_bytes_never_raise(side: Side, data: bytes, chunk: int) -> None:
    conn = Connection(side, max_size=1000)
    for i in range(0, len(data), chunk):
        conn.receive_data(data[i : i + chunk])
    conn.receive_eof()
    for event in conn.events_received():
        assert isinstance(event, TextMessage | BinaryMessage | Ping | Pong | Close)
    if conn.protocol_error is not None:
        assert conn.protocol_error.code in (1002, 1006, 1007, 1009)
