"""Compiled accelerator for WebSocket masking (RFC 6455, section 5.3); see ``_speedups.c``."""

from __future__ import annotations

__all__ = ["apply_mask"]

# The same signature as ``_mask.apply_mask``, so the guarded import in ``mask.py``
# type-checks whichever module it picks.
def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes: ...
