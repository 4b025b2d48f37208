"""The redial loop both reconnecting clients share (``asyncio/redial.py``), without sockets."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from openline.asyncio.backoff import Classifier, Schedule
from openline.asyncio.redial import Redialer


class Dialler:
    """Fails the first ``failures`` dials with ``OSError``, then returns numbered connections."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.dials = 0

    async def __call__(self) -> str:
        self.dials += 1
        if self.dials <= self.failures:
            raise OSError(f"refused {self.dials}")
        return f"connection {self.dials}"


def schedule(**kwargs: Any) -> Schedule:
    options: dict[str, Any] = dict(
        backoff=itertools.repeat(0.0), classify=Classifier(), max_attempts=None, reset_after=None
    )
    options.update(kwargs)
    return Schedule(**options)


async def test_dial_failures_are_retried_until_a_connection_opens() -> None:
    dial = Dialler(failures=2)
    retries: list[tuple[str, float, bool]] = []
    redialer = Redialer(
        schedule(),
        dial,
        on_retry=lambda exc, delay, was_open: retries.append((str(exc), delay, was_open)),
    )
    assert await redialer.next() == "connection 3"
    assert retries == [("refused 1", 0.0, False), ("refused 2", 0.0, False)]
    assert redialer.attempt == 3  # counted when it was dialled


async def test_a_connection_that_ended_is_reported_as_open_then_redialled() -> None:
    dial = Dialler(failures=0)
    retries: list[tuple[str, bool]] = []
    redialer = Redialer(
        schedule(), dial, on_retry=lambda exc, delay, was_open: retries.append((str(exc), was_open))
    )
    assert await redialer.next() == "connection 1"
    assert await redialer.next(ConnectionResetError("reset")) == "connection 2"
    assert retries == [("reset", True)]


async def test_the_classifiers_verdict_is_raised() -> None:
    dial = Dialler(failures=5)
    redialer = Redialer(schedule(max_attempts=2), dial, on_retry=lambda exc, delay, was_open: None)
    with pytest.raises(OSError, match="refused 2"):
        await redialer.next()
    assert dial.dials == 2


async def test_stopped_ends_the_loop_without_waiting_or_dialling() -> None:
    dial = Dialler(failures=1)
    retries: list[Exception] = []
    stop = [False]

    def on_retry(exc: Exception, delay: float, was_open: bool) -> None:
        retries.append(exc)
        stop[0] = True

    redialer = Redialer(schedule(), dial, on_retry=on_retry, stopped=lambda: stop[0])
    assert await redialer.next() == "connection 2"
    assert await redialer.next(ConnectionResetError("gone")) is None
    assert dial.dials == 2
    assert len(retries) == 1


async def test_a_connection_that_lasted_restarts_the_attempts() -> None:
    dial = Dialler(failures=1)
    redialer = Redialer(schedule(reset_after=0.0), dial, on_retry=lambda exc, delay, was_open: None)
    await redialer.next()
    assert redialer.schedule.attempts == 2
    assert await redialer.next(ConnectionResetError("gone")) == "connection 3"
    assert redialer.attempt == 1  # the backoff started over when the connection ended
