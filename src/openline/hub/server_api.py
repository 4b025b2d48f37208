"""The hub's server API: what server code may ask of and do to a hub's users.

:class:`~openline.hub.Hub` exposes these as thin methods (``presence``,
``history``, ``channels``, ``disconnect``, ``subscribe``, ``unsubscribe``);
this module holds the logic. Reads (presence, history, channels) go to the
engine, so they see every node. Actions on users (disconnect, subscribe,
unsubscribe) become **commands**: small JSON objects sent on the engine's
control channel (:class:`~openline.hub.backends.base.Control`), which every
node of a Redis hub hears, this one included; each node then acts on its own
connections of that user. With an engine that has no control channel the
command runs on this process only.

A command is fire-and-forget: the call returns once the command is sent, not
once every node has acted (a node can't answer how many connections it had),
and a node whose engine feed is down when it is sent misses it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..exceptions import BackendUnavailable
from ..typing import LoggerLike
from . import wire
from .backends.base import Control, Engine, HistoryResult, PresenceSnapshot
from .session import Session

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "MAX_CHANNELS",
    "MAX_HISTORY_LIMIT",
    "MAX_REASON_BYTES",
    "MAX_USER_LENGTH",
    "ServerAPI",
    "check_close_code",
]

#: Messages :meth:`ServerAPI.history` returns when no ``limit`` is given.
DEFAULT_HISTORY_LIMIT = 100
#: Most messages one :meth:`ServerAPI.history` call returns.
MAX_HISTORY_LIMIT = 1000
#: Most channel names :meth:`ServerAPI.channels` returns.
MAX_CHANNELS = 10_000
#: Longest user id a command names, in characters.
MAX_USER_LENGTH = 200
#: Longest close reason, in bytes of UTF-8 (RFC 6455, section 5.5: a control
#: frame's payload is at most 125 bytes, two of which hold the code).
MAX_REASON_BYTES = 123

# Close codes server code may send: normal, going away, policy, internal error,
# service restart, try again later, and the ranges for libraries and applications.
_SERVER_CLOSE_CODES = frozenset((1000, 1001, 1008, 1011, 1012, 1013))

#: Acts on one of this node's sessions of the user, for a command.
SessionAction = Callable[[Session, str], Awaitable[None]]


def check_close_code(code: int, reason: str) -> None:
    """Check a close code and reason that server code asks for.

    Raises:
        ValueError: ``code`` isn't 1000, 1001, 1008, 1011, 1012, 1013 or in
            3000-4999, or ``reason`` is longer than 123 bytes of UTF-8.
    """
    if type(code) is not int or not (code in _SERVER_CLOSE_CODES or 3000 <= code <= 4999):
        raise ValueError(
            f"invalid close code {code!r}: use 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999"
        )
    if not isinstance(reason, str) or len(reason.encode()) > MAX_REASON_BYTES:
        raise ValueError(f"close reason must be a string of at most {MAX_REASON_BYTES} bytes")


class ServerAPI:
    """The server API of one hub; see the module docstring.

    Args:
        engine: The hub's engine.
        sessions: This node's open sessions.
        local_channels: The channels with subscribers on this node.
        subscribe: Subscribes a session as if it had asked (no-op if it is subscribed).
        unsubscribe: Unsubscribes a session and tells it (no-op if it isn't subscribed).
        max_channel_length: Longest channel name, in characters.
        spawn: Runs a coroutine in the background, owned by the hub.
        logger: Where to log.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        sessions: Iterable[Session],
        local_channels: Callable[[], Iterable[str]],
        subscribe: SessionAction,
        unsubscribe: SessionAction,
        max_channel_length: int,
        spawn: Callable[[Awaitable[Any]], None],
        logger: LoggerLike,
    ) -> None:
        self._engine = engine
        self._control = engine if isinstance(engine, Control) else None
        self._sessions = sessions
        self._local_channels = local_channels
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._max_channel_length = max_channel_length
        self._spawn = spawn
        self._logger = logger
        self._listening = False

    # --- reads -------------------------------------------------------------------------

    async def presence(self, ch: str, *, max_users: int | None) -> PresenceSnapshot:
        """Who is in ``ch``, on every node; counts only beyond ``max_users`` users."""
        self._check_channel(ch)
        return await self._engine.presence_snapshot(ch, max_users=max_users)

    async def history(
        self,
        ch: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> HistoryResult:
        """Read ``ch``'s history: the newest ``limit`` messages, or those after ``since``.

        Without ``since``, the newest ``limit`` messages still in history. With
        it, the first ``limit`` messages after offset ``since`` of ``epoch``
        (the current epoch when ``None``), so that a caller pages forward by
        passing the last offset it got; ``recovered`` is ``False`` when the
        epoch changed or history no longer reaches back to ``since``, and the
        messages are then the oldest ones still kept.

        Raises:
            ValueError: ``ch``, ``since``, ``epoch`` or ``limit`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        self._check_channel(ch)
        if type(limit) is not int or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {MAX_HISTORY_LIMIT}, got {limit!r}")
        if since is not None and (type(since) is not int or since < 0):
            raise ValueError(f"since must be an int >= 0, got {since!r}")
        if epoch is not None and not wire.is_text(epoch, wire.MAX_ID_LENGTH):
            raise ValueError(f"invalid epoch: {epoch!r}")
        engine = self._engine
        head = await engine.history(ch)
        if since is None:
            result = await engine.history(ch, since=0, epoch=head.epoch)
            messages = list(result.messages)[-limit:]
            recovered = True
        else:
            result = await engine.history(ch, since=since, epoch=epoch or head.epoch)
            messages = list(result.messages)[:limit]
            recovered = result.recovered
        return HistoryResult(
            result.epoch, result.last_offset, result.first_offset, messages, recovered
        )

    async def channels(self) -> list[str]:
        """The channels with a subscriber on any node, sorted, at most :data:`MAX_CHANNELS`.

        Every subscription joins the channel's presence, so these are this
        node's channels plus the channels where the engine knows a present
        user (on any node, with an engine that has a control channel).

        Raises:
            BackendUnavailable: The engine can't reach its store.
        """
        names = set(self._local_channels())
        if self._control is not None:
            names.update(await self._control.present_channels(MAX_CHANNELS))
        return sorted(names)[:MAX_CHANNELS]

    # --- commands ----------------------------------------------------------------------

    async def disconnect(self, user: str, code: int, reason: str) -> None:
        """Close every connection of ``user`` on every node with ``code`` and ``reason``.

        Raises:
            ValueError: ``user``, ``code`` or ``reason`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        self._check_user(user)
        check_close_code(code, reason)
        await self._send({"op": "disconnect", "user": user, "code": code, "reason": reason})

    async def subscribe(self, user: str, ch: str) -> None:
        """Subscribe every connection of ``user`` on every node to ``ch``.

        Raises:
            ValueError: ``user`` or ``ch`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        self._check_user(user)
        self._check_channel(ch)
        await self._send({"op": "subscribe", "user": user, "ch": ch})

    async def unsubscribe(self, user: str, ch: str) -> None:
        """Unsubscribe every connection of ``user`` on every node from ``ch``.

        Raises:
            ValueError: ``user`` or ``ch`` is invalid.
            BackendUnavailable: The engine can't reach its store.
        """
        self._check_user(user)
        self._check_channel(ch)
        await self._send({"op": "unsubscribe", "user": user, "ch": ch})

    # --- lifecycle ---------------------------------------------------------------------

    async def listen(self) -> None:
        """Start hearing commands from other nodes; the hub calls it on each connection.

        A failure is logged and retried on the next call: without it, this node
        misses commands until then.
        """
        if self._listening or self._control is None:
            return
        self._listening = True
        try:
            await self._control.subscribe_control(self.receive)
        except BackendUnavailable as exc:
            self._listening = False
            self._logger.warning("can't hear server API commands yet: %s", exc)

    async def close(self) -> None:
        """Stop hearing commands."""
        if self._listening and self._control is not None:
            self._listening = False
            await self._control.unsubscribe_control(self.receive)

    def receive(self, payload: bytes) -> None:
        """Run a command on this node's sessions: the control channel's callback."""
        try:
            command = json.loads(payload)
            op, user = command["op"], command["user"]
        except (ValueError, KeyError, TypeError):
            self._logger.error("unreadable server API command: %r", payload[:80])
            return
        targets = [s for s in self._sessions if s.user == user and not s.closing]
        for session in targets:
            if op == "disconnect":
                self._spawn(_close(session, command["code"], command["reason"]))
            elif op == "subscribe":
                self._spawn(self._subscribe(session, command["ch"]))
            elif op == "unsubscribe":
                self._spawn(self._unsubscribe(session, command["ch"]))
            else:
                self._logger.error("unknown server API command: %r", op)
                return

    # --- private -----------------------------------------------------------------------

    async def _send(self, command: dict[str, Any]) -> None:
        payload = json.dumps(command, separators=(",", ":")).encode()
        if self._control is None:
            self.receive(payload)
        else:
            await self._control.send_control(payload)

    def _check_channel(self, ch: str) -> None:
        if not wire.is_text(ch, self._max_channel_length):
            raise ValueError(f"invalid channel name: {ch!r}")

    def _check_user(self, user: str) -> None:
        if not wire.is_text(user, MAX_USER_LENGTH):
            raise ValueError(f"invalid user: {user!r}")


async def _close(session: Session, code: int, reason: str) -> None:
    session.closing = True
    await session.ws.close(code, reason)
