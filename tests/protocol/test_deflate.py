"""Tests for permessage-deflate (RFC 7692): negotiation, compression, limits."""

from __future__ import annotations

import itertools
import random
import tracemalloc
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openline.exceptions import (
    DuplicateParameter,
    InvalidParameterName,
    InvalidParameterValue,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from openline.protocol.extensions.base import ExtensionParameter
from openline.protocol.extensions.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from openline.protocol.frames import Frame, Opcode

KIB = 1024
MIB = 1024 * KIB
WINDOW_BITS = range(8, 16)
# Section 7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15".
BAD_WINDOW_BITS = ["7", "16", "0", "09", "+9", " 9", "9 ", "0x9", "1e1", "abc", "", "\u0661\u0660"]
WORDS = [b"openline ", b"websocket ", b"deflate ", b'{"ch": "room", "data": 1} ', b"\x00" * 40]

# --- helpers ----------------------------------------------------------------------------


def make_extension(
    remote_no_context_takeover: bool = False,
    local_no_context_takeover: bool = False,
    remote_max_window_bits: int = 15,
    local_max_window_bits: int = 15,
) -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover,
        local_no_context_takeover,
        remote_max_window_bits,
        local_max_window_bits,
    )


def fragment(payload: bytes, parts: int, opcode: Opcode = Opcode.BINARY) -> list[Frame]:
    """Split a message into ``parts`` frames (some possibly empty)."""
    step = -(-len(payload) // parts) if payload else 0
    chunks = [payload[i * step : (i + 1) * step] for i in range(parts)]
    return [
        Frame(opcode if i == 0 else Opcode.CONT, chunk, fin=i == parts - 1)
        for i, chunk in enumerate(chunks)
    ]


def split_compressed(frame: Frame, cuts: Sequence[int]) -> list[Frame]:
    """Split the payload of a compressed single-frame message at ``cuts``."""
    bounds = [0, *sorted(cuts), len(frame.data)]
    pieces = [frame.data[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        Frame(frame.opcode if i == 0 else Opcode.CONT, piece, i == len(pieces) - 1, i == 0)
        for i, piece in enumerate(pieces)
    ]


def send_message(sender: PerMessageDeflate, payload: bytes, parts: int = 1) -> list[Frame]:
    return [sender.encode(frame) for frame in fragment(payload, parts)]


def receive_message(receiver: PerMessageDeflate, frames: Sequence[Frame]) -> bytes:
    return b"".join(receiver.decode(frame).data for frame in frames)


class StrictInflater:
    """Inflate one byte per zlib call, so every back-reference must sit in the window.

    zlib only checks distances against its window for bytes written before the
    current call; producing one byte per call makes the window size exact (to one byte).
    """

    def __init__(self, window_bits: int) -> None:
        self._decoder = zlib.decompressobj(wbits=-window_bits)

    def inflate(self, data: bytes) -> bytes:
        output = bytearray()
        while True:
            chunk = self._decoder.decompress(data, 1)
            data = self._decoder.unconsumed_tail
            output += chunk
            if not chunk and not data:
                return bytes(output)


def compressible_corpus(size: int, seed: int) -> bytes:
    """Text with repeats at every distance, so deflate uses long back-references."""
    rng = random.Random(seed)
    data = bytearray()
    while len(data) < size:
        if data and rng.random() < 0.5:
            start = rng.randrange(len(data))
            data += data[start : start + rng.randrange(3, 40)]
        else:
            data += rng.randbytes(rng.randrange(1, 20))
    return bytes(data[:size])


# --- RFC 7692 examples (section 7.2.3) --------------------------------------------------

HELLO = bytes.fromhex("f248cdc9c90700")


@pytest.mark.parametrize(
    ("payloads", "expected"),
    [
        pytest.param([HELLO], b"Hello", id="7.2.3.1-one-frame"),
        pytest.param(
            [bytes.fromhex("f248cd"), bytes.fromhex("c9c90700")], b"Hello", id="7.2.3.1-two-frames"
        ),
        pytest.param([bytes.fromhex("0005 00faff 48656c6c6f 00")], b"Hello", id="7.2.3.3-stored"),
        pytest.param([bytes.fromhex("f348cdc9c9070000")], b"Hello", id="7.2.3.4-bfinal"),
        pytest.param(
            [bytes.fromhex("f24805000000ffffcac9c90700")], b"Hello", id="7.2.3.5-two-blocks"
        ),
        pytest.param([b"\x00"], b"", id="7.2.3.6-empty"),
    ],
)
def test_receiver_inflates_rfc_examples(payloads: list[bytes], expected: bytes) -> None:
    receiver = make_extension()
    frames = [
        Frame(Opcode.TEXT if i == 0 else Opcode.CONT, data, i == len(payloads) - 1, i == 0)
        for i, data in enumerate(payloads)
    ]
    assert receive_message(receiver, frames) == expected


def test_receiver_shares_the_window_across_messages_rfc_7_2_3_2() -> None:
    receiver = make_extension()
    assert receiver.decode(Frame(Opcode.TEXT, HELLO, rsv1=True)).data == b"Hello"
    second = receiver.decode(Frame(Opcode.TEXT, bytes.fromhex("f200110000"), rsv1=True))
    assert second == Frame(Opcode.TEXT, b"Hello")


def test_receiver_without_context_takeover_forgets_the_window() -> None:
    receiver = make_extension(remote_no_context_takeover=True)
    receiver.decode(Frame(Opcode.TEXT, HELLO, rsv1=True))
    # The second message of 7.2.3.2 refers back to the first one.
    with pytest.raises(ProtocolError) as exc_info:
        receiver.decode(Frame(Opcode.TEXT, bytes.fromhex("f200110000"), rsv1=True))
    assert exc_info.value.code == 1007


def test_sender_produces_rfc_examples() -> None:
    sender = make_extension()
    first = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert first == Frame(Opcode.TEXT, HELLO, rsv1=True)
    # 7.2.3.2: with context takeover the second "Hello" is a back-reference.
    second = sender.encode(Frame(Opcode.TEXT, b"Hello"))
    assert second == Frame(Opcode.TEXT, bytes.fromhex("f200110000"), rsv1=True)


def test_sender_without_context_takeover_repeats_itself() -> None:
    sender = make_extension(local_no_context_takeover=True)
    assert sender.encode(Frame(Opcode.TEXT, b"Hello")).data == HELLO
    assert sender.encode(Frame(Opcode.TEXT, b"Hello")).data == HELLO
    # The compressor is released between messages: an idle connection holds none.
    assert sender._encoder is None


@pytest.mark.parametrize("context_takeover", [True, False])
def test_sender_compresses_an_empty_message_to_an_empty_block(context_takeover: bool) -> None:
    # RFC 7692, section 7.2.3.6: the payload is a single 0x00 octet.
    sender = make_extension(local_no_context_takeover=not context_takeover)
    receiver = make_extension(remote_no_context_takeover=not context_takeover)
    for _ in range(2):
        frame = sender.encode(Frame(Opcode.BINARY, b""))
        assert frame == Frame(Opcode.BINARY, b"\x00", rsv1=True)
        assert receiver.decode(frame) == Frame(Opcode.BINARY, b"")


def test_sender_flags_only_the_first_frame_of_a_message() -> None:
    sender = make_extension()
    frames = send_message(sender, b"Hello, openline!" * 10, parts=3)
    assert [(f.opcode, f.rsv1, f.fin) for f in frames] == [
        (Opcode.BINARY, True, False),
        (Opcode.CONT, False, False),
        (Opcode.CONT, False, True),
    ]
    # Non-final frames keep the sync flush tail, so each inflates on arrival.
    assert frames[0].data.endswith(b"\x00\x00\xff\xff")
    assert not frames[2].data.endswith(b"\x00\x00\xff\xff")
    assert receive_message(make_extension(), frames) == b"Hello, openline!" * 10


def test_sender_keeps_rsv2_and_rsv3() -> None:
    frame = make_extension().encode(Frame(Opcode.TEXT, b"x", rsv2=True, rsv3=True))
    assert (frame.rsv1, frame.rsv2, frame.rsv3) == (True, True, True)
    decoded = make_extension().decode(frame)
    assert (decoded.rsv1, decoded.rsv2, decoded.rsv3) == (False, True, True)


# --- control frames, uncompressed messages, framing errors ------------------------------


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frames_pass_through(opcode: Opcode) -> None:
    extension = make_extension()
    frame = Frame(opcode, b"\x03\xe8")
    assert extension.encode(frame) is frame
    assert extension.decode(frame) is frame


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_receiver_rejects_rsv1_on_a_control_frame(opcode: Opcode) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        make_extension().decode(Frame(opcode, b"", rsv1=True))
    assert exc_info.value.code == 1002


def test_receiver_passes_uncompressed_messages_through() -> None:
    receiver = make_extension()
    frames = fragment(b"plain text, not deflated", 3, Opcode.TEXT)
    assert [receiver.decode(frame) for frame in frames] == frames
    assert all(receiver.decode(frame) is frame for frame in frames)
    # A compressed message may follow an uncompressed one, and the other way round.
    assert receiver.decode(Frame(Opcode.TEXT, HELLO, rsv1=True)).data == b"Hello"
    assert receiver.decode(Frame(Opcode.TEXT, b"Hello")).data == b"Hello"


@pytest.mark.parametrize("compressed", [True, False])
def test_receiver_rejects_rsv1_on_a_continuation_frame(compressed: bool) -> None:
    receiver = make_extension()
    receiver.decode(Frame(Opcode.TEXT, bytes.fromhex("f248cd"), fin=False, rsv1=compressed))
    with pytest.raises(ProtocolError) as exc_info:
        receiver.decode(Frame(Opcode.CONT, bytes.fromhex("c9c90700"), rsv1=True))
    assert exc_info.value.code == 1002
    assert str(exc_info.value) == "rsv1 set on a continuation frame"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xff\xff\xff", id="reserved-block-type"),
        pytest.param(bytes.fromhex("0005 0000 48656c6c6f"), id="bad-stored-length"),
        pytest.param(bytes.fromhex("f200110000"), id="distance-before-start"),
    ],
)
def test_receiver_rejects_corrupt_data_with_1007(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        make_extension().decode(Frame(Opcode.BINARY, payload, rsv1=True))
    assert exc_info.value.code == 1007
    assert str(exc_info.value) == "invalid compressed data"
    assert isinstance(exc_info.value.__cause__, zlib.error)


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    max_size=st.none() | st.integers(0, 5000),
)
def test_receiver_raises_only_protocol_errors_on_arbitrary_data(
    chunks: list[bytes], max_size: int | None
) -> None:
    receiver = make_extension()
    frames = [
        Frame(Opcode.BINARY if i == 0 else Opcode.CONT, chunk, i == len(chunks) - 1, i == 0)
        for i, chunk in enumerate(chunks)
    ]
    try:
        for frame in frames:
            size = len(receiver.decode(frame, max_size=max_size).data)
            assert max_size is None or size <= max_size
    except ProtocolError as exc:  # PayloadTooBig included
        assert exc.code in (1007, 1009)


