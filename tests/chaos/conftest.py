"""Run the chaos tests on the standard event loop and, when installed, on uvloop too.

Transports differ between the two (half-close, resets, pausing), and the proxy
relies on all three.
"""

from __future__ import annotations

import pytest

from tests.asyncio.conftest import _PYTEST_ASYNCIO, LoopFactory, _loop_factories


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: the long chaos runs (deselect with -m 'not chaos')")


if _PYTEST_ASYNCIO >= (1, 4):
    from collections.abc import Mapping

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, LoopFactory]:
        return _loop_factories()
