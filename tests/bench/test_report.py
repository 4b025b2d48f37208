"""The report: number formatting and the Markdown tables."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from openline.bench import report
from openline.bench.report import DASH, TIMES


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, DASH),
        (0.0, "0"),
        (1.4, "1.40"),
        (12.44, "12.4"),
        (537.2, "537"),
        (1767.0, "1,767"),
        (20300.0, "20.3k"),
        (528900.0, "528.9k"),
        (1234567.0, "1.23M"),
        (-20300.0, "-20.3k"),
    ],
)
def test_format_number(value: float | None, text: str) -> None:
    assert report.format_number(value) == text


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("msgs_per_s", 20300.0, "20.3k msg/s"),
        ("in_time_pct", 96.2, "96 %"),
        ("in_time_pct", 99.94, "99.9 %"),
        ("in_time_pct", 100.0, "100 %"),
        ("p99_ms", 3.14159, "3.14 ms"),
        ("kb_per_conn", None, DASH),
    ],
)
def test_format_metric(metric: str, value: float | None, text: str) -> None:
    assert report.format_metric(metric, value) == text


def _scenario(name: str, kind: str, primary: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "title": name,
        "size": 32,
        "connections": 1000,
        "in_flight": 16,
        "rate": 100.0,
        "deflate": False,
        "primary": primary,
        "runs": {},
        "skipped": {},
        "medians": {},
        "ratios": {},
        **extra,
    }


def _document() -> dict[str, Any]:
    run = {"metrics": {"msgs_per_s": 1.0}}
    echo = _scenario(
        "echo-32-x16",
        "echo",
        "msgs_per_s",
        runs={"openline": [run], "picows": [run], "raw": [{"error": "boom"}]},
        skipped={"openline-lowlevel": "openline has no low-level callback API yet"},
        medians={
            "openline": {
                "msgs_per_s": 82000.0,
                "p50_ms": 1.5,
                "p99_ms": 4.0,
                "gen_cpu_pct": 40.0,
                "server_cpu_pct": 100.0,
            },
            "picows": {
                "msgs_per_s": 41000.0,
                "p50_ms": 3.0,
                "p99_ms": 9.0,
                "gen_cpu_pct": 80.0,
                "server_cpu_pct": 60.0,
                "server_core_busy_pct": 70.0,
                "gen_core_busy_pct": 95.0,
            },
            "raw": {},
        },
        ratios={"openline": {"picows": {"msgs_per_s": 2.0}}},
    )
    fanout = _scenario(
        "fanout-1k",
        "fanout",
        "deliveries_per_s",
        runs={"openline": [run]},
        medians={"openline": {"deliveries_per_s": 99000.0, "in_time_pct": 100.0}},
    )
    idle = _scenario(
        "idle-10k",
        "idle",
        "kb_per_conn",
        connections=10000,
        runs={"openline": [run]},
        medians={"openline": {"kb_per_conn": 2.5, "handshakes_per_s": 7700.0}},
    )
    return {
        "machine": {
            "date": "2026-01-01T00:00:00+0000",
            "cpu": "Test CPU",
            "cpus": 2,
            "system": "Linux",
            "python": "CPython 3.11.7",
            "libraries": {"openline": "0.1.0", "picows": "2.3.1", "aiohttp": None},
            "openline_speedups": True,
            "openline_commit": "abc1234",
            "load_average": [0.1, 0.2, 0.3],
            "load_average_after": None,
        },
        "config": {
            "repetitions": 3,
            "window_s": 10.0,
            "warmup_s": 1.0,
            "deadline_ms": 100.0,
            "quick": False,
            "server_cpu": 0,
            "client_cpu": 1,
        },
        "servers": {
            "openline": "openline 0.1.0",
            "openline-lowlevel": "openline 0.1.0 (low-level)",
            "picows": "picows 2.3.1",
            "raw": "raw TCP",
        },
        "notes": ["a note"],
        "scenarios": [echo, fanout, idle],
    }


def test_markdown_shows_medians_per_server_and_scenario() -> None:
    text = report.markdown(_document())
    assert "| openline 0.1.0 | 82.0k | 99.0k (100 %) | 2.50 | 7,700 |" in text
    assert f"| openline 0.1.0 (low-level) | n/a | {DASH} | {DASH} | {DASH} |" in text
    assert f"| picows 2.3.1 | 41.0k \u2020 | {DASH} | {DASH} | {DASH} |" in text


def test_markdown_marks_a_generator_bound_run() -> None:
    text = report.markdown(_document())
    assert "| picows 2.3.1 | 41.0k † |" in text
    assert "| picows | 60 / 80 (70 / 95) † |" in text
    assert "| openline | 100 / 40 |" in text


def test_markdown_reports_a_failed_run_and_says_why() -> None:
    text = report.markdown(_document())
    assert "| raw TCP | failed |" in text
    assert "- echo-32-x16 / raw, rep 1: boom" in text


def test_markdown_shows_ratios_and_latencies() -> None:
    text = report.markdown(_document())
    assert f"| picows | 2.00{TIMES} |" in text
    assert "| openline | 1.50 / 4.00 |" in text


def test_markdown_describes_the_machine_and_method() -> None:
    text = report.markdown(_document())
    assert "Test CPU, 2 CPUs" in text
    assert "openline 0.1.0, picows 2.3.1;" in text  # aiohttp isn't installed
    assert "server on CPU 0, load generator on CPU 1" in text
    assert "medians of 3 repetition(s)" in text
    assert "- a note" in text
    assert "openline-lowlevel: skipped in echo-32-x16: openline has no low-level" in text


def test_write_saves_json_and_markdown(tmp_path: pathlib.Path) -> None:
    written = report.write(_document(), tmp_path, chart=False)
    assert [path.name for path in written] == ["results.json", "results.md"]
    assert json.loads((tmp_path / "results.json").read_text())["notes"] == ["a note"]
    assert "![results]" not in (tmp_path / "results.md").read_text()


def test_markdown_marks_nothing_when_both_cpus_are_full() -> None:
    document = _document()
    medians = document["scenarios"][0]["medians"]["picows"]
    medians["server_core_busy_pct"] = 100.0
    text = report.markdown(document)
    assert "| picows | 60 / 80 (100 / 95) |" in text
