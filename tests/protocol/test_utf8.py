"""Strict UTF-8, whole and incremental, failing at the first bad byte (RFC 6455, 8.1)."""

from __future__ import annotations

import pytest

from openline.protocol.utf8 import IncrementalUtf8Decoder, decode_chunk, decode_utf8

# Sequences every strict decoder must refuse, whatever the position.
INVALID = [
    pytest.param(b"\xc0\x80", id="overlong NUL"),
    pytest.param(b"\xe0\x80\xaf", id="overlong slash"),
    pytest.param(b"\xed\xa0\x80", id="high surrogate"),
    pytest.param(b"\xed\xbf\xbf", id="low surrogate"),
    pytest.param(b"\xf4\x90\x80\x80", id="above U+10FFFF"),
    pytest.param(b"\xf8\x88\x80\x80\x80", id="five bytes"),
    pytest.param(b"\xff", id="0xFF"),
    pytest.param(b"\x80", id="lone continuation"),
    pytest.param(b"\xce", id="truncated"),
]


@pytest.mark.parametrize(
    "text", ["", "hello", "κόσμε", "\u0000", "\U0010ffff", "\ud7ff\ue000", "€𝄞"]
)
def test_valid_text_round_trips(text: str) -> None:
    data = text.encode()
    assert decode_utf8(data) == text
    assert decode_utf8(bytearray(data)) == text
    assert decode_utf8(memoryview(data)) == text


@pytest.mark.parametrize("data", INVALID)
def test_invalid_utf8_is_refused_whole(data: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        decode_utf8(b"ok " + data)


@pytest.mark.parametrize("text", ["κόσμε", "€𝄞 mixed ascii"])
def test_any_split_into_chunks_gives_the_same_text(text: str) -> None:
    data = text.encode()
    for cut in range(len(data) + 1):
        decoder = IncrementalUtf8Decoder()
        decoded = decode_chunk(decoder, data[:cut]) + decode_chunk(decoder, data[cut:], True)
        assert decoded == text, cut


def test_a_sequence_cut_at_the_end_of_the_message_is_refused() -> None:
    decoder = IncrementalUtf8Decoder()
    assert decode_chunk(decoder, "€".encode()[:2]) == ""  # may still complete
    with pytest.raises(UnicodeDecodeError):
        decode_chunk(decoder, b"", final=True)


@pytest.mark.parametrize("prefix", [b"\xed\xa0", b"\xed\xbf"])
def test_an_encoded_surrogate_fails_after_two_bytes_not_three(prefix: bytes) -> None:
    # CPython's decoder waits for the third byte here; section 8.1 wants the
    # failure as soon as the sequence can't be valid.
    decoder = IncrementalUtf8Decoder()
    with pytest.raises(UnicodeDecodeError, match="encoded surrogate"):
        decode_chunk(decoder, b"abc" + prefix)


def test_the_highest_valid_three_byte_prefix_waits_for_more() -> None:
    decoder = IncrementalUtf8Decoder()
    assert decode_chunk(decoder, b"\xed\x9f") == ""  # U+D7xx: still possibly valid
    assert decode_chunk(decoder, b"\xbf", True) == "\ud7ff"


@pytest.mark.parametrize("data", [b"\xc0", b"\xf5", b"\xe0\x80"])
def test_an_impossible_start_fails_at_once(data: bytes) -> None:
    decoder = IncrementalUtf8Decoder()
    with pytest.raises(UnicodeDecodeError):
        decode_chunk(decoder, data)
