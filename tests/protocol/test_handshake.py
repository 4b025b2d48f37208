"""The opening handshake: keys, header values, the server and client sides, and URIs."""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Sequence

import pytest

from openline.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
)
from openline.protocol.extensions.base import Extension, ExtensionParameter
from openline.protocol.frames import Frame
from openline.protocol.handshake import (
    ClientHandshake,
    Negotiated,
    ServerHandshake,
    ServerHandshakeResult,
    WebSocketURI,
    accept_key,
    build_extensions,
    build_subprotocols,
    generate_key,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_upgrade,
    parse_uri,
)
from openline.protocol.http11 import Headers, Request, Response, parse_request, parse_response

# RFC 6455, section 1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def crlf(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n"


CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)

# Requests as real clients send them (keys replaced by the RFC's example).
CLIENT_REQUESTS = {
    "chrome": crlf(f"""
GET /chat HTTP/1.1
Host: localhost:8000
Connection: Upgrade
Pragma: no-cache
Cache-Control: no-cache
User-Agent: {CHROME}
Upgrade: websocket
Origin: http://localhost:8000
Sec-WebSocket-Version: 13
Accept-Encoding: gzip, deflate, br, zstd
Accept-Language: en-US,en;q=0.9
Sec-WebSocket-Key: {KEY}
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
"""),
    "firefox": crlf(f"""
GET /chat HTTP/1.1
Host: localhost:8000
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0
Accept: */*
Accept-Language: en-US,en;q=0.5
Accept-Encoding: gzip, deflate, br
Sec-WebSocket-Version: 13
Origin: http://localhost:8000
Sec-WebSocket-Extensions: permessage-deflate
Sec-WebSocket-Key: {KEY}
Connection: keep-alive, Upgrade
Sec-Fetch-Dest: empty
Sec-Fetch-Mode: websocket
Sec-Fetch-Site: same-origin
Pragma: no-cache
Cache-Control: no-cache
Upgrade: websocket
"""),
    "safari": crlf(f"""
GET /chat HTTP/1.1
Host: localhost:8000
Sec-WebSocket-Key: {KEY}
Sec-WebSocket-Version: 13
Upgrade: websocket
Sec-WebSocket-Extensions: permessage-deflate
Origin: http://localhost:8000
Pragma: no-cache
Cache-Control: no-cache
Connection: Upgrade
User-Agent: {SAFARI}
Accept-Language: en-GB,en;q=0.9
Accept-Encoding: gzip, deflate
"""),
    "websockets": crlf(f"""
GET /chat HTTP/1.1
Host: localhost:8000
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: {KEY}
Sec-WebSocket-Version: 13
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
User-Agent: Python/3.12 websockets/13.0
"""),
    "curl": crlf(f"""
GET /chat HTTP/1.1
Host: localhost:8000
User-Agent: curl/8.11.1
Accept: */*
Upgrade: websocket
Sec-WebSocket-Version: 13
Sec-WebSocket-Key: {KEY}
Connection: Upgrade
"""),
    "node-ws": crlf(f"""
GET /chat HTTP/1.1
Sec-WebSocket-Version: 13
Sec-WebSocket-Key: {KEY}
Connection: Upgrade
Upgrade: websocket
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
Host: localhost:8000
"""),
    "old-capitalization": crlf(f"""
GET /chat HTTP/1.1
Host: [::1]:8000
Upgrade: WebSocket
Connection: upgrade
Sec-WebSocket-Key: {KEY}
Sec-WebSocket-Version: 13
"""),
}

# Responses as real servers send them, to the RFC's example key.
SERVER_RESPONSES = {
    "websockets": crlf(f"""
HTTP/1.1 101 Switching Protocols
Date: Mon, 01 Jan 2024 00:00:00 GMT
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Accept: {ACCEPT}
Server: Python/3.12 websockets/13.0
"""),
    "nginx": crlf(f"""
HTTP/1.1 101 Switching Protocols
Server: nginx/1.25.3
Date: Mon, 01 Jan 2024 00:00:00 GMT
Connection: upgrade
Upgrade: websocket
Sec-WebSocket-Accept: {ACCEPT}
"""),
    "node-ws": crlf(f"""
HTTP/1.1 101 Switching Protocols
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Accept: {ACCEPT}
"""),
}

VALID_HEADERS = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def make_request(*changes: tuple[str, str | None], method: str = "GET") -> Request:
    """A valid request, with headers replaced (a value) or removed (``None``)."""
    headers = Headers(VALID_HEADERS)
    for name, value in changes:
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    return Request("/chat", headers, method)


def make_response(*changes: tuple[str, str | None], status: int = 101) -> Response:
    headers = Headers(
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]
    )
    for name, value in changes:
        if value is None:
            del headers[name]
        else:
            headers.add(name, value)
    return Response(status, "Switching Protocols" if status == 101 else "Nope", headers)


def fixed_client(**kwargs: object) -> ClientHandshake:
    """A client that has sent a request with the RFC's example key."""
    client = ClientHandshake("example.com", 80, "/chat", secure=False, **kwargs)  # type: ignore[arg-type]  # test helper
    client.build_request()
    client.key = KEY
    return client


# --- a fake extension -------------------------------------------------------------------


@dataclasses.dataclass
class FakeExtension:
    name: str
    params: list[ExtensionParameter]
    accepted_before: list[str]

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return frame

    def encode(self, frame: Frame) -> Frame:
        return frame


class FakeServerFactory:
    """Accepts an offer unless it has a ``refuse`` parameter; answers with the same params."""

    def __init__(self, name: str = "x-fake") -> None:
        self.name = name

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        if any(name == "refuse" for name, _ in params):
            raise NegotiationError("refused")
        before = [extension.name for extension in accepted]
        return list(params), FakeExtension(self.name, list(params), before)


