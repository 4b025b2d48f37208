"""Fuzz the opening handshake: the HTTP/1.1 parsers and both sides' checks.

Byte 0 picks the side (bit 0: a request for the server, else a response for
the client) and the server's Origin check (bit 1); byte 1 where the head is cut
for an incremental parse; the rest is the head.

What may come out, from the code's docstrings:

* ``parse_request`` / ``parse_response`` (``protocol/http11.py``): ``None``
  while incomplete, else :data:`PARSE_ERRORS` (``SecurityError`` for a limit,
  ``InvalidMessage`` for bad syntax). An error in a prefix of the head is the
  same kind of error in the whole head ("any way of splitting the bytes gives
  the same error").
* ``ServerHandshake.process_request`` (``protocol/handshake/server.py``): never
  raises for a parsed request (only ``ValueError`` from a misbehaving
  ``select_subprotocol`` hook, which this harness doesn't pass). It answers
  with a status of :data:`SERVER_STATUSES`, a 101 exactly when it negotiated,
  and ``process_request_head`` writes the same bytes.
* ``ClientHandshake.process_response``: :data:`CLIENT_ERRORS` only
  (``InvalidStatus``, ``InvalidUpgrade``, ``InvalidHeader``,
  ``InvalidHeaderValue``, ``NegotiationError``). The client's key is fixed to
  RFC 6455's example, so seeds can carry its accept value.
"""

from __future__ import annotations

from collections.abc import Callable

from harness import instrumented, main

with instrumented(__name__):
    from openline.exceptions import (
        InvalidHandshake,
        InvalidHeader,
        InvalidMessage,
        InvalidStatus,
        NegotiationError,
        SecurityError,
    )
    from openline.protocol.extensions.deflate import (
        ClientPerMessageDeflateFactory,
        ServerPerMessageDeflateFactory,
    )
    from openline.protocol.handshake import ClientHandshake, ServerHandshake
    from openline.protocol.http11 import Request, Response, parse_request, parse_response

PARSE_ERRORS = (SecurityError, InvalidMessage)
# InvalidHeader covers InvalidUpgrade and InvalidHeaderValue, its subclasses.
CLIENT_ERRORS = (InvalidStatus, InvalidHeader, NegotiationError)
SERVER_STATUSES = frozenset({101, 400, 403, 405, 426})
#: RFC 6455, section 1.3's example key; its accept value is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
CLIENT_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

Parse = Callable[[bytes], "tuple[object, int] | None"]

SUBPROTOCOLS = ["openline.v1", "chat"]
SERVERS = (
    ServerHandshake(subprotocols=SUBPROTOCOLS, extensions=[ServerPerMessageDeflateFactory()]),
    ServerHandshake(
        subprotocols=SUBPROTOCOLS,
        extensions=[ServerPerMessageDeflateFactory(client_max_window_bits=10)],
        origins=["https://example.com", None],
    ),
)


def parse_in_two(parse: Parse, data: bytes, cut: int) -> tuple[object, int] | None:
    """Parse a prefix of ``data``, then all of it; check that both agree on errors.

    A prefix that breaks a limit makes the whole head break one too (limits
    are checked before syntax, on whatever part has arrived). A prefix with a
    syntax error makes the whole head fail, but possibly on a limit that only
    the whole head breaks: fuzz/README.md says why that is accepted.
    """
    try:
        parse(data[:cut])
    except PARSE_ERRORS as early:
        try:
            parse(data)
        except PARSE_ERRORS as late:
            if isinstance(early, SecurityError) and not isinstance(late, SecurityError):
                raise AssertionError(f"prefix raised {early!r}, whole head {late!r}") from late
            raise
        raise AssertionError(f"prefix raised {early!r}, whole head parsed") from early
    return parse(data)


def check_server(head: bytes, cut: int, server: ServerHandshake) -> None:
    """Parse a request and answer it; fail on anything undocumented."""
    try:
        parsed = parse_in_two(parse_request, head, cut)
    except PARSE_ERRORS:
        return
    if parsed is None:
        return
    request, _ = parsed
    assert isinstance(request, Request)
    result = server.process_request(request)
    status = result.response.status
    if status not in SERVER_STATUSES:
        raise AssertionError(f"undocumented status {status}")
    if (status == 101) != result.accepted or (result.error is None) != result.accepted:
        raise AssertionError(f"status {status} disagrees with the outcome: {result.error!r}")
    wire, negotiated, error = server.process_request_head(request)
    if wire != result.response.serialize() or (negotiated is None) != (error is not None):
        raise AssertionError("process_request_head and process_request disagree")


def check_client(head: bytes, cut: int) -> None:
    """Parse a response and check it as a client; fail on anything undocumented."""
    try:
        parsed = parse_in_two(parse_response, head, cut)
    except PARSE_ERRORS:
        return
    if parsed is None:
        return
    response, _ = parsed
    assert isinstance(response, Response)
    client = ClientHandshake(
        "example.com",
        80,
        "/chat",
        secure=False,
        subprotocols=SUBPROTOCOLS,
        extensions=[ClientPerMessageDeflateFactory()],
    )
    client.build_request()
    client.key = CLIENT_KEY
    try:
        client.process_response(response)
    except CLIENT_ERRORS:
        return
    except InvalidHandshake as exc:
        raise AssertionError(f"undocumented error from process_response: {exc!r}") from exc


def check(data: bytes) -> None:
    """Run one input through the side its first byte picks."""
    if len(data) < 2:
        return
    head = data[2:]
    if data[0] & 1:
        check_server(head, data[1], SERVERS[(data[0] >> 1) & 1])
    else:
        check_client(head, data[1])


if __name__ == "__main__":
    main("handshake", check)
