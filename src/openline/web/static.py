"""Plain HTTP beside the hub: static files and small JSON answers.

``openline.serve`` hands every request to a ``process_request`` hook before it
considers a WebSocket upgrade; a hook that returns a
:class:`~openline.protocol.http11.Response` answers plain HTTP instead. These
helpers build such responses for browsers: a fixed table of files held in
memory (no path from a request ever reaches the file system), ``GET`` and
``HEAD`` only, with ``Content-Type``, ``Content-Length``, an ``ETag`` and
``Cache-Control``.

The server closes the TCP connection after a plain HTTP answer (one request
per connection), so every response says ``Connection: close``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http
import json
import mimetypes
import urllib.parse
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from ..protocol.http11 import Headers, Request, Response

__all__ = [
    "Asset",
    "StaticFiles",
    "http_response",
    "json_response",
    "method_not_allowed",
    "not_found",
    "request_path",
]

#: Methods a static resource answers; anything else gets 405.
ALLOWED_METHODS = ("GET", "HEAD")

# Types that mimetypes may not know, or may spell differently per platform.
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ts": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

# Sent with every answer: browsers must not guess types, and pages aren't framed.
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Asset:
    """One file served from memory.

    Attributes:
        body: The file's bytes.
        content_type: The ``Content-Type`` value.
        etag: A strong entity tag (quoted), derived from the content.
        headers: More header fields, e.g. a ``Content-Security-Policy`` for pages.
    """

    body: bytes
    content_type: str
    etag: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_bytes(cls, body: bytes, name: str, headers: Iterable[tuple[str, str]] = ()) -> Asset:
        """Build an asset, guessing the type from ``name``'s extension."""
        suffix = "." + name.rpartition(".")[2].lower() if "." in name else ""
        content_type = _TYPES.get(suffix) or mimetypes.guess_type(name)[0]
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, content_type or "application/octet-stream", f'"{digest}"', tuple(headers))


class StaticFiles:
    """A fixed table of URL paths to files, read once, answered from memory.

    Args:
        files: URL path (``"/"``, ``"/app.js"``) to file name inside ``package``.
        package: The package whose data files are served.
        cache_control: The ``Cache-Control`` value. The default, ``no-cache``,
            lets browsers keep a copy but revalidate it on every use (a cheap
            304 thanks to the ``ETag``), so an upgraded server never runs with
            a stale script in a tab.
        headers: Extra header fields per URL path.

    Raises:
        FileNotFoundError: A file is missing from the package.
    """

    def __init__(
        self,
        files: Mapping[str, str],
        *,
        package: str,
        cache_control: str = "no-cache",
        headers: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    ) -> None:
        root = resources.files(package)
        extra = headers or {}
        self.cache_control = cache_control
        self.assets: dict[str, Asset] = {
            path: Asset.from_bytes((root / name).read_bytes(), name, extra.get(path, ()))
            for path, name in files.items()
        }

    def __contains__(self, path: str) -> bool:
        return path in self.assets

    def respond(self, request: Request, path: str) -> Response:
        """Answer a request for ``path``, which must be in the table.

        ``GET`` gets the file, ``HEAD`` its headers only, a matching
        ``If-None-Match`` a 304, and any other method a 405.
        """
        asset = self.assets[path]
        if request.method not in ALLOWED_METHODS:
            return method_not_allowed()
        headers = [
            ("Content-Type", asset.content_type),
            ("Cache-Control", self.cache_control),
            ("ETag", asset.etag),
            *asset.headers,
        ]
        if _etag_matches(request.headers.get("If-None-Match"), asset.etag):
            return http_response(304, b"", headers, head=True)
        return http_response(200, asset.body, headers, head=request.method == "HEAD")


def http_response(
    status: int,
    body: bytes,
    headers: Iterable[tuple[str, str]] = (),
    *,
    head: bool = False,
) -> Response:
    """Build a complete response that closes the connection.

    Args:
        status: The status code; the reason phrase is the standard one.
        body: The body; with ``head``, only its length is sent.
        headers: Header fields (``Content-Type`` and the like).
        head: Answer a ``HEAD`` request: the same headers, no body.
    """
    fields = Headers(headers)
    for name, value in _SECURITY_HEADERS:
        fields[name] = value
    # RFC 9110, section 8.6: a 304 describes the selected representation
    # without a body, so it carries no Content-Length of its own.
    if status != 304:
        fields["Content-Length"] = str(len(body))
    fields["Connection"] = "close"
    return Response(
        status, http.HTTPStatus(status).phrase, fields, b"" if head or status == 304 else body
    )


def json_response(status: int, value: Any, *, head: bool = False) -> Response:
    """Build a JSON response that no cache keeps (live data)."""
    body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    return http_response(status, body, headers, head=head)


def method_not_allowed() -> Response:
    """The answer to a method other than ``GET`` and ``HEAD``."""
    headers = [("Allow", ", ".join(ALLOWED_METHODS)), ("Content-Type", "text/plain; charset=utf-8")]
    return http_response(405, b"method not allowed: use GET or HEAD\n", headers)


def not_found(path: str) -> Response:
    """A plain-text 404 naming the path (escaped: it comes from the client)."""
    shown = path if len(path) <= 200 else path[:200] + "..."
    text = f"not found: {shown.encode('unicode_escape').decode('ascii')}\n"
    return http_response(404, text.encode(), [("Content-Type", "text/plain; charset=utf-8")])


def request_path(request: Request) -> str:
    """The path of the request target, without the query; percent-decoded."""
    return urllib.parse.unquote(urllib.parse.urlsplit(request.path).path) or "/"


def _etag_matches(header: str | None, etag: str) -> bool:
    """Tell whether an ``If-None-Match`` value matches ``etag`` (weak comparison)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    candidates = (tag.strip() for tag in header.split(","))
    return any(tag.removeprefix("W/") == etag for tag in candidates)
