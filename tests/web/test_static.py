"""Static files and plain HTTP answers, without a network."""

from __future__ import annotations

import pytest

from openline.protocol.http11 import Headers, Request
from openline.web.app import DEMO_FILES
from openline.web.static import (
    Asset,
    StaticFiles,
    http_response,
    json_response,
    not_found,
    request_path,
)


def get(path: str, method: str = "GET", **headers: str) -> Request:
    return Request(path, Headers([(k.replace("_", "-"), v) for k, v in headers.items()]), method)


@pytest.fixture(scope="module")
def files() -> StaticFiles:
    return StaticFiles(DEMO_FILES, package="openline.web", headers={"/": [("X-Extra", "yes")]})


def test_every_demo_file_is_in_the_package(files: StaticFiles) -> None:
    for path in DEMO_FILES:
        assert files.assets[path].body, path


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/openline.js", "text/javascript; charset=utf-8"),
        ("/demo.js", "text/javascript; charset=utf-8"),
        ("/demo.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ],
)
def test_get_serves_a_file_with_type_length_etag_and_cache_control(
    files: StaticFiles, path: str, content_type: str
) -> None:
    response = files.respond(get(path), path)
    assert response.status == 200
    headers = response.headers
    assert headers["Content-Type"] == content_type
    assert headers["Content-Length"] == str(len(response.body))
    assert headers["Cache-Control"] == "no-cache"
    assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Connection"] == "close"
    assert response.body == files.assets[path].body


def test_extra_headers_go_with_their_path_only(files: StaticFiles) -> None:
    assert files.respond(get("/"), "/").headers["X-Extra"] == "yes"
    assert "X-Extra" not in files.respond(get("/demo.css"), "/demo.css").headers


def test_head_sends_the_headers_without_the_body(files: StaticFiles) -> None:
    full = files.respond(get("/openline.js"), "/openline.js")
    head = files.respond(get("/openline.js", "HEAD"), "/openline.js")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == full.headers["Content-Length"]
    assert head.headers["ETag"] == full.headers["ETag"]


@pytest.mark.parametrize("template", ["{}", "W/{}", '"other", {}', "*"])
def test_a_matching_if_none_match_gets_304_without_a_body(
    files: StaticFiles, template: str
) -> None:
    etag = files.assets["/demo.css"].etag
    response = files.respond(get("/demo.css", If_None_Match=template.format(etag)), "/demo.css")
    assert response.status == 304
    assert response.body == b""
    assert response.headers["ETag"] == etag
    assert "Content-Length" not in response.headers


def test_a_stale_if_none_match_gets_the_file(files: StaticFiles) -> None:
    response = files.respond(get("/demo.css", If_None_Match='"stale"'), "/demo.css")
    assert response.status == 200 and response.body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_405_with_allow(files: StaticFiles, method: str) -> None:
    response = files.respond(get("/", method), "/")
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_an_unknown_extension_is_served_as_octet_stream() -> None:
    assert Asset.from_bytes(b"x", "blob.unknownext").content_type == "application/octet-stream"
    assert Asset.from_bytes(b"x", "README").content_type == "application/octet-stream"


def test_the_etag_follows_the_content() -> None:
    assert Asset.from_bytes(b"a", "a.txt").etag == Asset.from_bytes(b"a", "b.txt").etag
    assert Asset.from_bytes(b"a", "a.txt").etag != Asset.from_bytes(b"b", "a.txt").etag


def test_a_missing_file_fails_at_startup() -> None:
    with pytest.raises(FileNotFoundError):
        StaticFiles({"/": "missing.html"}, package="openline.web")


@pytest.mark.parametrize(
    ("target", "path"),
    [("/", "/"), ("/demo.js?v=2", "/demo.js"), ("/a%20b", "/a b"), ("?x", "/")],
)
def test_request_path_drops_the_query_and_decodes(target: str, path: str) -> None:
    assert request_path(Request(target, Headers())) == path


def test_not_found_escapes_and_shortens_the_path() -> None:
    response = not_found("/\x1b[31m" + "x" * 300)
    assert response.status == 404
    assert b"\\x1b[31m" in response.body
    assert b"\x1b" not in response.body
    assert response.body.endswith(b"...\n")


def test_json_response_is_never_cached() -> None:
    response = json_response(200, {"a": [1, None]})
    assert response.body == b'{"a":[1,null]}'
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"
    assert json_response(200, {"a": 1}, head=True).body == b""


def test_http_response_uses_the_standard_reason_phrase() -> None:
    assert http_response(426, b"").reason == "Upgrade Required"
