"""The opening handshake of RFC 6455: keys, header values, negotiation, both sides.

See `RFC 6455, section 4 <https://datatracker.ietf.org/doc/html/rfc6455#section-4>`_.
:class:`ServerHandshake` turns a parsed :class:`~.http11.Request` into a response;
:class:`ClientHandshake` builds the request and checks the response. Neither does
any I/O: pair them with :func:`~.http11.parse_request` and
:func:`~.http11.parse_response`.

The header-value parsers follow the list syntax of RFC 9110, section 5.6.1: items
are separated by commas with optional whitespace around them, and empty items
are ignored.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    _shorten,
)
from .extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from .headers import (
    ExtensionHeader,
    build_extensions,
    build_subprotocols,
    check_token,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_upgrade,
)
from .http11 import Headers, HeadersLike, MultipleValuesError, Request, Response
from .uri import WebSocketURI, parse_uri

__all__ = [
    "GUID",
    "USER_AGENT",
    "VERSION",
    "ClientHandshake",
    "ExtensionHeader",
    "Negotiated",
    "ServerHandshake",
    "ServerHandshakeResult",
    "WebSocketURI",
    "accept_key",
    "build_extensions",
    "build_subprotocols",
    "generate_key",
    "parse_connection",
    "parse_extensions",
    "parse_subprotocols",
    "parse_upgrade",
    "parse_uri",
]

#: The GUID that RFC 6455, section 1.3 appends to the key to compute the accept value.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Default value of the ``Server`` and ``User-Agent`` headers.
USER_AGENT = "openline/0.1"
#: The only protocol version of RFC 6455 (section 4.1).
VERSION = "13"


_T = TypeVar("_T")

# RFC 9110, section 5.6.4: quoted-string with quoted-pair.
# RFC 3986, section 3.2.2: an IP literal or a reg-name, then an optional port.
_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
# RFC 6455, section 4.2.1: the key is base64 of 16 bytes: 22 characters, "==".
# The 22nd character holds 2 bits of data and 4 zero bits, hence [AQgw]: the
# canonical encoding only.
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{21}[AQgw]==")
# The exact values nearly every client sends: they pass the full grammar below,
# so a request carrying them can skip it.
_COMMON_UPGRADE = (["websocket"],)
_COMMON_CONNECTION = (["Upgrade"], ["upgrade"], ["keep-alive, Upgrade"])
# The fixed start of every 101 response, up to the accept value.
_ACCEPT_PREFIX = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)
# RFC 9110, section 15.5.22: a 426 MUST send Upgrade; section 7.8: whoever sends
# Upgrade MUST send Connection: upgrade too.
_UPGRADE_REQUIRED = (("Upgrade", "websocket"), ("Connection", "Upgrade"))
# Headers the handshake sets; extra_headers may not set them.
_RESERVED = frozenset(
    name.lower()
    for name in (
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
    )
)


# --- keys -------------------------------------------------------------------------------


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key`` value.

    RFC 6455, section 4.1: a nonce of 16 random bytes, base64-encoded, chosen anew
    for every connection.
    """
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value that answers ``key``.

    RFC 6455, section 4.2.2: the base64 encoding of the SHA-1 hash of the key
    followed by :data:`GUID`. SHA-1 serves as a checksum here, not for security.
    """
    return _accept_key_bytes(key).decode("ascii")


def _accept_key_bytes(key: str) -> bytes:
    digest = hashlib.sha1((key + GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest)


def _is_valid_key(key: str) -> bool:
    # RFC 6455, section 4.2.1: base64 of exactly 16 bytes. Requiring the canonical
    # encoding rejects keys whose unused trailing bits are set.
    return _KEY_RE.fullmatch(key) is not None


def _parse_all(headers: Headers, name: str, parse: Callable[[str], list[_T]]) -> list[_T]:
    # Several field lines with one name are one comma-separated list (RFC 9110, 5.3).
    return [item for value in headers.get_all(name) for item in parse(value)]


def _get_single(headers: Headers, name: str) -> str | None:
    try:
        return headers.get(name)
    except MultipleValuesError as exc:
        raise InvalidHeader(name, ", ".join(headers.get_all(name))) from exc


def _check_upgrade(headers: Headers, *, exact: bool) -> None:
    """Check ``Upgrade`` and ``Connection``, for a request or, with ``exact``, a response.

    Raises:
        InvalidUpgrade: A header is missing, malformed or doesn't ask for websocket.
    """
    if (
        not exact
        and headers.get_all("Upgrade") in _COMMON_UPGRADE
        and headers.get_all("Connection") in _COMMON_CONNECTION
    ):
        return
    for name, parse in (("Upgrade", parse_upgrade), ("Connection", parse_connection)):
        values = headers.get_all(name)
        if not values:
            raise InvalidUpgrade(name)
        try:
            tokens = [token.lower() for token in _parse_all(headers, name, parse)]
        except InvalidHeaderValue as exc:
            raise InvalidUpgrade(name, ", ".join(values)) from exc
        if name == "Upgrade":
            # RFC 6455, section 4.1: the client MUST fail the connection unless the
            # response's Upgrade is "websocket"; section 4.2.1: a request's Upgrade
            # must include "websocket".
            ok = tokens == ["websocket"] if exact else "websocket" in tokens
        else:
            # RFC 6455, sections 4.1 and 4.2.1: Connection must include "Upgrade";
            # Firefox sends "keep-alive, Upgrade".
            ok = "upgrade" in tokens
        if not ok:
            raise InvalidUpgrade(name, ", ".join(values))


# --- results ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Negotiated:
    """What the handshake agreed on.

    Attributes:
        subprotocol: The subprotocol, or ``None`` if there is none.
        extensions: The extensions, in the order they apply to outgoing frames.
    """

    subprotocol: str | None = None
    extensions: tuple[Extension, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ServerHandshakeResult:
    """The outcome of :meth:`ServerHandshake.process_request`.

    Exactly one of ``negotiated`` and ``error`` is ``None``.

    Attributes:
        response: The response to send: a 101 on success, else a plain-text
            rejection that closes the connection.
        negotiated: What was agreed on, on success.
        error: Why the request was rejected, for the I/O layer to log or raise.
    """

    response: Response
    negotiated: Negotiated | None = None
    error: InvalidHandshake | None = None

    @property
    def accepted(self) -> bool:
        """Whether the handshake succeeded and the response is a 101."""
        return self.negotiated is not None


class _Rejection(Exception):
    """Internal: a request check failed; carries the response status and headers."""

    def __init__(
        self, status: int, error: InvalidHandshake, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(status, error)
        self.status = status
        self.error = error
        self.headers = headers


# --- server -----------------------------------------------------------------------------


class ServerHandshake:
    """The server side of the opening handshake (RFC 6455, section 4.2).

    Args:
        subprotocols: Subprotocols the server supports, most preferred first;
            ``None`` supports none.
        extensions: Extension factories, most preferred first; ``None`` supports none.
        origins: Allowed values of the ``Origin`` header; a ``None`` item allows
            requests without ``Origin`` (non-browser clients). ``None`` disables
            the check.
        select_subprotocol: Picks a subprotocol among the client's offers (called
            only when there are offers) or returns ``None``; it must return one of
            the offers. ``None`` picks the first of ``subprotocols``, in the
            server's order, that the client offers.
        server_header: Value of the ``Server`` header; ``None`` omits it.

    Raises:
        ValueError: A subprotocol or extension name isn't a token, or
            ``server_header`` contains a control character.
    """

    def __init__(
        self,
        *,
        # protocol
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        select_subprotocol: Callable[[Sequence[str]], str | None] | None = None,
        # security
        origins: Sequence[str | None] | None = None,
        # advanced
        server_header: str | None = USER_AGENT,
    ) -> None:
        self.subprotocols = [check_token(s, "subprotocol") for s in subprotocols or ()]
        self.extensions = list(extensions or ())
        for factory in self.extensions:
            check_token(factory.name, "extension name")
        self.origins = None if origins is None else list(origins)
        self.select_subprotocol = select_subprotocol
        self._base_headers = Headers()
        if server_header is not None:
            try:
                self._base_headers["Server"] = server_header
            except ValueError:
                raise ValueError(f"invalid server_header: {server_header!r}") from None
        # What follows the variable part of every 101 response, serialized once.
        self._accept_suffix = b"".join(
            f"{name}: {value}\r\n".encode("latin-1")
            for name, value in self._base_headers.raw_items()
        )

    # --- public API -------------------------------------------------------------------

    def process_request(self, request: Request) -> ServerHandshakeResult:
        """Check an upgrade request and build the response.

        Rejections, in the order the checks run:

        * 405 (with ``Allow: GET``) for a method other than ``GET``;
        * 400 when ``Host`` is missing, repeated or malformed;
        * 426 (with ``Upgrade: websocket``) when ``Upgrade`` doesn't include
          ``websocket`` or ``Connection`` doesn't include ``upgrade``;
        * 400 when ``Sec-WebSocket-Key`` is missing, repeated, or not 16 bytes in base64;
        * 400 when ``Sec-WebSocket-Version`` is missing or repeated: the request
          isn't a WebSocket handshake (section 4.2.1); 426 (with
          ``Sec-WebSocket-Version: 13`` and ``Upgrade``) for another version (section 4.4);
        * 403 when ``Origin`` isn't allowed, 400 when it is repeated;
        * 400 when ``Sec-WebSocket-Protocol`` or ``Sec-WebSocket-Extensions`` is malformed.

        Extensions are negotiated over the client's offers in order: each offer goes
        to the server's factory with that name, unless an extension with that name
        is already accepted; a factory raising ``NegotiationError`` declines the offer.

        Returns:
            The response and either what was negotiated or why the request failed.

        Raises:
            ValueError: ``select_subprotocol`` returned a subprotocol the client
                didn't offer.
        """
        try:
            key, subprotocol, extension_header, extensions = self._negotiate(request)
        except _Rejection as rejection:
            response = self._rejection_response(rejection)
            return ServerHandshakeResult(response, None, rejection.error)
        headers = Headers(
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(key)),
            ]
        )
        if extension_header is not None:
            headers.add("Sec-WebSocket-Extensions", extension_header)
        if subprotocol is not None:
            headers.add("Sec-WebSocket-Protocol", subprotocol)
        for name, value in self._base_headers.raw_items():
            headers.add(name, value)
        response = Response(101, "Switching Protocols", headers)
        return ServerHandshakeResult(response, Negotiated(subprotocol, tuple(extensions)))

    def process_request_head(
        self, request: Request
    ) -> tuple[bytes, Negotiated | None, InvalidHandshake | None]:
        """Like :meth:`process_request`, with the response already serialized.

        The I/O layer's fast path: the same checks and the same bytes on the
        wire, but a 101 is filled into a template instead of going through
        :class:`~.http11.Headers` and :class:`~.http11.Response`.

        Returns:
            The response's bytes, what was negotiated (``None`` on rejection),
            and why the request was rejected (``None`` on success).

        Raises:
            ValueError: ``select_subprotocol`` returned a subprotocol the client
                didn't offer.
        """
        try:
            key, subprotocol, extension_header, extensions = self._negotiate(request)
        except _Rejection as rejection:
            return self._rejection_response(rejection).serialize(), None, rejection.error
        head = self._accept_head(key, subprotocol, extension_header)
        return head, Negotiated(subprotocol, tuple(extensions)), None

    def build_response_head(self, request: Request, subprotocol: str | None) -> bytes:
        """Serialize again the 101 that answered ``request``, negotiated without extensions.

        Lets the I/O layer drop the response's bytes while a connection is open.

        Raises:
            KeyError: ``request`` has no ``Sec-WebSocket-Key``.
        """
        return self._accept_head(request.headers["Sec-WebSocket-Key"], subprotocol, None)

    def reject(self, status: int, text: str, headers: HeadersLike | None = None) -> Response:
        """Build a plain-text rejection with the ``Server`` header.

        For the I/O layer too: 400 when :func:`~.http11.parse_request` raises
        ``InvalidMessage``, 431 or 400 for ``SecurityError``, 503 while shutting down.

        Raises:
            ValueError: A header is invalid or ``status`` isn't a three-digit code.
        """
        fields = Headers(headers)
        for name, value in self._base_headers.raw_items():
            fields.add(name, value)
        return Response.plain(status, text, fields)

    # --- private checks ---------------------------------------------------------------

    def _negotiate(self, request: Request) -> tuple[str, str | None, str | None, list[Extension]]:
        """Check the request; return its key, the subprotocol and the extensions."""
        key = self._check_request(request)
        subprotocol = self._choose_subprotocol(request.headers)
        answers, extensions = self._negotiate_extensions(request.headers)
        return key, subprotocol, build_extensions(answers) if answers else None, extensions

    def _rejection_response(self, rejection: _Rejection) -> Response:
        text = f"failed to open a websocket connection: {rejection.error}\n"
        return self.reject(rejection.status, text, rejection.headers)

    def _accept_head(self, key: str, subprotocol: str | None, extensions: str | None) -> bytes:
        # Every value is a token or base64 (checked by the negotiation), so
        # nothing needs the checks of Headers; a test compares both paths.
        parts = [_ACCEPT_PREFIX, _accept_key_bytes(key), b"\r\n"]
        if extensions is not None:
            parts += [b"Sec-WebSocket-Extensions: ", extensions.encode("latin-1"), b"\r\n"]
        if subprotocol is not None:
            parts += [b"Sec-WebSocket-Protocol: ", subprotocol.encode("latin-1"), b"\r\n"]
        parts += [self._accept_suffix, b"\r\n"]
        return b"".join(parts)

    def _check_request(self, request: Request) -> str:
        """Check the request's method and headers; return its key."""
        if request.method != "GET":
            # RFC 6455, section 4.1: the handshake MUST be a GET request.
            error = InvalidMessage(f"unsupported HTTP method: {request.method}; expected GET")
            raise _Rejection(405, error, [("Allow", "GET")])
        headers = request.headers
        try:
            # RFC 9112, section 3.2: 400 for a missing, repeated or invalid Host.
            host = _get_single(headers, "Host")
            if host is None or not _HOST_RE.fullmatch(host):
                raise InvalidHeader("Host", host)
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        try:
            _check_upgrade(headers, exact=False)
        except InvalidUpgrade as exc:
            raise _Rejection(426, exc, _UPGRADE_REQUIRED) from None
        key = self._check_key(headers)
        self._check_version(headers)
        self._check_origin(headers)
        return key

    def _check_key(self, headers: Headers) -> str:
        try:
            key = _get_single(headers, "Sec-WebSocket-Key")
            if key is None or not _is_valid_key(key):
                raise InvalidHeader("Sec-WebSocket-Key", key)
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        return key

    def _check_version(self, headers: Headers) -> None:
        try:
            version = _get_single(headers, "Sec-WebSocket-Version")
            if version is None:
                raise InvalidHeader("Sec-WebSocket-Version")
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        if version != VERSION:
            # RFC 6455, section 4.4: answer an unknown version with an error such as
            # 426 and the versions we understand; RFC 9110 rules for 426 apply too.
            error = InvalidHeader("Sec-WebSocket-Version", version)
            fields = [*_UPGRADE_REQUIRED, ("Sec-WebSocket-Version", VERSION)]
            raise _Rejection(426, error, fields)

    def _check_origin(self, headers: Headers) -> None:
        if self.origins is None:
            return
        try:
            origin = _get_single(headers, "Origin")
        except InvalidHeader as exc:
            raise _Rejection(400, exc) from None
        # RFC 6455, section 4.2.2 lets the server reject an origin it doesn't
        # trust, with an HTTP error; 403 says the request itself was fine.
        if origin not in self.origins:
            raise _Rejection(403, InvalidOrigin(origin))

    # --- private negotiation ----------------------------------------------------------

    def _choose_subprotocol(self, headers: Headers) -> str | None:
        try:
            offers = _parse_all(headers, "Sec-WebSocket-Protocol", parse_subprotocols)
        except InvalidHeaderValue as exc:
            raise _Rejection(400, exc) from None
        if not offers:
            return None
        if self.select_subprotocol is None:
            return next((s for s in self.subprotocols if s in offers), None)
        subprotocol = self.select_subprotocol(offers)
        # RFC 6455, section 4.2.2: the answer MUST be one of the client's offers.
        if subprotocol is not None and subprotocol not in offers:
            raise ValueError(
                f"select_subprotocol returned {subprotocol!r}, which the client didn't offer"
            )
        return subprotocol

    def _negotiate_extensions(
        self, headers: Headers
    ) -> tuple[list[ExtensionHeader], list[Extension]]:
        try:
            offers = _parse_all(headers, "Sec-WebSocket-Extensions", parse_extensions)
        except InvalidHeaderValue as exc:
            raise _Rejection(400, exc) from None
        if not offers:
            return [], []
        factories: dict[str, ServerExtensionFactory] = {}
        for candidate in self.extensions:
            factories.setdefault(candidate.name, candidate)
        answers: list[ExtensionHeader] = []
        accepted: list[Extension] = []
        for name, params in offers:
            factory = factories.get(name)
            # Several offers of one extension are alternatives: keep the first that fits.
            if factory is None or any(answer[0] == name for answer in answers):
                continue
            try:
                answer_params, extension = factory.process_request_params(params, accepted)
            except NegotiationError:
                continue
            answers.append((name, answer_params))
            accepted.append(extension)
        return answers, accepted


