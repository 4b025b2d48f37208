"""Fixtures shared by the hub tests: every engine, behind one factory.

``make_engine`` is parametrised by engine kind: each hub test runs once per
engine. A Redis engine adds ``"redis"`` to the params (with a fixture that
starts ``redis-server`` on a free port); ``fresh=True`` must then give an engine
whose store has lost everything, as a restart without persistence would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from openline.hub import MemoryEngine
from openline.hub.backends.base import Engine

EngineFactory = Callable[..., Engine]

ENGINES = ["memory"]


@pytest.fixture(params=ENGINES)
async def make_engine(request: pytest.FixtureRequest) -> AsyncIterator[EngineFactory]:
    """A factory of engines of one kind; each call is a new engine, as after a restart."""
    engines: list[Engine] = []

    def factory(**kwargs: Any) -> Engine:
        assert request.param == "memory"
        engine = MemoryEngine(**kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.close()


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    """An engine with the default windows."""
    return make_engine()