# --- blocks with BFINAL -----------------------------------------------------------------


def test_receiver_starts_a_new_stream_after_a_final_block() -> None:
    receiver = make_extension()
    bfinal = Frame(Opcode.TEXT, bytes.fromhex("f348cdc9c9070000"), rsv1=True)
    assert receiver.decode(bfinal).data == b"Hello"
    # Without a new stream, zlib would file the next message under unused_data.
    assert receiver.decode(Frame(Opcode.TEXT, HELLO, rsv1=True)).data == b"Hello"


def test_receiver_inflates_blocks_after_a_final_block_in_one_message() -> None:
    # Section 7.2.1: "The next DEFLATE block follows the padded data if any."
    head = zlib.compressobj(wbits=-15)
    tail = zlib.compressobj(wbits=-15)
    payload = (
        head.compress(b"Hel") + head.flush() + tail.compress(b"lo") + tail.flush(zlib.Z_SYNC_FLUSH)
    )
    frame = Frame(Opcode.TEXT, payload[:-4], rsv1=True)
    assert make_extension().decode(frame).data == b"Hello"


def test_receiver_accepts_a_final_block_at_the_end_of_a_frame() -> None:
    head = zlib.compressobj(wbits=-15)
    tail = zlib.compressobj(wbits=-15)
    first = Frame(Opcode.TEXT, head.compress(b"Hel") + head.flush(), fin=False, rsv1=True)
    last = Frame(Opcode.CONT, (tail.compress(b"lo") + tail.flush(zlib.Z_SYNC_FLUSH))[:-4])
    assert receive_message(make_extension(), [first, last]) == b"Hello"