class FakeClientFactory:
    """Offers ``offer``; accepts an answer unless it has a ``refuse`` parameter."""

    def __init__(self, name: str = "x-fake", offer: list[ExtensionParameter] | None = None):
        self.name = name
        self.offer = offer or []

    def get_request_params(self) -> list[ExtensionParameter]:
        return list(self.offer)

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        if any(name == "refuse" for name, _ in params):
            raise NegotiationError(f"{self.name} refused")
        return FakeExtension(self.name, list(params), [ext.name for ext in accepted])


# --- keys -------------------------------------------------------------------------------


def test_accept_key_matches_the_rfc_example() -> None:
    assert accept_key(KEY) == ACCEPT


def test_generate_key_returns_16_random_bytes_in_base64() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


# --- header values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        (parse_connection, "Upgrade", ["Upgrade"]),
        (parse_connection, "keep-alive, Upgrade", ["keep-alive", "Upgrade"]),
        (parse_connection, " ,\tkeep-alive ,, Upgrade,", ["keep-alive", "Upgrade"]),
        (parse_connection, "", []),
        (parse_connection, " , ", []),
        (parse_upgrade, "websocket", ["websocket"]),
        (parse_upgrade, "h2c, websocket", ["h2c", "websocket"]),
        (
            parse_upgrade,
            "HTTP/2.0, SHTTP/1.3, IRC/6.9, RTA/x11",
            ["HTTP/2.0", "SHTTP/1.3", "IRC/6.9", "RTA/x11"],
        ),
        (parse_subprotocols, "chat, superchat", ["chat", "superchat"]),
        (parse_subprotocols, "openline.v1", ["openline.v1"]),
    ],
)
def test_list_parsers_accept_rfc_9110_lists(parse: object, value: str, expected: list[str]) -> None:
    assert parse(value) == expected  # type: ignore[operator]  # parametrised callable


@pytest.mark.parametrize(
    ("parse", "name", "value"),
    [
        (parse_connection, "Connection", "keep alive"),
        (parse_connection, "Connection", "Upgrade;"),
        (parse_connection, "Connection", '"Upgrade"'),
        (parse_upgrade, "Upgrade", "websocket/"),
        (parse_upgrade, "Upgrade", "/13"),
        (parse_upgrade, "Upgrade", "websocket/13/1"),
        (parse_subprotocols, "Sec-WebSocket-Protocol", "chat superchat"),
        (parse_subprotocols, "Sec-WebSocket-Protocol", "ch@t"),
    ],
)
def test_list_parsers_reject_malformed_values(parse: object, name: str, value: str) -> None:
    with pytest.raises(InvalidHeaderValue) as info:
        parse(value)  # type: ignore[operator]  # parametrised callable
    assert (info.value.name, info.value.value) == (name, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("permessage-deflate", [("permessage-deflate", [])]),
        (
            "permessage-deflate; client_max_window_bits",
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
            [
                (
                    "permessage-deflate",
                    [("client_max_window_bits", "10"), ("server_no_context_takeover", None)],
                )
            ],
        ),
        ('foo; a="10", bar', [("foo", [("a", "10")]), ("bar", [])]),
        ('foo; a="1\\0"', [("foo", [("a", "10")])]),
        ("foo ;\ta = 1 ; b , ,bar", [("foo", [("a", "1"), ("b", None)]), ("bar", [])]),
        ("", []),
        (
            "permessage-deflate; client_max_window_bits, permessage-deflate",
            [
                ("permessage-deflate", [("client_max_window_bits", None)]),
                ("permessage-deflate", []),
            ],
        ),
    ],
)
def test_parse_extensions_accepts_rfc_6455_syntax(
    value: str, expected: list[tuple[str, list[ExtensionParameter]]]
) -> None:
    assert parse_extensions(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "foo;",
        "foo; =1",
        "foo; a=",
        "foo; a==1",
        'foo; a="1 0"',
        'foo; a=""',
        'foo; a="10',
        "foo; a=1 2",
        "foo bar",
        ";a",
        "foo; a=@",
    ],
)
def test_parse_extensions_rejects_malformed_values(value: str) -> None:
    with pytest.raises(InvalidHeaderValue) as info:
        parse_extensions(value)
    assert (info.value.name, info.value.value) == ("Sec-WebSocket-Extensions", value)


def test_build_extensions_is_the_inverse_of_parse_extensions() -> None:
    extensions: list[tuple[str, list[ExtensionParameter]]] = [
        (
            "permessage-deflate",
            [("client_max_window_bits", "10"), ("server_no_context_takeover", None)],
        ),
        ("x-fake", []),
    ]
    value = build_extensions(extensions)
    assert value == (
        "permessage-deflate; client_max_window_bits=10; server_no_context_takeover, x-fake"
    )
    assert parse_extensions(value) == extensions


def test_build_subprotocols_is_the_inverse_of_parse_subprotocols() -> None:
    assert build_subprotocols(["chat", "openline.v1"]) == "chat, openline.v1"
    assert parse_subprotocols(build_subprotocols(["chat", "openline.v1"])) == [
        "chat",
        "openline.v1",
    ]


@pytest.mark.parametrize(
    "extensions",
    [[("bad name", [])], [("foo", [("bad name", None)])], [("foo", [("a", "1 0")])]],
)
def test_build_extensions_rejects_non_tokens(
    extensions: list[tuple[str, list[ExtensionParameter]]],
) -> None:
    with pytest.raises(ValueError, match="isn't a token"):
        build_extensions(extensions)


def test_build_subprotocols_rejects_non_tokens() -> None:
    with pytest.raises(ValueError, match="subprotocol isn't a token"):
        build_subprotocols(["chat", "super chat"])


