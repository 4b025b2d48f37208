"""``python bench/run.py [options]`` is ``openline bench [options]``, from a checkout.

The benchmark lives in ``src/openline/bench/`` so that ``openline bench``
works from an installed package too; this script only saves an install step
(without one, openline's compiled masking isn't built, and the report says so).
"""

from __future__ import annotations

import pathlib
import sys

try:
    from openline.cli import main
except ImportError:  # a fresh clone, not installed: use the sources
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "src"))
    from openline.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
