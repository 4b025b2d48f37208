"""Write the seed corpus of every harness into ``fuzz/corpus/<harness>/``.

Run ``python fuzz/make_corpus.py`` after changing a harness's input layout;
it replaces the generated files (``*.bin``) and keeps any other file, such as
a crash reproducer added by hand (see fuzz/README.md). The output is
deterministic: masks and compression use fixed settings.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from openline.protocol.frames import Frame, Opcode, serialize_frame

CORPUS = Path(__file__).parent / "corpus"
MASK = b"\x37\xfa\x21\x3d"
#: RFC 6455, section 1.3's example key and its accept value.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

Seeds = Iterable[tuple[str, bytes]]


# --- the core: frames ---------------------------------------------------------------------


def frame(
    opcode: Opcode, data: bytes = b"", *, masked: bool, fin: bool = True, **rsv: bool
) -> bytes:
    """Encode one frame with a fixed mask."""
    return serialize_frame(Frame(opcode, data, fin, **rsv), mask=masked, mask_key=MASK)


def deflate(data: bytes) -> bytes:
    """Compress a message as permessage-deflate does: sync flush, tail removed."""
    encoder = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH))[:-4]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """Encode a close frame's payload."""
    return code.to_bytes(2, "big") + reason


def stream_seeds(masked: bool) -> Seeds:
    """Byte streams as a peer sends them: valid, and each rule broken once."""
    m = masked
    yield "text", frame(Opcode.TEXT, "héllo".encode(), masked=m)
    yield "binary", frame(Opcode.BINARY, bytes(range(40)), masked=m)
    yield "empty-text", frame(Opcode.TEXT, masked=m)
    yield "ping-pong", frame(Opcode.PING, b"p", masked=m) + frame(Opcode.PONG, b"q", masked=m)
    yield (
        "fragmented",
        (
            frame(Opcode.TEXT, b"frag", fin=False, masked=m)
            + frame(Opcode.PING, masked=m)
            + frame(Opcode.CONT, b"men", fin=False, masked=m)
            + frame(Opcode.CONT, b"ted", masked=m)
        ),
    )
    yield "length-126", frame(Opcode.BINARY, b"x" * 200, masked=m)
    yield "length-127", frame(Opcode.BINARY, b"y" * 70_000, masked=m)[:64]
    for code in (1000, 1001, 1011, 3000, 4999):
        yield f"close-{code}", frame(Opcode.CLOSE, close_payload(code, b"bye"), masked=m)
    yield "close-empty", frame(Opcode.CLOSE, masked=m)
    yield "close-1005", frame(Opcode.CLOSE, close_payload(1005), masked=m)
    yield "close-one-byte", frame(Opcode.CLOSE, b"\x03", masked=m)
    yield "close-bad-utf8", frame(Opcode.CLOSE, close_payload(1000, b"\xc3"), masked=m)
    yield "after-close", frame(Opcode.CLOSE, masked=m) + frame(Opcode.TEXT, b"late", masked=m)
    yield "bad-utf8", frame(Opcode.TEXT, b"ok \xed\xa0\x80", masked=m)
    yield (
        "utf8-split",
        (
            frame(Opcode.TEXT, "€".encode()[:2], fin=False, masked=m)
            + frame(Opcode.CONT, "€".encode()[2:], masked=m)
        ),
    )
    yield "cont-first", frame(Opcode.CONT, b"x", masked=m)
    yield (
        "text-in-fragment",
        (frame(Opcode.TEXT, b"a", fin=False, masked=m) + frame(Opcode.TEXT, b"b", masked=m)),
    )
    yield "ping-too-long", frame(Opcode.PING, b"z" * 126, masked=m)
    yield "ping-fragmented", frame(Opcode.PING, b"z", fin=False, masked=m)
    yield "reserved-opcode", bytes([0x83, 0x80 if m else 0x00]) + (MASK if m else b"")
    yield "rsv2", frame(Opcode.TEXT, b"x", masked=m, rsv2=True)
    yield "too-big", frame(Opcode.BINARY, b"b" * 5000, masked=m)
    yield "wrong-masking", frame(Opcode.TEXT, b"x", masked=not m)
    yield "cut-mid-frame", frame(Opcode.TEXT, b"cut short", masked=m)[:-3]
    yield "deflate-text", frame(Opcode.TEXT, deflate(b"compressed " * 8), masked=m, rsv1=True)
    yield (
        "deflate-fragmented",
        (
            frame(Opcode.TEXT, deflate(b"abc")[:2], fin=False, masked=m, rsv1=True)
            + frame(Opcode.CONT, deflate(b"abc")[2:], masked=m)
        ),
    )
    yield "deflate-bomb", frame(Opcode.BINARY, deflate(b"\0" * 100_000), masked=m, rsv1=True)
    yield "deflate-corrupt", frame(Opcode.BINARY, b"\xff\xff\xff", masked=m, rsv1=True)
    yield "deflate-rsv1-ping", frame(Opcode.PING, masked=m, rsv1=True)


