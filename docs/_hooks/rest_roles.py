"""Griffe extension: the docstrings' Sphinx markup, as the reference site shows it.

The docstrings are written for reading in the source and in ``help()``, with Sphinx roles
(``:class:`~openline.asyncio.client.connect```) and reST links. mkdocstrings renders Markdown,
so this turns each role into a cross-reference to the object's entry in the reference, when
the object has one, and into plain code otherwise; and each reST link into a Markdown link.
A line ending in ``::`` ends in ``:``. The docstrings themselves stay as they are.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):`(?P<target>[^`]+)`")
LINK = re.compile(r"`(?P<text>[^`<]+?) <(?P<url>https?://[^>]+)>`_")
# "as follows::" introduces a literal block in reST; Markdown needs only the indentation.
LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)


class RestRoles(griffe.Extension):
    """Rewrite Sphinx roles and reST links in every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj, obj.docstring.value, loader)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    """``obj`` and every object defined in it (aliases are documented where they point)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_walk(member))  # type: ignore[arg-type]  # not an alias, an Object
    return found


def _convert(obj: griffe.Object, text: str, loader: griffe.GriffeLoader) -> str:
    text = LITERAL.sub(":", text)
    text = LINK.sub(lambda match: f"[{match['text']}]({match['url']})", text)
    return ROLE.sub(lambda match: _reference(obj, match["target"], loader), text)


def _reference(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str:
    """An optional cross-reference: a link where the target is documented, else code."""
    short = target.startswith("~")
    target = target.lstrip("~!")
    title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    code = f"<code>{html.escape(title)}</code>"
    path = _resolve(obj, target, loader)
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _resolve(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str | None:
    """The full path of ``target`` as seen from ``obj``, as Sphinx would look it up."""
    module = obj.module.path
    package = module.rsplit(".", 1)[0]
    if target.startswith("."):
        candidates = [package + target, module + target]
    else:
        scopes = [scope.path for scope in (obj, obj.parent) if scope is not None]
        candidates = [target, *(f"{scope}.{target}" for scope in scopes), f"{module}.{target}"]
    for candidate in candidates:
        try:
            loader.modules_collection.get_member(candidate)
        except (
            KeyError,
            ValueError,
            IndexError,
            griffe.AliasResolutionError,
            griffe.CyclicAliasError,
        ):
            continue
        return candidate
    return None
