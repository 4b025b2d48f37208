"""The hub's defaults and argument checks (``docs/limits.md`` has the table)."""

from __future__ import annotations

from ..asyncio.config import check_count, check_timeout

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_SEND_BUFFER",
    "DEFAULT_SLOW_CONSUMER_TIMEOUT",
    "check_budget",
    "check_positive",
    "check_positive_int",
]

#: Seconds between keepalive pings: a vanished client leaves presence within
#: ``ping_interval + ping_timeout``, so the hub's defaults are shorter than the
#: transport's.
DEFAULT_PING_INTERVAL = 10.0
#: Seconds to wait for the pong.
DEFAULT_PING_TIMEOUT = 10.0
#: Largest client message, in bytes.
DEFAULT_MAX_MESSAGE_SIZE = 65536
#: High-water mark of what a connection holds unsent (transport buffer and
#: kernel send queue), in bytes.
DEFAULT_MAX_BUFFER = 2**20
#: ``SO_SNDBUF`` requested per hub connection, in bytes (Linux grants twice
#: this, bookkeeping included: about 96 KB of payload).
DEFAULT_SEND_BUFFER = 65536
#: Seconds a subscriber whose kernel send queue is full may go without its TCP
#: acknowledging a byte.
DEFAULT_SLOW_CONSUMER_TIMEOUT = 0.25


def check_positive(name: str, value: float) -> float:
    """Check a duration that can't be disabled.

    Raises:
        ValueError: ``value`` isn't a finite number of seconds > 0.
    """
    checked = check_timeout(name, value)
    if checked is None:
        raise ValueError(f"{name} must be a number of seconds > 0, got None")
    return checked


def check_positive_int(name: str, value: int) -> int:
    """Check a count that can't be disabled.

    Raises:
        ValueError: ``value`` isn't an int >= 1.
    """
    checked = check_count(name, value, minimum=1)
    if checked is None:
        raise ValueError(f"{name} must be an int >= 1, got None")
    return checked


def check_budget(name: str, value: tuple[int, float] | None) -> tuple[int, float] | None:
    """Check a ``(count, seconds)`` budget, or ``None``.

    Raises:
        ValueError: It isn't a pair of an int >= 1 and a number of seconds > 0.
    """
    if value is None:
        return None
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"{name} must be a (count, seconds) tuple or None, got {value!r}")
    count = check_positive_int(f"{name}[0]", value[0])
    return count, check_positive(f"{name}[1]", value[1])
