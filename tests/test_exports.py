"""Every package's ``__all__``: complete for the docs, documented, and public only.

Read dynamically, so that moving a module (or a name between modules) keeps
this test meaningful: it walks the installed package, parses the Python code
blocks of README.md and docs/*.md, and the examples, rather than listing names.

* every public package has ``__all__``, and every module's ``__all__`` names
  things that exist, are public (no leading underscore) and are documented: a
  docstring of their own for classes and functions defined here, a ``#:``
  comment for other values (constants, type aliases, re-exported stdlib types);
* every name the docs and the examples import from openline, or reach as
  ``openline.x.Name``, is in its module's ``__all__`` (or is a submodule).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil
import re
import types

import pytest

import openline

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# Names that are dunder by convention, not private.
DUNDERS = {"__version__"}


def _public_modules() -> list[types.ModuleType]:
    modules = [openline]
    for info in pkgutil.walk_packages(openline.__path__, "openline."):
        parts = info.name.split(".")
        # __main__ runs the CLI when imported; _private modules are not API.
        if any(part.startswith("_") for part in parts[1:]):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


MODULES = _public_modules()
WITH_ALL = [module for module in MODULES if hasattr(module, "__all__")]


def _doc_comment(module: types.ModuleType, name: str) -> bool:
    """Whether an assignment of ``name`` in ``module`` follows a ``#:`` comment.

    The comment may sit a few lines up, above an ``if``/``try`` that assigns
    the name in each branch.
    """
    try:
        lines = inspect.getsource(module).splitlines()
    except (OSError, TypeError):
        return False
    assignment = re.compile(rf"\s*{re.escape(name)}\s*(?::[^=]*)?=(?!=)")
    for index, line in enumerate(lines):
        if assignment.match(line):
            above = [text.strip() for text in lines[max(0, index - 4) : index]]
            if any(text.startswith("#:") for text in above):
                return True
    return False


def _has_docstring(obj: object) -> bool:
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return False  # a value's __doc__ is its type's
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__")
        if not isinstance(doc, str) or not doc.strip():
            return False
        # A dataclass without a docstring gets "Name(field, ...)" made up for it.
        return not doc.startswith(f"{obj.__name__}(")
    return bool(obj.__doc__ and obj.__doc__.strip())


def _defined_in_openline(obj: object) -> bool:
    module = getattr(obj, "__module__", None)
    return (inspect.isclass(obj) or inspect.isroutine(obj)) and (
        isinstance(module, str) and module.split(".")[0] == "openline"
    )


@pytest.mark.parametrize(
    "package", [m for m in MODULES if hasattr(m, "__path__")], ids=lambda m: m.__name__
)
def test_every_public_package_declares_all(package: types.ModuleType) -> None:
    assert isinstance(getattr(package, "__all__", None), list), package.__name__


@pytest.mark.parametrize("module", WITH_ALL, ids=lambda m: m.__name__)
def test_all_names_exist_are_public_and_are_documented(module: types.ModuleType) -> None:
    names = module.__all__
    assert len(names) == len(set(names)), f"{module.__name__}.__all__ repeats a name"
    for name in names:
        assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"
        assert not name.startswith("_") or name in DUNDERS, f"{module.__name__}: {name}"
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue
        if _defined_in_openline(obj):
            assert _has_docstring(obj), f"{module.__name__}.{name} has no docstring"
        else:
            # Constants, aliases and re-exported types: documented where assigned,
            # here or in the module that defines them.
            owners = [module, *(m for m in WITH_ALL if name in m.__all__ and m is not module)]
            assert any(_doc_comment(owner, name) for owner in owners) or _has_docstring(obj), (
                f"{module.__name__}.{name} has neither a docstring nor a #: comment"
            )


# --- what the docs and the examples use -------------------------------------------------


def _python_blocks(path: pathlib.Path) -> list[str]:
    text = path.read_text()
    return re.findall(r"^```(?:python|py)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _references(source: str) -> set[str]:
    """``module:name`` pairs for ``from openline... import name`` and ``openline.x.name``."""
    found: set[str] = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a fragment: fall back to the two patterns
        for module, names in re.findall(r"from (openline[\w.]*) import ([\w, ]+)", source):
            found |= {f"{module}:{name.strip()}" for name in names.split(",") if name.strip()}
        for dotted in re.findall(r"\b(openline(?:\.\w+)+)", source):
            found.add(dotted)
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("openline"):
            found |= {f"{node.module}:{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None and dotted.startswith("openline."):
                found.add(dotted)
    return found


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _documented_references() -> list[tuple[str, str]]:
    references: set[tuple[str, str]] = set()
    for path in DOCS:
        for block in _python_blocks(path):
            references |= {(path.name, ref) for ref in _references(block)}
    for path in EXAMPLES:
        references |= {(path.name, ref) for ref in _references(path.read_text())}
    return sorted(references)


REFERENCES = _documented_references()


def _resolve(reference: str) -> tuple[types.ModuleType, str]:
    """The module that must export the reference's last name, and that name."""
    if ":" in reference:
        module_name, name = reference.split(":")
        return importlib.import_module(module_name), name
    parts = reference.split(".")
    # The longest importable prefix is the module; what follows are attributes.
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        obj: object = module
        for part in parts[cut:-1]:
            obj = getattr(obj, part)
        if cut == len(parts):
            return module, ""
        if not isinstance(obj, types.ModuleType):
            # An attribute of an exported object (a method): check the object.
            return module, parts[cut]
        return obj, parts[-1]
    raise AssertionError(f"{reference} names no module")


def test_the_docs_and_examples_use_openline_at_all() -> None:
    # The parsing above found something: an empty list would make the next test vacuous.
    names = {ref for _, ref in REFERENCES}
    assert "openline.hub:Client" in names or "openline.hub.Client" in names
    assert len(names) >= 5


@pytest.mark.parametrize(("where", "reference"), REFERENCES, ids=lambda v: str(v))
def test_every_name_the_docs_use_is_exported(where: str, reference: str) -> None:
    module, name = _resolve(reference)
    if not name:
        return  # a module itself
    if isinstance(getattr(module, name, None), types.ModuleType):
        return  # a submodule
    assert name in getattr(module, "__all__", ()), (
        f"{where} uses {reference}, but {module.__name__}.__all__ doesn't export {name}"
    )
