"""Frames, close payloads and their encodings."""

from __future__ import annotations

import pytest

from openline.exceptions import ProtocolError
from openline.protocol.frames import (
    Close,
    CloseCode,
    Frame,
    Opcode,
    is_valid_close_code,
    opcode_from_int,
    serialize_frame,
)

# Every test runs on the compiled and on the pure-Python frame path (conftest.py).
pytestmark = pytest.mark.usefixtures("frame_path")


@pytest.mark.parametrize(
    ("frame", "mask", "encoded"),
    [
        # RFC 6455 section 5.7's examples.
        (Frame(Opcode.TEXT, b"Hello"), False, bytes.fromhex("810548656c6c6f")),
        (Frame(Opcode.TEXT, b"Hello"), True, bytes.fromhex("818537fa213d7f9f4d5158")),
        (Frame(Opcode.TEXT, b"Hel", fin=False), False, bytes.fromhex("010348656c")),
        (Frame(Opcode.CONT, b"lo"), False, bytes.fromhex("80026c6f")),
        (Frame(Opcode.PING, b"Hello"), False, bytes.fromhex("890548656c6c6f")),
        (Frame(Opcode.PONG, b"Hello"), True, bytes.fromhex("8a8537fa213d7f9f4d5158")),
        (Frame(Opcode.BINARY, b"\x00" * 256), False, bytes.fromhex("827e0100") + b"\x00" * 256),
        (
            Frame(Opcode.BINARY, b"\x00" * 65536),
            False,
            bytes.fromhex("827f0000000000010000") + b"\x00" * 65536,
        ),
        (Frame(Opcode.TEXT, b"", rsv1=True), False, bytes.fromhex("c100")),
        (Frame(Opcode.TEXT, b"", rsv2=True, rsv3=True), False, bytes.fromhex("b100")),
    ],
)
def test_serializes_rfc_examples(frame: Frame, mask: bool, encoded: bytes) -> None:
    assert serialize_frame(frame, mask=mask, mask_key=bytes.fromhex("37fa213d")) == encoded


def test_serialize_picks_a_random_mask() -> None:
    one = serialize_frame(Frame(Opcode.TEXT, b"x"), mask=True)
    two = serialize_frame(Frame(Opcode.TEXT, b"x"), mask=True)
    assert len(one) == 7 and one[1] == 0x81
    assert one != two or one[2:6] == two[2:6]  # equal keys are possible, merely unlikely


def test_frame_str() -> None:
    assert str(Frame(Opcode.TEXT, b"abc", fin=False, rsv1=True)) == "TEXT [1] 3 bytes"
    assert str(Frame(Opcode.PING, b"", rsv2=True, rsv3=True)) == "PING [F23] 0 bytes"


@pytest.mark.parametrize(
    ("data", "close"),
    [
        (b"", Close(1005)),
        (b"\x03\xe8", Close(1000)),
        (b"\x03\xe8bye", Close(1000, "bye")),
        (b"\x0f\xa0" + "é".encode(), Close(4000, "é")),
        (b"\x0b\xb8", Close(3000)),
    ],
)
def test_parses_close_payloads(data: bytes, close: Close) -> None:
    assert Close.parse(data) == close
    assert close.serialize() == data


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"\x03", 1002, "close frame payload of 1 byte is too short"),
        (b"\x03\xec", 1002, "invalid close code 1004"),
        (b"\x03\xe8\xc3", 1007, "close reason isn't valid UTF-8"),
    ],
)
def test_rejects_invalid_close_payloads(data: bytes, code: int, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        Close.parse(data)
    assert info.value.code == code
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (999, False),
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1011, True),
        (1014, True),
        (1015, False),
        (1016, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
    ],
)
def test_knows_which_codes_go_on_the_wire(code: int, valid: bool) -> None:
    assert is_valid_close_code(code) is valid


@pytest.mark.parametrize(
    ("close", "text"),
    [
        (Close(1000), "1000 (OK)"),
        (Close(1001, "bye"), "1001 (going away) bye"),
        (Close(3001), "3001 (registered)"),
        (Close(4001), "4001 (private use)"),
        (Close(1016), "1016 (unknown)"),
    ],
)
def test_close_str(close: Close, text: str) -> None:
    assert str(close) == text


def test_close_check() -> None:
    Close(1000, "x" * 123).check()
    with pytest.raises(ValueError, match="close reason of 124 bytes exceeds 123 bytes"):
        Close(1000, "x" * 124).check()
    with pytest.raises(ValueError, match="close code 1006 may not be sent on the wire"):
        Close(1006).check()


def test_close_code_enum_covers_the_registry() -> None:
    assert CloseCode.TLS_HANDSHAKE == 1015
    assert opcode_from_int(9) is Opcode.PING
    assert opcode_from_int(3) is None
