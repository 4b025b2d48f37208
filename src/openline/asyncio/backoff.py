"""Redial policies: when to try again after a failure, and how long to wait first.

A reconnecting client (``async for ws in connect(...)`` and
:class:`openline.hub.Client`) asks two injectable policies after every failed
dial and every connection that ended:

* a **classifier**, ``classify(exc) -> float | None``: ``None`` means "don't
  retry, raise ``exc``"; a number means "retry, waiting at least this many
  seconds" (``0.0`` to follow the backoff alone; more to honour a server's
  ``Retry-After``). :class:`Classifier` is the default.
* a **delay generator**: any re-iterable of delays in seconds. The client calls
  ``iter()`` on it afresh whenever a connection proved healthy, so that the
  backoff restarts from the beginning; a finite iterable stops the retries when
  it runs out. :class:`Backoff` is the default: exponential growth with full
  jitter.

Full jitter (each delay drawn uniformly between zero and the exponential bound)
spreads the redials of many clients that lost the same server at the same
moment, so that the restarted server isn't hit by all of them at once.
"""

from __future__ import annotations

import email.utils
import math
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator

from ..exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    ProtocolError,
)
from .drain import RETRY_HINT_CLOSE_CODES, parse_retry_hint

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_RESET_AFTER",
    "RETRY_CLOSE_CODES",
    "RETRY_STATUSES",
    "Backoff",
    "Classifier",
    "Classify",
    "Schedule",
]

#: Upper bound of the first delay, in seconds.
DEFAULT_BACKOFF_BASE = 1.0
#: Upper bound of every delay, in seconds.
DEFAULT_BACKOFF_CAP = 60.0
#: Longest ``Retry-After`` honoured, in seconds.
DEFAULT_MAX_RETRY_AFTER = 300.0
#: Seconds a connection must stay open to count as healthy and restart the backoff.
DEFAULT_RESET_AFTER = 5.0

#: Close codes after which redialling is worth it: the server went away or
#: restarts (1001, 1012), is overloaded (1013), failed (1011), a gateway failed
#: (1014), the line died (1006), or the connection simply ended (1000, 1005).
RETRY_CLOSE_CODES = frozenset({1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014})

#: HTTP statuses of a refused handshake after which redialling is worth it.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

#: The classifier's signature: ``None`` to raise, else the least delay in seconds.
Classify = Callable[[Exception], "float | None"]


