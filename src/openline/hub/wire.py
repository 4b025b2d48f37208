"""The ``openline.v1`` wire format: parse and check client messages, encode server ones.

Every message is a JSON object in a text frame; ``docs/protocol.md`` is the
specification. Parsing never raises anything but :class:`RequestError`, which
carries the error code to answer with. Encoding produces UTF-8 ``bytes`` ready
for a text frame; the hot path (:func:`encode_message`) splices the already
encoded JSON of the payload instead of encoding it again per subscriber.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from ..exceptions import RequestError
from ..typing import ErrorCode, Rid
from .backends.base import Message, PresenceSnapshot, PublishResult

__all__ = [
    "SUBPROTOCOL",
    "ErrorCode",
    "GetPresence",
    "Parser",
    "Ping",
    "Publish",
    "Request",
    "RequestError",
    "SetState",
    "Subscribe",
    "Token",
    "Unsubscribe",
    "dumps",
    "encode_ack",
    "encode_count",
    "encode_error",
    "encode_gap",
    "encode_join",
    "encode_json",
    "encode_leave",
    "encode_message",
    "encode_pong",
    "encode_presence",
    "encode_refresh",
    "encode_refreshed",
    "encode_state",
    "encode_str",
    "encode_subscribed",
    "encode_unsubscribed",
    "encode_welcome",
    "identify",
    "is_text",
    "show",
]

#: The subprotocol a hub connection negotiates.
SUBPROTOCOL = "openline.v1"

#: Longest client message id, request id and epoch, in characters.
MAX_ID_LENGTH = 128
MAX_RID_LENGTH = 64
MAX_EPOCH_LENGTH = 64
#: Integers beyond this lose precision in JavaScript.
_MAX_SAFE_INT = 2**53 - 1

# Control characters, and lone surrogates (which JSON escapes can produce but
# UTF-8 can't encode).
_BAD_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


# --- client messages --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Subscribe:
    """``subscribe``: join a channel, optionally resuming after ``since``."""

    ch: str
    since: tuple[str, int] | None = None
    presence: bool = False
    rid: Rid = None


@dataclasses.dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``unsubscribe``: leave a channel."""

    ch: str
    rid: Rid = None


@dataclasses.dataclass(frozen=True, slots=True)
class Publish:
    """``publish``: store and fan out ``data`` (kept as encoded JSON)."""

    ch: str
    data: bytes
    id: str | None = None
    rid: Rid = None


@dataclasses.dataclass(frozen=True, slots=True)
class SetState:
    """``state``: set (or clear, with ``None``) the user's ephemeral state (JSON text)."""

    ch: str
    state: str | None
    rid: Rid = None


@dataclasses.dataclass(frozen=True, slots=True)
class GetPresence:
    """``presence``: ask for a presence snapshot."""

    ch: str
    rid: Rid = None


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: an application-level heartbeat, for clients that can't see WebSocket pings."""

    rid: Rid = None


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """``token``: a new token for the connection, before the current one expires."""

    token: str
    rid: Rid = None


#: A parsed client message, one class per message type.
Request = Subscribe | Unsubscribe | Publish | SetState | GetPresence | Ping | Token

#: Longest token a ``token`` message may carry, in characters.
MAX_TOKEN_LENGTH = 8192