# --- server: accepting ------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENT_REQUESTS)
def test_server_accepts_requests_from_real_clients(client: str) -> None:
    data = CLIENT_REQUESTS[client]
    parsed = parse_request(data + b"\x81\x80")
    assert parsed is not None
    request, size = parsed
    assert size == len(data)
    result = ServerHandshake().process_request(request)
    assert result.error is None
    assert result.accepted
    assert result.negotiated == Negotiated(None, ())
    assert result.response.status == 101
    assert result.response.headers["Sec-WebSocket-Accept"] == ACCEPT


def test_server_answers_101_with_exactly_the_handshake_headers() -> None:
    result = ServerHandshake().process_request(make_request())
    assert result.response.serialize() == crlf(f"""
HTTP/1.1 101 Switching Protocols
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Accept: {ACCEPT}
Server: openline/0.1
""")


def test_server_omits_the_server_header_given_none() -> None:
    result = ServerHandshake(server_header=None).process_request(make_request())
    assert "Server" not in result.response.headers
    rejection = ServerHandshake(server_header=None).process_request(make_request(("Host", None)))
    assert "Server" not in rejection.response.headers


def test_server_sends_a_custom_server_header() -> None:
    result = ServerHandshake(server_header="demo/1").process_request(make_request())
    assert result.response.headers["Server"] == "demo/1"


# --- server: rejecting ------------------------------------------------------------------


@dataclasses.dataclass
class Rejection:
    request: Request
    status: int
    error: type[InvalidHandshake]
    message: str
    headers: tuple[tuple[str, str], ...] = ()


