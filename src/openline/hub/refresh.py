"""Token expiry on open connections: ask for a new token, close those that don't send one.

A connection whose :class:`~openline.hub.auth.Identity` has ``expires`` gets,
``refresh_before`` seconds before then (at most half of what is left, so that a
short-lived token leaves the client time to answer), a ``refresh`` message.
The client answers with ``token {token, rid}``; the hub checks the new token
with the same ``authenticate`` hook as at the handshake, requires the same
user, and answers ``refreshed {exp, rid}``. At expiry, a connection that sent
no valid token is closed with :data:`TOKEN_EXPIRED` (4001), which both clients
treat as "get a new token, then redial".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import wire
from .auth import Authenticate, Credentials, Identity, Reject, call_hook
from .session import Session
from .wire import RequestError

__all__ = ["TOKEN_EXPIRED", "TokenClock"]

#: Close code of a connection whose token expired unrefreshed.
TOKEN_EXPIRED = 4001

Send = Callable[[Session, bytes], Awaitable[None]]
Spawn = Callable[[Awaitable[Any]], None]


class TokenClock:
    """One timer per connection whose identity expires.

    Args:
        send: Sends a frame to a session (the hub's reply path).
        spawn: Runs a coroutine in the background (the hub's task set).
        refresh_before: Seconds before expiry to send ``refresh``.
    """

    def __init__(self, *, send: Send, spawn: Spawn, refresh_before: float) -> None:
        self._send = send
        self._spawn = spawn
        self._before = refresh_before
        self._timers: dict[Session, asyncio.TimerHandle] = {}

    def watch(self, session: Session) -> None:
        """Arm the session's timer from its identity's ``expires``; no-op without one."""
        self.forget(session)
        expires = session.identity.expires
        if expires is None:
            return
        left = expires - time.time()
        ask_in = max(0.0, left - min(self._before, left / 2))
        loop = asyncio.get_running_loop()
        self._timers[session] = loop.call_later(ask_in, self._ask, session, expires)

    def forget(self, session: Session) -> None:
        """Disarm the session's timer (it closed, or its token changed)."""
        timer = self._timers.pop(session, None)
        if timer is not None:
            timer.cancel()

    async def renew(
        self, session: Session, request: wire.Token, authenticate: Authenticate | None
    ) -> None:
        """Handle a ``token`` message: verify, swap the identity, re-arm, answer.

        Raises:
            RequestError: ``unauthorized`` when the token doesn't verify, names
                another user, or the hub has no ``authenticate`` hook.
        """
        rid = request.rid
        if authenticate is None:
            raise RequestError("unauthorized", "this hub takes no tokens", rid=rid)
        ws = session.ws
        assert ws.request is not None  # an open connection went through its handshake
        credentials = Credentials(request.token, ws.request, ws.remote_address, session.scope)
        try:
            identity = await call_hook(authenticate, credentials)
        except Reject as exc:
            raise RequestError("unauthorized", exc.reason, rid=rid) from None
        if not isinstance(identity, Identity):
            raise RequestError("unauthorized", "token refused", rid=rid)
        if identity.user != session.user:
            raise RequestError("unauthorized", "token is for another user", rid=rid)
        session.identity = identity
        self.watch(session)
        reply = {"type": "refreshed", "exp": identity.expires, "rid": rid}
        await self._send(session, wire.dumps(reply))

    # --- private -----------------------------------------------------------------------

    def _ask(self, session: Session, expires: float) -> None:
        """Send ``refresh``, then wait for expiry."""
        self._spawn(self._send(session, wire.dumps({"type": "refresh", "exp": expires})))
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires - time.time())
        self._timers[session] = loop.call_later(delay, self._expire, session)

    def _expire(self, session: Session) -> None:
        """Close a connection whose token expired (RFC 6455 section 7.4.2: 4000-4999 are ours)."""
        self._timers.pop(session, None)
        session.closing = True
        self._spawn(session.ws.close(TOKEN_EXPIRED, "token expired"))
