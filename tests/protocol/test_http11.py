"""HTTP/1.1 messages of the handshake: Headers, Request, Response and the incremental parsers.

Requests from real clients are in ``test_handshake.py``, which also runs them
through the server handshake.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openline.exceptions import InvalidMessage, OpenlineError, SecurityError
from openline.protocol.http11 import (
    MAX_SIZE,
    Headers,
    MultipleValuesError,
    Request,
    Response,
    parse_request,
    parse_response,
)

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)
RESPONSE_404 = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
)
FRAME = b"\x81\x05hello"

_R = TypeVar("_R")


def request_with(*lines: bytes, start: bytes = b"GET / HTTP/1.1") -> bytes:
    return b"\r\n".join([start, *lines, b"", b""])


def response_with(*lines: bytes, start: bytes = b"HTTP/1.1 101 Switching Protocols") -> bytes:
    return request_with(*lines, start=start)


def feed_in_chunks(
    parse: Callable[[bytearray], _R | None], data: bytes, cuts: list[int]
) -> _R | None:
    """Feed ``data`` to ``parse`` in a growing buffer, cut at ``cuts``; return the first result."""
    buf = bytearray()
    for start, end in itertools.pairwise([0, *sorted(cuts), len(data)]):
        buf += data[start:end]
        result = parse(buf)
        if result is not None:
            return result
    return None


# --- Headers ----------------------------------------------------------------------------


class TestHeaders:
    def test_lookup_is_case_insensitive(self) -> None:
        headers = Headers({"Sec-WebSocket-Key": "abc"})
        assert headers["sec-websocket-key"] == "abc"
        assert headers["SEC-WEBSOCKET-KEY"] == "abc"
        assert "sec-WEBSOCKET-key" in headers

    def test_missing_header_raises_key_error(self) -> None:
        with pytest.raises(KeyError):
            Headers()["Host"]

    def test_repeated_header_raises_multiple_values_error(self) -> None:
        headers = Headers([("Host", "a"), ("host", "b")])
        with pytest.raises(MultipleValuesError) as info:
            headers["HOST"]
        assert isinstance(info.value, KeyError)
        assert isinstance(info.value, OpenlineError)
        assert (info.value.name, info.value.count) == ("HOST", 2)
        assert str(info.value) == "HOST header appears 2 times; expected once"

    def test_get_returns_default_when_missing(self) -> None:
        headers = Headers({"Host": "a"})
        assert headers.get("Host") == "a"
        assert headers.get("Origin") is None
        assert headers.get("Origin", "none") == "none"

    def test_get_refuses_to_pick_one_of_repeated_values(self) -> None:
        with pytest.raises(MultipleValuesError):
            Headers([("Host", "a"), ("Host", "b")]).get("Host", "default")

    def test_get_all_returns_values_in_order(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        assert headers.get_all("A") == ["1", "3"]
        assert headers.get_all("C") == []

    def test_get_all_returns_a_copy(self) -> None:
        headers = Headers({"A": "1"})
        headers.get_all("A").append("2")
        assert headers.get_all("A") == ["1"]

    def test_contains_is_false_for_non_strings(self) -> None:
        assert 1 not in Headers({"1": "x"})

    def test_iteration_yields_each_name_once_lower_cased(self) -> None:
        headers = Headers([("Host", "a"), ("X-A", "1"), ("x-a", "2")])
        assert list(headers) == ["host", "x-a"]
        assert len(headers) == 2

    def test_add_appends_a_field(self) -> None:
        headers = Headers({"X-A": "1"})
        headers.add("x-a", "2")
        assert headers.raw_items() == [("X-A", "1"), ("x-a", "2")]

    def test_setitem_replaces_every_field_in_place_of_the_first(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
        headers["A"] = "new"
        assert headers.raw_items() == [("A", "new"), ("B", "2"), ("C", "4")]
        assert headers["a"] == "new"

    def test_setitem_appends_a_new_name(self) -> None:
        headers = Headers({"A": "1"})
        headers["B"] = "2"
        assert headers.raw_items() == [("A", "1"), ("B", "2")]

    def test_delitem_removes_every_field(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        del headers["a"]
        assert headers.raw_items() == [("B", "2")]
        assert "A" not in headers

    def test_delitem_of_missing_header_raises_key_error(self) -> None:
        with pytest.raises(KeyError):
            del Headers()["A"]

    def test_items_lower_case_names_and_raw_items_keep_spelling(self) -> None:
        headers = Headers([("Sec-WebSocket-Key", "k"), ("X-A", "1")])
        assert headers.items() == [("sec-websocket-key", "k"), ("x-a", "1")]
        assert headers.raw_items() == [("Sec-WebSocket-Key", "k"), ("X-A", "1")]

    def test_copy_is_independent(self) -> None:
        headers = Headers({"A": "1"})
        copy = headers.copy()
        copy.add("A", "2")
        copy["B"] = "3"
        assert headers.raw_items() == [("A", "1")]
        assert copy.raw_items() == [("A", "1"), ("A", "2"), ("B", "3")]

    @pytest.mark.parametrize(
        ("left", "right", "equal"),
        [
            ([("A", "1"), ("B", "2")], [("b", "2"), ("a", "1")], True),
            ([("A", "1"), ("B", "2"), ("A", "3")], [("A", "1"), ("A", "3"), ("B", "2")], True),
            ([("A", "1"), ("A", "3")], [("A", "3"), ("A", "1")], False),
            ([("A", "1")], [("A", "1"), ("A", "1")], False),
            ([("A", "1")], [("A", "2")], False),
        ],
    )
    def test_equality_compares_values_per_name_in_order(
        self, left: list[tuple[str, str]], right: list[tuple[str, str]], equal: bool
    ) -> None:
        assert (Headers(left) == Headers(right)) is equal

    def test_headers_never_equal_other_types(self) -> None:
        assert Headers({"A": "1"}) != {"A": "1"}

    def test_headers_are_unhashable(self) -> None:
        with pytest.raises(TypeError):
            hash(Headers())

    def test_headers_build_from_headers_mapping_pairs_or_none(self) -> None:
        source = Headers([("A", "1"), ("A", "2")])
        assert Headers(source) == source
        assert Headers({"A": "1"}).raw_items() == [("A", "1")]
        assert Headers(iter([("A", "1")])).raw_items() == [("A", "1")]
        assert Headers().raw_items() == []

    def test_headers_built_from_headers_are_independent(self) -> None:
        source = Headers({"A": "1"})
        copy = Headers(source)
        copy.add("A", "2")
        assert source.get_all("A") == ["1"]

    def test_repr_shows_the_fields(self) -> None:
        assert repr(Headers({"A": "1"})) == "Headers([('A', '1')])"

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("", "x"),
            ("Bad Name", "x"),
            ("Bad:Name", "x"),
            ("X\r\nInjected", "x"),
            ("Caf\u00e9", "x"),
            ("X-A", "a\r\nInjected: yes"),
            ("X-A", "a\nb"),
            ("X-A", "a\x00b"),
            ("X-A", "a\x7fb"),
            ("X-A", "\u20ac"),
        ],
    )
    def test_headers_refuse_fields_that_could_inject_lines(self, name: str, value: str) -> None:
        for change in (Headers().add, Headers().__setitem__):
            with pytest.raises(ValueError):
                change(name, value)
        with pytest.raises(ValueError):
            Headers([(name, value)])

    def test_headers_accept_htab_and_obs_text_in_values(self) -> None:
        headers = Headers({"X-A": "a\tb caf\u00e9"})
        assert headers["X-A"] == "a\tb caf\u00e9"


# --- Request and Response ---------------------------------------------------------------


class TestMessages:
    def test_request_serializes_request_line_and_headers(self) -> None:
        request = Request("/chat?room=1", Headers([("Host", "example.com"), ("X-A", "1")]))
        assert request.serialize() == (
            b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n"
        )

    def test_request_serializes_obs_text_as_latin_1(self) -> None:
        request = Request("/", Headers({"X-A": "caf\u00e9"}), "POST")
        assert request.serialize() == b"POST / HTTP/1.1\r\nX-A: caf\xe9\r\n\r\n"

    @pytest.mark.parametrize(
        ("path", "method"),
        [("", "GET"), ("/a b", "GET"), ("/a\r\n", "GET"), ("/\u00e9", "GET"), ("/", "G T")],
    )
    def test_request_rejects_invalid_path_or_method(self, path: str, method: str) -> None:
        with pytest.raises(ValueError):
            Request(path, Headers(), method)

    def test_response_serializes_status_line_headers_and_body(self) -> None:
        response = Response(404, "Not Found", Headers({"Content-Length": "3"}), b"bye")
        assert response.serialize() == b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nbye"

    def test_response_with_empty_reason_keeps_the_space(self) -> None:
        assert Response(599, "", Headers()).serialize() == b"HTTP/1.1 599 \r\n\r\n"

    @pytest.mark.parametrize(("status", "reason"), [(99, "x"), (1000, "x"), (200, "a\r\nb")])
    def test_response_rejects_invalid_status_or_reason(self, status: int, reason: str) -> None:
        with pytest.raises(ValueError):
            Response(status, reason, Headers())

    def test_plain_response_has_type_length_and_connection_close(self) -> None:
        response = Response.plain(400, "bad \u00e9\n")
        assert (response.status, response.reason) == (400, "Bad Request")
        assert response.body == "bad \u00e9\n".encode()
        assert response.headers.raw_items() == [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", "7"),
            ("Connection", "close"),
        ]

    def test_plain_response_puts_given_headers_first_and_keeps_their_connection(self) -> None:
        response = Response.plain(
            426, "upgrade", [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        )
        assert response.headers.raw_items() == [
            ("Upgrade", "websocket"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", "7"),
            ("Connection", "Upgrade, close"),
        ]

    def test_plain_response_keeps_a_given_content_type_and_fixes_content_length(self) -> None:
        given_headers = {"Content-Type": "text/html", "Content-Length": "999"}
        response = Response.plain(403, "<p>no</p>", given_headers)
        assert response.headers["Content-Type"] == "text/html"
        assert response.headers["Content-Length"] == "9"

    def test_plain_response_with_unregistered_status_has_empty_reason(self) -> None:
        assert Response.plain(599, "x").reason == ""

    def test_responses_survive_a_round_trip(self) -> None:
        response = Response.plain(403, "forbidden\n", {"Server": "openline/0.1"})
        data = response.serialize()
        assert parse_response(data) == (response, len(data))


# --- parse_request ----------------------------------------------------------------------


class TestParseRequest:
    def test_parser_returns_request_and_size_and_leaves_frames_alone(self) -> None:
        result = parse_request(REQUEST + FRAME)
        assert result is not None
        request, size = result
        assert size == len(REQUEST)
        assert (request.method, request.path) == ("GET", "/chat?room=1")
        assert request.headers.raw_items() == [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ]

    def test_parser_accepts_bytearray(self) -> None:
        assert parse_request(bytearray(REQUEST)) == parse_request(REQUEST)

    def test_parser_accepts_a_request_without_headers(self) -> None:
        result = parse_request(b"GET / HTTP/1.1\r\n\r\n")
        assert result is not None
        assert result[0].headers == Headers()

    def test_parser_waits_at_every_prefix_of_the_head(self) -> None:
        for end in range(len(REQUEST)):
            assert parse_request(REQUEST[:end]) is None, end

    def test_parser_gives_the_same_request_however_bytes_arrive_one_at_a_time(self) -> None:
        expected = parse_request(REQUEST)
        buf = bytearray()
        results = []
        for byte in REQUEST + FRAME:
            buf.append(byte)
            results.append(parse_request(buf))
        assert results[: len(REQUEST) - 1] == [None] * (len(REQUEST) - 1)
        assert results[len(REQUEST) - 1 :] == [expected] * (len(FRAME) + 1)

    @given(st.lists(st.integers(min_value=0, max_value=len(REQUEST) + len(FRAME))))
    def test_parser_gives_the_same_request_for_any_split(self, cuts: list[int]) -> None:
        assert feed_in_chunks(parse_request, REQUEST + FRAME, cuts) == parse_request(REQUEST)

    def test_parser_strips_whitespace_around_values_and_allows_empty_ones(self) -> None:
        result = parse_request(request_with(b"X-A: \t a b \t ", b"X-B:", b"X-C:  "))
        assert result is not None
        assert result[0].headers.raw_items() == [("X-A", "a b"), ("X-B", ""), ("X-C", "")]

    def test_parser_decodes_obs_text_as_latin_1(self) -> None:
        result = parse_request(request_with(b"X-A: caf\xe9"))
        assert result is not None
        assert result[0].headers["X-A"] == "caf\u00e9"

    def test_parser_keeps_repeated_headers(self) -> None:
        result = parse_request(request_with(b"X-A: 1", b"Host: h", b"x-a: 2"))
        assert result is not None
        assert result[0].headers.get_all("X-A") == ["1", "2"]

    def test_parser_accepts_other_methods_for_the_handshake_to_reject(self) -> None:
        result = parse_request(request_with(start=b"OPTIONS * HTTP/1.1"))
        assert result is not None
        assert (result[0].method, result[0].path) == ("OPTIONS", "*")

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (request_with(start=b"GET / HTTP/1.0"), "unsupported HTTP version: HTTP/1.0"),
            (request_with(start=b"GET / HTTP/2.0"), "unsupported HTTP version: HTTP/2.0"),
            (request_with(start=b"GET / http/1.1"), "invalid request line"),
            (request_with(start=b"GET /"), "invalid request line"),
            (request_with(start=b"GET  / HTTP/1.1"), "invalid request line"),
            (request_with(start=b"GET\t/ HTTP/1.1"), "invalid request line"),
            (request_with(start=b"GET / HTTP/1.1 "), "invalid request line"),
            (request_with(start=b"G(T / HTTP/1.1"), "invalid request line"),
            (request_with(start=b"GET /caf\xe9 HTTP/1.1"), "invalid request line"),
            (b"\r\n\r\n", "invalid request line"),
            (request_with(start=b""), "invalid request line"),
        ],
    )
    def test_parser_rejects_invalid_request_lines(self, data: bytes, message: str) -> None:
        with pytest.raises(InvalidMessage, match=message):
            parse_request(data)

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            (b" folded", "obsolete line folding"),
            (b"\tfolded", "obsolete line folding"),
            (b"Host : h", "invalid header line"),
            (b"Host\t: h", "invalid header line"),
            (b": h", "invalid header line"),
            (b"Host", "invalid header line"),
            (b"Ho(st: h", "invalid header line"),
            (b"X-A: a\x00b", "invalid header value"),
            (b"X-A: a\x7fb", "invalid header value"),
            (b"X-A: a\x1bb", "invalid header value"),
            (b"X-A: a\rb", "bare CR or LF"),
            (b"X-A: a\nb", "bare CR or LF"),
            (b"Content-Length: 0", "mustn't have a body; found Content-Length"),
            (b"Transfer-Encoding: chunked", "mustn't have a body; found Transfer-Encoding"),
        ],
    )
    def test_parser_rejects_invalid_header_lines(self, line: bytes, message: str) -> None:
        data = request_with(b"Host: h", line)
        with pytest.raises(InvalidMessage, match=message):
            parse_request(data)

    def test_parser_rejects_folding_of_the_first_header_line(self) -> None:
        with pytest.raises(InvalidMessage, match="obsolete line folding"):
            parse_request(request_with(b" Host: h"))

    @pytest.mark.parametrize(
        "data",
        [b"GET / HTTP/1.1\n\n", b"GET / HTTP/1.1\nHost: h", b"GET / HTTP/1.1\rX", b"GET / HT\r\r"],
    )
    def test_parser_rejects_bare_line_endings_before_the_head_is_complete(
        self, data: bytes
    ) -> None:
        with pytest.raises(InvalidMessage, match="bare CR or LF"):
            parse_request(data)

    def test_parser_waits_when_the_last_byte_may_start_a_crlf(self) -> None:
        assert parse_request(b"GET / HTTP/1.1\r") is None
        assert parse_request(b"GET / HTTP/1.1\r\nHost: h\r") is None


class TestParseRequestLimits:
    @pytest.mark.parametrize(
        ("data", "limits", "message"),
        [
            (
                request_with(start=b"GET /" + b"a" * 100 + b" HTTP/1.1"),
                {"max_line": 100},
                "request line of 114 bytes exceeds max_line of 100 bytes",
            ),
            (
                request_with(b"X-A: " + b"a" * 96),
                {"max_line": 100},
                "request line of 101 bytes exceeds max_line of 100 bytes",
            ),
            (
                request_with(*[b"X-A: 1"] * 4),
                {"max_headers": 3},
                "request has 4 header lines; max_headers is 3",
            ),
            (
                request_with(b"X-A: " + b"a" * 100),
                {"max_size": 100},
                "request head of 125 bytes exceeds max_size of 100 bytes",
            ),
        ],
    )
    def test_parser_enforces_limits_on_a_complete_head(
        self, data: bytes, limits: dict[str, int], message: str
    ) -> None:
        with pytest.raises(SecurityError, match=message):
            parse_request(data, **limits)

    @pytest.mark.parametrize(
        ("data", "limits", "message"),
        [
            (
                b"GET /" + b"a" * 200,
                {"max_line": 100},
                "request line of at least 205 bytes exceeds max_line of 100 bytes",
            ),
            (
                request_with(b"X-A: " + b"a" * 200)[:-4],
                {"max_line": 100},
                "request line of at least 205 bytes exceeds max_line of 100 bytes",
            ),
            (
                request_with(*[b"X-A: 1"] * 4)[:-4],
                {"max_headers": 3},
                "request has at least 4 header lines; max_headers is 3",
            ),
        ],
    )
    def test_parser_enforces_limits_before_the_head_is_complete(
        self, data: bytes, limits: dict[str, int], message: str
    ) -> None:
        with pytest.raises(SecurityError, match=message):
            parse_request(data, **limits)

    def test_parser_rejects_a_megabyte_without_end_of_head_once_past_max_size(self) -> None:
        line = b"X-A: " + b"a" * 1000 + b"\r\n"
        data = b"GET / HTTP/1.1\r\n" + line * 1024
        assert parse_request(data[: MAX_SIZE - 1], max_headers=None) is None
        with pytest.raises(SecurityError, match="request head of more than 65536 bytes"):
            parse_request(data[:MAX_SIZE], max_headers=None)
        with pytest.raises(SecurityError, match="exceeds max_size of 65536 bytes"):
            parse_request(data, max_headers=None)

    def test_parser_accepts_a_head_exactly_at_every_limit(self) -> None:
        data = request_with(b"X-A: " + b"a" * 95, b"X-B: 1")
        assert parse_request(data, max_line=100, max_headers=2, max_size=len(data)) is not None

    def test_parser_applies_no_limit_given_none(self) -> None:
        data = request_with(*[b"X-A: " + b"a" * 10_000] * 200)
        assert parse_request(data, max_line=None, max_headers=None, max_size=None) is not None

    def test_parser_checks_limits_before_syntax(self) -> None:
        data = request_with(b"X-A: " + b"a" * 200, start=b"GET / HTTP/1.0")
        with pytest.raises(SecurityError):
            parse_request(data, max_line=100)


# --- parse_response ---------------------------------------------------------------------


class TestParseResponse:
    def test_parser_returns_101_without_body_and_leaves_frames_alone(self) -> None:
        result = parse_response(RESPONSE_101 + FRAME)
        assert result is not None
        response, size = result
        assert size == len(RESPONSE_101)
        assert (response.status, response.reason, response.body) == (
            101,
            "Switching Protocols",
            b"",
        )
        assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_parser_ignores_content_length_on_101_204_and_304(self) -> None:
        for status in (b"101 Switching Protocols", b"204 No Content", b"304 Not Modified"):
            data = response_with(b"Content-Length: 5", start=b"HTTP/1.1 " + status)
            result = parse_response(data + b"hello")
            assert result is not None
            assert (result[0].body, result[1]) == (b"", len(data))

    def test_parser_reads_a_body_by_content_length(self) -> None:
        result = parse_response(RESPONSE_404 + b"garbage")
        assert result is not None
        assert (result[0].status, result[0].body, result[1]) == (
            404,
            b"not found\n",
            len(RESPONSE_404),
        )

    def test_parser_waits_for_the_whole_body(self) -> None:
        for end in range(len(RESPONSE_404)):
            assert parse_response(RESPONSE_404[:end]) is None, end

    @given(st.lists(st.integers(min_value=0, max_value=len(RESPONSE_404))))
    def test_parser_gives_the_same_response_for_any_split(self, cuts: list[int]) -> None:
        expected = parse_response(RESPONSE_404)
        assert feed_in_chunks(parse_response, RESPONSE_404, cuts) == expected

    def test_parser_returns_at_once_without_content_length(self) -> None:
        data = response_with(b"Content-Type: text/plain", start=b"HTTP/1.1 403 Forbidden")
        result = parse_response(data + b"the body runs until EOF")
        assert result is not None
        assert (result[0].body, result[1]) == (b"", len(data))

    def test_parser_accepts_an_empty_reason(self) -> None:
        result = parse_response(response_with(start=b"HTTP/1.1 418 "))
        assert result is not None
        assert (result[0].status, result[0].reason) == (418, "")

    def test_parser_decodes_reason_as_latin_1(self) -> None:
        result = parse_response(response_with(start=b"HTTP/1.1 400 Mauvaise requ\xeate"))
        assert result is not None
        assert result[0].reason == "Mauvaise requ\u00eate"

    @pytest.mark.parametrize(
        ("start", "message"),
        [
            (b"HTTP/1.0 101 Switching Protocols", "unsupported HTTP version: HTTP/1.0"),
            (b"HTTP/1.1 101", "invalid status line"),
            (b"HTTP/1.1 1010 Switching", "invalid status line"),
            (b"HTTP/1.1 10 Switching", "invalid status line"),
            (b"HTTP/1.1 abc Switching", "invalid status line"),
            (b"HTTP/1.1  101 Switching", "invalid status line"),
            (b"HTTP/1.1 101 Switching\x00", "invalid status line"),
            (b"ICY 200 OK", "invalid status line"),
            (b"HTTP/1.1 099 Early", "status code 99 is out of range 100-599"),
            (b"HTTP/1.1 600 Late", "status code 600 is out of range 100-599"),
        ],
    )
    def test_parser_rejects_invalid_status_lines(self, start: bytes, message: str) -> None:
        with pytest.raises(InvalidMessage, match=message):
            parse_response(response_with(start=start))

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            ((b"Transfer-Encoding: chunked",), "chunked responses aren't supported"),
            ((b"Transfer-Encoding: gzip, Chunked",), "chunked responses aren't supported"),
            ((b"Transfer-Encoding: gzip",), "transfer-encoded responses aren't supported"),
            ((b"Content-Length: -1",), "invalid Content-Length header"),
            ((b"Content-Length: 1e3",), "invalid Content-Length header"),
            ((b"Content-Length: 3, 3",), "invalid Content-Length header"),
            ((b"Content-Length: 3", b"Content-Length: 3"), "invalid Content-Length header"),
            ((b"X-A: a\x00",), "invalid header value"),
        ],
    )
    def test_parser_rejects_bodies_it_cannot_delimit(
        self, lines: tuple[bytes, ...], message: str
    ) -> None:
        data = response_with(*lines, start=b"HTTP/1.1 400 Bad Request")
        with pytest.raises(InvalidMessage, match=message):
            parse_response(data)

    def test_parser_rejects_a_body_over_max_body_before_it_arrives(self) -> None:
        data = response_with(b"Content-Length: 1048577", start=b"HTTP/1.1 400 Bad Request")
        with pytest.raises(
            SecurityError, match="response body of 1048577 bytes exceeds max_body of 1048576 bytes"
        ):
            parse_response(data)

    def test_parser_accepts_a_body_exactly_at_max_body_or_without_limit(self) -> None:
        data = response_with(b"Content-Length: 5", start=b"HTTP/1.1 400 Bad Request") + b"12345"
        assert parse_response(data, max_body=5) is not None
        assert parse_response(data, max_body=None) is not None

    @pytest.mark.parametrize(
        ("limits", "message"),
        [
            ({"max_line": 10}, "response line of 32 bytes exceeds max_line of 10 bytes"),
            ({"max_headers": 2}, "response has 3 header lines; max_headers is 2"),
            ({"max_size": 50}, "response head of 129 bytes exceeds max_size of 50 bytes"),
        ],
    )
    def test_parser_enforces_head_limits_on_responses(
        self, limits: dict[str, int], message: str
    ) -> None:
        with pytest.raises(SecurityError, match=message):
            parse_response(RESPONSE_101, **limits)


# --- properties -------------------------------------------------------------------------

_names = st.from_regex(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}", fullmatch=True)
# Values without the whitespace at either end, which the parser strips.
_values = st.from_regex(
    r"([\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]{0,30}[\x21-\x7e\x80-\xff])?)?",
    fullmatch=True,
)
_paths = st.from_regex(r"/[\x21-\x7e]{0,40}", fullmatch=True)


@given(st.lists(st.tuples(_names, _values), max_size=20), _paths)
def test_requests_survive_a_round_trip(fields: list[tuple[str, str]], path: str) -> None:
    headers = Headers(fields)
    for name in ("Content-Length", "Transfer-Encoding"):
        if name in headers:
            del headers[name]
    request = Request(path, headers)
    data = request.serialize()
    assert parse_request(data) == (request, len(data))


# --- the one-expression fast path for field lines -----------------------------------------

FIELD_LINES = [
    b"Host: example.com",
    b"Host:example.com",
    b"Host:   example.com \t ",
    b"X-Empty:",
    b"X-Empty:   ",
    b"X-Tab:\tvalue\twith\ttabs\t",
    b"X-Obs-Text: caf\xe9",
    b"X-Colons: a:b:c",
    b" Host: folded",
    b"\tHost: folded",
    b"Host : space before colon",
    b"No colon here",
    b": no name",
    b"Bad(Name): x",
    b"X-Ctl: a\x00b",
    b"X-Ctl: a\x7fb",
    b"X-Ctl: a\x1fb",
    b"X-Del\x7f: b",
]


def _reference_fields(lines: list[bytes]) -> list[tuple[str, str]] | str:
    # The step-by-step parser that the fast path must agree with.
    fields = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            return f"obsolete line folding isn't supported: {line!r}"
        name, colon, value = line.partition(b":")
        if not colon or not re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
            return f"invalid header line: {line!r}"
        value = value.strip(b" \t")
        if not re.fullmatch(rb"[\t\x20-\x7e\x80-\xff]*", value):
            return f"invalid header value: {line!r}"
        fields.append((name.decode(), value.decode("latin-1")))
    return fields


@pytest.mark.parametrize("first", range(len(FIELD_LINES)))
@pytest.mark.parametrize("second", range(len(FIELD_LINES)))
def test_field_lines_parse_as_the_step_by_step_checks_say(first: int, second: int) -> None:
    lines = [b"Host: x", FIELD_LINES[first], FIELD_LINES[second]]
    raw = b"GET / HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    expected = _reference_fields(lines)
    if isinstance(expected, str):
        with pytest.raises(InvalidMessage) as info:
            parse_request(raw)
        kind = expected.split(":")[0]
        assert str(info.value).startswith(kind)
    else:
        parsed = parse_request(raw)
        assert parsed is not None
        assert parsed[0].headers.raw_items() == expected
