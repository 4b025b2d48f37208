"""HTTP/1.1 messages of the opening handshake, sans-I/O, with hard limits.

Only what a WebSocket upgrade needs: a request without a body, and a response
whose body (for a rejection) has a ``Content-Length``. Parsing is strict: lines
end with CRLF, header names are tokens, obsolete line folding is rejected. See
`RFC 9110 <https://datatracker.ietf.org/doc/html/rfc9110>`_ (semantics) and
`RFC 9112 <https://datatracker.ietf.org/doc/html/rfc9112>`_ (message syntax).

The parsers are stateless and work on a growing buffer: call them again with
more bytes until they return something other than ``None``. They check the
limits on every call, so a peer that never ends its header block is rejected as
soon as it breaks one, not when it stops sending.
"""

from __future__ import annotations

import dataclasses
import http
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, TypeVar, overload

from ..exceptions import InvalidMessage, OpenlineError, SecurityError, _shorten

__all__ = [
    "MAX_BODY",
    "MAX_HEADERS",
    "MAX_LINE",
    "MAX_REQUEST_BODY",
    "MAX_SIZE",
    "Headers",
    "HeadersLike",
    "MultipleValuesError",
    "Request",
    "Response",
    "parse_request",
    "parse_response",
]

#: Default limit on one line of the head (start line or header line), in bytes.
MAX_LINE = 8192
#: Default limit on the number of header lines.
MAX_HEADERS = 128
#: Default limit on the whole head, up to and including the empty line, in bytes.
MAX_SIZE = 65536
#: Default limit on the body of a response, in bytes.
MAX_BODY = 1_048_576
#: The documented limit on a request body when a server accepts bodies (the
#: server API); :func:`parse_request` refuses every body unless given a limit.
MAX_REQUEST_BODY = 1_048_576

_T = TypeVar("_T")

# RFC 9110, section 5.6.2: token = 1*tchar.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_TOKEN_RE_B = re.compile(_TOKEN.encode())
# RFC 9110, section 5.5: field values are visible characters, SP, HTAB and obs-text;
# every other control character, CR and LF included, is forbidden.
_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_VALUE_RE_B = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# RFC 9112, section 3: request-line = method SP request-target SP HTTP-version.
_TARGET_RE = re.compile(r"[\x21-\x7e]+")
_REQUEST_LINE_RE = re.compile(rb"(" + _TOKEN.encode() + rb") ([\x21-\x7e]+) (HTTP/[0-9]\.[0-9])")
# RFC 9112, section 4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
_STATUS_LINE_RE = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3}) ([\t\x20-\x7e\x80-\xff]*)")
_CONTENT_LENGTH_RE = re.compile(rb"[0-9]+")
# Valid field lines (RFC 9112, section 5): a token, a colon, then a value whose
# surrounding whitespace is stripped afterwards. With MULTILINE, ^ anchors each
# match at the start of a line, so a line that matches matches whole. Lines
# that don't go through the step-by-step checks, which say what is wrong.
_FIELD_LINES_RE = re.compile(r"^(" + _TOKEN + r"):([\t\x20-\x7e\x80-\xff]*)\r\n", re.MULTILINE)


class MultipleValuesError(OpenlineError, KeyError):
    """A header looked up as single-valued appears more than once.

    A :class:`KeyError`, so that code written for a plain mapping still fails
    safely, and an :class:`~openline.exceptions.OpenlineError` like everything
    openline raises.

    Attributes:
        name: The header name, as looked up.
        count: How many times it appears.
    """

    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        super().__init__(name, count)

    def __str__(self) -> str:
        return f"{self.name} header appears {self.count} times; expected once"


