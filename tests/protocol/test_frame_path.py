"""The compiled frame path against the pure-Python one: same bytes, same outcome.

``parse_frames`` and ``encode_frame`` from ``_speedups`` are checked directly, and
whole connections are fed random and malformed byte streams twice, once on each
path (``frame_path.select``): the events, the frames written back, the close code and the
protocol error must be the same.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openline.exceptions import ProtocolError
from openline.protocol import frames as frames_module
from openline.protocol import mask
from openline.protocol.connection import Connection, Side
from openline.protocol.events import BinaryMessage, TextMessage
from openline.protocol.extensions.deflate import PerMessageDeflate
from openline.protocol.frame_path import select as select_frame_path
from openline.protocol.frames import Frame, Opcode, serialize_frame

from .conftest import MISSING_SPEEDUPS
from .helpers import parse_output

KEY = b"\x9a\x01\xfe\x42"


@pytest.fixture(scope="module")
def speedups() -> ModuleType:
    try:
        return importlib.import_module("openline.protocol._speedups")
    except ImportError:
        pytest.skip(MISSING_SPEEDUPS)


@pytest.fixture(scope="module")
def restore_path() -> Iterator[None]:
    before = mask.SPEEDUPS
    yield
    select_frame_path(before)


# --- encode_frame ---------------------------------------------------------------------------


class TestEncodeFrame:
    @given(
        head=st.integers(0, 255),
        data=st.binary(max_size=300),
        key=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
    )
    @settings(max_examples=200, deadline=None)
    def test_same_bytes_as_python(
        self, speedups: ModuleType, head: int, data: bytes, key: bytes | None
    ) -> None:
        expected = frames_module._encode_frame(head, data, key)
        assert speedups.encode_frame(head, data, key) == expected
        assert speedups.encode_frame(head, bytearray(data), key) == expected
        assert speedups.encode_frame(head, memoryview(data), key) == expected

    @pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
    def test_length_boundaries(self, speedups: ModuleType, length: int) -> None:
        data = bytes(range(256)) * (length // 256) + bytes(length % 256)
        for key in (None, KEY):
            frame = Frame(Opcode.BINARY, data)
            encoded = speedups.encode_frame(0x82, data, key)
            assert encoded == frames_module._encode_frame(0x82, data, key)
            assert parse_output(Side.CLIENT if key else Side.SERVER, [encoded]) == [frame]

    def test_bad_arguments(self, speedups: ModuleType) -> None:
        with pytest.raises(ValueError, match="mask must be 4 bytes, got 3 bytes"):
            speedups.encode_frame(0x81, b"x", b"abc")
        with pytest.raises(ValueError, match="mask must be 4 bytes, got 3 bytes"):
            frames_module._encode_frame(0x81, b"x", b"abc")
        with pytest.raises(ValueError, match="head must be a byte"):
            speedups.encode_frame(256, b"x", None)
        with pytest.raises(TypeError):
            speedups.encode_frame(0x81, "text", None)
        with pytest.raises(TypeError):
            speedups.encode_frame(0x81, b"x")


# --- parse_frames ---------------------------------------------------------------------------


def _parse(speedups: ModuleType, data: bytes, *, is_client: bool, max_size: int | None) -> Any:
    events: list[Any] = []
    pos = speedups.parse_frames(data, 0, is_client, max_size, events, TextMessage, BinaryMessage)
    return pos, events


def _server_frame(opcode: Opcode, data: bytes, **flags: bool) -> bytes:
    return serialize_frame(Frame(opcode, data, **flags), mask=True, mask_key=KEY)


class TestParseFrames:
    def test_whole_messages(self, speedups: ModuleType) -> None:
        stream = (
            _server_frame(Opcode.TEXT, "héllo".encode())
            + _server_frame(Opcode.BINARY, b"\x00" * 70_000)
            + _server_frame(Opcode.TEXT, b"")
        )
        pos, events = _parse(speedups, stream, is_client=False, max_size=None)
        assert pos == len(stream)
        assert events == [TextMessage("héllo"), BinaryMessage(b"\x00" * 70_000), TextMessage("")]
        assert type(events[0].data) is str and type(events[1].data) is bytes

    @pytest.mark.parametrize(
        ("name", "frame"),
        [
            ("ping", _server_frame(Opcode.PING, b"p")),
            ("close", _server_frame(Opcode.CLOSE, b"\x03\xe8")),
            ("fragment", _server_frame(Opcode.TEXT, b"a", fin=False)),
            ("continuation", _server_frame(Opcode.CONT, b"a")),
            ("rsv1", _server_frame(Opcode.BINARY, b"a", rsv1=True)),
            ("rsv3", _server_frame(Opcode.BINARY, b"a", rsv3=True)),
            ("unmasked", serialize_frame(Frame(Opcode.BINARY, b"a"), mask=False)),
            ("bad utf-8", _server_frame(Opcode.TEXT, b"\xff")),
            ("surrogate", _server_frame(Opcode.TEXT, b"\xed\xa0\x80")),
            ("too big", _server_frame(Opcode.BINARY, b"a" * 11)),
            ("unknown opcode", b"\x83\x80" + KEY),
            ("incomplete", _server_frame(Opcode.BINARY, b"abc")[:-1]),
            ("short header", b"\x82"),
            ("64-bit msb", b"\x82\xff\x80" + bytes(7) + KEY),
        ],
    )
    def test_stops_before_what_python_handles(
        self, speedups: ModuleType, name: str, frame: bytes
    ) -> None:
        head = _server_frame(Opcode.BINARY, b"first")
        # A cut-short frame must end the stream to stay cut short.
        tail = b"" if name in ("incomplete", "short header") else _server_frame(Opcode.BINARY, b"z")
        stream = head + frame + tail
        pos, events = _parse(speedups, stream, is_client=False, max_size=10)
        assert pos == len(head), name
        assert events == [BinaryMessage(b"first")]

    def test_client_side_takes_unmasked_frames(self, speedups: ModuleType) -> None:
        stream = serialize_frame(Frame(Opcode.TEXT, b"ok"), mask=False)
        assert _parse(speedups, stream, is_client=True, max_size=None) == (
            len(stream),
            [TextMessage("ok")],
        )
        assert (
            _parse(speedups, _server_frame(Opcode.TEXT, b"ok"), is_client=True, max_size=None)[0]
            == 0
        )

    def test_starts_at_pos_in_any_buffer(self, speedups: ModuleType) -> None:
        frame = _server_frame(Opcode.BINARY, b"xyz")
        for buffer in (b"junk" + frame, bytearray(b"junk" + frame), memoryview(b"junk" + frame)):
            events: list[Any] = []
            pos = speedups.parse_frames(buffer, 4, False, None, events, TextMessage, BinaryMessage)
            assert (pos, events) == (4 + len(frame), [BinaryMessage(b"xyz")])

    def test_bad_arguments(self, speedups: ModuleType) -> None:
        with pytest.raises(ValueError, match="outside the buffer"):
            speedups.parse_frames(b"ab", 3, False, None, [], TextMessage, BinaryMessage)
        with pytest.raises(TypeError, match="events must be a list"):
            speedups.parse_frames(b"", 0, False, None, (), TextMessage, BinaryMessage)
        with pytest.raises(TypeError, match="must be types"):
            speedups.parse_frames(b"", 0, False, None, [], str, None)


# --- whole connections on both paths ---------------------------------------------------------


def _frame_bytes(draw: st.DrawFn, side: Side) -> bytes:
    """One frame as a peer might send it: mostly right, sometimes broken on purpose."""
    opcode = draw(st.sampled_from([0, 1, 1, 2, 2, 8, 9, 10, 3, 11]))
    if opcode == 1 and draw(st.booleans()):
        payload = draw(st.text(max_size=40)).encode()
    elif opcode == 8 and draw(st.booleans()):
        payload = draw(st.sampled_from([1000, 1001, 1002, 1004, 1005, 2999, 3000, 4999, 5000]))
        payload = payload.to_bytes(2, "big") + draw(st.binary(max_size=8))
    else:
        size = draw(st.sampled_from([0, 1, 5, 125, 126, 200, 65535, 65536]))
        payload = draw(st.binary(min_size=min(size, 3), max_size=3)) * (size // 3 + 1)
        payload = payload[:size]
    fin = draw(st.integers(0, 9)) > 1
    rsv = draw(st.sampled_from([0, 0, 0, 0, 0x40, 0x20, 0x10]))
    masked = (side is Side.SERVER) != (draw(st.integers(0, 19)) == 0)
    head = (0x80 if fin else 0) | rsv | opcode
    key = draw(st.binary(min_size=4, max_size=4)) if masked else None
    return frames_module._encode_frame(head, payload, key)


@st.composite
def streams(draw: st.DrawFn, side: Side) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 9)) == 0:
            parts.append(draw(st.binary(max_size=12)))  # garbage
        else:
            parts.append(_frame_bytes(draw, side))
    return b"".join(parts)


def _run(
    side: Side,
    stream: bytes,
    cuts: list[int],
    *,
    max_size: int | None,
    deflate: bool,
    defer_close: bool,
) -> tuple[Any, ...]:
    extensions = [PerMessageDeflate(False, False, 15, 15)] if deflate else []
    conn = Connection(side, extensions=extensions, max_size=max_size, defer_close=defer_close)
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        conn.receive_data(stream[previous:cut])
        previous = max(previous, cut)
    events = conn.events_received()
    conn.flush_close()
    conn.receive_eof()
    error = conn.protocol_error
    return (
        events + conn.events_received(),
        parse_output(side, conn.data_to_send()),
        conn.close_code,
        conn.state,
        conn.close_sent,
        conn.close_rcvd,
        None if error is None else (type(error), str(error), error.code),
    )


@pytest.mark.usefixtures("restore_path")
class TestSameOutcome:
    @given(
        data=st.data(),
        side=st.sampled_from([Side.SERVER, Side.CLIENT]),
        max_size=st.sampled_from([None, 0, 100, 65536, 70000]),
        deflate=st.integers(0, 4).map(lambda n: n == 0),
        defer_close=st.booleans(),
    )
    @settings(max_examples=300, deadline=None)
    def test_random_streams(
        self,
        speedups: ModuleType,
        data: st.DataObject,
        side: Side,
        max_size: int | None,
        deflate: bool,
        defer_close: bool,
    ) -> None:
        stream = data.draw(streams(side))
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=4))
        outcomes = []
        for compiled in (True, False):
            assert select_frame_path(compiled) is compiled
            outcomes.append(
                _run(
                    side, stream, cuts, max_size=max_size, deflate=deflate, defer_close=defer_close
                )
            )
        assert outcomes[0] == outcomes[1]

    @given(
        side=st.sampled_from([Side.SERVER, Side.CLIENT]),
        stream=st.binary(max_size=300),
        cuts=st.lists(st.integers(0, 300), max_size=3),
    )
    @settings(max_examples=300, deadline=None)
    def test_random_bytes(
        self, speedups: ModuleType, side: Side, stream: bytes, cuts: list[int]
    ) -> None:
        outcomes = []
        for compiled in (True, False):
            select_frame_path(compiled)
            outcomes.append(
                _run(side, stream, cuts, max_size=1000, deflate=False, defer_close=False)
            )
        assert outcomes[0] == outcomes[1]

    def test_invalid_text_after_valid_messages(self, speedups: ModuleType) -> None:
        stream = _server_frame(Opcode.TEXT, b"ok") * 3 + _server_frame(Opcode.TEXT, b"\xc3(")
        outcomes = []
        for compiled in (True, False):
            select_frame_path(compiled)
            outcomes.append(
                _run(Side.SERVER, stream, [], max_size=None, deflate=False, defer_close=False)
            )
        assert outcomes[0] == outcomes[1]
        events, *_, error = outcomes[0]
        assert events[:3] == [TextMessage("ok")] * 3
        assert error is not None and error[0] is ProtocolError and error[2] == 1007


def test_environment_switch_forces_python() -> None:
    """``OPENLINE_NO_SPEEDUPS=1`` at import: everything pure Python."""
    script = (
        "from openline.protocol import mask, frames, connection, _mask;"
        "assert mask.SPEEDUPS is False and mask.parse_frames is None;"
        "assert connection.parse_frames is None;"
        "assert frames.encode_frame is frames._encode_frame;"
        "assert connection.apply_mask is _mask.apply_mask"
    )
    import subprocess
    import sys

    env = {**os.environ, mask.ENV_VAR: "1"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)


def test_selecting_the_compiled_path_without_the_extension_keeps_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where ``_speedups`` can't be imported, ``select(True)`` says so and changes nothing."""
    before = mask.SPEEDUPS
    # The import fails: no module in sys.modules, none as the package's attribute.
    monkeypatch.setitem(sys.modules, "openline.protocol._speedups", None)
    monkeypatch.delattr(sys.modules["openline.protocol"], "_speedups", raising=False)
    try:
        assert select_frame_path(True) is False
        assert mask.SPEEDUPS is False and mask.parse_frames is None
        assert mask.c_encode_frame is None
        ws = Connection(Side.SERVER)
        ws.receive_data(_server_frame(Opcode.TEXT, b"still parsed"))
        assert ws.events_received() == [TextMessage("still parsed")]
    finally:
        monkeypatch.undo()
        select_frame_path(before)
