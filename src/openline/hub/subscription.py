"""The hub client's :class:`Subscription`; it lives in :mod:`openline.hub.client.subscription`.

This module keeps the import path of earlier releases working.
"""

from __future__ import annotations

from .client.subscription import (
    Subscription,
    parse_presence,
)

__all__ = [
    "Subscription",
    "parse_presence",
]
