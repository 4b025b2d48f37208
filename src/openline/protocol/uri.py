"""``ws://`` and ``wss://`` URIs (RFC 6455, section 3)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse

from ..exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

_REG_NAME_RE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=%]+")
_PATH_SAFE = "/:@!$&'()*+,;=-._~%?"


@dataclasses.dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI (RFC 6455, section 3).

    Attributes:
        secure: ``True`` for ``wss``.
        host: The host, lower-cased, without the brackets of an IPv6 literal;
            an internationalized name is IDNA-encoded.
        port: The port, 80 or 443 by default.
        path: The path and query, percent-encoded, starting with ``/``.
        user_info: ``(username, password)``, percent-decoded, or ``None``. The
            password is empty when the URI has none.
    """

    secure: bool
    host: str
    port: int
    path: str = "/"
    user_info: tuple[str, str] | None = None


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and check a WebSocket URI.

    Raises:
        InvalidURI: The scheme isn't ``ws`` or ``wss``, the URI has a fragment,
            whitespace or control characters, or lacks a valid host or port.
    """
    # urlsplit silently drops tabs and newlines: reject them, and spaces, first.
    if any(char <= " " or char == "\x7f" for char in uri):
        raise InvalidURI(uri, "contains whitespace or control characters")
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc).lower()) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    # RFC 6455, section 3: fragment identifiers MUST NOT be used in WebSocket URIs.
    if "#" in uri:
        raise InvalidURI(uri, "contains a fragment")
    bracketed = parsed.netloc.rpartition("@")[2].startswith("[")
    host = _encode_host(uri, parsed.hostname, bracketed=bracketed)
    secure = parsed.scheme == "wss"
    if port is None:
        port = 443 if secure else 80
    elif port == 0:
        raise InvalidURI(uri, "port 0 isn't allowed")
    path = parsed.path or "/"
    if parsed.query:
        path = f"{path}?{parsed.query}"
    path = urllib.parse.quote(path, safe=_PATH_SAFE)
    user_info = None
    if parsed.username is not None:
        username = urllib.parse.unquote(parsed.username)
        user_info = (username, urllib.parse.unquote(parsed.password or ""))
    return WebSocketURI(secure, host, port, path, user_info)


def _encode_host(uri: str, host: str | None, *, bracketed: bool) -> str:
    if not host:
        raise InvalidURI(uri, "missing host")
    if bracketed:
        # Python 3.11+ checks IP literals in urlsplit; 3.10 doesn't, so check here.
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidURI(
                uri, f"{host!r} does not appear to be an ipv4 or ipv6 address"
            ) from None
        return host
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidURI(uri, "invalid host name") from None
    if not _REG_NAME_RE.fullmatch(host):
        raise InvalidURI(uri, "invalid host name")
    return host