def test_receiver_tolerates_a_final_block_without_the_empty_block() -> None:
    # Section 7.2.1 asks for an empty stored block after it; some senders omit it.
    receiver = make_extension()
    bfinal = Frame(Opcode.TEXT, bytes.fromhex("f348cdc9c90700"), rsv1=True)
    assert receiver.decode(bfinal).data == b"Hello"
    assert receiver.decode(Frame(Opcode.TEXT, HELLO, rsv1=True)).data == b"Hello"


def test_receiver_counts_the_budget_across_final_blocks() -> None:
    head = zlib.compressobj(wbits=-15)
    tail = zlib.compressobj(wbits=-15)
    payload = head.compress(b"a" * 600) + head.flush()
    payload += tail.compress(b"b" * 600) + tail.flush(zlib.Z_SYNC_FLUSH)
    frame = Frame(Opcode.BINARY, payload[:-4], rsv1=True)
    assert make_extension().decode(frame, max_size=1200).data == b"a" * 600 + b"b" * 600
    with pytest.raises(PayloadTooBig) as exc_info:
        make_extension().decode(frame, max_size=1000)
    assert (exc_info.value.size, exc_info.value.max_size) == (1001, 1000)


# --- size limits and decompression bombs -----------------------------------------------


def test_decompression_bomb_stops_at_max_size() -> None:
    bomb = make_extension().encode(Frame(Opcode.BINARY, bytes(10 * MIB)))
    assert len(bomb.data) < 20 * KIB
    receiver = make_extension()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig) as exc_info:
            receiver.decode(bomb, max_size=MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Inflating stops one byte past the limit instead of producing 10 MiB.
    assert exc_info.value.size == MIB + 1
    assert exc_info.value.max_size == MIB
    assert exc_info.value.code == 1009
    assert peak < 4 * MIB


def test_decompression_bomb_split_across_frames_stops_at_max_size() -> None:
    message = make_extension().encode(Frame(Opcode.BINARY, bytes(3 * MIB)))
    frames = split_compressed(message, range(256, len(message.data), 256))
    receiver = make_extension()
    limit, received = MIB, 0
    with pytest.raises(PayloadTooBig):
        for frame in frames:
            received += len(receiver.decode(frame, max_size=limit - received).data)
    assert received <= limit


@pytest.mark.parametrize("size", [0, 1, 1000, 70_000])
def test_message_of_exactly_max_size_fits_and_one_more_byte_does_not(size: int) -> None:
    fits = make_extension().encode(Frame(Opcode.BINARY, b"x" * size))
    assert make_extension().decode(fits, max_size=size).data == b"x" * size
    too_big = make_extension().encode(Frame(Opcode.BINARY, b"x" * (size + 1)))
    with pytest.raises(PayloadTooBig) as exc_info:
        make_extension().decode(too_big, max_size=size)
    assert exc_info.value.size == size + 1


def test_empty_message_fits_a_zero_budget() -> None:
    empty = Frame(Opcode.TEXT, b"\x00", rsv1=True)
    assert make_extension().decode(empty, max_size=0).data == b""


# --- context takeover -------------------------------------------------------------------

MESSAGE = b'{"channel": "news", "offset": 42, "data": "the quick brown fox"}'


def test_context_takeover_makes_a_repeated_message_smaller() -> None:
    sender = make_extension()
    receiver = make_extension()
    first = sender.encode(Frame(Opcode.TEXT, MESSAGE))
    second = sender.encode(Frame(Opcode.TEXT, MESSAGE))
    assert len(second.data) < len(first.data) // 3
    assert receiver.decode(first).data == receiver.decode(second).data == MESSAGE


def test_no_context_takeover_compresses_each_message_alone() -> None:
    sender = make_extension(local_no_context_takeover=True)
    receiver = make_extension(remote_no_context_takeover=True)
    first = sender.encode(Frame(Opcode.TEXT, MESSAGE))
    second = sender.encode(Frame(Opcode.TEXT, MESSAGE))
    assert first == second
    assert receiver.decode(first).data == receiver.decode(second).data == MESSAGE
    assert receiver._decoder is None


# --- window sizes -----------------------------------------------------------------------


def test_strict_inflater_detects_a_window_that_is_too_large() -> None:
    # Guard for the tests below: the harness fails on out-of-window references.
    data = compressible_corpus(8 * KIB, seed=1)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -10)
    compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert StrictInflater(10).inflate(compressed) == data
    with pytest.raises(zlib.error, match="too far back"):
        StrictInflater(9).inflate(compressed)


