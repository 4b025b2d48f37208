"""Build hook: the API reference has one page per module, generated from the navigation.

A nav entry ``reference/openline.X.md`` that has no file in docs/ becomes a page that renders
``openline.X`` from its docstrings, so documenting a new module takes one line in mkdocs.yml.
A real file at that path wins, for a module whose page needs prose around the reference.
"""

from __future__ import annotations

from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PREFIX = "reference/"


def _paths(nav: Any) -> list[str]:
    """Every page path in the navigation, depth first."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [path for value in nav.values() for path in _paths(value)]
    if isinstance(nav, list):
        return [path for item in nav for path in _paths(item)]
    return []


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for path in _paths(config.nav):
        if not (path.startswith(PREFIX) and path.endswith(".md")) or files.get_file_from_path(path):
            continue
        module = path[len(PREFIX) : -len(".md")]
        content = f"# `{module}`\n\n::: {module}\n"
        files.append(File.generated(config, path, content=content))
    return files
