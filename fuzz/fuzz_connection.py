"""Fuzz the core: arbitrary bytes into a Connection of either side.

The only exceptions allowed out of the core for peer input are none at all:
violations become close frames and ``protocol_error``. Run with atheris
(``pip install atheris``; ``make fuzz``); without it, this falls back to a
bounded loop of random inputs so that the harness itself stays tested.
"""

from __future__ import annotations

import os
import random
import sys

from openline.protocol.connection import Connection, Side

ALLOWED_CLOSE_CODES = {1002, 1006, 1007, 1009}


def check(data: bytes) -> None:
    """Feed ``data`` to a server and a client; fail on anything undocumented."""
    if not data:
        return
    side = Side.SERVER if data[0] & 1 else Side.CLIENT
    step = (data[0] >> 1) + 1
    conn = Connection(side, max_size=4096)
    for i in range(1, len(data), step):
        conn.receive_data(data[i : i + step])
    conn.receive_eof()
    conn.events_received()
    conn.data_to_send()
    error = conn.protocol_error
    if error is not None and error.code not in ALLOWED_CLOSE_CODES:
        raise AssertionError(f"undocumented close code {error.code}: {error}")


def _fallback(runs: int) -> None:
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "0")))
    for _ in range(runs):
        check(rng.randbytes(rng.randrange(0, 512)))
    print(f"{runs} random inputs, no undocumented error")


def main() -> None:
    runs = 200_000
    for arg in sys.argv[1:]:
        if arg.startswith("-runs="):
            runs = int(arg.split("=", 1)[1])
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        _fallback(runs)
        return
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
