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


# --- the import graph of src/openline ------------------------------------------------------


def _module_names() -> dict[str, pathlib.Path]:
    """Every module of the package by its dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    # A compiled module is known by its stub: it imports nothing of ours.
    for stub in SRC.rglob("*.pyi"):
        name = ".".join(stub.relative_to(SRC.parent).with_suffix("").parts)
        modules.setdefault(name, stub)
    return modules


MODULES = _module_names()


def _known(name: str) -> str | None:
    """The module of ours that importing ``name`` runs, or ``None`` if it isn't ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _dependencies(module: str) -> set[str]:
    """The modules of ours that ``module`` imports, wherever the import statement is.

    Top-level, function-level and ``TYPE_CHECKING`` imports all count: each is a
    dependency a reader must follow. Relative imports are resolved against the
    module's package; ``from package import name`` depends on the submodule
    ``package.name`` when there is one, else on the package.
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in map(_known, targets) if name is not None)
    found.discard(module)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


GRAPH = {module: _dependencies(module) for module in MODULES}


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_dependencies_resolve_relative_and_function_level_imports() -> None:
    # hub/hub.py imports `from .channel import Channel` at the top.
    assert "openline.hub.channel" in GRAPH["openline.hub.hub"]
    # cli/build.py imports `from ..web import create_app` inside a function.
    assert "openline.web" in GRAPH["openline.cli.build"]


def test_no_import_cycles_in_the_package() -> None:
    cycles = _cycles(GRAPH)
    shown = [
        " -> ".join(f"{m} ({', '.join(sorted(GRAPH[m] & set(cycle)))})" for m in cycle)
        for cycle in cycles
    ]
    assert not cycles, "import cycles (module (its imports within the cycle)):\n" + "\n".join(shown)


# --- layers: the arrows of docs/architecture.md --------------------------------------------

ARCHITECTURE = pathlib.Path(__file__).parents[1] / "docs" / "architecture.md"
LAYERS_MARKER = "<!-- layers, lowest first: tests/test_layering.py reads this list -->"


def _layers() -> list[list[str]]:
    """The numbered list after the marker in docs/architecture.md: one layer per line."""
    text = ARCHITECTURE.read_text()
    assert LAYERS_MARKER in text, "docs/architecture.md lost its list of layers"
    layers = []
    for line in text.split(LAYERS_MARKER, 1)[1].strip().splitlines():
        number, dot, names = line.partition(". ")
        if not dot or not number.isdigit():
            break
        layers.append([name.strip(" `") for name in names.split(",")])
    return layers


LAYERS = _layers()


def _layer(module: str) -> int | None:
    """The index of the layer a module belongs to: the one naming it or its package.

    The package root (``openline``) is matched only by its own name, so that a new
    top-level module must be given a layer in the doc.
    """
    found = None
    length = -1
    for index, names in enumerate(LAYERS):
        for name in names:
            matches = module == name or (name != "openline" and module.startswith(name + "."))
            if matches and len(name) > length:
                found, length = index, len(name)
    return found


def test_the_doc_lists_the_layers_in_order() -> None:
    top = [names[0] for names in LAYERS]
    assert top[:5] == [
        "openline.typing",
        "openline.protocol",
        "openline.asyncio",
        "openline.hub",
        "openline.web",
    ]
    assert "openline.cli" in LAYERS[-1]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_has_a_layer(module: str) -> None:
    assert _layer(module) is not None, f"{module} belongs to no layer of docs/architecture.md"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_layer_and_those_below(module: str) -> None:
    own = _layer(module)
    assert own is not None
    upward = sorted(
        f"{name} (layer {_layer(name)})" for name in GRAPH[module] if (_layer(name) or 0) > own
    )
    assert not upward, f"{module} (layer {own}) imports from above: {', '.join(upward)}"


def test_the_layer_check_sees_relative_imports() -> None:
    # web/app.py imports the hub with `from ..hub.auth import ...`: a relative
    # import that crosses a layer, seen as a dependency on openline.hub.auth.
    assert "openline.hub.auth" in GRAPH["openline.web.app"]
    hub = _layer("openline.hub")
    assert hub is not None
    assert _layer("openline.hub.auth") == hub
    assert _layer("openline.web.app") == hub + 1


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_command_line_imports_the_benchmarks(module: str) -> None:
    if module.startswith(("openline.bench", "openline.cli")):
        return
    bench = sorted(name for name in GRAPH[module] if name.startswith("openline.bench"))
    assert not bench, f"{module} imports {', '.join(bench)}"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_only_the_uvicorn_engine_imports_uvicorn(path: pathlib.Path) -> None:
    # The engine, and the benchmarks, which run peers (python-socketio) under uvicorn.
    if path == SRC / "uvicorn.py" or SRC / "bench" in path.parents:
        return
    for name, level in _imports(path):
        if level == 0:
            assert name.split(".")[0] != "uvicorn", f"{path.name} imports {name}"