class Headers:
    """HTTP header fields: a case-insensitive, order-preserving multi-dict.

    Names compare case-insensitively and keep the spelling they were added with.
    Iterating yields each distinct name once, lower-cased; ``len()`` counts
    those names. :meth:`raw_items` gives every field line in order, which is
    what goes on the wire.

    ``headers[name] = value`` **replaces** every field with that name (the new
    value takes the place of the first one); use :meth:`add` to append another.

    Names must be tokens and values must not contain control characters other
    than HTAB, so that no value can inject a header line (``ValueError``).

    Two :class:`Headers` are equal when they hold the same values, in the same
    order, for each name; the relative order of different names doesn't count
    (RFC 9110, section 5.3).
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: HeadersLike | None = None, /) -> None:
        """Build from another :class:`Headers`, a mapping, or ``(name, value)`` pairs.

        Raises:
            ValueError: A name isn't a token or a value contains a control character.
        """
        self._fields: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        if fields is None:
            return
        if isinstance(fields, Headers):
            self._fields = fields._fields.copy()
            self._index = {key: values.copy() for key, values in fields._index.items()}
            return
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        for name, value in pairs:
            self.add(name, value)

    # --- lookup -----------------------------------------------------------------------

    def __getitem__(self, name: str) -> str:
        """Return the only value of ``name``.

        Raises:
            KeyError: The header is missing.
            MultipleValuesError: The header appears more than once.
        """
        values = self._index[name.lower()]
        if len(values) > 1:
            raise MultipleValuesError(name, len(values))
        return values[0]

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: _T) -> str | _T: ...

    def get(self, name: str, default: object = None) -> object:
        """Return the only value of ``name``, or ``default`` if it is missing.

        Raises:
            MultipleValuesError: The header appears more than once. A repeated
                header is never silently reduced to one of its values.
        """
        values = self._index.get(name.lower())
        if values is None:
            return default
        if len(values) > 1:
            raise MultipleValuesError(name, len(values))
        return values[0]

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in order; an empty list if it is missing."""
        return self._index.get(name.lower(), []).copy()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> list[tuple[str, str]]:
        """Return every field as ``(lower-cased name, value)``, in order."""
        return [(name.lower(), value) for name, value in self._fields]

    def raw_items(self) -> list[tuple[str, str]]:
        """Return every field as ``(name, value)`` with names spelled as added, in order."""
        return self._fields.copy()

    # --- changes ----------------------------------------------------------------------

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any existing field with the same name.

        Raises:
            ValueError: ``name`` isn't a token or ``value`` contains a control character.
        """
        _check_field(name, value)
        self._append(name, value)

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field named ``name`` by one field, in the first one's place.

        Raises:
            ValueError: ``name`` isn't a token or ``value`` contains a control character.
        """
        _check_field(name, value)
        key = name.lower()
        if key not in self._index:
            self._append(name, value)
            return
        fields: list[tuple[str, str]] = []
        replaced = False
        for field in self._fields:
            if field[0].lower() != key:
                fields.append(field)
            elif not replaced:
                fields.append((name, value))
                replaced = True
        self._fields = fields
        self._index[key] = [value]

    def __delitem__(self, name: str) -> None:
        """Remove every field named ``name``.

        Raises:
            KeyError: The header is missing.
        """
        key = name.lower()
        del self._index[key]
        self._fields = [field for field in self._fields if field[0].lower() != key]

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers(self)

    # --- comparison -------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._index == other._index

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    # --- private ----------------------------------------------------------------------

    def _append(self, name: str, value: str) -> None:
        # The parser calls this directly: it has already validated the field.
        self._fields.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)


#: What :class:`Headers` and the handshake accept where headers are expected.
HeadersLike: TypeAlias = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


def _check_field(name: str, value: str) -> None:
    if not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"header name isn't a token: {name!r}")
    if not _VALUE_RE.fullmatch(value):
        raise ValueError(f"{name} header value contains a control character: {value!r}")


