"""The server side of the opening handshake (RFC 6455, section 4.2).

:class:`ServerHandshake` turns a parsed :class:`~openline.protocol.http11.Request`
into a response; it does no I/O: pair it with
:func:`~openline.protocol.http11.parse_request`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ...exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidOrigin,
    InvalidUpgrade,
    NegotiationError,
)
from ..extensions.base import (
    Extension,
    ServerExtensionFactory,
)
from ..headers import (
    ExtensionHeader,
    build_extensions,
    check_token,
    parse_extensions,
    parse_subprotocols,
)
from ..http11 import Headers, HeadersLike, Request, Response
from .common import (
    _HOST_RE,
    USER_AGENT,
    VERSION,
    Negotiated,
    _accept_key_bytes,
    _check_upgrade,
    _get_single,
    _is_valid_key,
    _parse_all,
    accept_key,
)

__all__ = [
    "ServerHandshake",
    "ServerHandshakeResult",
]

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
        :class:`~openline.protocol.http11.Headers` and :class:`~openline.protocol.http11.Response`.

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

        For the I/O layer too: 400 when :func:`~openline.protocol.http11.parse_request` raises
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
