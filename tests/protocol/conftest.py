"""The two frame paths, compiled and pure Python, for every test of the core.

Test modules of the frame path say ``pytestmark = pytest.mark.usefixtures("frame_path")``
and run once with each. Without a built extension the compiled half skips, which the
suite's conftest turns into a failure in CI.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openline.protocol import mask
from openline.protocol.frame_path import select as select_frame_path

MISSING_SPEEDUPS = (
    "the C extension openline.protocol._speedups is not built "
    "(run: python setup.py build_ext --inplace)"
)


# Module scope: hypothesis refuses function-scoped fixtures in @given tests.
@pytest.fixture(scope="module", params=["compiled", "python"])
def frame_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run with the compiled frame path, then with the pure-Python one."""
    before = mask.SPEEDUPS
    compiled = request.param == "compiled"
    if select_frame_path(compiled) != compiled:
        select_frame_path(before)
        pytest.skip(MISSING_SPEEDUPS)
    try:
        yield request.param
    finally:
        select_frame_path(before)
