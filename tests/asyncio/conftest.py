"""Run every asyncio test on the standard event loop and, when installed, on uvloop.

Transports differ between the two (write buffering, half-close, pausing), so the
adapter is tested on both. The loop-factory hook exists from pytest-asyncio 1.4;
with an older version the tests run on the standard loop only.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable, Mapping

import pytest

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _loop_factories() -> dict[str, LoopFactory]:
    factories: dict[str, LoopFactory] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dev dependency
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


_PYTEST_ASYNCIO = tuple(
    int(part) for part in importlib.metadata.version("pytest-asyncio").split(".")[:2]
)

if _PYTEST_ASYNCIO >= (1, 4):

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, LoopFactory]:
        return _loop_factories()
