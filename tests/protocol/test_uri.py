"""ws:// and wss:// URIs (RFC 6455, section 3)."""

from __future__ import annotations

import pytest

from openline.exceptions import InvalidURI
from openline.protocol.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://example.com", WebSocketURI(False, "example.com", 80, "/")),
        ("wss://example.com", WebSocketURI(True, "example.com", 443, "/")),
        ("ws://example.com:8765/chat", WebSocketURI(False, "example.com", 8765, "/chat")),
        ("wss://EXAMPLE.com/", WebSocketURI(True, "example.com", 443, "/")),
        ("ws://127.0.0.1:1/a?b=c&d", WebSocketURI(False, "127.0.0.1", 1, "/a?b=c&d")),
        ("ws://[::1]:9000/", WebSocketURI(False, "::1", 9000, "/")),
        ("ws://example.com/caf\xe9", WebSocketURI(False, "example.com", 80, "/caf%C3%A9")),
        ("ws://example.com/a%20b", WebSocketURI(False, "example.com", 80, "/a%20b")),
        ("ws://b\xfccher.example/", WebSocketURI(False, "xn--bcher-kva.example", 80, "/")),
    ],
)
def test_valid_uris_are_parsed(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


def test_user_info_is_percent_decoded() -> None:
    assert parse_uri("ws://al%40ice:p%3Ass@example.com/").user_info == ("al@ice", "p:ss")
    assert parse_uri("ws://alice@example.com/").user_info == ("alice", "")
    assert parse_uri("ws://example.com/").user_info is None


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://example.com/", "scheme isn't ws or wss"),
        ("example.com", "scheme isn't ws or wss"),
        ("ws://example.com/#frag", "contains a fragment"),
        ("ws://example.com/#", "contains a fragment"),
        ("ws:///path", "missing host"),
        ("ws://exa mple.com/", "contains whitespace or control characters"),
        ("ws://example.com/\n", "contains whitespace or control characters"),
        ("ws://example.com/\x7f", "contains whitespace or control characters"),
        ("ws://example.com:0/", "port 0 isn't allowed"),
        ("ws://example.com:99999/", "port out of range 0-65535"),
        ("ws://example.com:http/", "port could not be cast to integer value as 'http'"),
        ("ws://exa<mple.com/", "invalid host name"),
        ("ws://[nothost]/", "does not appear to be an ipv4 or ipv6 address"),
    ],
)
def test_invalid_uris_are_refused_with_the_reason(uri: str, problem: str) -> None:
    with pytest.raises(InvalidURI) as caught:
        parse_uri(uri)
    assert caught.value.uri == uri
    assert problem in caught.value.msg
    assert str(caught.value).endswith(caught.value.msg)


def test_a_uri_is_immutable() -> None:
    uri = parse_uri("ws://example.com/")
    with pytest.raises(AttributeError):
        uri.port = 81  # type: ignore[misc]
