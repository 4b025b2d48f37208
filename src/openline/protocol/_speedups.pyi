"""Compiled accelerator for the WebSocket frame path (RFC 6455, section 5); see ``_speedups.c``."""

from __future__ import annotations

from typing import Any

__all__ = ["apply_mask", "encode_frame", "parse_frames"]

# The same signature as ``_mask.apply_mask``, so the guarded import in ``mask.py``
# type-checks whichever module it picks.
def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes: ...

# The same signature as ``frames._encode_frame``, its pure-Python twin.
def encode_frame(
    head: int, data: bytes | bytearray | memoryview, mask_key: bytes | None
) -> bytes: ...
def parse_frames(
    buffer: bytes | bytearray | memoryview,
    pos: int,
    is_client: bool,
    max_size: int | None,
    events: list[Any],
    text_type: type[Any],
    binary_type: type[Any],
) -> int: ...
