"""The WebSocket server: :class:`serve`, :class:`Server` and :class:`ServerConnection`.

One :class:`ServerConnection` (an ``asyncio.Protocol``) per TCP connection reads
the upgrade request with hard limits and answers it from ``data_received``: the
handshake takes no task unless the ``process_request`` hook is ``async`` (then a
task awaits it). Once open, one task runs the application's handler itself, and
its done callback closes the connection. A client that never finishes its
request costs no task, only the protocol, its buffer and the ``open_timeout`` timer.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import inspect
import random
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Literal

from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage, SecurityError
from ..protocol.connection import Side, State
from ..protocol.extensions.base import ServerExtensionFactory
from ..protocol.extensions.deflate import ServerPerMessageDeflateFactory
from ..protocol.frames import Close, CloseCode
from ..protocol.handshake import USER_AGENT, Negotiated, ServerHandshake
from ..protocol.http11 import Request, Response, parse_request, parse_response
from ..typing import LoggerLike
from .config import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SIZE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Settings,
    check_count,
    check_timeout,
)
from .connection import Connection
from .drain import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_RETRY_HINT,
    DrainReport,
    check_retry_hint,
    check_seconds,
    drain_schedule,
    format_retry_hint,
)

__all__ = ["Handler", "ProcessRequest", "Server", "ServerConnection", "serve"]

#: The application's coroutine, called with each open connection.
Handler = Callable[["ServerConnection"], Awaitable[None]]
#: A hook that may answer the upgrade request with plain HTTP instead.
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | Awaitable[Response | None] | None"
]


#: The name of every handler task.
_HANDLER_TASK_NAME = "openline.server handler"
#: The context that _handler_done runs in.
_CALLBACK_CONTEXT = contextvars.Context()

#: Bytes a client may send after its upgrade request, before the response,
#: without reading pausing.
_MAX_EARLY_DATA = 65536


class _Default(enum.Enum):
    TOKEN = 0


class ServerConnection(Connection):
    """The server end of a WebSocket connection, handed to the handler.

    :attr:`request` holds the upgrade request (path, headers) and
    :attr:`response` the handshake response.
    """

    __slots__ = ("_server", "_task")

    def __init__(self, server: Server) -> None:
        super().__init__(server._settings)
        self._server = server
        self._task: asyncio.Task[None] | None = None

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the server and start the opening handshake's clock."""
        super().connection_made(transport)
        server = self._server
        server._protocols.add(self)
        timeout = server._open_timeout
        if timeout is not None:
            self._timer = self._loop.call_later(timeout, self._open_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake every waiter, then unregister from the server."""
        super().connection_lost(exc)
        self._server._forget(self)

    # --- opening handshake -------------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        buffer = self._buffer
        if self._request_head is not None:
            # The request is complete and these bytes follow it: a client may send
            # frames before our response. Keep reading, to notice a client that
            # goes away, unless it sends too much.
            if buffer is None:
                buffer = self._buffer = bytearray(data)
            else:
                buffer += data
            if len(buffer) > _MAX_EARLY_DATA:
                self._transport.pause_reading()
            return
        if buffer is not None:
            buffer += data
        server = self._server
        try:
            # Usually the whole request arrives in one read: parse it where it is.
            parsed = parse_request(
                data if buffer is None else buffer,
                max_line=server._max_header_line,
                max_headers=server._max_headers,
                max_body=server._max_body,
            )
        except SecurityError as exc:
            self._reject(431, exc)
            return
        except InvalidMessage as exc:
            self._reject(400, exc)
            return
        if parsed is None:
            if buffer is None:
                self._buffer = bytearray(data)
            return
        request, consumed = parsed
        if buffer is not None:
            self._request_head = bytes(buffer[:consumed])
            del buffer[:consumed]
        elif consumed == len(data):
            self._request_head = bytes(data)  # no copy for bytes
        else:
            self._request_head = data[:consumed]
            self._buffer = bytearray(memoryview(data)[consumed:])
        self._start(request)

    def _reject(self, status: int, exc: InvalidHandshake) -> None:
        """Answer a malformed request with a plain-text error and close."""
        self._server.refusals[status] += 1
        settings = self._settings
        if settings.debug:
            settings.logger.debug("invalid upgrade request: %s", exc)
        response = self._server._handshake.reject(
            status, f"failed to open a websocket connection: {exc}\n"
        )
        self._response_head = response.serialize()
        self._transport.write(self._response_head)
        self._transport.close()

    def _open_timeout(self) -> None:
        self._timer = None
        if self._settings.debug:
            self._settings.logger.debug("opening handshake timed out: dropping the connection")
        self._transport.abort()

    def _start(self, request: Request) -> None:
        """Answer the request at once, unless an ``async`` process_request must run first.

        The common case takes no task and no turn of the event loop: the 101 goes
        out from ``data_received``, and the only task is the handler's.
        """
        hook = self._server._process_request
        if hook is not None:
            try:
                answer = hook(self, request)
            except Exception:
                self._finish(*self._internal_error())
                return
            if inspect.isawaitable(answer):
                task = self._task = self._loop.create_task(self._respond_later(request, answer))
                self._server._tasks.add(task)
                task.add_done_callback(self._server._tasks.discard)
                return
            if answer is not None:
                self._finish(answer, None)
                return
        try:
            decided = self._respond(request)
        except Exception:
            decided = self._internal_error()
        self._finish(*decided)

    async def _respond_later(self, request: Request, answer: Awaitable[Response | None]) -> None:
        """The task of an ``async`` process_request hook: await it, then answer."""
        try:
            response = await answer
            decided = (response, None) if response is not None else self._respond(request)
        except Exception:
            decided = self._internal_error()
        self._finish(*decided)

    def _internal_error(self) -> tuple[bytes, None]:
        self._settings.logger.error("opening handshake failed", exc_info=True)
        text = "failed to open a websocket connection: internal error\n"
        return self._server._handshake.reject(500, text).serialize(), None

    def _respond(self, request: Request) -> tuple[bytes | Response, Negotiated | None]:
        """Decide the handshake response: a refusal or the upgrade."""
        server = self._server
        if server._closing:
            server.refusals[503] += 1
            return server._handshake.reject(503, "server is shutting down\n"), None
        limit = server._max_connections
        if limit is not None and len(server.connections) >= limit:
            server.refusals[503] += 1
            return server._handshake.reject(503, "too many connections\n"), None
        head, negotiated, error = server._handshake.process_request_head(request)
        if error is not None:
            server.refusals[_status_of(head)] += 1
            if self._settings.debug:
                self._settings.logger.debug("rejected upgrade request: %s", error)
        return head, negotiated

    def _finish(self, response: bytes | Response, negotiated: Negotiated | None) -> None:
        """Send the handshake response; on success, open and start the handler."""
        if self._lost:
            return
        head = response if isinstance(response, bytes) else response.serialize()
        transport = self._transport
        transport.write(head)
        if negotiated is None:
            self._response_head = head
            transport.close()
            return
        if negotiated.extensions:
            # Without extensions the response is rebuilt from the request on
            # access (see the response property): one bytes object less per
            # idle connection.
            self._response_head = head
        server = self._server
        # Each live protocol is in one set: one entry per connection, not two.
        server._protocols.discard(self)
        server.connections.add(self)
        # In case early data paused reading. Resume first: the leftover bytes may
        # fill the message queue, which then pauses reading again.
        transport.resume_reading()
        self._open(Side.SERVER, negotiated, bytes(self._buffer or b""))
        # The handler runs as the task itself, not under a wrapper coroutine, and
        # _handler_done closes the connection: one coroutine frame less for the
        # connection's whole life.
        try:
            awaitable = server._handler(self)
        except Exception as exc:
            self._handler_failed(exc)
            return
        coroutine = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        # A shared name: the default ("Task-<n>", a new string per task) costs
        # about 60 bytes on every connection. set_name() can still change it.
        task = self._task = self._loop.create_task(coroutine, name=_HANDLER_TASK_NAME)
        # Not in server._tasks while the connection lives (the server finds it
        # through its connections): one set entry less per idle connection.
        # _forget() adds it if the handler outlives the connection.
        # The callback needs no context of its own: share one rather than copy
        # the current context for every connection.
        task.add_done_callback(self._handler_done, context=_CALLBACK_CONTEXT)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        """Close the connection once the handler returns: 1000, or 1011 if it raised."""
        self._server._tasks.discard(task)
        if task.cancelled():
            self._transport.abort()
            return
        exc = task.exception()
        if exc is None:
            self._close_nowait(CloseCode.NORMAL_CLOSURE)
        elif isinstance(exc, Exception):
            self._handler_failed(exc)
        else:  # KeyboardInterrupt or SystemExit: the task already re-raised it
            self._transport.abort()

    def _handler_failed(self, exc: Exception) -> None:
        settings = self._settings
        if isinstance(exc, ConnectionClosed) and self.state is not State.OPEN:
            # The connection closed under the handler: nothing went wrong here.
            if settings.debug:
                settings.logger.debug("handler stopped: %s", exc)
            self._close_nowait(CloseCode.NORMAL_CLOSURE)
            return
        settings.logger.error("connection handler failed", exc_info=exc)
        self._close_nowait(CloseCode.INTERNAL_ERROR)

    def _close_nowait(self, code: int) -> None:
        core = self._core
        if core is not None and core.state is State.OPEN and not self._lost:
            core.send_close(code, "")
            self._flush(core)

    @property
    def response(self) -> Response | None:
        """The opening handshake response; ``None`` until known.

        Parsed anew at each access, like :attr:`request`.
        """
        head = self._response_head
        if head is None and self._core is not None:
            request = self.request
            assert request is not None  # the connection is open
            head = self._server._handshake.build_response_head(request, self.subprotocol)
        if head is None:
            return None
        parsed = parse_response(head, max_line=None, max_headers=None, max_size=None)
        assert parsed is not None
        return parsed[0]

    def _shutdown(self, code: int, reason: str) -> None:
        """Start closing for a server shutdown, without waiting."""
        core = self._core
        if core is None:
            self._transport.abort()
        elif core.state is State.OPEN and not self._lost:
            core.send_close(code, reason)
            self._flush(core)


class Server:
    """A running WebSocket server; :class:`serve` builds it.

    Attributes:
        connections: The open connections (past their opening handshake).
        refusals: Requests the server itself refused, by status: malformed
            (400, 431), not a valid upgrade (400, 426...), too many connections
            or shutting down (503). Answers of ``process_request`` aren't counted.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        settings: Settings,
        handshake: ServerHandshake,
        process_request: ProcessRequest | None,
        max_connections: int | None,
        max_header_line: int | None,
        max_headers: int | None,
        open_timeout: float | None,
        max_body: int | None = 0,
    ) -> None:
        self._handler = handler
        self._settings = settings
        self._handshake = handshake
        self._process_request = process_request
        self._max_connections = max_connections
        self._max_header_line = max_header_line
        self._max_headers = max_headers
        self._max_body = max_body
        self._open_timeout = open_timeout
        self._server: asyncio.Server | None = None
        self.connections: set[ServerConnection] = set()
        self.refusals: collections.Counter[int] = collections.Counter()
        # The protocols still in their opening handshake; with connections, every
        # live protocol (each is in one of the two sets).
        self._protocols: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._draining = False
        self._close_task: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # --- public API --------------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets; empty once closed."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    def is_serving(self) -> bool:
        """Tell whether the server accepts new connections."""
        return self._server is not None and self._server.is_serving()

    @property
    def is_draining(self) -> bool:
        """Whether :meth:`drain` has started: the server is no longer ready."""
        return self._draining

    async def drain(
        self,
        seconds: float = DEFAULT_DRAIN_SECONDS,
        *,
        code: int = CloseCode.SERVICE_RESTART,
        retry_after: tuple[float, float] | None = DEFAULT_RETRY_HINT,
        linger: float = 0.0,
        rng: random.Random | None = None,
    ) -> DrainReport:
        """Shut down without a stampede: close the connections spread over ``seconds``.

        Mark the server as draining (:attr:`is_draining`: ``/readyz`` answers
        503, upgrade requests get 503), wait ``linger`` seconds, stop accepting
        (the listening sockets close), then close each open connection with
        ``code`` at a random moment of its own slot of the window (see
        :func:`~openline.asyncio.drain.drain_schedule`), its close reason
        carrying a retry hint drawn from ``retry_after`` (``retry-after=1.25``,
        docs/protocol.md). Finally :meth:`close` waits
        for the closing handshakes and the handlers, up to ``close_timeout``.
        Calling it while a drain or a close runs waits for that one to finish.

        Args:
            seconds: The window over which closes are spread; 0 closes all at once.
            code: The close code; 1012 (service restart).
            retry_after: ``(low, high)`` seconds each connection's hint is drawn
                from; ``None`` sends no hint.
            linger: Seconds to keep listening, refusing, before the closes
                start: time for a load balancer's readiness probe to notice.
            rng: Where randomness comes from (seed it for reproducible tests).

        Returns:
            How many connections it closed, and how long it took.

        Raises:
            ValueError: ``seconds``, ``linger`` or ``retry_after`` is out of range, or
                ``code`` may not be sent.
        """
        seconds = check_seconds("seconds", seconds)
        linger = check_seconds("linger", linger)
        hint = check_retry_hint(retry_after)
        _check_close(code, format_retry_hint(hint[1]) if hint else "")
        loop = asyncio.get_running_loop()
        began = loop.time()
        if self._draining or self._close_task is not None:
            await self.wait_closed()
            return DrainReport(0, loop.time() - began)
        self._draining = self._closing = True
        if linger > 0:
            await asyncio.sleep(linger)
        if self._server is not None:
            self._server.close()
        rng = rng if rng is not None else random.Random()
        targets = list(self.connections)
        rng.shuffle(targets)
        closed = 0
        start = loop.time()
        for connection, at in zip(targets, drain_schedule(len(targets), seconds, rng), strict=True):
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if connection not in self.connections or connection.state is not State.OPEN:
                continue  # it closed, or started closing, by itself meanwhile
            reason = "" if hint is None else format_retry_hint(rng.uniform(*hint))
            connection._shutdown(code, reason)
            closed += 1
        self.close(code)
        await self.wait_closed()
        return DrainReport(closed, loop.time() - began)

    def close(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "",
        *,
        timeout: float | Literal[_Default.TOKEN] | None = _Default.TOKEN,
    ) -> None:
        """Shut down gracefully; :meth:`wait_closed` waits until it is done.

        Stop accepting connections, send a close frame to every client, wait up
        to ``timeout`` for the closing handshakes and the handlers, then abort
        the remaining connections and cancel the remaining handlers. Calling it
        again does nothing.

        Args:
            code: The close code sent to every client; 1001 (going away).
            reason: The close reason sent to every client.
            timeout: Seconds to wait; the server's ``close_timeout`` by default;
                ``None`` waits forever.

        Raises:
            ValueError: ``code`` may not be sent, ``reason`` is too long, or
                ``timeout`` is not a positive number.
        """
        if self._close_task is not None:
            return
        if timeout is _Default.TOKEN:
            timeout = self._settings.close_timeout
        else:
            timeout = check_timeout("timeout", timeout)
        _check_close(code, reason)
        self._closing = True
        self._close_task = asyncio.get_running_loop().create_task(
            self._shutdown(code, reason, timeout)
        )

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished."""
        await asyncio.shield(self._get_closed())

    async def serve_forever(self) -> None:
        """Serve until cancelled, then shut down gracefully.

        Raises:
            asyncio.CancelledError: When cancelled, after the shutdown.
        """
        try:
            await self.wait_closed()
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    # --- private -----------------------------------------------------------------------

    def _attach(self, server: asyncio.Server) -> None:
        self._server = server
        logger = self._settings.logger
        for sock in server.sockets:
            logger.info("server listening on %s", _format_address(sock.getsockname()))

    def _protocol_factory(self) -> ServerConnection:
        return ServerConnection(self)

    def _forget(self, connection: ServerConnection) -> None:
        self._protocols.discard(connection)
        self.connections.discard(connection)
        task = connection._task
        if task is not None and not task.done():
            # The handler outlives its connection: shutdown still waits for it.
            self._tasks.add(task)
        drained = self._drained
        if drained is None or drained.done():
            return
        if not self._protocols and not self.connections:
            drained.set_result(None)

    def _live(self) -> list[ServerConnection]:
        """Every live protocol: in the opening handshake, open, or closing."""
        return [*self._protocols, *self.connections]

    def _get_closed(self) -> asyncio.Future[None]:
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        return self._closed

    async def _shutdown(self, code: int, reason: str, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._server is not None:
            self._server.close()
        for connection in self._live():
            connection._shutdown(code, reason)
        if self._live():
            self._drained = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), _remaining(loop, deadline))
            except asyncio.TimeoutError:
                for connection in self._live():
                    connection._transport.abort()
                # Let connection_lost run and wake the handlers before judging them.
                await asyncio.sleep(0)
        tasks = set(self._tasks)
        tasks.update(c._task for c in self._live() if c._task is not None and not c._task.done())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_remaining(loop, deadline))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
        closed = self._get_closed()
        if not closed.done():
            closed.set_result(None)


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


def _remaining(loop: asyncio.AbstractEventLoop, deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - loop.time())


def _status_of(head: bytes) -> int:
    """The status code of a serialized response head (``HTTP/1.1 400 ...``)."""
    return int(head[9:12])


def _check_close(code: int, reason: str) -> None:
    Close(code, reason).check()


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class serve:  # used like a function: serve(...)
    """Start a WebSocket server; use as ``async with serve(...) as server:`` or ``await``.

    Each accepted connection goes through the opening handshake; then
    ``await handler(connection)`` runs. When the handler returns, the server
    closes the connection with 1000; if it raises, with 1011, and logs the error.

    Args:
        handler: ``async def handler(ws: ServerConnection)``.
        host: The interface(s) to listen on, as for ``loop.create_server``.
        port: The port to listen on; 0 picks a free one.
        sock: A listening socket to use instead of ``host`` and ``port``.
        ssl: A server TLS context; ``None`` serves plain TCP.
        subprotocols: Subprotocols the server supports, most preferred first;
            ``None`` supports none.
        select_subprotocol: Picks among the client's offers instead of the first
            of ``subprotocols`` they include; it returns an offer or ``None``.
        compression: ``"deflate"`` accepts permessage-deflate (RFC 7692);
            ``None`` disables compression.
        origins: Allowed ``Origin`` values; a ``None`` item allows requests
            without one. Others are refused with 403. ``None`` disables the check.
        process_request: ``(connection, request) -> Response | None``, plain or
            ``async``: a response to send instead of upgrading (health checks,
            authentication), or ``None`` to go on with the handshake.
        server_header: The ``Server`` header; ``None`` omits it.
        max_size: Largest incoming message in bytes, after decompression;
            ``None`` disables the limit. A larger message closes with 1009.
        max_queue: Incoming messages buffered before reading pauses, as ``high``
            or ``(high, low)``; ``None`` never pauses.
        write_limit: High and low water marks of each write buffer, in bytes, as
            ``high`` or ``(high, low)``; ``send()`` waits above the high mark.
        max_connections: Open connections beyond which upgrade requests get a
            503; ``None`` disables the limit.
        max_header_line: Longest request line or header line, in bytes.
        max_headers: Most header lines in the upgrade request. For both,
            ``None`` disables the limit; a request beyond them gets a 431.
        max_body: Largest body of a non-``GET`` request (an HTTP API answered
            by ``process_request``), in bytes; 0 (the default) refuses bodies
            with a 400, ``None`` disables the limit, a larger body gets a 431.
        ping_interval: Seconds between keepalive pings; ``None`` disables keepalive.
        ping_timeout: Seconds to wait for a keepalive pong before closing with
            1011; ``None`` waits forever.
        open_timeout: Seconds for a client to complete its upgrade request (and
            for TLS to complete); ``None`` waits forever.
        close_timeout: Seconds to wait for a closing handshake before aborting
            TCP, and the default for :meth:`Server.close`; ``None`` waits forever.
        logger: Where to log; ``openline.server`` by default.
        **kwargs: Passed to ``loop.create_server``, e.g. ``reuse_port`` or ``backlog``.

    Raises:
        ValueError: An argument is out of range; the message names it.
        OSError: Awaiting it can't listen on the address.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        # protocol
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[Sequence[str]], str | None] | None = None,
        compression: Literal["deflate"] | None = "deflate",
        # security
        origins: Sequence[str | None] | None = None,
        process_request: ProcessRequest | None = None,
        server_header: str | None = USER_AGENT,
        # limits
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_queue: int | tuple[int, int] | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        max_connections: int | None = None,
        max_header_line: int | None = 8192,
        max_headers: int | None = 128,
        max_body: int | None = 0,
        # timeouts
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        # logging
        logger: LoggerLike | None = None,
        # advanced
        **kwargs: Any,
    ) -> None:
        settings = Settings(
            max_size=max_size,
            max_queue=max_queue,
            write_limit=write_limit,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            logger=logger,
            default_logger="openline.server",
        )
        handshake = ServerHandshake(
            subprotocols=subprotocols,
            extensions=_server_extensions(compression),
            select_subprotocol=select_subprotocol,
            origins=origins,
            server_header=server_header,
        )
        open_timeout = check_timeout("open_timeout", open_timeout)
        self.server = Server(
            handler,
            settings=settings,
            handshake=handshake,
            process_request=process_request,
            max_connections=check_count("max_connections", max_connections, minimum=1),
            max_header_line=check_count("max_header_line", max_header_line, minimum=1),
            max_headers=check_count("max_headers", max_headers, minimum=1),
            open_timeout=open_timeout,
            max_body=check_count("max_body", max_body),
        )
        if ssl is not None and open_timeout is not None:
            kwargs.setdefault("ssl_handshake_timeout", open_timeout)
        self._listen: dict[str, Any] = dict(host=host, port=port, sock=sock, ssl=ssl, **kwargs)

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(self.server._protocol_factory, **self._listen)
        self.server._attach(listener)
        return self.server

    async def __aenter__(self) -> Server:
        return await self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.close()
        await self.server.wait_closed()


def _server_extensions(compression: str | None) -> list[ServerExtensionFactory]:
    if compression is None:
        return []
    if compression == "deflate":
        return [ServerPerMessageDeflateFactory()]
    raise ValueError(f'compression must be "deflate" or None, got {compression!r}')
