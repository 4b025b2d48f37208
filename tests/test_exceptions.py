"""The exception tree: one root, one meaning per branch, messages built from attributes."""

from __future__ import annotations

import pickle

import pytest

import openline.exceptions as exceptions
from openline.exceptions import (
    BackendUnavailable,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DuplicateParameter,
    HubError,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidOrigin,
    InvalidParameterName,
    InvalidParameterValue,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    OpenlineError,
    PayloadTooBig,
    ProtocolError,
    SecurityError,
)
from openline.protocol.frames import Close

NORMAL = Close(1000, "bye")
AWAY = Close(1001, "")
ERROR = Close(1011, "oops")


def test_every_exported_exception_derives_from_the_root() -> None:
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, OpenlineError), name


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ConnectionClosedOK, ConnectionClosed),
        (ConnectionClosedError, ConnectionClosed),
        (SecurityError, InvalidHandshake),
        (InvalidHeaderValue, InvalidHeader),
        (InvalidUpgrade, InvalidHeader),
        (InvalidOrigin, InvalidHeader),
        (InvalidStatus, InvalidHandshake),
        (DuplicateParameter, NegotiationError),
        (InvalidParameterName, NegotiationError),
        (InvalidParameterValue, NegotiationError),
        (NegotiationError, InvalidHandshake),
        (PayloadTooBig, ProtocolError),
        (BackendUnavailable, HubError),
    ],
)
def test_each_branch_has_its_parent(cls: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(cls, parent)


def test_our_close_and_a_broken_peer_are_different_errors() -> None:
    assert not issubclass(ProtocolError, ConnectionClosed)
    assert not issubclass(ConnectionClosed, ProtocolError)


def test_local_misuse_is_also_a_builtin_error() -> None:
    # Callers that know nothing of openline still catch these as what they are.
    assert issubclass(ConcurrencyError, RuntimeError)
    assert issubclass(InvalidState, AssertionError)


# --- ConnectionClosed -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rcvd", "sent", "rcvd_then_sent", "message"),
    [
        (None, None, None, "no close frame received or sent"),
        (None, NORMAL, None, "sent 1000 (OK) bye; no close frame received"),
        (ERROR, None, None, "received 1011 (internal error) oops; no close frame sent"),
        (NORMAL, AWAY, True, "received 1000 (OK) bye; then sent 1001 (going away)"),
        (NORMAL, AWAY, False, "sent 1001 (going away); then received 1000 (OK) bye"),
        (Close(4000, "x"), None, None, "received 4000 (private use) x; no close frame sent"),
        (Close(3000, ""), None, None, "received 3000 (registered); no close frame sent"),
    ],
)
def test_connection_closed_says_what_was_received_and_sent_in_order(
    rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None, message: str
) -> None:
    assert str(ConnectionClosedError(rcvd, sent, rcvd_then_sent)) == message


def test_connection_closed_code_and_reason_come_from_the_frame_received() -> None:
    exc = ConnectionClosedOK(NORMAL, AWAY, True)
    assert (exc.code, exc.reason) == (1000, "bye")
    assert (exc.rcvd, exc.sent, exc.rcvd_then_sent) == (NORMAL, AWAY, True)


def test_connection_closed_without_a_frame_received_reports_1006() -> None:
    # What we sent never stands in for what the peer said.
    exc = ConnectionClosedError(None, NORMAL)
    assert (exc.code, exc.reason) == (1006, "")


def test_connection_closed_survives_pickling() -> None:
    exc = pickle.loads(pickle.dumps(ConnectionClosedError(ERROR, NORMAL, False)))
    assert isinstance(exc, ConnectionClosedError)
    assert (exc.rcvd, exc.sent, exc.rcvd_then_sent) == (ERROR, NORMAL, False)


# --- handshake --------------------------------------------------------------------------


def test_invalid_uri_names_the_uri_and_the_problem() -> None:
    exc = InvalidURI("http://example.com/", "scheme isn't ws or wss")
    assert str(exc) == "http://example.com/ isn't a valid websocket URI: scheme isn't ws or wss"
    assert (exc.uri, exc.msg) == ("http://example.com/", "scheme isn't ws or wss")


def test_peer_and_user_text_is_escaped_and_truncated() -> None:
    long_uri = "ws://example.com/" + "a" * 200
    shown = str(InvalidURI(long_uri, "too long")).split(" isn't")[0]
    assert shown == long_uri[:72] + "..."
    # A control character in a header value is shown escaped, never raw.
    text = str(InvalidHeader("Upgrade", "web\r\nsocket"))
    assert text == "invalid Upgrade header: web\\r\\nsocket"
    assert "\r" not in text


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (InvalidHeader("Sec-WebSocket-Key"), "missing Sec-WebSocket-Key header"),
        (InvalidHeader("Upgrade", ""), "empty Upgrade header"),
        (InvalidHeaderValue("Connection", "a b"), "invalid Connection header: a b"),
        (InvalidOrigin(None), "missing Origin header"),
        (InvalidOrigin("https://evil.example"), "invalid Origin header: https://evil.example"),
        (InvalidStatus(403), "server rejected the websocket connection: HTTP 403"),
        (DuplicateParameter("max_bits"), "duplicate parameter: max_bits"),
        (InvalidParameterName("x-y"), "invalid parameter name: x-y"),
        (InvalidParameterValue("bits", None), "missing value for parameter bits"),
        (InvalidParameterValue("bits", "99"), "invalid value for parameter bits: 99"),
    ],
)  # fmt: skip
def test_handshake_errors_say_what_was_expected_and_found(exc: Exception, message: str) -> None:
    assert str(exc) == message


def test_invalid_origin_is_about_the_origin_header() -> None:
    exc = InvalidOrigin("https://a.example")
    assert (exc.name, exc.value) == ("Origin", "https://a.example")


def test_invalid_status_keeps_the_response() -> None:
    response = object()
    exc = InvalidStatus(401, response)
    assert exc.status == 401 and exc.response is response


# --- protocol ---------------------------------------------------------------------------


def test_protocol_error_carries_the_close_code_sent() -> None:
    assert ProtocolError("bad opcode 3").code == 1002
    exc = ProtocolError("invalid utf-8", 1007)
    assert (str(exc), exc.msg, exc.code) == ("invalid utf-8", "invalid utf-8", 1007)


def test_payload_too_big_gives_numbers_and_units() -> None:
    exc = PayloadTooBig(2_000_000, 1_048_576)
    assert str(exc) == "message of 2000000 bytes exceeds max_size of 1048576 bytes"
    assert (exc.size, exc.max_size, exc.code) == (2_000_000, 1_048_576, 1009)
    frame = PayloadTooBig(70_000, 65_536, what="frame")
    assert str(frame) == "frame of 70000 bytes exceeds max_size of 65536 bytes"


def test_payload_too_big_survives_pickling() -> None:
    exc = pickle.loads(pickle.dumps(PayloadTooBig(10, 5)))
    assert str(exc) == "message of 10 bytes exceeds max_size of 5 bytes"