@pytest.mark.parametrize("bits", WINDOW_BITS)
def test_sender_stays_within_the_negotiated_window(bits: int) -> None:
    sender = make_extension(local_max_window_bits=bits)
    inflater = StrictInflater(bits)
    for seed in range(3):
        data = compressible_corpus(6 * KIB, seed)
        frames = send_message(sender, data, parts=2)
        assert inflater.inflate(frames[0].data + frames[1].data + b"\x00\x00\xff\xff") == data


def test_sender_limited_to_8_bits_uses_only_distance_one_matches() -> None:
    data = b"abcabcabc" * 100
    frame = make_extension(local_max_window_bits=8).encode(Frame(Opcode.BINARY, data))
    # Z_RLE finds no runs in "abcabc...", so the output is not much smaller...
    assert len(frame.data) > len(data) // 4
    # ...but it decodes with a strictly 8-bit window.
    assert StrictInflater(8).inflate(frame.data + b"\x00\x00\xff\xff") == data
    huffman_only = PerMessageDeflate(False, False, 15, 8, {"strategy": zlib.Z_HUFFMAN_ONLY})
    frame = huffman_only.encode(Frame(Opcode.BINARY, data))
    assert StrictInflater(8).inflate(frame.data + b"\x00\x00\xff\xff") == data