def connection_seeds() -> Seeds:
    """Setup byte (side, deflate), chunk size, then a stream from the peer."""
    for side, setup, masked in (("server", 0x01, True), ("client", 0x00, False)):
        for name, stream in stream_seeds(masked):
            deflated = setup | 0x02 if name.startswith("deflate") else setup
            yield f"{side}-{name}", bytes([deflated, 0xFF]) + stream
    # Byte by byte, deferred close, small window and no context takeover.
    text = frame(Opcode.TEXT, deflate(b"hi"), masked=True, rsv1=True)
    yield "server-deflate-bytewise", bytes([0x0F, 0x00]) + text + text
    yield (
        "server-deferred-close",
        bytes([0x09, 0x03]) + frame(Opcode.CLOSE, close_payload(1000), masked=True),
    )


# --- the handshake ------------------------------------------------------------------------


def request(*lines: str, start: str = "GET /chat HTTP/1.1") -> bytes:
    """Encode a request head from its header lines."""
    return "\r\n".join([start, *lines, "", ""]).encode("latin-1")


BASE_REQUEST = (
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
)


def request_seeds() -> Seeds:
    """Upgrade requests: the usual ones, and each check broken once."""
    host, upgrade, connection, key, version = BASE_REQUEST
    yield "minimal", request(*BASE_REQUEST)
    yield (
        "browser",
        request(
            *BASE_REQUEST,
            "Origin: https://example.com",
            "Sec-WebSocket-Protocol: chat, openline.v1",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
            "User-Agent: Mozilla/5.0",
        ),
    )
    yield "firefox", request(host, upgrade, "Connection: keep-alive, Upgrade", key, version)
    yield (
        "deflate-params",
        request(
            *BASE_REQUEST,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
            'client_max_window_bits="10", permessage-deflate',
        ),
    )
    yield (
        "deflate-bad-param",
        request(
            *BASE_REQUEST, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99"
        ),
    )
    yield (
        "token-subprotocol",
        request(*BASE_REQUEST, "Sec-WebSocket-Protocol: openline.v1, openline.token.abc"),
    )
    yield "http-1.0", request(*BASE_REQUEST, start="GET /chat HTTP/1.0")
    yield "method", request(*BASE_REQUEST, start="POST /chat HTTP/1.1")
    yield "no-host", request(upgrade, connection, key, version)
    yield "two-hosts", request(*BASE_REQUEST, "Host: other.example")
    yield "no-upgrade", request(host, connection, key, version)
    yield "bad-key", request(host, upgrade, connection, "Sec-WebSocket-Key: short==", version)
    yield "version-8", request(host, upgrade, connection, key, "Sec-WebSocket-Version: 8")
    yield "bad-origin", request(*BASE_REQUEST, "Origin: https://evil.example")
    yield "bad-protocol", request(*BASE_REQUEST, "Sec-WebSocket-Protocol: a b")
    yield "obs-fold", request(*BASE_REQUEST, " folded")
    yield "bare-lf", request(*BASE_REQUEST).replace(b"\r\nUpgrade", b"\nUpgrade")
    yield "content-length", request(*BASE_REQUEST, "Content-Length: 0")
    yield "long-line", request(*BASE_REQUEST, "X-Long: " + "a" * 8200)
    yield "space-before-colon", request(*BASE_REQUEST, "X-Bad : 1")
    yield "truncated", request(*BASE_REQUEST)[:-2]


def response(status: str, *lines: str, body: bytes = b"") -> bytes:
    """Encode a response head from its status and header lines."""
    return "\r\n".join([f"HTTP/1.1 {status}", *lines, "", ""]).encode("latin-1") + body


BASE_RESPONSE = ("Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {ACCEPT}")


