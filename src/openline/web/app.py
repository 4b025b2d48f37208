"""What ``openline serve`` runs: the hub, the demo page, the browser client and a ticker.

One port serves everything; each request goes to one of these by its shape:

=====================  =========================================================
``/ws`` (an upgrade)   the hub (``openline.v1``); any upgrade request goes to the
                       hub whatever its path, ``/ws`` is the documented one
``/``                  the demo page (``index.html``, ``demo.css``, ``demo.js``)
``/openline.js``       the browser client, a plain ES module
``/healthz``           the hub's counters and the engine's health as JSON:
                       200, or 503 when the engine says it is degraded
``/api/ticker``        the ticker's latest value as JSON, for the polling panels
=====================  =========================================================

Static files answer ``GET`` and ``HEAD`` only (405 otherwise).

**Demo identities.** The hub's authentication hook here is a demo's, not a
security feature: a browser presents a token made of base64url-encoded JSON,
``{"id": ..., "name": ...}``, and is trusted to be that user. Any other token is
taken as both the user id and the display name; no token gives a guest with a
random id. Put a real ``authenticate`` hook in front of anything that matters.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .. import __version__
from ..asyncio.server import Server, ServerConnection
from ..hub import Credentials, Hub, Identity
from ..hub.auth import Action, Authorize
from ..hub.backends.base import Engine
from ..protocol.http11 import Request, Response
from .static import (
    ALLOWED_METHODS,
    StaticFiles,
    http_response,
    json_response,
    method_not_allowed,
    not_found,
    request_path,
)
from .ticker import DEFAULT_TICKER_CHANNEL, DEFAULT_TICKER_INTERVAL, Ticker

__all__ = ["DEMO_FILES", "WS_PATH", "App", "authenticate", "authorize_for", "create_app"]

#: The documented path of the hub's WebSocket endpoint.
WS_PATH = "/ws"

#: URL path to file name in this package.
DEMO_FILES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/demo.css": "demo.css",
    "/demo.js": "demo.js",
    "/openline.js": "openline.js",
    "/favicon.svg": "favicon.svg",
    # Browsers ask for it on pages without a <link rel="icon">, such as /healthz.
    "/favicon.ico": "favicon.svg",
}

# The page loads nothing from elsewhere, runs no inline script, and can't be framed.
_PAGE_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_ID_RE = re.compile(r"[A-Za-z0-9_-]{6,64}")
_MAX_NAME = 32


class App:
    """The hub plus plain HTTP: pages, the browser client, health and the ticker.

    Args:
        hub: The hub to serve.
        ticker: A ticker to run while serving, or ``None`` for none.
        static: The files to serve; the demo's by default.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        ticker: Ticker | None = None,
        static: StaticFiles | None = None,
    ) -> None:
        self.hub = hub
        self.ticker = ticker
        if static is None:
            page = {"/": [("Content-Security-Policy", _PAGE_POLICY)]}
            page["/index.html"] = page["/"]
            static = StaticFiles(DEMO_FILES, package=__package__ or "openline.web", headers=page)
        self.static = static
        self._started = time.monotonic()

    # --- public API --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def run(self, host: str | None, port: int | None, **kwargs: Any) -> AsyncIterator[Server]:
        """Serve until the block ends: ``async with app.run(host, port) as server:``.

        Starts the ticker, serves, and on the way out closes every connection
        with 1001 (going away), stops the ticker and closes the hub.

        Args:
            host: The interface(s) to listen on.
            port: The port; 0 picks a free one.
            **kwargs: Passed to :meth:`Hub.serve` (``ssl``, ``max_connections``...).

        Raises:
            OSError: Can't listen on the address.
        """
        self._started = time.monotonic()
        try:
            async with self.hub.serve(
                host, port, process_request=self.process_request, **kwargs
            ) as server:
                if self.ticker is not None:
                    self.ticker.start()
                yield server
        finally:
            if self.ticker is not None:
                await self.ticker.stop()
            await self.hub.close()

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` says: status, uptime, the hub's counters, the engine, the ticker.

        ``status`` is ``"degraded"`` when the engine says so (Redis unreachable:
        connections stay open, but publishes and subscribes fail meanwhile), else
        ``"ok"``. ``engine`` is the engine's own report, or ``None`` for an
        engine without a ``health()`` method.
        """
        ticker = self.ticker
        latest = None if ticker is None else ticker.latest
        engine = _engine_health(self.hub.engine)
        degraded = engine is not None and engine.get("status") == "degraded"
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "uptime": round(time.monotonic() - self._started, 3),
            "hub": self.hub.metrics(),
            "engine": engine,
            "ticker": None
            if ticker is None
            else {
                "channel": ticker.ch,
                "running": ticker.is_running,
                "seq": latest and latest["seq"],
            },
        }

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Route a request: ``None`` lets an upgrade through to the hub; else answer it."""
        if _is_upgrade(request):
            return None  # the hub checks the subprotocol and authenticates
        path = request_path(request)
        head = request.method == "HEAD"
        if path in self.static:
            return self.static.respond(request, path)
        if path == WS_PATH:
            text = b"this is the openline hub: open a WebSocket with the openline.v1 subprotocol\n"
            headers = [("Upgrade", "websocket"), ("Content-Type", "text/plain; charset=utf-8")]
            return http_response(426, text, headers, head=head)
        if path not in ("/healthz", "/api/ticker"):
            return not_found(path)
        if request.method not in ALLOWED_METHODS:
            return method_not_allowed()
        if path == "/healthz":
            health = self.health()
            # A load balancer takes a degraded node out of rotation on a 5xx.
            status = 200 if health["status"] == "ok" else 503
            return json_response(status, health, head=head)
        return self._ticker_response(head)

    # --- private -----------------------------------------------------------------------

    def _ticker_response(self, head: bool) -> Response:
        ticker = self.ticker
        if ticker is None or ticker.latest is None:
            return json_response(404, {"error": "the ticker is off"}, head=head)
        # "now" lets a client estimate the offset between its clock and ours.
        value = {"ch": ticker.ch, **ticker.latest, "now": round(time.time() * 1000)}
        return json_response(200, value, head=head)


def create_app(
    *,
    engine: Engine | None = None,
    ticker: bool = True,
    ticker_interval: tuple[float, float] = DEFAULT_TICKER_INTERVAL,
    **hub_kwargs: Any,
) -> App:
    """Build what ``openline serve`` runs: a demo-authenticated hub, the pages, a ticker.

    Args:
        engine: The hub's engine; a new :class:`~openline.hub.MemoryEngine` by
            default. Pass one to keep history across restarts of the server.
        ticker: Whether to publish the ticker. Clients may read the ticker's
            channel but not publish to it, and its presence is counts only.
        ticker_interval: ``(shortest, longest)`` seconds between two ticks.
        **hub_kwargs: Passed to :class:`~openline.hub.Hub` (limits, timeouts).

    Raises:
        ValueError: An argument is out of range.
    """
    channel = DEFAULT_TICKER_CHANNEL
    hub = Hub(
        engine,
        authenticate=authenticate,
        authorize=authorize_for(frozenset((channel,))),
        counts_only=lambda ch: ch == channel,
        **hub_kwargs,
    )
    return App(hub, ticker=Ticker(hub, channel, interval=ticker_interval) if ticker else None)


def authenticate(credentials: Credentials) -> Identity:
    """The demo's authentication hook: trust the token (see the module docstring)."""
    token = credentials.token
    if token is None:
        return Identity("guest-" + secrets.token_hex(6), {}, anonymous=True)
    demo = _decode_demo_token(token)
    if demo is not None:
        return Identity(*demo)
    name = token[:_MAX_NAME]
    return Identity(token, {"name": name})


def authorize_for(read_only: frozenset[str]) -> Authorize:
    """Build an authorization hook that refuses client publishes to ``read_only`` channels."""

    def authorize(identity: Identity, action: Action, ch: str) -> bool:
        return not (action == "publish" and ch in read_only)

    return authorize


def _decode_demo_token(token: str) -> tuple[str, Mapping[str, Any]] | None:
    """Decode ``base64url(JSON {"id", "name"})``; ``None`` if it isn't one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw.decode())
    except (binascii.Error, ValueError):
        return None
    if not isinstance(fields, dict):
        return None
    user, name = fields.get("id"), fields.get("name")
    if not isinstance(user, str) or not _ID_RE.fullmatch(user) or not isinstance(name, str):
        return None
    # One line of printable characters, without runs of spaces.
    name = "".join(char for char in " ".join(name.split()) if char.isprintable())[:_MAX_NAME]
    return user, {"name": name or "guest"}


def _engine_health(engine: Engine) -> dict[str, Any] | None:
    """The engine's ``health()`` report; ``None`` when it has no such method.

    ``health()`` isn't part of the :class:`~openline.hub.backends.base.Engine`
    protocol: engines written before it was added still work.
    """
    report = getattr(engine, "health", None)
    if not callable(report):
        return None
    value = report()
    return dict(value) if isinstance(value, Mapping) else None


def _is_upgrade(request: Request) -> bool:
    upgrade = ",".join(request.headers.get_all("Upgrade"))
    return any(token.strip().lower() == "websocket" for token in upgrade.split(","))
