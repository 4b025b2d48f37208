"""``openline bench --hub``'s summaries and report: medians, comparisons, ``hub.{json,md}``.

Every function here reads the document :mod:`.hubpeers` builds, so that
``openline bench --report hub.json`` redraws the Markdown.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

from .report import DASH, TIMES, format_number
from .stats import median

__all__ = ["ASGI_CONFIGURATIONS", "CONFIGURATIONS", "TARGETS", "markdown", "summarize", "write"]

#: Every configuration, in the order of the report.
CONFIGURATIONS = {
    "openline": "openline hub, 1 node (memory engine)",
    "openline-compact": "openline hub, 1 node, compact envelope (prototype)",
    "fastapi-uvicorn-openline": "openline hub in FastAPI, uvicorn + openline's engine (fast path)",
    "fastapi-uvicorn": "openline hub in FastAPI, uvicorn + its default engine (plain path)",
    "fastapi-hypercorn": "openline hub in FastAPI, hypercorn (plain path)",
    "python-socketio": "python-socketio 1 node (ASGI, uvicorn)",
    "socketio-node": "Socket.IO on Node, 1 node",
    "openline-redis": "openline hub, 2 nodes + Redis",
    "python-socketio-redis": "python-socketio, 2 nodes + Redis (AsyncRedisManager)",
    "socketio-node-redis": "Socket.IO on Node, 2 nodes + Redis (redis-adapter)",
}
#: Which openline configuration each peer is compared with.
_PAIRS = {
    "python-socketio": "openline",
    "socketio-node": "openline",
    "python-socketio-redis": "openline-redis",
    "socketio-node-redis": "openline-redis",
}
#: The hub mounted in FastAPI under each ASGI server (hubnode's ``server``), by configuration;
#: each is compared with the hub under ``openline serve`` (``openline``).
ASGI_CONFIGURATIONS = {
    "fastapi-uvicorn-openline": "uvicorn-openline",
    "fastapi-uvicorn": "uvicorn",
    "fastapi-hypercorn": "hypercorn",
}
#: The issue's targets: ≥ 95 % within 100 ms at 5,000 x 50/s; ≥ 2x Socket.IO/Node's
#: deliveries per server core; ≤ 4 KB per subscribed connection.
TARGETS = {"in_time_pct": 95.0, "per_core_vs_node": 2.0, "kb_per_subscriber": 4.0}
#: The generator is this busy at most for its numbers to be the server's.
GENERATOR_LIMIT = 70.0


def _flat(run: dict[str, Any]) -> dict[str, float]:
    """One run's figures in one dictionary."""
    values: dict[str, float] = dict(run.get("groups", {}).get("all", {}))
    values.update(run.get("cpu", {}))
    memory = run.get("memory") or {}
    if "kb_per_subscriber" in memory:
        values["kb_per_subscriber"] = memory["kb_per_subscriber"]
    if "bytes_per_delivery" in run:
        values["bytes_per_delivery"] = run["bytes_per_delivery"]
    values["published_per_s"] = run.get("published_per_s", 0.0)
    server = values.get("server_cpu_pct")
    if server and "deliveries_per_s" in values:
        values["per_core"] = values["deliveries_per_s"] / (server / 100)
    for group in ("node1", "node2"):
        found = run.get("groups", {}).get(group)
        if found and "p99_ms" in found:
            values[f"{group}_p99_ms"] = found["p99_ms"]
    return values


def summarize(runs: dict[str, list[dict[str, Any] | None]]) -> dict[str, dict[str, float]]:
    """``medians[configuration][metric]`` over the successful repetitions of one load."""
    summary: dict[str, dict[str, float]] = {}
    for name, repetitions in runs.items():
        flats = [_flat(run) for run in repetitions if run and "error" not in run]
        keys = sorted({key for flat in flats for key in flat})
        summary[name] = {
            key: value
            for key in keys
            if (value := median(flat[key] for flat in flats if key in flat)) is not None
        }
    return summary


def _ratio(
    runs: dict[str, list[dict[str, Any] | None]], ours: str, theirs: str, metric: str
) -> float | None:
    """The median over repetitions of ``ours / theirs`` on ``metric``."""
    quotients = []
    for mine, other in zip(runs.get(ours, ()), runs.get(theirs, ()), strict=False):
        if not mine or not other or "error" in mine or "error" in other:
            continue
        value, base = _flat(mine).get(metric), _flat(other).get(metric)
        if value is not None and base:
            quotients.append(value / base)
    return median(quotients)


