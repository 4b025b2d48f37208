"""The cluster benchmark's summaries and report: medians, ratios, ``cluster.{json,md}``.

Every function here reads the results document that :mod:`.cluster` builds,
so that ``openline bench --report cluster.json`` can redraw the Markdown.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

from .report import DASH, TIMES, format_number
from .stats import median

__all__ = ["CONFIGURATIONS", "headroom", "markdown", "medians", "ratios", "write"]

#: Every configuration, in the order of the report.
CONFIGURATIONS = {
    "memory": "1 node, memory engine",
    "redis": "2 nodes + Redis",
    "ceiling": "raw TCP relay (generator ceiling)",
}
#: The metrics that ratios compare.
RATIO_METRICS = ("deliveries_per_s", "delivered_pct", "p50_ms", "p99_ms")
#: A side this busy while the other was below _IDLE: the generator set the pace.
_BUSY = 90.0
_IDLE = 85.0


# --- summaries --------------------------------------------------------------------------

#: Per configuration, each repetition's result (``None`` for a run that didn't happen).
Results = dict[str, list[dict[str, Any] | None]]


def _successful(runs: Sequence[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    return [run if run and "error" not in run else None for run in runs]


def medians(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    """``medians[configuration][group][metric]`` over the successful repetitions.

    The groups are those of the generator's results (``all``, ``node1``, ...),
    plus ``cpu`` for the CPU readings and ``published_per_s``.
    """
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name, runs in results.items():
        successful = [run for run in _successful(runs) if run is not None]
        sections: dict[str, list[dict[str, float]]] = {}
        for run in successful:
            for group, metrics in run.get("groups", {}).items():
                sections.setdefault(group, []).append(metrics)
            sections.setdefault("cpu", []).append(
                {**run.get("cpu", {}), "published_per_s": run.get("published_per_s", 0.0)}
            )
        summary[name] = {}
        for section, values in sections.items():
            keys = sorted({key for metrics in values for key in metrics})
            summary[name][section] = {
                key: value
                for key in keys
                if (value := median(m[key] for m in values if key in m)) is not None
            }
    return summary


def ratios(results: Results) -> dict[str, dict[str, float]]:
    """``redis`` over ``memory``: ``ratios[group][metric]``, the median of per-repetition ratios.

    Each group of the Redis configuration (``all``, ``node1``, ``node2``) is
    compared with all of the memory node's subscribers, in the same repetition.
    A ratio is a plain quotient: below 1 means fewer deliveries, above 1 a
    longer latency. Deliveries are compared per subscriber, so that a node
    holding half of the subscribers isn't shown as half as fast.
    """
    redis = _successful(results.get("redis", []))
    memory = _successful(results.get("memory", []))
    quotients: dict[str, dict[str, list[float]]] = {}
    for ours, theirs in zip(redis, memory, strict=False):
        if ours is None or theirs is None:
            continue
        reference = theirs.get("groups", {}).get("all", {})
        for group, metrics in ours.get("groups", {}).items():
            for metric in RATIO_METRICS:
                value, base = metrics.get(metric), reference.get(metric)
                if metric == "deliveries_per_s" and value is not None and base:
                    value /= metrics.get("subscribers") or 1
                    base /= reference.get("subscribers") or 1
                if value is not None and base:
                    quotients.setdefault(group, {}).setdefault(metric, []).append(value / base)
    return {
        group: {metric: median(values) or 0.0 for metric, values in by_metric.items()}
        for group, by_metric in quotients.items()
    }


# --- report -----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _percent(value: float | None) -> str:
    if value is None:
        return DASH
    # 99.5 % isn't 100 %, but 99.97 % shows as 100.
    return f"{value:.1f}" if 99 <= value < 99.95 else f"{value:.0f}"


def _group_label(name: str, group: str) -> str:
    label = CONFIGURATIONS[name]
    if group == "all":
        return label
    if name != "redis":
        return label
    where = "publisher's node" if group == "node1" else "cross-node"
    return f"{label}: {group.replace('node', 'node ')} ({where})"


def _generator_bound(cpu: dict[str, float]) -> bool:
    generator = max(cpu.get("gen_cpu_pct", 0.0), cpu.get("gen_core_busy_pct", 0.0))
    busy = max(cpu.get("server_cpu_pct", 0.0), cpu.get("server_core_busy_pct", 0.0))
    return bool(generator and busy) and generator >= _BUSY and busy < _IDLE


def _results_table(document: dict[str, Any]) -> list[str]:
    header = ["configuration", "subscribers", "deliveries/s", "% in time", "% delivered"]
    header += ["p50 ms", "p99 ms"]
    rows = []
    for name in document["configurations"]:
        summary = document["medians"].get(name) or {}
        groups = [g for g in ("all", "node1", "node2") if g in summary]
        if name != "redis":
            groups = groups[:1]
        if not groups:
            rows.append([CONFIGURATIONS[name], *[DASH] * 6])
            continue
        bound = " †" if _generator_bound(summary.get("cpu", {})) else ""
        for group in groups:
            metrics = summary[group]
            rows.append(
                [
                    _group_label(name, group) + (bound if group == "all" else ""),
                    f"{metrics.get('subscribers', 0):,.0f}",
                    format_number(metrics.get("deliveries_per_s")),
                    _percent(metrics.get("in_time_pct")),
                    _percent(metrics.get("delivered_pct")),
                    format_number(metrics.get("p50_ms")),
                    format_number(metrics.get("p99_ms")),
                ]
            )
    return _table(header, rows)


def _ratio_table(document: dict[str, Any]) -> list[str]:
    found = document["ratios"]
    if not found:
        return ["No ratio: the memory or the Redis configuration has no successful run."]
    header = ["2 nodes + Redis, subscribers", "deliveries/s per subscriber", "% delivered"]
    header += ["p50", "p99"]
    labels = {"all": "all", "node1": "node 1 (publisher's)", "node2": "node 2 (cross-node)"}
    rows = []
    for group, label in labels.items():
        values = found.get(group)
        if values is None:
            continue
        cells = [
            DASH if (value := values.get(metric)) is None else f"{value:.2f}{TIMES}"
            for metric in RATIO_METRICS
        ]
        rows.append([label, *cells])
    return _table(header, rows)


def _cpu_table(document: dict[str, Any]) -> list[str]:
    header = ["configuration", "node 1 %", "node 2 %", "redis %", "server side % (CPU busy)"]
    header += ["generator % (CPU busy)", "generator µs/delivery"]
    rows = []
    for name in document["configurations"]:
        cpu = (document["medians"].get(name) or {}).get("cpu", {})
        first = cpu.get("relay_cpu_pct", cpu.get("node1_cpu_pct"))
        rows.append(
            [
                CONFIGURATIONS[name] + (" †" if _generator_bound(cpu) else ""),
                _percent(first),
                _percent(cpu.get("node2_cpu_pct")),
                _percent(cpu.get("redis_cpu_pct")),
                _pair(cpu, "server"),
                _pair(cpu, "gen"),
                format_number(cpu.get("gen_us_per_delivery")),
            ]
        )
    return _table(header, rows)


def _pair(cpu: dict[str, float], side: str) -> str:
    """A side's process CPU use and, in parentheses, how busy its CPU was."""
    return f"{_percent(cpu.get(f'{side}_cpu_pct'))} ({_percent(cpu.get(f'{side}_core_busy_pct'))})"


