"""The results as JSON, as Markdown tables, and as a PNG chart (when matplotlib is installed).

Every function here reads the results document that :mod:`.runner` builds,
so a report can be redrawn from a saved ``results.json`` with
``openline bench --report results.json``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

from .numbers import DASH, TIMES, format_number
from .scenarios import METRICS
from .stats import advantage

__all__ = ["DASH", "TIMES", "format_metric", "format_number", "markdown", "write"]

#: A run is generator-bound when the generator was this busy...
_BUSY_GENERATOR = 90.0
#: ...while the server had this much CPU to spare.
_IDLE_SERVER = 85.0
_CEILING = "raw"
_SUBJECTS = ("openline", "openline-lowlevel")


def format_metric(metric: str, value: float | None) -> str:
    """``value`` with the unit of ``metric``: ``"20.3k msg/s"``, ``"96 %"``."""
    if value is None:
        return DASH
    unit = METRICS.get(metric, ("", ""))[1]
    if unit == "%":
        return f"{value:.1f} %" if 99 <= value < 100 else f"{value:.0f} %"
    return f"{format_number(value)} {unit}".strip()


def _heading(scenario: dict[str, Any]) -> str:
    kind = scenario["kind"]
    if kind == "echo":
        size = scenario["size"]
        shown = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
        unit = "MB/s" if scenario["primary"] == "mb_per_s" else "msg/s"
        return f"echo {shown}, {scenario['connections']} {TIMES} {scenario['in_flight']} ({unit})"
    if kind == "fanout":
        return (
            f"fan-out {scenario['connections']:,} subs {TIMES} {scenario['rate']:g}/s "
            "(deliveries/s, % in time)"
        )
    return f"{scenario['connections']:,} idle: KB/conn"


def _cell(scenario: dict[str, Any], server: str) -> str:
    medians = scenario["medians"].get(server)
    if server in scenario["skipped"]:
        return "n/a"
    if server not in scenario["runs"]:
        return DASH
    if not medians:
        return "failed"
    primary = scenario["primary"]
    text = format_number(medians.get(primary))
    if scenario["kind"] == "fanout" and "in_time_pct" in medians:
        text += f" ({format_metric('in_time_pct', medians['in_time_pct'])})"
    if _generator_bound(scenario, server):
        text += " †"
    return text


def _generator_bound(scenario: dict[str, Any], server: str) -> bool:
    medians: dict[str, float] = scenario["medians"].get(server) or {}
    # A side is as busy as its process or its CPU, whichever is busier: loopback TCP
    # does part of each process's work in softirqs, which no process is charged for.
    # On a machine busy with other programs both CPUs are full and nothing is marked.
    generator = max(medians.get("gen_cpu_pct", 0.0), medians.get("gen_core_busy_pct", 0.0))
    busy = max(medians.get("server_cpu_pct", 0.0), medians.get("server_core_busy_pct", 0.0))
    if not generator or not busy:
        return False
    return generator >= _BUSY_GENERATOR and busy < _IDLE_SERVER


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _servers(document: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    """Servers that appear in any of ``scenarios``, in the report's order."""
    return [
        server
        for server in document["servers"]
        if any(server in s["runs"] or server in s["skipped"] for s in scenarios)
    ]


