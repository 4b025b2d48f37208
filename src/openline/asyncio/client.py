"""The WebSocket client: :class:`connect` and :class:`ClientConnection`.

:class:`connect` is an object rather than a coroutine so that it can serve
``await connect(...)``, ``async with connect(...)`` and the redialling
``async for ws in connect(...)``, all from one set of validated arguments.
The redial policies (when to retry, how long to wait) live in :mod:`.backoff`.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl as ssl_module
from collections.abc import Generator, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal

from ..exceptions import InvalidHandshake, InvalidMessage
from ..protocol.connection import Side
from ..protocol.extensions.base import ClientExtensionFactory
from ..protocol.extensions.deflate import ClientPerMessageDeflateFactory
from ..protocol.handshake import USER_AGENT, ClientHandshake, WebSocketURI, parse_uri
from ..protocol.http11 import Headers, HeadersLike, parse_response
from ..typing import LoggerLike
from .backoff import DEFAULT_RESET_AFTER, Backoff, Classifier, Classify, Schedule
from .config import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_SIZE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    Settings,
    check_timeout,
)
from .connection import Connection
from .redial import Redialer

__all__ = ["ClientConnection", "Redial", "connect"]


class ClientConnection(Connection):
    """The client end of a WebSocket connection, returned by :class:`connect`.

    :attr:`request` holds the upgrade request sent and :attr:`response` the
    server's answer.
    """

    __slots__ = ("_handshake", "_opening")

    def __init__(self, settings: Settings, handshake: ClientHandshake) -> None:
        super().__init__(settings)
        self._handshake: ClientHandshake | None = handshake
        # Resolved when the opening handshake succeeds, or fails.
        self._opening: asyncio.Future[None] | None = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request."""
        super().connection_made(transport)
        assert self._handshake is not None
        head = self._request_head = self._handshake.build_request().serialize()
        self._transport.write(head)

    # --- opening handshake -------------------------------------------------------------

    async def _wait_open(self) -> None:
        """Wait for the server's answer.

        Raises:
            InvalidHandshake: The server refused the upgrade or answered badly.
        """
        opening = self._opening
        assert opening is not None
        try:
            await opening
        finally:
            self._opening = None

    def _receive_handshake(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = bytearray(data)
        else:
            buffer += data
        handshake = self._handshake
        assert handshake is not None
        try:
            parsed = parse_response(buffer)
            if parsed is None:
                return
            response, consumed = parsed
            self._response_head = bytes(buffer[:consumed])
            negotiated = handshake.process_response(response)
        except InvalidHandshake as exc:
            self._fail_opening(exc)
            return
        self._handshake = None
        self._open(Side.CLIENT, negotiated, bytes(buffer[consumed:]))
        opening = self._opening
        if opening is not None and not opening.done():
            opening.set_result(None)

    def _fail_opening(self, exc: BaseException) -> None:
        opening = self._opening
        if opening is not None and not opening.done():
            opening.set_exception(exc)
            # When the dial was cancelled (open_timeout) before _wait_open(), nobody
            # awaits this future: don't log its exception as never retrieved.
            opening.exception()
        self._transport.close()

    def _handshake_failed(self, exc: Exception | None) -> None:
        error = InvalidMessage("connection closed during the opening handshake")
        error.__cause__ = exc
        self._fail_opening(error)


class connect:  # used like a function: connect(...)
    """Open a WebSocket connection: ``async with connect(uri) as ws:``, ``await``, or ``async for``.

    ``async for ws in connect(uri)`` redials whenever a connection ends, with
    capped exponential backoff and full jitter, until the loop ends or a
    failure isn't worth retrying::

        async for ws in connect(uri):
            try:
                async for message in ws:
                    handle(message)
            except ConnectionClosed:
                continue  # the iterator decides: redial, or raise

    Each time the loop asks for the next connection, the iterator looks at how
    the previous one ended (closing it first with 1000 if it is still open) and
    asks ``classify``: by default it redials after 1000, 1001, 1005, 1006
    (the line died), 1011, 1012, 1013 and 1014, and raises the
    :class:`~openline.exceptions.ConnectionClosed` exception out of the loop
    after 1002, 1003, 1007, 1008, 1009, 1010, application codes (3000-4999), or a
    protocol violation by the server: redialling would fail the same way. A
    failed dial is retried after ``OSError``, ``TimeoutError``,
    :class:`~openline.exceptions.InvalidMessage` and HTTP 5xx/429/408/425
    (honouring ``Retry-After``); 401, 403 and other statuses, an invalid URI
    and a failed negotiation are raised at once. See
    :class:`~openline.asyncio.backoff.Classifier`.

    An exception raised in the loop's body leaves the loop, as in any ``for``
    loop: the iterator never sees it. Catch
    :class:`~openline.exceptions.ConnectionClosed` in the body, as above, to
    keep redialling. After ``break``, ``return`` or an exception, the current
    connection stays open and belongs to the caller.

    Args:
        uri: The ``ws://`` or ``wss://`` URI. User info in it becomes an
            ``Authorization: Basic`` header.
        sock: A connected socket to use instead of dialling.
        ssl: A client TLS context; a default one for ``wss`` when ``None``.
        server_hostname: The name to check the server's certificate against;
            the URI's host by default.
        host: The address to dial instead of the URI's host; the ``Host``
            header still names the URI's host.
        port: The port to dial instead of the URI's port.
        origin: The ``Origin`` header; ``None`` omits it.
        subprotocols: Subprotocols to offer, most preferred first.
        additional_headers: More request headers.
        user_agent: The ``User-Agent`` header; ``None`` omits it.
        compression: ``"deflate"`` offers permessage-deflate (RFC 7692); ``None``
            disables compression.
        max_size: Largest incoming message in bytes, after decompression;
            ``None`` disables the limit. A larger message closes with 1009.
        max_queue: Incoming messages buffered before reading pauses, as ``high``
            or ``(high, low)``; ``None`` never pauses.
        write_limit: High and low water marks of the write buffer, in bytes, as
            ``high`` or ``(high, low)``; ``send()`` waits above the high mark.
        ping_interval: Seconds between keepalive pings; ``None`` disables keepalive.
        ping_timeout: Seconds to wait for a keepalive pong before closing with
            1011; ``None`` waits forever.
        open_timeout: Seconds to connect and complete the opening handshake;
            ``None`` waits forever.
        close_timeout: Seconds to wait for the closing handshake before aborting
            TCP; ``None`` waits forever.
        backoff: The delays between redials of ``async for``: a re-iterable of
            seconds, started over once a connection proved healthy; iteration
            stops redialling when it runs out. ``None`` uses
            :class:`~openline.asyncio.backoff.Backoff` (full jitter, first delay
            at most 1 s, then doubling up to 60 s).
        classify: Decides, for ``async for``, whether a failure is retried:
            ``classify(exc)`` returns ``None`` to raise ``exc``, or the least
            delay in seconds. ``None`` uses
            :class:`~openline.asyncio.backoff.Classifier`.
        max_attempts: Most dials in a row of ``async for`` without a healthy
            connection, the first one included; then the last failure is raised.
            ``None`` redials forever.
        reset_after: Seconds a connection must stay open before the backoff of
            ``async for`` starts over; ``None`` starts it over at every open.
        logger: Where to log; ``openline.client`` by default. ``async for``
            logs one INFO line per redial.
        **kwargs: Passed to ``loop.create_connection``, e.g. ``local_addr``.

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        ValueError: An argument is out of range or malformed; the message names
            it. ``ssl`` is given with a ``ws://`` URI.

    Awaiting it raises:
        OSError: The TCP connection failed.
        TimeoutError: The opening handshake took longer than ``open_timeout``.
        InvalidHandshake: The server refused the upgrade (:class:`InvalidStatus`
            carries its response) or answered badly.

    Iterating raises:
        Exception: The failure that ``classify`` won't retry, or the last one
            once ``max_attempts`` or ``backoff`` ran out: any of the above, or
            the :class:`~openline.exceptions.ConnectionClosed` exception that
            describes how the previous connection ended.
    """

    def __init__(
        self,
        uri: str,
        *,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        host: str | None = None,
        port: int | None = None,
        # protocol
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent: str | None = USER_AGENT,
        compression: Literal["deflate"] | None = "deflate",
        # limits
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_queue: int | tuple[int, int] | None = DEFAULT_MAX_QUEUE,
        write_limit: int | tuple[int, int] = DEFAULT_WRITE_LIMIT,
        # timeouts
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        # reconnecting (async for)
        backoff: Iterable[float] | None = None,
        classify: Classify | None = None,
        max_attempts: int | None = None,
        reset_after: float | None = DEFAULT_RESET_AFTER,
        # logging
        logger: LoggerLike | None = None,
        # advanced
        **kwargs: Any,
    ) -> None:
        self.uri = parse_uri(uri)
        if ssl is not None and not self.uri.secure:
            raise ValueError("ssl is only for wss:// URIs, got a ws:// URI")
        self._settings = Settings(
            max_size=max_size,
            max_queue=max_queue,
            write_limit=write_limit,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            logger=logger,
            default_logger="openline.client",
        )
        self._open_timeout = check_timeout("open_timeout", open_timeout)
        self._handshake = ClientHandshake(
            self.uri.host,
            self.uri.port,
            self.uri.path,
            secure=self.uri.secure,
            subprotocols=subprotocols,
            extensions=_client_extensions(compression),
            origin=origin,
            extra_headers=_with_authorization(self.uri, additional_headers),
            user_agent=user_agent,
        )
        if self.uri.secure:
            kwargs["ssl"] = ssl if ssl is not None else ssl_module.create_default_context()
            kwargs["server_hostname"] = server_hostname or self.uri.host
        if sock is not None:
            kwargs["sock"] = sock
        else:
            kwargs["host"] = host or self.uri.host
            kwargs["port"] = port or self.uri.port
        self._dial = kwargs
        self._connection: ClientConnection | None = None
        self._backoff: Iterable[float] = backoff if backoff is not None else Backoff()
        self._classify: Classify = classify if classify is not None else Classifier()
        self._max_attempts = max_attempts
        self._reset_after = reset_after
        self._schedule()  # validates max_attempts and reset_after now, not at the first redial

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._create().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._connection = await self
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        await self._connection.close()

    def __aiter__(self) -> Redial:
        return Redial(self)

    def _schedule(self) -> Schedule:
        """A fresh redial schedule with this object's policies."""
        return Schedule(
            backoff=self._backoff,
            classify=self._classify,
            max_attempts=self._max_attempts,
            reset_after=self._reset_after,
        )

    async def _create(self) -> ClientConnection:
        """Dial and handshake once, within ``open_timeout``."""
        if self._open_timeout is None:
            return await self._open()
        try:
            return await asyncio.wait_for(self._open(), self._open_timeout)
        except asyncio.TimeoutError as exc:
            raise TimeoutError("timed out during the opening handshake") from exc

    async def _open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        settings, handshake = self._settings, self._handshake
        _, connection = await loop.create_connection(
            lambda: ClientConnection(settings, handshake), **self._dial
        )
        try:
            await connection._wait_open()
        except BaseException:
            connection._transport.abort()
            raise
        return connection


class Redial:
    """The iterator behind ``async for ws in connect(...)``; see :class:`connect`.

    A class rather than an async generator: a generator left suspended by
    ``break`` would be finalized at some later point and close the connection
    the caller kept.
    """

    __slots__ = ("_connect", "_redialer", "_ws")

    def __init__(self, connect: connect) -> None:
        self._connect = connect
        self._redialer = Redialer(connect._schedule(), connect._create, on_retry=self._log_retry)
        self._ws: ClientConnection | None = None

    def __aiter__(self) -> Redial:
        return self

    async def __anext__(self) -> ClientConnection:
        """Return the next connection, after the previous one ended.

        Raises:
            Exception: The failure the classifier won't retry, or the last one
                when the attempts or the delays ran out.
        """
        ws, self._ws = self._ws, None
        error = None if ws is None else await _ended(ws)
        connection = await self._redialer.next(error)
        assert connection is not None  # it never stops by itself
        self._ws = connection
        return connection

    def _log_retry(self, error: Exception, delay: float, was_open: bool) -> None:
        logger = self._connect._settings.logger
        what = "connection closed" if was_open else "connection failed"
        logger.info(
            "%s: %s; redialling in %.3f s (attempt %d)",
            what,
            str(error) or type(error).__name__,
            delay,
            self._redialer.schedule.attempts + 1,
        )


async def _ended(ws: ClientConnection) -> Exception:
    """Wait until ``ws`` is closed, closing it with 1000 if it is open; say how it ended."""
    # The caller has moved on: it won't read what is left, so don't hold back the
    # answer to the server's close frame for it (close() alone would wait).
    ws._release_close()
    await ws.close()
    return ws._close_exc()


def _client_extensions(compression: str | None) -> list[ClientExtensionFactory]:
    if compression is None:
        return []
    if compression == "deflate":
        return [ClientPerMessageDeflateFactory()]
    raise ValueError(f'compression must be "deflate" or None, got {compression!r}')


def _with_authorization(uri: WebSocketURI, headers: HeadersLike | None) -> HeadersLike | None:
    """Turn the URI's user info into an ``Authorization`` header, unless one is given."""
    if uri.user_info is None:
        return headers
    fields = Headers(headers)
    if "Authorization" not in fields:
        credentials = ":".join(uri.user_info).encode()
        fields["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
    return fields
