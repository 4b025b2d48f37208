"""Pure-Python masking (RFC 6455, section 5.3), the fallback for ``_speedups``.

XOR through big integers: one multiplication of the key and one XOR over the
whole payload, so the work happens in C inside ``int`` even without the
compiled accelerator.
"""

from __future__ import annotations

__all__ = ["apply_mask"]


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated; applying it twice is the identity.

    Raises:
        ValueError: ``mask`` is not exactly 4 bytes long.
    """
    if len(mask) != 4:
        raise ValueError(f"mask must be 4 bytes, got {len(mask)} bytes")
    size = len(data)
    if size == 0:
        return b""
    whole, rest = divmod(size, 4)
    key = mask * whole + mask[:rest]
    value = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return value.to_bytes(size, "big")
