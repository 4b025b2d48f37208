"""The one place that chooses the masking implementation.

The compiled ``_speedups`` extension is used when it was built; otherwise the
pure-Python ``_mask`` fallback. Both are tested by the same test class.
"""

from __future__ import annotations

__all__ = ["SPEEDUPS", "apply_mask"]

try:
    from ._speedups import apply_mask
except ImportError:  # the optional extension was not built
    from ._mask import apply_mask

    #: Whether the compiled accelerator ``_speedups`` is in use.
    SPEEDUPS = False
else:
    SPEEDUPS = True