REJECTIONS = {
    "post": Rejection(
        make_request(method="POST"),
        405,
        InvalidMessage,
        "unsupported HTTP method: POST; expected GET",
        (("Allow", "GET"),),
    ),
    "missing host": Rejection(
        make_request(("Host", None)), 400, InvalidHeader, "missing Host header"
    ),
    "repeated host": Rejection(
        Request("/", Headers([*VALID_HEADERS, ("Host", "other.com")])),
        400,
        InvalidHeader,
        "invalid Host header: example.com, other.com",
    ),
    "empty host": Rejection(make_request(("Host", "")), 400, InvalidHeader, "empty Host header"),
    "host with a path": Rejection(
        make_request(("Host", "a.com/b")), 400, InvalidHeader, "invalid Host header: a.com/b"
    ),
    "plain http get": Rejection(
        make_request(("Upgrade", None), ("Connection", None)),
        426,
        InvalidUpgrade,
        "missing Upgrade header",
        (("Upgrade", "websocket"), ("Connection", "Upgrade, close")),
    ),
    "upgrade to h2c": Rejection(
        make_request(("Upgrade", "h2c")), 426, InvalidUpgrade, "invalid Upgrade header: h2c"
    ),
    "upgrade with a version": Rejection(
        make_request(("Upgrade", "websocket/13")),
        426,
        InvalidUpgrade,
        "invalid Upgrade header: websocket/13",
    ),
    "malformed upgrade": Rejection(
        make_request(("Upgrade", "web socket")),
        426,
        InvalidUpgrade,
        "invalid Upgrade header: web socket",
    ),
    "missing connection": Rejection(
        make_request(("Connection", None)), 426, InvalidUpgrade, "missing Connection header"
    ),
    "connection keep-alive": Rejection(
        make_request(("Connection", "keep-alive")),
        426,
        InvalidUpgrade,
        "invalid Connection header: keep-alive",
    ),
    "connection upgrade as substring": Rejection(
        make_request(("Connection", "upgrade-insecure")),
        426,
        InvalidUpgrade,
        "invalid Connection header: upgrade-insecure",
    ),
    "missing key": Rejection(
        make_request(("Sec-WebSocket-Key", None)),
        400,
        InvalidHeader,
        "missing Sec-WebSocket-Key header",
    ),
    "repeated key": Rejection(
        Request("/", Headers([*VALID_HEADERS, ("Sec-WebSocket-Key", KEY)])),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "key of 15 bytes": Rejection(
        make_request(("Sec-WebSocket-Key", base64.b64encode(b"x" * 15).decode())),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "key of 17 bytes": Rejection(
        make_request(("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode())),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "key not in base64": Rejection(
        make_request(("Sec-WebSocket-Key", "not base64 at all!!!!!!!")),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "key without padding": Rejection(
        make_request(("Sec-WebSocket-Key", KEY.rstrip("="))),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "key with stray trailing bits": Rejection(
        make_request(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR==")),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "key with non-ascii": Rejection(
        make_request(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ\u00e9==")),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header",
    ),
    "missing version": Rejection(
        make_request(("Sec-WebSocket-Version", None)),
        400,
        InvalidHeader,
        "missing Sec-WebSocket-Version header",
    ),
    "repeated version": Rejection(
        Request("/", Headers([*VALID_HEADERS, ("Sec-WebSocket-Version", "13")])),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Version header: 13, 13",
    ),
    "version 8": Rejection(
        make_request(("Sec-WebSocket-Version", "8")),
        426,
        InvalidHeader,
        "invalid Sec-WebSocket-Version header: 8",
        (
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade, close"),
            ("Sec-WebSocket-Version", "13"),
        ),
    ),
    "version list": Rejection(
        make_request(("Sec-WebSocket-Version", "13, 8")),
        426,
        InvalidHeader,
        "invalid Sec-WebSocket-Version header: 13, 8",
        (
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade, close"),
            ("Sec-WebSocket-Version", "13"),
        ),
    ),
    "malformed subprotocols": Rejection(
        make_request(("Sec-WebSocket-Protocol", "chat superchat")),
        400,
        InvalidHeaderValue,
        "invalid Sec-WebSocket-Protocol header: chat superchat",
    ),
    "malformed extensions": Rejection(
        make_request(("Sec-WebSocket-Extensions", "foo;")),
        400,
        InvalidHeaderValue,
        "invalid Sec-WebSocket-Extensions header: foo;",
    ),
}


@pytest.mark.parametrize("case", REJECTIONS)
def test_server_rejects_invalid_requests(case: str) -> None:
    rejection = REJECTIONS[case]
    result = ServerHandshake().process_request(rejection.request)
    assert not result.accepted
    assert result.negotiated is None
    assert type(result.error) is rejection.error
    assert str(result.error).startswith(rejection.message)
    response = result.response
    assert response.status == rejection.status
    assert response.body == f"failed to open a websocket connection: {result.error}\n".encode()
    for name, value in rejection.headers:
        assert response.headers[name] == value
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["Server"] == "openline/0.1"
    assert response.headers["Connection"].endswith("close")


def test_server_keeps_the_cause_of_a_malformed_upgrade() -> None:
    result = ServerHandshake().process_request(make_request(("Upgrade", "web socket")))
    assert isinstance(result.error, InvalidUpgrade)
    assert isinstance(result.error.__cause__, InvalidHeaderValue)


def test_server_rejects_a_repeated_header_with_the_count_as_cause() -> None:
    request = Request("/", Headers([*VALID_HEADERS, ("Host", "other.com")]))
    result = ServerHandshake().process_request(request)
    assert result.error is not None
    assert str(result.error.__cause__) == "Host header appears 2 times; expected once"


def test_server_reject_builds_a_plain_response_with_the_server_header() -> None:
    response = ServerHandshake().reject(503, "shutting down\n", {"Retry-After": "5"})
    assert (response.status, response.reason, response.body) == (
        503,
        "Service Unavailable",
        b"shutting down\n",
    )
    assert response.headers.raw_items()[:2] == [("Retry-After", "5"), ("Server", "openline/0.1")]


def test_server_handshake_result_defaults_to_a_failure_without_negotiation() -> None:
    result = ServerHandshakeResult(Response.plain(400, "x"))
    assert (result.negotiated, result.error, result.accepted) == (None, None, False)


# --- server: origins --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origins", "origin", "accepted"),
    [
        (None, "https://evil.example", True),
        (None, None, True),
        (["https://app.example"], "https://app.example", True),
        (["https://app.example"], "https://evil.example", False),
        (["https://app.example"], "https://APP.example", False),
        (["https://app.example"], None, False),
        (["https://app.example", None], None, True),
        ([], "https://app.example", False),
        (["null"], "null", True),
    ],
)
def test_server_checks_origin_against_the_allowlist(
    origins: list[str | None] | None, origin: str | None, accepted: bool
) -> None:
    request = make_request(("Origin", origin)) if origin else make_request()
    result = ServerHandshake(origins=origins).process_request(request)
    assert result.accepted is accepted
    if not accepted:
        assert result.response.status == 403
        assert isinstance(result.error, InvalidOrigin)
        assert result.error.value == origin


def test_server_rejects_a_repeated_origin_with_400() -> None:
    headers = Headers([*VALID_HEADERS, ("Origin", "https://a"), ("Origin", "https://a")])
    result = ServerHandshake(origins=["https://a"]).process_request(Request("/", headers))
    assert result.response.status == 400
    assert str(result.error) == "invalid Origin header: https://a, https://a"


# --- server: subprotocols ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "offers", "chosen"),
    [
        (["chat", "superchat"], "superchat, chat", "chat"),
        (["superchat", "chat"], "chat, superchat", "superchat"),
        (["chat"], "superchat, chat", "chat"),
        (["chat"], "superchat", None),
        (["chat"], None, None),
        (["chat"], ", ,", None),
        (None, "chat", None),
        (["chat"], "Chat", None),
    ],
)
def test_server_picks_its_most_preferred_subprotocol_that_the_client_offers(
    server: list[str] | None, offers: str | None, chosen: str | None
) -> None:
    request = make_request(("Sec-WebSocket-Protocol", offers)) if offers else make_request()
    result = ServerHandshake(subprotocols=server).process_request(request)
    assert result.negotiated is not None
    assert result.negotiated.subprotocol == chosen
    assert result.response.headers.get("Sec-WebSocket-Protocol") == chosen


def test_server_reads_subprotocols_offered_over_several_header_lines() -> None:
    headers = Headers(
        [*VALID_HEADERS, ("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b")]
    )
    result = ServerHandshake(subprotocols=["b"]).process_request(Request("/", headers))
    assert result.negotiated == Negotiated("b", ())


def test_server_lets_select_subprotocol_choose_among_the_offers() -> None:
    seen: list[Sequence[str]] = []

    def select(offers: Sequence[str]) -> str | None:
        seen.append(offers)
        return offers[-1]

    server = ServerHandshake(subprotocols=["a"], select_subprotocol=select)
    result = server.process_request(make_request(("Sec-WebSocket-Protocol", "a, b")))
    assert seen == [["a", "b"]]
    assert result.negotiated == Negotiated("b", ())


def test_server_accepts_select_subprotocol_choosing_none() -> None:
    server = ServerHandshake(select_subprotocol=lambda offers: None)
    result = server.process_request(make_request(("Sec-WebSocket-Protocol", "a")))
    assert result.negotiated == Negotiated(None, ())
    assert "Sec-WebSocket-Protocol" not in result.response.headers


def test_server_does_not_call_select_subprotocol_without_offers() -> None:
    def select(offers: Sequence[str]) -> str | None:
        raise AssertionError("called")

    result = ServerHandshake(select_subprotocol=select).process_request(make_request())
    assert result.accepted


def test_server_refuses_select_subprotocol_choosing_what_wasnt_offered() -> None:
    server = ServerHandshake(select_subprotocol=lambda offers: "other")
    with pytest.raises(ValueError, match="select_subprotocol returned 'other'"):
        server.process_request(make_request(("Sec-WebSocket-Protocol", "a")))


# --- server: extensions -----------------------------------------------------------------


def negotiate(offers: str | list[str], *factories: FakeServerFactory) -> ServerHandshakeResult:
    values = [offers] if isinstance(offers, str) else offers
    headers = Headers(VALID_HEADERS)
    for value in values:
        headers.add("Sec-WebSocket-Extensions", value)
    return ServerHandshake(extensions=factories).process_request(Request("/", headers))


def test_server_accepts_an_offered_extension_with_its_parameters() -> None:
    result = negotiate("x-fake; a=1; b", FakeServerFactory())
    assert result.negotiated is not None
    assert result.negotiated.extensions == (FakeExtension("x-fake", [("a", "1"), ("b", None)], []),)
    assert result.response.headers["Sec-WebSocket-Extensions"] == "x-fake; a=1; b"


def test_server_skips_an_offer_its_factory_refuses_and_tries_the_next_one() -> None:
    result = negotiate("x-fake; refuse, x-fake; a=2, x-fake; a=3", FakeServerFactory())
    assert result.negotiated is not None
    assert result.negotiated.extensions == (FakeExtension("x-fake", [("a", "2")], []),)
    assert result.response.headers["Sec-WebSocket-Extensions"] == "x-fake; a=2"


def test_server_goes_on_without_an_extension_when_every_offer_is_refused() -> None:
    result = negotiate("x-fake; refuse", FakeServerFactory())
    assert result.negotiated == Negotiated(None, ())
    assert "Sec-WebSocket-Extensions" not in result.response.headers


def test_server_ignores_extensions_it_does_not_support() -> None:
    result = negotiate(["x-unknown, x-fake", "permessage-deflate"], FakeServerFactory())
    assert result.negotiated is not None
    assert [ext.name for ext in result.negotiated.extensions] == ["x-fake"]


def test_server_follows_the_clients_order_and_passes_earlier_extensions() -> None:
    result = negotiate("x-two, x-one", FakeServerFactory("x-one"), FakeServerFactory("x-two"))
    assert result.negotiated is not None
    assert result.negotiated.extensions == (
        FakeExtension("x-two", [], []),
        FakeExtension("x-one", [], ["x-two"]),
    )
    assert result.response.headers["Sec-WebSocket-Extensions"] == "x-two, x-one"


def test_server_uses_the_first_factory_for_a_name() -> None:
    class Other(FakeServerFactory):
        def process_request_params(
            self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
        ) -> tuple[list[ExtensionParameter], Extension]:
            raise AssertionError("the first factory for a name wins")

    result = negotiate("x-fake", FakeServerFactory(), Other())
    assert result.accepted


def test_server_without_factories_accepts_no_extension() -> None:
    result = negotiate("x-fake")
    assert result.negotiated == Negotiated(None, ())


# --- server: configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subprotocols": ["bad name"]}, "subprotocol isn't a token"),
        ({"extensions": [FakeServerFactory("bad name")]}, "extension name isn't a token"),
        ({"server_header": "a\r\nb"}, "invalid server_header"),
    ],
)
def test_server_rejects_invalid_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerHandshake(**kwargs)  # type: ignore[arg-type]  # parametrised


# --- client: request --------------------------------------------------------------------


def test_client_builds_the_request_with_the_handshake_headers() -> None:
    client = ClientHandshake("example.com", 80, "/chat?room=1", secure=False)
    request = client.build_request()
    assert client.key is not None
    assert request.serialize() == crlf(f"""
GET /chat?room=1 HTTP/1.1
Host: example.com
Upgrade: websocket
Connection: Upgrade
Sec-WebSocket-Key: {client.key}
Sec-WebSocket-Version: 13
User-Agent: openline/0.1
""")


def test_client_uses_a_fresh_key_for_every_request() -> None:
    client = ClientHandshake("example.com", 80, secure=False)
    first = client.build_request().headers["Sec-WebSocket-Key"]
    second = client.build_request().headers["Sec-WebSocket-Key"]
    assert first != second
    assert client.key == second


@pytest.mark.parametrize(
    ("host", "port", "secure", "expected"),
    [
        ("example.com", 80, False, "example.com"),
        ("example.com", 443, True, "example.com"),
        ("example.com", 443, False, "example.com:443"),
        ("example.com", 80, True, "example.com:80"),
        ("example.com", 8080, False, "example.com:8080"),
        ("127.0.0.1", 8000, False, "127.0.0.1:8000"),
        ("::1", 8000, False, "[::1]:8000"),
        ("::1", 443, True, "[::1]"),
        ("[::1]", 443, True, "[::1]"),
    ],
)
def test_client_host_header_omits_the_default_port_and_brackets_ipv6(
    host: str, port: int, secure: bool, expected: str
) -> None:
    client = ClientHandshake(host, port, secure=secure)
    assert client.build_request().headers["Host"] == expected


def test_client_offers_subprotocols_extensions_and_origin() -> None:
    client = ClientHandshake(
        "example.com",
        80,
        secure=False,
        subprotocols=["chat", "superchat"],
        extensions=[FakeClientFactory("x-one", [("a", "1")]), FakeClientFactory("x-two")],
        origin="https://app.example",
        user_agent=None,
    )
    headers = client.build_request().headers
    assert headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert headers["Sec-WebSocket-Extensions"] == "x-one; a=1, x-two"
    assert headers["Origin"] == "https://app.example"
    assert "User-Agent" not in headers


@pytest.mark.parametrize(
    "extra",
    [
        {"Authorization": "Bearer t", "X-A": "1"},
        [("Authorization", "Bearer t"), ("X-A", "1")],
        Headers([("Authorization", "Bearer t"), ("X-A", "1")]),
    ],
)
def test_client_appends_extra_headers(extra: object) -> None:
    client = ClientHandshake("example.com", 80, secure=False, extra_headers=extra)  # type: ignore[arg-type]  # parametrised
    headers = client.build_request().headers
    assert headers.raw_items()[-3:] == [
        ("User-Agent", "openline/0.1"),
        ("Authorization", "Bearer t"),
        ("X-A", "1"),
    ]


def test_client_lets_extra_headers_replace_host_origin_and_user_agent() -> None:
    extra = [("Host", "virtual.example"), ("Origin", "https://b"), ("User-Agent", "bot/2")]
    client = ClientHandshake("10.0.0.1", 80, secure=False, origin="https://a", extra_headers=extra)
    headers = client.build_request().headers
    assert headers.get_all("Host") == ["virtual.example"]
    assert headers.get_all("Origin") == ["https://b"]
    assert headers.get_all("User-Agent") == ["bot/2"]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("example.com", 0), {}, "port must be between 1 and 65535"),
        (("example.com", 65536), {}, "port must be between 1 and 65535"),
        (("example.com", 80, "chat"), {}, "path must start with /"),
        (("example.com", 80, "/a b"), {}, "path must start with /"),
        (("exa mple.com", 80), {}, "invalid host"),
        (("", 80), {}, "invalid host"),
        (("example.com", 80), {"subprotocols": ["a b"]}, "subprotocol isn't a token"),
        (
            ("example.com", 80),
            {"extensions": [FakeClientFactory("a b")]},
            "extension name isn't a token",
        ),
        (("example.com", 80), {"origin": "https://a\r\nX: y"}, "invalid origin"),
        (("example.com", 80), {"user_agent": "a\nb"}, "invalid user_agent"),
        (("example.com", 80), {"extra_headers": {"X A": "1"}}, "invalid extra_headers"),
        (
            ("example.com", 80),
            {"extra_headers": {"Sec-WebSocket-Key": KEY}},
            "extra_headers may not set sec-websocket-key",
        ),
        (
            ("example.com", 80),
            {"extra_headers": [("connection", "close")]},
            "extra_headers may not set connection",
        ),
    ],
)
def test_client_rejects_invalid_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ClientHandshake(*args, secure=False, **kwargs)  # type: ignore[arg-type]  # parametrised


# --- client: response -------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVER_RESPONSES)
def test_client_accepts_responses_from_real_servers(server: str) -> None:
    data = SERVER_RESPONSES[server]
    parsed = parse_response(data + b"\x81\x00")
    assert parsed is not None
    response, size = parsed
    assert size == len(data)
    assert fixed_client().process_response(response) == Negotiated(None, ())


@pytest.mark.parametrize("status", [200, 301, 302, 400, 401, 403, 404, 426, 500, 503])
def test_client_raises_invalid_status_for_anything_but_101(status: int) -> None:
    response = Response.plain(status, "no")
    with pytest.raises(InvalidStatus) as info:
        fixed_client().process_response(response)
    assert info.value.status == status
    assert info.value.response is response


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ((("Upgrade", None),), "missing Upgrade header"),
        ((("Connection", None),), "missing Connection header"),
        ((("Upgrade", None), ("Upgrade", "h2c")), "invalid Upgrade header: h2c"),
        ((("Upgrade", "h2c"),), "invalid Upgrade header: websocket, h2c"),
        ((("Upgrade", None), ("Upgrade", "websocket/13")), "invalid Upgrade header"),
        ((("Upgrade", None), ("Upgrade", "web socket")), "invalid Upgrade header"),
        ((("Connection", None), ("Connection", "keep-alive")), "invalid Connection header"),
        ((("Connection", None), ("Connection", "up grade")), "invalid Connection header"),
    ],
)
def test_client_raises_invalid_upgrade_for_bad_upgrade_or_connection(
    changes: tuple[tuple[str, str | None], ...], message: str
) -> None:
    with pytest.raises(InvalidUpgrade, match=message):
        fixed_client().process_response(make_response(*changes))


