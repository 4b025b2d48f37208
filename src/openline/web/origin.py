"""Origin checks for what `openline serve` answers: the policy lives in the hub
(:mod:`openline.hub.origin`, shared with the hub's ASGI app); this module adds the HTTP
refusal the web app sends."""

from __future__ import annotations

from ..hub.origin import ANY_ORIGIN, Origin, OriginPolicy, parse_origin, request_origin
from ..protocol.http11 import Response
from .static import http_response

__all__ = ["ANY_ORIGIN", "Origin", "OriginPolicy", "forbidden", "parse_origin", "request_origin"]


def forbidden(reason: str) -> Response:
    """The refusal of a request that :meth:`OriginPolicy.refusal` refused: 403, one line."""
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    return http_response(403, f"{reason}\n".encode(), headers)