def response_seeds() -> Seeds:
    """Handshake responses to the harness's client: accepted, refused, malformed."""
    ok = "101 Switching Protocols"
    yield "101", response(ok, *BASE_RESPONSE)
    yield "101-protocol", response(ok, *BASE_RESPONSE, "Sec-WebSocket-Protocol: chat")
    yield (
        "101-deflate",
        response(
            ok,
            *BASE_RESPONSE,
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12",
        ),
    )
    yield "101-two-protocols", response(ok, *BASE_RESPONSE, "Sec-WebSocket-Protocol: chat, x")
    yield "101-unoffered-extension", response(ok, *BASE_RESPONSE, "Sec-WebSocket-Extensions: x")
    yield "101-bad-accept", response(ok, *BASE_RESPONSE[:2], "Sec-WebSocket-Accept: AAAA")
    yield "101-no-upgrade", response(ok, *BASE_RESPONSE[1:])
    body = b"authentication required\n"
    yield "401", response("401 Unauthorized", f"Content-Length: {len(body)}", body=body)
    yield "400-chunked", response("400 Bad Request", "Transfer-Encoding: chunked")
    yield "bad-length", response("400 Bad Request", "Content-Length: -1")
    yield "status-999", response("999 Nope")
    yield "http-1.0", b"HTTP/1.0 101 Switching Protocols\r\n\r\n"


def handshake_seeds() -> Seeds:
    """Side byte (bit 0: server; bit 1: with an Origin allowlist), cut, then the head."""
    for name, head in request_seeds():
        yield f"request-{name}", bytes([0x01, 0x20]) + head
        if "origin" in name or name == "browser":
            yield f"request-origins-{name}", bytes([0x03, 0xFF]) + head
    for name, head in response_seeds():
        yield f"response-{name}", bytes([0x00, 0x10]) + head


# --- the hub's client messages ------------------------------------------------------------


def wire_seeds() -> Seeds:
    """Every client message type of docs/protocol.md, with and without optional fields."""
    since = {"epoch": "e1", "offset": 7}
    messages: dict[str, object] = {
        "subscribe": {"type": "subscribe", "ch": "room"},
        "subscribe-rid": {"type": "subscribe", "ch": "room", "rid": 1},
        "subscribe-since": {"type": "subscribe", "ch": "room", "since": since, "rid": "r1"},
        "subscribe-presence": {"type": "subscribe", "ch": "room", "presence": True},
        "unsubscribe": {"type": "unsubscribe", "ch": "room"},
        "unsubscribe-rid": {"type": "unsubscribe", "ch": "room", "rid": 2},
        "publish": {"type": "publish", "ch": "room", "data": {"text": "hi", "n": [1, 2.5]}},
        "publish-id": {"type": "publish", "ch": "room", "data": "x", "id": "m-1", "rid": 3},
        "publish-null": {"type": "publish", "ch": "room", "data": None},
        "state": {"type": "state", "ch": "room", "state": {"typing": True}},
        "state-clear": {"type": "state", "ch": "room", "state": None, "rid": "s"},
        "presence": {"type": "presence", "ch": "room"},
        "presence-rid": {"type": "presence", "ch": "room", "rid": -4},
        "ping": {"type": "ping"},
        "ping-rid": {"type": "ping", "rid": 9007199254740991},
        "unknown-type": {"type": "shout", "ch": "room"},
        "bad-since": {"type": "subscribe", "ch": "room", "since": {"epoch": "", "offset": -1}},
        "no-data": {"type": "publish", "ch": "room"},
        "big-state": {"type": "state", "ch": "room", "state": {"s": "x" * 100}},
        "long-channel": {"type": "presence", "ch": "c" * 40},
        "big-rid": {"type": "ping", "rid": 2**60},
        "unknown-field": {"type": "ping", "extra": [1, {"a": None}]},
    }
    for name, fields in messages.items():
        yield name, b"\x00" + json.dumps(fields, separators=(",", ":")).encode()
    yield "nan", b'\x00{"type":"publish","ch":"room","data":NaN}'
    yield "surrogate", b'\x00{"type":"publish","ch":"\\ud800","data":1}'
    yield "not-object", b"\x00[1,2]"
    yield "deep", b"\x00" + b"[" * 2000
    yield "too-large", b'\x00{"type":"publish","ch":"room","data":"' + b"x" * 1100 + b'"}'
    yield "binary", b'\x01{"type":"ping"}'


# --- the hub's dispatch -------------------------------------------------------------------


