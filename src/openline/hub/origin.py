"""Origin checks: which web pages may talk to ``openline serve`` and the hub's ASGI app.

A browser tells a server which page made a request with the ``Origin``
header (RFC 6454): it sends one with every WebSocket handshake and every
cross-origin ``fetch``, and a page can't forge it. Without a check, a page on
any other site could open the hub in its visitor's browser, read the lobby
and post in it (RFC 6455, section 10.2: servers that only expect their own
pages should verify ``Origin``).

:class:`OriginPolicy` decides, request by request:

* **Same origin** is allowed: the ``Origin``'s scheme, host and port equal the
  server's own — the scheme it serves (``http``, or ``https`` with TLS) and the
  host and port of the request's ``Host`` header (a missing port is the
  scheme's default, 80 or 443). Hosts compare as text, lower-cased:
  ``localhost`` and ``127.0.0.1`` are different origins, as they are to a
  browser.
* Origins added to the policy are allowed; ``"*"`` allows any (development).
* A request **without** ``Origin`` comes from something that isn't a browser
  page (``openline connect``, :class:`openline.hub.Client`, curl) or is a
  same-origin ``GET``; it is allowed unless the policy requires an origin.
  Browsers also send ``Sec-Fetch-Site``: without ``Origin``, ``same-origin``
  there counts as the server's own origin, and ``cross-site`` or
  ``same-site`` is refused like a foreign origin.
* Anything else is refused: :meth:`OriginPolicy.refusal` returns the reason,
  one line, which the server sends with a 403.

The check is not authentication: a program that isn't a browser can send any
``Origin`` it likes. It keeps other sites' pages out of their visitors'
browsers, which is the attack it exists for.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from ..protocol.http11 import Request

__all__ = ["ANY_ORIGIN", "Origin", "OriginPolicy", "parse_origin", "request_origin"]

#: The value that allows every origin (for development only).
ANY_ORIGIN = "*"

_DEFAULT_PORTS = {"http": 80, "https": 443}
# scheme://host[:port], nothing else: an IPv6 literal in brackets, or a name or
# IPv4 address without the characters that delimit URL parts.
_ORIGIN_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/?#@\[\]:]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_HOST_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/?#@\[\]:]+)(?::(?P<port>[0-9]{0,5}))?")
#: Longest header value quoted back in a refusal.
_MAX_SHOWN = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    """A web origin: scheme, host and port (RFC 6454, section 4).

    Attributes:
        scheme: ``"http"`` or ``"https"``, lower case.
        host: The host, lower case; an IPv6 literal keeps its brackets.
        port: The port, explicit even when it is the scheme's default.
    """

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        # RFC 6454, section 6.2: the default port is omitted.
        if _DEFAULT_PORTS.get(self.scheme) == self.port:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_origin(text: str) -> Origin:
    """Parse an origin such as ``https://example.com`` or ``http://[::1]:8765``.

    Args:
        text: ``scheme://host[:port]``, without a path, query or user name.

    Raises:
        ValueError: ``text`` isn't such an origin, its scheme isn't ``http``
            or ``https``, or its port is out of range.
    """
    match = _ORIGIN_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected an origin like https://example.com[:port], got {text!r}")
    scheme = match["scheme"].lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"an origin's scheme must be http or https, got {text!r}")
    port = _port(match["port"], _DEFAULT_PORTS[scheme])
    if port is None:
        raise ValueError(f"an origin's port must be between 1 and 65535, got {text!r}")
    return Origin(scheme, match["host"].lower(), port)


def request_origin(request: Request, *, secure: bool) -> Origin | None:
    """The server's own origin as ``request`` names it: its ``Host``, our scheme.

    Args:
        request: The request; its ``Host`` header gives the host and port.
        secure: Whether the server speaks TLS (``https``) or not (``http``).

    Returns:
        The origin, or ``None`` when ``Host`` is missing, repeated or malformed.
    """
    values = request.headers.get_all("Host")
    if len(values) != 1:
        return None
    match = _HOST_RE.fullmatch(values[0].strip())
    if match is None:
        return None
    scheme = "https" if secure else "http"
    port = _port(match["port"], _DEFAULT_PORTS[scheme])
    return None if port is None else Origin(scheme, match["host"].lower(), port)


@dataclasses.dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which origins may make requests that matter (see the module docstring).

    Attributes:
        allowed: Origins allowed besides the server's own.
        allow_any: Allow every origin (development only).
        required: Refuse requests that carry no ``Origin`` (and no
            ``Sec-Fetch-Site: same-origin``), that is, clients that aren't
            browser pages.
    """

    allowed: frozenset[Origin] = frozenset()
    allow_any: bool = False
    required: bool = False

    @classmethod
    def from_strings(cls, origins: Iterable[str] = (), *, required: bool = False) -> OriginPolicy:
        """Build a policy from origins as text; ``"*"`` allows any origin.

        Raises:
            ValueError: A value isn't an origin (see :func:`parse_origin`) nor ``"*"``.
        """
        allowed: set[Origin] = set()
        allow_any = False
        for text in origins:
            if text == ANY_ORIGIN:
                allow_any = True
            else:
                allowed.add(parse_origin(text))
        return cls(frozenset(allowed), allow_any, required)

    def refusal(self, request: Request, *, secure: bool) -> str | None:
        """Judge ``request``: ``None`` allows it, else the reason to refuse it (one line).

        Args:
            request: The request (an upgrade, or an API call).
            secure: Whether the server speaks TLS; the scheme of its own origin.
        """
        values = request.headers.get_all("Origin")
        if len(values) > 1:
            return "more than one Origin header"
        if not values:
            return self._refusal_without_origin(request)
        if self.allow_any:
            return None
        own = request_origin(request, secure=secure)
        try:
            origin = parse_origin(values[0])
        except ValueError:
            origin = None  # "null" (a sandboxed page, a file) or another scheme
        if origin is not None and (origin == own or origin in self.allowed):
            return None
        mine = "unknown, the Host header is invalid" if own is None else str(own)
        return (
            f"cross-origin request refused: Origin {_shown(values[0])} is neither "
            f"this server's origin ({mine}) nor an allowed one"
        )

    def _refusal_without_origin(self, request: Request) -> str | None:
        # Sec-Fetch-Site is set by browsers only; scripts can't change it.
        site = [value.strip().lower() for value in request.headers.get_all("Sec-Fetch-Site")]
        if site == ["same-origin"]:
            return None
        if not self.allow_any and any(value in ("cross-site", "same-site") for value in site):
            return "cross-site request refused: a browser sent it from another site"
        if self.required:
            return "an Origin header is required"
        return None


def _port(text: str | None, default: int) -> int | None:
    if text is None or text == "":
        return default
    value = int(text)
    return value if 0 < value <= 65535 else None


def _shown(value: str) -> str:
    """A header value fit to quote back: truncated, control characters escaped."""
    shown = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
    return repr(shown.encode("unicode_escape").decode("ascii"))
