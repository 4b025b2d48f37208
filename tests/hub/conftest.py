"""Fixtures shared by the hub tests: every engine, behind one factory.

``make_engine`` is parametrised by engine kind: each hub test runs once per
engine, ``memory``, ``sqlite`` and ``redis``. Each sqlite engine gets a fresh
database file in a directory of its own. The Redis engines talk to a real
``redis-server`` started for the session on a free port; each call of the
factory gets a key prefix of its own, so that it sees an empty store, as a
restart without persistence would (and so a new epoch).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from openline.hub import MemoryEngine
from openline.hub.backends.base import Engine

EngineFactory = Callable[..., Engine]

ENGINES = ["memory", "sqlite", "redis"]

_prefixes = itertools.count()


@pytest.fixture(params=ENGINES)
async def make_engine(request: pytest.FixtureRequest) -> AsyncIterator[EngineFactory]:
    """A factory of engines of one kind; each call is a new engine, as after a restart."""
    engines: list[Engine] = []
    url = ""
    tmp_path_factory = request.getfixturevalue("tmp_path_factory")
    if request.param == "redis":
        url = request.getfixturevalue("redis_server_session").url

    def factory(**kwargs: Any) -> Engine:
        engine: Engine
        if request.param == "memory":
            engine = MemoryEngine(**kwargs)
        elif request.param == "sqlite":
            from openline.hub.backends.sqlite import SqliteEngine

            path = tmp_path_factory.mktemp("sqlite") / "openline.db"
            engine = SqliteEngine(str(path), **kwargs)
        else:
            from openline.hub.backends.redis import RedisEngine

            prefix = f"t{os.getpid()}-{next(_prefixes)}"
            engine = RedisEngine(url, prefix=prefix, **kwargs)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.close()


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    """An engine with the default windows."""
    return make_engine()
