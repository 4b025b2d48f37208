"""Header values of the opening handshake: RFC 9110 lists, tokens and parameters.

Parses and builds ``Connection``, ``Upgrade``, ``Sec-WebSocket-Protocol`` and
``Sec-WebSocket-Extensions`` (RFC 6455, sections 4.3 and 9.1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeAlias, TypeVar

from ..exceptions import InvalidHeaderValue
from .extensions.base import ExtensionParameter

__all__ = [
    "ExtensionHeader",
    "build_extensions",
    "build_subprotocols",
    "check_token",
    "parse_connection",
    "parse_extensions",
    "parse_subprotocols",
    "parse_upgrade",
]

#: One extension in ``Sec-WebSocket-Extensions``: its name and its parameters.
ExtensionHeader: TypeAlias = tuple[str, list[ExtensionParameter]]

_T = TypeVar("_T")

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS_RE = re.compile(r"[ \t]*")
_QUOTED_RE = re.compile(r'"((?:[\t !#-\[\]-~\x80-\xff]|\\[\t !-~\x80-\xff])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


def parse_connection(value: str) -> list[str]:
    """Parse a ``Connection`` header: a list of tokens (RFC 9110, section 7.6.1).

    Raises:
        InvalidHeaderValue: The value isn't a list of tokens.
    """
    return _parse_list(value, "Connection", _parse_token)


def parse_upgrade(value: str) -> list[str]:
    """Parse an ``Upgrade`` header: protocols such as ``websocket`` or ``foo/1.1``.

    RFC 9110, section 7.8: ``protocol = protocol-name ["/" protocol-version]``.

    Raises:
        InvalidHeaderValue: The value isn't a list of protocols.
    """
    return _parse_list(value, "Upgrade", _parse_protocol)


def parse_subprotocols(value: str) -> list[str]:
    """Parse a ``Sec-WebSocket-Protocol`` header: a list of tokens (RFC 6455, section 11.3.4).

    Raises:
        InvalidHeaderValue: The value isn't a list of tokens.
    """
    return _parse_list(value, "Sec-WebSocket-Protocol", _parse_token)


def parse_extensions(value: str) -> list[ExtensionHeader]:
    """Parse a ``Sec-WebSocket-Extensions`` header (RFC 6455, section 9.1).

    Each extension is a token followed by ``; name`` or ``; name=value``
    parameters; a value is a token or a quoted string.

    Returns:
        ``(name, [(parameter, value or None), ...])`` for each extension, in order.

    Raises:
        InvalidHeaderValue: The value doesn't follow the grammar, or a quoted
            parameter value isn't a token once unquoted.
    """
    return _parse_list(value, "Sec-WebSocket-Extensions", _parse_extension)


def build_extensions(extensions: Sequence[tuple[str, Sequence[ExtensionParameter]]]) -> str:
    """Build a ``Sec-WebSocket-Extensions`` value; the inverse of :func:`parse_extensions`.

    Raises:
        ValueError: A name or parameter value isn't a token.
    """
    items = []
    for name, params in extensions:
        parts = [check_token(name, "extension name")]
        for param, param_value in params:
            check_token(param, "extension parameter")
            if param_value is None:
                parts.append(param)
            else:
                # RFC 6455, section 9.1: a value must be a token even when quoted,
                # so a token is always written as is.
                parts.append(f"{param}={check_token(param_value, 'parameter value')}")
        items.append("; ".join(parts))
    return ", ".join(items)


def build_subprotocols(subprotocols: Sequence[str]) -> str:
    """Build a ``Sec-WebSocket-Protocol`` value; the inverse of :func:`parse_subprotocols`.

    Raises:
        ValueError: A subprotocol isn't a token.
    """
    return ", ".join(check_token(subprotocol, "subprotocol") for subprotocol in subprotocols)


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is an RFC 9110 token (section 5.6.2).

    Raises:
        ValueError: It isn't; the message starts with ``what``.
    """
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"{what} isn't a token: {value!r}")
    return value


def _parse_list(
    value: str, name: str, parse_item: Callable[[str, int, str], tuple[_T, int]]
) -> list[_T]:
    # RFC 9110, section 5.6.1: #item = [ item ] *( OWS "," OWS [ item ] ); a recipient
    # MUST accept empty items and ignore them.
    items: list[_T] = []
    pos = 0
    while True:
        pos = _skip_ows(value, pos)
        if pos < len(value) and value[pos] != ",":
            item, pos = parse_item(value, pos, name)
            items.append(item)
            pos = _skip_ows(value, pos)
        if pos == len(value):
            return items
        if value[pos] != ",":
            raise InvalidHeaderValue(name, value)
        pos += 1


def _skip_ows(value: str, pos: int) -> int:
    match = _OWS_RE.match(value, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _parse_token(value: str, pos: int, name: str) -> tuple[str, int]:
    match = _TOKEN_RE.match(value, pos)
    if match is None:
        raise InvalidHeaderValue(name, value)
    return match[0], match.end()


def _parse_protocol(value: str, pos: int, name: str) -> tuple[str, int]:
    protocol, pos = _parse_token(value, pos, name)
    if value.startswith("/", pos):
        version, pos = _parse_token(value, pos + 1, name)
        protocol = f"{protocol}/{version}"
    return protocol, pos


def _parse_extension(value: str, pos: int, name: str) -> tuple[ExtensionHeader, int]:
    extension, pos = _parse_token(value, pos, name)
    params: list[ExtensionParameter] = []
    while True:
        after = _skip_ows(value, pos)
        if not value.startswith(";", after):
            return (extension, params), pos
        param, pos = _parse_token(value, _skip_ows(value, after + 1), name)
        after = _skip_ows(value, pos)
        if not value.startswith("=", after):
            params.append((param, None))
            continue
        param_value, pos = _parse_param_value(value, _skip_ows(value, after + 1), name)
        params.append((param, param_value))


def _parse_param_value(value: str, pos: int, name: str) -> tuple[str, int]:
    if not value.startswith('"', pos):
        return _parse_token(value, pos, name)
    match = _QUOTED_RE.match(value, pos)
    if match is None:
        raise InvalidHeaderValue(name, value)
    unquoted = _QUOTED_PAIR_RE.sub(r"\1", match[1])
    # RFC 6455, section 9.1: a quoted value MUST conform to the token ABNF once unquoted.
    if not _TOKEN_RE.fullmatch(unquoted):
        raise InvalidHeaderValue(name, value)
    return unquoted, match.end()