def test_receiver_limited_to_8_bits_tolerates_a_9_bit_window() -> None:
    # zlib-based peers asked for 8 bits compress with 9; inflating with 9 is harmless.
    rng = random.Random(7)
    block = rng.randbytes(100)
    data = block + rng.randbytes(200) + block  # a back-reference 300 bytes away
    compressor = zlib.compressobj(9, zlib.DEFLATED, -9)
    compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frames = split_compressed(Frame(Opcode.BINARY, compressed[:-4]), range(1, len(compressed) - 4))
    assert receive_message(make_extension(remote_max_window_bits=8), frames) == data


# --- round trips ------------------------------------------------------------------------

payloads = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.sampled_from(WORDS), max_size=100).map(b"".join),
)


@pytest.mark.parametrize("bits", WINDOW_BITS)
@pytest.mark.parametrize("no_context_takeover", [False, True])
@settings(max_examples=30, deadline=None)
@given(messages=st.lists(st.tuples(payloads, st.integers(1, 4)), min_size=1, max_size=5))
def test_round_trip(
    bits: int, no_context_takeover: bool, messages: list[tuple[bytes, int]]
) -> None:
    sender = make_extension(
        local_no_context_takeover=no_context_takeover, local_max_window_bits=bits
    )
    receiver = make_extension(
        remote_no_context_takeover=no_context_takeover, remote_max_window_bits=bits
    )
    for payload, parts in messages:
        frames = send_message(sender, payload, parts)
        assert [frame.rsv1 for frame in frames] == [True] + [False] * (parts - 1)
        assert receive_message(receiver, frames) == payload


@settings(max_examples=100, deadline=None)
@given(payload=payloads, data=st.data())
def test_receiver_accepts_any_split_of_a_compressed_message(payload: bytes, data: Any) -> None:
    sender = make_extension()
    receiver = make_extension()
    for _ in range(2):  # the second message uses the shared window
        message = sender.encode(Frame(Opcode.BINARY, payload))
        size = len(message.data)
        cuts = data.draw(st.lists(st.integers(0, size), max_size=6))
        assert receive_message(receiver, split_compressed(message, cuts)) == payload


# --- negotiation: server ----------------------------------------------------------------

P = ExtensionParameter
SNCT: P = ("server_no_context_takeover", None)
CNCT: P = ("client_no_context_takeover", None)


def smwb(value: str | None) -> P:
    return ("server_max_window_bits", value)


def cmwb(value: str | None = None) -> P:
    return ("client_max_window_bits", value)