def headroom(document: dict[str, Any]) -> tuple[float, float] | None:
    """The generator's capacity in deliveries/s, and its ratio to the best hub configuration.

    The capacity is one CPU second divided by the generator's CPU time per
    delivery in the ceiling run (where the server side does the least work),
    or in the cheapest run if there was no ceiling. ``None`` without data.
    """
    summary = document["medians"]
    costs = [
        cpu["gen_us_per_delivery"]
        for name in ("ceiling", "memory", "redis")
        if "gen_us_per_delivery" in (cpu := (summary.get(name) or {}).get("cpu", {}))
    ]
    best = max(
        (
            (summary.get(name) or {}).get("all", {}).get("deliveries_per_s", 0.0)
            for name in ("memory", "redis")
        ),
        default=0.0,
    )
    if not costs or not best:
        return None
    capacity = 1e6 / costs[0]
    return capacity, capacity / best


def _machine_lines(document: dict[str, Any]) -> list[str]:
    machine, config = document["machine"], document["config"]
    libraries = ", ".join(
        f"{name} {version}" for name, version in machine["libraries"].items() if version
    )
    pinned = (
        f"redis-server, the hub nodes and the relay on CPU {config['server_cpu']}, "
        f"the load generator on CPU {config['client_cpu']}"
        if config["server_cpu"] is not None
        else "not pinned"
    )

    def load(values: Sequence[float] | None) -> str:
        return "?" if not values else " ".join(f"{value:.2f}" for value in values)

    return [
        f"- Date: {machine['date']}; machine: {machine['cpu']}, {machine['cpus']} CPUs, "
        f"{machine['system']}, {machine['python']}",
        f"- Libraries: {libraries}; openline commit {machine.get('openline_commit') or '?'}",
        f"- Load: {config['subscribers']:,} subscribers of one channel, spread evenly over "
        f"the nodes; one publisher on node 1, {config['rate']:g} msg/s, each "
        '`{"t": send time, "seq": n}`',
        f"- Method: {pinned}; uvloop everywhere; 127.0.0.1; {config['warmup_s']:g} s warm-up, "
        f"{config['window_s']:g} s windows, medians of {config['repetitions']} repetition(s); "
        f"deadline {config['deadline_ms']:g} ms"
        + ("; **quick smoke mode: not a measurement**" if config["quick"] else ""),
        f"- Load average before / after: {load(machine.get('load_average'))} / "
        f"{load(machine.get('load_average_after'))}",
    ]