def test_client_accepts_upgrade_and_connection_in_any_case() -> None:
    response = make_response(
        ("Upgrade", None),
        ("Connection", None),
        ("Upgrade", "WebSocket"),
        ("Connection", "keep-alive, UPGRADE"),
    )
    assert fixed_client().process_response(response) == Negotiated(None, ())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ((("Sec-WebSocket-Accept", None),), "missing Sec-WebSocket-Accept header"),
        (
            (("Sec-WebSocket-Accept", None), ("Sec-WebSocket-Accept", KEY)),
            f"invalid Sec-WebSocket-Accept header: {KEY}",
        ),
        (
            (("Sec-WebSocket-Accept", ACCEPT),),
            f"invalid Sec-WebSocket-Accept header: {ACCEPT}, {ACCEPT}",
        ),
    ],
)
def test_client_raises_invalid_header_for_a_wrong_accept(
    changes: tuple[tuple[str, str | None], ...], message: str
) -> None:
    with pytest.raises(InvalidHeader, match=re.escape(message)) as info:
        fixed_client().process_response(make_response(*changes))
    assert info.value.name == "Sec-WebSocket-Accept"


def test_client_checks_accept_against_the_last_key() -> None:
    client = ClientHandshake("example.com", 80, secure=False)
    client.build_request()
    with pytest.raises(InvalidHeader, match="Sec-WebSocket-Accept"):
        client.process_response(make_response())