# --- report -----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _pct(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.1f}" if 99 <= value < 99.95 else f"{value:.0f}"


def _times(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}{TIMES}"


def _load_section(document: dict[str, Any], key: str) -> list[str]:
    runs = document["runs"][key]
    medians = summarize(runs)
    subscribers, rate = key.split("x")
    header = ["configuration", "deliveries/s", "% in time", "% delivered", "p50 / p99 ms"]
    header += ["KB per subscriber", "server µs/delivery", "deliveries per server core-s"]
    header += ["bytes/delivery", "server % / generator % (CPUs busy)"]
    rows = []
    for name in document["configurations"]:
        values = medians.get(name) or {}
        if "deliveries_per_s" not in values:
            rows.append([CONFIGURATIONS[name], "failed", *[DASH] * (len(header) - 2)])
            continue
        generator = values.get("gen_cpu_pct", 0.0)
        mark = " ‡" if generator > GENERATOR_LIMIT else ""
        rows.append(
            [
                CONFIGURATIONS[name] + mark,
                format_number(values.get("deliveries_per_s")),
                _pct(values.get("in_time_pct")),
                _pct(values.get("delivered_pct")),
                f"{format_number(values.get('p50_ms'))} / {format_number(values.get('p99_ms'))}",
                format_number(values.get("kb_per_subscriber")),
                format_number(values.get("server_us_per_delivery")),
                format_number(values.get("per_core")),
                format_number(values.get("bytes_per_delivery")),
                f"{_pct(values.get('server_cpu_pct'))} / {_pct(generator)} "
                f"({_pct(values.get('server_core_busy_pct'))} / "
                f"{_pct(values.get('gen_core_busy_pct'))})",
            ]
        )
    lines = [
        f"## {int(subscribers):,} subscribers {TIMES} {rate} msg/s "
        f"({int(subscribers) * float(rate):,.0f} deliveries/s offered)",
        "",
        *_table(header, rows),
    ]
    comparisons = []
    for peer, ours in _PAIRS.items():
        if peer not in runs or ours not in runs:
            continue
        comparisons.append(
            [
                f"{ours} vs {peer}",
                _times(_ratio(runs, ours, peer, "deliveries_per_s")),
                _times(_ratio(runs, ours, peer, "per_core")),
                _times(_ratio(runs, peer, ours, "server_us_per_delivery")),
                _times(_ratio(runs, peer, ours, "kb_per_subscriber")),
                _times(_ratio(runs, peer, ours, "bytes_per_delivery")),
            ]
        )
    if "openline" in runs and "openline-redis" in runs:
        comparisons.append(
            [
                "2 openline nodes + Redis vs 1",
                _times(_ratio(runs, "openline-redis", "openline", "deliveries_per_s")),
                _times(_ratio(runs, "openline-redis", "openline", "per_core")),
                _times(_ratio(runs, "openline", "openline-redis", "server_us_per_delivery")),
                DASH,
                DASH,
            ]
        )
    if "openline" in runs and "openline-compact" in runs:
        comparisons.append(
            [
                "compact envelope vs current",
                _times(_ratio(runs, "openline-compact", "openline", "deliveries_per_s")),
                _times(_ratio(runs, "openline-compact", "openline", "per_core")),
                _times(_ratio(runs, "openline", "openline-compact", "server_us_per_delivery")),
                DASH,
                _times(_ratio(runs, "openline", "openline-compact", "bytes_per_delivery")),
            ]
        )
    if comparisons:
        header = ["comparison (> 1: the first is better)", "deliveries/s"]
        header += ["per server core", "CPU per delivery", "memory per subscriber", "bytes"]
        lines += ["", *_table(header, comparisons)]
    lines += _asgi_costs(runs)
    return lines


