"""One exception tree for the whole package.

Every exception openline raises on purpose derives from :class:`OpenlineError`.
Each branch has one meaning:

* :class:`ConnectionClosed` — the connection is closed; ``…OK`` when both sides
  completed a normal close (1000 or 1001), ``…Error`` otherwise.
* :class:`InvalidHandshake` — the opening handshake failed (with
  :class:`InvalidMessage`, :class:`InvalidHeader`, :class:`InvalidStatus`,
  :class:`InvalidUpgrade`, :class:`NegotiationError` and :class:`SecurityError`).
* :class:`ProtocolError` — the peer broke RFC 6455 / RFC 7692; carries the close
  code we sent because of it. :class:`PayloadTooBig` is the size-limit case.
* :class:`InvalidState` and :class:`ConcurrencyError` — local misuse.
* :class:`HubError` — the hub (``openline.hub``), with :class:`BackendUnavailable`
  when its engine can't reach its store, :class:`RequestError` for a client
  message the hub refuses, and :class:`ClientClosed` when the hub client's call
  can't complete because it was closed.

Messages are lower-case, without a final period, and say what was expected and
what was found. Peer data is truncated and escaped before it is shown.
"""

from __future__ import annotations

from typing import Protocol

from .typing import ErrorCode, Rid

__all__ = [
    "BackendUnavailable",
    "ClientClosed",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DuplicateParameter",
    "HubError",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidParameterName",
    "InvalidParameterValue",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "NegotiationError",
    "OpenlineError",
    "PayloadTooBig",
    "ProtocolError",
    "RequestError",
    "SecurityError",
]

_PEER_TEXT_LIMIT = 75


def _shorten(value: str | bytes, limit: int = _PEER_TEXT_LIMIT) -> str:
    """Render peer data safely: escaped and truncated to ``limit`` characters."""
    text = repr(value) if isinstance(value, bytes) else repr(value)[1:-1]
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class _CloseFrame(Protocol):
    """A close frame as exceptions see it: :class:`openline.protocol.frames.Close`.

    A protocol rather than an import, because the core imports this module: the
    exception tree sits below every layer, the core included.
    """

    @property
    def code(self) -> int: ...

    @property
    def reason(self) -> str: ...


class OpenlineError(Exception):
    """Root of every exception raised by openline."""


# --- closed connections -----------------------------------------------------------------