REQUIRE_10 = {"client_max_window_bits": 10, "require_client_max_window_bits": True}
SERVER_CASES: list[Any] = [
    # (server config, offer, response or error, (remote nct, local nct, remote bits, local bits))
    ({}, [], [], (False, False, 15, 15)),
    ({}, [cmwb()], [], (False, False, 15, 15)),
    ({}, [cmwb("10")], [cmwb("10")], (False, False, 10, 15)),
    ({}, [SNCT], [SNCT], (False, True, 15, 15)),
    ({}, [CNCT], [CNCT], (True, False, 15, 15)),
    ({}, [smwb("12")], [smwb("12")], (False, False, 15, 12)),
    ({}, [smwb("8")], [smwb("8")], (False, False, 15, 8)),
    (
        {},
        [cmwb("9"), smwb("11"), CNCT, SNCT],
        [SNCT, CNCT, smwb("11"), cmwb("9")],
        (True, True, 9, 11),
    ),
    ({"server_no_context_takeover": True}, [], [SNCT], (False, True, 15, 15)),
    ({"client_no_context_takeover": True}, [], [CNCT], (True, False, 15, 15)),
    ({"server_max_window_bits": 12}, [], [smwb("12")], (False, False, 15, 12)),
    ({"server_max_window_bits": 12}, [smwb("10")], [smwb("10")], (False, False, 15, 10)),
    ({"server_max_window_bits": 10}, [smwb("12")], [smwb("10")], (False, False, 15, 10)),
    ({"client_max_window_bits": 10}, [], [], (False, False, 15, 15)),
    ({"client_max_window_bits": 10}, [cmwb()], [cmwb("10")], (False, False, 10, 15)),
    ({"client_max_window_bits": 10}, [cmwb("12")], [cmwb("10")], (False, False, 10, 15)),
    ({"client_max_window_bits": 12}, [cmwb("9")], [cmwb("9")], (False, False, 9, 15)),
    ({"client_max_window_bits": 8}, [cmwb()], [cmwb("8")], (False, False, 8, 15)),
    (REQUIRE_10, [cmwb()], [cmwb("10")], (False, False, 10, 15)),
    (REQUIRE_10, [], NegotiationError, None),
    (REQUIRE_10, [SNCT], NegotiationError, None),
    ({}, [("server_no_context_takeover", "1")], InvalidParameterValue, None),
    ({}, [("client_no_context_takeover", "")], InvalidParameterValue, None),
    ({}, [smwb(None)], InvalidParameterValue, None),
    *[
        ({}, [(name, value)], InvalidParameterValue, None)
        for name in ("server_max_window_bits", "client_max_window_bits")
        for value in BAD_WINDOW_BITS
    ],
    *[({}, [param, param], DuplicateParameter, None) for param in (SNCT, CNCT, smwb("10"), cmwb())],
    ({}, [cmwb(), cmwb("10")], DuplicateParameter, None),
    ({}, [("x-unknown", None)], InvalidParameterName, None),
    ({}, [("Server_No_Context_Takeover", None)], InvalidParameterName, None),
    ({}, [("client_max_window", "10")], InvalidParameterName, None),
]


@pytest.mark.parametrize(("config", "offer", "expected", "agreed"), SERVER_CASES)
def test_server_answers_offer(
    config: dict[str, Any],
    offer: list[P],
    expected: Any,
    agreed: tuple[bool, bool, int, int] | None,
) -> None:
    factory = ServerPerMessageDeflateFactory(**config)
    if isinstance(expected, type):
        with pytest.raises(expected):
            factory.process_request_params(offer, [])
        return
    response, extension = factory.process_request_params(offer, [])
    assert response == expected
    assert agreed == (
        extension.remote_no_context_takeover,
        extension.local_no_context_takeover,
        extension.remote_max_window_bits,
        extension.local_max_window_bits,
    )


def test_server_refuses_a_second_permessage_deflate() -> None:
    with pytest.raises(NegotiationError, match="already negotiated"):
        ServerPerMessageDeflateFactory().process_request_params([], [make_extension()])


# --- negotiation: client ----------------------------------------------------------------

