"""The one place that chooses between the compiled frame path and pure Python.

The compiled ``_speedups`` extension is used when it was built, unless the
environment variable ``OPENLINE_NO_SPEEDUPS`` is set to anything but ``""`` or
``"0"`` when openline is imported; then the pure-Python code runs everywhere:
``_mask`` for masking, ``frames._encode_frame`` for serializing and the
parser in ``connection.py`` for every frame. Both are tested by the same test
classes (``tests/protocol/conftest.py`` flips between them).

``parse_frames`` is ``None`` without the extension: the compiled parser only
speeds up the common case, and the Python parser is complete on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["ENV_VAR", "SPEEDUPS", "apply_mask", "c_encode_frame", "parse_frames"]

#: Set to a non-empty value other than "0" to force the pure-Python frame path.
ENV_VAR = "OPENLINE_NO_SPEEDUPS"

ParseFrames = Callable[
    [bytes | bytearray | memoryview, int, bool, "int | None", list[Any], type[Any], type[Any]],
    int,
]

#: The compiled parser of complete, unfragmented data frames, or ``None`` (pure Python).
parse_frames: ParseFrames | None
#: The compiled ``encode_frame(head, data, mask_key)``, or ``None`` (pure Python).
c_encode_frame: Callable[[int, bytes | bytearray | memoryview, bytes | None], bytes] | None

if os.environ.get(ENV_VAR, "") not in ("", "0"):
    from ._mask import apply_mask

    #: Whether the compiled accelerator ``_speedups`` is in use.
    SPEEDUPS = False
    parse_frames = c_encode_frame = None
else:
    try:
        from ._speedups import apply_mask, parse_frames
        from ._speedups import encode_frame as c_encode_frame
    except ImportError:  # the optional extension was not built (or is an older build)
        from ._mask import apply_mask

        SPEEDUPS = False
        parse_frames = c_encode_frame = None
    else:
        SPEEDUPS = True
