"""What every engine's windows mean, and how their arguments are checked."""

from __future__ import annotations

import enum
import math

__all__ = ["DEFAULT_HISTORY_SIZE", "DEFAULT_HISTORY_TTL", "Default", "check_size", "check_ttl"]

#: Messages kept per channel.
DEFAULT_HISTORY_SIZE = 1000
#: Seconds a message stays in history.
DEFAULT_HISTORY_TTL = 300.0


class Default(enum.Enum):
    """The default of arguments whose default depends on others."""

    TOKEN = 0


def check_size(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be an int >= 0 or None, got {value!r}")
    return value


def check_ttl(name: str, value: float | None) -> float | None:
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
