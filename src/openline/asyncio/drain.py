"""Draining a server: when each connection closes, and the retry hint it carries.

:meth:`openline.asyncio.server.Server.drain` stops accepting, then closes the
open connections one by one over a window of ``seconds`` rather than all at
once, so that the clients of a node that restarts come back spread out instead
of as one wave. This module holds the decisions, free of I/O:

* :func:`drain_schedule`: when each of ``n`` connections closes. The window is
  cut into ``n`` equal slots and each connection closes at a random moment of
  its own slot: evenly spread, jittered, and done within the window.
* the **retry hint**, a close reason of the form ``retry-after=1.25``: the
  least number of seconds the client should wait before it dials again
  (docs/protocol.md, "The retry hint"). Each connection draws its own hint
  from a range, so that even clients closed in the same instant spread their
  redials. :func:`format_retry_hint` writes it and :func:`parse_retry_hint`
  reads it; both clients honour it after the close codes in
  :data:`RETRY_HINT_CLOSE_CODES`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re

__all__ = [
    "DEFAULT_DRAIN_SECONDS",
    "DEFAULT_RETRY_HINT",
    "MAX_RETRY_HINT",
    "RETRY_HINT_CLOSE_CODES",
    "DrainReport",
    "check_retry_hint",
    "drain_schedule",
    "format_retry_hint",
    "parse_retry_hint",
]

#: Seconds over which a drain spreads the closes, by default.
DEFAULT_DRAIN_SECONDS = 10.0
#: ``(low, high)``: each drained connection's hint is drawn uniformly within it, in seconds.
DEFAULT_RETRY_HINT = (0.5, 2.0)
#: Largest hint written or honoured, in seconds.
MAX_RETRY_HINT = 300.0
#: Close codes whose reason may carry a retry hint: going away, service
#: restart, try again later.
RETRY_HINT_CLOSE_CODES = frozenset({1001, 1012, 1013})

_PREFIX = "retry-after="
# A decimal number of seconds, then the end of the reason or a separator and free text.
_HINT = re.compile(r"retry-after=(\d{1,6}(?:\.\d{1,6})?)(?:[ ;,].*)?", re.DOTALL)


@dataclasses.dataclass(frozen=True, slots=True)
class DrainReport:
    """What a drain did.

    Attributes:
        connections: Connections it closed with the drain's code.
        seconds: Seconds from its start until every connection and handler was gone.
    """

    connections: int
    seconds: float


def drain_schedule(count: int, seconds: float, rng: random.Random) -> list[float]:
    """When each of ``count`` connections closes, in seconds from the drain's start.

    Slot ``i`` of ``count`` equal slots of the window gets one close at a
    uniformly random moment within it: the result is sorted, starts within
    the first slot and ends before ``seconds``.

    Raises:
        ValueError: ``count`` is negative or ``seconds`` isn't a finite number >= 0.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    check_seconds("seconds", seconds)
    if count == 0:
        return []
    slot = seconds / count
    return [(index + rng.random()) * slot for index in range(count)]


def check_seconds(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number of seconds >= 0.

    Raises:
        ValueError: It isn't; the message names ``name``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def check_retry_hint(value: tuple[float, float] | None) -> tuple[float, float] | None:
    """Validate a ``(low, high)`` hint range; ``None`` (no hint) passes.

    Raises:
        ValueError: The bounds aren't numbers with ``0 <= low <= high <= MAX_RETRY_HINT``.
    """
    if value is None:
        return None
    try:
        low, high = (check_seconds("retry_after", bound) for bound in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"retry_after must be (low, high) seconds with 0 <= low <= high <= "
            f"{MAX_RETRY_HINT:g}, or None; got {value!r}"
        ) from None
    if not low <= high <= MAX_RETRY_HINT:
        raise ValueError(
            f"retry_after must be (low, high) seconds with 0 <= low <= high <= "
            f"{MAX_RETRY_HINT:g}, or None; got {value!r}"
        )
    return low, high


def format_retry_hint(seconds: float) -> str:
    """The close reason that asks a client to wait ``seconds`` before redialling.

    Raises:
        ValueError: ``seconds`` isn't within ``[0, MAX_RETRY_HINT]``.
    """
    check_seconds("seconds", seconds)
    if seconds > MAX_RETRY_HINT:
        raise ValueError(f"a retry hint of {seconds} s exceeds {MAX_RETRY_HINT:g} s")
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return _PREFIX + text


def parse_retry_hint(reason: str) -> float | None:
    """Read the retry hint of a close reason, in seconds; ``None`` if it has none.

    A hint beyond :data:`MAX_RETRY_HINT` is cut down to it, so a peer can't
    park a client for longer.
    """
    if not reason.startswith(_PREFIX):
        return None
    match = _HINT.fullmatch(reason)
    if match is None:
        return None
    return min(float(match.group(1)), MAX_RETRY_HINT)