class Parser:
    """Parse and check client messages against the hub's limits.

    Args:
        max_message_size: Largest message in bytes of UTF-8; ``None`` disables it.
        max_channel_length: Longest channel name, in characters.
        max_state_size: Largest ephemeral state, in bytes of encoded JSON;
            ``None`` disables it.
    """

    __slots__ = ("max_channel_length", "max_message_size", "max_state_size")

    def __init__(
        self, *, max_message_size: int | None, max_channel_length: int, max_state_size: int | None
    ) -> None:
        self.max_message_size = max_message_size
        self.max_channel_length = max_channel_length
        self.max_state_size = max_state_size

    def parse(self, raw: str | bytes) -> Request:
        """Turn one received WebSocket message into a request.

        Raises:
            RequestError: The message is malformed, too large, or of an unknown type.
        """
        if not isinstance(raw, str):
            raise RequestError("bad_request", "binary frames aren't part of openline.v1")
        limit = self.max_message_size
        # A str of n characters holds at most 4n bytes of UTF-8: encode only when unsure.
        too_large = (
            limit is not None and len(raw) * 4 > limit and len(raw.encode(errors="replace")) > limit
        )
        try:
            fields = _DECODER.decode(raw)
        except (ValueError, RecursionError):
            if too_large:
                raise RequestError("too_large", f"message exceeds {limit} bytes") from None
            raise RequestError("bad_request", "message isn't valid JSON") from None
        if too_large:
            # Parsed all the same (the transport bounds it to four times the limit)
            # so that the client can tell which of its requests was refused.
            reason = f"message exceeds {limit} bytes"
            raise identify(fields, "too_large", reason, self.max_channel_length)
        if not isinstance(fields, dict):
            raise RequestError("bad_request", "message isn't a JSON object")
        rid = _rid(fields)
        kind = fields.get("type")
        if not isinstance(kind, str):
            raise RequestError("bad_request", "missing or mistyped field: type", rid=rid)
        if kind == "publish":
            return self._publish(fields, rid)
        if kind == "subscribe":
            return self._subscribe(fields, rid)
        if kind == "unsubscribe":
            return Unsubscribe(self._channel(fields, rid), rid)
        if kind == "state":
            return self._state(fields, rid)
        if kind == "presence":
            return GetPresence(self._channel(fields, rid), rid)
        if kind == "ping":
            return Ping(rid)
        if kind == "token":
            return _token(fields, rid)
        raise RequestError("unknown_type", f"unknown type: {show(kind)}", rid=rid)

    # --- private: one parser per type ---------------------------------------------------

    def _subscribe(self, fields: dict[str, Any], rid: Rid) -> Subscribe:
        ch = self._channel(fields, rid)
        presence = fields.get("presence", False)
        if not isinstance(presence, bool):
            raise RequestError("bad_request", "mistyped field: presence", rid=rid, ch=ch)
        since = fields.get("since")
        if since is None:
            return Subscribe(ch, None, presence, rid)
        if not isinstance(since, dict):
            raise RequestError("bad_request", "mistyped field: since", rid=rid, ch=ch)
        epoch, offset = since.get("epoch"), since.get("offset")
        if not is_text(epoch, MAX_EPOCH_LENGTH):
            raise RequestError(
                "bad_request", "missing or mistyped field: since.epoch", rid=rid, ch=ch
            )
        if not _is_int(offset) or offset < 0:
            raise RequestError(
                "bad_request", "missing or mistyped field: since.offset", rid=rid, ch=ch
            )
        return Subscribe(ch, (epoch, offset), presence, rid)

    def _publish(self, fields: dict[str, Any], rid: Rid) -> Publish:
        ch = self._channel(fields, rid)
        msg_id = fields.get("id")
        if msg_id is not None and not is_text(msg_id, MAX_ID_LENGTH):
            raise RequestError("bad_request", "mistyped field: id", rid=rid, ch=ch)
        if "data" not in fields:
            raise RequestError("bad_request", "missing field: data", rid=rid, ch=ch, id=msg_id)
        try:
            data = encode_json(fields["data"])
        except ValueError:
            raise RequestError(
                "bad_request", "data can't be encoded as JSON", rid=rid, ch=ch, id=msg_id
            ) from None
        return Publish(ch, data, msg_id, rid)

    def _state(self, fields: dict[str, Any], rid: Rid) -> SetState:
        ch = self._channel(fields, rid)
        if "state" not in fields:
            raise RequestError("bad_request", "missing field: state", rid=rid, ch=ch)
        state = fields["state"]
        if state is None:
            return SetState(ch, None, rid)
        if not isinstance(state, dict):
            raise RequestError("bad_request", "mistyped field: state", rid=rid, ch=ch)
        try:
            encoded = encode_json(state)
        except ValueError:
            raise RequestError(
                "bad_request", "state can't be encoded as JSON", rid=rid, ch=ch
            ) from None
        limit = self.max_state_size
        if limit is not None and len(encoded) > limit:
            raise RequestError("too_large", f"state exceeds {limit} bytes", rid=rid, ch=ch)
        return SetState(ch, encoded.decode(), rid)

    def _channel(self, fields: dict[str, Any], rid: Rid) -> str:
        ch = fields.get("ch")
        if not is_text(ch, self.max_channel_length):
            raise RequestError("bad_request", "missing or mistyped field: ch", rid=rid)
        return ch


