"""Request bodies in ``parse_request``: off by default, bounded by ``max_body`` when on."""

from __future__ import annotations

import pytest

from openline.exceptions import InvalidMessage, SecurityError
from openline.protocol.http11 import MAX_REQUEST_BODY, parse_request

HEAD = b"POST /api/publish HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\n"


def test_a_body_is_refused_unless_allowed() -> None:
    with pytest.raises(InvalidMessage, match="mustn't have a body; found Content-Length"):
        parse_request(HEAD + b'{"ch":"a"} ')


def test_a_body_is_read_by_content_length_and_waited_for() -> None:
    data = HEAD + b'{"ch":"a"} ' + b"NEXT"
    for cut in range(len(HEAD), len(HEAD) + 11):
        assert parse_request(data[:cut], max_body=MAX_REQUEST_BODY) is None
    parsed = parse_request(data, max_body=MAX_REQUEST_BODY)
    assert parsed is not None
    request, used = parsed
    assert (request.method, request.path, request.body) == ("POST", "/api/publish", b'{"ch":"a"} ')
    assert used == len(data) - 4


def test_a_request_without_content_length_has_an_empty_body() -> None:
    data = b"POST /api/channels HTTP/1.1\r\nHost: x\r\n\r\n"
    parsed = parse_request(data, max_body=100)
    assert parsed is not None and parsed[0].body == b"" and parsed[1] == len(data)


def test_the_body_limit_is_checked_from_the_head() -> None:
    head = b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
    with pytest.raises(SecurityError, match="request body of 101 bytes exceeds max_body of 100"):
        parse_request(head, max_body=100)
    assert parse_request(head, max_body=None) is None  # no limit: waits for the body


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (b"Content-Length: 1, 1", "invalid Content-Length"),
        (b"Content-Length: -1", "invalid Content-Length"),
        (b"Content-Length: 1\r\nContent-Length: 1", "invalid Content-Length"),
        (b"Transfer-Encoding: chunked", "transfer-encoded request bodies aren't supported"),
    ],
)
def test_bad_or_chunked_bodies_are_refused(fields: bytes, error: str) -> None:
    data = b"POST /api HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n\r\n"
    with pytest.raises(InvalidMessage, match=error):
        parse_request(data, max_body=100)


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_an_upgrade_stays_strict_even_when_bodies_are_allowed(method: bytes) -> None:
    data = method + b" /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(InvalidMessage, match="upgrade request mustn't have a body"):
        parse_request(data, max_body=MAX_REQUEST_BODY)
