"""What the ``openline`` commands share: exit statuses, argument types, environment names.

It sits below every command module of the package (the package's ``__init__``
imports the commands, so what they share can't live there without a cycle);
``openline.cli`` re-exports the exit statuses and :class:`UsageError`.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.parse
from collections.abc import Coroutine
from typing import Any

__all__ = [
    "API_KEY_ENV",
    "EXIT_CLOSED_WITH_ERROR",
    "EXIT_CONNECT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HUB_FLAGS",
    "METRICS_KEY_ENV",
    "MIN_SECRET",
    "SECRET_ENV",
    "UsageError",
    "count_or_off",
    "cpu",
    "drain_seconds",
    "header",
    "interval_range",
    "non_negative_float",
    "origin",
    "port",
    "positive_float",
    "positive_int",
    "rate",
    "redacted",
    "run_loop",
    "seconds_or_off",
    "size",
]


# Exit statuses (the table is in the package's docstring).
#: Success.
EXIT_OK = 0
#: ``openline connect`` could not connect (refused, handshake failed, timed out).
EXIT_CONNECT_FAILED = 1
#: A bad flag or argument: one line on stderr says which.
EXIT_USAGE = 2
#: The connection closed with an error code.
EXIT_CLOSED_WITH_ERROR = 3
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A flag's value is unusable; printed as one line."""


#: Flags of the hub only; they stay unset unless given, so that --echo can refuse them.
HUB_FLAGS = {
    "history_size": "--history-size",
    "history_ttl": "--history-ttl",
    "max_message": "--max-message",
    "max_subscriptions": "--max-subscriptions",
    "rate_limit": "--rate-limit",
    "max_buffer": "--max-buffer",
    "no_ticker": "--no-ticker",
    "ticker_interval": "--ticker-interval",
    "redis": "--redis",
    "data": "--data",
    "presence_ttl": "--presence-ttl",
    "redis_timeout": "--redis-timeout",
    "secret": "--secret",
    "jwt_secret": "--jwt-secret",
    "jwt_public_key": "--jwt-public-key",
    "api_key": "--api-key",
}


#: The environment variable that ``--secret`` overrides.
SECRET_ENV = "OPENLINE_SECRET"
#: The environment variable that ``--metrics-key`` overrides.
METRICS_KEY_ENV = "OPENLINE_METRICS_KEY"
#: The environment variable that ``--api-key`` overrides.
API_KEY_ENV = "OPENLINE_API_KEY"
#: Shortest ``--secret``, in bytes (UTF-8).
MIN_SECRET = 16


def port(text: str) -> int:
    """An argument type: a TCP port, 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {value}")
    return value


def seconds_or_off(text: str) -> float | None:
    """An argument type: seconds (a positive number), or ``0`` / ``off`` / ``none`` (``None``)."""
    if text.lower() in ("0", "off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'off', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def size(text: str) -> int | None:
    """Parse ``1048576``, ``64KiB``, ``16MiB`` or ``off``."""
    if text.lower() in ("off", "none"):
        return None
    units = {"kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2, "gib": 1024**3, "b": 1}
    lowered = text.lower().strip()
    for suffix, factor in units.items():
        if lowered.endswith(suffix) and lowered[: -len(suffix)].strip().isdigit():
            return int(lowered[: -len(suffix)]) * factor
    if lowered.isdigit():
        return int(lowered)
    raise argparse.ArgumentTypeError(
        f"expected a size like 1048576, 64KiB, 16MiB or 'off', got {text!r}"
    )


def positive_int(text: str) -> int:
    """An argument type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argument type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argument type: a number, 0 or above."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return positive_float(text)


def drain_seconds(text: str) -> float:
    """Seconds of a drain phase: a finite number from 0 to 3600."""
    value = non_negative_float(text)
    if not value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 3600, got {text}")
    return value


def cpu(text: str) -> int:
    """An argument type: the number of a CPU this machine has."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a CPU number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a CPU number, got {value}")
    return value


def origin(text: str) -> str:
    """Check an ``--origin`` value: ``scheme://host[:port]`` (one final ``/`` allowed) or ``*``."""
    from ..web.origin import ANY_ORIGIN, parse_origin

    if text == ANY_ORIGIN:
        return text
    # A URL copied from the address bar ends with "/"; an Origin header never does.
    value = text[:-1] if text.endswith("/") and text.count("/") == 3 else text
    try:
        parse_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or '*' for any origin)") from None
    return value


def header(text: str) -> tuple[str, str]:
    """An argument type: an HTTP header as ``Name: value``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def count_or_off(text: str) -> int | None:
    """An argument type: a whole number, or ``off`` / ``none`` for no limit (``None``)."""
    if text.lower() in ("off", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or 'off', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'off', got {value}")
    return value


def rate(text: str) -> tuple[int, float] | None:
    """Parse ``100/1`` (messages per seconds) or ``off``."""
    if text.lower() in ("off", "none"):
        return None
    count, sep, seconds = text.partition("/")
    try:
        value = (int(count), float(seconds) if sep else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MESSAGES/SECONDS like 100/1, or 'off', got {text!r}"
        ) from None
    if value[0] < 1 or not value[1] > 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers like 100/1, got {text!r}")
    return value


def interval_range(text: str) -> tuple[float, float]:
    """Parse ``0.5`` (regular) or ``0.25-1`` (random within the range), in seconds."""
    low_text, sep, high_text = text.partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if sep else low
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SECONDS or MIN-MAX like 0.25-1, got {text!r}"
        ) from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX seconds, got {text!r}")
    return low, high


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def redacted(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))
