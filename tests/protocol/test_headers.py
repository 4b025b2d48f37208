"""Header values of the opening handshake: lists, tokens, extension parameters."""

from __future__ import annotations

import pytest

from openline.exceptions import InvalidHeaderValue
from openline.protocol.headers import (
    build_extensions,
    build_subprotocols,
    check_token,
    parse_connection,
    parse_extensions,
    parse_subprotocols,
    parse_upgrade,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Upgrade", ["Upgrade"]),
        ("keep-alive, Upgrade", ["keep-alive", "Upgrade"]),
        ("  upgrade\t,\tclose  ", ["upgrade", "close"]),
        (",, upgrade ,,", ["upgrade"]),  # RFC 9110, 5.6.1: empty items are ignored
        ("", []),
    ],
)
def test_connection_is_a_list_of_tokens(value: str, expected: list[str]) -> None:
    assert parse_connection(value) == expected


@pytest.mark.parametrize("value", ["upgrade close", "upgrade;", "up grade", '"upgrade"', "é"])
def test_connection_refuses_what_isnt_a_token_list(value: str) -> None:
    with pytest.raises(InvalidHeaderValue) as caught:
        parse_connection(value)
    assert (caught.value.name, caught.value.value) == ("Connection", value)


def test_upgrade_accepts_protocol_versions() -> None:
    assert parse_upgrade("websocket") == ["websocket"]
    assert parse_upgrade("HTTP/2.0, websocket, foo/1") == ["HTTP/2.0", "websocket", "foo/1"]
    for value in ("websocket/", "/1", "a/b/c"):
        with pytest.raises(InvalidHeaderValue, match="Upgrade"):
            parse_upgrade(value)


def test_subprotocols_parse_and_build_are_inverse() -> None:
    assert parse_subprotocols("chat, superchat") == ["chat", "superchat"]
    assert build_subprotocols(["chat", "openline.v1"]) == "chat, openline.v1"
    assert parse_subprotocols(build_subprotocols(["a", "b.c"])) == ["a", "b.c"]
    with pytest.raises(ValueError, match="subprotocol isn't a token: 'two words'"):
        build_subprotocols(["two words"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("permessage-deflate", [("permessage-deflate", [])]),
        (
            "permessage-deflate; client_max_window_bits",
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            "permessage-deflate ; server_max_window_bits = 10 ; client_no_context_takeover",
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                )
            ],
        ),
        ('x; a="1"', [("x", [("a", "1")])]),  # quoted, a token once unquoted
        ('x; a="\\1"', [("x", [("a", "1")])]),  # a quoted pair
        ("a, b; c", [("a", []), ("b", [("c", None)])]),
    ],
)
def test_extensions_are_parsed_in_order(
    value: str, expected: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extensions(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "x; a=",
        "x; =1",
        'x; a="two words"',  # a quoted value must be a token once unquoted (RFC 6455, 9.1)
        'x; a="unterminated',
        "x;; a",
        "x y",
        "; a",
    ],
)
def test_malformed_extensions_are_refused(value: str) -> None:
    with pytest.raises(InvalidHeaderValue) as caught:
        parse_extensions(value)
    assert caught.value.name == "Sec-WebSocket-Extensions"
    assert str(caught.value).startswith("invalid Sec-WebSocket-Extensions header: ")


def test_extensions_build_and_parse_are_inverse() -> None:
    params: list[tuple[str, str | None]] = [
        ("server_no_context_takeover", None),
        ("client_max_window_bits", "12"),
    ]
    extensions = [("permessage-deflate", params), ("x-other", [])]
    built = build_extensions(extensions)
    assert built == (
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=12, x-other"
    )
    assert parse_extensions(built) == [(name, list(params)) for name, params in extensions]


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ([("bad name", [])], "extension name isn't a token: 'bad name'"),
        ([("x", [("bad param", None)])], "extension parameter isn't a token: 'bad param'"),
        ([("x", [("p", "1 2")])], "parameter value isn't a token: '1 2'"),
    ],
)
def test_building_refuses_what_isnt_a_token(
    extensions: list[tuple[str, list[tuple[str, str | None]]]], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        build_extensions(extensions)
    assert str(caught.value) == message


def test_check_token_returns_the_token() -> None:
    assert check_token("a!#$%&'*+-.^_`|~9", "x") == "a!#$%&'*+-.^_`|~9"
    for bad in ("", "a b", "a,b", "é", "a\r\n"):
        with pytest.raises(ValueError, match="thing isn't a token"):
            check_token(bad, "thing")
