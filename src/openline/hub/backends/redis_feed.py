"""The Redis engine's live feed: one pub/sub connection per process, read by a small RESP parser.

A client library's pub/sub object reconnects and re-subscribes by itself,
which hides exactly what the engine must see: that the feed was down, and for
how long. So the feed is a plain :class:`asyncio.Protocol` on its own socket:
it reports every message to the engine synchronously, and its loss once.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any, cast

from ...exceptions import BackendUnavailable

__all__ = ["Endpoint", "Feed", "RespError", "parse_endpoint"]

#: Nested RESP values: bytes, int, None, lists of them, or an error.
Value = Any


class RespError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


class Endpoint:
    """Where the feed connects, parsed from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    __slots__ = ("host", "password", "path", "port", "tls", "username")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.tls = username, password, tls

    def __repr__(self) -> str:
        where = self.path if self.path is not None else f"{self.host}:{self.port}"
        return f"Endpoint({where!r}, tls={self.tls})"


def parse_endpoint(url: str) -> Endpoint:
    """Parse a Redis URL.

    Raises:
        ValueError: The URL isn't a ``redis://``, ``rediss://`` or ``unix://`` URL.
    """
    parts = urllib.parse.urlsplit(url)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"a unix:// Redis URL needs a path: {url!r}")
        return Endpoint(path=parts.path, username=username, password=password)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis URL (redis://, rediss:// or unix://): {url!r}")
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ValueError(f"bad port in Redis URL {url!r}") from exc
    return Endpoint(
        parts.hostname or "127.0.0.1",
        port,
        username=username,
        password=password,
        tls=parts.scheme == "rediss",
    )


def _command(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a value."""


def parse(buffer: bytes | bytearray, pos: int) -> tuple[Value, int]:
    """Parse one RESP2 value at ``pos``; return it and where the next one starts.

    Raises:
        _Incomplete: More bytes are needed.
        ValueError: The bytes aren't RESP.
    """
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[pos], bytes(buffer[pos + 1 : end])
    pos = end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buffer) < pos + size + 2:
            raise _Incomplete
        return bytes(buffer[pos : pos + size]), pos + size + 2
    if kind == 0x2A:  # * array
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse(buffer, pos)
            items.append(item)
        return items, pos
    if kind == 0x3A:  # : integer
        return int(line), pos
    if kind == 0x2B:  # + simple string
        return line, pos
    if kind == 0x2D:  # - error
        return RespError(line.decode(errors="replace")), pos
    raise ValueError(f"not RESP: {bytes(buffer[pos - len(line) - 3 : pos])!r}")


class Feed(asyncio.Protocol):
    """A pub/sub connection: SUBSCRIBE, UNSUBSCRIBE, PING, and the messages that arrive.

    Args:
        on_message: Called with ``(channel, payload)`` for every message, in order.
        on_lost: Called once when the connection is lost, with the reason.
    """

    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        # Replies that aren't pushes (AUTH, PING before any SUBSCRIBE), in order.
        self._replies: collections.deque[asyncio.Future[Value]] = collections.deque()
        # SUBSCRIBE confirmations awaited, by channel.
        self._confirms: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pongs: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False
        #: ``loop.time()`` when bytes last arrived.
        self.last_seen = 0.0

    # --- connecting --------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[Exception | None], None],
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Feed:
        """Connect and authenticate.

        Raises:
            BackendUnavailable: Redis can't be reached or refused the credentials.
        """
        loop = asyncio.get_running_loop()
        feed = cls(on_message, on_lost)

        async def connect() -> None:
            if endpoint.path is not None:
                await loop.create_unix_connection(lambda: feed, endpoint.path)
            else:
                context = ssl_context
                if endpoint.tls and context is None:
                    context = ssl.create_default_context()
                await loop.create_connection(
                    lambda: feed,
                    endpoint.host,
                    endpoint.port,
                    ssl=context if endpoint.tls else None,
                )
            if endpoint.password is not None:
                auth: tuple[str, ...] = (endpoint.password,)
                if endpoint.username is not None:
                    auth = (endpoint.username, endpoint.password)
                reply = await feed._request(b"AUTH", *auth)
                if isinstance(reply, RespError):
                    raise BackendUnavailable(f"Redis refused the credentials: {reply}")

        try:
            await asyncio.wait_for(connect(), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            feed.close()
            raise BackendUnavailable(f"can't reach Redis at {endpoint!r}: {exc!r}") from exc
        except BaseException:
            feed.close()
            raise
        return feed

    def _request(self, *args: bytes | str) -> asyncio.Future[Value]:
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self._replies.append(future)
        self._send(_command(*args))
        return future

    def _send(self, data: bytes) -> None:
        if self._transport is None or self.closed:
            raise BackendUnavailable("the Redis feed is closed")
        self._transport.write(data)

    # --- commands ----------------------------------------------------------------------

    def subscribe(self, channels: list[bytes]) -> list[asyncio.Future[None]]:
        """Send SUBSCRIBE; the futures complete when Redis confirms each channel."""
        loop = asyncio.get_running_loop()
        futures = []
        for channel in channels:
            future: asyncio.Future[None] = loop.create_future()
            self._confirms.setdefault(channel, []).append(future)
            futures.append(future)
        self._send(_command(b"SUBSCRIBE", *channels))
        return futures

    def unsubscribe(self, channels: list[bytes]) -> None:
        """Send UNSUBSCRIBE (no answer awaited: later messages for it are dropped by the engine)."""
        self._send(_command(b"UNSUBSCRIBE", *channels))

    def ping(self) -> asyncio.Future[None]:
        """Send PING; the future completes with the answer."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(future)
        self._send(b"*1\r\n$4\r\nPING\r\n")
        return future

    def close(self) -> None:
        """Close the connection; :attr:`on_lost` is not called for a close asked for."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
        self._fail_all(BackendUnavailable("the Redis feed closed"))

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports don't derive from asyncio.Transport: no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        self.last_seen = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        buffer = self._buffer
        buffer += data
        pos = 0
        try:
            while pos < len(buffer):
                value, pos = parse(buffer, pos)
                self._dispatch(value)
        except _Incomplete:
            pass
        except ValueError as exc:
            self._lose(exc)
            return
        finally:
            del buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(exc or ConnectionResetError("Redis closed the feed"))

    # --- private -----------------------------------------------------------------------

    def _dispatch(self, value: Value) -> None:
        if type(value) is list and value:
            kind = value[0]
            if kind == b"message":
                self._on_message(value[1], value[2])
                return
            if kind == b"subscribe":
                waiting = self._confirms.get(value[1])
                if waiting:
                    future = waiting.pop(0)
                    if not waiting:
                        del self._confirms[value[1]]
                    if not future.done():
                        future.set_result(None)
                return
            if kind == b"unsubscribe":
                return
            if kind == b"pong":
                self._pong()
                return
        if value == b"PONG" and not self._replies:
            self._pong()
            return
        if self._replies:
            future = self._replies.popleft()
            if not future.done():
                future.set_result(value)

    def _pong(self) -> None:
        if self._pongs:
            future = self._pongs.popleft()
            if not future.done():
                future.set_result(None)

    def _lose(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._transport.abort()
        error = BackendUnavailable(f"the Redis feed was lost: {exc!r}")
        self._fail_all(error)
        if not self.closed:
            self.closed = True
            self._on_lost(exc)

    def _fail_all(self, error: BackendUnavailable) -> None:
        waiting: list[asyncio.Future[Any]] = [*self._replies, *self._pongs]
        for futures in self._confirms.values():
            waiting.extend(futures)
        self._replies.clear()
        self._pongs.clear()
        self._confirms.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: nobody may be waiting any more