CLIENT_CASES: list[Any] = [
    # (client config, response, error or (remote nct, local nct, remote bits, local bits))
    ({}, [], (False, False, 15, 15)),
    ({}, [cmwb("10")], (False, False, 15, 10)),
    ({}, [cmwb("8")], (False, False, 15, 8)),
    ({}, [smwb("10")], (False, False, 10, 15)),
    ({}, [SNCT], (True, False, 15, 15)),
    ({}, [CNCT], (False, True, 15, 15)),
    ({}, [SNCT, CNCT, smwb("9"), cmwb("9")], (True, True, 9, 9)),
    ({}, [cmwb(None)], InvalidParameterValue),
    ({}, [cmwb("16")], InvalidParameterValue),
    ({}, [smwb("7")], InvalidParameterValue),
    ({}, [smwb(None)], InvalidParameterValue),
    ({}, [("server_no_context_takeover", "true")], InvalidParameterValue),
    ({}, [SNCT, SNCT], DuplicateParameter),
    ({}, [cmwb("9"), cmwb("9")], DuplicateParameter),
    ({}, [("mux", None)], InvalidParameterName),
    ({"client_max_window_bits": None}, [cmwb("10")], NegotiationError),
    ({"client_max_window_bits": False}, [cmwb("10")], NegotiationError),
    ({"client_max_window_bits": None}, [], (False, False, 15, 15)),
    ({"client_max_window_bits": 10}, [], (False, False, 15, 10)),
    ({"client_max_window_bits": 10}, [cmwb("12")], (False, False, 15, 10)),
    ({"client_max_window_bits": 12}, [cmwb("9")], (False, False, 15, 9)),
    ({"server_max_window_bits": 10}, [], NegotiationError),
    ({"server_max_window_bits": 10}, [smwb("12")], NegotiationError),
    ({"server_max_window_bits": 10}, [smwb("10")], (False, False, 10, 15)),
    ({"server_max_window_bits": 10}, [smwb("8")], (False, False, 8, 15)),
    ({"server_no_context_takeover": True}, [], NegotiationError),
    ({"server_no_context_takeover": True}, [SNCT], (True, False, 15, 15)),
    ({"client_no_context_takeover": True}, [], (False, True, 15, 15)),
    ({"client_no_context_takeover": True}, [CNCT], (False, True, 15, 15)),
]


@pytest.mark.parametrize(("config", "response", "expected"), CLIENT_CASES)
def test_client_checks_response(config: dict[str, Any], response: list[P], expected: Any) -> None:
    factory = ClientPerMessageDeflateFactory(**config)
    if isinstance(expected, type):
        with pytest.raises(expected):
            factory.process_response_params(response, [])
        return
    extension = factory.process_response_params(response, [])
    assert expected == (
        extension.remote_no_context_takeover,
        extension.local_no_context_takeover,
        extension.remote_max_window_bits,
        extension.local_max_window_bits,
    )


def test_client_refuses_a_second_permessage_deflate() -> None:
    with pytest.raises(NegotiationError, match="already negotiated"):
        ClientPerMessageDeflateFactory().process_response_params([], [make_extension()])


@pytest.mark.parametrize(
    ("config", "offer"),
    [
        ({}, [cmwb()]),
        ({"client_max_window_bits": None}, []),
        ({"client_max_window_bits": False}, []),
        ({"client_max_window_bits": 9}, [cmwb("9")]),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 8,
                "client_max_window_bits": 15,
            },
            [SNCT, CNCT, smwb("8"), cmwb("15")],
        ),
    ],
)
def test_client_offers(config: dict[str, Any], offer: list[P]) -> None:
    assert ClientPerMessageDeflateFactory(**config).get_request_params() == offer


# --- negotiation end to end -------------------------------------------------------------

client_configs = st.fixed_dictionaries(
    {},
    optional={
        "server_no_context_takeover": st.booleans(),
        "client_no_context_takeover": st.booleans(),
        "server_max_window_bits": st.none() | st.sampled_from(WINDOW_BITS),
        "client_max_window_bits": st.none() | st.booleans() | st.sampled_from(WINDOW_BITS),
    },
)
server_configs = st.fixed_dictionaries(
    {},
    optional={
        "server_no_context_takeover": st.booleans(),
        "client_no_context_takeover": st.booleans(),
        "server_max_window_bits": st.none() | st.sampled_from(WINDOW_BITS),
        "client_max_window_bits": st.none() | st.sampled_from(WINDOW_BITS),
    },
)


