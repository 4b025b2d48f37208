"""``openline bench --check``: which ratios moved by more than their repetitions' spread."""

from __future__ import annotations

import copy
import io
import json
import pathlib
from typing import Any

import pytest

from openline.bench.check import MIN_NOISE, Change, compare, format_changes, spread
from openline.bench.report import TIMES
from openline.bench.stats import summarize
from openline.cli import main


def _results(openline: list[float], picows: list[float], cpu: list[float]) -> dict[str, Any]:
    """A results document with one echo scenario measured in ``len(openline)`` repetitions."""
    runs = {
        "openline": [
            {"metrics": {"msgs_per_s": rate, "server_us_per_msg": us}}
            for rate, us in zip(openline, cpu, strict=True)
        ],
        "picows": [{"metrics": {"msgs_per_s": rate, "server_us_per_msg": 10.0}} for rate in picows],
    }
    medians, ratios = summarize(
        {server: [run["metrics"] for run in values] for server, values in runs.items()},
        ["openline"],
    )
    scenario = {
        "name": "echo-32-x16",
        "kind": "echo",
        "connections": 100,
        "primary": "msgs_per_s",
        "runs": runs,
        "skipped": {},
        "medians": medians,
        "ratios": ratios,
    }
    return {"scenarios": [scenario]}


def test_spread_is_half_the_range_over_the_median() -> None:
    assert spread([1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert spread([2.0]) is None
    assert spread([]) is None


def test_a_ratio_within_the_repetitions_spread_has_not_moved() -> None:
    before = _results([100.0, 120.0, 110.0], [100.0, 100.0, 100.0], [5.0, 5.0, 5.0])
    after = _results([105.0, 115.0, 112.0], [100.0, 100.0, 100.0], [5.0, 5.0, 5.0])
    changes = {change.metric: change for change in compare(before, after)}
    rate = changes["msgs_per_s"]
    assert rate.before == pytest.approx(1.1) and rate.after == pytest.approx(1.12)
    assert rate.noise == pytest.approx(0.1 / 1.1)  # the committed run spread more
    assert not rate.significant
    cpu = changes["server_us_per_msg"]
    assert cpu.noise == MIN_NOISE and not cpu.significant


def test_a_regression_beyond_the_noise_is_reported() -> None:
    before = _results([200.0, 204.0, 198.0], [100.0, 100.0, 100.0], [5.0, 5.0, 5.0])
    # Same throughput, but the server now burns 8 µs instead of 5 per message.
    after = _results([200.0, 202.0, 199.0], [100.0, 100.0, 100.0], [8.0, 8.1, 7.9])
    changes = {change.metric: change for change in compare(before, after)}
    assert not changes["msgs_per_s"].significant
    cpu = changes["server_us_per_msg"]
    assert cpu.before == pytest.approx(2.0) and cpu.after == pytest.approx(1.25)
    assert cpu.significant and cpu.moved == pytest.approx(-0.375)
    stream = io.StringIO()
    format_changes(list(changes.values()), stream)
    text = stream.getvalue()
    assert text.startswith("1 of 2 ratios moved")
    moved = text.split("within the noise")[0]
    assert "openline vs picows" in moved and f"2.00{TIMES} -> 1.25{TIMES} (-38%" in moved


def test_scenarios_of_another_size_are_not_compared() -> None:
    before = _results([100.0], [100.0], [5.0])
    after = copy.deepcopy(before)
    after["scenarios"][0]["connections"] = 10  # a --quick run
    assert compare(before, after) == []
    stream = io.StringIO()
    format_changes([], stream)
    assert "no ratio in common" in stream.getvalue()


def test_a_single_repetition_falls_back_to_the_floor() -> None:
    change = Change("s", "openline", "picows", "msgs_per_s", 1.0, 1.03, MIN_NOISE)
    assert change.significant
    (found,) = [
        c
        for c in compare(_results([100.0], [100.0], [5.0]), _results([101.0], [100.0], [5.0]))
        if c.metric == "msgs_per_s"
    ]
    assert found.noise == MIN_NOISE and not found.significant


def test_cli_check_refuses_missing_results(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvloop", reason="openline bench runs every server on uvloop")
    code = main(["bench", "--check", str(tmp_path / "none.json")])
    assert code != 0
    assert "no results at" in capsys.readouterr().err


def test_cli_check_runs_and_compares(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvloop", reason="openline bench runs every server on uvloop")
    before = tmp_path / "before"
    args = ["bench", "-s", "echo-32-x16", "--server", "openline", "--server", "raw", "-r", "1"]
    args += ["--window", "0.3"]
    args += ["--warmup", "0.1", "--no-chart"]
    assert main([*args, "-o", str(before)]) == 0
    committed = json.loads((before / "results.json").read_text())
    # Pretend openline used to be 100 times better than the raw relay: it moved.
    ratios = committed["scenarios"][0]["ratios"]["openline"]["raw"]
    ratios["msgs_per_s"] *= 100
    (before / "results.json").write_text(json.dumps(committed))
    capsys.readouterr()
    check = [*args, "-o", str(tmp_path / "after"), "--check", str(before / "results.json")]
    assert main(check) == 0
    err = capsys.readouterr().err
    assert "ratios moved by more than their noise" in err
    assert main([*check, "--fail-on-change"]) == 1
