"""The results as a PNG chart: one panel per scenario, a bar per server.

Needs matplotlib (in the ``bench`` extra); without it, :func:`draw` returns
``None`` and the report has tables only.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from .numbers import format_number
from .scenarios import LOWER_IS_BETTER, METRICS

__all__ = ["draw"]

_COLORS = {"openline": "#d9480f", "openline-lowlevel": "#f08c00", "raw": "#adb5bd"}
_PEER_COLOR = "#4c6ef5"


def _panels(document: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    panels = []
    for scenario in document["scenarios"]:
        panels.append((scenario, scenario["primary"]))
        if scenario["kind"] == "idle":
            panels.append((scenario, "handshakes_per_s"))
        elif any("server_us_per_msg" in (m or {}) for m in scenario["medians"].values()):
            panels.append((scenario, "server_us_per_msg"))
    return panels


def _values(scenario: dict[str, Any], server: str, metric: str) -> list[float]:
    runs = scenario["runs"].get(server) or []
    return [
        run["metrics"][metric]
        for run in runs
        if run and "error" not in run and metric in run.get("metrics", {})
    ]


def draw(document: dict[str, Any], path: pathlib.Path) -> pathlib.Path | None:
    """Draw the chart into ``path``; ``None`` when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = _panels(document)
    servers = [
        server
        for server in document["servers"]
        if any(_values(scenario, server, metric) for scenario, metric in panels)
    ]
    columns = min(4, len(panels)) or 1
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(4.2 * columns, 0.45 * len(servers) * rows + 1.4 * rows + 0.8),
        squeeze=False,
    )
    for index, (scenario, metric) in enumerate(panels):
        axis = axes[index // columns][index % columns]
        shown = [s for s in servers if s in scenario["runs"] and _values(scenario, s, metric)]
        medians = [scenario["medians"][s][metric] for s in shown]
        lows = [m - min(_values(scenario, s, metric)) for s, m in zip(shown, medians, strict=True)]
        highs = [max(_values(scenario, s, metric)) - m for s, m in zip(shown, medians, strict=True)]
        colors = [_COLORS.get(s, _PEER_COLOR) for s in shown]
        # Every server keeps its row, so that panels line up and bars keep their height.
        positions = [len(servers) - 1 - servers.index(s) for s in shown]
        axis.barh(positions, medians, xerr=[lows, highs], color=colors, capsize=2, height=0.7)
        axis.set_ylim(-0.6, len(servers) - 0.4)
        axis.set_yticks(positions, shown, fontsize=8)
        for position, value in zip(positions, medians, strict=True):
            axis.text(value, position, " " + format_number(value), va="center", fontsize=7)
        unit = METRICS[metric][1]
        better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        axis.set_title(f"{scenario['name']}\n{unit}, {better}", fontsize=9)
        axis.tick_params(axis="x", labelsize=7)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: format_number(value)))
        axis.margins(x=0.25)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    machine, config = document["machine"], document["config"]
    figure.suptitle(
        f"openline bench — {machine['cpu']}, {machine['cpus']} CPUs, {machine['python']}, "
        f"{config['window_s']:g} s windows, medians of {config['repetitions']} (bars: min to max)"
        + (" — QUICK SMOKE RUN" if config["quick"] else ""),
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