# --- messages ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """An HTTP/1.1 request, such as a WebSocket upgrade request (which has no body).

    Attributes:
        path: The request target, such as ``/chat?room=1``.
        headers: The header fields.
        method: The method; a WebSocket handshake uses ``GET``.
        body: The body; empty unless the parser was allowed bodies (``max_body``)
            and the request announced one with ``Content-Length``.

    Raises:
        ValueError: ``method`` isn't a token or ``path`` contains a space or a
            control character.
    """

    path: str
    headers: Headers
    method: str = "GET"
    body: bytes = b""

    def __post_init__(self) -> None:
        if not _TOKEN_RE.fullmatch(self.method):
            raise ValueError(f"method isn't a token: {self.method!r}")
        if not _TARGET_RE.fullmatch(self.path):
            raise ValueError(f"path isn't a valid request target: {self.path!r}")

    def serialize(self) -> bytes:
        """Encode the request line and the header fields for the wire."""
        return _serialize_head(f"{self.method} {self.path} HTTP/1.1", self.headers)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """An HTTP/1.1 response.

    :meth:`serialize` writes the headers as they are: it adds no
    ``Content-Length``. :meth:`plain` builds a complete rejection.

    Attributes:
        status: The status code, such as 101.
        reason: The reason phrase, such as ``"Switching Protocols"``.
        headers: The header fields.
        body: The body; empty for 101.

    Raises:
        ValueError: ``status`` isn't a three-digit code or ``reason`` contains a
            control character.
    """

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise ValueError(f"status isn't a three-digit code: {self.status}")
        if not _VALUE_RE.fullmatch(self.reason):
            raise ValueError(f"reason contains a control character: {self.reason!r}")

    @classmethod
    def plain(cls, status: int, text: str, headers: HeadersLike | None = None) -> Response:
        """Build a ``text/plain`` response that closes the connection.

        Adds ``Content-Type`` (unless ``headers`` has one), ``Content-Length`` and
        ``Connection: close``; a ``Connection`` value given in ``headers``, such as
        ``Upgrade`` for a 426, is kept in front of ``close``.

        Args:
            status: The status code; the reason phrase is the standard one.
            text: The body, encoded as UTF-8.
            headers: More header fields, placed first.

        Raises:
            ValueError: A header is invalid or ``status`` isn't a three-digit code.
        """
        body = text.encode()
        fields = Headers(headers)
        connection = fields.get_all("Connection")
        if connection:
            del fields["Connection"]
        if "Content-Type" not in fields:
            fields["Content-Type"] = "text/plain; charset=utf-8"
        fields["Content-Length"] = str(len(body))
        fields["Connection"] = ", ".join([*connection, "close"])
        return cls(status, _reason_phrase(status), fields, body)

    def serialize(self) -> bytes:
        """Encode the status line, the header fields and the body for the wire."""
        return _serialize_head(f"HTTP/1.1 {self.status} {self.reason}", self.headers) + self.body


def _reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _serialize_head(start_line: str, headers: Headers) -> bytes:
    lines = [start_line, *(f"{name}: {value}" for name, value in headers.raw_items()), "", ""]
    # Values may hold obs-text (U+0080 to U+00FF), which is one byte each in Latin-1.
    return "\r\n".join(lines).encode("latin-1")


# --- parsing ----------------------------------------------------------------------------


def parse_request(
    buf: bytes | bytearray,
    *,
    max_line: int | None = MAX_LINE,
    max_headers: int | None = MAX_HEADERS,
    max_size: int | None = MAX_SIZE,
    max_body: int | None = 0,
) -> tuple[Request, int] | None:
    """Parse an upgrade request, or a plain request with a small body, at the start of ``buf``.

    By default the request ends at the first CRLF CRLF; what follows belongs to
    the WebSocket stream. Lines must end with CRLF: a bare CR or LF is an error.
    Limits are checked before syntax, on whatever part of the head has arrived.

    With ``max_body`` above 0, a request whose method isn't ``GET`` or ``HEAD``
    may carry a body of ``Content-Length`` bytes (for an HTTP API served on the
    same port); the request then ends after the body. An upgrade request (a
    ``GET``) still mustn't announce a body, and ``Transfer-Encoding`` (chunked)
    is always refused.

    Args:
        buf: The bytes received so far.
        max_line: Longest start or header line, in bytes, without its CRLF.
        max_headers: Most header lines.
        max_size: Largest head, in bytes, up to and including the empty line.
            For these three limits, ``None`` disables the limit.
        max_body: Largest request body, in bytes; 0 (the default) refuses
            bodies, ``None`` disables the limit.

    Returns:
        ``None`` while the head or the body is incomplete; else the request and
        the number of bytes it used.

    Raises:
        SecurityError: The head breaks a limit, possibly before it is complete,
            or the announced body exceeds ``max_body``.
        InvalidMessage: The head isn't a valid HTTP/1.1 request, uses another HTTP
            version, has obsolete line folding, or announces a body that isn't
            allowed: any with ``Transfer-Encoding``, and any with
            ``Content-Length`` on a ``GET`` or ``HEAD`` or when ``max_body`` is 0
            (RFC 6455, section 4.1), or an invalid ``Content-Length``.
    """
    head = _split_head(buf, "request", max_line, max_headers, max_size)
    if head is None:
        return None
    lines, size = head
    match = _REQUEST_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise InvalidMessage(f"invalid request line: {_shorten(lines[0])}")
    # RFC 9112, section 2.3: we implement HTTP/1.1 only; RFC 6455, section 4.1
    # requires "HTTP/1.1 or higher", and higher versions don't use this syntax.
    if match[3] != b"HTTP/1.1":
        version = match[3].decode("ascii")
        raise InvalidMessage(f"unsupported HTTP version: {version}; expected HTTP/1.1")
    method, target = match[1].decode("ascii"), match[2].decode("ascii")
    headers = _parse_fields(lines[1:])
    length = _request_body_length(method, headers, max_body)
    if len(buf) < size + length:
        return None
    body = bytes(buf[size : size + length])
    # The request line's expression already checked what Request() checks.
    return _parsed_request(target, headers, method, body), size + length


def _parsed_request(path: str, headers: Headers, method: str, body: bytes) -> Request:
    """A :class:`Request` whose method and target the parser has checked.

    Skips ``__post_init__``'s checks, which the request line's expression made
    already: it is on the path of every opening handshake.
    """
    request = object.__new__(Request)
    set_field = object.__setattr__  # the dataclass is frozen
    set_field(request, "path", path)
    set_field(request, "headers", headers)
    set_field(request, "method", method)
    set_field(request, "body", body)
    return request


def _request_body_length(method: str, headers: Headers, max_body: int | None) -> int:
    """The length of a request's body; 0 when it has none."""
    bodies_allowed = max_body != 0 and method not in ("GET", "HEAD")
    if bodies_allowed and "Transfer-Encoding" in headers:
        raise InvalidMessage("transfer-encoded request bodies aren't supported: use Content-Length")
    if not bodies_allowed:
        # The bytes after an upgrade's head are WebSocket frames: a body would
        # be read as frames. (The index's keys are lowercase names.)
        index = headers._index
        if "content-length" in index or "transfer-encoding" in index:
            name = "Content-Length" if "content-length" in index else "Transfer-Encoding"
            raise InvalidMessage(f"upgrade request mustn't have a body; found {name} header")
        return 0
    values = headers.get_all("Content-Length")
    if not values:
        return 0
    if len(values) > 1 or not _CONTENT_LENGTH_RE.fullmatch(values[0].encode("latin-1")):
        raise InvalidMessage(f"invalid Content-Length header: {_shorten(', '.join(values))}")
    length = int(values[0])
    if max_body is not None and length > max_body:
        raise SecurityError(f"request body of {length} bytes exceeds max_body of {max_body} bytes")
    return length


