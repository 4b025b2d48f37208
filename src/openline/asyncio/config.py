"""Validated settings shared by every connection of one server or one client.

A server holds one :class:`Settings` object and hands it to each connection it
accepts, so that an idle connection stores one pointer instead of a copy of
every limit. The ``check_*`` helpers raise ``ValueError`` naming the argument,
as every public entry point must (see ``docs/limits.md``).
"""

from __future__ import annotations

import logging
import math

from ..typing import LoggerLike

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_WRITE_LIMIT",
    "Settings",
    "check_count",
    "check_timeout",
    "check_watermarks",
]

#: Largest incoming message, in bytes, after decompression.
DEFAULT_MAX_SIZE = 2**20
#: Incoming messages buffered before reading from the network pauses.
DEFAULT_MAX_QUEUE = 16
#: High and low water marks of the outgoing buffer, in bytes.
DEFAULT_WRITE_LIMIT = (65536, 16384)
#: Seconds between keepalive pings: below the 60 s idle cut-off of common proxies.
DEFAULT_PING_INTERVAL = 20.0
#: Seconds to wait for the pong that answers a keepalive ping.
DEFAULT_PING_TIMEOUT = 20.0
#: Seconds to complete the opening handshake.
DEFAULT_OPEN_TIMEOUT = 10.0
#: Seconds to complete the closing handshake before aborting TCP.
DEFAULT_CLOSE_TIMEOUT = 10.0


def check_count(name: str, value: int | None, *, minimum: int = 0) -> int | None:
    """Check a size or count limit: an ``int`` of at least ``minimum``, or ``None``.

    Raises:
        ValueError: ``value`` is not an int (``bool`` excluded) or is below ``minimum``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or None, got {value!r}")
    return value


def check_timeout(name: str, value: float | None) -> float | None:
    """Check a duration in seconds: a finite positive number, or ``None``.

    Raises:
        ValueError: ``value`` is not a finite number greater than 0.
    """
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a number of seconds > 0 or None, got {value!r}")
    return float(value)


def check_watermarks(
    name: str, value: int | tuple[int, int] | None, *, minimum: int = 0
) -> tuple[int, int] | None:
    """Check a ``high`` or ``(high, low)`` limit; ``low`` defaults to ``high // 4``.

    Raises:
        ValueError: A mark is not an int, ``high`` is below ``minimum``, ``low``
            is negative, or ``low`` exceeds ``high``.
    """
    if value is None:
        return None
    if not isinstance(value, tuple):
        high = _check_mark(name, "high", value, minimum)
        return high, high // 4
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a (high, low) tuple, got {value!r}")
    high = _check_mark(name, "high", value[0], minimum)
    low = _check_mark(name, "low", value[1], 0)
    if low > high:
        raise ValueError(f"{name}: low water mark {low} exceeds high water mark {high}")
    return high, low


def _check_mark(name: str, which: str, mark: object, minimum: int) -> int:
    if isinstance(mark, bool) or not isinstance(mark, int) or mark < minimum:
        raise ValueError(f"{name}: {which} water mark must be an int >= {minimum}, got {mark!r}")
    return mark


class Settings:
    """The per-connection limits and timeouts, validated once.

    Args:
        max_size: Largest incoming message in bytes; ``None`` disables the limit.
        max_queue: Incoming messages buffered before reading pauses, as ``high``
            or ``(high, low)``; reading resumes at ``low`` (``high // 4`` by
            default). ``None`` never pauses.
        write_limit: High and low water marks of the transport's write buffer,
            in bytes, as ``high`` or ``(high, low)``.
        ping_interval: Seconds between keepalive pings; ``None`` disables keepalive.
        ping_timeout: Seconds to wait for a keepalive pong before failing the
            connection with 1011; ``None`` waits forever.
        close_timeout: Seconds to wait for the closing handshake before aborting
            TCP; ``None`` waits forever.
        logger: Where to log; ``default_logger`` when ``None``.
        default_logger: The name of the logger used when ``logger`` is ``None``.

    Raises:
        ValueError: An argument is out of range; the message names it.
    """

    __slots__ = (
        "close_timeout",
        "debug",
        "logger",
        "max_queue",
        "max_size",
        "ping_interval",
        "ping_timeout",
        "queue_low",
        "write_high",
        "write_low",
    )

    def __init__(
        self,
        *,
        max_size: int | None,
        max_queue: int | tuple[int, int] | None,
        write_limit: int | tuple[int, int],
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float | None,
        logger: LoggerLike | None,
        default_logger: str,
    ) -> None:
        self.max_size = check_count("max_size", max_size)
        queue = check_watermarks("max_queue", max_queue, minimum=1)
        self.max_queue: int | None = None if queue is None else queue[0]
        self.queue_low = 0 if queue is None else queue[1]
        write = check_watermarks("write_limit", write_limit)
        if write is None:
            raise ValueError("write_limit must be an int or a (high, low) tuple, got None")
        self.write_high, self.write_low = write
        self.ping_interval = check_timeout("ping_interval", ping_interval)
        self.ping_timeout = check_timeout("ping_timeout", ping_timeout)
        self.close_timeout = check_timeout("close_timeout", close_timeout)
        self.logger: LoggerLike = (
            logger if logger is not None else logging.getLogger(default_logger)
        )
        # Checked once: formatting debug messages on the hot path would cost more
        # than the work they describe.
        self.debug = self.logger.isEnabledFor(logging.DEBUG)
