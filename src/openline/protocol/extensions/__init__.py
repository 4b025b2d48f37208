"""WebSocket extensions: the interface in :mod:`.base`, permessage-deflate in :mod:`.deflate`."""

from __future__ import annotations

from .base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory

__all__ = ["ClientExtensionFactory", "Extension", "ExtensionParameter", "ServerExtensionFactory"]
