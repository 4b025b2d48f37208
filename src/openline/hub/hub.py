"""The hub: channels, publish/subscribe, history, presence, over ``openline.v1``.

Quick start::

    hub = Hub()

    async def main():
        async with hub.serve("localhost", 8765):
            await asyncio.get_running_loop().create_future()  # run forever

A client connects with the subprotocol ``openline.v1`` and speaks the JSON
messages of ``docs/protocol.md``. Server code publishes with
``await hub.publish(ch, data)``.

How a connection is served: the handshake hook authenticates it; then one
coroutine per connection reads its messages and handles them one at a time,
in order (a subscribe completes, history included, before the next message is
read). Replies wait for the connection's flow control; fan-out never waits: it
writes the frame, encoded once, to every subscriber's transport, and
:class:`~openline.hub.fanout.Fanout` applies the slow-consumer policy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..asyncio.broadcast import Broadcast
from ..asyncio.config import check_count, check_timeout
from ..asyncio.connection import is_keepalive_timeout
from ..asyncio.server import ProcessRequest, ServerConnection, serve
from ..exceptions import BackendUnavailable, ConnectionClosed
from ..protocol.connection import State
from ..protocol.http11 import Request, Response
from ..typing import LoggerLike
from . import wire
from .asgi_link import DEFAULT_WRITE_LIMIT
from .auth import (
    Action,
    Admission,
    Authenticate,
    Authorize,
    Credentials,
    Identity,
    Refusal,
    Reject,
    call_hook,
    find_token,
    offered_subprotocols,
)
from .backends.base import Engine, HistoryResult, PresenceSnapshot, PublishResult
from .backends.memory import MemoryEngine
from .channel import Channel
from .config import (
    DEFAULT_MAX_BUFFER,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_SEND_BUFFER,
    DEFAULT_SLOW_CONSUMER_TIMEOUT,
    check_budget,
    check_positive,
    check_positive_int,
)
from .fanout import Fanout
from .metrics import Metrics
from .peer import Peer
from .presence import StateThrottle
from .publisher import store, store_many
from .refresh import TokenClock
from .server_api import DEFAULT_HISTORY_LIMIT, ServerAPI
from .session import Hold, Session, Subscription
from .wire import SUBPROTOCOL, RequestError

if TYPE_CHECKING:
    from .asgi import HubApp

__all__ = ["Hub"]

# Refusals a well-behaved client recovers from by retrying the same request later.
_RETRYABLE: frozenset[wire.ErrorCode] = frozenset(("rate_limited", "unavailable", "internal"))
# Load is not abuse: these never count toward the abuse budget (a rate_limited
# refusal does only once the client keeps ignoring retry_after, see FLOOD_GRACE).
_NOT_ABUSE = _RETRYABLE | {"too_large"}
#: Seconds publishes stay held behind a refused one that its client never retries.
HOLD_SECONDS = 30.0
#: Publishes of one connection stored in one engine round trip, at most.
PIPELINE_BATCH = 64
#: Messages read ahead of the publishes being stored before reading waits.
PIPELINE_QUEUE = 256
#: A message read while publishes are stored: it, when it arrived, and whether the
#: rate limit let it in.
Queued = tuple[str | bytes, float, bool]
#: Seconds a connection may keep sending while refused as ``rate_limited`` (what
#: was in flight when the first refusal left) before each refusal counts as abuse.
FLOOD_GRACE = 5.0


class Hub:
    """Channels with history and presence, served over the ``openline.v1`` subprotocol.

    Args:
        engine: Where history and presence live; a new :class:`MemoryEngine`
            by default, which the hub then closes in :meth:`close`.
        authenticate: ``(Credentials) -> Identity | None``, plain or ``async``,
            called during the handshake: ``None`` refuses with 401, raising
            :class:`~openline.hub.Reject` with its status. ``None`` (the
            default) lets everyone in, each connection as its own anonymous user.
        authorize: ``(Identity, action, ch) -> bool``, plain or ``async``, called
            before each ``"subscribe"``, ``"publish"`` and ``"presence"`` action;
            ``False`` answers ``forbidden``. ``None`` allows everything.
        presence_limit: Users beyond which a channel's presence becomes counts
            only, for the rest of the channel's life in this process; ``None``
            never switches.
        counts_only: ``(ch) -> bool``: channels whose presence is counts only
            from the start; ``None`` for none.
        count_interval: Seconds between two count updates of a counts-only channel.
        state_interval: Seconds between two forwarded state updates of one user
            on one channel; ``None`` forwards every update.
        state_ttl: Seconds after which a state expires unless renewed; ``None``
            keeps states until cleared or the user leaves.
        max_message_size: Largest client message in bytes; a larger one gets
            ``too_large``. ``None`` disables the limit. WebSocket messages beyond
            four times this are refused by the transport with close code 1009.
        max_state_size: Largest ephemeral state in bytes of JSON; ``None``
            disables the limit.
        max_channel_length: Longest channel name, in characters.
        max_subscriptions: Channels one connection may subscribe to; ``None``
            disables the limit.
        rate_limit: ``(messages, seconds)``: a connection may send ``messages``
            in a burst, refilled over ``seconds``; beyond, ``rate_limited``.
            ``None`` disables it.
        max_errors: ``(errors, seconds)``: a connection that earns this many
            error replies within the window is closed with 1008. ``None`` never
            closes.
        max_buffer: High-water mark in bytes of what a connection holds unsent:
            its transport buffer and its kernel send queue together. Beyond
            it the connection is evicted (see :mod:`openline.hub.fanout`).
            ``None`` disables it (memory may then grow without bound).
        slow_consumer_code: The policy: close with this code, 1013 (try again
            later) by default, so that the client redials and recovers from
            history; 1008 tells it not to come back. A connection whose kernel
            queue is full gets a TCP reset instead.
        slow_consumer_timeout: Seconds a subscriber may stay behind (its kernel
            send queue full) without its TCP acknowledging a byte before it is
            evicted; ``None`` disables this check.
        send_buffer: ``SO_SNDBUF`` requested for each connection, in bytes, to
            bound the kernel's send queue; ``None`` leaves the kernel's
            autotuning (up to 4 MiB per connection on Linux).
        ping_interval: Seconds between keepalive pings; ``None`` disables them.
        ping_timeout: Seconds without a pong after which the connection is
            closed and its presence removed; ``None`` waits forever.
        refresh_before: Seconds before an identity's ``expires`` to ask the
            client for a new token (at most half the time left); see
            :mod:`openline.hub.refresh`.
        logger: Where to log; ``openline.hub`` by default.

    Raises:
        ValueError: An argument is out of range; the message names it.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        # hooks
        authenticate: Authenticate | None = None,
        authorize: Authorize | None = None,
        # presence
        presence_limit: int | None = 1000,
        counts_only: Callable[[str], bool] | None = None,
        count_interval: float = 1.0,
        state_interval: float | None = 0.5,
        state_ttl: float | None = 5.0,
        # limits
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_state_size: int | None = 1024,
        max_channel_length: int = 200,
        max_subscriptions: int | None = 100,
        rate_limit: tuple[int, float] | None = (100, 1.0),
        max_errors: tuple[int, float] | None = (20, 10.0),
        max_buffer: int | None = DEFAULT_MAX_BUFFER,
        slow_consumer_code: int = 1013,
        slow_consumer_timeout: float | None = DEFAULT_SLOW_CONSUMER_TIMEOUT,
        send_buffer: int | None = DEFAULT_SEND_BUFFER,
        # timeouts
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        refresh_before: float = 30.0,
        # logging
        logger: LoggerLike | None = None,
    ) -> None:
        self._owns_engine = engine is None
        self.engine: Engine = MemoryEngine() if engine is None else engine
        self._authenticate = authenticate
        self._authorize = authorize
        self._presence_limit = check_count("presence_limit", presence_limit)
        self._counts_only_hook = counts_only
        self._count_interval = check_positive("count_interval", count_interval)
        self._max_message_size = check_count("max_message_size", max_message_size, minimum=1)
        self._max_subscriptions = check_count("max_subscriptions", max_subscriptions, minimum=1)
        self._rate_limit = check_budget("rate_limit", rate_limit)
        self._max_errors = check_budget("max_errors", max_errors)
        self._ping_interval = check_timeout("ping_interval", ping_interval)
        self._ping_timeout = check_timeout("ping_timeout", ping_timeout)
        self._parser = wire.Parser(
            max_message_size=self._max_message_size,
            max_channel_length=check_positive_int("max_channel_length", max_channel_length),
            max_state_size=check_count("max_state_size", max_state_size, minimum=2),
        )
        self._logger: LoggerLike = logger or logging.getLogger("openline.hub")
        self._states = StateThrottle(
            self.engine,
            interval=check_timeout("state_interval", state_interval),
            ttl=check_timeout("state_ttl", state_ttl),
            spawn=self._spawn,
        )
        #: Counters; see :class:`~openline.hub.metrics.Metrics`.
        self.stats = Metrics()
        self._channels: dict[str, Channel] = {}
        self._sessions: set[Session] = set()
        self._running = False
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Connections whose reading waits for their publish pipeline to catch up.
        self._readers: dict[Session, asyncio.Future[None]] = {}
        #: The one owner of fan-out and of the slow-consumer policy.
        self.fanout = Fanout(
            self.stats,
            channels=self._channels,
            spawn=self._spawn,
            leave=self._cleanup,
            logger=self._logger,
            max_buffer=max_buffer,
            slow_consumer_code=slow_consumer_code,
            slow_consumer_timeout=slow_consumer_timeout,
            send_buffer=send_buffer,
        )
        #: Asks for new tokens before identities expire; closes with 4001 after.
        self.tokens = TokenClock(
            send=self._send,
            spawn=self._spawn,
            refresh_before=check_positive("refresh_before", refresh_before),
        )
        # Identities decided in the handshake hook, until the handler picks them up.
        self._identities: dict[ServerConnection, Admission] = {}
        self._api = ServerAPI(
            self.engine,
            sessions=self._sessions,
            local_channels=self._channels.keys,
            subscribe=self._server_subscribe,
            unsubscribe=self._server_unsubscribe,
            max_channel_length=self._parser.max_channel_length,
            spawn=self._spawn,
            logger=self._logger,
        )

    # --- public API --------------------------------------------------------------------

    def serve(
        self,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        process_request: ProcessRequest | None = None,
        **kwargs: Any,
    ) -> serve:
        """Serve the hub: ``async with hub.serve(host, port) as server:``.

        Wraps :class:`openline.serve` with the hub's handler, subprotocol,
        handshake hook and keepalive. Compression is off unless
        ``compression="deflate"`` is passed: shared broadcast frames then apply
        only to clients that negotiated no context takeover (see
        :mod:`openline.asyncio.broadcast`).

        Args:
            host: The interface(s) to listen on.
            port: The port; 0 picks a free one.
            process_request: Runs before the hub's handshake hook (health checks,
                for instance); a response it returns is sent instead.
            **kwargs: Passed to :class:`openline.serve`.

        Raises:
            ValueError: ``kwargs`` sets what the hub decides: ``subprotocols``,
                ``select_subprotocol``, ``ping_interval`` or ``ping_timeout``.
        """
        for name in ("subprotocols", "select_subprotocol", "ping_interval", "ping_timeout"):
            if name in kwargs:
                raise ValueError(f"{name} is set by the hub; pass it to Hub() if it has it")
        kwargs.setdefault("compression", None)
        if "max_size" not in kwargs:
            limit = self._max_message_size
            kwargs["max_size"] = None if limit is None else 4 * limit

        async def hook(connection: ServerConnection, request: Request) -> Response | None:
            if process_request is not None:
                answer = await call_hook(process_request, connection, request)
                if answer is not None:
                    assert isinstance(answer, Response)
                    return answer
            return await self.process_request(connection, request)

        return serve(
            self.handle,
            host,
            port,
            subprotocols=[SUBPROTOCOL],
            process_request=hook,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            **kwargs,
        )

    def asgi(
        self,
        *,
        origins: Iterable[str] | None = None,
        origin_required: bool = False,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
    ) -> HubApp:
        """The hub as an ASGI 3 app, for Starlette, FastAPI or Django (``docs/asgi.md``).

        Args:
            origins: Origins allowed besides the server's own, such as
                ``["https://example.com"]``; ``"*"`` allows any (development
                only). ``None``: the server's own and clients without ``Origin``.
            origin_required: Refuse clients that send no ``Origin``.
            write_limit: ``(high, low)`` bytes queued per connection on servers
                without openline's engine (see :class:`.asgi_link.AsgiLink`).

        Raises:
            ValueError: An origin is malformed, or ``write_limit`` is out of range.
        """
        # Imported here: the app uses openline.web's Origin rules, and openline.web the hub.
        from .asgi import HubApp

        return HubApp(
            self, origins=origins, origin_required=origin_required, write_limit=write_limit
        )

    @property
    def is_running(self) -> bool:
        """Whether :meth:`running` (or :meth:`lifespan`) has started the hub for ASGI."""
        return self._running

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """Run the hub for its ASGI app: ``async with hub.running(): ...``.

        Starts the engine (connects it, for engines that connect); on exit,
        closes the connections still open with 1001, stops the hub's
        background work (:meth:`close`) and closes the engine, **even one
        passed to** ``Hub()``: the app's lifespan owns the hub's life. Until
        it has started, the ASGI app refuses connections with 503.

        Raises:
            RuntimeError: The hub is running already.
            BackendUnavailable: The engine can't reach its store.
        """
        if self._running:
            raise RuntimeError("the hub is running already")
        start = getattr(self.engine, "start", None)
        if start is not None:
            await start()
        self._running = True
        try:
            yield self
        finally:
            self._running = False
            # Each close is bounded by its connection's close timeout.
            closing = [session.ws.close(1001, "going away") for session in self._sessions]
            await asyncio.gather(*closing, return_exceptions=True)
            await self.close()
            if not self._owns_engine:
                await self.engine.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """:meth:`running`, shaped for ``FastAPI(lifespan=hub.lifespan)`` (Starlette too).

        Args:
            app: The app whose lifespan it is; unused.

        Raises:
            RuntimeError: The hub is running already.
            BackendUnavailable: The engine can't reach its store.
        """
        async with self.running():
            yield

    async def publish(
        self, ch: str, data: Any, *, id: str | None = None, user: str | None = None
    ) -> PublishResult:
        """Publish ``data`` to ``ch`` from server code.

        Args:
            ch: The channel.
            data: Any JSON-serializable value.
            id: An idempotency key: publishing again with the same ``id`` and
                ``user`` stores nothing and returns the original offset.
            user: Shown to subscribers as the message's ``user``; ``None`` omits it.

        Returns:
            The message's epoch and offset, and whether it was a duplicate.

        Raises:
            ValueError: ``ch`` or ``id`` isn't a valid name, or ``data`` isn't JSON.
            TypeError: ``data`` isn't JSON-serializable.
            BackendUnavailable: The engine can't reach its store.
        """
        if not wire.is_text(ch, self._parser.max_channel_length):
            raise ValueError(f"invalid channel name: {ch!r}")
        if id is not None and not wire.is_text(id, wire.MAX_ID_LENGTH):
            raise ValueError(f"invalid message id: {id!r}")
        return await self._store(ch, wire.encode_json(data), id, user, user)

    @property
    def subscription_count(self) -> int:
        """Channel subscriptions of this process's connections, now."""
        return sum(len(session.subs) for session in self._sessions)

    @property
    def channel_count(self) -> int:
        """Channels with at least one subscriber in this process, now."""
        return len(self._channels)

    # --- server API (docs/server-api.md; the logic is in server_api.py) ----------------

    async def presence(self, ch: str) -> PresenceSnapshot:
        """Who is in ``ch`` on every node (counts only beyond ``presence_limit`` users).

        Raises:
            ValueError: ``ch`` isn't a valid channel name.
            BackendUnavailable: The engine can't reach its store.
        """
        return await self._api.presence(ch, max_users=self._presence_limit)

    async def history(
        self,
        ch: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> HistoryResult:
        """Read ``ch``'s history; see :meth:`.server_api.ServerAPI.history`.

        Raises:
            ValueError: An argument is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        return await self._api.history(ch, since=since, epoch=epoch, limit=limit)

    async def channels(self) -> list[str]:
        """Channels with a subscriber on any node; see :meth:`.server_api.ServerAPI.channels`.

        Raises:
            BackendUnavailable: The engine can't reach its store.
        """
        return await self._api.channels()

    async def disconnect(
        self, user: str, *, code: int = 1008, reason: str = "disconnected by the server"
    ) -> None:
        """Close every connection of ``user``, on every node, with ``code`` and ``reason``.

        Raises:
            ValueError: ``user``, ``code`` or ``reason`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        await self._api.disconnect(user, code, reason)

    async def subscribe(self, user: str, ch: str) -> None:
        """Subscribe every connection of ``user``, on every node, to ``ch``.

        Each gets ``subscribed`` without a ``rid``, then the channel's messages.

        Raises:
            ValueError: ``user`` or ``ch`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        await self._api.subscribe(user, ch)

    async def unsubscribe(self, user: str, ch: str) -> None:
        """Unsubscribe every connection of ``user``, on every node, from ``ch``.

        Each gets ``unsubscribed`` without a ``rid``.

        Raises:
            ValueError: ``user`` or ``ch`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        await self._api.unsubscribe(user, ch)

    def metrics(self) -> dict[str, int]:
        """Return the hub's counters, errors as ``errors.<code>``."""
        return self.stats.as_dict()

    async def close(self) -> None:
        """Stop background work and close the engine if the hub created it.

        Closing the server (leaving ``async with hub.serve(...)``) closes the
        connections; call this afterwards.
        """
        self._states.close()
        await self._api.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._owns_engine:
            await self.engine.close()

    # --- connection handling (public for custom servers) -------------------------------

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """The handshake hook: check the subprotocol offer and authenticate.

        Pass it to :class:`openline.serve` with ``subprotocols=["openline.v1"]``
        and :meth:`handle` as the handler when not using :meth:`serve`.
        """
        self._forget_failed_handshakes()
        credentials = Credentials(find_token(request), request, connection.remote_address)
        verdict = await self.admit(credentials)
        if isinstance(verdict, Refusal):
            return Response.plain(verdict.status, verdict.reason + "\n", list(verdict.headers))
        if verdict.identity is not None:
            self._identities[connection] = verdict
        return None

    async def admit(self, credentials: Credentials) -> Admission | Refusal:
        """Decide whether a handshake may go on: the subprotocol offer, then ``authenticate``.

        For front-ends other than :meth:`serve` (the ASGI app of
        :mod:`openline.hub.asgi` uses it); refusals are counted in
        ``stats.handshakes``.

        Raises:
            TypeError: ``authenticate`` returned something else than an
                :class:`Identity` with a user.
        """
        if SUBPROTOCOL not in offered_subprotocols(credentials.request):
            self.stats.handshakes["bad_subprotocol"] += 1
            return Refusal(400, f"this is an openline hub: offer the {SUBPROTOCOL} subprotocol")
        scope = credentials.scope
        if self._authenticate is None:
            return Admission(None, scope=scope)
        try:
            identity = await call_hook(self._authenticate, credentials)
        except Reject as exc:
            self.stats.handshakes[_REFUSALS.get(exc.status, "refused")] += 1
            return _refusal(exc.status, exc.reason)
        if identity is None:
            self.stats.handshakes["unauthorized"] += 1
            return _refusal(401, "authentication required")
        if not isinstance(identity, Identity) or not identity.user:
            raise TypeError(f"authenticate must return an Identity with a user, got {identity!r}")
        if identity.expires is not None and identity.expires <= time.time():
            return _refusal(401, "token expired")
        return Admission(identity, Session.encode_info(identity), scope)

    async def handle(self, ws: Peer, admission: Admission | None = None) -> None:
        """The connection handler: serve one client until it goes away.

        Args:
            ws: An open connection: a :class:`ServerConnection` or any other
                :class:`~openline.hub.peer.Peer`.
            admission: What :meth:`admit` decided for ``ws``; by default, what
                :meth:`process_request` decided during ``ws``'s handshake.
        """
        found = admission
        if found is None and isinstance(ws, ServerConnection):
            found = self._identities.pop(ws, None)
        identity = None if found is None else found.identity
        session = Session(
            ws,
            Identity(str(ws.id)) if identity is None else identity,
            "{}" if found is None else found.info_json,
            anonymous=identity is None or identity.anonymous,
            rate_limit=self._rate_limit,
            max_errors=self._max_errors,
            now=time.monotonic(),
            scope=None if found is None else found.scope,
        )
        self._sessions.add(session)
        self.fanout.attach(ws)
        stats = self.stats
        stats.connections += 1
        stats.connections_total += 1
        stats.handshakes["accepted"] += 1
        try:
            await self._api.listen()
            await self._send(session, self._welcome(session))
            self.tokens.watch(session)
            async for raw in ws:
                if session.closing:
                    continue  # the close frame is on its way: read until it's answered
                await self._receive(session, raw)
                if session.publishes is not None and not ws.pending_messages:
                    # Read ahead only what has arrived: waiting for more now would
                    # answer a close that comes next before the publishes' replies.
                    await self._pipeline_idle(session)
        except ConnectionClosed as exc:
            if is_keepalive_timeout(exc):
                stats.keepalive_timeouts += 1
        finally:
            stats.connections -= 1
            self.tokens.forget(session)
            self._sessions.discard(session)
            await self._cleanup(session)

    # --- private: receiving ------------------------------------------------------------

    async def _receive(
        self,
        session: Session,
        raw: str | bytes,
        batch: list[wire.Publish] | None = None,
        queued: Queued | None = None,
    ) -> None:
        """Handle one client message; every refusal becomes an ``error`` reply.

        Publishes are pipelined (see :meth:`_publishing`): while some are being
        stored, later messages queue behind them, with their arrival time and
        whether the rate limit let them in (decided on arrival, as for the
        others); the pipeline hands them back here with ``queued`` and the
        batch the next publishes join.
        """
        queue = session.publishes
        if batch is None and queue is not None:
            arrived = time.monotonic()
            # Its turn comes after the publishes being stored.
            queue.append((raw, arrived, session.take_token(arrived)))
            if len(queue) >= PIPELINE_QUEUE:
                await self._queue_drained(session)
            return
        stats = self.stats
        stats.messages_in += 1
        stats.bytes_in += len(raw)
        request: wire.Request | None = None
        now = time.monotonic() if queued is None else queued[1]
        try:
            request = self._parser.parse(raw)
            if type(request) is wire.Publish and session.hold is not None:
                _check_hold(session, request, now)
            if not (session.take_token(now) if queued is None else queued[2]):
                raise _error_for(
                    request,
                    "rate_limited",
                    "too many messages: slow down",
                    retry_after=session.retry_after(now),
                )
            session.limited_since = None
            if type(request) is wire.Publish:
                await self._client_publish(session, request, batch)
                return
            if batch:  # replies go out in order: the batch's first
                await self._store_batch(session, batch)
            await self._dispatch(session, request)
        except ConnectionClosed:
            raise
        except Exception as exc:
            if isinstance(exc, RequestError):
                error = exc
            elif isinstance(exc, BackendUnavailable):
                error = _error_for(request, "unavailable", "try again later")
            else:
                self._logger.exception("hub failed to handle a message")
                error = _error_for(request, "internal", "internal error")
            if batch:  # the publishes before this message are answered first
                await self._store_batch(session, batch)
            await self._refuse(session, error, request, now)

    async def _dispatch(self, session: Session, request: wire.Request) -> None:
        if type(request) is wire.Subscribe:
            await self._subscribe(session, request)
        elif type(request) is wire.Unsubscribe:
            await self._unsubscribe(session, request)
        elif type(request) is wire.SetState:
            await self._set_state(session, request)
        elif type(request) is wire.GetPresence:
            await self._get_presence(session, request)
        elif type(request) is wire.Ping:
            await self._send(session, wire.dumps({"type": "pong", "rid": request.rid}))
        elif type(request) is wire.Token:
            await self.tokens.renew(session, request, self._authenticate)
        else:
            raise AssertionError(f"unexpected request {request!r}")

    async def _refuse(
        self,
        session: Session,
        error: RequestError,
        request: wire.Request | None = None,
        now: float | None = None,
    ) -> None:
        """Send an ``error`` reply; close with 1008 once the client abuses the hub."""
        now = time.monotonic() if now is None else now
        code = error.code
        held = session.hold is not None
        if not held and code in _RETRYABLE and type(request) is wire.Publish and request.id:
            # Later publishes wait behind this one, so that its client's retry,
            # from this one on, keeps their order.
            session.hold = Hold(request.id, code, now + HOLD_SECONDS)
        self.stats.errors[code] += 1
        await self._send(session, wire.encode_error(error))
        if code == "rate_limited":
            since = session.limited_since
            if since is None:
                session.limited_since = now
            if since is None or now - since <= FLOOD_GRACE:
                return  # in flight when the first refusal left, or load, not abuse
        elif code in _NOT_ABUSE:
            return
        if not session.count_error(now):
            return
        self.stats.abuse_closes += 1
        self._logger.info("closing %s: too many errors", session.client)
        session.closing = True
        self._spawn(self._cleanup(session))
        await session.ws.close(1008, "too many errors")

    # --- private: requests -------------------------------------------------------------

    async def _client_publish(
        self, session: Session, request: wire.Publish, batch: list[wire.Publish] | None
    ) -> None:
        """Add a publish to ``batch``, or start a pipeline with it."""
        ch = request.ch
        if not await self._allowed(session, "publish", ch):
            raise RequestError(
                "forbidden", "publish refused", rid=request.rid, ch=ch, id=request.id
            )
        if batch is not None:
            batch.append(request)
            if len(batch) >= PIPELINE_BATCH:
                await self._store_batch(session, batch)
            return
        session.publishes = collections.deque()
        self._spawn(self._publishing(session, [request]))

    async def _publishing(self, session: Session, batch: list[wire.Publish]) -> None:
        """Store one connection's publishes in order, a batch per engine round trip.

        Reading goes on meanwhile: what arrives queues in ``session.publishes``
        and is handled here in order once the batch is stored and answered;
        consecutive publishes among it form the next batch. So a publisher
        never waits a round trip per message, yet every publish is stored in
        the order sent, and every reply goes out in that order, as if they were
        handled one at a time (the hold after a refused publish included).
        """
        queue = session.publishes
        assert queue is not None
        try:
            while True:
                await self._store_batch(session, batch)
                if not queue or session.closing:
                    break
                while queue and len(batch) < PIPELINE_BATCH and not session.closing:
                    queued = queue.popleft()
                    await self._receive(session, queued[0], batch, queued)
                    if len(queue) < PIPELINE_QUEUE // 2:
                        self._wake_reader(session)
        except ConnectionClosed:
            pass
        except Exception:
            self._logger.exception("hub failed to store publishes")
        finally:
            session.publishes = None
            self._wake_reader(session)

    async def _pipeline_idle(self, session: Session) -> None:
        """Wait until the connection's publishes are stored and answered."""
        while session.publishes is not None and not session.closing:
            await self._queue_drained(session)

    async def _queue_drained(self, session: Session) -> None:
        """Wait until the pipeline caught up with the queue (reading waits meanwhile)."""
        waiter = asyncio.get_running_loop().create_future()
        self._readers[session] = waiter
        try:
            await waiter
        finally:
            self._readers.pop(session, None)

    def _wake_reader(self, session: Session) -> None:
        waiter = self._readers.pop(session, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _store_batch(self, session: Session, batch: list[wire.Publish]) -> None:
        """Store ``batch`` (emptied) and answer each publish in order."""
        if not batch:
            return
        requests = list(batch)
        batch.clear()
        # Idempotency keys are scoped by user, so that users can't collide, by
        # accident or on purpose. An anonymous user (no hook, or a guest the hook
        # made up) is new on each connection, which would defeat retries after a
        # redial: anonymous clients share one scope per channel (random ids).
        scope = None if session.anonymous else session.user
        items = [(r.ch, r.data, r.id, session.user, scope) for r in requests]
        started = time.perf_counter()
        results = await store_many(self.engine, items)
        elapsed = time.perf_counter() - started
        for request, result in zip(requests, results, strict=True):
            if session.closing:
                return
            self.stats.publish_latency.observe(elapsed)
            if isinstance(result, PublishResult):
                if not result.duplicate:
                    self.stats.publishes += 1
                ack = {
                    "type": "ack",
                    "ch": request.ch,
                    "epoch": result.epoch,
                    "offset": result.offset,
                    "id": request.id,
                    "duplicate": result.duplicate,
                    "rid": request.rid,
                }
                await self._send(session, wire.dumps(ack))
                continue
            now = time.monotonic()
            if isinstance(result, BackendUnavailable):
                error = _error_for(request, "unavailable", "try again later")
            else:
                self._logger.error("hub failed to store a publish", exc_info=result)
                error = _error_for(request, "internal", "internal error")
            if session.hold is not None:
                try:  # what handling them one at a time would have answered
                    _check_hold(session, request, now)
                except RequestError as held:
                    error = held
            await self._refuse(session, error, request, now)

    async def _store(
        self, ch: str, data: bytes, msg_id: str | None, user: str | None, scope: str | None
    ) -> PublishResult:
        started = time.perf_counter()
        try:
            result = await store(self.engine, ch, data, msg_id, user, scope)
        finally:
            self.stats.publish_latency.observe(time.perf_counter() - started)
        if not result.duplicate:
            self.stats.publishes += 1
        return result

    async def _subscribe(self, session: Session, request: wire.Subscribe) -> None:
        ch, rid = request.ch, request.rid
        if ch in session.subs:
            raise RequestError("already_subscribed", "already subscribed", rid=rid, ch=ch)
        limit = self._max_subscriptions
        if limit is not None and len(session.subs) >= limit:
            raise RequestError("limit_exceeded", f"at most {limit} subscriptions", rid=rid, ch=ch)
        if not await self._allowed(session, "subscribe", ch):
            raise RequestError("forbidden", "subscribe refused", rid=rid, ch=ch)
        if request.presence and not await self._allowed(session, "presence", ch):
            raise RequestError("forbidden", "presence refused", rid=rid, ch=ch)
        session.subs[ch] = Subscription(request.presence)
        try:
            await self._start_subscription(session, request)
        except BaseException:
            if session.subs.pop(ch, None) is not None:
                await self._leave(session, ch)
            raise

    async def _start_subscription(self, session: Session, request: wire.Subscribe) -> None:
        """Join presence, send history and the presence snapshot, then go live."""
        ch, since, engine = request.ch, request.since, self.engine
        channel = await self._open_channel(ch)
        # Registered first, so that the channel can't close under us during the awaits.
        sync = channel.add_syncing(session)
        await engine.presence_join(ch, session.user, session.client, session.info_json)
        # Events from here on are queued; the snapshot, read after, covers those before.
        sync.presence = request.presence
        if since is None:
            result = await engine.history(ch)
        else:
            result = await engine.history(ch, since=since[1], epoch=since[0])
        snapshot = await self._snapshot(channel) if request.presence else None
        if snapshot is not None:
            sync.presence_seq = snapshot.seq
        recovered = since is not None and result.recovered
        if recovered:
            self.stats.resumes_recovered += 1
        elif since is not None:
            self.stats.resumes_gap += 1
            await self._send(session, wire.encode_gap(ch, result.epoch, since, result.first_offset))
        subscribed = {
            "type": "subscribed",
            "ch": ch,
            "epoch": result.epoch,
            "offset": result.last_offset,
            "recovered": recovered,
            "missed": len(result.messages),
            "rid": request.rid,
        }
        await self._send(session, wire.dumps(subscribed))
        if snapshot is not None:
            await self._send(session, wire.encode_presence(ch, snapshot))
        for message in result.messages:
            await self._send(session, wire.encode_message(channel.name_json, message))
        await channel.finish_sync(session, sync, result)

    async def _unsubscribe(self, session: Session, request: wire.Unsubscribe) -> None:
        ch = request.ch
        if session.subs.pop(ch, None) is None:
            raise RequestError("not_subscribed", "not subscribed", rid=request.rid, ch=ch)
        await self._leave(session, ch)
        await self._send(
            session, wire.dumps({"type": "unsubscribed", "ch": ch, "rid": request.rid})
        )

    async def _server_subscribe(self, session: Session, ch: str) -> None:
        """Subscribe a session because server code asked (no hook, no limit, no rid)."""
        if ch in session.subs or session.closing:
            return
        session.subs[ch] = Subscription(False)
        try:
            await self._start_subscription(session, wire.Subscribe(ch))
        except BackendUnavailable:
            self._logger.warning("server subscribe of %s to %r failed", session.client, ch)
            if session.subs.pop(ch, None) is not None:
                await self._leave(session, ch)
        except BaseException:
            if session.subs.pop(ch, None) is not None:
                await self._leave(session, ch)
            raise

    async def _server_unsubscribe(self, session: Session, ch: str) -> None:
        """Unsubscribe a session because server code asked, and tell it."""
        if session.subs.pop(ch, None) is None:
            return
        await self._leave(session, ch)
        await self._send(session, wire.dumps({"type": "unsubscribed", "ch": ch}))

    async def _set_state(self, session: Session, request: wire.SetState) -> None:
        ch = request.ch
        if ch not in session.subs:
            raise RequestError("not_subscribed", "not subscribed", rid=request.rid, ch=ch)
        if not await self._allowed(session, "presence", ch):
            raise RequestError("forbidden", "presence refused", rid=request.rid, ch=ch)
        await self._states.update(ch, session.user, request.state)

    async def _get_presence(self, session: Session, request: wire.GetPresence) -> None:
        ch = request.ch
        if not await self._allowed(session, "presence", ch):
            raise RequestError("forbidden", "presence refused", rid=request.rid, ch=ch)
        channel = self._channels.get(ch)
        if channel is not None:
            snapshot = await self._snapshot(channel)
        else:
            counts_only = self._counts_only(ch)
            snapshot = await self.engine.presence_snapshot(
                ch, max_users=0 if counts_only else self._presence_limit
            )
            if counts_only:
                snapshot = PresenceSnapshot(snapshot.count, None)
        await self._send(session, wire.encode_presence(ch, snapshot, request.rid))

    # --- private: channels -------------------------------------------------------------

    async def _open_channel(self, ch: str) -> Channel:
        """Return the channel, subscribed at the engine and positioned."""
        while True:
            channel = self._channels.get(ch)
            if channel is None:
                channel = self._channels[ch] = Channel(self, ch)
                channel.started = asyncio.ensure_future(channel.start())
            assert channel.started is not None
            try:
                await asyncio.shield(channel.started)
            except Exception:
                if self._channels.get(ch) is channel:
                    del self._channels[ch]
                raise
            # The channel may have emptied and closed while we waited: then start over.
            if self._channels.get(ch) is channel:
                return channel

    async def _leave(self, session: Session, ch: str) -> None:
        """Undo a subscription: stop delivery, leave presence, close an empty channel."""
        channel = self._channels.get(ch)
        if channel is not None:
            channel.remove(session)
            if channel.is_empty():
                del self._channels[ch]
                await channel.stop()
        if await self.engine.presence_leave(ch, session.user, session.client):
            self._states.forget(ch, session.user)

    async def _cleanup(self, session: Session) -> None:
        """Leave every channel; safe to run twice, even concurrently."""
        while session.subs:
            ch, _ = session.subs.popitem()
            try:
                await self._leave(session, ch)
            except Exception:
                self._logger.exception("hub failed to leave %r", ch)

    async def _snapshot(self, channel: Channel) -> PresenceSnapshot:
        max_users = 0 if channel.counts_only else self._presence_limit
        snapshot = await self.engine.presence_snapshot(channel.name, max_users=max_users)
        if snapshot.users is None or channel.counts_only:
            channel.counts_only = True
            return PresenceSnapshot(snapshot.count, None, snapshot.seq)
        return snapshot

    def _counts_only(self, ch: str) -> bool:
        hook = self._counts_only_hook
        return hook is not None and hook(ch)

    async def _allowed(self, session: Session, action: Action, ch: str) -> bool:
        hook = self._authorize
        if hook is None:
            return True
        return bool(await call_hook(hook, session.identity, action, ch))

    # --- private: sending --------------------------------------------------------------

    def _welcome(self, session: Session) -> bytes:
        rate = self._rate_limit
        limits = {
            "message": self._max_message_size,
            "subscriptions": self._max_subscriptions,
            "state": self._parser.max_state_size,
            # The token bucket: clients pace themselves below it (docs/protocol.md).
            "rate": None if rate is None else round(rate[0] / rate[1], 6),
            "burst": None if rate is None else rate[0],
            "buffer": self.fanout.max_buffer,
        }
        welcome = {
            "type": "welcome",
            "client": session.client,
            "user": session.user,
            "heartbeat": self._ping_interval,
            "timeout": self._ping_timeout,
            "limits": {key: value for key, value in limits.items() if value is not None},
        }
        return wire.dumps(welcome)

    async def _send(self, session: Session, frame: bytes) -> None:
        """Send a reply, waiting for the connection's flow control.

        Raises:
            ConnectionClosed: The connection is closed.
        """
        await Broadcast(frame, text=True).send(session.ws)
        self.stats.messages_out += 1
        self.stats.bytes_out += len(frame)

    # --- private: housekeeping ---------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, ConnectionClosed):
                self._logger.error("hub background task failed", exc_info=exc)

    def _forget_failed_handshakes(self) -> None:
        """Drop identities of connections whose handshake failed after the hook."""
        stale = [ws for ws in self._identities if ws.state is State.CLOSED]
        for ws in stale:
            del self._identities[ws]


#: Handshake results counted by the status an authentication hook refused with.
_REFUSALS = {401: "unauthorized", 403: "forbidden"}


def _refusal(status: int, reason: str) -> Refusal:
    headers = (("WWW-Authenticate", "Bearer"),) if status == 401 else ()
    return Refusal(status, reason, headers)


def _error_for(
    request: wire.Request | None,
    code: wire.ErrorCode,
    reason: str,
    *,
    retry_after: float | None = None,
) -> RequestError:
    """Build an error reply about ``request``, echoing what identifies it."""
    rid = None if request is None else request.rid
    ch = getattr(request, "ch", None)
    msg_id = getattr(request, "id", None)
    if retry_after is not None:
        retry_after = math.ceil(retry_after * 1000) / 1000  # whole ms, never early
    return RequestError(code, reason, rid=rid, ch=ch, id=msg_id, retry_after=retry_after)


def _check_hold(session: Session, request: wire.Publish, now: float) -> None:
    """Refuse a publish that must wait for the retry of an earlier refused one.

    Raises:
        RequestError: It waits; the code is the earlier refusal's.
    """
    hold = session.hold
    assert hold is not None
    if request.id == hold.id or now >= hold.until:
        session.hold = None  # the retry has come (or never will): handle it normally
        return
    retry_after = session.retry_after(now) if hold.code == "rate_limited" else None
    raise _error_for(
        request,
        hold.code,
        f"waiting for the retry of publish {wire.show(hold.id)}",
        retry_after=retry_after,
    )