# --- client -----------------------------------------------------------------------------


class ClientHandshake:
    """The client side of the opening handshake (RFC 6455, section 4.1).

    Args:
        host: The server's host name or IP address (IPv6 without brackets).
        port: The server's port.
        path: The request target: path and query, such as ``/chat?room=1``.
        secure: Whether the connection uses TLS (``wss``); decides the default port.
        subprotocols: Subprotocols to offer, most preferred first; ``None`` offers none.
        extensions: Extension factories whose offers to send, in order; ``None``
            offers none.
        origin: Value of the ``Origin`` header; ``None`` omits it.
        extra_headers: More request headers. They may replace ``Host``, ``Origin``
            and ``User-Agent``, not the headers the handshake itself uses.
        user_agent: Value of the ``User-Agent`` header; ``None`` omits it.

    Raises:
        ValueError: An argument is malformed, or ``extra_headers`` sets a handshake
            header (the message names the argument).
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/",
        *,
        secure: bool,
        # protocol
        subprotocols: Sequence[str] | None = None,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        # headers
        origin: str | None = None,
        extra_headers: HeadersLike | None = None,
        user_agent: str | None = USER_AGENT,
    ) -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be between 1 and 65535: {port}")
        if not path.startswith("/") or not re.fullmatch(r"[\x21-\x7e]+", path):
            raise ValueError(f"path must start with / and be printable ASCII: {path!r}")
        self.host = host
        self.port = port
        self.path = path
        self.secure = secure
        self.subprotocols = [check_token(s, "subprotocol") for s in subprotocols or ()]
        self.extensions = list(extensions or ())
        for factory in self.extensions:
            check_token(factory.name, "extension name")
        self._host = self._host_header()
        self.headers = self._build_base_headers(origin, extra_headers, user_agent)
        #: The key of the last request built, or ``None`` before :meth:`build_request`.
        self.key: str | None = None

    # --- public API -------------------------------------------------------------------

    def build_request(self) -> Request:
        """Build the upgrade request, with a fresh key each time it is called."""
        self.key = generate_key()
        headers = Headers()
        # Host goes first (RFC 9112, section 3.2: a client SHOULD send it first).
        if "Host" not in self.headers:
            headers["Host"] = self._host
        headers.add("Upgrade", "websocket")
        headers.add("Connection", "Upgrade")
        headers.add("Sec-WebSocket-Key", self.key)
        headers.add("Sec-WebSocket-Version", VERSION)
        if self.extensions:
            offers = [(f.name, f.get_request_params()) for f in self.extensions]
            headers.add("Sec-WebSocket-Extensions", build_extensions(offers))
        if self.subprotocols:
            headers.add("Sec-WebSocket-Protocol", build_subprotocols(self.subprotocols))
        for name, value in self.headers.raw_items():
            headers.add(name, value)
        return Request(self.path, headers)

    def process_response(self, response: Response) -> Negotiated:
        """Check the server's response to the last request built.

        Returns:
            What the server agreed to.

        Raises:
            InvalidState: :meth:`build_request` wasn't called.
            InvalidStatus: The status isn't 101.
            InvalidUpgrade: ``Upgrade`` isn't ``websocket`` or ``Connection``
                doesn't include ``upgrade``.
            InvalidHeader: ``Sec-WebSocket-Accept`` is missing, repeated or wrong.
            InvalidHeaderValue: ``Sec-WebSocket-Extensions`` or
                ``Sec-WebSocket-Protocol`` is malformed.
            NegotiationError: The server chose an extension or subprotocol that
                wasn't offered, several subprotocols, or parameters that an
                extension factory refuses.
        """
        if self.key is None:
            raise InvalidState("process_response() called before build_request()")
        if response.status != 101:
            raise InvalidStatus(response.status, response)
        headers = response.headers
        _check_upgrade(headers, exact=True)
        accept = _get_single(headers, "Sec-WebSocket-Accept")
        # RFC 6455, section 4.1: the client MUST fail unless the accept value matches.
        if accept != accept_key(self.key):
            raise InvalidHeader("Sec-WebSocket-Accept", accept)
        extensions = self._accept_extensions(headers)
        subprotocol = self._accept_subprotocol(headers)
        return Negotiated(subprotocol, tuple(extensions))

    # --- private ----------------------------------------------------------------------

    def _build_base_headers(
        self, origin: str | None, extra_headers: HeadersLike | None, user_agent: str | None
    ) -> Headers:
        try:
            extra = Headers(extra_headers)
        except ValueError as exc:
            raise ValueError(f"invalid extra_headers: {exc}") from None
        for name in extra:
            if name in _RESERVED:
                raise ValueError(f"extra_headers may not set {name}: the handshake sets it")
        headers = Headers()
        for name, value in (("Origin", origin), ("User-Agent", user_agent)):
            if value is not None and name not in extra:
                try:
                    headers.add(name, value)
                except ValueError:
                    argument = name.lower().replace("-", "_")
                    raise ValueError(f"invalid {argument}: {value!r}") from None
        for name, value in extra.raw_items():
            headers.add(name, value)
        return headers

    def _host_header(self) -> str:
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # RFC 3986, section 3.2.2: an IPv6 literal in brackets
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"invalid host: {self.host!r}")
        if self.port != (443 if self.secure else 80):
            host = f"{host}:{self.port}"
        return host

    def _accept_extensions(self, headers: Headers) -> list[Extension]:
        accepted: list[Extension] = []
        names: list[str] = []
        for name, params in _parse_all(headers, "Sec-WebSocket-Extensions", parse_extensions):
            # RFC 6455, section 9.1: the server may only answer with extensions the
            # client offered; the client MUST fail the connection otherwise.
            factories = [f for f in self.extensions if f.name == name]
            if not factories:
                raise NegotiationError(f"server accepted an extension that wasn't offered: {name}")
            if name in names:
                raise NegotiationError(f"server accepted extension {name} twice")
            accepted.append(self._accept_extension(factories, params, accepted))
            names.append(name)
        return accepted

    @staticmethod
    def _accept_extension(
        factories: list[ClientExtensionFactory],
        params: list[ExtensionParameter],
        accepted: list[Extension],
    ) -> Extension:
        # Several offers with one name are alternatives: the first factory that
        # accepts the answer wins; if none does, its refusal explains why.
        for factory in factories[:-1]:
            try:
                return factory.process_response_params(params, accepted)
            except NegotiationError:
                continue
        return factories[-1].process_response_params(params, accepted)

    def _accept_subprotocol(self, headers: Headers) -> str | None:
        subprotocols = _parse_all(headers, "Sec-WebSocket-Protocol", parse_subprotocols)
        if not subprotocols:
            return None
        if len(subprotocols) > 1:
            chosen = _shorten(", ".join(subprotocols))
            raise NegotiationError(f"server chose several subprotocols: {chosen}")
        # RFC 6455, section 4.1: the client MUST fail the connection if the server
        # chose a subprotocol it didn't offer.
        if subprotocols[0] not in self.subprotocols:
            chosen = _shorten(subprotocols[0])
            raise NegotiationError(f"server chose a subprotocol that wasn't offered: {chosen}")
        return subprotocols[0]