def test_client_refuses_a_response_before_sending_a_request() -> None:
    client = ClientHandshake("example.com", 80, secure=False)
    with pytest.raises(InvalidState):
        client.process_response(make_response())


@pytest.mark.parametrize(
    ("offered", "answer", "chosen"),
    [
        (["chat"], "chat", "chat"),
        (["chat", "superchat"], "superchat", "superchat"),
        (["chat"], None, None),
        (None, None, None),
    ],
)
def test_client_accepts_the_subprotocol_it_offered(
    offered: list[str] | None, answer: str | None, chosen: str | None
) -> None:
    changes = [("Sec-WebSocket-Protocol", answer)] if answer else []
    client = fixed_client(subprotocols=offered)
    assert client.process_response(make_response(*changes)).subprotocol == chosen


@pytest.mark.parametrize(
    ("offered", "answers", "error", "message"),
    [
        (["chat"], ["superchat"], NegotiationError, "subprotocol that wasn't offered: superchat"),
        (None, ["chat"], NegotiationError, "subprotocol that wasn't offered: chat"),
        (["chat"], ["Chat"], NegotiationError, "subprotocol that wasn't offered: Chat"),
        (["a", "b"], ["a, b"], NegotiationError, "several subprotocols: a, b"),
        (["a", "b"], ["a", "b"], NegotiationError, "several subprotocols: a, b"),
        (["a"], ["a b"], InvalidHeaderValue, "invalid Sec-WebSocket-Protocol header"),
    ],
)
def test_client_rejects_a_subprotocol_it_did_not_offer(
    offered: list[str] | None, answers: list[str], error: type[Exception], message: str
) -> None:
    response = make_response(*[("Sec-WebSocket-Protocol", answer) for answer in answers])
    with pytest.raises(error, match=message):
        fixed_client(subprotocols=offered).process_response(response)


