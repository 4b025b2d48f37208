"""``openline bench`` end to end, in a tiny smoke configuration (no timing is checked)."""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from openline.bench.runner import Options, run
from openline.bench.system import available_cpus
from openline.cli import main

from .test_report import _document

pytest.importorskip("uvloop", reason="openline bench runs every server on uvloop")


def test_smoke_run_measures_every_scenario_kind_and_writes_the_report(
    tmp_path: pathlib.Path,
) -> None:
    progress = io.StringIO()
    options = Options(
        scenarios=["echo-32-x16", "fanout-1k", "idle-10k"],
        servers=["openline", "openline-lowlevel", "raw"],
        quick=True,
        window=0.3,
        warmup=0.1,
        idle_connections=40,
        output=str(tmp_path),
        chart=False,
    )
    document = run(options, progress)

    scenarios = {scenario["name"]: scenario for scenario in document["scenarios"]}
    assert list(scenarios) == ["echo-32-x16", "fanout-1k", "idle-10k"]
    for scenario in scenarios.values():
        assert set(scenario["runs"]) == {"openline", "openline-lowlevel", "raw"}
        for runs in scenario["runs"].values():
            (result,) = runs
            assert "error" not in result, result
            assert scenario["primary"] in result["metrics"]
    assert scenarios["idle-10k"]["connections"] == 40
    assert scenarios["idle-10k"]["medians"]["openline"]["handshakes_per_s"] > 0
    assert scenarios["fanout-1k"]["medians"]["openline"]["deliveries_per_s"] > 0
    assert scenarios["fanout-1k"]["medians"]["openline-lowlevel"]["deliveries_per_s"] > 0
    assert "deliveries_per_s" in scenarios["fanout-1k"]["ratios"]["openline"]["raw"]
    # CPU per message next to throughput: the server's CPU time over what it handled.
    for name in ("echo-32-x16", "fanout-1k"):
        for server in ("openline", "raw"):
            (result,) = scenarios[name]["runs"][server]
            metrics = result["metrics"]
            assert metrics["server_us_per_msg"] >= 0
        assert "server_us_per_msg" in scenarios[name]["ratios"]["openline"]["raw"]
    assert "server_us_per_msg" not in scenarios["idle-10k"]["medians"]["openline"]
    assert document["config"]["quick"] is True

    assert json.loads((tmp_path / "results.json").read_text()) == document
    markdown = (tmp_path / "results.md").read_text()
    assert "| openline " in markdown and "quick smoke mode" in markdown
    assert "Server CPU per message in microseconds" in markdown
    lines = progress.getvalue().splitlines()
    assert lines[0].startswith("[") and "1/9" in lines[0]
    assert lines[-1] == f"wrote {tmp_path / 'results.md'}"


def test_deflate_scenario_skips_servers_without_compression(tmp_path: pathlib.Path) -> None:
    options = Options(
        scenarios=["echo-32-x16+deflate"],
        servers=["openline", "raw"],
        quick=True,
        window=0.2,
        warmup=0.1,
        output=str(tmp_path),
        chart=False,
    )
    (scenario,) = run(options, io.StringIO())["scenarios"]
    assert scenario["skipped"] == {"raw": "no permessage-deflate support"}
    (result,) = scenario["runs"]["openline"]
    assert result["metrics"]["msgs_per_s"] > 0


def test_cli_lists_scenarios_and_servers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "fanout-5k+deflate" in out and "picows" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "nope"], "openline bench: error: unknown scenario 'nope'; choose from"),
        (["--server", "nope"], "openline bench: error: unknown server 'nope'; choose from"),
        pytest.param(
            ["--server-cpu", "99"],
            "openline bench: error: CPU 99 is not usable here",
            marks=pytest.mark.skipif(len(available_cpus()) < 2, reason="needs 2 CPUs to pin"),
        ),
    ],
)
def test_cli_reports_a_bad_choice_on_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    assert main(["bench", "--quick", "-o", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_cli_rejects_a_window_that_is_not_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["bench", "--window", "0"])
    assert raised.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_redraws_a_report_from_saved_results(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "saved.json"
    source.write_text(json.dumps(_document()))
    assert main(["bench", "--report", str(source), "-o", str(tmp_path), "--no-chart"]) == 0
    assert (tmp_path / "results.md").read_text().startswith("# openline bench")
