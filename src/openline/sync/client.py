"""The blocking WebSocket client: :func:`connect` and :class:`ClientConnection`.

For scripts, tests and threads::

    from openline.sync import connect

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

Each :class:`ClientConnection` wraps an :class:`openline.ClientConnection` that
lives on the event loop thread of :mod:`openline.sync` (one per process): the
protocol, limits, keepalive and closing handshake are the asyncio client's,
not a second implementation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from ..asyncio.client import ClientConnection as AsyncClientConnection
from ..asyncio.client import connect as async_connect
from ..exceptions import ConcurrencyError, ConnectionClosedOK
from ..protocol.connection import State
from ..protocol.frames import CloseCode
from ..protocol.http11 import Request, Response
from ..typing import Data, DataLike
from ._loop import run, submit, within

__all__ = ["ClientConnection", "connect"]

# Arguments of openline.connect that only mean something to ``async for``.
_REDIAL_ONLY = ("backoff", "classify", "max_attempts", "reset_after")


def connect(uri: str, **kwargs: Any) -> ClientConnection:
    """Open a WebSocket connection and wait for the opening handshake.

    Use as ``with connect(uri) as ws:``, or keep the result and call
    :meth:`ClientConnection.close` yourself. The handshake is bounded by
    ``open_timeout`` (10 s by default).

    Args:
        uri: The ``ws://`` or ``wss://`` URI.
        **kwargs: Every keyword argument of :class:`openline.connect`
            (``subprotocols``, ``additional_headers``, ``compression``,
            ``max_size``, ``ping_interval``, ``open_timeout``,
            ``close_timeout``, ``ssl``, ``sock``...), with the same defaults.
            The redial arguments (``backoff``, ``classify``, ``max_attempts``,
            ``reset_after``) don't apply: this function dials once.

    Returns:
        The open connection.

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        ValueError: An argument is out of range or malformed; the message names it.
        TypeError: A redial argument was given.
        OSError: The TCP connection failed.
        TimeoutError: The opening handshake took longer than ``open_timeout``.
        InvalidHandshake: The server refused the upgrade (:class:`InvalidStatus`
            carries its response) or answered badly.
        RuntimeError: Called from the loop thread of :mod:`openline.sync`.
    """
    for name in _REDIAL_ONLY:
        if name in kwargs:
            raise TypeError(
                f"connect() dials once: {name} is only for openline.connect's async for"
            )
    # Validates the arguments here, in the caller's thread, before any dial.
    dialer = async_connect(uri, **kwargs)

    async def dial() -> AsyncClientConnection:
        return await dialer

    return ClientConnection(run(dial))


class ClientConnection:
    """The client end of a WebSocket connection, with blocking methods.

    Threads: one thread may receive while another sends, pings or closes.
    Any number of threads may :meth:`send` at once (each message goes out
    whole, in the order the loop thread gets them); :meth:`close` and
    :meth:`ping` may be called from any thread at any time, and closing
    unblocks a thread waiting in :meth:`recv`. Only receiving is exclusive: a
    second thread calling :meth:`recv` (or iterating) while one already waits
    raises :class:`~openline.exceptions.ConcurrencyError`.

    Attributes:
        subprotocol: The negotiated subprotocol, or ``None``.
    """

    def __init__(self, connection: AsyncClientConnection) -> None:
        self._ws = connection
        self.subprotocol: str | None = connection.subprotocol
        # Receiving is exclusive; the lock is only ever tried, never waited for.
        self._recv_lock = threading.Lock()

    # --- public API: state -------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier of the connection, for logs."""
        return self._ws.id

    @property
    def request(self) -> Request | None:
        """The opening handshake's request, as sent."""
        return self._ws.request

    @property
    def response(self) -> Response | None:
        """The opening handshake's response, as received."""
        return self._ws.response

    @property
    def state(self) -> State | None:
        """The connection's state (:class:`~openline.protocol.connection.State`)."""
        return self._ws.state

    @property
    def remote_address(self) -> Any:
        """The server's address, as the socket reports it (``(host, port)`` for IPv4)."""
        return self._ws.remote_address

    @property
    def local_address(self) -> Any:
        """This end's address, as the socket reports it."""
        return self._ws.local_address

    @property
    def close_code(self) -> int | None:
        """The close code received; 1005 if the frame had none, 1006 if none arrived.

        ``None`` while the connection is open.
        """
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received, ``""`` if none; ``None`` while the connection is open."""
        return self._ws.close_reason

    # --- public API: receiving ---------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Data:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Messages received before the connection closed are returned first.

        Args:
            timeout: Seconds to wait; ``None`` waits until a message arrives or
                the connection closes; 0 returns only a message already received.

        Raises:
            TimeoutError: No message arrived within ``timeout``; none is lost.
            ConnectionClosedOK: The connection closed normally (1000 or 1001 both ways).
            ConnectionClosedError: The connection closed otherwise.
            ConcurrencyError: Another thread is already waiting in ``recv()``.
            ValueError: ``timeout`` is negative.
        """
        if not self._recv_lock.acquire(blocking=False):
            raise ConcurrencyError(
                "cannot call recv() while another thread is already waiting for a message"
            )
        try:
            return run(within(self._ws.recv, timeout, "recv()"))
        finally:
            self._recv_lock.release()

    def __iter__(self) -> Iterator[Data]:
        """Receive messages until the connection closes.

        The iteration stops when the connection closes normally.

        Raises:
            ConnectionClosedError: The connection closed with an error.
            ConcurrencyError: Another thread is already waiting in ``recv()``.
        """
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # --- public API: sending -----------------------------------------------------------

    def send(self, message: DataLike | Iterable[DataLike]) -> None:
        """Send a message: text for ``str``, binary for bytes-like objects.

        An iterable of ``str`` (or of bytes-like objects) is sent as one
        fragmented message, a frame per item; it is iterated on the loop thread.
        Returns once the message is written, waiting only while the write
        buffer is above ``write_limit``.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            TypeError: ``message`` has an unsupported type, or the items of an
                iterable mix text and binary.
        """
        if isinstance(message, (bytearray, memoryview)):
            # The loop thread reads the buffer later: don't let the caller change it meanwhile.
            message = bytes(message)
        run(lambda: self._ws.send(message))

    def ping(self, data: DataLike | None = None) -> concurrent.futures.Future[float]:
        """Send a ping; return a future of the latency, resolved when the pong arrives.

        Wait for it with ``ws.ping().result(timeout=5)``: ``result()`` returns
        the round-trip time in seconds, raises ``TimeoutError`` when the
        timeout runs out, and ``ConnectionClosed`` if the connection closes
        first. A pong answers its ping and every earlier one (RFC 6455,
        section 5.5.3).

        Args:
            data: The ping's payload, at most 125 bytes; ``str`` is encoded to
                UTF-8. ``None`` picks four random bytes.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            ConcurrencyError: A ping with the same payload awaits its pong.
            ValueError: ``data`` is longer than 125 bytes.
        """
        waiter = run(lambda: self._ws.ping(data))

        async def latency() -> float:
            # Shielded: cancelling the returned future mustn't fail the connection's own waiter.
            return await asyncio.shield(waiter)

        return submit(latency)

    def pong(self, data: DataLike = b"") -> None:
        """Send an unsolicited pong, a one-way heartbeat.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            ValueError: ``data`` is longer than 125 bytes.
        """
        run(lambda: self._ws.pong(data))

    # --- public API: closing -----------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and wait until TCP is closed.

        Waits up to ``close_timeout`` for the server, then aborts the
        connection. Safe to call from any thread, and more than once; a thread
        waiting in :meth:`recv` gets ``ConnectionClosed``.

        Args:
            code: The close code (RFC 6455, section 7.4).
            reason: A short explanation, at most 123 bytes in UTF-8.

        Raises:
            ValueError: ``code`` may not be sent, or ``reason`` is too long.
        """
        run(lambda: self._ws.close(code, reason))

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
