"""IP literals in WebSocket URIs: only IPv6 may stand between brackets (RFC 3986, 3.2.2)."""

from __future__ import annotations

import pytest

from openline.exceptions import InvalidURI
from openline.protocol.uri import parse_uri


@pytest.mark.parametrize(
    "uri",
    [
        # An IPvFuture literal: urlsplit accepts it on every Python, a socket can't dial it.
        "ws://[v1.fe80]/",
        "wss://[v7.host]:8443/chat",
    ],
)
def test_parse_uri_rejects_bracketed_hosts_that_are_not_ipv6(uri: str) -> None:
    with pytest.raises(InvalidURI, match="does not appear to be an ipv4 or ipv6 address") as info:
        parse_uri(uri)
    assert info.value.uri == uri


def test_parse_uri_keeps_a_bracketed_ipv6_host_and_its_port() -> None:
    parsed = parse_uri("ws://[::1]:8765/chat?room=1")
    assert (parsed.host, parsed.port, parsed.path) == ("::1", 8765, "/chat?room=1")
