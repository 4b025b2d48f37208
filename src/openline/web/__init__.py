"""The web side of ``openline serve``: the demo page, the browser client, the ticker.

Files served to browsers live beside this module: ``index.html``, ``demo.css``,
``demo.js`` (the demo page) and ``openline.js`` (the browser client, a plain ES
module typed with JSDoc). :class:`App` serves them next
to the hub; :func:`create_app` builds what the command line runs.
"""

from __future__ import annotations

from .app import WS_PATH, App, create_app
from .static import StaticFiles
from .ticker import Ticker

__all__ = ["WS_PATH", "App", "StaticFiles", "Ticker", "create_app"]
