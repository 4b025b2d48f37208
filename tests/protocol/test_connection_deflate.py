"""The connection with permessage-deflate negotiated: the extension seam of the core."""

from __future__ import annotations

import zlib

import pytest

from openline.exceptions import PayloadTooBig
from openline.protocol.connection import Connection, Side
from openline.protocol.events import BinaryMessage, Ping, TextMessage
from openline.protocol.extensions.deflate import PerMessageDeflate
from openline.protocol.frames import Opcode

from .helpers import assert_closed_with, peer_frame

# Every test runs on the compiled and on the pure-Python frame path (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_path")

SIDES = [Side.SERVER, Side.CLIENT]


def deflate() -> PerMessageDeflate:
    return PerMessageDeflate(False, False, 15, 15)


def compress(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def pair(max_size: int | None = 2**20) -> tuple[Connection, Connection]:
    server = Connection(Side.SERVER, extensions=[deflate()], max_size=max_size)
    client = Connection(Side.CLIENT, extensions=[deflate()], max_size=max_size)
    return server, client


def relay(src: Connection, dst: Connection) -> list[object]:
    for chunk in src.data_to_send():
        if chunk:
            dst.receive_data(chunk)
    return list(dst.events_received())


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_receives_compressed_text(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()])
    frame = peer_frame(side, Opcode.TEXT, compress("héllo".encode()), rsv1=True)
    conn.receive_data(frame)
    assert conn.events_received() == [TextMessage("héllo")]


def test_peers_exchange_compressed_messages_both_ways() -> None:
    server, client = pair()
    client.send_text("hello " * 100)
    client.send_binary(b"\x00" * 5000)
    assert relay(client, server) == [TextMessage("hello " * 100), BinaryMessage(b"\x00" * 5000)]
    server.send_text("fragmented ", fin=False)
    server.send_ping(b"in between")
    server.send_continuation("message", fin=True)
    assert relay(server, client) == [Ping(b"in between"), TextMessage("fragmented message")]


def test_compressed_frames_are_smaller_on_the_wire() -> None:
    server, _ = pair()
    server.send_text("a" * 10_000)
    (frame,) = server.data_to_send()
    assert frame[0] == 0xC1  # FIN + RSV1 + TEXT
    assert len(frame) < 200


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_fails_rsv1_on_a_control_frame(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(peer_frame(side, Opcode.PING, b"", rsv1=True))
    assert_closed_with(conn, 1002)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_fails_rsv1_on_a_continuation_frame(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(peer_frame(side, Opcode.TEXT, compress(b"a"), fin=False, rsv1=True))
    conn.receive_data(peer_frame(side, Opcode.CONT, compress(b"b"), rsv1=True))
    assert_closed_with(conn, 1002)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_fails_corrupt_compressed_data_with_1007(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(peer_frame(side, Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True))
    assert_closed_with(conn, 1007)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_fails_decompression_bomb_with_1009(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()], max_size=2**20)
    bomb = compress(b"\x00" * (10 * 2**20))
    assert len(bomb) < 20_000
    conn.receive_data(peer_frame(side, Opcode.BINARY, bomb, rsv1=True))
    assert conn.events_received() == []
    assert_closed_with(conn, 1009)
    assert isinstance(conn.protocol_error, PayloadTooBig)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_fails_invalid_utf8_inside_compressed_text(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(peer_frame(side, Opcode.TEXT, compress(b"ok \xff"), rsv1=True))
    assert_closed_with(conn, 1007)


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_accepts_uncompressed_messages_when_deflate_is_negotiated(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()])
    conn.receive_data(peer_frame(side, Opcode.TEXT, b"plain"))
    assert conn.events_received() == [TextMessage("plain")]


@pytest.mark.parametrize("side", SIDES, ids=lambda s: s.value)
def test_fails_compressed_frame_far_over_max_size_from_its_header(side: Side) -> None:
    conn = Connection(side, extensions=[deflate()], max_size=1000)
    frame = peer_frame(side, Opcode.BINARY, b"x" * 3000, rsv1=True)
    conn.receive_data(frame[:14])
    assert_closed_with(conn, 1009)


def test_max_size_none_lets_large_compressed_messages_through() -> None:
    server, client = pair(max_size=None)
    client.send_binary(b"\x00" * (3 * 2**20))
    assert relay(client, server) == [BinaryMessage(b"\x00" * (3 * 2**20))]