def _token(fields: dict[str, Any], rid: Rid) -> Token:
    token = fields.get("token")
    if not isinstance(token, str) or not token:
        raise RequestError("bad_request", "missing or mistyped field: token", rid=rid)
    if len(token) > MAX_TOKEN_LENGTH:
        raise RequestError("too_large", f"token exceeds {MAX_TOKEN_LENGTH} characters", rid=rid)
    return Token(token, rid)


def identify(fields: object, code: ErrorCode, reason: str, max_channel_length: int) -> RequestError:
    """Build an error about a parsed message, echoing its ``rid``, ``ch`` and ``id`` if valid."""
    if not isinstance(fields, dict):
        return RequestError(code, reason)
    rid, ch, msg_id = fields.get("rid"), fields.get("ch"), fields.get("id")
    return RequestError(
        code,
        reason,
        rid=rid if is_text(rid, MAX_RID_LENGTH) or _is_int(rid) else None,
        ch=ch if is_text(ch, max_channel_length) else None,
        id=msg_id if fields.get("type") == "publish" and is_text(msg_id, MAX_ID_LENGTH) else None,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} isn't JSON")


# One decoder for every request: json.loads() with an argument builds a new one per
# call (a decoder and its scanner, on every message received).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _rid(fields: dict[str, Any]) -> Rid:
    rid = fields.get("rid")
    if rid is None or is_text(rid, MAX_RID_LENGTH) or _is_int(rid):
        return rid
    raise RequestError("bad_request", "mistyped field: rid")


def is_text(value: object, limit: int) -> TypeGuard[str]:
    """Tell whether ``value`` is a non-empty string of printable characters within ``limit``."""
    return isinstance(value, str) and 0 < len(value) <= limit and _BAD_CHARS.search(value) is None


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def show(value: str, limit: int = 40) -> str:
    """Render peer text safely in a reason: escaped and truncated."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# One encoder each, made once: json.dumps() with arguments builds a new encoder
# per call, and these run for every message published or sent.
_STRICT_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_json(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON.

    Raises:
        ValueError: It contains lone surrogates, or nests too deeply.
    """
    try:
        return _STRICT_ENCODER.encode(value).encode()
    except (RecursionError, UnicodeEncodeError) as exc:
        raise ValueError("can't encode as JSON") from exc


# --- server messages --------------------------------------------------------------------


def dumps(fields: Mapping[str, Any]) -> bytes:
    """Encode a server message; ``None`` values are left out."""
    return _ENCODER.encode(
        {key: value for key, value in fields.items() if value is not None}
    ).encode()


def encode_str(value: str) -> bytes:
    """Encode a string as a JSON string, in UTF-8."""
    return _ENCODER.encode(value).encode()


def encode_message(ch_json: bytes, message: Message) -> bytes:
    """Encode a ``message``: built once per publish and shared by every subscriber.

    Args:
        ch_json: The channel's name, already encoded with :func:`encode_str`.
        message: The message; its ``data`` is encoded JSON.
    """
    data = message.data
    if isinstance(data, str):
        data = data.encode()
    tail = b""
    meta = message.meta
    if meta:
        user = meta.get("user")
        if user is not None:
            tail += b',"user":' + encode_str(user)
        msg_id = meta.get("id")
        if msg_id is not None:
            tail += b',"id":' + encode_str(msg_id)
    return b'{"type":"message","ch":%b,"epoch":%b,"offset":%d%b,"data":%b}' % (
        ch_json,
        encode_str(message.epoch),
        message.offset,
        tail,
        data,
    )


def encode_gap(ch: str, epoch: str, since: tuple[str, int] | None, first: int) -> bytes:
    """Encode a ``gap``: messages after ``since`` and before ``first`` are lost."""
    since_fields = None if since is None else {"epoch": since[0], "offset": since[1]}
    return dumps({"type": "gap", "ch": ch, "epoch": epoch, "since": since_fields, "from": first})


