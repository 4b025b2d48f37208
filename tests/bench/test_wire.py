"""The load generator's frames and handshake, checked against openline's core.

The generator has its own minimal WebSocket code; these tests make sure that
what it sends is what a real server parses, and that it finds the frames a
real server sends.
"""

from __future__ import annotations

import pytest

from openline.bench import wire
from openline.protocol.connection import Connection, Side
from openline.protocol.events import BinaryMessage, TextMessage
from openline.protocol.extensions.deflate import ServerPerMessageDeflateFactory
from openline.protocol.frames import Frame, Opcode, serialize_frame
from openline.protocol.handshake import ServerHandshake
from openline.protocol.http11 import parse_request
from openline.protocol.mask import apply_mask

SIZES = [0, 1, 125, 126, 65535, 65536, 70000]


def _server_handshake(request: bytes) -> tuple[bytes, Connection]:
    parsed = parse_request(request)
    assert parsed is not None
    handshake = ServerHandshake(extensions=[ServerPerMessageDeflateFactory()])
    result = handshake.process_request(parsed[0])
    assert result.negotiated is not None, result.error
    core = Connection(Side.SERVER, extensions=result.negotiated.extensions)
    return result.response.serialize(), core


@pytest.mark.parametrize("deflate", [False, True])
def test_upgrade_request_is_accepted_by_a_server(deflate: bool) -> None:
    request = wire.upgrade_request("127.0.0.1", 8765, "/sub", deflate=deflate)
    response, _ = _server_handshake(request)
    end = wire.find_head_end(response)
    negotiated = wire.parse_upgrade_response(response[: end - 4])
    assert negotiated.deflate is deflate
    assert negotiated.server_no_context_takeover is deflate


def test_upgrade_response_other_than_101_fails() -> None:
    with pytest.raises(wire.HandshakeFailed, match="expected status 101"):
        wire.parse_upgrade_response(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0")


def test_incomplete_response_head_is_not_found_until_it_ends() -> None:
    assert wire.find_head_end(b"HTTP/1.1 101 Switching Protocols\r\n") == -1
    assert wire.find_head_end(b"HTTP/1.1 101 OK\r\n\r\nrest") == len(b"HTTP/1.1 101 OK\r\n\r\n")


def test_endless_response_head_fails() -> None:
    with pytest.raises(wire.HandshakeFailed, match="longer than"):
        wire.find_head_end(b"x" * 20000)


@pytest.mark.parametrize("size", SIZES)
def test_masking_matches_openline_and_is_its_own_inverse(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    masked = wire.mask(data)
    assert masked == apply_mask(data, wire.MASK_KEY)
    assert wire.mask(masked) == data


@pytest.mark.parametrize("size", SIZES)
def test_client_frame_is_parsed_by_a_server(size: int) -> None:
    _, core = _server_handshake(wire.upgrade_request("h", 1, "/", deflate=False))
    payload = bytes(size)
    core.receive_data(wire.client_frame(payload))
    assert core.events_received() == [BinaryMessage(payload)]


def test_compressed_client_frames_are_parsed_by_a_server_again_and_again() -> None:
    _, core = _server_handshake(wire.upgrade_request("h", 1, "/", deflate=True))
    payload = b'{"hello": "world", "hello again": "world"}'
    frame = wire.client_frame(wire.compress(payload), rsv1=True)
    core.receive_data(frame * 3)
    assert core.events_received() == [BinaryMessage(payload)] * 3


def test_text_client_frame_is_parsed_by_a_server() -> None:
    _, core = _server_handshake(wire.upgrade_request("h", 1, "/", deflate=False))
    core.receive_data(wire.client_frame(b"caf\xc3\xa9", wire.OP_TEXT))
    assert core.events_received() == [TextMessage("café")]


@pytest.mark.parametrize("size", SIZES)
def test_server_frame_header_is_what_a_server_sends(size: int) -> None:
    payload = b"x" * size
    frame = serialize_frame(Frame(Opcode.BINARY, payload), mask=False)
    assert frame == wire.server_frame_header(size) + payload


def _stream() -> tuple[bytes, list[tuple[int, bytes]]]:
    """Server and client frames of every length encoding, back to back."""
    frames = []
    for size in (0, 3, 125, 126, 300, 65536):
        payload = bytes([size % 251]) * size
        frames.append((0x82, payload, serialize_frame(Frame(Opcode.BINARY, payload), mask=False)))
    frames.append((0x89, b"ping", serialize_frame(Frame(Opcode.PING, b"ping"), mask=False)))
    frames.append((0x82, b"masked", wire.client_frame(b"masked")))
    data = b"".join(frame for _, _, frame in frames)
    return data, [(first, payload) for first, payload, _ in frames]


def test_scan_finds_every_frame_and_payload() -> None:
    data, expected = _stream()
    found, stop = wire.scan_frames(data, 0, len(data))
    assert stop == len(data)
    payloads = []
    for first, start, end, key in found:
        payload = data[start:end]
        payloads.append((first, wire.mask(payload, key) if key else payload))
    assert payloads == expected


def test_scan_stops_at_an_incomplete_frame_wherever_the_data_is_cut() -> None:
    data, _ = _stream()
    boundaries = [0] + [end for _, _, end, _ in wire.scan_frames(data, 0, len(data))[0]]
    for cut in range(0, len(data), 7):
        found, stop = wire.scan_frames(data, 0, cut)
        complete = max(b for b in boundaries if b <= cut)
        assert stop == complete
        assert len(found) == boundaries.index(complete)


def test_scan_rejects_a_64_bit_length_with_the_top_bit_set() -> None:
    with pytest.raises(wire.FrameError, match="most significant bit"):
        wire.scan_frames(b"\x82\x7f" + b"\x80" + bytes(7), 0, 10)


def test_inflater_without_takeover_reads_any_message_alone() -> None:
    inflater = wire.Inflater(takeover=False)
    messages = [b"first message " * 3, b"second message " * 3]
    for message in reversed(messages):
        assert inflater.inflate(wire.compress(message)) == message


def test_inflater_with_takeover_follows_a_shared_context() -> None:
    import zlib

    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    inflater = wire.Inflater(takeover=True)
    for message in (b"same words again " * 4, b"same words again " * 4):
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert inflater.inflate(memoryview(data[:-4])) == message