def _asgi_costs(runs: dict[str, list[dict[str, Any] | None]]) -> list[str]:
    """The hub in FastAPI under each server, as ratios to the hub under ``openline serve``."""
    rows = []
    for name in ASGI_CONFIGURATIONS:
        if name not in runs or "openline" not in runs:
            continue
        rows.append(
            [
                CONFIGURATIONS[name],
                *(
                    _times(_ratio(runs, name, "openline", metric))
                    for metric in (
                        "deliveries_per_s",
                        "in_time_pct",
                        "p99_ms",
                        "server_us_per_delivery",
                        "kb_per_subscriber",
                    )
                ),
            ]
        )
    if not rows:
        return []
    header = ["the hub in FastAPI, against `openline serve` (its value / serve's)", "deliveries/s"]
    header += ["% in time", "p99", "server CPU per delivery", "memory per subscriber"]
    return ["", *_table(header, rows)]


def _targets(document: dict[str, Any]) -> list[str]:
    key = "5000x50"
    if key not in document["runs"]:
        return []
    runs = document["runs"][key]
    medians = summarize(runs).get("openline", {})
    lines = ["## The issue's targets (5,000 subscribers x 50 msg/s, one node)", ""]
    in_time = medians.get("in_time_pct")
    lines.append(
        f"- ≥ {TARGETS['in_time_pct']:.0f} % within 100 ms: {_pct(in_time)} % "
        + ("(met)" if in_time is not None and in_time >= TARGETS["in_time_pct"] else "(missed)")
    )
    per_core = _ratio(runs, "openline", "socketio-node", "per_core")
    lines.append(
        f"- ≥ {TARGETS['per_core_vs_node']:.0f}{TIMES} Socket.IO/Node's deliveries per server "
        f"core: {_times(per_core)} "
        + (
            "(met)"
            if per_core is not None and per_core >= TARGETS["per_core_vs_node"]
            else "(missed or not measured)"
        )
        + " (at this load, not at saturation unless both used the whole core)"
    )
    memory = medians.get("kb_per_subscriber")
    lines.append(
        f"- ≤ {TARGETS['kb_per_subscriber']:.0f} KB per subscribed connection: "
        f"{format_number(memory)} KB "
        + ("(met)" if memory is not None and memory <= TARGETS["kb_per_subscriber"] else "(missed)")
    )
    return [*lines, ""]


def markdown(document: dict[str, Any]) -> str:
    """The report: one section per load, the targets, the method and the notes."""
    machine, config = document["machine"], document["config"]

    def load(values: Sequence[float] | None) -> str:
        return "?" if not values else " ".join(f"{value:.2f}" for value in values)

    pinned = (
        f"servers and Redis on CPU {config['server_cpu']}, generator on CPU {config['client_cpu']}"
        if config["server_cpu"] is not None
        else "not pinned"
    )
    lines = [
        "# openline bench --hub: one room, the hub against Socket.IO",
        "",
        f"- Date: {machine['date']}; machine: {machine['cpu']}, {machine['cpus']} CPUs, "
        f"{machine['system']}, {machine['python']}",
        f"- Method: {pinned}; {config['warmup_s']:g} s warm-up, {config['window_s']:g} s "
        f"windows, medians of {config['repetitions']} repetition(s); deadline "
        f"{config['deadline_ms']:g} ms"
        + ("; **quick smoke mode: not a measurement**" if config["quick"] else ""),
        f"- Load average before / after: {load(machine.get('load_average'))} / "
        f"{load(machine.get('load_average_after'))}",
        "",
        "*KB per subscriber*: growth of the server processes' RSS (both nodes together) "
        "while the subscribers connect and join, divided by their number. *Server µs/delivery*: "
        "CPU time of the nodes and Redis over the window, divided by the deliveries in it. "
        "*Per server core-s*: deliveries/s divided by the server side's share of a core. "
        f"‡ marks a generator that used more than {GENERATOR_LIMIT:.0f} % of its CPU "
        "(its figures may be the generator's).",
        "",
    ]
    for key in document["runs"]:
        lines += [*_load_section(document, key), ""]
    lines += _targets(document)
    if document["notes"]:
        lines += ["## Notes", "", *[f"- {note}" for note in document["notes"]], ""]
    return "\n".join(lines)


def write(document: dict[str, Any], output: pathlib.Path) -> list[pathlib.Path]:
    """Write ``hub.json`` and ``hub.md`` into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "hub.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path = output / "hub.md"
    md_path.write_text(markdown(document))
    return [json_path, md_path]
