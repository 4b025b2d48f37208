"""What every engine's windows mean, and how their arguments are checked."""

from __future__ import annotations

import enum
from typing import Literal

from ...asyncio.config import check_count, check_timeout

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL",
    "Default",
    "check_windows",
]

#: Messages kept per channel.
DEFAULT_HISTORY_SIZE = 1000
#: Seconds a message stays in history.
DEFAULT_HISTORY_TTL = 300.0


class Default(enum.Enum):
    """The default of arguments whose default depends on others."""

    TOKEN = 0


def check_windows(
    history_size: int | None,
    history_ttl: float | None,
    id_size: int | Literal[Default.TOKEN] | None,
    id_ttl: float | Literal[Default.TOKEN] | None,
) -> tuple[int | None, float | None, int | None, float | None]:
    """Check an engine's history and idempotency windows; fill in the defaults.

    The idempotency table follows the history by default: ``id_size`` is
    ``history_size`` (or :data:`DEFAULT_HISTORY_SIZE` when that is ``None``),
    ``id_ttl`` is ``history_ttl``.

    Returns:
        ``(history_size, history_ttl, id_size, id_ttl)``, TTLs as floats.

    Raises:
        ValueError: A value is out of range, or both bounds of one window are ``None``.
    """
    size = check_count("history_size", history_size)
    ttl = check_timeout("history_ttl", history_ttl)
    if size is None and ttl is None:
        raise ValueError("history_size and history_ttl can't both be None: history would grow")
    if id_size is Default.TOKEN:
        id_size = history_size or DEFAULT_HISTORY_SIZE
    if id_ttl is Default.TOKEN:
        id_ttl = history_ttl
    ids, ids_ttl = check_count("id_size", id_size), check_timeout("id_ttl", id_ttl)
    if ids is None and ids_ttl is None:
        raise ValueError("id_size and id_ttl can't both be None: the table would grow")
    return size, ttl, ids, ids_ttl
