"""The client side of the opening handshake (RFC 6455, section 4.1).

:class:`ClientHandshake` builds the request and checks the response; it does no
I/O: pair it with :func:`~openline.protocol.http11.parse_response`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...exceptions import (
    InvalidHeader,
    InvalidState,
    InvalidStatus,
    NegotiationError,
    _shorten,
)
from ..extensions.base import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
)
from ..headers import (
    build_extensions,
    build_subprotocols,
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
    _check_upgrade,
    _get_single,
    _parse_all,
    accept_key,
    generate_key,
)

__all__ = [
    "ClientHandshake",
]

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
