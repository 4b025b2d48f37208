"""The ticker: a random walk published on its own schedule."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from openline.exceptions import BackendUnavailable
from openline.hub import Hub
from openline.web import Ticker


class FakeHub:
    """Records publishes; can fail like an unreachable store."""

    def __init__(self, failures: int = 0) -> None:
        self.published: list[tuple[str, Any]] = []
        self.failures = failures

    async def publish(self, ch: str, data: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("store down")
        self.published.append((ch, data))


def running(ticker: Ticker) -> bool:
    """Read the property afresh (mypy would keep it narrowed across awaits)."""
    return ticker.is_running


def make(hub: Any, **kwargs: Any) -> Ticker:
    return Ticker(hub, rng=random.Random(7), clock=lambda: 1000.0, **kwargs)


async def test_ticks_count_up_and_carry_price_change_and_time() -> None:
    hub = FakeHub()
    ticker = make(hub, ch="prices", symbol="XYZ", start=50.0)
    first = await ticker.tick()
    second = await ticker.tick()
    assert [data["seq"] for _, data in hub.published] == [1, 2]
    assert {ch for ch, _ in hub.published} == {"prices"}
    assert first["symbol"] == "XYZ" and first["ts"] == 1_000_000
    assert second["change"] == pytest.approx(second["price"] - first["price"], abs=0.011)
    assert ticker.latest == second


async def test_prices_stay_positive_and_near_the_start() -> None:
    ticker = make(FakeHub(), start=100.0)
    prices = [(await ticker.tick())["price"] for _ in range(500)]
    assert all(price > 0 for price in prices)
    assert 50 < prices[-1] < 200
    assert all(round(price, 2) == price for price in prices)


async def test_start_publishes_at_once_then_on_schedule_until_stopped() -> None:
    hub = FakeHub()
    ticker = make(hub, interval=(0.01, 0.02))
    ticker.start()
    assert ticker.is_running
    with pytest.raises(RuntimeError, match="already running"):
        ticker.start()
    while len(hub.published) < 3:
        await asyncio.sleep(0.005)
    await ticker.stop()
    assert not running(ticker)
    count = len(hub.published)
    await asyncio.sleep(0.05)
    assert len(hub.published) == count
    await ticker.stop()  # stopping twice is fine


async def test_an_unavailable_store_is_logged_and_ticking_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = FakeHub(failures=1)
    ticker = make(hub, interval=(0.01, 0.01))
    with caplog.at_level(logging.WARNING, logger="openline.web"):
        ticker.start()
        while not hub.published:
            await asyncio.sleep(0.005)
        await ticker.stop()
    assert "can't publish" in caplog.text
    assert hub.published[0][1]["seq"] == 2  # the failed tick kept its number


async def test_ticks_land_in_the_hubs_history() -> None:
    hub = Hub()
    ticker = Ticker(hub, interval=(1.0, 1.0))
    await ticker.tick()
    await ticker.tick()
    history = await hub.engine.history("ticker", since=0, epoch="?")
    assert [message.offset for message in history.messages] == [1, 2]
    await hub.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": (0.0, 1.0)}, "interval must be two positive seconds"),
        ({"interval": (2.0, 1.0)}, "interval must be two positive seconds"),
        ({"interval": (float("nan"), 1.0)}, "interval must be two positive seconds"),
        ({"start": -1.0}, "start must be a positive number"),
        ({"volatility": 0}, "volatility must be a positive number"),
        ({"volatility": True}, "volatility must be a positive number"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ticker(FakeHub(), **kwargs)  # type: ignore[arg-type]
