"""The wire format on its own: parsing edge cases and encoding, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openline.hub import wire
from openline.hub.backends.base import Message, PresenceSnapshot, PresenceUser

PARSER = wire.Parser(max_message_size=1000, max_channel_length=10, max_state_size=50)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def test_each_request_type_parses() -> None:
    assert PARSER.parse('{"type":"ping"}') == wire.Ping()
    assert PARSER.parse('{"type":"subscribe","ch":"a","rid":"x"}') == wire.Subscribe("a", rid="x")
    assert PARSER.parse(
        '{"type":"subscribe","ch":"a","since":{"epoch":"e","offset":0},"presence":true}'
    ) == wire.Subscribe("a", ("e", 0), True)
    assert PARSER.parse('{"type":"unsubscribe","ch":"a"}') == wire.Unsubscribe("a")
    assert PARSER.parse('{"type":"publish","ch":"a","data":{"b": [1, 2]},"id":"m"}') == (
        wire.Publish("a", b'{"b":[1,2]}', "m")
    )
    assert PARSER.parse('{"type":"state","ch":"a","state":{"t":1}}') == wire.SetState(
        "a", '{"t":1}'
    )
    assert PARSER.parse('{"type":"state","ch":"a","state":null}') == wire.SetState("a", None)
    assert PARSER.parse('{"type":"presence","ch":"a","rid":5}') == wire.GetPresence("a", 5)


def test_unknown_fields_are_ignored() -> None:
    assert PARSER.parse('{"type":"ping","future":[1],"rid":1}') == wire.Ping(1)


def test_the_size_limit_counts_utf8_bytes() -> None:
    ascii_ok = '{"type":"ping","pad":"' + "x" * 900 + '"}'
    assert PARSER.parse(ascii_ok) == wire.Ping()
    with pytest.raises(wire.RequestError) as caught:
        PARSER.parse('{"type":"ping","pad":"' + "€" * 330 + '"}')  # 990 bytes of euro signs
    assert caught.value.code == "too_large"


def test_a_deeply_nested_message_is_a_bad_request() -> None:
    with pytest.raises(wire.RequestError) as caught:
        wire.Parser(max_message_size=None, max_channel_length=10, max_state_size=None).parse(
            '{"type":"publish","ch":"a","data":' + "[" * 100000 + "]" * 100000 + "}"
        )
    assert caught.value.code == "bad_request"


def test_huge_integers_are_a_bad_request() -> None:
    with pytest.raises(wire.RequestError) as caught:
        wire.Parser(max_message_size=None, max_channel_length=10, max_state_size=None).parse(
            '{"type":"publish","ch":"a","data":' + "9" * 5000 + "}"
        )
    assert caught.value.code == "bad_request"


def test_a_request_error_reads_well() -> None:
    error = wire.RequestError("forbidden", "publish refused", rid=1, ch="a", id="m")
    assert str(error) == "forbidden: publish refused"
    assert json.loads(wire.encode_error(error)) == {
        "type": "error",
        "code": "forbidden",
        "reason": "publish refused",
        "rid": 1,
        "ch": "a",
        "id": "m",
    }


def test_unknown_types_are_shown_escaped_and_short() -> None:
    with pytest.raises(wire.RequestError) as caught:
        PARSER.parse(json.dumps({"type": "\x1b[31m" + "z" * 100}))
    assert caught.value.code == "unknown_type"
    assert "\x1b" not in caught.value.reason
    assert len(caught.value.reason) < 60


@given(json_values)
def test_published_data_comes_back_unchanged_in_a_message(data: Any) -> None:
    parser = wire.Parser(max_message_size=None, max_channel_length=10, max_state_size=None)
    request = parser.parse(json.dumps({"type": "publish", "ch": "é", "data": data}))
    assert isinstance(request, wire.Publish)
    message = Message("é", "ep", 3, request.data, {"user": "ü", "id": "m"})
    decoded = json.loads(wire.encode_message(wire.encode_str("é"), message))
    assert decoded == {
        "type": "message",
        "ch": "é",
        "epoch": "ep",
        "offset": 3,
        "user": "ü",
        "id": "m",
        "data": data,
    }


def test_server_messages_are_valid_json() -> None:
    snapshot = PresenceSnapshot(
        2, {"a": PresenceUser('{"n":1}', 2, '{"t":1}'), "b": PresenceUser("{}", 1)}
    )
    assert json.loads(wire.encode_presence("c", snapshot, "r")) == {
        "type": "presence",
        "ch": "c",
        "count": 2,
        "rid": "r",
        "users": [
            {"user": "a", "info": {"n": 1}, "clients": 2, "state": {"t": 1}},
            {"user": "b", "info": {}, "clients": 1},
        ],
    }
    assert json.loads(wire.encode_presence("c", PresenceSnapshot(0, {}))) == {
        "type": "presence",
        "ch": "c",
        "count": 0,
        "users": [],
    }
    assert json.loads(wire.encode_join("c", "u", None)) == {
        "type": "join",
        "ch": "c",
        "user": "u",
        "info": {},
    }
    assert json.loads(wire.encode_state("c", "u", None, None)) == {
        "type": "state",
        "ch": "c",
        "user": "u",
        "state": None,
    }
    assert json.loads(wire.encode_gap("c", "e2", None, 4)) == {
        "type": "gap",
        "ch": "c",
        "epoch": "e2",
        "from": 4,
    }
    text = Message("c", "e", 1, '"str data"')
    assert json.loads(wire.encode_message(b'"c"', text))["data"] == "str data"