def encode_presence(ch: str, snapshot: PresenceSnapshot, rid: Rid = None) -> bytes:
    """Encode a ``presence`` snapshot, with users unless the snapshot has only a count."""
    head = dumps({"type": "presence", "ch": ch, "count": snapshot.count, "rid": rid})
    users = snapshot.users
    if users is None:
        return head
    entries = []
    for user, entry in users.items():
        item = b'{"user":%b,"info":%b,"clients":%d' % (
            encode_str(user),
            entry.info.encode(),
            entry.clients,
        )
        if entry.state is not None:
            item += b',"state":' + entry.state.encode()
        entries.append(item + b"}")
    return head[:-1] + b',"users":[' + b",".join(entries) + b"]}"


def encode_join(ch: str, user: str, info: str | None) -> bytes:
    """Encode a ``join`` event; ``info`` is JSON text."""
    head = dumps({"type": "join", "ch": ch, "user": user})
    return head[:-1] + b',"info":' + (info or "{}").encode() + b"}"


def encode_state(ch: str, user: str, state: str | None, ttl: float | None) -> bytes:
    """Encode a ``state`` event; ``state`` is JSON text, or ``None`` once cleared."""
    head = dumps({"type": "state", "ch": ch, "user": user, "ttl": ttl})
    return head[:-1] + b',"state":' + (b"null" if state is None else state.encode()) + b"}"


def encode_welcome(
    client: str,
    user: str | None,
    heartbeat: float | None,
    timeout: float | None,
    limits: Mapping[str, float | None],
) -> bytes:
    """Encode the ``welcome`` that opens a connection; limits that are ``None`` are left out."""
    return dumps(
        {
            "type": "welcome",
            "client": client,
            "user": user,
            "heartbeat": heartbeat,
            "timeout": timeout,
            "limits": {key: value for key, value in limits.items() if value is not None},
        }
    )


def encode_pong(rid: Rid) -> bytes:
    """Encode the ``pong`` that answers a ``ping``."""
    return dumps({"type": "pong", "rid": rid})


def encode_ack(ch: str, result: PublishResult, msg_id: str | None, rid: Rid) -> bytes:
    """Encode the ``ack`` of a stored (or de-duplicated) publish."""
    return dumps(
        {
            "type": "ack",
            "ch": ch,
            "epoch": result.epoch,
            "offset": result.offset,
            "id": msg_id,
            "duplicate": result.duplicate,
            "rid": rid,
        }
    )


def encode_subscribed(
    ch: str, epoch: str, offset: int, *, recovered: bool, missed: int, rid: Rid
) -> bytes:
    """Encode ``subscribed``: the channel's position, and what the resume recovered."""
    return dumps(
        {
            "type": "subscribed",
            "ch": ch,
            "epoch": epoch,
            "offset": offset,
            "recovered": recovered,
            "missed": missed,
            "rid": rid,
        }
    )


def encode_unsubscribed(ch: str, rid: Rid = None) -> bytes:
    """Encode ``unsubscribed``: an answer (with ``rid``) or the server's own decision."""
    return dumps({"type": "unsubscribed", "ch": ch, "rid": rid})


def encode_leave(ch: str, user: str) -> bytes:
    """Encode a ``leave`` event."""
    return dumps({"type": "leave", "ch": ch, "user": user})


def encode_count(ch: str, count: int) -> bytes:
    """Encode a ``presence`` count without users (a counts-only channel)."""
    return dumps({"type": "presence", "ch": ch, "count": count})


def encode_refresh(expires: float) -> bytes:
    """Encode ``refresh``: the connection's token expires at ``expires`` (Unix seconds)."""
    return dumps({"type": "refresh", "exp": expires})


def encode_refreshed(expires: float | None, rid: Rid) -> bytes:
    """Encode ``refreshed``: the answer to a ``token`` the hub accepted."""
    return dumps({"type": "refreshed", "exp": expires, "rid": rid})


def encode_error(error: RequestError) -> bytes:
    """Encode an ``error`` reply."""
    return dumps(
        {
            "type": "error",
            "code": error.code,
            "reason": error.reason,
            "rid": error.rid,
            "ch": error.ch,
            "id": error.id,
            "retry_after": error.retry_after,
        }
    )
