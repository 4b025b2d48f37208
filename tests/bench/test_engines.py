"""``openline bench --engines``: the publish cost of each engine, measured for real."""

from __future__ import annotations

import pytest

from openline.bench.engines import format_table, run


def test_every_engine_path_is_measured_and_tabled(capsys: pytest.CaptureFixture[str]) -> None:
    results = run(50, redis=False)
    assert [(r.engine, r.path) for r in results] == [
        (engine, path)
        for engine in ("memory", "sqlite")
        for path in ("engine", "engine x64", "hub")
    ]
    for result in results:
        assert result.count == 50
        assert result.seconds > 0
        assert result.per_second == pytest.approx(1e6 / result.us_per_publish)
    out = capsys.readouterr().out
    assert format_table(results) in out
    assert "| sqlite | engine x64 | 50 |" in out


def test_a_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        run(0)
