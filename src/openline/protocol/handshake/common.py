"""What both sides of the opening handshake share: keys, header checks, the result.

See `RFC 6455, section 4 <https://datatracker.ietf.org/doc/html/rfc6455#section-4>`_.
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
from collections.abc import Callable
from typing import TypeVar

from ...exceptions import (
    InvalidHeader,
    InvalidHeaderValue,
    InvalidUpgrade,
)
from ..extensions.base import (
    Extension,
)
from ..headers import (
    parse_connection,
    parse_upgrade,
)
from ..http11 import Headers, MultipleValuesError

__all__ = [
    "GUID",
    "USER_AGENT",
    "VERSION",
    "Negotiated",
    "accept_key",
    "generate_key",
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
