"""The hub app's argument checks, scope types, and lifespan failures, driven by hand.

The lifespan tests play the server's side of the ASGI lifespan protocol (two
queues), which needs no network: the other files run the same code under
uvicorn and hypercorn.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import pathlib
from typing import Any

import pytest

import openline.hub
from openline.hub import Hub
from openline.hub.asgi import HubApp, refusal_code, request_from_scope, route


async def lifespan(app: Any, *messages: str) -> list[dict[str, Any]]:
    """Send lifespan ``messages`` to ``app``; return what it answered."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    answers: list[dict[str, Any]] = []
    for kind in messages:
        incoming.put_nowait({"type": kind})

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, incoming.get, send), 5)
    return answers


def test_arguments_are_checked() -> None:
    hub = Hub()
    with pytest.raises(ValueError, match="write_limit"):
        hub.asgi(write_limit=(1, 2))
    with pytest.raises(ValueError, match="origin"):
        hub.asgi(origins=["not an origin"])
    with pytest.raises(ValueError, match="a route is a path"):
        route({"ws": hub.asgi()})
    with pytest.raises(ValueError, match="a route is a path"):
        route({"/ws/": hub.asgi()})
    assert hub.asgi(write_limit=4096).write_limit == (4096, 1024)
    assert refusal_code(401) == 4401


async def test_an_unknown_scope_type_is_refused() -> None:
    with pytest.raises(ValueError, match="no 'email' scopes"):
        await HubApp(Hub())({"type": "email"}, None, None)  # type: ignore[arg-type]


async def test_lifespan_runs_the_hub_between_startup_and_shutdown() -> None:
    hub = Hub()
    answers = await lifespan(hub.asgi(), "lifespan.startup", "lifespan.shutdown")
    assert [a["type"] for a in answers] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert not hub.is_running


async def test_a_hub_that_cannot_start_fails_the_startup() -> None:
    hub = Hub()
    async with hub.running():
        answers = await lifespan(route({"/ws": hub.asgi()}), "lifespan.startup")
    assert [a["type"] for a in answers] == ["lifespan.startup.failed"]
    assert answers[0]["message"] == "openline hub: the hub is running already"


async def test_running_twice_at_once_is_refused() -> None:
    hub = Hub()
    async with hub.running():
        assert hub.is_running
        with pytest.raises(RuntimeError, match="running already"):
            async with hub.running():
                pass


def test_a_raw_path_with_a_space_is_quoted() -> None:
    request = request_from_scope({"raw_path": b"/a b", "query_string": b"x=1", "headers": []})
    assert request.path == "/a%20b?x=1"


def test_the_public_names_are_exported() -> None:
    for module in ("asgi", "asgi_link", "peer"):
        imported = importlib.import_module(f"openline.hub.{module}")
        for name in imported.__all__:
            assert hasattr(imported, name), (module, name)


FRAMEWORKS = {"starlette", "fastapi", "django", "uvicorn", "hypercorn", "asgiref"}


def test_the_hub_imports_no_web_framework_nor_server() -> None:
    hub_package = pathlib.Path(openline.hub.__file__).parent
    for path in sorted(hub_package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FRAMEWORKS, f"{path.name} imports {name}"
