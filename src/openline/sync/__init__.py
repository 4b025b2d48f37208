"""Blocking front-ends, for scripts, tests and threads: :func:`connect` and :mod:`.hub`.

``openline.sync.connect`` opens a plain WebSocket connection with blocking
methods; ``openline.sync.hub`` wraps the resilient hub client. Both run the
asyncio implementation on one background event loop thread per process; see
``docs/sync.md``.
"""

from __future__ import annotations

from .client import ClientConnection, connect

__all__ = ["ClientConnection", "connect"]
