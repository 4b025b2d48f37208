"""Strict UTF-8 decoding, whole and incremental (RFC 6455, section 8.1).

CPython's UTF-8 codec rejects surrogates and code points above U+10FFFF, and
its incremental decoder raises as soon as a byte makes the sequence invalid,
not at the end: exactly the "fail fast" behaviour section 8.1 asks for.
"""

from __future__ import annotations

import codecs

__all__ = ["IncrementalUtf8Decoder", "decode_utf8"]

#: The standard library's incremental UTF-8 decoder, which fails at the first bad
#: byte; see :func:`decode_chunk` for the one case where it waits.
IncrementalUtf8Decoder = codecs.getincrementaldecoder("utf-8")


def decode_utf8(data: bytes | bytearray | memoryview) -> str:
    """Decode ``data`` strictly.

    Raises:
        UnicodeDecodeError: ``data`` is not valid UTF-8.
    """
    # bytes(data) is free for bytes, and a copy only for other buffers.
    return bytes(data).decode("utf-8")


def decode_chunk(decoder: codecs.IncrementalDecoder, data: bytes, final: bool = False) -> str:
    """Feed one chunk of a text message to ``decoder`` and fail at the first bad byte.

    CPython's incremental decoder already raises at the first byte that makes a
    sequence invalid, except for one case: after ``ED A0``..``ED BF`` it waits for
    a third byte before rejecting the UTF-16 surrogate. This closes that gap, so
    that invalid input is reported as soon as it arrives (section 8.1).

    Raises:
        UnicodeDecodeError: The bytes seen so far cannot start valid UTF-8.
    """
    text = decoder.decode(data, final)
    if not final:
        pending = decoder.getstate()[0]
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise UnicodeDecodeError("utf-8", pending, 0, 2, "encoded surrogate")
    return text