class ConnectionClosed(OpenlineError):
    """Raised when using a connection that is closed, or closing.

    Attributes:
        rcvd: The close frame received from the peer, or ``None`` if none was.
        sent: The close frame we sent, or ``None`` if none was.
        rcvd_then_sent: ``True`` if we received the peer's close frame before
            sending ours, ``False`` if we sent first, ``None`` unless both exist.
    """

    def __init__(
        self,
        rcvd: _CloseFrame | None,
        sent: _CloseFrame | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        super().__init__(rcvd, sent, rcvd_then_sent)

    @property
    def code(self) -> int:
        """The close code received, 1005 when the peer sent none, 1006 when none arrived."""
        if self.rcvd is None:
            return 1006
        return self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received, or the empty string."""
        if self.rcvd is None:
            return ""
        return self.rcvd.reason

    def __str__(self) -> str:
        if self.rcvd is None and self.sent is None:
            return "no close frame received or sent"
        if self.rcvd is None:
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: both close frames carried 1000, 1001 or no code."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error, or without a complete close handshake."""


# --- opening handshake ------------------------------------------------------------------


class InvalidHandshake(OpenlineError):
    """The opening handshake failed."""


class SecurityError(InvalidHandshake):
    """The handshake broke a hard limit (header size or count, line length)."""


class InvalidMessage(InvalidHandshake):
    """The handshake request or response is not well-formed HTTP/1.1."""


class InvalidURI(InvalidHandshake):
    """A URI given to the client is not a valid ``ws://`` or ``wss://`` URI."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(uri, msg)

    def __str__(self) -> str:
        return f"{_shorten(self.uri)} isn't a valid websocket URI: {self.msg}"


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing, repeated or malformed.

    Attributes:
        name: The header name.
        value: The offending value, or ``None`` when the header is missing.
    """

    def __init__(self, name: str, value: str | None = None) -> None:
        self.name = name
        self.value = value
        super().__init__(name, value)

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        if self.value == "":
            return f"empty {self.name} header"
        return f"invalid {self.name} header: {_shorten(self.value)}"


class InvalidHeaderValue(InvalidHeader):
    """A handshake header's value cannot be parsed."""


class InvalidUpgrade(InvalidHeader):
    """The ``Upgrade`` or ``Connection`` header does not ask for a WebSocket upgrade."""


class InvalidOrigin(InvalidHeader):
    """The ``Origin`` header is missing or not in the allowlist."""

    def __init__(self, origin: str | None) -> None:
        super().__init__("Origin", origin)


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with a status other than 101.

    Attributes:
        status: The HTTP status code received.
        response: The full response object, when available.
    """

    def __init__(self, status: int, response: object | None = None) -> None:
        self.status = status
        self.response = response
        super().__init__(status)

    def __str__(self) -> str:
        return f"server rejected the websocket connection: HTTP {self.status}"


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class DuplicateParameter(NegotiationError):
    """An extension parameter appears twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"duplicate parameter: {self.name}"


class InvalidParameterName(NegotiationError):
    """An extension parameter has an unknown name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"invalid parameter name: {_shorten(self.name)}"


class InvalidParameterValue(NegotiationError):
    """An extension parameter has an invalid value."""

    def __init__(self, name: str, value: str | None) -> None:
        self.name = name
        self.value = value
        super().__init__(name, value)

    def __str__(self) -> str:
        if self.value is None:
            return f"missing value for parameter {self.name}"
        return f"invalid value for parameter {self.name}: {_shorten(self.value)}"


# --- protocol violations ----------------------------------------------------------------


class ProtocolError(OpenlineError):
    """The peer broke the protocol.

    Attributes:
        msg: What went wrong.
        code: The close code sent to the peer because of it (1002 by default).
    """

    def __init__(self, msg: str, code: int = 1002) -> None:
        self.msg = msg
        self.code = code
        super().__init__(msg, code)

    def __str__(self) -> str:
        return self.msg


class PayloadTooBig(ProtocolError):
    """A message or frame exceeds ``max_size``; closes with 1009.

    Attributes:
        size: The size seen so far, in bytes (a lower bound when ``size_known`` is false).
        max_size: The limit, in bytes.
    """

    def __init__(self, size: int, max_size: int, *, what: str = "message") -> None:
        self.size = size
        self.max_size = max_size
        self.what = what
        super().__init__(self._message(), 1009)
        self.args = (size, max_size)

    def _message(self) -> str:
        return f"{self.what} of {self.size} bytes exceeds max_size of {self.max_size} bytes"

    def __str__(self) -> str:
        return self._message()


# --- local misuse -----------------------------------------------------------------------


class InvalidState(OpenlineError, AssertionError):
    """An operation is not allowed in the connection's current state.

    Derives from ``AssertionError`` too because it always reveals a bug in the caller.
    """


class ConcurrencyError(OpenlineError, RuntimeError):
    """Two coroutines used ``recv()`` (or ``send()``) of one connection at once."""


# --- hub --------------------------------------------------------------------------------


class HubError(OpenlineError):
    """The hub refused or failed an operation."""


class BackendUnavailable(HubError):
    """The hub's engine can't reach its store (for example, Redis is down).

    The operation may succeed later; the hub answers clients with the
    ``unavailable`` error code.
    """


class RequestError(HubError):
    """A client message the hub refuses; becomes an ``error`` reply.

    Attributes:
        code: The error code.
        reason: A short explanation for humans; never contains internal details.
        rid: The request id, when the message had a valid one.
        ch: The channel, when the message had a valid one.
        id: The client message id of a publish, when valid.
        retry_after: Seconds after which the same message would be accepted
            (``rate_limited``), or ``None``.
    """

    def __init__(
        self,
        code: ErrorCode,
        reason: str,
        *,
        rid: Rid = None,
        ch: str | None = None,
        id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code: ErrorCode = code
        self.reason = reason
        self.rid = rid
        self.ch = ch
        self.id = id
        self.retry_after = retry_after
        super().__init__(code, reason)

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class ClientClosed(HubError):
    """The client was closed, or the subscription ended: the call can't complete."""