def markdown(document: dict[str, Any]) -> str:
    """The results as Markdown: medians, ratios, CPU use and the generator's headroom."""
    lines = ["# openline bench --cluster", "", *_machine_lines(document), ""]
    lines += ["## Results", "", *_results_table(document), ""]
    lines += [
        "## Ratio: 2 nodes + Redis ÷ 1 node, memory engine",
        "",
        "Median of per-repetition quotients, each group of the two-node run against all of "
        "the memory node's subscribers: below 1 means fewer deliveries, above 1 a longer "
        "latency.",
        "",
        *_ratio_table(document),
        "",
    ]
    lines += [
        "## CPU during the window",
        "",
        "Each process's CPU use, and how busy the server CPU and the generator's CPU were "
        "(kernel work on loopback included). † marks a run where the generator or its CPU "
        f"was at least {_BUSY:.0f} % busy while the server side was below {_IDLE:.0f} %: "
        "the generator set the pace.",
        "",
        *_cpu_table(document),
    ]
    found = headroom(document)
    if found is not None:
        capacity, ratio = found
        lines += [
            "",
            f"Generator headroom: at its measured cost per delivery it could take about "
            f"{format_number(capacity)} deliveries/s on its CPU, {ratio:.1f}{TIMES} the best "
            "hub configuration's rate.",
        ]
    lines.append("")
    if document["notes"]:
        lines += ["## Notes", "", *[f"- {note}" for note in document["notes"]], ""]
    return "\n".join(lines)


def write(document: dict[str, Any], output: pathlib.Path) -> list[pathlib.Path]:
    """Write ``cluster.json`` and ``cluster.md`` into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "cluster.json"
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    md_path = output / "cluster.md"
    md_path.write_text(markdown(document))
    return [json_path, md_path]
