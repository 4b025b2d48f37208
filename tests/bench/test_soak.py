"""``openline bench --soak``: its arithmetic, its checks, and a short real run.

The real run starts the soak's hub server process and a few subscribers on
127.0.0.1 with a fast keepalive, so that pings are counted within seconds.
"""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from openline.bench import soak
from openline.cli import main


def test_slope_of_points_on_a_line() -> None:
    points = [(x, 3.5 * x - 2) for x in (0.0, 1.0, 2.5, 4.0)]
    assert soak.least_squares_slope(points) == pytest.approx(3.5)


def test_slope_of_scattered_points_is_the_least_squares_fit() -> None:
    points = [(0.0, 10.0), (1.0, 12.0), (2.0, 10.0), (3.0, 12.0), (4.0, 10.0), (5.0, 12.0)]
    # By hand: mean x 2.5, mean y 11; sum of dx * dy = 3.0; sum of dx ** 2 = 17.5.
    assert soak.least_squares_slope(points) == pytest.approx(3.0 / 17.5)


@pytest.mark.parametrize("points", [[], [(1.0, 5.0)], [(2.0, 1.0), (2.0, 3.0)]])
def test_slope_needs_two_times(points: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError, match="at least two samples"):
        soak.least_squares_slope(points)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"connections": 0}, "connections must be at least 1"),
        ({"channels": 0}, "channels must be at least 1"),
        ({"minutes": 0}, "minutes must be positive"),
        ({"ping_interval": -1}, "ping_interval must be positive"),
        ({"minutes": 1, "warmup": 60}, "warmup must be in"),
    ],
)
def test_options_out_of_range_are_refused(change: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        soak.Options(**change).check()  # type: ignore[arg-type]


def test_warmup_is_a_fifth_of_the_hold_up_to_a_minute() -> None:
    assert soak.Options(minutes=1).warmup_seconds == 12
    assert soak.Options(minutes=10).warmup_seconds == 60
    assert soak.Options(minutes=10, warmup=5).warmup_seconds == 5


def test_cli_refuses_more_connections_than_open_files(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "--soak", "--idle-connections", "100000000", "--minutes", "1"])
    assert status != 0
    assert "open files" in capsys.readouterr().err


def test_short_soak_counts_pings_and_loses_nothing(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("uvloop", reason="openline bench runs every server on uvloop")
    options = soak.Options(
        connections=30,
        channels=4,
        minutes=0.06,
        sample_interval=0.4,
        warmup=0.8,
        ping_interval=0.5,
        output=str(tmp_path),
        server_cpu=None,
        client_cpu=None,
    )
    document = soak.run(options, stream=io.StringIO())
    result = document["result"]
    print(json.dumps(result))
    assert result["connections_lost"] == 0
    assert result["keepalive_ok"] is True
    # 3.6 s with a ping every 0.5 s (swept every 1/8 of it): several each.
    assert result["pings_per_connection"]["min"] >= 3
    assert result["rss_per_connection_kb"] > 0
    assert len(document["samples"]) >= 5
    saved = json.loads((tmp_path / "soak.json").read_text())
    assert saved["result"] == result
    assert saved["machine"]["python"].startswith("CPython")
    assert "| keepalive answered, nothing lost | yes |" in (tmp_path / "soak.md").read_text()
