"""Validation of limits and timeouts."""

from __future__ import annotations

import logging

import pytest

from openline.asyncio.config import Settings, check_count, check_timeout, check_watermarks


def make_settings(**overrides: object) -> Settings:
    arguments: dict[str, object] = {
        "max_size": 2**20,
        "max_queue": 16,
        "write_limit": 65536,
        "ping_interval": 20.0,
        "ping_timeout": 20.0,
        "close_timeout": 10.0,
        "logger": None,
        "default_logger": "openline.test",
    }
    arguments.update(overrides)
    return Settings(**arguments)  # type: ignore[arg-type]


def test_watermarks_default_low_to_a_quarter_of_high() -> None:
    assert check_watermarks("limit", 100) == (100, 25)
    assert check_watermarks("limit", (100, 100)) == (100, 100)
    assert check_watermarks("limit", None) is None


@pytest.mark.parametrize("value", [-1, (10, 11), (10, -1), (1, 2, 3), True, (5, "1")])
def test_invalid_watermarks_raise_value_error_naming_the_argument(value: object) -> None:
    with pytest.raises(ValueError, match=r"^limit"):
        check_watermarks("limit", value)  # type: ignore[arg-type]


def test_counts_and_timeouts() -> None:
    assert check_count("count", None) is None
    assert check_count("count", 0) == 0
    assert check_timeout("timeout", 1) == 1.0
    assert check_timeout("timeout", None) is None
    with pytest.raises(ValueError, match="count must be an int >= 1"):
        check_count("count", 0, minimum=1)
    with pytest.raises(ValueError, match="timeout"):
        check_timeout("timeout", "1")  # type: ignore[arg-type]


def test_settings_use_the_default_logger_and_cache_its_level() -> None:
    logging.getLogger("openline.test").setLevel(logging.DEBUG)
    try:
        settings = make_settings()
        assert settings.logger is logging.getLogger("openline.test")
        assert settings.debug
    finally:
        logging.getLogger("openline.test").setLevel(logging.NOTSET)
    custom = logging.getLogger("custom")
    assert make_settings(logger=custom).logger is custom


def test_settings_unpack_watermarks() -> None:
    settings = make_settings(max_queue=None, write_limit=(64, 8))
    assert (settings.max_queue, settings.queue_low) == (None, 0)
    assert (settings.write_high, settings.write_low) == (64, 8)
    with pytest.raises(ValueError, match="write_limit"):
        make_settings(write_limit=None)
