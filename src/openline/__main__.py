"""``python -m openline``: the same as the ``openline`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
