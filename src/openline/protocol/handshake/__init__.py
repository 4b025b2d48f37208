"""The opening handshake of RFC 6455: keys, header values, negotiation, both sides.

See `RFC 6455, section 4 <https://datatracker.ietf.org/doc/html/rfc6455#section-4>`_.
:class:`ServerHandshake` turns a parsed :class:`~openline.protocol.http11.Request` into a response;
:class:`ClientHandshake` builds the request and checks the response. Neither does
any I/O: pair them with :func:`~openline.protocol.http11.parse_request` and
:func:`~openline.protocol.http11.parse_response`.

The header-value parsers follow the list syntax of RFC 9110, section 5.6.1: items
are separated by commas with optional whitespace around them, and empty items
are ignored.

The module is a package of three: :mod:`.common` (keys, header checks,
:class:`Negotiated`), :mod:`.server` and :mod:`.client`; every name of earlier
releases is importable from here.
"""

from __future__ import annotations

from ..headers import (
    ExtensionHeader,
    build_extensions,
    build_subprotocols,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_upgrade,
)
from ..uri import WebSocketURI, parse_uri
from .client import ClientHandshake
from .common import GUID, USER_AGENT, VERSION, Negotiated, accept_key, generate_key
from .server import ServerHandshake, ServerHandshakeResult

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