def parse_response(
    buf: bytes | bytearray,
    *,
    max_line: int | None = MAX_LINE,
    max_headers: int | None = MAX_HEADERS,
    max_size: int | None = MAX_SIZE,
    max_body: int | None = MAX_BODY,
) -> tuple[Response, int] | None:
    """Parse a handshake response at the start of ``buf``.

    A 1xx, 204 or 304 response has no body: after a 101, the following bytes
    belong to the WebSocket stream. Other responses carry a body of
    ``Content-Length`` bytes. Without ``Content-Length``, the response is
    returned at once with an empty body; the caller may read the body until EOF
    if it wants it (RFC 9112, section 6.3), but a rejected handshake rarely needs it.

    Args:
        buf: The bytes received so far.
        max_line: Longest status or header line, in bytes, without its CRLF.
        max_headers: Most header lines.
        max_size: Largest head, in bytes, up to and including the empty line.
        max_body: Largest body, in bytes. For all four limits, ``None`` disables
            the limit.

    Returns:
        ``None`` while the head or the body is incomplete; else the response and
        the number of bytes it used.

    Raises:
        SecurityError: The head or the announced body breaks a limit.
        InvalidMessage: The head isn't a valid HTTP/1.1 response, the body is
            chunked or transfer-encoded, or ``Content-Length`` is invalid.
    """
    head = _split_head(buf, "response", max_line, max_headers, max_size)
    if head is None:
        return None
    lines, size = head
    match = _STATUS_LINE_RE.fullmatch(lines[0])
    if match is None:
        raise InvalidMessage(f"invalid status line: {_shorten(lines[0])}")
    version = match[1].decode("ascii")
    if version != "HTTP/1.1":
        raise InvalidMessage(f"unsupported HTTP version: {version}; expected HTTP/1.1")
    status = int(match[2])
    if status < 100 or status > 599:
        raise InvalidMessage(f"status code {status} is out of range 100-599")
    reason = match[3].decode("latin-1")
    headers = _parse_fields(lines[1:])
    length = _body_length(status, headers, max_body)
    if len(buf) < size + length:
        return None
    body = bytes(buf[size : size + length])
    return Response(status, reason, headers, body), size + length


def _body_length(status: int, headers: Headers, max_body: int | None) -> int:
    # RFC 9112, section 6.3: these responses end with their head, whatever they say.
    if status < 200 or status in (204, 304):
        return 0
    coding = headers.get_all("Transfer-Encoding")
    if coding:
        if "chunked" in ",".join(coding).lower():
            raise InvalidMessage("chunked responses aren't supported")
        raise InvalidMessage(f"transfer-encoded responses aren't supported: {_shorten(coding[0])}")
    values = headers.get_all("Content-Length")
    if not values:
        return 0
    if len(values) > 1 or not _CONTENT_LENGTH_RE.fullmatch(values[0].encode("latin-1")):
        raise InvalidMessage(f"invalid Content-Length header: {_shorten(', '.join(values))}")
    length = int(values[0])
    if max_body is not None and length > max_body:
        raise SecurityError(f"response body of {length} bytes exceeds max_body of {max_body} bytes")
    return length


