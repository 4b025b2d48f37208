"""Fuzz the hub's client-message parser, ``openline.hub.wire.Parser.parse``.

The contract (``hub/wire.py``): parsing never raises anything but
``RequestError``, and the parser's codes are those of :data:`PARSER_CODES`
(docs/protocol.md, "Errors"). What it returns holds only checked values: a
channel name within the limit and without control characters, data and state
that are valid JSON within their limits, offsets that are safe integers. Every
refusal encodes to a JSON ``error`` reply.

Byte 0, bit 0: deliver the rest as a binary message (which openline.v1
refuses) instead of text. Text is the rest decoded as UTF-8, as the transport
would deliver it (invalid bytes replaced).
"""

from __future__ import annotations

import json

from harness import instrumented, main

with instrumented(__name__):
    from openline.hub import wire

PARSER_CODES = frozenset({"bad_request", "unknown_type", "too_large"})
MAX_MESSAGE_SIZE = 1024
MAX_CHANNEL_LENGTH = 32
MAX_STATE_SIZE = 64
PARSER = wire.Parser(
    max_message_size=MAX_MESSAGE_SIZE,
    max_channel_length=MAX_CHANNEL_LENGTH,
    max_state_size=MAX_STATE_SIZE,
)


def check_request(request: wire.Request) -> None:
    """Fail unless every field of a parsed request is within the documented bounds."""
    rid = request.rid
    if not (rid is None or type(rid) is int or wire.is_text(rid, wire.MAX_RID_LENGTH)):
        raise AssertionError(f"unchecked rid {rid!r}")
    if isinstance(request, wire.Ping):
        return
    if not wire.is_text(request.ch, MAX_CHANNEL_LENGTH):
        raise AssertionError(f"unchecked channel {request.ch!r}")
    if isinstance(request, wire.Publish):
        json.loads(request.data)
        if request.id is not None and not wire.is_text(request.id, wire.MAX_ID_LENGTH):
            raise AssertionError(f"unchecked id {request.id!r}")
    elif isinstance(request, wire.SetState) and request.state is not None:
        if len(request.state.encode()) > MAX_STATE_SIZE:
            raise AssertionError(f"state of {len(request.state.encode())} bytes passed the limit")
        if not isinstance(json.loads(request.state), dict):
            raise AssertionError("state isn't a JSON object")
    elif isinstance(request, wire.Subscribe) and request.since is not None:
        epoch, offset = request.since
        if not wire.is_text(epoch, wire.MAX_EPOCH_LENGTH) or type(offset) is not int or offset < 0:
            raise AssertionError(f"unchecked since {request.since!r}")


def check(data: bytes) -> None:
    """Parse one client message; fail on anything the contract doesn't allow."""
    if not data:
        return
    raw: str | bytes = data[1:] if data[0] & 1 else data[1:].decode(errors="replace")
    try:
        request = PARSER.parse(raw)
    except wire.RequestError as exc:
        if exc.code not in PARSER_CODES:
            raise AssertionError(f"undocumented error code {exc.code}") from exc
        reply = json.loads(wire.encode_error(exc))
        if reply.get("type") != "error" or reply.get("code") != exc.code:
            raise AssertionError(f"bad error reply {reply!r}") from exc
        return
    check_request(request)


if __name__ == "__main__":
    main("wire", check)
