"""One hub connection's state: who it is, what it subscribed to, how it behaves."""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping
from typing import Any, Protocol

from .auth import Identity
from .peer import Peer
from .wire import ErrorCode

__all__ = ["Hold", "Membership", "Roster", "Session"]


class Roster(Protocol):
    """Sessions of one channel, as the fan-out sees a channel: it only removes one."""

    def remove(self, session: Session) -> None:
        """Forget ``session``: it gets nothing more from this channel."""


class Membership:
    """One channel a session subscribed to: the server's side of a subscription.

    The client's side is :class:`openline.hub.client.Subscription`.

    Attributes:
        presence: Whether the session asked for presence snapshots and events.
    """

    __slots__ = ("presence",)

    def __init__(self, presence: bool) -> None:
        self.presence = presence


class Hold:
    """A publish refused for a retryable reason, which later publishes wait behind.

    Attributes:
        id: The refused publish's client message id.
        code: The refusal's code, given to the publishes held behind it.
        until: When the hold lapses (monotonic seconds), in case the client
            gave that publish up.
    """

    __slots__ = ("code", "id", "until")

    def __init__(self, msg_id: str, code: ErrorCode, until: float) -> None:
        self.id = msg_id
        self.code: ErrorCode = code
        self.until = until


class Session:
    """A hub connection: its WebSocket, identity, subscriptions and budgets.

    Args:
        ws: The WebSocket connection.
        identity: Who is connected.
        info_json: ``identity.info`` encoded as JSON, once for the session's life.
        anonymous: Whether the identity was made up for a connection without
            authentication.
        rate_limit: ``(messages, seconds)``: the token bucket's size and refill
            period; ``None`` disables rate limiting.
        max_errors: ``(errors, seconds)``: this many errors within the window
            count as abuse; ``None`` never counts.
        scope: The ASGI scope the connection came with, ``None`` outside ASGI;
            given again to ``authenticate`` when the client renews its token.
    """

    __slots__ = (
        "_error_budget",
        "_error_times",
        "_rate",
        "_tokens",
        "_tokens_at",
        "anonymous",
        "client",
        "closing",
        "hold",
        "identity",
        "info_json",
        "limited_since",
        "publishes",
        "scope",
        "subs",
        "user",
        "ws",
    )

    def __init__(
        self,
        ws: Peer,
        identity: Identity,
        info_json: str,
        *,
        anonymous: bool,
        rate_limit: tuple[int, float] | None,
        max_errors: tuple[int, float] | None,
        now: float,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        self.ws = ws
        self.scope = scope
        self.identity = identity
        self.user = identity.user
        client = str(ws.id)
        # A guest's user id is its connection's id: keep one string for both.
        self.client = identity.user if identity.user == client else client
        self.info_json = info_json
        #: Whether no ``authenticate`` hook vouched for the user.
        self.anonymous = anonymous
        self.subs: dict[str, Membership] = {}
        #: Set once the hub decided to close the connection.
        self.closing = False
        # Token bucket: capacity and refill rate in tokens per second.
        self._rate = rate_limit
        self._tokens = float(rate_limit[0]) if rate_limit is not None else 0.0
        self._tokens_at = now
        # Sliding window of the last errors' times, made on the first error: most
        # connections never err, and an idle connection should stay small.
        self._error_budget = max_errors
        self._error_times: collections.deque[float] | None = None
        #: The publish whose retry later publishes wait for, after a retryable refusal.
        self.hold: Hold | None = None
        #: While publishes are being stored: the messages received since, in order,
        #: each with when it arrived and whether the rate limit let it in.
        self.publishes: collections.deque[tuple[str | bytes, float, bool]] | None = None
        #: When the current run of ``rate_limited`` refusals began; ``None`` outside one.
        self.limited_since: float | None = None

    @staticmethod
    def encode_info(identity: Identity) -> str:
        """Encode an identity's public info as JSON text.

        Raises:
            TypeError: The info isn't JSON-serializable.
            ValueError: Likewise (circular references, non-finite numbers).
        """
        return json.dumps(
            dict(identity.info), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )

    def take_token(self, now: float) -> bool:
        """Spend one message from the rate budget; ``False`` when it is exhausted."""
        rate = self._rate
        if rate is None:
            return True
        capacity, period = rate
        tokens = min(capacity, self._tokens + (now - self._tokens_at) * capacity / period)
        self._tokens_at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until the rate budget holds one message again (0 when it does)."""
        rate = self._rate
        if rate is None:
            return 0.0
        capacity, period = rate
        tokens = min(capacity, self._tokens + (now - self._tokens_at) * capacity / period)
        return max(0.0, (1.0 - tokens) * period / capacity)

    def count_error(self, now: float) -> bool:
        """Record an error; ``True`` when the connection crossed the abuse threshold."""
        budget = self._error_budget
        if budget is None:
            return False
        count, window = budget
        times = self._error_times
        if times is None:
            times = self._error_times = collections.deque(maxlen=count)
        times.append(now)
        return len(times) == count and now - times[0] <= window