def _results_table(document: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    header = ["server"]
    for scenario in scenarios:
        header.append(_heading(scenario))
        if scenario["kind"] == "idle":
            header.append("handshakes/s")
    rows = []
    for server in _servers(document, scenarios):
        row = [document["servers"][server]]
        for scenario in scenarios:
            row.append(_cell(scenario, server))
            if scenario["kind"] == "idle":
                medians = scenario["medians"].get(server) or {}
                shown = format_number(medians.get("handshakes_per_s"))
                row.append("n/a" if server in scenario["skipped"] else shown)
        rows.append(row)
    return _table(header, rows)


def _latency_table(document: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    timed = [s for s in scenarios if s["kind"] != "idle"]
    if not timed:
        return []
    header = ["server"] + [s["name"] for s in timed]
    rows = []
    for server in _servers(document, timed):
        row = [server]
        for scenario in timed:
            medians = scenario["medians"].get(server) or {}
            if "p50_ms" in medians:
                p50, p99 = format_number(medians["p50_ms"]), format_number(medians["p99_ms"])
                row.append(f"{p50} / {p99}")
            else:
                row.append("n/a" if server in scenario["skipped"] else DASH)
        rows.append(row)
    return ["", "Latency, p50 / p99 in milliseconds (medians):", "", *_table(header, rows)]


def _cost_table(document: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    """Server CPU per message: what a server pays for its throughput."""
    timed = [s for s in scenarios if s["kind"] != "idle"]
    if not any(_has(s, "server_us_per_msg") for s in timed):
        return []
    header = ["server"] + [s["name"] for s in timed]
    rows = []
    for server in _servers(document, timed):
        row = [server]
        for scenario in timed:
            medians = scenario["medians"].get(server) or {}
            if "server_us_per_msg" in medians:
                row.append(format_number(medians["server_us_per_msg"]))
            else:
                row.append("n/a" if server in scenario["skipped"] else DASH)
        rows.append(row)
    return [
        "",
        "Server CPU per message in microseconds (user + sys of the server process over the "
        "window, divided by the messages echoed or delivered in it; medians):",
        "",
        *_table(header, rows),
    ]


def _has(scenario: dict[str, Any], metric: str) -> bool:
    return any(metric in (values or {}) for values in scenario["medians"].values())


def _ratio_tables(document: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for subject in _SUBJECTS:
        if not any(subject in s["ratios"] for s in scenarios):
            continue
        header = [f"{subject} vs"]
        columns: list[tuple[dict[str, Any], str]] = []
        for scenario in scenarios:
            columns.append((scenario, scenario["primary"]))
            if scenario["kind"] == "idle":
                columns.append((scenario, "handshakes_per_s"))
            elif _has(scenario, "server_us_per_msg"):
                columns.append((scenario, "server_us_per_msg"))
        header += [f"{s['name']}: {METRICS[m][1] or m}" for s, m in columns]
        peers = [p for p in _servers(document, scenarios) if p != subject]
        rows = []
        for peer in peers:
            row = [peer]
            for scenario, metric in columns:
                value = scenario["ratios"].get(subject, {}).get(peer, {}).get(metric)
                row.append(DASH if value is None else f"{value:.2f}{TIMES}")
            rows.append(row)
        lines += [
            "",
            f"**{subject}'s advantage**, median of per-repetition ratios (> 1 means {subject} "
            "is better; for KB/conn and \u00b5s/msg that means less memory or CPU):",
            "",
            *_table(header, rows),
        ]
    return lines


def _load_table(document: dict[str, Any], scenarios: Sequence[dict[str, Any]]) -> list[str]:
    header = ["server"] + [s["name"] for s in scenarios]
    rows = []
    for server in _servers(document, scenarios):
        row = [server]
        for scenario in scenarios:
            medians = scenario["medians"].get(server) or {}
            if "gen_cpu_pct" not in medians:
                row.append("n/a" if server in scenario["skipped"] else DASH)
                continue
            row.append(_load_cell(scenario, server, medians))
        rows.append(row)
    headroom = []
    for scenario in scenarios:
        ratio = _headroom(scenario)
        if ratio is not None:
            headroom.append(f"{scenario['name']} {ratio:.2f}{TIMES}")
    lines = [
        "",
        "CPU use during the window: server process % / generator process %, and in parentheses "
        "how busy their two CPUs were, including kernel work no process is charged for "
        "(loopback TCP runs partly in softirqs) and any other program. "
        f"† marks a run where the generator or its CPU was at least {_BUSY_GENERATOR:.0f} % busy "
        f"while the server and its CPU were both below {_IDLE_SERVER:.0f} %: the generator set "
        "the pace.",
        "",
        *_table(header, rows),
    ]
    if headroom:
        lines += [
            "",
            "Headroom, the ceiling (raw TCP, same generator) over the best WebSocket server: "
            + ", ".join(headroom)
            + ".",
        ]
    return lines


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def _load_cell(scenario: dict[str, Any], server: str, medians: dict[str, float]) -> str:
    text = f"{_percent(medians.get('server_cpu_pct'))} / {_percent(medians['gen_cpu_pct'])}"
    if "server_core_busy_pct" in medians or "gen_core_busy_pct" in medians:
        cores = (medians.get("server_core_busy_pct"), medians.get("gen_core_busy_pct"))
        text += f" ({_percent(cores[0])} / {_percent(cores[1])})"
    return text + (" †" if _generator_bound(scenario, server) else "")


def _headroom(scenario: dict[str, Any]) -> float | None:
    medians = scenario["medians"]
    primary = scenario["primary"]
    ceiling = (medians.get(_CEILING) or {}).get(primary)
    best = None
    for server, values in medians.items():
        value = values.get(primary)
        if server == _CEILING or value is None:
            continue
        if best is None or (advantage(primary, value, best) or 0) > 1:
            best = value
    return advantage(primary, ceiling, best)


def _machine_lines(document: dict[str, Any]) -> list[str]:
    machine, config = document["machine"], document["config"]
    libraries = ", ".join(
        f"{name} {version}" for name, version in machine["libraries"].items() if version
    )
    pinned = (
        f"server on CPU {config['server_cpu']}, load generator on CPU {config['client_cpu']}"
        if config["server_cpu"] is not None
        else "not pinned"
    )
    speedups = "compiled" if machine.get("openline_speedups") else "pure Python"
    commit = machine.get("openline_commit") or "unknown"

    def load(values: Sequence[float] | None) -> str:
        return "?" if not values else " ".join(f"{value:.2f}" for value in values)

    return [
        f"- Date: {machine['date']}; machine: {machine['cpu']}, {machine['cpus']} CPUs, "
        f"{machine['system']}, {machine['python']}",
        f"- Libraries: {libraries}; openline commit {commit}, frame path {speedups}",
        f"- Method: {pinned}; uvloop everywhere; 127.0.0.1; {config['warmup_s']:g} s warm-up, "
        f"{config['window_s']:g} s windows, medians of {config['repetitions']} repetition(s); "
        f"fan-out deadline {config['deadline_ms']:g} ms"
        + ("; **quick smoke mode: not a measurement**" if config["quick"] else ""),
        f"- Load average before / after: {load(machine.get('load_average'))} / "
        f"{load(machine.get('load_average_after'))}",
    ]


def _problems(document: dict[str, Any]) -> list[str]:
    lines = [f"- {note}" for note in document["notes"]]
    scenarios = document["scenarios"]
    skipped: dict[tuple[str, str], list[str]] = {}
    for scenario in scenarios:
        for server, reason in scenario["skipped"].items():
            skipped.setdefault((server, reason), []).append(scenario["name"])
    for (server, reason), names in skipped.items():
        where = "every scenario" if len(names) == len(scenarios) else ", ".join(names)
        lines.append(f"- {server}: skipped in {where}: {reason}")
    for scenario in scenarios:
        for server, runs in scenario["runs"].items():
            for repetition, run in enumerate(runs, 1):
                where = f"{scenario['name']} / {server}, rep {repetition}"
                if run and "error" in run:
                    lines.append(f"- {where}: {run['error']}")
                lines += [f"- {where}: {note}" for note in (run or {}).get("notes", ())]
    return lines


def markdown(document: dict[str, Any], chart: str | None = None) -> str:
    """The results as Markdown: tables of medians, latencies, ratios and CPU use."""
    scenarios = document["scenarios"]
    plain = [s for s in scenarios if not s["deflate"]]
    deflated = [s for s in scenarios if s["deflate"]]
    lines = ["# openline bench", "", *_machine_lines(document), ""]
    for title, group in (("Results", plain), ("With permessage-deflate", deflated)):
        if not group:
            continue
        lines += [f"## {title}", "", *_results_table(document, group)]
        lines += _latency_table(document, group)
        lines += _cost_table(document, group)
        lines += _ratio_tables(document, group)
        lines += _load_table(document, group)
        lines.append("")
    if chart:
        lines += [f"![results]({chart})", ""]
    problems = _problems(document)
    if problems:
        lines += ["## Notes", "", *problems, ""]
    return "\n".join(lines)


def write(
    document: dict[str, Any], output: pathlib.Path, *, chart: bool = True
) -> list[pathlib.Path]:
    """Write ``results.json``, ``results.md`` and, if possible, ``results.png`` into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    written = []
    path = output / "results.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    written.append(path)
    picture = None
    if chart:
        from .chart import draw

        picture = draw(document, output / "results.png")
        if picture is not None:
            written.append(picture)
    path = output / "results.md"
    path.write_text(markdown(document, picture.name if picture else None))
    written.append(path)
    return written