def _split_head(
    buf: bytes | bytearray,
    what: str,
    max_line: int | None,
    max_headers: int | None,
    max_size: int | None,
) -> tuple[list[bytes], int] | None:
    """Find the head at the start of ``buf`` and check its limits and line endings.

    Returns the lines of the head (the start line first) and its size in bytes
    including the final CRLF CRLF, or ``None`` if the head is incomplete.

    An incomplete head is checked too, as far as it goes: whatever breaks a limit
    in part of the head breaks it in the whole head, so any way of splitting the
    bytes gives the same error.
    """
    end = buf.find(b"\r\n\r\n")
    complete = end != -1
    size = end + 4 if complete else len(buf)
    # An incomplete head needs at least one more byte, hence >= rather than >.
    if max_size is not None and (size > max_size if complete else size >= max_size):
        qualifier = "" if complete else "more than "
        raise SecurityError(
            f"{what} head of {qualifier}{size} bytes exceeds max_size of {max_size} bytes"
        )
    lines = bytes(buf[:end] if complete else buf).split(b"\r\n")
    if not complete:
        # The last line is partial; a CR at its end may be the start of its CRLF.
        last = lines.pop()
        last = last[:-1] if last.endswith(b"\r") else last
        if last:
            lines.append(last)
    at_least = "" if complete else "at least "
    if max_headers is not None and len(lines) - 1 > max_headers:
        raise SecurityError(
            f"{what} has {at_least}{len(lines) - 1} header lines; max_headers is {max_headers}"
        )
    if max_line is not None and lines and max(map(len, lines)) > max_line:
        # max() in C is the fast check; only a refusal looks for the line to name.
        long_line = next(line for line in lines if len(line) > max_line)
        raise SecurityError(
            f"{what} line of {at_least}{len(long_line)} bytes exceeds max_line of {max_line} bytes"
        )
    # RFC 9112, section 2.2 lets a recipient accept a bare LF; we don't, and a
    # bare CR MUST be rejected or replaced. The lines came from splitting at
    # CRLF, so any CR or LF left is a bare one: counted in C over the whole head,
    # and only a refusal looks for the line to name.
    if complete:
        crlfs = len(lines) - 1
        has_bare = buf.count(b"\r", 0, end) != crlfs or buf.count(b"\n", 0, end) != crlfs
    else:
        has_bare = any(b"\r" in line or b"\n" in line for line in lines)
    if has_bare:
        bare = next(line for line in lines if b"\r" in line or b"\n" in line)
        raise InvalidMessage(f"bare CR or LF in {what} line: {_shorten(bare)}")
    return (lines, size) if complete else None


def _parse_fields(lines: list[bytes]) -> Headers:
    headers = Headers()
    # The fast path: one regular expression over all the lines, appending to
    # Headers directly (it validated every field).
    text = b"\r\n".join([*lines, b""]).decode("latin-1")
    pairs = _FIELD_LINES_RE.findall(text)
    if len(pairs) != len(lines):
        for line in lines:
            _check_field_line(line)
        # Not reached: _check_field_line raises for the line the expression refused.
        raise AssertionError(f"field lines should be invalid: {lines!r}")
    fields = headers._fields
    index = headers._index
    for name, raw_value in pairs:
        value = raw_value.strip(" \t")
        fields.append((name, value))
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return headers


def _check_field_line(line: bytes) -> None:
    """Raise the error that describes what is wrong with a field line."""
    # RFC 9112, section 5.2: a server MUST reject obs-fold (or replace it), and
    # section 2.2: whitespace before the first header line MUST be rejected too.
    if line[:1] in (b" ", b"\t"):
        raise InvalidMessage(f"obsolete line folding isn't supported: {_shorten(line)}")
    raw_name, colon, raw_value = line.partition(b":")
    # RFC 9112, section 5.1: no whitespace between the name and the colon.
    if not colon or not _TOKEN_RE_B.fullmatch(raw_name):
        raise InvalidMessage(f"invalid header line: {_shorten(line)}")
    raw_value = raw_value.strip(b" \t")
    if not _VALUE_RE_B.fullmatch(raw_value):
        raise InvalidMessage(f"invalid header value: {_shorten(line)}")