def hub_seeds() -> Seeds:
    """Conversations with the hub: newline-separated messages on one connection."""

    def lines(*messages: object) -> bytes:
        return b"\n".join(json.dumps(m, separators=(",", ":")).encode() for m in messages)

    sub = {"type": "subscribe", "ch": "room", "presence": True, "rid": 1}
    pub = {"type": "publish", "ch": "room", "data": {"n": 1}, "id": "m1", "rid": 2}
    yield (
        "chat",
        lines(
            sub,
            pub,
            pub,
            {"type": "state", "ch": "room", "state": {"typing": True}},
            {"type": "presence", "ch": "room", "rid": 3},
            {"type": "state", "ch": "room", "state": None},
            {"type": "unsubscribe", "ch": "room", "rid": 4},
        ),
    )
    yield (
        "resume",
        lines(
            {"type": "publish", "ch": "news", "data": "a"},
            {"type": "subscribe", "ch": "news", "since": {"epoch": "old", "offset": 0}},
            {"type": "subscribe", "ch": "other", "since": {"epoch": "x", "offset": 99}},
        ),
    )
    yield (
        "preconditions",
        lines(
            {"type": "unsubscribe", "ch": "room"},
            {"type": "state", "ch": "room", "state": {}},
            sub,
            sub,
            {"type": "presence", "ch": "nobody-here"},
        ),
    )
    yield "malformed", b"\n".join(data[1:] for _, data in wire_seeds() if data[:1] == b"\x00")
    yield "binary", b"\x00binary\n" + lines({"type": "ping"})
    for name, data in wire_seeds():
        if data[:1] == b"\x00":
            yield f"one-{name}", data[1:]
    yield "abuse", b"\n".join([b"{}"] * 25)


# --- permessage-deflate -------------------------------------------------------------------


def record(data: bytes, *, fin: bool = True, rsv1: bool = True, opcode: int = 1) -> bytes:
    """Encode one record of the deflate harness (payloads of at most 255 bytes)."""
    assert len(data) <= 255
    return bytes([int(fin) | int(rsv1) << 1 | opcode << 2, len(data)]) + data


def deflate_seeds() -> Seeds:
    """Compressed messages, fragmented, corrupt, oversized, and misplaced RSV1."""
    text = deflate(b"Hello, Hello, Hello!")
    yield "one-frame", b"\x07" + record(text)
    yield "two-messages", b"\x07" + record(text) + record(deflate(b"again"))
    yield (
        "fragmented",
        b"\x07" + record(text[:3], fin=False) + record(text[3:], rsv1=False, opcode=0),
    )
    yield "uncompressed", b"\x07" + record(b"plain", rsv1=False)
    yield "no-takeover", b"\x0f" + record(text) + record(text)
    small = zlib.compressobj(6, zlib.DEFLATED, -9)
    yield (
        "window-9",
        b"\x01" + record((small.compress(b"ab" * 50) + small.flush(zlib.Z_SYNC_FLUSH))[:-4]),
    )
    yield "bomb", b"\x07" + record(deflate(b"\0" * 200_000)[:255], fin=False)
    yield "final-block", b"\x07" + record(zlib.compress(b"done", wbits=-15))
    yield "corrupt", b"\x07" + record(b"\xff\xfe\xfd")
    yield "rsv1-ping", b"\x07" + record(b"", opcode=3)
    yield "rsv1-continuation", b"\x07" + record(text, fin=False) + record(b"x", opcode=0)
    yield "empty", b"\x07" + record(b"\x00")


HARNESSES: dict[str, Callable[[], Seeds]] = {
    "connection": connection_seeds,
    "handshake": handshake_seeds,
    "wire": wire_seeds,
    "hub": hub_seeds,
    "deflate": deflate_seeds,
}


def write(folder: Path, seeds: Seeds) -> int:
    """Replace the generated seeds in ``folder``; return the number written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.bin"):
        old.unlink()
    count = 0
    for name, data in seeds:
        (folder / f"{name}.bin").write_bytes(data)
        count += 1
    return count


def main() -> None:
    """Write every harness's seeds and say how many and how large."""
    for harness, make in HARNESSES.items():
        folder = CORPUS / harness
        count = write(folder, make())
        size = sum(path.stat().st_size for path in folder.iterdir())
        print(f"{harness}: {count} seeds, {size} bytes")


if __name__ == "__main__":
    main()
