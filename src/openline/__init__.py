"""openline: a fast, strictly correct WebSocket stack for asyncio."""

from __future__ import annotations

__version__ = "0.1.0"
