"""The resilient hub client: :class:`Client`, one connection to a hub that survives redials.

::

    async with Client("wss://example.com/hub", token=token) as client:
        room = await client.subscribe("room:1", presence=True)
        await client.publish("room:1", {"text": "hello"})
        async for item in room:
            match item:
                case Publication(data=data):
                    show(data)
                case Gap():
                    reload_the_room()  # messages were lost: never silently

What the client does on its own, so that the application doesn't have to:

* **Redials** with capped exponential backoff and full jitter (the policies of
  :mod:`openline.asyncio.backoff`), and obeys the close code: 1001, 1006, 1011,
  1012, 1013 redial; 1008 stops. A handshake refused with 401 or 403 stops too.
  A stop makes every pending call, and every subscription, raise the error.
* **Detects a dead line** even when no FIN ever arrives (a blackhole): it sends
  a ``ping`` every ``heartbeat_interval`` seconds and gives the connection up
  when nothing at all arrived within ``heartbeat_timeout`` seconds of a ping.
  Detection takes at most ``heartbeat_interval + heartbeat_timeout``. The
  WebSocket keepalive runs with the same settings (whichever notices first
  wins); it also keeps proxies from cutting an idle line.
* **Resumes** every subscription after a redial from its last ``(epoch, offset)``,
  drops what it has seen already (by offset, in case the hub resends), and
  reports a :class:`~openline.hub.client.events.Gap` where history fell short.
* **Queues publishes** while offline, in order, each with a unique client
  message id so that the hub stores a retried one once; at most ``max_queue``
  publishes wait for their ack, further ``publish()`` calls wait for room.

Requests go out in the order the application made them. Two caveats, both
about a hub that refuses requests as ``rate_limited`` (or ``unavailable``):
such a publish is retried after a delay, and lands after the publishes that
followed it if the hub accepted those; and a hub counts ``rate_limited``
refusals toward its abuse limit, so flushing a long offline queue into a tight
rate limit may earn a 1008, which stops the client.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ...asyncio.backoff import Classifier, Classify, Schedule
from ...asyncio.client import ClientConnection, connect
from ...asyncio.config import check_count, check_timeout
from ...asyncio.redial import Redialer
from ...exceptions import ClientClosed, ConnectionClosed, HubError, RequestError
from ...protocol.connection import State
from ...protocol.http11 import Headers, HeadersLike
from ...typing import LoggerLike
from ..policy import POLICY, Pacer, PolicyBackoff
from ..wire import MAX_ID_LENGTH, SUBPROTOCOL
from .events import (
    Ack,
    ClientEvent,
    Connected,
    Disconnected,
    Error,
    Gap,
    Presence,
    Reconnecting,
    ServerSubscribed,
    ServerUnsubscribed,
)
from .subscription import Subscription, parse_presence
from .token_source import GetToken, fetch_token, with_token_codes

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_RESET_AFTER",
    "Client",
    "ClientClosed",
    "Subscription",
]

#: Seconds between two heartbeat pings.
DEFAULT_HEARTBEAT_INTERVAL = POLICY.heartbeat_interval
#: Seconds to hear anything after a ping before giving the connection up.
DEFAULT_HEARTBEAT_TIMEOUT = POLICY.heartbeat_timeout
#: Seconds a connection must last before the redial backoff starts over.
DEFAULT_RESET_AFTER = POLICY.reset_after
#: Publishes waiting for their ack, offline or not.
DEFAULT_MAX_QUEUE = 1000
#: Items a subscription holds for the application before reading pauses.
DEFAULT_MAX_BUFFER = 1000
#: Events an ``events()`` iterator holds before dropping the oldest.
DEFAULT_MAX_EVENTS = 100

# Error codes after which a request is worth sending again: the hub didn't process it.
_RETRY_CODES = POLICY.retry_errors

_PING = '{"type":"ping"}'


def _encode(fields: Mapping[str, Any]) -> str:
    """Encode a request as compact JSON.

    Raises:
        TypeError: A value isn't JSON-serializable.
        ValueError: A value is NaN or infinite, which JSON can't carry.
    """
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class _Publish:
    """A publish waiting for its ack."""

    __slots__ = ("ch", "future", "id", "rid", "text")

    def __init__(self, ch: str, msg_id: str, rid: str, text: str, future: asyncio.Future[Ack]):
        self.ch = ch
        self.id = msg_id
        self.rid = rid
        self.text = text
        self.future = future


class _Query:
    """A presence query waiting for its snapshot."""

    __slots__ = ("ch", "future", "rid")

    def __init__(self, ch: str, rid: str, future: asyncio.Future[Presence]) -> None:
        self.ch = ch
        self.rid = rid
        self.future = future


class _DeadLine(TimeoutError):
    """The heartbeat gave the connection up: nothing arrived in time after a ping."""


class _EventStream:
    """One ``events()`` iterator: a bounded queue that drops the oldest event."""

    def __init__(self, limit: int | None) -> None:
        self._events: collections.deque[ClientEvent] = collections.deque(maxlen=limit)
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        #: Events dropped because the consumer fell behind.
        self.dropped = 0

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> ClientEvent:
        while not self._events:
            if self._ended:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._events.popleft()

    def put(self, event: ClientEvent) -> None:
        events = self._events
        if events.maxlen is not None and len(events) == events.maxlen:
            self.dropped += 1
        events.append(event)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Client:
    """A hub client that redials, resumes its subscriptions and queues its publishes.

    Use as ``async with Client(uri) as client:``; see the module docstring for
    what it does by itself. Everything it tells the application comes as
    :mod:`~openline.hub.client.events`: items on each :class:`Subscription`, and
    connection events on :meth:`events` and ``on_event``.

    Args:
        uri: The hub's ``ws://`` or ``wss://`` URI; or several, of nodes that
            serve the same hub (sharing one engine, such as Redis). With
            several, each dial after a failed dial or a lost connection goes
            to the next URI in turn, so that clients of a node that died
            resume on another one.
        token: Sent as ``Authorization: Bearer <token>``; ``None`` sends none.
        get_token: ``() -> str | None``, plain or ``async``, called before each
            dial and when the hub asks for a new token (``refresh``): the new
            one goes out in a ``token`` message, without reconnecting. Excludes
            ``token``. A connection closed with 4001 (token expired) is
            redialled, with a new token; a failing ``get_token`` is retried
            with the redial delays.
        headers: More request headers for the handshake.
        backoff: The delays between redials: a re-iterable of seconds, started
            over once a connection lasted ``reset_after`` seconds; redialling
            stops when it runs out. ``None`` uses
            :class:`~openline.hub.policy.PolicyBackoff`, the table both clients
            share (first redial after 0.5-1 s, then 1-2 s, then 1.5-3 s, jittered).
            Also paces the retries of requests the hub refused as
            ``unavailable`` or ``internal`` (``rate_limited`` ones wait the
            ``retry_after`` the hub gave).
        classify: Decides which failures are worth a redial: ``classify(exc)``
            returns ``None`` to stop, or the least delay in seconds. ``None``
            uses :class:`~openline.asyncio.backoff.Classifier`.
        max_attempts: Most dials in a row without a healthy connection; then
            the client stops with the last failure. ``None`` redials forever.
        reset_after: Seconds a connection must last before the backoff starts
            over; ``None`` starts it over at every connection.
        heartbeat_interval: Seconds between two ``ping`` messages; ``None``
            disables the heartbeat (a dead line then goes unnoticed until TCP
            gives up). Also the WebSocket keepalive interval, unless
            ``ping_interval`` is given.
        heartbeat_timeout: Seconds to hear anything after a ping before giving
            the connection up as dead; ``None`` waits forever. Also the
            WebSocket ``ping_timeout``, ``open_timeout`` and ``close_timeout``,
            and the wait for the hub's ``welcome``, unless given.
        max_queue: Publishes waiting for their ack (while offline too); more
            ``publish()`` calls wait for room. ``None`` disables the bound.
        max_buffer: Items each subscription holds for the application; beyond,
            the client stops reading from the hub. ``None`` disables the bound.
        max_events: Events each :meth:`events` iterator holds; beyond, the
            oldest is dropped. ``None`` disables the bound.
        pace: Keep below the rate the hub announces in its welcome (90 % of it,
            in bursts of half its burst; see :class:`~openline.hub.policy.Pacer`),
            so that flushing a long offline queue is never refused. ``False``
            sends as fast as the application asks; the hub's ``rate_limited``
            refusals then pace the retries.
        on_event: Called with every :data:`~openline.hub.client.events.ClientEvent`, at
            once and synchronously; its exceptions are logged.
        logger: Where to log; ``openline.hub.client`` by default. One INFO line
            per redial.
        **kwargs: Passed to :class:`openline.connect` (``ssl``, ``open_timeout``,
            ``ping_interval``...).

    Raises:
        ValueError: An argument is out of range; the message names it.
        ValueError: ``uri`` is an empty sequence.
        InvalidURI: ``uri`` isn't a WebSocket URI.

    Attributes:
        client_id: The hub's id for the current (or last) connection.
        user: Who the hub says we are.
        stats: Counters: ``connects``, ``disconnects``, ``dead_lines`` (given up
            by heartbeat), ``duplicates`` (messages dropped as seen already),
            ``gaps``, ``republished`` (publishes sent again after a refusal).
    """

    def __init__(
        self,
        uri: str | Sequence[str],
        *,
        token: str | None = None,
        get_token: GetToken | None = None,
        headers: HeadersLike | None = None,
        # reconnecting
        backoff: Iterable[float] | None = None,
        classify: Classify | None = None,
        max_attempts: int | None = None,
        reset_after: float | None = DEFAULT_RESET_AFTER,
        # timeouts
        heartbeat_interval: float | None = DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
        # limits
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        max_buffer: int | None = DEFAULT_MAX_BUFFER,
        max_events: int | None = DEFAULT_MAX_EVENTS,
        pace: bool = True,
        # callbacks
        on_event: Callable[[ClientEvent], None] | None = None,
        # logging
        logger: LoggerLike | None = None,
        # advanced
        **kwargs: Any,
    ) -> None:
        self._heartbeat_interval = check_timeout("heartbeat_interval", heartbeat_interval)
        self._heartbeat_timeout = check_timeout("heartbeat_timeout", heartbeat_timeout)
        self._max_queue = check_count("max_queue", max_queue, minimum=1)
        self._max_buffer = check_count("max_buffer", max_buffer, minimum=1)
        self._max_events = check_count("max_events", max_events, minimum=1)
        if "subprotocols" in kwargs:
            raise ValueError(f"subprotocols is set by the client: {SUBPROTOCOL}")
        if token is not None and get_token is not None:
            raise ValueError("give token or get_token, not both")
        self._get_token = get_token
        fields = Headers(headers)
        if token is not None:
            fields["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("ping_interval", self._heartbeat_interval)
        kwargs.setdefault("ping_timeout", self._heartbeat_timeout)
        if self._heartbeat_timeout is not None:
            # A line that dies during the opening or closing handshake is dead too.
            kwargs.setdefault("open_timeout", self._heartbeat_timeout)
            kwargs.setdefault("close_timeout", self._heartbeat_timeout)
        self._logger: LoggerLike = logger or logging.getLogger("openline.hub.client")
        uris = [uri] if isinstance(uri, str) else list(uri)
        if not uris:
            raise ValueError("uri must name at least one hub")
        self._uris = uris
        self._headers = fields
        self._connect_kwargs = kwargs
        self._dialers = [self._dialer(one, fields) for one in uris]
        self._next_dialer = 0
        self._backoff: Iterable[float] = backoff if backoff is not None else PolicyBackoff()
        self._schedule = Schedule(
            backoff=self._backoff,
            classify=with_token_codes(classify if classify is not None else Classifier()),
            max_attempts=max_attempts,
            reset_after=reset_after,
        )
        self._on_event = on_event
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "connects",
                "disconnects",
                "dead_lines",
                "duplicates",
                "gaps",
                "republished",
                "refreshes",
            ),
            0,
        )
        self._refreshing: asyncio.Task[None] | None = None
        self.client_id: str | None = None
        self.user: str | None = None
        self._subs: dict[str, Subscription] = {}
        self._outbox: dict[str, _Publish] = {}  # by request id, oldest first
        self._queries: dict[str, _Query] = {}
        self._room: list[asyncio.Future[None]] = []
        self._streams: list[_EventStream] = []
        self._seq = 0
        self._id_prefix = secrets.token_urlsafe(9) + "-"
        # The current connection, and its output queue: requests go out in order.
        self._ws: ClientConnection | None = None
        self._out: collections.deque[str | _Publish] = collections.deque()
        self._out_wake: asyncio.Future[None] | None = None
        self._stalled = False  # publishes wait for the retry after a refusal
        # Keeps us below the rate the hub announced in its welcome.
        self._pacer = Pacer()
        self._pace = pace
        self._retry_delays: Iterator[float] | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._last_rx = 0.0
        self._blocked = False  # waiting for the application to make room
        self._dead = False
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closing = False
        self._fatal: Exception | None = None
        # The hub's message size limit, from its welcome: a larger publish would be
        # refused without a request id, so the client refuses it itself.
        self._max_message: int | None = None

    # --- public API: lifecycle ---------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open and welcomed right now."""
        return self._ws is not None

    @property
    def subscriptions(self) -> Mapping[str, Subscription]:
        """The subscriptions, by channel."""
        return self._subs

    async def start(self) -> None:
        """Start connecting, and wait for the first outcome.

        Returns once connected, or once the first dial failed in a way worth
        retrying: the client then keeps redialling in the background.

        Raises:
            RuntimeError: The client was started already.
            Exception: The first dial failed for good, for example
                :class:`~openline.exceptions.InvalidStatus` for a 401 or 403.
        """
        if self._task is not None:
            raise RuntimeError("the client is already started")
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._run())
        await asyncio.shield(self._ready)

    async def close(self) -> None:
        """Close the connection and stop; pending calls raise :class:`ClientClosed`."""
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        if ws is not None:
            await ws.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        self._end_all(ClientClosed("the client is closed"))

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def events(self) -> AsyncIterator[ClientEvent]:
        """Iterate over the client's events from now on, until it closes or stops.

        Each call returns a new iterator with its own queue of ``max_events``.
        """
        stream = _EventStream(self._max_events)
        if self._closing or self._fatal is not None:
            stream.end()
        else:
            self._streams.append(stream)
        return stream

    # --- public API: channels ----------------------------------------------------------

    async def subscribe(
        self, ch: str, *, presence: bool = False, since: tuple[str, int] | None = None
    ) -> Subscription:
        """Subscribe to ``ch`` and wait until the hub confirms it.

        While offline, waits until a connection opens.

        Args:
            ch: The channel.
            presence: Whether to receive presence snapshots and events.
            since: Resume after this ``(epoch, offset)``, as kept from
                :attr:`Subscription.position`; ``None`` starts with new messages.

        Raises:
            ValueError: Already subscribed to ``ch``.
            RequestError: The hub refused, e.g. with ``forbidden``.
            ClientClosed: The client closed, or :meth:`unsubscribe` ran, meanwhile.
            Exception: The error that stopped the client.
        """
        self._check_usable()
        if ch in self._subs:
            raise ValueError(f"already subscribed to {ch!r}")
        sub = Subscription(
            self.unsubscribe,
            ch,
            presence=presence,
            since=since,
            max_buffer=self._max_buffer,
            report=self._report,
        )
        self._subs[ch] = sub
        if self._ws is not None:
            self._send_subscribe(sub)
        try:
            await asyncio.shield(sub._confirmed)
        except BaseException:
            if self._subs.get(ch) is sub:
                self._drop(sub, ClientClosed("subscribe() was cancelled"))
            raise
        return sub

    async def unsubscribe(self, ch: str) -> None:
        """Leave ``ch``; its subscription's iteration ends. Does nothing if not subscribed."""
        sub = self._subs.get(ch)
        if sub is not None:
            self._drop(sub, ClientClosed("unsubscribed"))

    async def publish(self, ch: str, data: Any, *, id: str | None = None) -> Ack:
        """Publish ``data`` on ``ch`` and wait for the hub's ack.

        While offline, the publish waits in the queue and goes out, in order,
        once a connection opens; it is sent again after each redial until
        acked, and the hub stores it once. Cancelling the call stops its
        retries, but can't recall a publish already sent.

        Args:
            ch: The channel.
            data: Any JSON-serializable value.
            id: The client message id; a unique one by default.

        Raises:
            TypeError: ``data`` isn't JSON-serializable.
            ValueError: ``data`` holds NaN or infinity, or ``id`` is empty or too long.
            RequestError: The hub refused the publish, e.g. with ``forbidden``; or
                ``too_large``, over the limit the hub announced in its welcome.
            ClientClosed: The client closed before the ack.
            Exception: The error that stopped the client.
        """
        self._check_usable()
        if id is not None and not 0 < len(id) <= MAX_ID_LENGTH:
            raise ValueError(f"id must have 1 to {MAX_ID_LENGTH} characters, got {len(id)}")
        rid = self._next_rid("p")
        msg_id = id if id is not None else self._id_prefix + rid
        text = _encode({"type": "publish", "ch": ch, "data": data, "id": msg_id, "rid": rid})
        self._check_size(text, ch, msg_id)
        limit = self._max_queue
        while limit is not None and len(self._outbox) >= limit:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            await waiter
            self._check_usable()
        entry = _Publish(ch, msg_id, rid, text, asyncio.get_running_loop().create_future())
        self._outbox[rid] = entry
        if self._ws is not None and not self._stalled:
            self._send(entry)
        try:
            return await entry.future
        finally:
            if self._outbox.pop(rid, None) is not None:
                self._make_room()

    async def set_state(self, ch: str, state: Mapping[str, Any] | None) -> None:
        """Set (or clear, with ``None``) your ephemeral state on ``ch``, e.g. ``{"typing": True}``.

        State is ephemeral: while offline, it is dropped. The hub throttles
        updates, and expires the state unless it is set again; others see it
        as :class:`~openline.hub.client.events.StateChange` items.

        Raises:
            ValueError: Not subscribed to ``ch``.
            TypeError: ``state`` isn't JSON-serializable.
            RequestError: ``too_large``, over the hub's message limit.
        """
        self._check_usable()
        if ch not in self._subs:
            raise ValueError(f"not subscribed to {ch!r}")
        text = _encode({"type": "state", "ch": ch, "state": state, "rid": self._next_rid("t")})
        self._check_size(text, ch)
        if self._ws is not None:
            self._send(text)

    async def presence(self, ch: str) -> Presence:
        """Ask the hub who is in ``ch``; while offline, wait for a connection.

        Raises:
            RequestError: The hub refused, e.g. with ``forbidden``.
            ClientClosed: The client closed meanwhile.
            Exception: The error that stopped the client.
        """
        self._check_usable()
        rid = self._next_rid("q")
        query = _Query(ch, rid, asyncio.get_running_loop().create_future())
        self._queries[rid] = query
        if self._ws is not None:
            self._send(_encode({"type": "presence", "ch": ch, "rid": rid}))
        try:
            return await query.future
        finally:
            self._queries.pop(rid, None)

    # --- private: the redial loop ------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._redial()
        except Exception as exc:  # a bug: don't let pending calls hang on it
            self._stop(exc)

    async def _redial(self) -> None:
        redialer = Redialer(
            self._schedule, self._dial_next, on_retry=self._retrying, stopped=self._is_closing
        )
        error: Exception | None = None
        while True:
            try:
                ws = await redialer.next(error)
            except Exception as exc:  # the classifier's verdict
                self._stop(exc)
                return
            if ws is None:
                return
            error = await self._serve(ws, redialer.attempt)

    def _is_closing(self) -> bool:
        return self._closing

    def _retrying(self, error: Exception, delay: float, was_open: bool) -> None:
        """Say that the connection is lost or failed, and that the next dial waits ``delay``."""
        attempt = self._schedule.attempts + 1
        self._logger.info(
            "hub connection %s: %s; redialling in %.3f s (attempt %d)",
            "lost" if isinstance(error, (ConnectionClosed, _DeadLine)) else "failed",
            str(error) or type(error).__name__,
            delay,
            attempt,
        )
        self._report(Reconnecting(attempt, delay, error))
        self._set_ready()

    async def _dial_next(self) -> ClientConnection:
        """Dial the next node; whatever comes of it, the next dial tries the one after."""
        try:
            return await self._dial()
        finally:
            # With one URI, the same one.
            self._next_dialer = (self._next_dialer + 1) % len(self._dialers)

    def _dialer(self, uri: str, headers: Headers) -> connect:
        return connect(
            uri,
            subprotocols=[SUBPROTOCOL],
            additional_headers=headers,
            logger=self._logger,
            **self._connect_kwargs,
        )

    async def _dial(self) -> ClientConnection:
        """Open a connection to the next node, with a fresh token from ``get_token``.

        Raises:
            TokenUnavailable: ``get_token`` failed.
        """
        if self._get_token is None:
            return await self._dialers[self._next_dialer]  # each await dials once
        token = await fetch_token(self._get_token)
        fields = Headers(self._headers)
        if token is not None:
            fields["Authorization"] = f"Bearer {token}"
        return await self._dialer(self._uris[self._next_dialer], fields)

    async def _refresh(self, ws: ClientConnection) -> None:
        """Answer the hub's ``refresh``: send a new token on the same connection."""
        assert self._get_token is not None
        try:
            token = await fetch_token(self._get_token)
        except HubError as exc:
            self._report(Error(exc))  # the hub closes with 4001 at expiry; we redial then
            return
        if token is not None and self._ws is ws:
            self._send(_encode({"type": "token", "token": token, "rid": self._next_rid("k")}))

    async def _serve(self, ws: ClientConnection, attempt: int) -> Exception:
        """Run one connection until it ends; return the exception that ended it."""
        self._dead = False
        tasks: list[asyncio.Task[None]] = []
        error: Exception
        try:
            await self._welcome(ws, attempt)
            tasks.append(asyncio.ensure_future(self._pump(ws)))
            tasks.append(asyncio.ensure_future(self._heartbeat(ws)))
            while True:
                raw = await ws.recv()
                self._last_rx = time.monotonic()
                full = self._receive(raw)
                if full is not None:
                    # Reading stops until the application catches up: TCP pushes back.
                    self._blocked = True
                    try:
                        await full.wait_room()
                    finally:
                        self._blocked = False
                        self._last_rx = time.monotonic()
        except ConnectionClosed as exc:
            error = exc
        except Exception as exc:  # no welcome in time, or not a hub
            error = exc
        finally:
            for task in tasks:
                task.cancel()
            self._disconnect(ws)
        if self._dead:
            timeout = self._heartbeat_timeout
            error = _DeadLine(f"no message from the hub within {timeout} s of a ping")
            self.stats["dead_lines"] += 1
            self._report(Disconnected(1006, "heartbeat timeout", error))
        elif isinstance(error, ConnectionClosed) and _keepalive_failed(error):
            # The WebSocket keepalive noticed first: a dead line all the same.
            self.stats["dead_lines"] += 1
            self._report(Disconnected(1006, "keepalive timeout", error))
        elif isinstance(error, ConnectionClosed):
            self._report(Disconnected(error.code, error.reason, error))
        else:
            self._report(Disconnected(1006, str(error), error))
        return error

    async def _welcome(self, ws: ClientConnection, attempt: int) -> None:
        """Read the hub's ``welcome``, then resume subscriptions and flush the queue.

        Raises:
            TimeoutError: No welcome within ``heartbeat_timeout``.
            HubError: The first message isn't a welcome.
            ConnectionClosed: The connection closed first.
        """
        try:
            raw = await asyncio.wait_for(ws.recv(), self._heartbeat_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError("no welcome from the hub") from None
        welcome = _parse(raw)
        if welcome is None or welcome.get("type") != "welcome":
            raise HubError("the server didn't send a welcome: is it an openline hub?")
        self._last_rx = time.monotonic()
        self.client_id = str(welcome.get("client", ""))
        self.user = str(welcome.get("user", ""))
        limits = welcome.get("limits")
        if not isinstance(limits, dict):
            limits = {}
        limit = limits.get("message")
        self._max_message = limit if isinstance(limit, int) else None
        rate = limits.get("rate") if self._pace else None
        self._pacer.configure(rate, limits.get("burst"), time.monotonic())
        self._refuse_too_large()
        self._ws = ws
        self._out.clear()
        self._stalled = False
        for sub in self._subs.values():
            self._send_subscribe(sub)
        for query in self._queries.values():
            self._send(_encode({"type": "presence", "ch": query.ch, "rid": query.rid}))
        for entry in self._outbox.values():
            self._send(entry)
        self.stats["connects"] += 1
        self._report(Connected(self.client_id, self.user, attempt))
        self._set_ready()

    def _disconnect(self, ws: ClientConnection) -> None:
        """Forget the connection; requests in flight wait for the next one."""
        if self._ws is ws:
            self._ws = None
            self.stats["disconnects"] += 1
        self._out.clear()
        self._out_wake = None
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        for sub in self._subs.values():
            sub.rid = None
        if self._refreshing is not None:
            self._refreshing.cancel()  # the next dial asks get_token itself
            self._refreshing = None
        if ws.state is State.OPEN:
            # Given up (a dead line, no welcome): no closing handshake to wait for.
            ws.abort()

    # --- private: sending --------------------------------------------------------------

    def _next_rid(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}{self._seq}"

    def _send(self, item: str | _Publish) -> None:
        """Queue a request for the current connection, after those queued before."""
        self._out.append(item)
        wake = self._out_wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _pump(self, ws: ClientConnection) -> None:
        """Send the queued requests, in order and paced, for as long as the connection lasts.

        Each request waits for room in the pacer, so that flushing a long
        queue after a redial stays below the rate the hub announced.
        """
        out, pacer = self._out, self._pacer
        try:
            while True:
                while out:
                    delay = pacer.delay(time.monotonic())
                    if delay > 0:
                        await asyncio.sleep(delay)
                        continue  # the queue may have changed meanwhile
                    item = out.popleft()
                    if isinstance(item, _Publish):
                        if item.rid not in self._outbox or self._stalled:
                            continue  # acked or cancelled, or the retry resends it
                        text = item.text
                    else:
                        text = item
                    pacer.spend(time.monotonic())
                    await ws.send(text)
                wake = self._out_wake = asyncio.get_running_loop().create_future()
                await wake
        except ConnectionClosed:
            pass  # the reader sees it too, and ends the connection

    def _check_size(self, text: str, ch: str, msg_id: str | None = None) -> None:
        """Refuse a request over the hub's message size limit, as the hub would.

        Raises:
            RequestError: ``too_large``.
        """
        limit = self._max_message
        # A str of n characters holds at most 4n bytes of UTF-8: encode only when unsure.
        if limit is not None and len(text) * 4 > limit and len(text.encode()) > limit:
            raise RequestError("too_large", f"message exceeds {limit} bytes", ch=ch, id=msg_id)

    def _refuse_too_large(self) -> None:
        """Fail queued publishes that the hub, as its welcome says, would refuse."""
        for entry in list(self._outbox.values()):
            try:
                self._check_size(entry.text, entry.ch, entry.id)
            except RequestError as exc:
                del self._outbox[entry.rid]
                self._make_room()
                if not entry.future.done():
                    entry.future.set_exception(exc)

    def _send_subscribe(self, sub: Subscription) -> None:
        self._send(_encode(sub.request(self._next_rid("s"))))

    def _drop(self, sub: Subscription, end: ClientClosed) -> None:
        """Forget a subscription, and leave the channel at the hub if we joined it."""
        del self._subs[sub.ch]
        sent = sub.confirmed or sub.rid is not None
        sub.finish(end)
        if self._ws is not None and sent:
            # After a subscribe in flight, the hub processes this second: it undoes it.
            self._send(_encode({"type": "unsubscribe", "ch": sub.ch}))

    def _retry_later(self, retry_after: float | None = None) -> None:
        """Send unacked publishes (and unconfirmed subscribes) again after a delay.

        A refusal such as ``rate_limited`` means the hub didn't process the
        request: it is safe, and necessary, to send it again. The hub holds
        the publishes that followed a refused one until it comes back, so all
        unacked publishes go again, in their order, from the oldest.
        Publishes are idempotent by id: sending again one that was processed
        is harmless.

        Args:
            retry_after: The hub's hint (``rate_limited``): wait exactly that
                long; ``None`` waits the next delay of the backoff.
        """
        self._stalled = True
        if self._retry_timer is not None:
            return
        if retry_after is not None:
            delay = retry_after
            self._pacer.drain(time.monotonic())
        else:
            delays = self._retry_delays
            if delays is None:
                delays = self._retry_delays = iter(self._backoff)
            next_delay = next(delays, None)
            if next_delay is None:  # a finite backoff ran out: keep its last pace
                delays = self._retry_delays = iter(self._backoff)
                next_delay = next(delays, 0.0)
            delay = next_delay
        self._retry_timer = asyncio.get_running_loop().call_later(delay, self._resend)

    def _resend(self) -> None:
        self._retry_timer = None
        self._stalled = False
        for sub in self._subs.values():
            if sub.rid is not None and not sub.answered:
                self._send_subscribe(sub)
        for query in self._queries.values():
            self._send(_encode({"type": "presence", "ch": query.ch, "rid": query.rid}))
        for entry in self._outbox.values():
            self.stats["republished"] += 1
            self._send(entry)

    # --- private: heartbeat ------------------------------------------------------------

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Ping every interval; give the connection up if nothing answers in time.

        Any message counts as an answer, and so does waiting on the application:
        a client that stopped reading because the application is slow isn't
        deaf, and the hub's slow-consumer policy handles that case.
        """
        interval, timeout = self._heartbeat_interval, self._heartbeat_timeout
        if interval is None:
            return
        unanswered: float | None = None  # when the oldest unanswered ping went out
        next_ping = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if unanswered is not None and (self._last_rx > unanswered or self._blocked):
                unanswered = None
            if unanswered is not None and timeout is not None and now >= unanswered + timeout:
                self._dead = True
                ws.abort()  # no FIN will come: don't wait for one
                return
            if now >= next_ping:
                if unanswered is None:
                    unanswered = now
                next_ping = now + interval
                try:
                    # Bounded: a send stuck behind a full buffer mustn't stall the deadline.
                    self._pacer.spend(time.monotonic())
                    await asyncio.wait_for(ws.send(_PING), timeout)
                except asyncio.TimeoutError:
                    continue
                except ConnectionClosed:
                    return
            wake = next_ping
            if unanswered is not None and timeout is not None:
                wake = min(wake, unanswered + timeout)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # --- private: receiving ------------------------------------------------------------

    def _receive(self, raw: str | bytes) -> Subscription | None:
        """Handle one message from the hub; return a subscription whose buffer is full."""
        message = _parse(raw)
        if message is None:
            self._report(Error(HubError(f"the hub sent a malformed message: {raw!r:.80}")))
            return None
        kind = message.get("type")
        try:
            if kind == "ack":
                self._on_ack(message)
            elif kind == "error":
                self._on_error(message)
            elif kind == "presence" and message.get("rid") is not None:
                self._on_presence_reply(message)
            elif kind == "subscribed" and message["ch"] not in self._subs:
                self._on_server_subscribed(message)
            elif kind in _CHANNEL_TYPES:
                return self._on_channel(kind, message)
            elif kind == "refresh" and self._get_token is not None and self._ws is not None:
                if self._refreshing is None or self._refreshing.done():
                    self._refreshing = asyncio.ensure_future(self._refresh(self._ws))
            elif kind == "refreshed":
                self.stats["refreshes"] += 1
            elif kind == "unsubscribed":
                self._on_unsubscribed(message)
            # pong and types of later versions: nothing to do.
        except (KeyError, TypeError, ValueError) as exc:
            self._report(Error(HubError(f"the hub sent a malformed {kind} message: {exc!r}")))
        return None

    def _on_channel(self, kind: str, message: dict[str, Any]) -> Subscription | None:
        """Hand a channel's message to its subscription, if it is still subscribed."""
        sub = self._subs.get(message["ch"])
        if sub is None:
            return None  # unsubscribed meanwhile
        if kind == "message":
            duplicates = sub.duplicates
            room = sub.on_message(message)
            self.stats["duplicates"] += sub.duplicates - duplicates
        elif kind == "gap":
            room = sub.on_gap(message)
        elif kind == "subscribed":
            rid = message.get("rid")
            # Else it answers an earlier request. Without a rid, the server
            # subscribed us itself; if our own subscribe was in flight, the
            # hub refuses it as already_subscribed, so this is its answer.
            if rid == sub.rid or (rid is None and not sub.answered):
                sub.on_subscribed(message)
            room = True
        elif kind == "presence":
            room = sub.on_presence(parse_presence(message))
        else:
            room = sub.on_member(kind, message)
        return None if room else sub

    def _on_server_subscribed(self, message: dict[str, Any]) -> None:
        """Adopt a subscription the server made for us (docs/protocol.md, server API)."""
        ch = message["ch"]
        if message.get("rid") is not None:
            return  # the answer to a subscribe we dropped meanwhile
        sub = Subscription(
            self.unsubscribe,
            ch,
            presence=False,
            since=None,
            max_buffer=self._max_buffer,
            report=self._report,
        )
        sub.on_subscribed(message)
        self._subs[ch] = sub
        self._report(ServerSubscribed(ch))

    def _on_unsubscribed(self, message: dict[str, Any]) -> None:
        """End a subscription the server ended; ignore the answer to our own unsubscribe."""
        sub = self._subs.get(message["ch"])
        # Our own unsubscribe forgot the subscription at once; one subscribed
        # again since is unanswered until the hub's reply to that comes.
        if sub is None or not sub.answered or message.get("rid") is not None:
            return
        del self._subs[sub.ch]
        sub.finish(ClientClosed("unsubscribed by the server"))
        self._report(ServerUnsubscribed(sub.ch))

    def _on_ack(self, message: dict[str, Any]) -> None:
        entry = self._outbox.pop(str(message.get("rid")), None)
        if entry is None:
            return  # a second ack after a retry, or the publish was cancelled
        self._retry_delays = None
        self._make_room()
        if not entry.future.done():
            duplicate = bool(message.get("duplicate", False))
            epoch, offset = message["epoch"], int(message["offset"])
            entry.future.set_result(Ack(entry.ch, epoch, offset, entry.id, duplicate))

    def _on_error(self, message: dict[str, Any]) -> None:
        code, rid = str(message.get("code")), message.get("rid")
        error = RequestError(
            code,  # type: ignore[arg-type]  # any code a later hub version may send
            str(message.get("reason", "")),
            rid=rid,
            ch=message.get("ch"),
            id=message.get("id"),
        )
        if code in _RETRY_CODES and (rid is None or rid in self._outbox or rid in self._queries):
            # (Hubs before retry_after and request ids on every refusal send none.)
            self._retry_later(_retry_after(message) if code == "rate_limited" else None)
            return
        entry = self._outbox.pop(str(rid), None)
        if entry is not None:
            self._make_room()
            if not entry.future.done():
                entry.future.set_exception(error)
            return
        query = self._queries.get(str(rid))
        if query is not None:
            if not query.future.done():
                query.future.set_exception(error)
            return
        sub = None if rid is None else next((s for s in self._subs.values() if s.rid == rid), None)
        if sub is None:
            self._report(Error(error))
        elif code in _RETRY_CODES:
            self._retry_later(_retry_after(message) if code == "rate_limited" else None)
        elif code != "already_subscribed":  # else the first subscribe's answer stands
            del self._subs[sub.ch]
            if sub.confirmed:
                self._report(Error(error))
            sub.finish(error)

    def _on_presence_reply(self, message: dict[str, Any]) -> None:
        query = self._queries.get(str(message.get("rid")))
        if query is not None and not query.future.done():
            query.future.set_result(parse_presence(message))

    # --- private: events and endings ---------------------------------------------------

    def _report(self, event: ClientEvent) -> None:
        """Tell the application: the callback first, then every events() iterator."""
        if isinstance(event, Gap):
            self.stats["gaps"] += 1
        callback = self._on_event
        if callback is not None:
            try:
                callback(event)
            except Exception:
                self._logger.exception("on_event callback failed")
        for stream in self._streams:
            stream.put(event)

    def _set_ready(self) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _make_room(self) -> None:
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _check_usable(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise ClientClosed("the client is closed")

    def _stop(self, error: Exception) -> None:
        """Stop for good: the error reaches every pending call and subscription."""
        self._fatal = error
        self._logger.error("hub client stopped: %s", str(error) or type(error).__name__)
        self._report(Error(error, fatal=True))
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
        self._end_all(error)

    def _end_all(self, error: BaseException) -> None:
        for entry in self._outbox.values():
            if not entry.future.done():
                entry.future.set_exception(error)
        for query in self._queries.values():
            if not query.future.done():
                query.future.set_exception(error)
        for sub in self._subs.values():
            sub.finish(error)
        self._make_room()
        for stream in self._streams:
            stream.end()
        self._streams.clear()


#: Types of the messages that belong to a subscription.
_CHANNEL_TYPES = frozenset(("message", "gap", "subscribed", "presence", "join", "leave", "state"))


def _retry_after(message: dict[str, Any]) -> float | None:
    """The ``retry_after`` of a refusal, in seconds, when it is a sane number."""
    value = message.get("retry_after")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 3600:
        return float(value)
    return None


def _keepalive_failed(exc: ConnectionClosed) -> bool:
    """Tell whether the WebSocket keepalive failed the connection: 1011 sent, nothing back."""
    return exc.rcvd is None and getattr(exc.sent, "code", None) == 1011


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    """Decode one hub message; ``None`` if it isn't a JSON object."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None