class Backoff:
    """Capped exponential backoff with full jitter: the default delay generator.

    Iterating yields an endless sequence of delays: the ``n``-th (from 0) is
    drawn uniformly from ``[0, min(cap, base * 2**n)]``. So the first redial
    waits at most ``base`` seconds, and no redial waits more than ``cap``.
    Each ``iter()`` starts over from ``n = 0``.

    Args:
        base: Upper bound of the first delay, in seconds; 0 redials at once.
        cap: Upper bound of every delay, in seconds; at least ``base``.
        rng: The random source, for reproducible delays in tests; a private
            :class:`random.Random` by default.

    Raises:
        ValueError: ``base`` is negative, ``cap`` is below ``base``, or either
            isn't a finite number.
    """

    __slots__ = ("base", "cap", "rng")

    def __init__(
        self,
        base: float = DEFAULT_BACKOFF_BASE,
        cap: float = DEFAULT_BACKOFF_CAP,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if not _is_seconds(base) or base < 0:
            raise ValueError(f"base must be a number of seconds >= 0, got {base!r}")
        if not _is_seconds(cap) or cap < base:
            raise ValueError(f"cap must be a number of seconds >= base ({base}), got {cap!r}")
        self.base = float(base)
        self.cap = float(cap)
        self.rng = rng if rng is not None else random.Random()

    def __iter__(self) -> Iterator[float]:
        bound = self.base
        while True:
            yield self.rng.uniform(0.0, bound)
            # Stop doubling at the cap: 2**n would overflow a float after ~1000 tries.
            bound = min(self.cap, bound * 2.0)

    def __repr__(self) -> str:
        return f"Backoff(base={self.base}, cap={self.cap})"


class Classifier:
    """The default classifier: retry what may heal by itself, raise the rest.

    Retried (the line, the network or the server may recover):

    * ``OSError`` (refused, reset, unreachable, DNS failures) and ``TimeoutError``,
      except a failed TLS certificate check;
    * :class:`~openline.exceptions.InvalidMessage`: the server closed the
      connection or answered garbage during the handshake (often a restart);
    * :class:`~openline.exceptions.InvalidStatus` with a status in
      :data:`RETRY_STATUSES` (5xx, 429, 408, 425), honouring ``Retry-After``;
    * :class:`~openline.exceptions.ConnectionClosed` with a close code in
      :data:`RETRY_CLOSE_CODES` (including 1006, a dead line), unless the peer
      broke the protocol; after 1001, 1012 or 1013 a reason such as
      ``retry-after=1.25`` (the retry hint of a draining server,
      :mod:`openline.asyncio.drain`) is the least delay, like ``Retry-After``.

    Raised (retrying would fail the same way): other statuses (401, 403, 404...),
    an invalid URI, a failed negotiation, malformed handshake headers, close
    codes 1002, 1003, 1007, 1008, 1009, 1010 and application codes (3000-4999),
    a protocol violation by the peer, and any other exception.

    Args:
        max_retry_after: Longest ``Retry-After`` or retry hint honoured, in seconds; a larger
            one is cut down to it. ``None`` honours any value.

    Raises:
        ValueError: ``max_retry_after`` isn't a number >= 0.
    """

    __slots__ = ("max_retry_after",)

    def __init__(self, *, max_retry_after: float | None = DEFAULT_MAX_RETRY_AFTER) -> None:
        if max_retry_after is not None and (
            not _is_seconds(max_retry_after) or max_retry_after < 0
        ):
            raise ValueError(
                f"max_retry_after must be a number of seconds >= 0 or None, got {max_retry_after!r}"
            )
        self.max_retry_after = max_retry_after

    def __call__(self, exc: Exception) -> float | None:
        """Classify ``exc``: ``None`` to raise it, else the least delay before redialling."""
        if isinstance(exc, ConnectionClosed):
            return self.classify_close(exc)
        if isinstance(exc, InvalidStatus):
            return self.classify_status(exc)
        if isinstance(exc, InvalidMessage):
            return 0.0
        if isinstance(exc, InvalidHandshake):
            return None  # InvalidURI, InvalidHeader, NegotiationError, SecurityError
        if isinstance(exc, ssl.SSLCertVerificationError):
            return None  # a wrong certificate is a configuration error, or an attack
        if isinstance(exc, OSError):  # TimeoutError is an OSError too
            return 0.0
        return None

    def classify_close(self, exc: ConnectionClosed) -> float | None:
        """Classify how a connection ended, by the close code that ended it."""
        if isinstance(exc.__cause__, ProtocolError) and exc.sent is not None:
            # The peer broke the protocol and we closed because of it: it would
            # break again. (Without a close frame sent, TCP ended mid-frame: a
            # cut line, not a broken peer.)
            return None
        # exc.code is the peer's code, or 1006 when none arrived (a dead line).
        if exc.code not in RETRY_CLOSE_CODES:
            return None
        hint = parse_retry_hint(exc.reason) if exc.code in RETRY_HINT_CLOSE_CODES else None
        if hint is None:
            return 0.0
        limit = self.max_retry_after
        return hint if limit is None else min(hint, limit)

    def classify_status(self, exc: InvalidStatus) -> float | None:
        """Classify a refused handshake by its HTTP status and ``Retry-After``."""
        if exc.status not in RETRY_STATUSES:
            return None
        after = retry_after(exc)
        if after is None:
            return 0.0
        limit = self.max_retry_after
        return after if limit is None else min(after, limit)

    def __repr__(self) -> str:
        return f"Classifier(max_retry_after={self.max_retry_after})"


class Schedule:
    """The state of one redial loop: dials so far, and where the backoff stands.

    The loop calls :meth:`dialled` before each dial, :meth:`opened` when a
    connection opens, :meth:`closed` when it ends, and :meth:`next_delay` with
    every failure to learn how long to wait, or to have the failure raised.

    Args:
        backoff: The delay generator: a re-iterable of delays in seconds.
        classify: The classifier.
        max_attempts: Most dials in a row without a healthy connection; the
            last failure is raised instead of dialling once more. ``None``
            redials forever.
        reset_after: Seconds a connection must stay open to restart the
            backoff and the count of attempts; ``None`` restarts them as soon
            as a connection opens.

    Raises:
        ValueError: ``max_attempts`` is below 1 or ``reset_after`` isn't a
            number >= 0.
    """

    __slots__ = (
        "_delays",
        "_opened_at",
        "attempts",
        "backoff",
        "classify",
        "max_attempts",
        "reset_after",
    )

    def __init__(
        self,
        *,
        backoff: Iterable[float],
        classify: Classify,
        max_attempts: int | None,
        reset_after: float | None,
    ) -> None:
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise ValueError(f"max_attempts must be an int >= 1 or None, got {max_attempts!r}")
        if reset_after is not None and (not _is_seconds(reset_after) or reset_after < 0):
            raise ValueError(
                f"reset_after must be a number of seconds >= 0 or None, got {reset_after!r}"
            )
        self.backoff = backoff
        self.classify = classify
        self.max_attempts = max_attempts
        self.reset_after = reset_after
        #: Dials since the backoff last restarted, the current one included.
        self.attempts = 0
        self._delays: Iterator[float] | None = None
        self._opened_at: float | None = None

    def reset(self) -> None:
        """Restart the backoff and the count of attempts."""
        self._delays = None
        self.attempts = 0

    def dialled(self) -> None:
        """Count a dial."""
        self.attempts += 1

    def opened(self, now: float) -> None:
        """Note that a connection opened at ``now`` (a monotonic time in seconds)."""
        self._opened_at = now
        if self.reset_after is None:
            self.reset()

    def closed(self, now: float) -> None:
        """Note that the open connection ended at ``now``; restart the backoff if it lasted."""
        opened_at, self._opened_at = self._opened_at, None
        if (
            opened_at is not None
            and self.reset_after is not None
            and now - opened_at >= self.reset_after
        ):
            self.reset()

    def next_delay(self, exc: Exception) -> float:
        """Decide what follows ``exc``: return the delay before the next dial, or raise.

        Raises:
            Exception: ``exc`` itself, when the classifier says so, when
                ``max_attempts`` dials failed in a row, or when the delay
                generator ran out.
        """
        least = self.classify(exc)
        if least is None:
            raise exc
        if self.max_attempts is not None and self.attempts >= self.max_attempts:
            raise exc
        delays = self._delays
        if delays is None:
            delays = self._delays = iter(self.backoff)
        delay = next(delays, None)
        if delay is None:
            raise exc
        return max(delay, least)


def retry_after(exc: InvalidStatus) -> float | None:
    """Read the ``Retry-After`` header of a refused handshake, in seconds from now.

    Accepts both forms (RFC 9110, section 10.2.3): a number of seconds, or an
    HTTP date. Returns ``None`` when the header is missing or malformed.
    """
    headers = getattr(exc.response, "headers", None)
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always in GMT; anything else is malformed
    return max(0.0, when.timestamp() - time.time())


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