@settings(max_examples=150, deadline=None)
@given(client_config=client_configs, server_config=server_configs, payload=payloads)
def test_negotiated_peers_agree_and_talk(
    client_config: dict[str, Any], server_config: dict[str, Any], payload: bytes
) -> None:
    client_factory = ClientPerMessageDeflateFactory(**client_config)
    server_factory = ServerPerMessageDeflateFactory(**server_config)
    response, server = server_factory.process_request_params(
        client_factory.get_request_params(), []
    )
    client = client_factory.process_response_params(response, [])
    # Each side inflates with the window and context the other compresses with.
    assert client.remote_max_window_bits == server.local_max_window_bits
    assert client.local_max_window_bits <= server.remote_max_window_bits
    assert client.remote_no_context_takeover == server.local_no_context_takeover
    assert client.local_no_context_takeover >= server.remote_no_context_takeover
    for sender, receiver in [(client, server), (server, client)]:
        for parts in (1, 3):
            assert receive_message(receiver, send_message(sender, payload, parts)) == payload


def test_default_factories_interoperate_with_a_browser_offer() -> None:
    # Chrome and Firefox offer "permessage-deflate; client_max_window_bits".
    response, server = ServerPerMessageDeflateFactory().process_request_params([cmwb()], [])
    assert response == []
    assert ClientPerMessageDeflateFactory().get_request_params() == [cmwb()]
    client = ClientPerMessageDeflateFactory().process_response_params(response, [])
    assert receive_message(server, send_message(client, MESSAGE)) == MESSAGE


def test_reprs_show_the_parameters() -> None:
    assert "local_max_window_bits=12" in repr(make_extension(local_max_window_bits=12))
    assert "server_max_window_bits=9" in repr(
        ClientPerMessageDeflateFactory(server_max_window_bits=9)
    )
    assert "require_client_max_window_bits=True" in repr(
        ServerPerMessageDeflateFactory(
            client_max_window_bits=9, require_client_max_window_bits=True
        )
    )


# --- configuration checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "kwargs", "argument"),
    [
        (ClientPerMessageDeflateFactory, {"server_max_window_bits": 7}, "server_max_window_bits"),
        (ClientPerMessageDeflateFactory, {"server_max_window_bits": 16}, "server_max_window_bits"),
        (
            ClientPerMessageDeflateFactory,
            {"server_max_window_bits": True},
            "server_max_window_bits",
        ),
        (
            ClientPerMessageDeflateFactory,
            {"server_max_window_bits": "10"},
            "server_max_window_bits",
        ),
        (ClientPerMessageDeflateFactory, {"client_max_window_bits": 0}, "client_max_window_bits"),
        (ClientPerMessageDeflateFactory, {"client_max_window_bits": 16}, "client_max_window_bits"),
        (ServerPerMessageDeflateFactory, {"server_max_window_bits": 16}, "server_max_window_bits"),
        (
            ServerPerMessageDeflateFactory,
            {"client_max_window_bits": True},
            "client_max_window_bits",
        ),
        (ServerPerMessageDeflateFactory, {"client_max_window_bits": 7}, "client_max_window_bits"),
        (
            ServerPerMessageDeflateFactory,
            {"require_client_max_window_bits": True},
            "require_client_max_window_bits",
        ),
        (ServerPerMessageDeflateFactory, {"compress_settings": {"wbits": 15}}, "wbits"),
        (ClientPerMessageDeflateFactory, {"compress_settings": {"level": 10}}, "level"),
        (ClientPerMessageDeflateFactory, {"compress_settings": {"level": True}}, "level"),
        (ClientPerMessageDeflateFactory, {"compress_settings": {"level": "6"}}, "level"),
        (ClientPerMessageDeflateFactory, {"compress_settings": {"memLevel": 0}}, "memLevel"),
        (ClientPerMessageDeflateFactory, {"compress_settings": {"strategy": 99}}, "strategy"),
        (ClientPerMessageDeflateFactory, {"compress_settings": {"zdict": 1}}, "zdict"),
    ],
)
def test_factories_reject_invalid_arguments(
    factory: Any, kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        factory(**kwargs)


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        ((False, False, 16, 15), "remote_max_window_bits"),
        ((False, False, 15, 7), "local_max_window_bits"),
    ],
)
def test_extension_rejects_invalid_window_bits(args: tuple[Any, ...], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        PerMessageDeflate(*args)


@pytest.mark.parametrize("level", [-1, 0, 1, 9])
def test_compress_settings_choose_the_level(level: int) -> None:
    sender = PerMessageDeflate(False, False, 15, 15, {"level": level, "memLevel": 1})
    assert receive_message(make_extension(), send_message(sender, MESSAGE * 20)) == MESSAGE * 20
