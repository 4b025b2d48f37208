"""Switch the frame path of the loaded core between compiled and pure Python.

For tests and fuzzing: the same test classes and fuzz inputs run on both paths
(``tests/protocol/conftest.py``, ``fuzz/fuzz_connection.py``). Applications choose
at import with ``OPENLINE_NO_SPEEDUPS`` (:mod:`openline.protocol.mask`).

It sits above the modules it switches (:mod:`.mask`, :mod:`.frames`,
:mod:`.connection`), which import nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _mask, connection, frames, mask
from .mask import ParseFrames

__all__ = ["select"]


def select(compiled: bool) -> bool:
    """Switch the frame path of the imported protocol modules; for tests and fuzzing.

    ``select(False)`` makes masking, serializing and parsing pure Python, as
    ``OPENLINE_NO_SPEEDUPS=1`` does at import; ``select(True)`` brings back the
    compiled path. Connections made before the switch follow it too.

    Returns:
        Whether the compiled path is now in use: ``False`` after
        ``select(True)`` when the extension is not built.
    """
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
    vars(mask).update(
        SPEEDUPS=compiled, c_encode_frame=encode, parse_frames=parse, apply_mask=mask_fn
    )
    encoder = frames._encode_frame if encode is None else encode
    vars(frames).update(apply_mask=mask_fn, encode_frame=encoder)
    vars(connection).update(apply_mask=mask_fn, encode_frame=encoder, parse_frames=parse)
    return compiled
