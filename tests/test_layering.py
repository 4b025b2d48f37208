"""The protocol core imports nothing but the standard library and itself."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

import openline

SRC = pathlib.Path(openline.__file__).parent
FORBIDDEN = {"asyncio", "socket", "ssl", "threading", "selectors", "time", "uvloop", "redis"}


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


@pytest.mark.parametrize(
    "path", sorted((SRC / "protocol").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_protocol_core_uses_only_the_standard_library(path: pathlib.Path) -> None:
    for name, level in _imports(path):
        if level > 0:
            continue  # relative: stays inside openline
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names, f"{path.name} imports {name}"
        assert top not in FORBIDDEN, f"{path.name} imports {name}: no I/O in the core"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_only_the_uvicorn_engine_imports_uvicorn(path: pathlib.Path) -> None:
    if path == SRC / "uvicorn.py":
        return
    for name, level in _imports(path):
        if level == 0:
            assert name.split(".")[0] != "uvicorn", f"{path.name} imports {name}"