def test_client_accepts_extensions_in_the_servers_order() -> None:
    client = fixed_client(extensions=[FakeClientFactory("x-one"), FakeClientFactory("x-two")])
    response = make_response(("Sec-WebSocket-Extensions", "x-two; a=1, x-one"))
    negotiated = client.process_response(response)
    assert negotiated.extensions == (
        FakeExtension("x-two", [("a", "1")], []),
        FakeExtension("x-one", [], ["x-two"]),
    )


def test_client_tries_every_factory_offered_under_one_name() -> None:
    class Strict(FakeClientFactory):
        def process_response_params(
            self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
        ) -> Extension:
            raise NegotiationError("strict refused")

    client = fixed_client(extensions=[Strict("x-fake"), FakeClientFactory("x-fake")])
    negotiated = client.process_response(make_response(("Sec-WebSocket-Extensions", "x-fake")))
    assert negotiated.extensions == (FakeExtension("x-fake", [], []),)


@pytest.mark.parametrize(
    ("factories", "answer", "error", "message"),
    [
        ([], "x-fake", NegotiationError, "extension that wasn't offered: x-fake"),
        ([FakeClientFactory()], "x-other", NegotiationError, "wasn't offered: x-other"),
        ([FakeClientFactory()], "x-fake, x-fake", NegotiationError, "x-fake twice"),
        ([FakeClientFactory()], "x-fake; refuse", NegotiationError, "x-fake refused"),
        (
            [FakeClientFactory(), FakeClientFactory()],
            "x-fake; refuse",
            NegotiationError,
            "x-fake refused",
        ),
        ([FakeClientFactory()], "x-fake;", InvalidHeaderValue, "Sec-WebSocket-Extensions"),
    ],
)
def test_client_rejects_extensions_it_did_not_offer_or_cannot_accept(
    factories: list[FakeClientFactory], answer: str, error: type[Exception], message: str
) -> None:
    client = fixed_client(extensions=factories)
    with pytest.raises(error, match=message):
        client.process_response(make_response(("Sec-WebSocket-Extensions", answer)))


# --- both sides -------------------------------------------------------------------------


def test_client_and_server_negotiate_over_the_wire() -> None:
    client = ClientHandshake(
        "::1",
        8443,
        "/hub",
        secure=True,
        subprotocols=["openline.v1", "chat"],
        extensions=[FakeClientFactory("x-fake", [("refuse", None)]), FakeClientFactory("x-fake")],
        origin="https://app.example",
    )
    server = ServerHandshake(
        subprotocols=["chat", "openline.v1"],
        extensions=[FakeServerFactory()],
        origins=["https://app.example"],
    )
    parsed_request = parse_request(client.build_request().serialize())
    assert parsed_request is not None
    result = server.process_request(parsed_request[0])
    parsed_response = parse_response(result.response.serialize())
    assert parsed_response is not None
    negotiated = client.process_response(parsed_response[0])
    expected = Negotiated("chat", (FakeExtension("x-fake", [], []),))
    assert negotiated == result.negotiated == expected


def test_client_sees_the_servers_rejection_as_invalid_status() -> None:
    client = ClientHandshake("example.com", 80, secure=False)
    server = ServerHandshake(origins=["https://app.example"])
    result = server.process_request(client.build_request())
    parsed = parse_response(result.response.serialize())
    assert parsed is not None
    with pytest.raises(InvalidStatus, match="HTTP 403"):
        client.process_response(parsed[0])


