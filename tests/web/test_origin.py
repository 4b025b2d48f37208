"""The origin check, as a function: requests in, a reason (or ``None``) out."""

from __future__ import annotations

import pytest

from openline.protocol.http11 import Headers, Request
from openline.web.origin import Origin, OriginPolicy, parse_origin, request_origin


def request(host: str | None, origin: str | None = None, **more: str) -> Request:
    headers = Headers()
    if host is not None:
        headers["Host"] = host
    if origin is not None:
        headers["Origin"] = origin
    for name, value in more.items():
        headers[name.replace("_", "-")] = value
    return Request("/ws", headers)


DEFAULT = OriginPolicy()


@pytest.mark.parametrize(
    ("host", "origin", "secure"),
    [
        ("127.0.0.1:8765", "http://127.0.0.1:8765", False),
        ("example.com", "http://example.com", False),
        ("example.com:80", "http://example.com", False),
        ("example.com", "http://example.com:80", False),
        ("Example.COM", "HTTP://example.com", False),
        ("example.com", "https://example.com", True),
        ("example.com:443", "https://example.com", True),
        ("example.com:8443", "https://example.com:8443", True),
        ("[::1]:8765", "http://[::1]:8765", False),
        ("[::1]", "https://[::1]", True),
        ("localhost:8765", "http://localhost:8765", False),
    ],
)
def test_same_origin_is_allowed(host: str, origin: str, secure: bool) -> None:
    assert DEFAULT.refusal(request(host, origin), secure=secure) is None


@pytest.mark.parametrize(
    ("host", "origin", "secure"),
    [
        # Another site, another port, another scheme.
        ("127.0.0.1:8765", "http://evil.example", False),
        ("127.0.0.1:8765", "http://127.0.0.1:8766", False),
        ("example.com", "https://example.com", False),  # we serve http
        ("example.com", "http://example.com", True),  # we serve https
        ("example.com:8443", "http://example.com:8443", True),
        ("example.com", "http://example.com:8080", False),
        # localhost and 127.0.0.1 are different origins, as they are to a browser.
        ("127.0.0.1:8765", "http://localhost:8765", False),
        ("localhost:8765", "http://127.0.0.1:8765", False),
        ("[::1]:8765", "http://127.0.0.1:8765", False),
        # Opaque and odd origins.
        ("example.com", "null", False),
        ("example.com", "file://", False),
        ("example.com", "chrome-extension://abc", False),
        ("example.com", "http://example.com/path", False),
        ("example.com", "http://user@example.com", False),
        # A subdomain is another origin.
        ("example.com", "http://www.example.com", False),
        # No usable Host: nothing is our origin.
        (None, "http://example.com", False),
        ("bad host:x", "http://bad host", False),
    ],
)
def test_other_origins_are_refused_with_a_reason(
    host: str | None, origin: str, secure: bool
) -> None:
    reason = DEFAULT.refusal(request(host, origin), secure=secure)
    assert reason is not None and "\n" not in reason
    assert reason.startswith("cross-origin request refused: Origin ")
    print(reason)


def test_the_reason_escapes_what_the_client_sent() -> None:
    # Control characters can't reach here (the parser refuses them); others can.
    reason = DEFAULT.refusal(request("a.example", "http://x\xe9\xff" + "y" * 300), secure=False)
    assert reason is not None
    assert "\xff" not in reason and "\\xff" in reason and len(reason) < 300


def test_requests_without_origin_are_allowed_unless_required() -> None:
    assert DEFAULT.refusal(request("example.com"), secure=False) is None
    required = OriginPolicy(required=True)
    assert required.refusal(request("example.com"), secure=False) == (
        "an Origin header is required"
    )
    # A same-origin browser request still counts as one of ours.
    same = request("example.com", Sec_Fetch_Site="same-origin")
    assert required.refusal(same, secure=False) is None
    assert required.refusal(request("example.com", "http://example.com"), secure=False) is None


def test_a_browser_request_from_another_site_without_origin_is_refused() -> None:
    for site in ("cross-site", "same-site"):
        reason = DEFAULT.refusal(request("example.com", Sec_Fetch_Site=site), secure=False)
        assert reason is not None and "another site" in reason
    assert DEFAULT.refusal(request("example.com", Sec_Fetch_Site="none"), secure=False) is None


def test_added_origins_are_allowed_and_star_allows_any() -> None:
    policy = OriginPolicy.from_strings(["https://app.example.com", "http://localhost:3000"])
    assert (
        policy.refusal(request("api.example.com", "https://app.example.com"), secure=True) is None
    )
    assert policy.refusal(request("api.example.com", "http://localhost:3000"), secure=True) is None
    assert policy.refusal(request("api.example.com", "http://evil.example"), secure=True)
    star = OriginPolicy.from_strings(["*"])
    assert star.refusal(request("example.com", "http://evil.example"), secure=False) is None
    assert star.refusal(request("example.com", "null"), secure=False) is None
    assert star.refusal(request("example.com", Sec_Fetch_Site="cross-site"), secure=False) is None
    strict_star = OriginPolicy.from_strings(["*"], required=True)
    assert strict_star.refusal(request("example.com"), secure=False) is not None


def test_two_origin_headers_are_refused() -> None:
    headers = Headers([("Host", "example.com")])
    headers.add("Origin", "http://example.com")
    headers.add("Origin", "http://evil.example")
    assert DEFAULT.refusal(Request("/", headers), secure=False) == "more than one Origin header"


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("https://example.com", Origin("https", "example.com", 443)),
        ("http://example.com", Origin("http", "example.com", 80)),
        ("HTTP://Example.com:8080", Origin("http", "example.com", 8080)),
        ("http://[::1]:8765", Origin("http", "[::1]", 8765)),
        ("http://127.0.0.1:80", Origin("http", "127.0.0.1", 80)),
    ],
)
def test_parse_origin(text: str, origin: Origin) -> None:
    assert parse_origin(text) == origin
    assert parse_origin(str(origin)) == origin


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("example.com", "expected an origin like https://example.com[:port]"),
        ("https://example.com/app", "expected an origin like"),
        ("https://example.com:99999", "port must be between 1 and 65535"),
        ("https://example.com:0", "port must be between 1 and 65535"),
        ("ftp://example.com", "scheme must be http or https"),
        ("ws://example.com", "scheme must be http or https"),
        ("https://", "expected an origin like"),
        ("", "expected an origin like"),
    ],
)
def test_parse_origin_refuses_what_isnt_one(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_origin(text)
    with pytest.raises(ValueError):
        OriginPolicy.from_strings([text])


def test_request_origin_uses_the_default_port_of_our_scheme() -> None:
    assert request_origin(request("example.com"), secure=True) == Origin(
        "https", "example.com", 443
    )
    assert str(request_origin(request("example.com:8765"), secure=False)) == (
        "http://example.com:8765"
    )
    assert request_origin(request("example.com:"), secure=False) == Origin(
        "http", "example.com", 80
    )
    assert request_origin(request(None), secure=False) is None
