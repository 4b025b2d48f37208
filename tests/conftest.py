"""Suite-wide rules.

In CI (``CI=true``) nothing may skip: a missing peer, browser, Node package or
compiled accelerator is a failure there, while a developer's machine may skip
such tests with a reason.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from hypothesis import settings

from .redis_server import RedisServer, redis_server_binary

IN_CI = os.environ.get("CI", "").lower() == "true"

# Hypothesis fails an example that takes over 200 ms: a timed assertion, which a busy
# 2-core machine or `make test` running under coverage can trip with nothing wrong.
settings.register_profile("openline", deadline=None)
settings.load_profile("openline")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is a failure here: {reason}"


@pytest.fixture(scope="session")
def redis_server_session() -> Generator[RedisServer, None, None]:
    """One ``redis-server`` for the whole session, for tests that isolate themselves by prefix."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server() -> Generator[RedisServer, None, None]:
    """A ``redis-server`` of the test's own, which the test may stop, kill or freeze."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisServer() as server:
        yield server
