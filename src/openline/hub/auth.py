"""Authentication at the handshake, and per-channel permissions.

Two hooks, both optional, both plain or ``async`` functions:

* ``authenticate(credentials) -> Identity | None`` runs once per connection,
  during the opening handshake. ``None`` refuses with 401; raising
  :class:`Reject` refuses with its status (403 by default). The token comes
  from the first of: an ``Authorization: Bearer <token>`` header, a subprotocol
  offer ``openline.token.<token>`` (for browsers, which can't set headers), or a
  ``token`` query parameter.
* ``authorize(identity, action, ch) -> bool`` runs before each subscribe,
  publish, and presence action on a channel; ``False`` becomes an ``error``
  reply with the code ``forbidden``.
"""

from __future__ import annotations

import dataclasses
import inspect
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from ..exceptions import HubError, InvalidHeader
from ..protocol.handshake import parse_subprotocols
from ..protocol.http11 import Request

__all__ = [
    "TOKEN_PREFIX",
    "Action",
    "Admission",
    "Authenticate",
    "Authorize",
    "Credentials",
    "Identity",
    "Refusal",
    "Reject",
]

#: Prefix of a subprotocol offer that carries a token: ``openline.token.<token>``.
TOKEN_PREFIX = "openline.token."

#: What a client wants to do on a channel. ``"presence"`` covers seeing presence
#: (snapshots and events) and setting ephemeral state.
Action = Literal["subscribe", "publish", "presence"]


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who is on the other end of a connection.

    Attributes:
        user: The user id. Presence aggregates connections by it.
        info: Public details (a display name, an avatar), shown to everyone who
            sees the user's presence: keep secrets out. Must be JSON-serializable.
        anonymous: Whether the identity was made up for a connection that
            presented no credentials (a guest with a fresh id per connection).
            Such a user is new after every redial, so its publish ids can't be
            scoped per user: they share one scope per channel, like the
            connections of a hub without an ``authenticate`` hook, and must be
            random (the clients' are).
        expires: When the credentials expire, in Unix seconds; ``None`` never.
            Before then the hub asks the client for a new token (``refresh``),
            and it closes a connection that didn't send one with 4001.
    """

    user: str
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    anonymous: bool = dataclasses.field(default=False, kw_only=True)
    expires: float | None = dataclasses.field(default=None, kw_only=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """What ``authenticate`` gets to decide with.

    Attributes:
        token: The token the client presented, or ``None``.
        request: The upgrade request (path, headers), for cookies and the like.
            Inside an ASGI app it is rebuilt from the scope: ``path`` is the
            full path with its query string, the headers are the scope's.
        remote_address: The peer's address, as the socket reports it (the
            scope's ``client`` inside an ASGI app, ``None`` when it has none).
        scope: The ASGI scope of the connection when the hub runs inside an
            ASGI app (see :mod:`openline.hub.asgi`), ``None`` otherwise: what
            the app's middleware put there (``scope["session"]``,
            ``scope["user"]``, ``scope["state"]``) can vouch for the user.
    """

    token: str | None
    request: Request
    remote_address: Any
    scope: Mapping[str, Any] | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parameters of the request target."""
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.request.path).query)


class Reject(HubError):
    """Raise in ``authenticate`` to refuse the connection with an HTTP status.

    Args:
        status: 401 or 403 usually; any 4xx is allowed.
        reason: The body of the plain-text response.

    Raises:
        ValueError: ``status`` isn't a 4xx status.
    """

    def __init__(self, status: int = 403, reason: str = "forbidden") -> None:
        if not 400 <= status <= 499:
            raise ValueError(f"status must be a 4xx status, got {status}")
        self.status = status
        self.reason = reason
        super().__init__(status, reason)

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class Admission:
    """A connection the handshake let in: who it is, decided before accepting it.

    Attributes:
        identity: Who is connected; ``None`` when the hub has no
            ``authenticate`` hook (each connection is then its own anonymous user).
        info_json: ``identity.info`` as JSON, encoded once.
        scope: The ASGI scope, when the connection came through an ASGI app.
    """

    identity: Identity | None
    info_json: str = "{}"
    scope: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A connection the handshake refused, and how to tell the client.

    Attributes:
        status: The HTTP status: 400, 401, 403, 426 or 503.
        reason: One line for the response body (or the close reason).
        headers: Extra response headers, such as ``WWW-Authenticate``.
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


#: The handshake hook.
Authenticate = Callable[[Credentials], "Identity | Awaitable[Identity | None] | None"]
#: The per-channel permission hook.
Authorize = Callable[[Identity, Action, str], "bool | Awaitable[bool]"]


def find_token(request: Request) -> str | None:
    """Extract the client's token from a header, a subprotocol offer, or the query."""
    # A repeated Authorization header is ambiguous: use the first one only.
    for authorization in request.headers.get_all("Authorization")[:1]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for offer in offered_subprotocols(request):
        if offer.startswith(TOKEN_PREFIX) and len(offer) > len(TOKEN_PREFIX):
            return offer[len(TOKEN_PREFIX) :]
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query).get("token")
    return values[0] if values else None


def offered_subprotocols(request: Request) -> list[str]:
    """The subprotocols the client offers; empty when the header is malformed."""
    offers: list[str] = []
    for value in request.headers.get_all("Sec-WebSocket-Protocol"):
        try:
            offers.extend(parse_subprotocols(value))
        except InvalidHeader:
            # A malformed header fails the handshake itself, with a 400.
            return []
    return offers


async def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    """Call a plain or ``async`` hook and return its result."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
