"""The hub as an ASGI 3 app, to mount in Starlette, FastAPI or Django.

``hub.asgi()`` returns a :class:`HubApp`; ``docs/asgi.md`` shows it mounted in
each framework. By scope type:

* ``websocket``: the handshake goes through the same checks as
  ``hub.serve()``, in this order: the ``Origin`` (rules of
  :mod:`openline.web.origin`, 403), the hub running (503 until the app's
  lifespan started it), the ``openline.v1`` offer (400) and the
  ``authenticate`` hook (401 or 403 with its reason). The hook gets the whole
  ASGI scope in :attr:`Credentials.scope <openline.hub.Credentials.scope>`.
  A refusal goes out as an HTTP response through the ``websocket.http.response``
  extension when the server offers it; otherwise as ``websocket.close`` before
  ``websocket.accept``, with the code :func:`refusal_code` (4000 plus the
  status: 4400, 4401, 4403, 4503) and the reason, which servers turn into an
  HTTP 403.
* ``http``: 426 Upgrade Required and one line of text.
* ``lifespan``: starts and stops the hub (:meth:`Hub.running
  <openline.hub.Hub.running>`) when the hub app is the server's top-level app.

After ``websocket.accept`` the connection takes one of two paths:

* the **fast path**, when the server's WebSocket engine is openline's
  (``uvicorn --ws openline.uvicorn:WebSocketProtocol``): the scope's
  ``openline.connection`` extension hands over the
  :class:`~openline.asyncio.ServerConnection` itself, and the hub serves it as
  under ``hub.serve()`` (frames encoded once, kernel-aware slow consumers);
* the **plain path** on any other server: an
  :class:`~openline.hub.asgi_link.AsgiLink` over ``receive`` and ``send``.

:func:`route` puts a hub next to an app that has no mounting of its own
(Django's ``get_asgi_application()``).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol.http11 import Headers, Request
from .asgi_link import DEFAULT_WRITE_LIMIT, AsgiLink
from .auth import Admission, Credentials, Refusal, find_token
from .origin import OriginPolicy
from .wire import SUBPROTOCOL

if TYPE_CHECKING:
    from .metrics import Metrics
    from .peer import Peer


class Served(Protocol):
    """What the ASGI app uses of a :class:`~openline.hub.Hub` (which makes the app)."""

    @property
    def stats(self) -> Metrics:
        """The hub's counters (refusals are counted there)."""

    @property
    def is_running(self) -> bool:
        """Whether the hub was started for ASGI (:meth:`Hub.running`)."""

    async def admit(self, credentials: Credentials) -> Admission | Refusal:
        """The hub's verdict on a handshake."""

    async def handle(self, ws: Peer, admission: Admission | None = None) -> None:
        """Serve one admitted connection until it goes away."""

    def running(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Start the hub; stop it on exit."""


__all__ = [
    "CONNECTION_EXTENSION",
    "HTTP_RESPONSE_EXTENSION",
    "ASGIApp",
    "HubApp",
    "Router",
    "Served",
    "refusal_code",
    "request_from_scope",
    "route",
    "serve_lifespan",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope extension of servers whose WebSocket engine is openline's.
CONNECTION_EXTENSION = "openline.connection"
#: The extension through which a refusal can be an HTTP response.
HTTP_RESPONSE_EXTENSION = "websocket.http.response"

_NOT_RUNNING = (
    "the hub isn't running: start it in the app's lifespan "
    "(FastAPI(lifespan=hub.lifespan), or async with hub.running())"
)
_UPGRADE_REQUIRED = (
    f"this is an openline hub: connect with WebSocket and the {SUBPROTOCOL} subprotocol"
)


def refusal_code(status: int) -> int:
    """The ``websocket.close`` code of a refusal with HTTP ``status``: 4000 + status.

    Used where the server can't send HTTP responses for websockets; the
    server answers the handshake with 403 whatever the code, which shows in
    its logs and to ASGI test clients.
    """
    return 4000 + status


class HubApp:
    """The hub as an ASGI 3 app; make it with :meth:`Hub.asgi <openline.hub.Hub.asgi>`.

    Args:
        hub: The hub to serve.
        origins: Origins allowed besides the server's own; ``"*"`` allows any.
            ``None``: the server's own, and clients that send no ``Origin``.
        origin_required: Refuse clients that send no ``Origin``.
        write_limit: ``(high, low)`` bytes queued per connection on the plain
            path (see :class:`~openline.hub.asgi_link.AsgiLink`).

    Raises:
        ValueError: An origin is malformed, or ``write_limit`` is out of range.
    """

    def __init__(
        self,
        hub: Served,
        *,
        origins: Iterable[str] | None = None,
        origin_required: bool = False,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
    ) -> None:
        self.hub = hub
        self.origins = OriginPolicy.from_strings(origins or (), required=origin_required)
        high, low = (write_limit, write_limit // 4) if isinstance(write_limit, int) else write_limit
        if not 0 <= low <= high:
            raise ValueError(
                f"write_limit must be (high, low) with 0 <= low <= high, got {write_limit}"
            )
        self.write_limit = (high, low)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI scope.

        Raises:
            ValueError: The scope's type is neither ``websocket``, ``http`` nor ``lifespan``.
        """
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await _upgrade_required(send)
        elif kind == "lifespan":
            await serve_lifespan([self.hub], receive, send)
        else:
            raise ValueError(f"an openline hub serves no {kind!r} scopes")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake
        request = request_from_scope(scope)
        verdict = await self._admit(scope, request)
        if isinstance(verdict, Refusal):
            await _refuse(scope, send, verdict)
            return
        await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
        extension = scope.get("extensions", {}).get(CONNECTION_EXTENSION)
        if extension is not None:
            connection = extension["claim"]()
            self.hub.stats.asgi_paths["fast"] += 1
            await self.hub.handle(connection, verdict)
            return
        self.hub.stats.asgi_paths["plain"] += 1
        link = AsgiLink(receive, send, request, _client(scope), write_limit=self.write_limit)
        link.start()
        try:
            await self.hub.handle(link, verdict)
        finally:
            await link.finish()

    async def _admit(self, scope: Scope, request: Request) -> Admission | Refusal:
        """The handshake's checks, in the order of the module's docstring."""
        stats = self.hub.stats
        refusal = self.origins.refusal(request, secure=scope.get("scheme") == "wss")
        if refusal is not None:
            stats.handshakes["origin"] += 1
            return Refusal(403, refusal)
        if not self.hub.is_running:
            stats.handshakes["not_running"] += 1
            return Refusal(503, _NOT_RUNNING)
        credentials = Credentials(find_token(request), request, _client(scope), scope)
        return await self.hub.admit(credentials)


class Router:
    """Sends each scope to the app whose path prefix matches; see :func:`route`.

    Args:
        routes: Path prefixes (``"/ws"``) and their apps.
        fallback: The app for every other path; ``None`` answers 404 (http)
            or a refusal (websocket).

    Raises:
        ValueError: A prefix doesn't start with ``/`` or ends with one.
    """

    def __init__(self, routes: Mapping[str, ASGIApp], *, fallback: ASGIApp | None = None) -> None:
        for prefix in routes:
            if not prefix.startswith("/") or prefix.endswith("/"):
                raise ValueError(
                    f"a route is a path like /ws, without a final slash, got {prefix!r}"
                )
        # Longest first, so that /ws/admin wins over /ws.
        self.routes = sorted(routes.items(), key=lambda item: -len(item[0]))
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI scope with the matching app."""
        if scope["type"] == "lifespan":
            hubs = [app.hub for _, app in self.routes if isinstance(app, HubApp)]
            await serve_lifespan(hubs, receive, send)
            return
        root = scope.get("root_path", "")
        path: str = scope["path"]
        # ASGI: path is the full path, root_path included when the server sets one.
        relative = path[len(root) :] if root and path.startswith(root) else path
        for prefix, app in self.routes:
            if relative == prefix or relative.startswith(prefix + "/"):
                await app({**scope, "root_path": root + prefix}, receive, send)
                return
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await _refuse(scope, send, Refusal(404, "no such path"))
        else:
            await _plain(send, 404, "not found")


def route(routes: Mapping[str, ASGIApp], *, fallback: ASGIApp | None = None) -> Router:
    """Route path prefixes to apps, the rest to ``fallback``: for Django.

    ``route({"/ws": hub.asgi()}, fallback=get_asgi_application())`` serves the
    hub at ``/ws`` (and below) and Django everywhere else, without Channels.
    Paths are matched after the scope's ``root_path``, which the matched app
    gets extended by the prefix. The router answers ``lifespan`` itself: it
    runs the hubs of its :class:`HubApp` routes and forwards nothing (Django
    has no lifespan).

    Raises:
        ValueError: A prefix doesn't start with ``/`` or ends with one.
    """
    return Router(routes, fallback=fallback)


async def serve_lifespan(hubs: Iterable[Served], receive: Receive, send: Send) -> None:
    """Answer an ASGI ``lifespan`` scope by running ``hubs`` between startup and shutdown."""
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    async with contextlib.AsyncExitStack() as stack:
        try:
            for hub in hubs:
                await stack.enter_async_context(hub.running())
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": f"openline hub: {exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await stack.aclose()
        except Exception as exc:
            await send({"type": "lifespan.shutdown.failed", "message": f"openline hub: {exc}"})
            return
    await send({"type": "lifespan.shutdown.complete"})


def request_from_scope(scope: Mapping[str, Any]) -> Request:
    """The upgrade request of a websocket scope, as ``authenticate`` expects it.

    ``path`` is the full request target: ``raw_path`` (or ``path``, quoted) and
    the query string; the headers are the scope's, decoded as Latin-1.
    """
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else urllib.parse.quote(scope.get("path") or "/")
    query = scope.get("query_string") or b""
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    headers = Headers(
        [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope.get("headers", ())
        ]
    )
    try:
        return Request(path, headers)
    except ValueError:  # spaces or controls the server let through
        return Request(urllib.parse.quote(path, safe="/?&=%+:@;,"), headers)


def _client(scope: Mapping[str, Any]) -> Any:
    client = scope.get("client")
    return None if client is None else tuple(client)


async def _refuse(scope: Mapping[str, Any], send: Send, refusal: Refusal) -> None:
    """Refuse a websocket handshake: an HTTP response if possible, else a close."""
    if HTTP_RESPONSE_EXTENSION in scope.get("extensions", {}):
        body = f"{refusal.reason}\n".encode()
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in refusal.headers
        ]
        headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send(
            {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    reason = refusal.reason.encode()[:123].decode(errors="ignore")
    await send({"type": "websocket.close", "code": refusal_code(refusal.status), "reason": reason})


async def _upgrade_required(send: Send) -> None:
    await _plain(
        send, 426, _UPGRADE_REQUIRED, [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    )


async def _plain(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = f"{text}\n".encode()
    all_headers = [
        *(headers or ()),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