# --- URIs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://example.com", WebSocketURI(False, "example.com", 80, "/")),
        ("wss://example.com", WebSocketURI(True, "example.com", 443, "/")),
        ("WS://Example.COM:8080/chat", WebSocketURI(False, "example.com", 8080, "/chat")),
        ("wss://example.com:443/a?b=1&c", WebSocketURI(True, "example.com", 443, "/a?b=1&c")),
        ("ws://example.com?x=1", WebSocketURI(False, "example.com", 80, "/?x=1")),
        ("ws://example.com:/", WebSocketURI(False, "example.com", 80, "/")),
        ("ws://[::1]:8000/", WebSocketURI(False, "::1", 8000, "/")),
        ("ws://127.0.0.1/", WebSocketURI(False, "127.0.0.1", 80, "/")),
        ("ws://example.com/caf\u00e9", WebSocketURI(False, "example.com", 80, "/caf%C3%A9")),
        ("ws://example.com/a%20b", WebSocketURI(False, "example.com", 80, "/a%20b")),
        ("ws://b\u00fccher.example/", WebSocketURI(False, "xn--bcher-kva.example", 80, "/")),
        (
            "wss://user:p%40ss@example.com/",
            WebSocketURI(True, "example.com", 443, "/", ("user", "p@ss")),
        ),
        ("wss://user@example.com/", WebSocketURI(True, "example.com", 443, "/", ("user", ""))),
    ],
)
def test_parse_uri_accepts_ws_and_wss_uris(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/", "scheme isn't ws or wss"),
        ("example.com", "scheme isn't ws or wss"),
        ("ws://example.com/#frag", "contains a fragment"),
        ("ws://example.com/#", "contains a fragment"),
        ("ws:///chat", "missing host"),
        ("ws://:80/", "missing host"),
        ("ws://example.com:99999/", "port out of range"),
        ("ws://example.com:http/", "port could not be cast"),
        ("ws://example.com:0/", "port 0 isn't allowed"),
        ("ws://[zz]/", "does not appear to be an ipv4 or ipv6 address"),
        ("ws://exa\tmple.com/", "contains whitespace or control characters"),
        ("ws://example.com/a b", "contains whitespace or control characters"),
        ("ws://example.com/\r\nX: y", "contains whitespace or control characters"),
        ("ws://a..b/", "invalid host name"),
        ("ws://" + "a" * 64 + ".com/", "invalid host name"),
        ("ws://exa<mple.com/", "invalid host name"),
    ],
)
def test_parse_uri_rejects_invalid_uris(uri: str, message: str) -> None:
    with pytest.raises(InvalidURI, match=message) as info:
        parse_uri(uri)
    assert info.value.uri == uri


# --- server: the serialized fast path ---------------------------------------------------


def _fast_path_servers() -> dict[str, ServerHandshake]:
    from openline.protocol.extensions.deflate import ServerPerMessageDeflateFactory

    return {
        "default": ServerHandshake(),
        "no server header": ServerHandshake(server_header=None),
        "deflate and subprotocols": ServerHandshake(
            subprotocols=["chat", "superchat"],
            extensions=[ServerPerMessageDeflateFactory()],
            origins=["http://localhost:8000", None],
        ),
        "picky": ServerHandshake(
            select_subprotocol=lambda offers: offers[-1], origins=["https://example.com"]
        ),
    }


def _parsed(raw: bytes) -> Request:
    parsed = parse_request(raw)
    assert parsed is not None
    return parsed[0]


FAST_PATH_REQUESTS = {
    **{f"client {name}": _parsed(raw) for name, raw in CLIENT_REQUESTS.items()},
    **{f"rejection {name}": case.request for name, case in REJECTIONS.items()},
    "subprotocols": make_request(("Sec-WebSocket-Protocol", "superchat, chat")),
    "connection keep-alive": make_request(("Connection", "keep-alive, Upgrade")),
    "connection lower case": make_request(("Connection", "upgrade")),
    "connection with spaces": make_request(("Connection", " Upgrade ,")),
    "upgrade with other protocols": make_request(("Upgrade", "h2c, WebSocket")),
}


@pytest.mark.parametrize("server", _fast_path_servers())
@pytest.mark.parametrize("case", FAST_PATH_REQUESTS)
def test_server_fast_path_sends_the_same_bytes_as_process_request(server: str, case: str) -> None:
    handshake = _fast_path_servers()[server]
    request = FAST_PATH_REQUESTS[case]
    result = handshake.process_request(request)
    head, negotiated, error = handshake.process_request_head(request)
    assert head == result.response.serialize()
    assert (negotiated is None) == (result.negotiated is None)
    if negotiated is not None and result.negotiated is not None:
        assert negotiated.subprotocol == result.negotiated.subprotocol
        assert [e.name for e in negotiated.extensions] == [
            e.name for e in result.negotiated.extensions
        ]
        if not negotiated.extensions:
            # What the I/O layer rebuilds while the connection is open.
            assert handshake.build_response_head(request, negotiated.subprotocol) == head
    assert type(error) is type(result.error)
    assert str(error) == str(result.error)


def _is_canonical_key(key: str) -> bool:
    # The definition: base64 of 16 bytes, in its canonical encoding.
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, ValueError):
        return False
    return len(raw) == 16 and base64.b64encode(raw).decode("ascii") == key


def test_key_check_matches_the_base64_definition() -> None:
    import random

    from openline.protocol.handshake.common import _is_valid_key

    rng = random.Random(6455)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    keys = ["", "=" * 24, KEY, KEY[:-1], KEY + "=", KEY.replace("Q==", "R=="), "é" * 24]
    for _ in range(2000):
        valid = base64.b64encode(rng.randbytes(16)).decode()
        keys.append(valid)
        position = rng.randrange(len(valid))
        keys.append(valid[:position] + rng.choice(alphabet + "-_ .é") + valid[position + 1 :])
        keys.append(valid[:21] + rng.choice(alphabet) + "==")
        keys.append("".join(rng.choice(alphabet) for _ in range(rng.choice((22, 23, 24, 25)))))
    for key in keys:
        assert _is_valid_key(key) == _is_canonical_key(key), key
