"""What ``openline serve`` runs: the hub, the demo page, the browser client and a ticker.

One port serves everything; each request goes to one of these by its shape:

=====================  =========================================================
``/ws`` (an upgrade)   the hub (``openline.v1``); any upgrade request goes to the
                       hub whatever its path, ``/ws`` is the documented one
``/``                  the demo page (``index.html``, ``demo.css``, ``demo.js``)
``/openline.js``       the browser client, a plain ES module
``/healthz``           the hub's counters and the engine's health as JSON:
                       200, or 503 when the engine says it is degraded
``/readyz``            readiness: 200 ``{"status": "ready"}``, or 503 with
                       ``"draining"`` (a drain started) or ``"degraded"``
                       (the engine can't reach its store)
``/api/ticker``        the ticker's latest value as JSON, for the polling panels
``/api/session``       a signed demo token: ``GET /api/session?name=Ada``
``/metrics``           Prometheus metrics (:mod:`openline.web.metrics`); open
                       unless a ``metrics_key`` is set
``/api/<method>``      the server API (:mod:`openline.web.api`), with an API key only
=====================  =========================================================

Static files answer ``GET`` and ``HEAD`` only (405 otherwise).

**Origin checks.** Upgrades and ``/api/session`` go through an
:class:`~openline.web.origin.OriginPolicy` first: pages of this server's own
origin and clients that send no ``Origin`` are let through, other origins get
**403** with the reason on one line. Static files, ``/healthz`` and
``/api/ticker`` are public and change nothing, so they aren't checked (a page
elsewhere can't read them anyway: no CORS header is ever sent).

**Demo identities.** The server chooses user ids and signs them
(:mod:`openline.web.tokens`): ``GET /api/session?name=Ada`` answers
``{"token", "user", "name", "expires"}`` with a new user id; with the header
``Authorization: Bearer <token>`` carrying a valid token of this server, the new
token keeps that token's user id (a rename, or a renewal before it expires). An
invalid one gets 401, and the caller asks again without it. The hub accepts
these tokens, plain names (1-32 letters, digits, ``_``, ``-``; anyone may use
any of them, but no signed user's id is a plain name) and no token (an
anonymous guest with a random id); anything else is refused with 401. The key
is ``secret``, or a random one made once per process: tokens then end with
the process, and the demo page fetches a new one, keeping its name.

The session API is a ``GET`` because the server's HTTP parser takes no request
bodies (it reads upgrade requests, which have none: RFC 6455, section 4.1), and
a browser's body-less ``POST`` still announces ``Content-Length: 0``. It issues
a token and stores nothing, and its origin is checked like an upgrade's.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from .. import __version__
from ..asyncio.server import Server, ServerConnection
from ..hub import Hub, Identity
from ..hub.auth import Action, Authorize
from ..hub.backends.base import Engine
from ..hub.jwt_auth import JwtAuth
from ..protocol.http11 import MAX_REQUEST_BODY, Request, Response
from .api import ServerAPIRoutes
from .metrics import METRICS_PATH, MetricsEndpoint
from .origin import OriginPolicy, forbidden
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
from .tokens import DEFAULT_TOKEN_TTL, InvalidToken, TokenSigner, authenticator, clean_name

__all__ = ["DEMO_FILES", "SESSION_PATH", "WS_PATH", "App", "authorize_for", "create_app"]

#: The documented path of the hub's WebSocket endpoint.
WS_PATH = "/ws"
#: Where clients get a signed token.
SESSION_PATH = "/api/session"
#: Largest request body read while the server API is off, in bytes (answered 404 or 405).
MAX_BODY_WITHOUT_API = 4096

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


class App:
    """The hub plus plain HTTP: pages, the browser client, health and the ticker.

    Args:
        hub: The hub to serve.
        ticker: A ticker to run while serving, or ``None`` for none.
        static: The files to serve; the demo's by default.
        origins: Which origins may open the hub and get tokens; by default
            this server's own and clients without ``Origin``.
        signer: Issues the tokens of ``/api/session``; ``None`` turns that
            path off (404). The hub's authentication hook must accept them.
        metrics: Answers ``/metrics``; by default one without a key.
        api_key: Turns on the server API (``POST /api/<method>``) for callers
            that send it; ``None`` leaves it off (404).

    Raises:
        ValueError: ``api_key`` is empty or not printable ASCII.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        ticker: Ticker | None = None,
        static: StaticFiles | None = None,
        origins: OriginPolicy | None = None,
        signer: TokenSigner | None = None,
        metrics: MetricsEndpoint | None = None,
        api_key: str | None = None,
    ) -> None:
        self.hub = hub
        self.metrics = MetricsEndpoint(hub) if metrics is None else metrics
        self.api = None if api_key is None else ServerAPIRoutes(hub, api_key)
        self.ticker = ticker
        self.origins = OriginPolicy() if origins is None else origins
        self.signer = signer
        # The scheme of our own origin: https once run() is given a TLS context.
        self.secure = False
        if static is None:
            page = {"/": [("Content-Security-Policy", _PAGE_POLICY)]}
            page["/index.html"] = page["/"]
            static = StaticFiles(DEMO_FILES, package=__package__ or "openline.web", headers=page)
        self.static = static
        self._started = time.monotonic()
        #: The running server, while :meth:`run` serves.
        self.server: Server | None = None

    # --- public API --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def run(self, host: str | None, port: int | None, **kwargs: Any) -> AsyncIterator[Server]:
        """Serve until the block ends: ``async with app.run(host, port) as server:``.

        Starts the ticker, serves, and on the way out closes every connection
        with 1001 (going away), stops the ticker and closes the hub. With
        ``ssl``, this server's own origin is ``https``, else ``http``.

        Args:
            host: The interface(s) to listen on.
            port: The port; 0 picks a free one.
            **kwargs: Passed to :meth:`Hub.serve` (``ssl``, ``max_connections``...).

        Raises:
            OSError: Can't listen on the address.
        """
        self._started = time.monotonic()
        self.secure = kwargs.get("ssl") is not None
        # Bodies are read (up to the limit) so that a POST gets a real answer:
        # the API's, or 404 while it is off, rather than the parser's 400. Off,
        # nothing reads them: a small bound keeps what idle requests can hold small.
        kwargs.setdefault("max_body", MAX_REQUEST_BODY if self.api else MAX_BODY_WITHOUT_API)
        try:
            async with self.hub.serve(
                host, port, process_request=self.process_request, **kwargs
            ) as server:
                self.metrics.collector.server = server
                self.server = server
                if self.ticker is not None:
                    self.ticker.start()
                yield server
        finally:
            self.server = None
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

    def readiness(self) -> str:
        """What ``/readyz`` says: ``"ready"``, ``"draining"`` or ``"degraded"``.

        Only ``"ready"`` answers 200: a load balancer sends new clients
        elsewhere while this node drains (:meth:`Server.drain`) or while its
        engine is degraded. ``/healthz`` stays the liveness check.
        """
        server = self.server
        if server is not None and server.is_draining:
            return "draining"
        engine = _engine_health(self.hub.engine)
        if engine is not None and engine.get("status") == "degraded":
            return "degraded"
        return "ready"

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Route a request: ``None`` lets an upgrade through to the hub; else answer it.

        An upgrade from an origin that :attr:`origins` refuses gets 403.
        """
        if _is_upgrade(request):
            refusal = self.origins.refusal(request, secure=self.secure)
            if refusal is not None:
                self.hub.stats.handshakes["origin"] += 1
                return forbidden(refusal)
            return None  # the hub checks the subprotocol and authenticates
        path = request_path(request)
        head = request.method == "HEAD"
        if path in self.static:
            return self.static.respond(request, path)
        if path == METRICS_PATH:
            return self.metrics.respond(request)
        if self.api is not None and self.api.handles(path):
            return await self.api.respond(request, path)
        if path == SESSION_PATH and self.signer is not None:
            return self._session_response(request, self.signer)
        if path == WS_PATH:
            text = b"this is the openline hub: open a WebSocket with the openline.v1 subprotocol\n"
            headers = [("Upgrade", "websocket"), ("Content-Type", "text/plain; charset=utf-8")]
            return http_response(426, text, headers, head=head)
        if path not in ("/healthz", "/readyz", "/api/ticker"):
            return not_found(path)
        if request.method not in ALLOWED_METHODS:
            return method_not_allowed()
        if path == "/readyz":
            ready = self.readiness()
            return json_response(200 if ready == "ready" else 503, {"status": ready}, head=head)
        if path == "/healthz":
            health = self.health()
            # A load balancer takes a degraded node out of rotation on a 5xx.
            status = 200 if health["status"] == "ok" else 503
            return json_response(status, health, head=head)
        return self._ticker_response(head)

    # --- private -----------------------------------------------------------------------

    def _session_response(self, request: Request, signer: TokenSigner) -> Response:
        """``GET /api/session?name=...``: a signed token (see the module docstring)."""
        if request.method != "GET":
            headers = [("Allow", "GET"), ("Content-Type", "text/plain; charset=utf-8")]
            return http_response(405, b"method not allowed: use GET\n", headers)
        refusal = self.origins.refusal(request, secure=self.secure)
        if refusal is not None:
            return forbidden(refusal)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        name = clean_name(query.get("name", [""])[0])
        if not name:
            error = f"a name is required: {SESSION_PATH}?name=Ada (1-32 printable characters)"
            return json_response(400, {"error": error})
        user = None
        old = _bearer_token(request)
        if old is not None:
            try:
                user = signer.verify(old).user
            except InvalidToken as exc:
                # The page asks again without it, for a new user id.
                body = json.dumps({"error": f"invalid token: {exc}"}).encode()
                headers = [
                    ("Content-Type", "application/json"),
                    ("Cache-Control", "no-store"),
                    ("WWW-Authenticate", "Bearer"),
                ]
                return http_response(401, body, headers)
        session = signer.issue(name, user)
        value = {
            "token": session.token,
            "user": session.user,
            "name": session.name,
            "expires": session.expires,
        }
        return json_response(200, value)

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
    # security
    origins: Iterable[str] = (),
    origin_required: bool = False,
    secret: str | bytes | None = None,
    token_ttl: float = DEFAULT_TOKEN_TTL,
    jwt: JwtAuth | None = None,
    metrics_key: str | None = None,
    api_key: str | None = None,
    **hub_kwargs: Any,
) -> App:
    """Build what ``openline serve`` runs: a hub with signed demo identities, the pages, a ticker.

    Args:
        engine: The hub's engine; a new :class:`~openline.hub.MemoryEngine` by
            default. Pass one to keep history across restarts of the server.
        ticker: Whether to publish the ticker. Clients may read the ticker's
            channel but not publish to it, and its presence is counts only.
        ticker_interval: ``(shortest, longest)`` seconds between two ticks.
        origins: Origins allowed besides this server's own, such as
            ``"https://example.com"``; ``"*"`` allows any (development only).
        origin_required: Refuse clients that send no ``Origin`` (every client
            that isn't a browser page).
        secret: The key that signs tokens, at least 16 bytes. ``None`` uses a
            random one made once per process: tokens then end with the process.
            Every process serving the same users needs the same key.
        token_ttl: Seconds a token stays valid.
        jwt: When given, the hub accepts only its JWTs (and applies their
            channel claims) instead of the demo's tokens.
        metrics_key: The bearer key ``/metrics`` asks for; ``None``: open.
        api_key: The server API's key (``POST /api/<method>``); ``None``: off.
        **hub_kwargs: Passed to :class:`~openline.hub.Hub` (limits, timeouts).

    Raises:
        ValueError: An argument is out of range, an origin is malformed, or
            ``secret`` is too short.
    """
    policy = OriginPolicy.from_strings(origins, required=origin_required)
    signer = TokenSigner(secret, ttl=token_ttl)
    channel = DEFAULT_TICKER_CHANNEL
    hub = Hub(
        engine,
        authenticate=authenticator(signer) if jwt is None else jwt.authenticate,
        authorize=authorize_for(frozenset((channel,)), None if jwt is None else jwt.authorize),
        counts_only=lambda ch: ch == channel,
        **hub_kwargs,
    )
    return App(
        hub,
        ticker=Ticker(hub, channel, interval=ticker_interval) if ticker else None,
        origins=policy,
        signer=signer,
        metrics=MetricsEndpoint(hub, key=metrics_key),
        api_key=api_key,
    )


def authorize_for(
    read_only: frozenset[str], then: Callable[[Identity, Action, str], bool] | None = None
) -> Authorize:
    """Build an authorization hook that refuses client publishes to ``read_only`` channels.

    Args:
        read_only: Channels only the server publishes on.
        then: A further check (a token's channel claims), asked when the first allows.
    """

    def authorize(identity: Identity, action: Action, ch: str) -> bool:
        if action == "publish" and ch in read_only:
            return False
        return then is None or then(identity, action, ch)

    return authorize


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


def _bearer_token(request: Request) -> str | None:
    """The token of the first ``Authorization: Bearer`` header, if any."""
    for value in request.headers.get_all("Authorization")[:1]:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None
