"""Fuzz permessage-deflate decompression with limits (``protocol/extensions/deflate.py``).

``PerMessageDeflate.decode`` may raise only what its docstring lists:
``ProtocolError`` with code 1002 (RSV1 on a control or continuation frame) or
1007 (corrupt data), and ``PayloadTooBig`` (1009) when a message inflates past
its budget, which it must notice within one byte of the budget: a
decompression bomb never inflates further. And what ``encode`` compresses,
``decode`` restores, for every window size and context-takeover setting.

Input layout: byte 0 picks the setup (bits 0-2: window bits, 8 + n; bit 3: no
context takeover); then records of ``[flags][length][payload]``: flags bit 0 is
FIN, bit 1 RSV1, bits 2-3 the opcode (continuation, text, binary, ping). The
payloads, joined, are also compressed and restored as one message.
"""

from __future__ import annotations

from collections.abc import Iterator

from harness import instrumented, main

with instrumented(__name__):
    from openline.exceptions import PayloadTooBig, ProtocolError
    from openline.protocol.extensions.deflate import PerMessageDeflate
    from openline.protocol.frames import Frame, Opcode

ALLOWED_CLOSE_CODES = frozenset({1002, 1007, 1009})
MAX_SIZE = 4096
OPCODES = (Opcode.CONT, Opcode.TEXT, Opcode.BINARY, Opcode.PING)


def frames(data: bytes) -> Iterator[Frame]:
    """Cut the records after the setup byte into frames."""
    pos = 1
    while pos + 2 <= len(data):
        flags, length = data[pos], data[pos + 1]
        payload = data[pos + 2 : pos + 2 + length]
        pos += 2 + length
        opcode = OPCODES[(flags >> 2) & 3]
        yield Frame(opcode, payload, bool(flags & 1), bool(flags & 2))


def check_decode(extension: PerMessageDeflate, data: bytes) -> None:
    """Inflate the input's frames as a connection would, with a per-message budget."""
    used = 0
    for frame in frames(data):
        budget = MAX_SIZE - used
        try:
            decoded = extension.decode(frame, max_size=budget)
        except PayloadTooBig as exc:
            if exc.code != 1009 or exc.size > budget + 1:
                raise AssertionError(f"inflated past the budget of {budget}: {exc}") from exc
            return
        except ProtocolError as exc:
            if exc.code not in ALLOWED_CLOSE_CODES:
                raise AssertionError(f"undocumented close code {exc.code}: {exc}") from exc
            return
        if decoded.rsv1:
            raise AssertionError("decoded frame still has rsv1")
        if len(decoded.data) > budget:
            raise AssertionError(f"{len(decoded.data)} bytes passed the budget of {budget}")
        if frame.opcode is not Opcode.PING:
            used = 0 if frame.fin else used + len(decoded.data)


def check_round_trip(bits: int, no_takeover: bool, data: bytes) -> None:
    """Compress the payloads as one fragmented message, twice, and restore them."""
    chunks = [frame.data for frame in frames(data)]
    sender = PerMessageDeflate(False, no_takeover, 15, bits)
    receiver = PerMessageDeflate(no_takeover, False, bits, 15)
    for _ in range(2):  # the second message uses (or resets) the context
        restored = []
        for i, chunk in enumerate(chunks or [b""]):
            opcode = Opcode.BINARY if i == 0 else Opcode.CONT
            sent = sender.encode(Frame(opcode, chunk, fin=i == max(len(chunks) - 1, 0)))
            restored.append(receiver.decode(sent, max_size=None).data)
        if b"".join(restored) != b"".join(chunks):
            raise AssertionError("compressed message didn't round-trip")


def check(data: bytes) -> None:
    """Run one input through decoding and a round trip."""
    if not data:
        return
    bits = 8 + (data[0] & 7)
    no_takeover = bool(data[0] & 8)
    check_decode(PerMessageDeflate(no_takeover, False, bits, 15), data)
    check_round_trip(bits, no_takeover, data)


if __name__ == "__main__":
    main("deflate", check)
