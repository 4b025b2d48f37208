"""What every harness in ``fuzz/`` shares: run under atheris, or a seeded fallback.

A harness module defines ``check(data: bytes) -> None``, which raises only when
the code under test breaks its documented contract, and calls :func:`main`.

* With atheris importable, :func:`main` instruments the loaded ``openline``
  modules (coverage feedback for pure Python) and hands ``sys.argv`` to
  libFuzzer, so every libFuzzer flag works (``-max_total_time=20``,
  ``-artifact_prefix=fuzz/crashes/``, corpus folders).
* Without atheris, it runs a bounded, seeded loop: the committed seeds, then
  mutations of them and random bytes. That is the harness's own test, not
  fuzzing; with ``CI=true`` a missing atheris is an error instead.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"

#: Inputs the fallback loop tries unless ``-runs=N`` says otherwise.
FALLBACK_RUNS = 20_000

Check = Callable[[bytes], None]


def seeds(name: str) -> list[bytes]:
    """Return the committed seed inputs of harness ``name``, sorted by file name."""
    folder = CORPUS / name
    if not folder.is_dir():
        return []
    return [path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """Return a small random change of ``data``: flips, cuts, inserts, splices."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        if choice == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice == 2 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif choice == 3:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif choice == 4 and pool:
            other = rng.choice(pool)
            buf += other[rng.randrange(len(other) + 1) :]
        elif buf:
            start = rng.randrange(len(buf))
            del buf[start : start + rng.randint(1, 16)]
    return bytes(buf)


def fallback_inputs(name: str, runs: int, seed: int = 0) -> Iterator[bytes]:
    """Yield the seeds, then ``runs`` mutated or random inputs, reproducibly."""
    pool = seeds(name)
    yield from pool
    rng = random.Random(seed)
    for _ in range(runs):
        if pool and rng.random() < 0.8:
            yield mutate(rng, rng.choice(pool), pool)
        else:
            yield rng.randbytes(rng.randrange(0, 512))


def instrumented(module: str) -> contextlib.AbstractContextManager[object]:
    """Import ``openline`` under atheris's instrumentation when fuzzing.

    Use as ``with instrumented(__name__): from openline... import ...`` so that
    libFuzzer sees which branches of the pure-Python code an input reaches.
    Only a harness run as a script (``module == "__main__"``) with atheris
    installed is instrumented; imported by the tests, it runs plain code.
    """
    if module != "__main__":
        return contextlib.nullcontext()
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["openline"])  # type: ignore[no-any-return]


def main(name: str, check: Check) -> None:
    """Fuzz ``check`` with atheris, or run the seeded fallback without it.

    Args:
        name: The harness's name: its seeds live in ``fuzz/corpus/<name>/``.
        check: The function under test.
    """
    try:
        import atheris  # type: ignore[import-not-found]  # dev extra, x86-64 Linux only
    except ImportError:
        if os.environ.get("CI") == "true":
            sys.exit(f"fuzz_{name}: atheris is missing; CI installs it with openline[dev]")
        _run_fallback(name, check, sys.argv[1:])
        return
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def _run_fallback(name: str, check: Check, args: list[str]) -> None:
    runs = FALLBACK_RUNS
    for arg in args:
        if arg.startswith("-runs="):
            runs = int(arg.split("=", 1)[1])
    seed = int(os.environ.get("FUZZ_SEED", "0"))
    print(f"fuzz_{name}: atheris isn't installed: {runs} seeded inputs (seed {seed}) instead")
    started = time.perf_counter()
    count = 0
    for data in fallback_inputs(name, runs, seed):
        try:
            check(data)
        except BaseException:
            print(f"fuzz_{name}: failing input: {data!r}", file=sys.stderr)
            raise
        count += 1
    elapsed = time.perf_counter() - started
    print(f"fuzz_{name}: {count} inputs in {elapsed:.1f} s, contract held")
