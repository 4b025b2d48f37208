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

__all__ = ["ENV_VAR", "SPEEDUPS", "apply_mask", "c_encode_frame", "parse_frames", "select"]

#: Set to a non-empty value other than "0" to force the pure-Python frame path.
ENV_VAR = "OPENLINE_NO_SPEEDUPS"

ParseFrames = Callable[
    [bytes | bytearray | memoryview, int, bool, "int | None", list[Any], type[Any], type[Any]],
    int,
]

parse_frames: ParseFrames | None
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


def select(compiled: bool) -> bool:
    """Switch the frame path of the imported protocol modules; for tests and fuzzing.

    ``select(False)`` makes masking, serializing and parsing pure Python, as
    ``OPENLINE_NO_SPEEDUPS=1`` does at import; ``select(True)`` brings back the
    compiled path. Connections made before the switch follow it too.

    Returns:
        Whether the compiled path is now in use: ``False`` after
        ``select(True)`` when the extension is not built.
    """
    global SPEEDUPS, c_encode_frame, parse_frames
    from . import _mask, connection, frames

    mask_fn: Callable[[bytes | bytearray | memoryview, bytes], bytes] = _mask.apply_mask
    encode: Callable[[int, bytes | bytearray | memoryview, bytes | None], bytes] | None = None
    parse: ParseFrames | None = None
    if compiled:
        try:
            from . import _speedups
        except ImportError:
            compiled = False
        else:
            mask_fn, encode, parse = (
                _speedups.apply_mask,
                _speedups.encode_frame,
                _speedups.parse_frames,
            )
    SPEEDUPS, c_encode_frame, parse_frames = compiled, encode, parse
    globals()["apply_mask"] = mask_fn
    encoder = frames._encode_frame if encode is None else encode
    vars(frames).update(apply_mask=mask_fn, encode_frame=encoder)
    vars(connection).update(apply_mask=mask_fn, encode_frame=encoder, parse_frames=parse)
    return compiled
