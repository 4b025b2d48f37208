"""A real ``redis-server`` for tests, from :mod:`openline.bench.redis_server`.

Every test that needs Redis starts its own server through :class:`RedisServer`
(the ``redis_server`` fixtures in ``tests/conftest.py``), never the machine's
service on 6379, so that tests are isolated and run on any machine that has
the binary. Without the binary the fixtures skip, which ``CI=true`` turns into
a failure. The class lives in the package because the cluster benchmark
(``openline bench --cluster``) starts one too.
"""

from __future__ import annotations

from openline.bench.redis_server import RedisServer, free_port, redis_server_binary

__all__ = ["RedisServer", "free_port", "redis_server_binary"]
