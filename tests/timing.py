"""The one time scale of the test suite.

Every timeout in the tests is a multiple of :data:`MS`, so that a slow or busy
machine (or CI) can stretch them all with ``OPENLINE_TEST_TIMEOUT_FACTOR``.
Timeouts here bound how long a test may wait for an event: they are never what
a test asserts.
"""

from __future__ import annotations

import os

__all__ = ["MS", "SCALE"]

#: How much to stretch every timeout; 1 unless ``OPENLINE_TEST_TIMEOUT_FACTOR`` says more.
SCALE = float(os.environ.get("OPENLINE_TEST_TIMEOUT_FACTOR", "1"))

#: One millisecond, scaled by :data:`SCALE`.
MS = 0.001 * SCALE
