"""Type aliases shared across openline's layers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

__all__ = ["BytesLike", "Data", "DataLike", "ErrorCode", "LoggerLike", "Rid"]

#: Binary data the library accepts without copying first.
BytesLike = bytes | bytearray | memoryview

#: A received message: ``str`` for text, ``bytes`` for binary.
Data = str | bytes

#: A message the library accepts for sending: text or binary.
DataLike = str | bytes | bytearray | memoryview

#: A logger, or an adapter that adds context to every record.
if TYPE_CHECKING:
    LoggerLike = logging.Logger | logging.LoggerAdapter[Any]
else:  # LoggerAdapter is subscriptable at run time only from Python 3.11.
    LoggerLike = logging.Logger | logging.LoggerAdapter

#: The error codes of ``error`` replies; docs/protocol.md explains each.
ErrorCode = Literal[
    "bad_request",
    "unknown_type",
    "forbidden",
    "not_subscribed",
    "already_subscribed",
    "too_large",
    "rate_limited",
    "limit_exceeded",
    "unauthorized",
    "unavailable",
    "internal",
]

#: A request id: echoed in the reply so that a client can match it.
Rid = str | int | None
