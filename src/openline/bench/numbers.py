"""How the reports write numbers: shared by the tables (:mod:`.report`) and the chart."""

from __future__ import annotations

__all__ = ["DASH", "TIMES", "format_number"]

#: Shown for a value nobody measured.
DASH = "\u2013"
#: The multiplication sign of ratios and of "connections x in flight".
TIMES = "\u00d7"


def format_number(value: float | None) -> str:
    """Three significant digits at most, with ``k`` and ``M`` for thousands and millions."""
    if value is None:
        return DASH
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.2f}M"
    if size >= 1e4:
        return f"{value / 1e3:.1f}k"
    if size >= 1e3:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
